//! `citysoc`: the one binary. Subcommands wire the libraries together.

mod backup_cmd;
mod config_cmd;
mod hunt_cmd;
mod inventory_cmd;
mod pcap_cmd;
mod rules_cmd;
mod sensor_cmd;
mod serve_cmd;

use clap::{Parser, Subcommand};

/// Records are built on worker threads and freed on the output thread;
/// glibc's allocator serialises such cross-thread frees on an arena lock,
/// mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "citysoc", version, about = "City security operations centre")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Capture (live or from a file), decode, and write Zeek-compatible logs.
    Sensor(sensor_cmd::SensorArgs),
    /// Write a synthetic capture of a named scenario (see `--list`).
    Generate(GenerateArgs),
    /// Replay the bundled scenario captures and check every expectation.
    Replay(ReplayArgs),
    /// Check and test detection rules.
    #[command(subcommand)]
    Rules(rules_cmd::RulesCmd),
    /// Serve the SIEM's API over the embedded store or ClickHouse.
    Serve(serve_cmd::ServeArgs),
    /// Make the SIEM's tokens file and TLS certificate when missing (before
    /// a first start; what exists is left as it is).
    ServeInit(serve_cmd::InitArgs),
    /// Replay the bundled captures through sensor and detector into the
    /// embedded store, then serve it on 127.0.0.1.
    Demo(serve_cmd::DemoArgs),
    /// Run the anomaly models over stored records of a past time range.
    Hunt(hunt_cmd::HuntArgs),
    /// Write the packets of one flow from the packet ring as a pcap file.
    Pcap(pcap_cmd::PcapArgs),
    /// Check an evidence bundle's signature and files.
    #[command(subcommand)]
    Evidence(pcap_cmd::EvidenceCmd),
    /// The device inventory's data: a newer IEEE OUI registry.
    #[command(subcommand)]
    Inventory(inventory_cmd::InventoryCmd),
    /// Check a configuration file; print the configuration reference.
    #[command(subcommand)]
    Config(config_cmd::ConfigCmd),
    /// Save the SIEM's data directory (running or not) to one archive.
    Backup(backup_cmd::BackupArgs),
    /// Bring a data directory back from an archive of `citysoc backup`.
    Restore(backup_cmd::RestoreArgs),
    /// Print a reference page of the book (Markdown) rendered from the code.
    Reference(ReferenceArgs),
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("page").required(true).args(["cli", "api", "fields"])))]
struct ReferenceArgs {
    /// The command line: every command and argument.
    #[arg(long)]
    cli: bool,
    /// The HTTP API, from the OpenAPI document the SIEM serves.
    #[arg(long)]
    api: bool,
    /// Every log and field of the field catalog.
    #[arg(long)]
    fields: bool,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Directory of cases (each with capture.pcap and case.toml).
    #[arg(default_value = "replay-pcaps")]
    cases: std::path::PathBuf,
    /// Where each case's logs go (one subdirectory per case).
    #[arg(long, default_value = "replay-logs")]
    log_dir: std::path::PathBuf,
    /// Worker threads.
    #[arg(long, short = 'w', default_value_t = 1)]
    workers: usize,
    /// The rules folder (default: the checkout's `rules` for a development
    /// build, else /usr/share/citysoc/rules).
    #[arg(long)]
    rules: Option<std::path::PathBuf>,
    /// Do not run detection.
    #[arg(long)]
    no_detect: bool,
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// Scenario name.
    #[arg(required_unless_present = "list")]
    scenario: Option<String>,
    /// Output capture file.
    #[arg(long, short, required_unless_present = "list")]
    out: Option<std::path::PathBuf>,
    /// For the `bench-mix` scenario: approximate size of the capture in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mb: u64,
    /// List the scenarios.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("CITYSOC_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Sensor(args) => sensor_cmd::run(args),
        Cmd::Generate(args) => generate(args),
        Cmd::Replay(args) => replay(args),
        Cmd::Rules(cmd) => rules_cmd::run(cmd),
        Cmd::Serve(args) => {
            siem::no_transparent_huge_pages();
            serve_cmd::run(args)
        }
        Cmd::ServeInit(args) => serve_cmd::init(args),
        Cmd::Demo(args) => {
            siem::no_transparent_huge_pages();
            serve_cmd::demo(args)
        }
        Cmd::Hunt(args) => hunt_cmd::run(args),
        Cmd::Pcap(args) => pcap_cmd::run(args),
        Cmd::Evidence(cmd) => pcap_cmd::evidence(cmd),
        Cmd::Config(cmd) => config_cmd::run(cmd),
        Cmd::Inventory(cmd) => inventory_cmd::run(cmd),
        Cmd::Backup(args) => backup_cmd::backup(args),
        Cmd::Restore(args) => backup_cmd::restore(args),
        Cmd::Reference(args) => reference(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("citysoc: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    if args.list {
        for (name, doc) in pcapgen::SCENARIOS {
            println!("{name:24} {doc}");
        }
        println!("{:24} a large realistic mix for benchmarks (--size-mb)", "bench-mix");
        println!("{:24} a large mix of small packets for benchmarks (--size-mb)", "bench-small");
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(name), Some(out)) = (args.scenario, args.out) else {
        anyhow::bail!("a scenario and --out are required");
    };
    let file = std::fs::File::create(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let n = if name == "bench-mix" {
        pcapgen::bench_mix(&mut w, args.size_mb << 20)
    } else if name == "bench-small" {
        pcapgen::bench_mix_with(&mut w, args.size_mb << 20, true)
    } else {
        pcapgen::scenario(&name, &mut w)
    }
    .with_context(|| format!("cannot write {}", out.display()))?;
    std::io::Write::flush(&mut w).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("wrote {n} packets to {}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn reference(args: ReferenceArgs) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    let page = if args.cli {
        citysoc::reference::cli_markdown(&Cli::command())
    } else if args.api {
        citysoc::reference::api_markdown(siem::api::OPENAPI)?
    } else {
        citysoc::reference::fields_markdown()
    };
    print!("{page}");
    Ok(ExitCode::SUCCESS)
}

fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let cases = citysoc::replay::load_cases(&args.cases)?;
    if cases.is_empty() {
        anyhow::bail!("no cases under {}", args.cases.display());
    }
    let rules = if args.no_detect {
        None
    } else {
        let settings = citysoc::detection::DetectSettings { rules_dir: args.rules.clone(), ..Default::default() };
        Some(citysoc::detection::load_for_detection(&settings, "sensor")?.0)
    };
    let mut failed = 0;
    for case in &cases {
        let out = args.log_dir.join(&case.name);
        let outcome = citysoc::replay::run_case(case, &out, args.workers, rules.as_ref())?;
        if outcome.failures.is_empty() {
            println!("ok    {:22} {:3} checks  {}", case.name, outcome.checks, case.spec.description);
        } else {
            failed += 1;
            println!("FAIL  {:22} {}", case.name, case.spec.description);
            for f in &outcome.failures {
                println!("      {f}");
            }
        }
    }
    println!("{} cases, {} failed; logs in {}", cases.len(), failed, args.log_dir.display());
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

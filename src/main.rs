//! `citysoc`: the one binary. Subcommands wire the libraries together.

mod config;
mod sensor_cmd;

use clap::{Parser, Subcommand};
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
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CITYSOC_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Sensor(args) => sensor_cmd::run(args),
        Cmd::Generate(args) => generate(args),
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
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(name), Some(out)) = (args.scenario, args.out) else {
        anyhow::bail!("a scenario and --out are required");
    };
    let file = std::fs::File::create(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let n = if name == "bench-mix" {
        pcapgen::bench_mix(&mut w, args.size_mb << 20)
    } else {
        pcapgen::scenario(&name, &mut w)
    }
    .with_context(|| format!("cannot write {}", out.display()))?;
    std::io::Write::flush(&mut w).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("wrote {n} packets to {}", out.display());
    Ok(ExitCode::SUCCESS)
}

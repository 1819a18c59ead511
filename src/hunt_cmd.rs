//! `citysoc hunt`: the anomaly models over a stored time range, through a
//! serving SIEM's API (`--server`: the hunt runs there, and is kept with
//! its findings for the console) or over a store no server holds open.

use anyhow::{bail, Context};
use citysoc::detection::DetectSettings;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct HuntArgs {
    /// Hunt through this serving SIEM (`http://127.0.0.1:8080`): the hunt
    /// runs on the server, over the store it holds open, and its findings
    /// stay listed in the console's Hunts page.
    #[arg(long)]
    server: Option<String>,
    /// A file holding the bearer token for `--server` (an analyst's or an
    /// admin's); default: the `CITYSOC_TOKEN` environment variable.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// What to run with `--server`: a model (`model:scan`) or `sigma` (the
    /// Sigma rules); repeatable; default: all of them.
    #[arg(long = "model")]
    models: Vec<String>,
    /// Data directory of the embedded store.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Read from a ClickHouse server (`http://host:8123`) instead.
    #[arg(long)]
    clickhouse: Option<String>,
    /// ClickHouse database.
    #[arg(long, default_value = "citysoc")]
    database: String,
    /// Start of the range: epoch seconds, ISO 8601 (`2026-11-20T00:00:00Z`;
    /// without an offset: UTC) or a span before now (`15m`, `24h`, `7d`).
    #[arg(long)]
    from: String,
    /// End of the range (exclusive), as `--from`.
    #[arg(long)]
    to: String,
    /// The rules folder (its `models.toml` and `placeholders.toml`; default:
    /// the checkout's `rules` for a development build, else
    /// /usr/share/citysoc/rules).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Write the alerts here as JSON lines (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A bound of the range, read as the API and the console read them.
fn parse_time(flag: &str, s: &str) -> anyhow::Result<f64> {
    siem::store::parse_time(s).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
}

fn out_of(args: &HuntArgs) -> anyhow::Result<Box<dyn Write>> {
    Ok(match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    })
}

/// Starts the hunt on the server, waits for it, writes its findings.
fn through_server(args: &HuntArgs, server: &str, from: f64, to: f64) -> anyhow::Result<ExitCode> {
    let token = match &args.token_file {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        None => std::env::var("CITYSOC_TOKEN").unwrap_or_default(),
    };
    let token = token.trim().to_string();
    let base = server.trim_end_matches('/');
    let agent = ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(30)).build();
    let auth = format!("Bearer {token}");
    let said = |e: ureq::Error| match e {
        ureq::Error::Status(code, r) => {
            let body: serde_json::Value = r.into_json().unwrap_or_default();
            anyhow::anyhow!("{base} refused the hunt ({code}: {})", body["error"].as_str().unwrap_or("no reason given"))
        }
        ureq::Error::Transport(t) => anyhow::anyhow!("cannot reach {base}: {t}"),
    };
    let started: serde_json::Value = agent
        .post(&format!("{base}/api/v1/hunts"))
        .set("Authorization", &auth)
        .send_json(serde_json::json!({"from": from, "to": to, "chosen": args.models}))
        .map_err(said)?
        .into_json()?;
    let id = started["id"].as_str().context("the server named no hunt")?.to_string();
    eprintln!("hunt {id} started on {base}");
    let hunt = loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let h: serde_json::Value = agent
            .get(&format!("{base}/api/v1/hunts/{id}"))
            .set("Authorization", &auth)
            .call()
            .map_err(said)?
            .into_json()?;
        if h["state"] != "running" {
            break h;
        }
    };
    if hunt["state"] == "failed" {
        bail!("hunt {id} failed: {}", hunt["error"].as_str().unwrap_or("no reason given"));
    }
    let mut out = out_of(args)?;
    let findings = hunt["findings"].as_array().cloned().unwrap_or_default();
    for f in &findings {
        serde_json::to_writer(&mut out, &f["alert"])?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    let queued = findings.iter().filter(|f| f["in_queue"] == true).count();
    eprintln!(
        "hunt {id}: {} records read, {} findings ({queued} already in the alert queue); promote the others from the console's Hunts page",
        hunt["records"], findings.len()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: HuntArgs) -> anyhow::Result<ExitCode> {
    let (from, to) = (parse_time("from", &args.from)?, parse_time("to", &args.to)?);
    if let Some(server) = args.server.clone() {
        return through_server(&args, &server, from, to);
    }
    let rules = citysoc::rules_location(args.rules.as_deref(), None)?;
    let settings = DetectSettings { rules_dir: Some(rules.clone()), ..Default::default() };
    let cfg = settings.detector_config("hunt")?;
    let Some(path) = cfg.models_path.clone() else {
        bail!("{} has no models.toml", rules.display());
    };
    let (models, errors) = detector::models::ModelsConfig::load(&path, &cfg.placeholders);
    for e in &errors {
        eprintln!("model not loaded: {e}");
    }
    let store = crate::serve_cmd::open_store(
        &args.data,
        args.clickhouse.as_deref(),
        &args.database,
        64,
        None,
        Default::default(),
    )
    .map_err(|e| {
        if format!("{e:#}").contains("LockBusy") || format!("{e:#}").to_lowercase().contains("lock") {
            e.context(format!(
                "a SIEM is serving {}: hunt through it with --server (the hunt runs there and keeps its findings)",
                args.data.display()
            ))
        } else {
            e
        }
    })?;
    let report =
        citysoc::hunt::hunt(store.as_ref(), from, to, &models, cfg.aggregate_window_secs, cfg.max_open_alerts)?;
    let mut out = out_of(&args)?;
    for a in &report.alerts {
        serde_json::to_writer(&mut out, a)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    eprintln!(
        "{} records read in {} queries, {} alerts; {} records later than the lateness bound, {} refused at the state cap",
        report.records,
        report.queries,
        report.alerts.len(),
        report.counters.late,
        report.counters.state_full
    );
    Ok(ExitCode::SUCCESS)
}

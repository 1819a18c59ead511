//! `citysoc hunt`: the anomaly models over a stored time range.

use anyhow::{bail, Context};
use citysoc::detection::DetectSettings;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct HuntArgs {
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

pub fn run(args: HuntArgs) -> anyhow::Result<ExitCode> {
    let (from, to) = (parse_time("from", &args.from)?, parse_time("to", &args.to)?);
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
    )?;
    let report =
        citysoc::hunt::hunt(store.as_ref(), from, to, &models, cfg.aggregate_window_secs, cfg.max_open_alerts)?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
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

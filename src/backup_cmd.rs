//! `citysoc backup` and `citysoc restore`.

use anyhow::Context;
use citysoc::config_file::Source;
use citysoc::serve_config::ServeConfig;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct BackupArgs {
    /// The data directory of `citysoc serve` (running or not).
    #[arg(long, required_unless_present = "config", conflicts_with = "config")]
    data: Option<PathBuf>,
    /// Or the server's configuration, whose `data` it is (serve.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The archive to write (a tar; it must not exist yet).
    #[arg(long)]
    to: PathBuf,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// An archive of `citysoc backup`.
    #[arg(long)]
    from: PathBuf,
    /// The data directory to bring back (the server on it stopped).
    #[arg(long, required_unless_present = "config", conflicts_with = "config")]
    data: Option<PathBuf>,
    /// Or the server's configuration, whose `data` it is (serve.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Replace what a non-empty data directory holds.
    #[arg(long)]
    force: bool,
}

/// The data directory named, or the one of the server's configuration.
fn data_dir(data: Option<PathBuf>, config: Option<&Path>) -> anyhow::Result<PathBuf> {
    match (data, config) {
        (Some(d), _) => Ok(d),
        (None, Some(c)) => {
            let cfg: ServeConfig = Source::read(c)?.parse()?;
            Ok(cfg.data)
        }
        (None, None) => anyhow::bail!("--data or --config is needed"),
    }
}

pub fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let t = std::time::Instant::now();
    let data = data_dir(args.data, args.config.as_deref())?;
    let s = citysoc::backup::backup(&data, &args.to).context("backup failed")?;
    eprintln!(
        "saved {} files ({} bytes) of {} to {} in {:.1} s",
        s.files,
        s.bytes,
        data.display(),
        args.to.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let data = data_dir(args.data, args.config.as_deref())?;
    let s = citysoc::backup::restore(&args.from, &data, args.force).context("restore failed")?;
    eprintln!("restored {} files ({} bytes) into {}", s.files, s.bytes, data.display());
    let audit = data.join("audit.log");
    if audit.exists() {
        match siem::audit::verify(&audit) {
            Ok((n, _)) => eprintln!("audit trail: {n} entries, the chain verifies"),
            Err(e) => {
                eprintln!("audit trail: {e}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

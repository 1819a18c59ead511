//! `citysoc backup` and `citysoc restore`.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct BackupArgs {
    /// The data directory of `citysoc serve` (running or not).
    #[arg(long)]
    data: PathBuf,
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
    #[arg(long)]
    data: PathBuf,
    /// Replace what a non-empty data directory holds.
    #[arg(long)]
    force: bool,
}

pub fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let t = std::time::Instant::now();
    let s = citysoc::backup::backup(&args.data, &args.to).context("backup failed")?;
    eprintln!(
        "saved {} files ({} bytes) of {} to {} in {:.1} s",
        s.files,
        s.bytes,
        args.data.display(),
        args.to.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let s = citysoc::backup::restore(&args.from, &args.data, args.force).context("restore failed")?;
    eprintln!("restored {} files ({} bytes) into {}", s.files, s.bytes, args.data.display());
    let audit = args.data.join("audit.log");
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

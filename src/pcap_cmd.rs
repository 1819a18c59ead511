//! `citysoc pcap`: one flow's packets from the packet ring (and the
//! evidence store beside it) as a pcap file.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct PcapArgs {
    /// The packet ring's folder (the sensor's `--ring`).
    #[arg(long)]
    ring: PathBuf,
    /// The flow's uid (`C...`), as in conn.log and in alerts.
    #[arg(long)]
    uid: String,
    /// Only packets at or after this time (epoch seconds).
    #[arg(long)]
    from: Option<f64>,
    /// Only packets at or before this time (epoch seconds).
    #[arg(long)]
    to: Option<f64>,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: PcapArgs) -> anyhow::Result<ExitCode> {
    let uid = detector::detect::parse_uid(&args.uid).with_context(|| format!("{:?} is not a flow uid", args.uid))?;
    let t = |s: Option<f64>| s.filter(|f| f.is_finite()).map(|f| schema::Time((f * 1e6).round() as i64));
    let (dlt, pkts) = sensor::ring::flow_packets(&args.ring, uid, t(args.from), t(args.to))
        .with_context(|| format!("reading the ring under {}", args.ring.display()))?;
    if pkts.is_empty() {
        eprintln!("no packets of {} in {}", args.uid, args.ring.display());
        return Ok(ExitCode::FAILURE);
    }
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&args.out).with_context(|| format!("cannot write {}", args.out.display()))?,
    );
    sensor::ring::write_pcap(&mut f, dlt, &pkts)?;
    std::io::Write::flush(&mut f)?;
    eprintln!("{} packets of {} written to {}", pkts.len(), args.uid, args.out.display());
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
pub enum EvidenceCmd {
    /// Verify a bundle: the manifest's signature and every file's SHA-256.
    Verify {
        bundle: PathBuf,
        /// The SOC's public key (`evidence-key.pub` of its data folder):
        /// without it, the bundle is checked against the key it carries.
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

pub fn evidence(cmd: EvidenceCmd) -> anyhow::Result<ExitCode> {
    let EvidenceCmd::Verify { bundle, key } = cmd;
    let bytes = std::fs::read(&bundle).with_context(|| format!("cannot read {}", bundle.display()))?;
    let key = match &key {
        Some(k) => Some(std::fs::read_to_string(k).with_context(|| format!("cannot read {}", k.display()))?),
        None => None,
    };
    match siem::evidence::verify(&bytes, key.as_deref()) {
        Ok(v) => {
            println!(
                "OK: {} files, exported by {} at {}, signed by {}{}",
                v.files,
                v.manifest["exported_by"].as_str().unwrap_or("?"),
                v.manifest["exported_at"].as_str().unwrap_or("?"),
                v.public_key,
                if key.is_some() {
                    " (the expected key)"
                } else {
                    " (the key it carries: pass --key to check it is the SOC's)"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("FAILED: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

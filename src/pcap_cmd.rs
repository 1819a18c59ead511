//! `citysoc pcap`: one flow's packets from the packet ring (and the
//! evidence store beside it) as a pcap file.

use anyhow::Context;
use clap::Args;
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

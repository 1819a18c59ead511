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
    #[arg(long, required_unless_present = "filter", conflicts_with = "filter")]
    uid: Option<String>,
    /// Instead of a flow: a BPF filter (tcpdump's language) over `--from`-`--to`.
    #[arg(long, requires_all = ["from", "to"])]
    filter: Option<String>,
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
    let t = |s: Option<f64>| s.filter(|f| f.is_finite()).map(|f| schema::Time((f * 1e6).round() as i64));
    let (what, dlt, pkts) = match (&args.uid, &args.filter) {
        (Some(u), _) => {
            let uid = detector::detect::parse_uid(u).with_context(|| format!("{u:?} is not a flow uid"))?;
            let (dlt, pkts) = sensor::ring::flow_packets(&args.ring, uid, t(args.from), t(args.to))
                .with_context(|| format!("reading the ring under {}", args.ring.display()))?;
            (u.clone(), dlt, pkts)
        }
        (None, Some(f)) => {
            let (Some(from), Some(to)) = (t(args.from), t(args.to)) else {
                anyhow::bail!("--filter needs --from and --to")
            };
            let (dlt, pkts, cut) =
                sensor::ring::filter_packets(&args.ring, f, from, to, siem::api::MAX_FILTERED_PACKETS)
                    .map_err(anyhow::Error::msg)?;
            if cut {
                eprintln!("more than {} packets match: the first ones are written", siem::api::MAX_FILTERED_PACKETS);
            }
            (format!("filter {f:?}"), dlt, pkts)
        }
        (None, None) => anyhow::bail!("give --uid or --filter"),
    };
    if pkts.is_empty() {
        eprintln!("no packets of {what} in {}", args.ring.display());
        return Ok(ExitCode::FAILURE);
    }
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&args.out).with_context(|| format!("cannot write {}", args.out.display()))?,
    );
    sensor::ring::write_pcap(&mut f, dlt, &pkts)?;
    std::io::Write::flush(&mut f)?;
    eprintln!("{} packets of {what} written to {}", pkts.len(), args.out.display());
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

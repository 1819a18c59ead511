//! The SIEM's view of a sensor's packet ring on this machine: flows'
//! packets for the pcap endpoint and evidence bundles.

use schema::Time;
use sensor::ring::{filter_packets, flow_packets, write_pcap};
use siem::api::PacketSource;
use std::path::PathBuf;

pub struct RingPackets {
    pub dir: PathBuf,
}

impl PacketSource for RingPackets {
    fn pcap(&self, uids: &[String], from: Option<f64>, to: Option<f64>) -> Result<Option<Vec<u8>>, String> {
        let t = |s: Option<f64>| s.map(|f| Time((f * 1e6).round() as i64));
        let mut dlt = 1;
        let mut all = Vec::new();
        for u in uids {
            let Some(uid) = detector::detect::parse_uid(u) else { continue };
            let (d, pkts) = flow_packets(&self.dir, uid, t(from), t(to)).map_err(|e| e.to_string())?;
            if !pkts.is_empty() {
                dlt = d;
                all.extend(pkts);
            }
        }
        if all.is_empty() {
            return Ok(None);
        }
        all.sort_by_key(|p| p.ts);
        let mut out = Vec::new();
        write_pcap(&mut out, dlt, &all).map_err(|e| e.to_string())?;
        Ok(Some(out))
    }

    fn filtered(&self, filter: &str, from: f64, to: f64, max: usize) -> Result<Option<Vec<u8>>, String> {
        let t = |f: f64| Time((f * 1e6).round() as i64);
        let (dlt, pkts, _) = filter_packets(&self.dir, filter, t(from), t(to), max)?;
        if pkts.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::new();
        write_pcap(&mut out, dlt, &pkts).map_err(|e| e.to_string())?;
        Ok(Some(out))
    }
}

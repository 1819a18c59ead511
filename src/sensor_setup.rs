//! Turning the sensor's configuration into the pipeline's runtime settings.

use schema::Interval;
use sensor::output::LogWriter;
use sensor::pipeline::PipelineConfig;
use sensor::worker::WorkerConfig;
use serde::Deserialize;
use std::path::Path;

/// The sensor's TOML configuration file. Every field is optional; command-line
/// flags override the file.
#[derive(Clone, Debug, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SensorConfig {
    /// Name of this sensor in the `peer` field of weird.log and stats.log.
    pub sensor_name: String,
    /// Worker threads processing packets.
    pub workers: usize,
    /// Flows tracked at once (all workers together); beyond it the flow
    /// nearest to its own timeout is logged and evicted.
    pub max_flows: usize,
    /// TCP inactivity timeout once a connection is established.
    pub tcp_inactivity_secs: u64,
    /// UDP inactivity timeout.
    pub udp_inactivity_secs: u64,
    /// ICMP inactivity timeout.
    pub icmp_inactivity_secs: u64,
    /// Inactivity timeout of other IP protocols.
    pub other_inactivity_secs: u64,
    /// Verify checksums and skip packets that fail (as Zeek without `-C`).
    pub verify_checksums: bool,
    /// Datagrams under reassembly at once, per worker.
    pub frag_max_datagrams: usize,
    /// Memory for fragment reassembly, per worker.
    pub frag_max_mb: usize,
    /// Fragments accepted for one datagram.
    pub frag_max_per_datagram: u16,
    /// Time after which an incomplete datagram is dropped.
    pub frag_timeout_secs: u64,
    /// Nested tunnels followed at most.
    pub max_tunnel_depth: u8,
    /// Seed of the Community ID hash.
    pub community_id_seed: u16,
    /// Fixed seed for reproducible uids; unset draws one per run.
    pub uid_seed: Option<u64>,
    /// Live capture: bytes kept of each packet.
    pub snaplen: i32,
    /// Live capture: kernel buffer in MiB.
    pub buffer_mb: i32,
    /// Live capture: put the interface in promiscuous mode.
    pub promiscuous: bool,
    /// Run the protocol analyzers (DNS, HTTP, TLS, SSH, FTP, NTP); off, the
    /// sensor writes conn.log, weird.log and tunnel.log only.
    pub analyzers: bool,
    /// Out-of-order TCP data all streams of one worker may hold for the
    /// analyzers; past it, holes are declared gaps at once.
    pub reassembly_memory_mb: usize,
    /// Store transferred files under `<log dir>/extract_files/`.
    pub extract_files: bool,
    /// Bytes of one file stored at most (the rest is cut off).
    pub extract_max_file_bytes: u64,
    /// Files stored at most in one run.
    pub extract_max_files: u64,
    /// The city's networks (`10.0.0.0/8`, ...) for `local_orig` and
    /// `local_resp`; empty means the private address space, as in Zeek.
    pub local_nets: Vec<String>,
    /// Detection (Sigma, YARA, threat intelligence) run on the records.
    pub detect: crate::detection::DetectSettings,
    /// Log SNMP community strings as `<redacted>` (they are passwords).
    pub snmp_redact_community: bool,
    /// The passive device inventory (`known_devices.log`).
    pub inventory: sensor::inventory::InventoryConfig,
    /// The packet ring (`[ring]`): captured packets kept for evidence.
    pub ring: RingSettings,
    /// Serve `/metrics` (Prometheus), `/healthz` and `/readyz` on this
    /// address (`127.0.0.1:9101`); unset, no listener. `--metrics` overrides
    /// it. The endpoints take no token: bind a loopback or management
    /// address.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Started as root, become this user (and its groups) once the capture
    /// is open, before the first packet is read (`--user`). Unset: stay as
    /// started. A change that fails stops the sensor.
    pub user: Option<String>,
}

/// The `[ring]` table: where and how much of the traffic is kept.
#[derive(Clone, Debug, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RingSettings {
    /// The ring's folder (`--ring`); unset: no packets are kept.
    pub dir: Option<std::path::PathBuf>,
    /// Size of one segment file, MiB.
    pub segment_mb: u64,
    /// Disk budget of all segments, MiB (the evidence store apart).
    pub budget_mb: u64,
    /// Segments older than this are deleted even within the budget (0: never).
    pub max_age_hours: u64,
    /// Bytes of each flow kept, KiB (0: all); flows an alert names are kept whole.
    pub flow_kb: u64,
    /// Networks whose payloads are never stored: their frames keep their headers only.
    pub headers_only: Vec<String>,
    /// Minutes of traffic always kept, past the budget if need be, so the
    /// flows of alerts still to come are there to pin.
    pub hold_minutes: u64,
}

impl Default for RingSettings {
    fn default() -> Self {
        RingSettings {
            dir: None,
            segment_mb: 64,
            budget_mb: 10_240,
            max_age_hours: 0,
            flow_kb: 1024,
            headers_only: Vec::new(),
            hold_minutes: 15,
        }
    }
}

impl RingSettings {
    pub fn setup(&self) -> Option<sensor::worker::RingSetup> {
        let dir = self.dir.clone()?;
        let headers_only = if self.headers_only.is_empty() {
            None
        } else {
            // Validated before use.
            sensor::flow::LocalNets::parse(&self.headers_only).ok()
        };
        Some(sensor::worker::RingSetup {
            cfg: std::sync::Arc::new(sensor::ring::RingConfig {
                dir,
                segment_bytes: self.segment_mb.clamp(1, 4000) << 20,
                budget_bytes: self.budget_mb << 20,
                max_age_secs: self.max_age_hours.saturating_mul(3600),
                flow_bytes: self.flow_kb << 10,
                hold_secs: self.hold_minutes.saturating_mul(60),
                headers_only,
            }),
            pins: std::sync::Arc::default(),
        })
    }
}

impl Default for SensorConfig {
    fn default() -> Self {
        let w = WorkerConfig::default();
        SensorConfig {
            sensor_name: "sensor".into(),
            workers: 1,
            max_flows: w.flow.max_flows,
            tcp_inactivity_secs: 300,
            udp_inactivity_secs: 60,
            icmp_inactivity_secs: 60,
            other_inactivity_secs: 60,
            verify_checksums: false,
            frag_max_datagrams: w.frag.max_datagrams,
            frag_max_mb: w.frag.max_bytes >> 20,
            frag_max_per_datagram: w.frag.max_fragments_per_datagram,
            frag_timeout_secs: 60,
            max_tunnel_depth: w.max_tunnel_depth,
            community_id_seed: 0,
            uid_seed: None,
            snaplen: 65_535,
            buffer_mb: 64,
            promiscuous: true,
            analyzers: true,
            reassembly_memory_mb: 64,
            extract_files: false,
            extract_max_file_bytes: 16 << 20,
            extract_max_files: 10_000,
            local_nets: Vec::new(),
            detect: crate::detection::DetectSettings::default(),
            snmp_redact_community: false,
            inventory: sensor::inventory::InventoryConfig::default(),
            ring: RingSettings::default(),
            metrics_listen: None,
            user: None,
        }
    }
}

impl SensorConfig {
    /// The device inventory over `inner`, with this sensor's local networks.
    pub fn with_inventory<S: sensor::output::EventSink>(&self, inner: S) -> sensor::inventory::InventorySink<S> {
        let nets = sensor::flow::LocalNets::parse(&self.local_nets).unwrap_or_default();
        if let Some(path) = self.inventory.oui_file.as_deref().filter(|_| self.inventory.enabled) {
            // A registry that cannot be read leaves the built-in one: the
            // inventory goes on, a vendor may be missing.
            match sensor::inventory::use_registry(path) {
                Ok(Some(n)) => tracing::info!(path = %path.display(), assignments = n, "oui registry"),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "oui registry not read, the built-in one is used"),
            }
        }
        sensor::inventory::InventorySink::new(inner, self.inventory.clone(), nets)
    }

    pub fn load(path: &Path) -> anyhow::Result<SensorConfig> {
        let source = crate::config_file::Source::read(path)?;
        Ok(SensorConfig::check(&source)?)
    }

    /// The file's settings, or every problem of it (unknown keys, values of
    /// the wrong type, values out of range), each on its line.
    pub fn check(source: &crate::config_file::Source) -> Result<SensorConfig, crate::config_file::Problems> {
        let (cfg, mut list) = source.parse_lenient::<SensorConfig>()?;
        // The messages start with the key they are about
        // (`workers must be ...`, `ring.headers_only: ...`): its line is added.
        for msg in cfg.validate().err().unwrap_or_default() {
            let head = msg.split([' ', ':']).next().unwrap_or_default();
            let line = if !head.is_empty() && head.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '.') {
                source.line_of_key(head)
            } else {
                None
            };
            list.push(crate::config_file::Problem { line, key: None, msg });
        }
        if list.is_empty() {
            Ok(cfg)
        } else {
            Err(source.problems(list))
        }
    }

    /// Collects every problem before failing.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        if self.workers == 0 || self.workers > 256 {
            errs.push(format!("workers must be 1..=256, not {}", self.workers));
        }
        if self.max_flows == 0 {
            errs.push("max_flows must be positive".into());
        }
        for (name, v) in [
            ("tcp_inactivity_secs", self.tcp_inactivity_secs),
            ("udp_inactivity_secs", self.udp_inactivity_secs),
            ("icmp_inactivity_secs", self.icmp_inactivity_secs),
            ("other_inactivity_secs", self.other_inactivity_secs),
            ("frag_timeout_secs", self.frag_timeout_secs),
        ] {
            if v == 0 {
                errs.push(format!("{name} must be positive"));
            }
        }
        if self.extract_files && (self.extract_max_file_bytes == 0 || self.extract_max_files == 0) {
            errs.push("extract_max_file_bytes and extract_max_files must be positive when extract_files is on".into());
        }
        errs.extend(self.detect.validate());
        if self.inventory.max_devices == 0 || self.inventory.max_addresses_per_mac == 0 {
            errs.push("inventory.max_devices and inventory.max_addresses_per_mac must be positive".into());
        }
        if let Err(e) = sensor::flow::LocalNets::parse(&self.local_nets) {
            errs.push(e);
        }
        if let Err(e) = sensor::flow::LocalNets::parse(&self.ring.headers_only) {
            errs.push(format!("ring.headers_only: {e}"));
        }
        if self.ring.dir.is_some() && (self.ring.budget_mb == 0 || self.ring.segment_mb == 0) {
            errs.push("ring.budget_mb and ring.segment_mb must be positive".into());
        }
        if self.snaplen < 64 {
            errs.push(format!("snaplen must be at least 64, not {}", self.snaplen));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    /// The writer of the log directory, storing files when extraction is on.
    pub fn log_writer(&self, dir: &Path) -> anyhow::Result<LogWriter> {
        let w = LogWriter::new(dir)?;
        Ok(if self.extract_files { w.with_extraction(self.extract_max_files)? } else { w })
    }

    pub fn pipeline(&self) -> PipelineConfig {
        let mut w = WorkerConfig::default();
        let secs = |s: u64| Interval::from_secs(s.min(i64::MAX as u64 / 1_000_000) as i64);
        w.sensor_name = self.sensor_name.clone();
        w.verify_checksums = self.verify_checksums;
        w.max_tunnel_depth = self.max_tunnel_depth;
        w.flow.tcp_inactivity = secs(self.tcp_inactivity_secs);
        w.flow.udp_inactivity = secs(self.udp_inactivity_secs);
        w.flow.icmp_inactivity = secs(self.icmp_inactivity_secs);
        w.flow.other_inactivity = secs(self.other_inactivity_secs);
        w.flow.max_flows = self.max_flows.div_ceil(self.workers.max(1));
        w.flow.uid_seed = self.uid_seed;
        w.flow.community_id_seed = self.community_id_seed;
        w.flow.analyzers = self.analyzers;
        w.flow.stream_memory = self.reassembly_memory_mb << 20;
        // Validated before use; an invalid list falls back to the default.
        w.flow.local_nets = sensor::flow::LocalNets::parse(&self.local_nets).unwrap_or_default();
        w.flow.redact_snmp_community = self.snmp_redact_community;
        w.flow.keep_file_bytes = if self.extract_files { self.extract_max_file_bytes } else { 0 };
        w.frag.max_datagrams = self.frag_max_datagrams;
        w.frag.max_bytes = self.frag_max_mb << 20;
        w.frag.max_fragments_per_datagram = self.frag_max_per_datagram;
        w.frag.timeout = secs(self.frag_timeout_secs);
        w.ring = self.ring.setup();
        PipelineConfig { workers: self.workers, worker: w, ..PipelineConfig::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_bad_values_are_reported_together() {
        let e = toml::from_str::<SensorConfig>("workers = 2\nbogus = 1").unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        let cfg: SensorConfig = toml::from_str("workers = 0\nsnaplen = 10\nudp_inactivity_secs = 0").unwrap();
        assert_eq!(cfg.validate().unwrap_err().len(), 3);
    }
}

//! `rules/models.toml`: each model's rule identity and thresholds, as data
//! an admin tunes. A table that does not load is reported with its file and
//! line, and the other models keep running.

use crate::error::{Code, RuleError};
use schema::Severity;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

/// The tables `models.toml` may hold, one per model.
pub const MODEL_IDS: &[&str] = &["scan", "flood", "beacon", "dns", "brute", "iot"];

/// What every model's table carries besides its thresholds.
#[derive(Clone, Debug, PartialEq)]
pub struct Common {
    /// `rule.id` of the alerts.
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub attack: Vec<String>,
    pub enabled: bool,
    /// Sources (or devices) the model leaves alone: CIDRs or `%placeholder%`
    /// names (the city's vulnerability scanners, its monitoring).
    pub exclude: Nets,
}

/// A list of networks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Nets(pub Vec<cidr::IpCidr>);

impl Nets {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    fn parse(items: &[String], placeholders: &HashMap<String, Vec<String>>) -> Result<Nets, String> {
        let mut out = Vec::new();
        for it in items {
            let vals: Vec<String> = match it.strip_prefix('%').and_then(|s| s.strip_suffix('%')) {
                Some(name) => placeholders.get(name).cloned().ok_or_else(|| format!("unknown placeholder %{name}%"))?,
                None => vec![it.clone()],
            };
            for v in vals {
                out.push(v.parse::<cidr::IpCidr>().map_err(|e| format!("{v:?} is not a network: {e}"))?);
            }
        }
        Ok(Nets(out))
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    #[serde(skip)]
    pub common: Option<Common>,
    pub window_secs: u64,
    /// Distinct probed ports of one host.
    pub vertical_ports: usize,
    /// Distinct probed hosts, on any ports.
    pub horizontal_hosts: usize,
    /// Distinct hosts sent ICMP echo requests.
    pub sweep_hosts: usize,
    /// Sources tracked per window at most.
    pub max_sources: usize,
    /// Probes remembered per source and window (enough to pass every
    /// threshold; beyond, counts say "at least").
    pub max_probes: usize,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            common: None,
            window_secs: 300,
            vertical_ports: 20,
            horizontal_hosts: 20,
            sweep_hosts: 20,
            max_sources: 50_000,
            max_probes: 2048,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FloodConfig {
    #[serde(skip)]
    pub common: Option<Common>,
    pub bucket_secs: u64,
    /// Half-open TCP connections to one host in a bucket.
    pub syn_min: u64,
    /// UDP flows to one host in a bucket.
    pub udp_min: u64,
    /// ICMP echo flows to one host in a bucket.
    pub icmp_min: u64,
    /// Reply bytes from amplifying services to one host in a bucket.
    pub amplification_bytes_min: u64,
    /// Reply/request size ratio of a flow that counts as amplified.
    pub amplification_ratio: f64,
    /// UDP services abused for amplification.
    pub amplification_ports: Vec<u16>,
    /// Once learned, a bucket must also exceed mean + `deviations` x
    /// standard deviation and `factor` x mean of its hour of the day.
    pub deviations: f64,
    pub factor: f64,
    /// Buckets an hour-of-day slot needs before its baseline is used.
    pub min_samples: u32,
    /// EWMA weight of a new bucket.
    pub alpha: f64,
    pub max_hosts: usize,
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            common: None,
            bucket_secs: 10,
            syn_min: 300,
            udp_min: 1000,
            icmp_min: 500,
            amplification_bytes_min: 500_000,
            amplification_ratio: 10.0,
            amplification_ports: vec![19, 53, 123, 161, 389, 1900, 3702, 5683, 11211],
            deviations: 6.0,
            factor: 3.0,
            min_samples: 12,
            alpha: 0.1,
            max_hosts: 50_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BeaconConfig {
    #[serde(skip)]
    pub common: Option<Common>,
    /// Connections of a pair before it is scored.
    pub min_connections: usize,
    /// Time the connections must span.
    pub min_span_secs: u64,
    /// How often (record time) pairs with new connections are scored.
    pub score_every_secs: u64,
    /// Score (0-1) at or above which a pair is a beacon.
    pub threshold: f64,
    /// Beacons are small: pairs whose median request is larger are not scored.
    pub max_median_bytes: u64,
    /// Score pairs whose destination is local too.
    pub include_local: bool,
    /// Destination ports never scored: services that are periodic by
    /// design (DNS, NTP).
    pub ignore_ports: Vec<u16>,
    /// Destinations never scored (CIDRs or `%placeholder%` names): the
    /// vendor clouds the city's devices report to on purpose.
    pub ignore_destinations: Vec<String>,
    #[serde(skip)]
    pub ignored: Nets,
    pub max_pairs: usize,
    /// Connections remembered per pair (the latest are kept).
    pub max_connections: usize,
    /// A single connection open this long (to where beacons would go) is
    /// a C2 channel candidate of its own; 0 turns it off.
    pub long_connection_secs: u64,
}

impl Default for BeaconConfig {
    fn default() -> Self {
        BeaconConfig {
            common: None,
            min_connections: 12,
            min_span_secs: 600,
            score_every_secs: 300,
            threshold: 0.8,
            max_median_bytes: 8192,
            include_local: false,
            ignore_ports: vec![53, 123, 5353],
            ignore_destinations: Vec::new(),
            ignored: Nets::default(),
            max_pairs: 100_000,
            max_connections: 512,
            long_connection_secs: 3600,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    #[serde(skip)]
    pub common: Option<Common>,
    pub window_secs: u64,
    /// Unique subdomains of one registered domain asked by one client.
    pub tunnel_subdomains: usize,
    /// Mean length of those subdomains (characters).
    pub tunnel_min_length: f64,
    /// Mean Shannon entropy of those subdomains (bits per character).
    pub tunnel_min_entropy: f64,
    /// TXT and NULL queries for one registered domain by one client.
    pub txt_queries: u64,
    /// Distinct registered domains answered NXDOMAIN to one client.
    pub dga_nx_domains: usize,
    /// Share of those that look machine-made.
    pub dga_random_share: f64,
    /// NXDOMAIN answers to one client, whatever the names.
    pub nx_burst: u64,
    pub max_keys: usize,
    pub max_names: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            common: None,
            window_secs: 300,
            tunnel_subdomains: 40,
            tunnel_min_length: 20.0,
            tunnel_min_entropy: 3.5,
            txt_queries: 150,
            dga_nx_domains: 12,
            dga_random_share: 0.6,
            nx_burst: 200,
            max_keys: 100_000,
            max_names: 512,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BruteConfig {
    #[serde(skip)]
    pub common: Option<Common>,
    pub window_secs: u64,
    /// Failed logins from one source to one service of one host.
    pub failures: u64,
    /// Distinct accounts tried by one source (spraying), each with few tries.
    pub spray_accounts: usize,
    /// Ports of interactive services without an analyzer (Telnet, RDP,
    /// VNC): a burst of short sessions stands for failed logins.
    pub short_session_ports: Vec<u16>,
    pub short_session_secs: f64,
    pub short_sessions: u64,
    pub max_keys: usize,
}

impl Default for BruteConfig {
    fn default() -> Self {
        BruteConfig {
            common: None,
            window_secs: 300,
            failures: 10,
            spray_accounts: 8,
            short_session_ports: vec![23, 2323, 3389, 5900],
            short_session_secs: 5.0,
            short_sessions: 15,
            max_keys: 50_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IotConfig {
    #[serde(skip)]
    pub common: Option<Common>,
    /// Networks whose hosts are devices with a profile.
    pub device_nets: Vec<String>,
    #[serde(skip)]
    pub devices: Nets,
    /// Record time a device's profile learns before departures count.
    pub learn_secs: u64,
    /// Profile items per kind; a device past it on a kind is not judged on
    /// that kind (it is not the steady device the model is for).
    pub max_items: usize,
    pub max_devices: usize,
    /// Changes an admin accepted as the new normal: `"host kind value"`
    /// lines, e.g. `"10.33.0.7 peer 10.33.1.60"`.
    pub accepted: Vec<String>,
}

impl Default for IotConfig {
    fn default() -> Self {
        IotConfig {
            common: None,
            device_nets: Vec::new(),
            devices: Nets::default(),
            learn_secs: 86_400,
            max_items: 64,
            max_devices: 20_000,
            accepted: Vec::new(),
        }
    }
}

/// Every model's settings, as loaded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelsConfig {
    /// Content hash of the file: alerts name the exact thresholds.
    pub version: String,
    /// How far behind the record clock a record may come and still count.
    pub lateness_secs: u64,
    pub scan: Option<ScanConfig>,
    pub flood: Option<FloodConfig>,
    pub beacon: Option<BeaconConfig>,
    pub dns: Option<DnsConfig>,
    pub brute: Option<BruteConfig>,
    pub iot: Option<IotConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Head {
    #[serde(default = "default_lateness")]
    lateness_secs: u64,
}

fn default_lateness() -> u64 {
    // Zeek's TCP inactivity timeout: a flow's record can come this late.
    300
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommonRaw {
    id: String,
    title: String,
    /// The title in Vietnamese, for the console (which reads it from this
    /// file); the detector raises alerts with `title`.
    #[serde(default, rename = "title_vi")]
    _title_vi: Option<String>,
    level: String,
    #[serde(default)]
    attack: Vec<String>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    exclude: Vec<String>,
}

fn yes() -> bool {
    true
}

const COMMON_KEYS: &[&str] = &["id", "title", "title_vi", "level", "attack", "enabled", "exclude"];

impl ModelsConfig {
    pub fn lateness_us(&self) -> i64 {
        self.lateness_secs.min(86_400 * 30) as i64 * 1_000_000
    }

    /// Loads `models.toml`; a model whose table has an error is left out
    /// and the error returned.
    pub fn load(path: &Path, placeholders: &HashMap<String, Vec<String>>) -> (ModelsConfig, Vec<RuleError>) {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path, placeholders),
            Err(e) => {
                let err = RuleError { code: Code::Io, file: path.into(), line: 0, column: 0, message: e.to_string() };
                (ModelsConfig::default(), vec![err])
            }
        }
    }

    pub fn parse(
        text: &str,
        path: &Path,
        placeholders: &HashMap<String, Vec<String>>,
    ) -> (ModelsConfig, Vec<RuleError>) {
        let mut errors = Vec::new();
        let err = |code, line, message: String| RuleError { code, file: path.into(), line, column: 0, message };
        let mut table: toml::Table = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                let (line, col) = e.span().map_or((0, 0), |s| line_col(text, s.start));
                let mut r = err(Code::Syntax, line, e.message().to_string());
                r.column = col;
                return (ModelsConfig::default(), vec![r]);
            }
        };
        let version = {
            let d = Sha256::digest(text.as_bytes());
            d.iter().take(6).map(|b| format!("{b:02x}")).collect()
        };
        let mut cfg = ModelsConfig { version, lateness_secs: default_lateness(), ..Default::default() };
        let mut head = toml::Table::new();
        for k in ["lateness_secs"] {
            if let Some(v) = table.remove(k) {
                head.insert(k.into(), v);
            }
        }
        match toml::Value::Table(head).try_into::<Head>() {
            Ok(h) => cfg.lateness_secs = h.lateness_secs,
            Err(e) => errors.push(err(Code::Structure, 1, e.to_string())),
        }
        for (name, v) in table {
            let line = header_line(text, &name);
            let toml::Value::Table(t) = v else {
                errors.push(err(Code::Structure, line, format!("{name} must be a table")));
                continue;
            };
            let res = match name.as_str() {
                "scan" => model::<ScanConfig>(t, placeholders).map(|(mut c, common)| {
                    c.common = Some(common);
                    cfg.scan = Some(c);
                }),
                "flood" => model::<FloodConfig>(t, placeholders).map(|(mut c, common)| {
                    c.common = Some(common);
                    cfg.flood = Some(c);
                }),
                "beacon" => model::<BeaconConfig>(t, placeholders).and_then(|(mut c, common)| {
                    c.ignored = Nets::parse(&c.ignore_destinations, placeholders)
                        .map_err(|e| format!("ignore_destinations: {e}"))?;
                    c.common = Some(common);
                    cfg.beacon = Some(c);
                    Ok(())
                }),
                "dns" => model::<DnsConfig>(t, placeholders).map(|(mut c, common)| {
                    c.common = Some(common);
                    cfg.dns = Some(c);
                }),
                "brute" => model::<BruteConfig>(t, placeholders).map(|(mut c, common)| {
                    c.common = Some(common);
                    cfg.brute = Some(c);
                }),
                "iot" => model::<IotConfig>(t, placeholders).and_then(|(mut c, common)| {
                    c.devices = Nets::parse(&c.device_nets, placeholders).map_err(|e| format!("device_nets: {e}"))?;
                    for a in &c.accepted {
                        if parse_accepted(a).is_none() {
                            return Err(format!("accepted: {a:?} is not \"host kind value\""));
                        }
                    }
                    c.common = Some(common);
                    cfg.iot = Some(c);
                    Ok(())
                }),
                other => Err(format!("unknown model {other:?} (known: {})", MODEL_IDS.join(", "))),
            };
            if let Err(m) = res {
                errors.push(err(Code::Structure, line, format!("[{name}]: {m}")));
            }
        }
        (cfg, errors)
    }

    /// The identity of model `name`, if it loaded.
    pub fn common(&self, name: &str) -> Option<&Common> {
        match name {
            "scan" => self.scan.as_ref()?.common.as_ref(),
            "flood" => self.flood.as_ref()?.common.as_ref(),
            "beacon" => self.beacon.as_ref()?.common.as_ref(),
            "dns" => self.dns.as_ref()?.common.as_ref(),
            "brute" => self.brute.as_ref()?.common.as_ref(),
            "iot" => self.iot.as_ref()?.common.as_ref(),
            _ => None,
        }
    }

    /// Every loaded model's identity, enabled or not.
    pub fn all(&self) -> Vec<(&'static str, &Common)> {
        MODEL_IDS.iter().filter_map(|n| self.common(n).map(|c| (*n, c))).collect()
    }
}

/// What an IoT device's profile holds, by kind; the kinds name the
/// lines of `accepted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Peer,
    Port,
    Function,
    Topic,
}

impl Kind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Kind::Peer => "peer",
            Kind::Port => "port",
            Kind::Function => "function",
            Kind::Topic => "topic",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "peer" => Kind::Peer,
            "port" => Kind::Port,
            "function" => Kind::Function,
            "topic" => Kind::Topic,
            _ => return None,
        })
    }
}

/// `"10.33.0.7 peer 10.33.1.60"` → (host, kind, value).
pub fn parse_accepted(s: &str) -> Option<(IpAddr, Kind, String)> {
    let mut it = s.split_whitespace();
    let host = it.next()?.parse().ok()?;
    let kind = Kind::parse(it.next()?)?;
    let value = it.collect::<Vec<_>>().join(" ");
    (!value.is_empty()).then_some((host, kind, value))
}

fn model<T: DeserializeOwned>(
    mut t: toml::Table,
    placeholders: &HashMap<String, Vec<String>>,
) -> Result<(T, Common), String> {
    let mut head = toml::Table::new();
    for k in COMMON_KEYS {
        if let Some(v) = t.remove(*k) {
            head.insert((*k).into(), v);
        }
    }
    let raw: CommonRaw = toml::Value::Table(head).try_into().map_err(|e| e.to_string())?;
    let severity = Severity::parse(&raw.level).ok_or_else(|| format!("level {:?} is not a Sigma level", raw.level))?;
    let exclude = Nets::parse(&raw.exclude, placeholders).map_err(|e| format!("exclude: {e}"))?;
    let common = Common { id: raw.id, title: raw.title, severity, attack: raw.attack, enabled: raw.enabled, exclude };
    let c: T = toml::Value::Table(t).try_into().map_err(|e| e.to_string())?;
    Ok((c, common))
}

fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn header_line(text: &str, name: &str) -> usize {
    let want = format!("[{name}]");
    text.lines().position(|l| l.trim() == want).map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_table_is_reported_at_its_line_and_the_others_load() {
        let text = "lateness_secs = 60\n\n[scan]\nid = \"model:scan\"\ntitle = \"Scan\"\nlevel = \"medium\"\n\n[dns]\nid = \"model:dns\"\ntitle = \"DNS\"\nlevel = \"high\"\ntunel_subdomains = 4\n\n[brute]\nid = \"b\"\ntitle = \"B\"\nlevel = \"urgent\"\n";
        let (cfg, errs) = ModelsConfig::parse(text, Path::new("models.toml"), &HashMap::new());
        assert_eq!(cfg.lateness_secs, 60);
        assert!(cfg.scan.is_some() && cfg.dns.is_none() && cfg.brute.is_none());
        let mut lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        lines.sort();
        assert_eq!(lines, [8, 14], "{errs:?}");
        assert!(errs.iter().any(|e| e.message.contains("tunel_subdomains")), "{errs:?}");
        assert!(errs.iter().any(|e| e.message.contains("urgent")), "{errs:?}");
    }

    #[test]
    fn placeholders_resolve_in_exclusions() {
        let ph = HashMap::from([("vuln_scanners".to_string(), vec!["10.30.0.250/32".to_string()])]);
        let text =
            "[scan]\nid = \"s\"\ntitle = \"S\"\ntitle_vi = \"Quét\"\nlevel = \"low\"\nexclude = [\"%vuln_scanners%\", \"192.0.2.0/24\"]\n";
        let (cfg, errs) = ModelsConfig::parse(text, Path::new("m.toml"), &ph);
        assert!(errs.is_empty(), "{errs:?}");
        let ex = &cfg.scan.unwrap().common.unwrap().exclude;
        assert!(ex.contains(&"10.30.0.250".parse().unwrap()) && ex.contains(&"192.0.2.9".parse().unwrap()));
        let (_, errs) = ModelsConfig::parse(&text.replace("%vuln_scanners%", "%nope%"), Path::new("m.toml"), &ph);
        assert!(errs[0].message.contains("%nope%"), "{errs:?}");
    }
}

//! The SIEM server's configuration (`serve.toml`): what the file says, and
//! the settings `citysoc serve` runs with once it is checked.

use crate::config_file::Problem;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `citysoc serve --config FILE`. Every key is optional; command-line flags
/// override the file.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Data directory: the embedded store, the ingest ledger, console
    /// users and sessions, the audit trail, triage and incidents, the
    /// evidence key and rule versions. Everything `citysoc backup` saves.
    pub data: PathBuf,
    /// Address and port the API, the console and `/metrics` listen on.
    pub listen: String,
    /// Tokens file (TOML: `[sensors]`, `[readers]` and `[admins]`, name =
    /// sha256 of the token). Without it the API is open and may listen on a
    /// loopback address only.
    pub tokens: Option<PathBuf>,
    /// Indexing memory of the embedded store per day partition, MiB.
    pub writer_heap_mb: usize,
    /// Ingest requests processed at once; more get 503 with Retry-After.
    pub ingest_concurrency: usize,
    /// The packet ring of a sensor on this machine (its `[ring] dir`): flows'
    /// packets for `/api/v1/pcap`, the console and evidence bundles.
    pub packets: Option<PathBuf>,
    /// The rules folder sensors fetch and admins edit from the console (its
    /// `models.toml` takes accepted device changes). Unset: the source
    /// checkout's `rules/` for a binary built from one, else
    /// `/usr/share/citysoc/rules`.
    pub rules: Option<PathBuf>,
    /// The scenario captures a rule is tested against before it is saved.
    pub cases: PathBuf,
    /// Store records in ClickHouse instead of the embedded store.
    pub clickhouse: Option<ClickHouseSettings>,
    /// How long records are kept and how much disk they may take.
    pub retention: RetentionSettings,
    /// Serve HTTPS (and optionally require client certificates).
    pub tls: Option<TlsSettings>,
    /// Origins (`https://soc.city.example`) besides the server's own whose
    /// pages may send changes: the one a reverse proxy presents the console
    /// under, when it rewrites `Host`.
    pub allowed_origins: Vec<String>,
    /// The web console.
    pub console: console::ConsoleConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            data: "data".into(),
            listen: "127.0.0.1:8080".into(),
            tokens: None,
            writer_heap_mb: 64,
            ingest_concurrency: 4,
            packets: None,
            rules: None,
            cases: "replay-pcaps".into(),
            clickhouse: None,
            retention: RetentionSettings::default(),
            tls: None,
            allowed_origins: Vec::new(),
            console: console::ConsoleConfig::default(),
        }
    }
}

/// The `[clickhouse]` table.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseSettings {
    /// HTTP address of the server (`http://host:8123`).
    pub url: String,
    /// Database the tables are made in.
    #[serde(default = "default_database")]
    #[schemars(default = "default_database")]
    pub database: String,
    /// A sharded ClickHouse: the cluster's name in the servers'
    /// `remote_servers`; each log's records go to `events_<log>_local` on its
    /// nodes through a `Distributed` table `events_<log>` (see
    /// the book's chapter "A ClickHouse cluster", docs/src/clickhouse-cluster.md).
    #[serde(default)]
    pub cluster: Option<String>,
    /// HTTP address of each node of the cluster.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// How records travel: `lz4` (fewer bytes on the wire) or `none` (less
    /// CPU on both sides, for one machine or a fast LAN).
    #[serde(default = "default_compression")]
    #[schemars(default = "default_compression")]
    pub compression: Compression,
}

fn default_database() -> String {
    "citysoc".into()
}

fn default_compression() -> Compression {
    Compression::Lz4
}

impl Default for ClickHouseSettings {
    fn default() -> Self {
        ClickHouseSettings {
            url: String::new(),
            database: default_database(),
            cluster: None,
            nodes: Vec::new(),
            compression: default_compression(),
        }
    }
}

/// Compression of inserts into ClickHouse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Lz4,
    None,
}

/// The `[retention]` table.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// How often retention runs (`5m`, `1h`); it also runs at start.
    pub interval: String,
    /// Maximum age of each class (`alerts`, `records`, `flows`): a duration
    /// (`30d`, `2y`) or `none`. Classes left out keep their default.
    pub age: BTreeMap<String, String>,
    /// Disk budget of each class (`flows = "50GiB"`) or `none`; past it the
    /// oldest days go first.
    pub budget: BTreeMap<String, String>,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            interval: "5m".into(),
            age: [("alerts", "365d"), ("records", "90d"), ("flows", "30d")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            budget: BTreeMap::new(),
        }
    }
}

/// The `[tls]` table.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Certificate chain (PEM) the server presents.
    pub cert: PathBuf,
    /// The certificate's private key (PEM).
    pub key: PathBuf,
    /// Mutual TLS: every client (sensors, browsers, API users) must present
    /// a certificate from this CA (PEM).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// Settings `citysoc serve` runs with: the file's, overridden by the flags,
/// checked.
pub struct Serve {
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub tokens: Option<siem::api::Tokens>,
    /// The file the tokens came from: a reload (SIGHUP) reads it again.
    pub tokens_file: Option<PathBuf>,
    pub writer_heap_mb: usize,
    pub ingest_concurrency: usize,
    pub packets: Option<PathBuf>,
    pub rules: PathBuf,
    pub cases: PathBuf,
    pub clickhouse: Option<ClickHouseSettings>,
    pub retention_interval: Duration,
    pub retention: siem::retention::Policy,
    pub tls: Option<crate::tls::ServerTls>,
    pub allowed_origins: Vec<String>,
    pub console: console::ConsoleConfig,
}

/// The embedded store's indexing memory, MiB: Tantivy refuses less than
/// 15 MB per writer, and its arena addresses at most 4 GiB.
const HEAP_MB: std::ops::RangeInclusive<usize> = 16..=4000;

fn must_exist(key: &str, p: &Path, errs: &mut Vec<Problem>) {
    if let Err(e) = std::fs::metadata(p) {
        errs.push(Problem::at(key, format!("cannot read {}: {e}", p.display())));
    }
}

fn http_url(key: &str, u: &str, errs: &mut Vec<Problem>) {
    match url::Url::parse(u) {
        Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => {}
        Ok(_) => errs.push(Problem::at(key, format!("'{u}' is not an http(s) address (like http://host:8123)"))),
        Err(e) => errs.push(Problem::at(key, format!("'{u}' is not an address: {e}"))),
    }
}

impl ServeConfig {
    /// The settings to run with, or every problem found.
    pub fn validate(&self, default_rules: impl FnOnce() -> PathBuf) -> Result<Serve, Vec<Problem>> {
        let mut errs = Vec::new();
        let listen = match self.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                errs.push(Problem::at(
                    "listen",
                    format!("'{}' is not an address and port (like 127.0.0.1:8080)", self.listen),
                ));
                None
            }
        };
        let tokens = match &self.tokens {
            Some(p) => match siem::api::Tokens::load(p) {
                Ok(t) => Some(t),
                Err(e) => {
                    errs.push(Problem::at("tokens", e));
                    None
                }
            },
            None => None,
        };
        if let (None, Some(a)) = (&self.tokens, listen) {
            if !a.ip().is_loopback() {
                errs.push(Problem::at(
                    "listen",
                    format!("without tokens the API is open: it listens on a loopback address only, not {a}"),
                ));
            }
        }
        if !HEAP_MB.contains(&self.writer_heap_mb) {
            errs.push(Problem::at(
                "writer_heap_mb",
                format!("must be {}..={}, not {}", HEAP_MB.start(), HEAP_MB.end(), self.writer_heap_mb),
            ));
        }
        if self.ingest_concurrency == 0 || self.ingest_concurrency > 1024 {
            errs.push(Problem::at("ingest_concurrency", format!("must be 1..=1024, not {}", self.ingest_concurrency)));
        }
        let rules = match &self.rules {
            Some(r) => {
                if !r.is_dir() {
                    errs.push(Problem::at("rules", format!("{} is not a folder", r.display())));
                }
                r.clone()
            }
            None => default_rules(),
        };
        if let Some(ch) = &self.clickhouse {
            if ch.url.is_empty() {
                errs.push(Problem::at("clickhouse.url", "the server's address is missing (like http://host:8123)"));
            } else {
                http_url("clickhouse.url", &ch.url, &mut errs);
            }
            if ch.database.is_empty() || !ch.database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                errs.push(Problem::at(
                    "clickhouse.database",
                    format!("'{}' is not a database name (letters, digits and _)", ch.database),
                ));
            }
            match (&ch.cluster, ch.nodes.is_empty()) {
                (Some(_), true) => {
                    errs.push(Problem::at("clickhouse.nodes", "a cluster needs the address of each of its nodes"))
                }
                (None, false) => errs.push(Problem::at("clickhouse.nodes", "nodes are only used with a cluster")),
                _ => {}
            }
            for n in &ch.nodes {
                http_url("clickhouse.nodes", n, &mut errs);
            }
        }
        let retention_interval = match humantime::parse_duration(&self.retention.interval) {
            Ok(d) if d.is_zero() => {
                errs.push(Problem::at("retention.interval", "must be more than zero"));
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                errs.push(Problem::at(
                    "retention.interval",
                    format!("'{}' is not a duration (like 5m): {e}", self.retention.interval),
                ));
                None
            }
        };
        let mut retention = siem::retention::Policy::default();
        for (class, age) in &self.retention.age {
            if let Err(e) = retention.set_age(&format!("{class}={age}")) {
                errs.push(Problem::at(&format!("retention.age.{class}"), e));
            }
        }
        for (class, size) in &self.retention.budget {
            if let Err(e) = retention.set_budget(&format!("{class}={size}")) {
                errs.push(Problem::at(&format!("retention.budget.{class}"), e));
            }
        }
        if let Some(t) = &self.tls {
            must_exist("tls.cert", &t.cert, &mut errs);
            must_exist("tls.key", &t.key, &mut errs);
            if let Some(ca) = &t.client_ca {
                must_exist("tls.client_ca", ca, &mut errs);
            }
        }
        for o in &self.allowed_origins {
            let ok = o
                .split_once("://")
                .is_some_and(|(s, rest)| matches!(s, "http" | "https") && !rest.is_empty() && !rest.contains('/'));
            if !ok {
                errs.push(Problem::at(
                    "allowed_origins",
                    format!(
                        "'{o}' is not an origin: scheme://host[:port], without a path (like https://soc.city.example)"
                    ),
                ));
            }
        }
        for (key, msg) in self.console.validate() {
            errs.push(Problem::at(&format!("console.{key}"), msg));
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Serve {
            data: self.data.clone(),
            listen: listen.unwrap_or_else(|| ([127, 0, 0, 1], 8080).into()),
            tokens,
            tokens_file: self.tokens.clone(),
            writer_heap_mb: self.writer_heap_mb,
            ingest_concurrency: self.ingest_concurrency,
            packets: self.packets.clone(),
            rules,
            cases: self.cases.clone(),
            clickhouse: self.clickhouse.clone(),
            retention_interval: retention_interval.unwrap_or(Duration::from_secs(300)),
            retention,
            tls: self.tls.as_ref().map(|t| crate::tls::ServerTls {
                cert: t.cert.clone(),
                key: t.key.clone(),
                client_ca: t.client_ca.clone(),
            }),
            allowed_origins: self.allowed_origins.clone(),
            console: self.console.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_serve_as_before() {
        let s = ServeConfig::default().validate(|| "rules".into()).map_err(|e| format!("{e:?}")).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.retention_interval, Duration::from_secs(300));
        assert_eq!(s.retention.0, siem::retention::Policy::default().0);
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let cfg: ServeConfig = toml::from_str(
            "listen = '0.0.0.0:80'\nwriter_heap_mb = 1\n[retention]\ninterval = 'soon'\nage = { flows = '0d' }\n\
             [clickhouse]\nurl = 'ftp://x'\ncluster = 'c'\n[tls]\ncert = '/nonexistent/cert.pem'\nkey = '/nonexistent/key.pem'\n",
        )
        .unwrap();
        let errs = cfg.validate(|| "rules".into()).err().unwrap();
        let keys: Vec<_> = errs.iter().map(|p| p.key.clone().unwrap_or_default()).collect();
        for k in [
            "listen",
            "writer_heap_mb",
            "clickhouse.url",
            "clickhouse.nodes",
            "retention.interval",
            "retention.age.flows",
            "tls.cert",
            "tls.key",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} not in {keys:?}");
        }
    }
}

//! `citysoc serve` (the SIEM's API over a store) and `citysoc demo` (the
//! bundled captures through sensor and detector into the embedded store,
//! then served).

use anyhow::{bail, Context};
use citysoc::config_file::{Problem, Source};
use citysoc::serve_config::{Compression, Serve, ServeConfig};
use clap::Args;
use siem::api::{router, AppState};
use siem::store::clickhouse::{ClickHouseConfig, ClickHouseStore};
use siem::store::tantivy::{TantivyConfig, TantivyStore};
use siem::store::Store;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args)]
pub struct ServeArgs {
    /// The server's configuration (serve.toml; see `citysoc config
    /// reference`). The flags below override its keys.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory of the embedded store (and the ingest ledger) [default: data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<String>,
    /// Use a ClickHouse server (`http://host:8123`) instead of the embedded store.
    #[arg(long)]
    clickhouse: Option<String>,
    /// ClickHouse database [default: citysoc].
    #[arg(long)]
    clickhouse_db: Option<String>,
    /// A sharded ClickHouse: the cluster's name in the servers'
    /// `remote_servers`; each log's records go to `events_<log>_local` on its
    /// nodes through a `Distributed` table `events_<log>` (see
    /// the book's chapter "A ClickHouse cluster", docs/src/clickhouse-cluster.md).
    #[arg(long)]
    clickhouse_cluster: Option<String>,
    /// How records travel to ClickHouse: `lz4` (fewer bytes on the wire) or
    /// `none` (less CPU on both sides, for one machine or a fast LAN) [default: lz4].
    #[arg(long, value_enum)]
    clickhouse_compression: Option<citysoc::serve_config::Compression>,
    /// HTTP address of each node of the cluster (repeatable).
    #[arg(long)]
    clickhouse_node: Vec<String>,
    /// Tokens file (TOML: [sensors], [readers] and [admins], name = sha256 of the token).
    /// Without it the API is open and listens on loopback only.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// Indexing memory of the embedded store per day partition, MiB [default: 64].
    #[arg(long)]
    writer_heap_mb: Option<usize>,
    /// Ingest requests processed at once; more get 503 with Retry-After [default: 4].
    #[arg(long)]
    ingest_concurrency: Option<usize>,
    /// Maximum age of a class, CLASS=AGE (`flows=30d`, `alerts=none`); repeatable.
    /// Defaults: alerts 365d, records 90d, flows 30d.
    #[arg(long, value_name = "CLASS=AGE")]
    retain_age: Vec<String>,
    /// Disk budget of a class, CLASS=SIZE (`flows=50GiB`); repeatable. Default: none.
    #[arg(long, value_name = "CLASS=SIZE")]
    retain_budget: Vec<String>,
    /// Console settings (TOML with the keys of `[console]` of serve.toml);
    /// replaces that table of `--config`.
    #[arg(long)]
    console_config: Option<PathBuf>,
    /// How often retention runs [default: 5m].
    #[arg(long)]
    retention_interval: Option<String>,
    /// The packet ring of a sensor on this machine (its `--ring`): flows'
    /// packets for `/api/v1/pcap`, the console and evidence bundles.
    #[arg(long)]
    packets: Option<PathBuf>,
    /// The rules folder admins edit from the console (and whose `models.toml`
    /// takes accepted device changes). Default: the checkout's `rules` for a
    /// development build, else /usr/share/citysoc/rules; none found, the
    /// rule editor is off and sensors cannot fetch rules.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// The scenario captures a rule is tested against before it is saved [default: replay-pcaps].
    #[arg(long)]
    cases: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// The key of `--tls-cert` (PEM).
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Mutual TLS: every client (sensors, browsers, API users) must present a
    /// certificate from this CA (PEM).
    #[arg(long)]
    tls_client_ca: Option<PathBuf>,
    /// An origin (`https://soc.city.example`) besides the server's own
    /// whose pages may send changes: the one a reverse proxy presents the
    /// console under, when it rewrites `Host`. Repeatable.
    #[arg(long, value_name = "ORIGIN")]
    allow_origin: Vec<String>,
}

impl ServeArgs {
    /// The file's settings (or the defaults) with the flags given laid over
    /// them; the keys a flag set, so that their problems name the flag.
    fn settings(&self) -> anyhow::Result<(ServeConfig, Option<Source>, Vec<Problem>)> {
        let source = match &self.config {
            Some(p) => Some(Source::read(p)?),
            None => None,
        };
        let (mut c, unknown) = match &source {
            Some(s) => s.parse_lenient()?,
            None => (ServeConfig::default(), Vec::new()),
        };
        macro_rules! over {
            ($($flag:ident => $($key:ident).+),* $(,)?) => {
                $(if let Some(v) = &self.$flag { c.$($key).+ = v.clone().into(); })*
            };
        }
        over!(data => data, listen => listen, writer_heap_mb => writer_heap_mb,
              ingest_concurrency => ingest_concurrency, cases => cases, retention_interval => retention.interval);
        if self.tokens.is_some() {
            c.tokens = self.tokens.clone();
        }
        if self.packets.is_some() {
            c.packets = self.packets.clone();
        }
        if self.rules.is_some() {
            c.rules = self.rules.clone();
        }
        if self.clickhouse.is_some()
            || self.clickhouse_db.is_some()
            || self.clickhouse_cluster.is_some()
            || !self.clickhouse_node.is_empty()
            || self.clickhouse_compression.is_some()
        {
            let ch = c.clickhouse.get_or_insert_with(Default::default);
            if let Some(u) = &self.clickhouse {
                ch.url = u.clone();
            }
            if let Some(d) = &self.clickhouse_db {
                ch.database = d.clone();
            }
            if self.clickhouse_cluster.is_some() {
                ch.cluster = self.clickhouse_cluster.clone();
            }
            if !self.clickhouse_node.is_empty() {
                ch.nodes = self.clickhouse_node.clone();
            }
            if let Some(z) = self.clickhouse_compression {
                ch.compression = z;
            }
        }
        for (flag, specs, table) in [
            ("--retain-age", &self.retain_age, &mut c.retention.age),
            ("--retain-budget", &self.retain_budget, &mut c.retention.budget),
        ] {
            for spec in specs {
                let Some((class, v)) = spec.split_once('=') else {
                    bail!("{flag} {spec}: expected CLASS=VALUE");
                };
                table.insert(class.trim().to_string(), v.trim().to_string());
            }
        }
        if self.tls_cert.is_some() || self.tls_key.is_some() || self.tls_client_ca.is_some() {
            let old = c.tls.take();
            let cert = self.tls_cert.clone().or_else(|| old.as_ref().map(|t| t.cert.clone()));
            let key = self.tls_key.clone().or_else(|| old.as_ref().map(|t| t.key.clone()));
            let (Some(cert), Some(key)) = (cert, key) else {
                bail!("--tls-cert and --tls-key go together (or with [tls] of --config)");
            };
            let client_ca = self.tls_client_ca.clone().or_else(|| old.and_then(|t| t.client_ca));
            c.tls = Some(citysoc::serve_config::TlsSettings { cert, key, client_ca });
        }
        if !self.allow_origin.is_empty() {
            c.allowed_origins = self.allow_origin.clone();
        }
        if let Some(p) = &self.console_config {
            let s = Source::read(p)?;
            c.console = s.parse()?;
        }
        Ok((c, source, unknown))
    }

    /// The keys a flag sets: their problems are the flag's, not the file's.
    fn flag_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let given = [
            (self.data.is_some(), "data"),
            (self.listen.is_some(), "listen"),
            (self.tokens.is_some(), "tokens"),
            (self.writer_heap_mb.is_some(), "writer_heap_mb"),
            (self.ingest_concurrency.is_some(), "ingest_concurrency"),
            (self.packets.is_some(), "packets"),
            (self.rules.is_some(), "rules"),
            (self.cases.is_some(), "cases"),
            (self.clickhouse.is_some(), "clickhouse.url"),
            (self.clickhouse_db.is_some(), "clickhouse.database"),
            (self.clickhouse_cluster.is_some(), "clickhouse.cluster"),
            (!self.clickhouse_node.is_empty(), "clickhouse.nodes"),
            (self.retention_interval.is_some(), "retention.interval"),
            (!self.retain_age.is_empty(), "retention.age"),
            (!self.retain_budget.is_empty(), "retention.budget"),
            (self.tls_cert.is_some(), "tls.cert"),
            (self.tls_key.is_some(), "tls.key"),
            (self.tls_client_ca.is_some(), "tls.client_ca"),
            (!self.allow_origin.is_empty(), "allowed_origins"),
            (self.console_config.is_some(), "console"),
        ];
        for (set, key) in given {
            if set {
                keys.push(key);
            }
        }
        keys
    }
}

/// The rules folder when neither the file nor a flag names one: the first
/// of the usual places that is there, else the last looked at (it is not a
/// folder, so rule editing stays off and the start says why).
pub(crate) fn default_rules() -> PathBuf {
    citysoc::rules_location(None, None).unwrap_or_else(|e| {
        e.looked.last().cloned().unwrap_or_else(|| PathBuf::from(citysoc::locations::PACKAGED_RULES))
    })
}

/// The settings `citysoc serve` would run with, or every problem of the
/// file and flags, each on its line.
pub(crate) fn checked(args: &ServeArgs) -> anyhow::Result<Serve> {
    let (cfg, source, mut list) = args.settings()?;
    let validated = cfg.validate(default_rules);
    if let Err(more) = &validated {
        list.extend(more.iter().cloned());
    }
    let cfg = match validated {
        Ok(cfg) if list.is_empty() => Ok(cfg),
        _ => Err(list),
    };
    cfg.map_err(|mut list| {
        let flags = args.flag_keys();
        for p in &mut list {
            let by_flag = p.key.as_deref().is_some_and(|k| {
                flags.iter().any(|f| k == *f || k.strip_prefix(f).is_some_and(|rest| rest.starts_with('.')))
            });
            if by_flag {
                // Placed on no line of the file: the value is the flag's.
                p.line = Some(0);
                p.msg.push_str(" (given on the command line)");
            }
        }
        let problems = match &source {
            Some(s) => s.problems(list),
            None => citysoc::config_file::Problems { file: "command line".into(), list },
        };
        anyhow::Error::new(problems)
    })
}

/// Rule editing in the console, when the rules folder is there.
fn rule_editor(rules: &Path, cases: &Path, data: &Path) -> console::editor::Editor {
    if !rules.is_dir() {
        return console::editor::Editor(None);
    }
    console::editor::Editor(Some(Arc::new(citysoc::rule_editor::FolderEditor::new(
        rules.to_path_buf(),
        cases.to_path_buf(),
        data.join("rule-versions"),
    ))))
}

pub(crate) fn open_store(
    data: &Path,
    clickhouse: Option<&str>,
    db: &str,
    heap: usize,
    cluster: Option<siem::store::clickhouse::Cluster>,
    compression: siem::store::clickhouse::Compression,
) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match clickhouse {
        Some(url) => Arc::new(
            ClickHouseStore::open(&ClickHouseConfig {
                url: url.into(),
                database: db.into(),
                user: None,
                password: None,
                cluster,
                compression,
            })
            .with_context(|| format!("ClickHouse at {url}"))?,
        ),
        None => Arc::new(
            TantivyStore::open(data, TantivyConfig { writer_heap_mb: heap })
                .with_context(|| format!("store under {}", data.display()))?,
        ),
    })
}

/// Serves the API and the console; with an interval, enforces retention at
/// start and then every interval.
fn serve(
    state: AppState,
    listen: SocketAddr,
    retention: Option<std::time::Duration>,
    data: &Path,
    console_cfg: console::ConsoleConfig,
    tls: Option<(rustls::ServerConfig, citysoc::tls::ServerTls)>,
    tokens: Option<PathBuf>,
) -> anyhow::Result<()> {
    let state = Arc::new(state);
    let (console, first) =
        console::Console::open(Arc::clone(&state), data, console_cfg).map_err(|e| anyhow::anyhow!("console: {e}"))?;
    let console = Arc::new(console);
    if let Some(pw) = first {
        eprintln!(
            "console: first start, account 'admin' created with the one-time password  {pw}  \
             (shown once; it must be changed at first sign-in)"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!(
            "serving the console on {scheme}://{listen}/ and the API on {scheme}://{listen}/api/v1/; Ctrl-C or SIGTERM stops"
        );
        if let Some(every) = retention {
            let st = Arc::clone(&state);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let st = Arc::clone(&st);
                    match tokio::task::spawn_blocking(move || st.enforce_retention()).await {
                        Ok(Ok(dropped)) => {
                            for d in dropped {
                                eprintln!(
                                    "retention: dropped {} {} ({} records, {} bytes) for its {:?}",
                                    d.class.name(),
                                    d.day,
                                    d.records,
                                    d.bytes,
                                    d.reason
                                );
                            }
                        }
                        Ok(Err(e)) => eprintln!("retention failed (retried next interval): {e}"),
                        Err(e) => eprintln!("retention task failed: {e}"),
                    }
                }
            });
        }
        let seen = Arc::clone(&state);
        let reload = Reload {
            state: Arc::clone(&state),
            console: Arc::clone(&console),
            tokens,
            tls: tls.as_ref().map(|(c, files)| {
                (axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(c.clone())), files.clone())
            }),
        };
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot install the SIGHUP handler")?;
        let tls_live = reload.tls.as_ref().map(|(c, _)| c.clone());
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let r = reload.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || r.run()).await {
                    eprintln!("reload failed: {e}");
                }
            }
        });
        let app = router(state).merge(console::router(console)).into_make_service_with_connect_info::<SocketAddr>();
        match tls_live {
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop_signal())
                    .await?
            }
            Some(rustls_cfg) => {
                let handle = axum_server::Handle::new();
                let h = handle.clone();
                tokio::spawn(async move {
                    stop_signal().await;
                    h.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
                });
                let acceptor =
                    WatchedTls { inner: axum_server::tls_rustls::RustlsAcceptor::new(rustls_cfg), state: seen };
                axum_server::from_tcp(listener.into_std()?).acceptor(acceptor).handle(handle).serve(app).await?
            }
        }
        Ok(())
    })
}

/// Ctrl-C, or SIGTERM (how systemd stops a service): requests under way
/// finish, then the server stops.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Without the handler SIGTERM keeps its default: the process ends.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    eprintln!("stopping: requests under way finish first");
}

/// What SIGHUP reads again without a restart: the tokens file, the
/// certificate and key (a renewed certificate serves new connections), and
/// the rules folder's translated titles. The rules folder itself is read at
/// each use (the rule editor, `/api/v1/rules`). Everything else (listen
/// address, store, console settings, retention) needs a restart.
#[derive(Clone)]
struct Reload {
    state: Arc<AppState>,
    console: Arc<console::Console>,
    tokens: Option<PathBuf>,
    tls: Option<(axum_server::tls_rustls::RustlsConfig, citysoc::tls::ServerTls)>,
}

impl Reload {
    /// Each part on its own: one that does not read keeps what is in force.
    fn run(&self) {
        if let Some(path) = &self.tokens {
            match siem::api::Tokens::load(path) {
                Ok(t) => {
                    eprintln!(
                        "SIGHUP: tokens reloaded from {}: {} sensors, {} readers, {} admins",
                        path.display(),
                        t.sensors.len(),
                        t.readers.len(),
                        t.admins.len()
                    );
                    self.state.replace_tokens(t);
                }
                Err(e) => eprintln!("SIGHUP: tokens not reloaded, the ones in force stay: {e}"),
            }
        }
        if let Some((live, files)) = &self.tls {
            match files.config() {
                Ok(c) => {
                    live.reload_from_config(Arc::new(c));
                    eprintln!("SIGHUP: certificate reloaded from {}", files.cert.display());
                }
                Err(e) => eprintln!("SIGHUP: certificate not reloaded, the one in force stays: {e:#}"),
            }
        }
        let n = self.console.reload_rule_texts();
        eprintln!("SIGHUP: rule titles reloaded ({n} translated); other settings need a restart");
    }
}

/// The TLS acceptor, with every failed handshake logged and audited with
/// the peer's address (at the bounded rate of refusals): a sensor with a
/// wrong certificate shows at the SOC, not only at the sensor.
#[derive(Clone)]
struct WatchedTls {
    inner: axum_server::tls_rustls::RustlsAcceptor,
    state: Arc<AppState>,
}

impl<S: Send + 'static> axum_server::accept::Accept<tokio::net::TcpStream, S> for WatchedTls {
    type Stream =
        <axum_server::tls_rustls::RustlsAcceptor as axum_server::accept::Accept<tokio::net::TcpStream, S>>::Stream;
    type Service = S;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        let peer = stream.peer_addr().map_or_else(|_| "unknown".to_string(), |a| a.ip().to_string());
        let handshake = self.inner.accept(stream, service);
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            let r = handshake.await;
            // A connection closed before a word of TLS (a port probe, a
            // load balancer's health check) refused nothing.
            let closed = |e: &std::io::Error| {
                matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset)
            };
            if let Some(e) = r.as_ref().err().filter(|e| !closed(e)) {
                let why = e.to_string();
                let detail = serde_json::json!({"error": why});
                let _ = tokio::task::spawn_blocking(move || {
                    state.refused(&peer, "-", "tls.refused", &format!("TLS handshake failed: {why}"), detail)
                })
                .await;
            }
            r
        })
    }
}

/// The rules folder's models, for hunts over the stored records; a folder
/// without `models.toml` runs no hunts (said once).
fn attach_hunter(rules: &Path) -> Option<Arc<dyn siem::hunts::Hunter>> {
    match citysoc::hunt::hunter_for(rules) {
        Ok((h, errors)) => {
            for e in errors {
                eprintln!("not loaded for hunting: {e}");
            }
            Some(Arc::new(h))
        }
        Err(e) => {
            eprintln!("hunting is off: {e:#}");
            None
        }
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = checked(&args)?;
    std::fs::create_dir_all(&cfg.data).with_context(|| format!("cannot create {}", cfg.data.display()))?;
    let store = match &cfg.clickhouse {
        Some(ch) => open_store(
            &cfg.data,
            Some(&ch.url),
            &ch.database,
            cfg.writer_heap_mb,
            ch.cluster.clone().map(|name| siem::store::clickhouse::Cluster { name, nodes: ch.nodes.clone() }),
            match ch.compression {
                Compression::None => siem::store::clickhouse::Compression::None,
                Compression::Lz4 => siem::store::clickhouse::Compression::Lz4,
            },
        )?,
        None => open_store(&cfg.data, None, "", cfg.writer_heap_mb, None, Default::default())?,
    };
    let mut state = AppState::open(store, cfg.tokens, &cfg.data, cfg.ingest_concurrency).map_err(anyhow::Error::msg)?;
    state.retention = cfg.retention;
    state.extra_origins = cfg.allowed_origins.clone();
    state.rules_dir = Some(cfg.rules.clone()).filter(|d| d.is_dir());
    state.packets = cfg
        .packets
        .clone()
        .map(|dir| Arc::new(citysoc::evidence::RingPackets { dir }) as Arc<dyn siem::api::PacketSource>);
    if !cfg.rules.is_dir() {
        eprintln!(
            "no rules folder found; looked in {}: rule editing is off and sensors cannot fetch rules",
            citysoc::locations::default_rules_places()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        eprintln!("rules folder {}", cfg.rules.display());
        state.hunter = attach_hunter(&cfg.rules);
    }
    let mut console_cfg = cfg.console;
    console_cfg.models_file = Some(cfg.rules.join("models.toml")).filter(|p| p.is_file());
    console_cfg.editor = rule_editor(&cfg.rules, &cfg.cases, &cfg.data);
    console_cfg.tuning_file = Some(cfg.rules.join("tuning.toml")).filter(|_| cfg.rules.is_dir());
    console_cfg.rules_dir = Some(cfg.rules.clone()).filter(|p| p.is_dir());
    let tls = match &cfg.tls {
        Some(t) => {
            let t = t.clone();
            // Cookies over HTTPS only when the console is served over it.
            console_cfg.secure_cookies = true;
            Some((t.config()?, t))
        }
        None => None,
    };
    serve(state, cfg.listen, Some(cfg.retention_interval), &cfg.data, console_cfg, tls, cfg.tokens_file.clone())?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct DemoArgs {
    /// The scenario captures.
    #[arg(long, default_value = "replay-pcaps")]
    cases: PathBuf,
    /// The rules folder (default: the checkout's `rules` for a development
    /// build, else /usr/share/citysoc/rules).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Where each scenario's logs go.
    #[arg(long, default_value = "demo-logs")]
    log_dir: PathBuf,
    /// The embedded store (emptied first).
    #[arg(long, default_value = "demo-data")]
    data: PathBuf,
    /// Address to serve on (loopback).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Stop after storing; do not serve.
    #[arg(long)]
    no_serve: bool,
    /// The packet ring the scenarios' packets are kept in (emptied first).
    #[arg(long, default_value = "demo-ring")]
    ring: PathBuf,
}

pub fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if !args.listen.ip().is_loopback() {
        bail!("the demo serves an open API: loopback addresses only, not {}", args.listen);
    }
    let cases = citysoc::replay::load_cases(&args.cases)?;
    let settings = citysoc::detection::DetectSettings { rules_dir: args.rules.clone(), ..Default::default() };
    let (rules, rules_dir) = citysoc::detection::load_for_detection(&settings, "demo-sensor")?;
    let mut failed = 0;
    if args.ring.exists() {
        std::fs::remove_dir_all(&args.ring).with_context(|| format!("cannot empty {}", args.ring.display()))?;
    }
    for case in &cases {
        let out = args.log_dir.join(&case.name);
        let outcome = citysoc::replay::run_case_with_ring(case, &out, 1, Some(&rules), Some(&args.ring))?;
        if outcome.failures.is_empty() {
            println!("ok    {:22} {:3} checks  {}", case.name, outcome.checks, case.spec.description);
        } else {
            failed += 1;
            println!("FAIL  {:22} {}", case.name, case.spec.description);
            for f in &outcome.failures {
                println!("      {f}");
            }
        }
    }
    if args.data.exists() {
        std::fs::remove_dir_all(&args.data).with_context(|| format!("cannot empty {}", args.data.display()))?;
    }
    std::fs::create_dir_all(&args.data)?;
    let store: Arc<dyn Store> = Arc::new(TantivyStore::open(&args.data, TantivyConfig::default())?);
    let (ok, bad) = citysoc::replay::ingest_logs(store.as_ref(), &args.log_dir, "demo-sensor")?;
    println!("{} cases, {failed} failed; {ok} records stored in {} ({bad} refused)", cases.len(), args.data.display());
    let alerts = store.search(&{
        let mut r = siem::store::SearchRequest::new(siem::query::parse("_log:alerts", &siem::schema::Catalog::new())?);
        r.limit = 1000;
        r
    })?;
    println!("{} alerts; for example:", alerts.total);
    for a in alerts.hits.iter().take(8) {
        println!(
            "  {:8} {}",
            a["severity"].as_str().unwrap_or(""),
            a["summary"].as_str().unwrap_or("").chars().take(100).collect::<String>()
        );
    }
    if failed > 0 {
        return Ok(ExitCode::FAILURE);
    }
    if args.no_serve {
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "try: curl 'http://{}/api/v1/search?q=_log:alerts%20severity:critical'  and  curl 'http://{}/api/v1/aggregate?q=_log:alerts&agg=terms&field=rule.title'",
        args.listen, args.listen
    );
    let mut state = AppState::open(store, None, &args.data, 4).map_err(anyhow::Error::msg)?;
    // The bundled captures are old on purpose: the demo keeps them whatever
    // their age.
    state.retention = siem::retention::Policy(Default::default());
    state.packets = Some(Arc::new(citysoc::evidence::RingPackets { dir: args.ring.clone() }));
    state.hunter = attach_hunter(&rules_dir);
    let console_cfg = console::ConsoleConfig {
        models_file: Some(rules_dir.join("models.toml")).filter(|p| p.is_file()),
        editor: rule_editor(&rules_dir, &args.cases, &args.data),
        tuning_file: Some(rules_dir.join("tuning.toml")),
        rules_dir: Some(rules_dir.clone()),
        ..Default::default()
    };
    serve(state, args.listen, None, &args.data, console_cfg, None, None)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct InitArgs {
    /// The server's configuration (serve.toml): its `tokens` and `[tls]`
    /// `cert` and `key` say what to make. Flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The tokens file to make when missing.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// The certificate to make (self-signed) when it and its key are missing.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The key of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Where the new clear tokens are written (mode 0600).
    #[arg(long, default_value = "/var/lib/citysoc/initial-tokens.txt")]
    initial_tokens: PathBuf,
    /// A name or address the certificate is valid for (repeatable; default:
    /// this machine's name, localhost and the addresses of its interfaces).
    #[arg(long = "name")]
    names: Vec<String>,
    /// Run as root: give the files to this group (the service's), readable
    /// by it, writable by root only.
    #[arg(long)]
    group: Option<String>,
}

/// A certificate and its key.
type CertAndKey = (PathBuf, PathBuf);

/// The keys of serve.toml that say which secrets the server needs; the
/// rest of the file is the server's to check.
fn secrets_of(config: &Path) -> anyhow::Result<(Option<PathBuf>, Option<CertAndKey>)> {
    let text = std::fs::read_to_string(config).with_context(|| format!("cannot read {}", config.display()))?;
    let v: toml::Table = toml::from_str(&text).with_context(|| format!("{}", config.display()))?;
    let path = |v: Option<&toml::Value>, key: &str| -> anyhow::Result<Option<PathBuf>> {
        match v {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(PathBuf::from(s))),
            Some(_) => bail!("{}: {key} must be a path", config.display()),
        }
    };
    let tokens = path(v.get("tokens"), "tokens")?;
    let tls = v.get("tls").and_then(|t| t.as_table());
    let cert = path(tls.and_then(|t| t.get("cert")), "tls.cert")?;
    let key = path(tls.and_then(|t| t.get("key")), "tls.key")?;
    let tls = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => bail!("{}: tls.cert and tls.key go together", config.display()),
    };
    Ok((tokens, tls))
}

/// `citysoc serve-init`: the tokens file and the certificate, made when
/// missing (see `citysoc::first_start`).
pub fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let (mut tokens, mut tls) = match &args.config {
        Some(c) => secrets_of(c)?,
        None => (None, None),
    };
    if args.tokens.is_some() {
        tokens.clone_from(&args.tokens);
    }
    if let (Some(c), Some(k)) = (&args.tls_cert, &args.tls_key) {
        tls = Some((c.clone(), k.clone()));
    }
    let Some(tokens) = tokens else {
        bail!("no tokens file named (--tokens, or `tokens` in --config): a server without one serves an open API");
    };
    let names = if args.names.is_empty() { citysoc::first_start::default_names() } else { args.names.clone() };
    let made = citysoc::first_start::Init {
        tokens: tokens.clone(),
        initial_tokens: args.initial_tokens.clone(),
        tls: tls.clone(),
        tls_names: names.clone(),
        group: args.group.clone(),
    }
    .run()?;
    match &made.tokens {
        Some((admin, sensor)) => {
            eprintln!(
                "serve-init: made {} with an admin and a sensor token; the tokens are in {} (mode 0600)",
                tokens.display(),
                args.initial_tokens.display()
            );
            // On a terminal the admin sees them at once; a service's output
            // goes to the journal, which is no place for secrets.
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                println!("admin token:  {admin}\nsensor token: {sensor}");
            }
        }
        None => eprintln!("serve-init: {} is there, left as it is", tokens.display()),
    }
    if let Some((cert, _)) = &tls {
        match &made.certificate {
            Some(fp) => eprintln!(
                "serve-init: made a self-signed certificate {} for {}; sensors pin it with --ship-pin {fp}",
                cert.display(),
                names.join(", ")
            ),
            None => eprintln!("serve-init: {} is there, left as it is", cert.display()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

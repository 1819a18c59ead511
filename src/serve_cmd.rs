//! `citysoc serve` (the SIEM's API over a store) and `citysoc demo` (the
//! bundled captures through sensor and detector into the embedded store,
//! then served).

use anyhow::{bail, Context};
use clap::Args;
use siem::api::{router, AppState, Tokens};
use siem::store::clickhouse::{ClickHouseConfig, ClickHouseStore};
use siem::store::tantivy::{TantivyConfig, TantivyStore};
use siem::store::Store;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args)]
pub struct ServeArgs {
    /// Data directory of the embedded store (and the ingest ledger).
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Use a ClickHouse server (`http://host:8123`) instead of the embedded store.
    #[arg(long)]
    clickhouse: Option<String>,
    /// ClickHouse database.
    #[arg(long, default_value = "citysoc")]
    clickhouse_db: String,
    /// A sharded ClickHouse: the cluster's name in the servers'
    /// `remote_servers`; each log's records go to `events_<log>_local` on its
    /// nodes through a `Distributed` table `events_<log>` (see
    /// docs/clickhouse-cluster.md).
    #[arg(long, requires_all = ["clickhouse", "clickhouse_node"])]
    clickhouse_cluster: Option<String>,
    /// How records travel to ClickHouse: `lz4` (fewer bytes on the wire) or
    /// `none` (less CPU on both sides, for one machine or a fast LAN).
    #[arg(long, default_value = "lz4", value_parser = ["lz4", "none"], requires = "clickhouse")]
    clickhouse_compression: String,
    /// HTTP address of each node of the cluster (repeatable).
    #[arg(long, requires = "clickhouse_cluster")]
    clickhouse_node: Vec<String>,
    /// Tokens file (TOML: [sensors], [readers] and [admins], name = sha256 of the token).
    /// Without it the API is open and listens on loopback only.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// Indexing memory of the embedded store per day partition, MiB.
    #[arg(long, default_value_t = 64)]
    writer_heap_mb: usize,
    /// Ingest requests processed at once; more get 503 with Retry-After.
    #[arg(long, default_value_t = 4)]
    ingest_concurrency: usize,
    /// Maximum age of a class, CLASS=AGE (`flows=30d`, `alerts=none`); repeatable.
    /// Defaults: alerts 365d, records 90d, flows 30d.
    #[arg(long, value_name = "CLASS=AGE")]
    retain_age: Vec<String>,
    /// Disk budget of a class, CLASS=SIZE (`flows=50GiB`); repeatable. Default: none.
    #[arg(long, value_name = "CLASS=SIZE")]
    retain_budget: Vec<String>,
    /// Console settings (TOML: idle_timeout_secs, max_sessions, login_failures,
    /// login_window_secs, secure_cookies, time_zone).
    #[arg(long)]
    console_config: Option<PathBuf>,
    /// How often retention runs.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    retention_interval: std::time::Duration,
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
    /// The scenario captures a rule is tested against before it is saved.
    #[arg(long, default_value = "replay-pcaps")]
    cases: PathBuf,
    /// Serve HTTPS with this certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The key of `--tls-cert` (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Mutual TLS: every client (sensors, browsers, API users) must present a
    /// certificate from this CA (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

/// Rule editing in the console, when the rules folder is there.
fn rule_editor(rules: &Path, cases: &Path, data: &Path) -> console::editor::Editor {
    if !rules.is_dir() {
        return console::editor::Editor(None);
    }
    console::editor::Editor(Some(Arc::new(citysoc::rule_editor::FolderEditor {
        rules: rules.to_path_buf(),
        cases: cases.to_path_buf(),
        versions: data.join("rule-versions"),
    })))
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
            match Tokens::load(path) {
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

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let tokens = match &args.tokens {
        Some(p) => Some(Tokens::load(p).map_err(anyhow::Error::msg)?),
        None => None,
    };
    if tokens.is_none() && !args.listen.ip().is_loopback() {
        bail!("without --tokens the API is open: it listens on a loopback address only, not {}", args.listen);
    }
    std::fs::create_dir_all(&args.data).with_context(|| format!("cannot create {}", args.data.display()))?;
    let cluster = args
        .clickhouse_cluster
        .clone()
        .map(|name| siem::store::clickhouse::Cluster { name, nodes: args.clickhouse_node.clone() });
    let compression = match args.clickhouse_compression.as_str() {
        "none" => siem::store::clickhouse::Compression::None,
        _ => siem::store::clickhouse::Compression::Lz4,
    };
    let store = open_store(
        &args.data,
        args.clickhouse.as_deref(),
        &args.clickhouse_db,
        args.writer_heap_mb,
        cluster,
        compression,
    )?;
    let mut policy = siem::retention::Policy::default();
    for spec in &args.retain_age {
        policy.set_age(spec).map_err(|e| anyhow::anyhow!("--retain-age {e}"))?;
    }
    for spec in &args.retain_budget {
        policy.set_budget(spec).map_err(|e| anyhow::anyhow!("--retain-budget {e}"))?;
    }
    if args.retention_interval.is_zero() {
        bail!("--retention-interval must be more than zero");
    }
    // A folder named and not there stops the start; none named and none
    // found leaves rule editing off.
    let rules = match citysoc::rules_location(args.rules.as_deref(), None) {
        Ok(dir) => {
            eprintln!("rules folder {}", dir.display());
            Some(dir)
        }
        Err(e) if e.named => return Err(e.into()),
        Err(e) => {
            eprintln!("{e}: rule editing is off and sensors cannot fetch rules");
            None
        }
    };
    let mut state = AppState::open(store, tokens, &args.data, args.ingest_concurrency).map_err(anyhow::Error::msg)?;
    state.retention = policy;
    state.rules_dir = rules.clone();
    state.packets = args
        .packets
        .clone()
        .map(|dir| Arc::new(citysoc::evidence::RingPackets { dir }) as Arc<dyn siem::api::PacketSource>);
    let console_cfg = match &args.console_config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("{}", p.display()))?
        }
        None => console::ConsoleConfig::default(),
    };
    let mut console_cfg = console_cfg;
    if let Some(rules) = &rules {
        console_cfg.models_file = Some(rules.join("models.toml")).filter(|p| p.is_file());
        console_cfg.editor = rule_editor(rules, &args.cases, &args.data);
        console_cfg.tuning_file = Some(rules.join("tuning.toml"));
        console_cfg.rules_dir = Some(rules.clone());
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let t =
                citysoc::tls::ServerTls { cert: cert.clone(), key: key.clone(), client_ca: args.tls_client_ca.clone() };
            // Cookies over HTTPS only when the console is served over it.
            console_cfg.secure_cookies = true;
            Some((t.config()?, t))
        }
        _ => None,
    };
    serve(state, args.listen, Some(args.retention_interval), &args.data, console_cfg, tls, args.tokens.clone())?;
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

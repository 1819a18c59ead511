use anyhow::Context;
use citysoc::sensor_setup::SensorConfig;
use clap::Args;
use schema::StatsRecord;
use sensor::capture::{LiveSpec, SourceSpec};
use sensor::pipeline::{self, Controls, Hooks, Progress};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["read", "interface"])))]
pub struct SensorArgs {
    /// Read packets from a pcap or pcapng file.
    #[arg(long, short = 'r')]
    read: Option<PathBuf>,
    /// Capture live from this interface.
    #[arg(long, short = 'i')]
    interface: Option<String>,
    /// BPF capture filter (live capture).
    #[arg(long, short = 'f')]
    filter: Option<String>,
    /// Directory for the logs (created if missing).
    #[arg(long, default_value = ".")]
    log_dir: PathBuf,
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Worker threads.
    #[arg(long, short = 'w')]
    workers: Option<usize>,
    /// Bytes kept of each packet (live capture).
    #[arg(long)]
    snaplen: Option<i32>,
    /// Do not put the interface in promiscuous mode.
    #[arg(long)]
    no_promisc: bool,
    /// Verify checksums and skip packets that fail them.
    #[arg(long)]
    verify_checksums: bool,
    /// Seed uids so that the same input gives the same uids.
    #[arg(long)]
    seed: Option<u64>,
    /// Name of this sensor in the logs.
    #[arg(long)]
    name: Option<String>,
    /// Track flows only: no protocol analyzers.
    #[arg(long)]
    no_analyzers: bool,
    /// Store transferred files under <LOG_DIR>/extract_files/
    #[arg(long)]
    extract_files: bool,
    /// Do not run detection (no alerts.log).
    #[arg(long)]
    no_detect: bool,
    /// The rules folder (sigma/, yara/, intel/ under it).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Also ship records and alerts to this SIEM (`http://soc:8080`).
    #[arg(long, requires = "token_file")]
    ship: Option<String>,
    /// File holding the sensor's ingest token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Over https://, trust only SOC certificates from this CA (PEM).
    #[arg(long, requires = "ship")]
    ship_ca: Option<PathBuf>,
    /// Over https://, trust only the SOC certificate with this SHA-256
    /// (hex, colons allowed: `openssl x509 -in CERT -noout -fingerprint -sha256`).
    #[arg(long, requires = "ship")]
    ship_pin: Option<String>,
    /// The sensor's certificate (PEM) for a SOC that asks for one.
    #[arg(long, requires_all = ["ship", "ship_key"])]
    ship_cert: Option<PathBuf>,
    /// The key of `--ship-cert` (PEM).
    #[arg(long, requires = "ship_cert")]
    ship_key: Option<PathBuf>,
    /// Keep captured packets in this folder (the packet ring; `[ring]` sets its budget).
    #[arg(long)]
    ring: Option<PathBuf>,
    /// Where batches wait for the SIEM (default: `<log dir>/spool`).
    #[arg(long)]
    spool_dir: Option<PathBuf>,
    /// The spool's cap, MiB of compressed batches.
    #[arg(long, default_value_t = 1024)]
    spool_mb: u64,
    /// When the spool is full: drop the oldest batches of records (never
    /// alerts), or pause the capture's output until it drains.
    #[arg(long, value_enum, default_value = "drop-oldest")]
    spool_full: SpoolFullArg,
    /// At the end of a run, seconds to wait for the spool to drain (what is
    /// left ships at the next start).
    #[arg(long, default_value_t = 600)]
    ship_wait_secs: u64,
    /// Seconds between stats reports (counters, spool, rule version) of a
    /// live or shipping sensor; 0: only at the end of the run.
    #[arg(long, default_value_t = 10)]
    stats_secs: u64,
    /// With --rules-from-siem, seconds between asks for a new rule set
    /// (0: only at start). SIGHUP reloads the rules folder in any case.
    #[arg(long, default_value_t = 60)]
    rules_poll_secs: u64,
    /// Records per shipped batch.
    #[arg(long, default_value_t = 5000)]
    ship_batch_records: usize,
    /// Started as root: become this user (and its groups) once the capture
    /// is open, before the first packet is read (config key `user`).
    #[arg(long)]
    user: Option<String>,
    /// Run the rules the SIEM serves (its rules folder, as its admins
    /// edited it) instead of a local folder; needs `--ship`.
    #[arg(long, requires = "ship")]
    rules_from_siem: bool,
    /// Serve `/metrics`, `/healthz` and `/readyz` on this address
    /// (`127.0.0.1:9101`; the config's `metrics_listen`).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// After a `--read` run, keep serving its final counters this long, so
    /// that a scrape catches them (SIGINT or SIGTERM ends the wait).
    #[arg(long, default_value_t = 0, requires = "read")]
    metrics_linger_secs: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SpoolFullArg {
    DropOldest,
    Pause,
}

pub fn run(args: SensorArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = match &args.config {
        Some(p) => SensorConfig::load(p)?,
        None => SensorConfig::default(),
    };
    if let Some(w) = args.workers {
        cfg.workers = w;
    }
    if let Some(s) = args.snaplen {
        cfg.snaplen = s;
    }
    if args.no_promisc {
        cfg.promiscuous = false;
    }
    if args.verify_checksums {
        cfg.verify_checksums = true;
    }
    if args.seed.is_some() {
        cfg.uid_seed = args.seed;
    }
    if args.no_analyzers {
        cfg.analyzers = false;
    }
    if args.extract_files {
        cfg.extract_files = true;
    }
    if let Some(n) = &args.name {
        cfg.sensor_name = n.clone();
    }
    if args.no_detect {
        cfg.detect.enabled = false;
    }
    if let Some(r) = &args.rules {
        cfg.detect.rules_dir = Some(r.clone());
    }
    if let Some(u) = &args.user {
        cfg.user = Some(u.clone());
    }
    if let Some(r) = &args.ring {
        cfg.ring.dir = Some(r.clone());
    }
    cfg.validate().map_err(|e| anyhow::anyhow!("invalid settings: {}", e.join("; ")))?;
    // The user to become, looked up before anything is opened: a name
    // that does not resolve stops the start, not the capture.
    let drop_to = match &cfg.user {
        Some(name) => Some(citysoc::privileges::Target::lookup(name)?),
        None => None,
    };

    let spec = match (&args.read, &args.interface) {
        (Some(path), _) => SourceSpec::File(path.clone()),
        (None, Some(iface)) => SourceSpec::Live(LiveSpec {
            interface: iface.clone(),
            filter: args.filter.clone(),
            snaplen: cfg.snaplen,
            promiscuous: cfg.promiscuous,
            buffer_mb: cfg.buffer_mb,
        }),
        (None, None) => anyhow::bail!("either --read or --interface is required"),
    };
    let tls = citysoc::tls::ClientTls {
        ca: args.ship_ca.clone(),
        pin: args.ship_pin.clone(),
        cert: args.ship_cert.clone(),
        key: args.ship_key.clone(),
    };
    // Every shipping setting is checked before the first packet is read:
    // a typo must not cost a whole capture's processing.
    let token = match (&args.ship, &args.token_file) {
        (Some(url), Some(tf)) => Some(check_shipping(url, tf, &tls)?),
        _ => None,
    };
    let controls = Controls::default();
    if args.rules_from_siem {
        if let (Some(url), Some(tf)) = (&args.ship, &args.token_file) {
            cfg.detect.rules_dir = Some(fetch_rules(url, tf, &tls, &args.log_dir)?);
        }
    }
    let mut pcfg = cfg.pipeline();
    let logs = cfg.log_writer(&args.log_dir)?;
    let metrics_addr = args.metrics.or(cfg.metrics_listen);
    let metrics = metrics_addr.map(|_| Arc::new(citysoc::sensor_metrics::SensorMetrics::new()));
    let mut ship_monitor = None;
    let writer = match (&args.ship, token) {
        (Some(url), Some(token)) => {
            let ship = citysoc::ship::ShipConfig {
                url: url.clone(),
                token,
                batch_records: args.ship_batch_records.clamp(1, 100_000),
                batch_secs: 2.0,
                retry_secs: args.ship_wait_secs,
                spool_dir: args.spool_dir.clone().unwrap_or_else(|| args.log_dir.join("spool")),
                spool_bytes: args.spool_mb.max(1) << 20,
                spool_full: match args.spool_full {
                    SpoolFullArg::DropOldest => citysoc::ship::SpoolFull::DropOldest,
                    SpoolFullArg::Pause => citysoc::ship::SpoolFull::Pause,
                },
                tls: tls.clone(),
                report_every: Some(std::time::Duration::from_secs(args.stats_secs)).filter(|d| !d.is_zero()),
                // A live capture has no end of its own: refused, it stops
                // the way a signal stops it. A replay spools to its end.
                stop_on_refusal: args.interface.is_some().then(|| controls.stop.clone()),
                warn_every: std::time::Duration::from_secs(60),
            };
            let sink = citysoc::ship::ShipSink::new(logs, ship, &cfg.sensor_name)?;
            ship_monitor = Some(sink.monitor());
            citysoc::ship::Output::Shipped(Box::new(sink))
        }
        _ => citysoc::ship::Output::Logs(logs),
    };
    let rules = if cfg.detect.enabled {
        let (rules, root) = citysoc::detection::load_for_detection(&cfg.detect, &cfg.sensor_name)?;
        // SIGHUP reloads this same folder, whatever appears elsewhere since.
        cfg.detect.rules_dir = Some(root.clone());
        let live = citysoc::detection::LiveRules::new(rules, rules_version(&root));
        citysoc::detection::attach_live(&mut pcfg, &live);
        Some(live)
    } else {
        None
    };
    if args.stats_secs > 0 && (args.ship.is_some() || args.interface.is_some()) {
        pcfg.report_every = Some(std::time::Duration::from_secs(args.stats_secs));
    }
    let sink = cfg.with_inventory(
        citysoc::detection::MaybeDetecting::live(
            citysoc::sensor_metrics::Counted::new(writer, metrics.clone()),
            rules.as_ref(),
        )
        .with_pins(pcfg.worker.ring.as_ref().map(|r| std::sync::Arc::clone(&r.pins))),
    );

    signal_hook::flag::register(signal_hook::consts::SIGINT, controls.stop.clone())
        .context("cannot install the SIGINT handler")?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, controls.stop.clone())
        .context("cannot install the SIGTERM handler")?;
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, controls.report.clone())
        .context("cannot install the SIGUSR1 handler")?;

    let live = args.interface.is_some();
    // Written after the change of user: the logs, and the spool when shipping.
    let mut written = vec![args.log_dir.clone()];
    if args.ship.is_some() {
        written.push(args.spool_dir.clone().unwrap_or_else(|| args.log_dir.join("spool")));
    }
    let mut hooks = Hooks {
        report: Some(Box::new(|s: &StatsRecord| eprintln!("{}", summary(s)))),
        progress: None,
        // Root (or CAP_NET_RAW) is needed to open a capture, never to read
        // from it: the user is changed before the first packet.
        opened: drop_to.map(|t| {
            Box::new(move || {
                t.become_it().map_err(|e| e.to_string())?;
                for dir in &written {
                    citysoc::privileges::check_writable(dir).map_err(|e| e.to_string())?;
                }
                eprintln!("running as {} (uid {}, gid {}) from here on", t.name, t.uid, t.gid);
                Ok(())
            }) as sensor::pipeline::OpenedHook
        }),
        started: Some(Box::new(move |name: &str| {
            if live {
                eprintln!("capturing on {name}; SIGUSR1 prints the counters, SIGINT or SIGTERM stops");
            }
        })),
    };
    if let Some(path) = &args.read {
        let total = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {percent:>3}% {msg} {binary_bytes_per_sec} ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let started = std::time::Instant::now();
        hooks.progress = Some(Box::new(move |p: Progress| {
            let rate = p.packets as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_position(p.file_bytes.min(total));
            bar.set_message(format!("{} packets, {:.0} pkt/s", p.packets, rate));
            if p.file_bytes >= total {
                bar.finish_and_clear();
            }
        }));
    }

    let stop = controls.stop.clone();
    if let (Some(addr), Some(m)) = (metrics_addr, &metrics) {
        let src = citysoc::sensor_metrics::Sources {
            metrics: Arc::clone(m),
            live: controls.live.clone(),
            rules: rules.clone(),
            ship: ship_monitor.clone(),
        };
        citysoc::sensor_metrics::serve(addr, src)?;
        eprintln!("metrics on http://{addr}/metrics (and /healthz, /readyz)");
    }
    // Rules reload while the capture goes on: on SIGHUP from the rules
    // folder, and with --rules-from-siem whenever the SIEM serves a new
    // version.
    let reloader = match &rules {
        Some(live) => {
            let hup = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
                .context("cannot install the SIGHUP handler")?;
            let siem = match (&args.ship, &args.token_file) {
                (Some(url), Some(tf)) if args.rules_from_siem && args.rules_poll_secs > 0 => {
                    Some((url.clone(), tf.clone(), tls.clone(), std::time::Duration::from_secs(args.rules_poll_secs)))
                }
                _ => None,
            };
            let reload = Reload {
                live: Arc::clone(live),
                settings: cfg.detect.clone(),
                sensor: cfg.sensor_name.clone(),
                log_dir: args.log_dir.clone(),
                hup,
                siem,
                done: Arc::new(AtomicBool::new(false)),
            };
            let done = Arc::clone(&reload.done);
            let h = std::thread::Builder::new().name("rules".into()).spawn(move || reload.run())?;
            Some((done, h))
        }
        None => None,
    };
    let result = pipeline::run(&spec, &pcfg, sink, controls, hooks);
    if let Some((done, h)) = reloader {
        done.store(true, Ordering::Relaxed);
        let _ = h.join();
    }
    let (run, _sink) = result?;
    if let Some(r) = &pcfg.worker.ring {
        // Every alert is known now: the ring can meet its budget.
        let c = sensor::ring::enforce_dir(&r.cfg, &r.pins)?;
        eprintln!(
            "packet ring {}: {} flows pinned by alerts, {} packets carved to evidence, {} segments rotated at the end",
            r.cfg.dir.display(),
            r.pins.len(),
            c.pinned_carved,
            c.segments_deleted
        );
    }
    eprintln!("{}", summary(&run.stats));
    let secs = run.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "{:.2} s, {:.0} packets/s, {:.3} Gbit/s",
        secs,
        run.stats.pkts_read as f64 / secs,
        run.wire_bytes as f64 * 8.0 / secs / 1e9
    );
    if let Some(e) = run.source_error {
        eprintln!("citysoc: {e}");
        return Ok(ExitCode::FAILURE);
    }
    if stop.load(Ordering::Relaxed) {
        eprintln!("stopped by signal; every open flow was logged");
    } else if let Some(addr) = metrics_addr.filter(|_| args.metrics_linger_secs > 0) {
        // A replay can end between two scrapes: its figures stay up a while.
        eprintln!(
            "run finished; its final counters stay on http://{addr}/metrics for {} s (SIGINT or SIGTERM ends the wait)",
            args.metrics_linger_secs
        );
        let until = std::time::Instant::now() + std::time::Duration::from_secs(args.metrics_linger_secs);
        while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The shipping settings, checked as a whole before the run: the SIEM's
/// URL, the token, and the TLS files and pin. Returns the token.
fn check_shipping(url: &str, token_file: &std::path::Path, tls: &citysoc::tls::ClientTls) -> anyhow::Result<String> {
    let u = url::Url::parse(url).map_err(|e| anyhow::anyhow!("--ship {url}: not a URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        anyhow::bail!("--ship {url}: an http:// or https:// URL of the SIEM is needed (`https://soc:8443`)");
    }
    citysoc::ship::check_url(url).map_err(|e| anyhow::anyhow!("--ship {url}: {e}"))?;
    let tls_set = tls.ca.is_some() || tls.pin.is_some() || tls.cert.is_some();
    if tls_set && u.scheme() != "https" {
        anyhow::bail!("--ship {url}: --ship-ca, --ship-pin and --ship-cert need an https:// URL");
    }
    if u.scheme() == "https" {
        tls.config().context("the shipping TLS settings are unusable")?;
    }
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("--token-file: cannot read {}", token_file.display()))?;
    let token = token.trim().to_string();
    if token.is_empty() {
        anyhow::bail!("--token-file: {} is empty", token_file.display());
    }
    // Sent as an HTTP header: a line break or control character would
    // make every request fail, only after the capture.
    if token.chars().any(|c| c.is_control()) {
        anyhow::bail!("--token-file: {} holds more than one line or control characters", token_file.display());
    }
    Ok(token)
}

pub fn summary(s: &StatsRecord) -> String {
    format!(
        "packets: {} read, {} in flows, {} fragments, {} non-IP, {} malformed, {} bad checksum, {} dropped by kernel{}; \
         flows: {} created, {} expired, {} evicted, {} flushed, {} active; {} weirds",
        s.pkts_read,
        s.pkts_flow,
        s.pkts_fragment,
        s.pkts_non_ip,
        s.pkts_malformed,
        s.pkts_bad_checksum,
        s.pkts_dropped_kernel,
        s.pkts_dropped_iface.map(|d| format!(" and {d} by the interface")).unwrap_or_default(),
        s.flows_created,
        s.flows_expired,
        s.flows_evicted,
        s.flows_flushed,
        s.flows_active,
        s.weirds
    )
}

/// The same content hash the SIEM gives the rules folder it serves.
fn rules_version(dir: &std::path::Path) -> Option<String> {
    siem::evidence::rules_tar(dir).ok().map(|v| v.0)
}

/// Replaces the running rule set when asked to (SIGHUP: the rules folder
/// again) or when the SIEM serves a new version.
struct Reload {
    live: Arc<citysoc::detection::LiveRules>,
    settings: citysoc::detection::DetectSettings,
    sensor: String,
    log_dir: PathBuf,
    hup: Arc<AtomicBool>,
    siem: Option<(String, PathBuf, citysoc::tls::ClientTls, std::time::Duration)>,
    done: Arc<AtomicBool>,
}

impl Reload {
    fn run(mut self) {
        let mut polled = std::time::Instant::now();
        while !self.done.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(200));
            if self.hup.swap(false, Ordering::Relaxed) {
                self.load("SIGHUP");
            }
            let Some((url, tf, tls, every)) = &self.siem else { continue };
            if polled.elapsed() < *every {
                continue;
            }
            polled = std::time::Instant::now();
            let running = self.live.current().1;
            match fetch_rules(url, tf, tls, &self.log_dir) {
                Ok(dir) if rules_version(&dir) != running => {
                    self.settings.rules_dir = Some(dir);
                    self.load("the SIEM");
                }
                Ok(_) => {}
                // The SIEM away: the rules in use go on, the next poll tries again.
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "rules not fetched"),
            }
        }
    }

    fn load(&self, from: &str) {
        match self.settings.load(&self.sensor) {
            Ok(rules) => {
                for e in &rules.errors {
                    eprintln!("rule not loaded: {e}");
                }
                let root = self.settings.rules_dir.clone().unwrap_or_default();
                let version = rules_version(&root);
                eprintln!(
                    "rules reloaded from {from} (version {}): {}",
                    version.as_deref().unwrap_or("-"),
                    citysoc::detection::describe(&rules, &root)
                );
                self.live.replace(rules, version);
            }
            // A folder that does not load at all keeps the rules in use.
            Err(e) => eprintln!("rules not reloaded from {from}, the ones in use go on: {e:#}"),
        }
    }
}

/// Downloads the SIEM's rules folder into `<log dir>/rules-<version>`.
fn fetch_rules(
    url: &str,
    token_file: &std::path::Path,
    tls: &citysoc::tls::ClientTls,
    log_dir: &std::path::Path,
) -> anyhow::Result<PathBuf> {
    let token = std::fs::read_to_string(token_file).with_context(|| format!("cannot read {}", token_file.display()))?;
    let resp = tls
        .agent(std::time::Duration::from_secs(60))?
        .get(&format!("{}/api/v1/rules", url.trim_end_matches('/')))
        .set("Authorization", &format!("Bearer {}", token.trim()))
        .call()
        .map_err(|e| match e {
            // The SIEM's own reason, once: ureq's message repeats the URL.
            ureq::Error::Status(code, resp) => {
                let text = resp.into_string().unwrap_or_default();
                let said = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or(text);
                anyhow::anyhow!("the SIEM at {url} did not hand out its rules ({code}: {})", said.trim())
            }
            ureq::Error::Transport(t) => anyhow::anyhow!(
                "the SIEM at {url} did not hand out its rules: {}",
                citysoc::tls::tls_failure(&t).unwrap_or_else(|| {
                    // The kind, and the system's reason beneath it.
                    match std::error::Error::source(&t) {
                        Some(cause) => format!("{}: {cause}", t.kind()),
                        None => t.kind().to_string(),
                    }
                })
            ),
        })?;
    let version = resp.header("x-rules-version").unwrap_or("unknown").to_string();
    if !version.chars().all(|c| c.is_ascii_alphanumeric()) {
        anyhow::bail!("the SIEM sent a malformed rules version");
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut bytes)?;
    let dir = log_dir.join(format!("rules-{version}"));
    // A version names its content: a folder already there is that content
    // (it was renamed into place whole), possibly in use.
    if dir.is_dir() {
        return Ok(dir);
    }
    let tmp = log_dir.join(format!(".rules-{version}.part"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    let n = siem::evidence::unpack_rules(&bytes, &tmp)?;
    std::fs::rename(&tmp, &dir)?;
    eprintln!("rules {version} from the SIEM: {n} files in {}", dir.display());
    Ok(dir)
}

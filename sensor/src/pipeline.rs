//! Threads and queues: one capture thread, `workers` decode/flow threads fed
//! by a symmetric hash of each packet's outer address pair, one output thread.
//! Every queue is bounded: a slow stage slows the capture (and, live, shows up
//! as kernel drops, which are counted) instead of growing memory.

use crate::capture::{DropStats, Next, Source, SourceSpec};
use crate::decode::shard_hash;
use crate::output::EventSink;
use crate::worker::{Worker, WorkerConfig, WorkerCounters};
use crate::SensorError;
use crossbeam_channel::{bounded, Receiver, Sender};
use schema::{Event, Interval, StatsRecord, Time};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub workers: usize,
    pub worker: WorkerConfig,
    /// Packets per batch handed to a worker.
    pub batch_packets: usize,
    /// Batches queued per worker before the capture waits.
    pub queue_batches: usize,
    /// Also emit a stats report (counters since the start) this often, by
    /// the wall clock: the sensor's health at the SOC. The report at the end
    /// of the run comes in any case.
    pub report_every: Option<Duration>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: 1,
            worker: WorkerConfig::default(),
            batch_packets: 1024,
            queue_batches: 8,
            report_every: None,
        }
    }
}

/// Flags the caller sets from signal handlers.
#[derive(Clone, Default)]
pub struct Controls {
    /// Stop capturing, flush every flow and return.
    pub stop: Arc<AtomicBool>,
    /// Report the counters now (and clear the flag).
    pub report: Arc<AtomicBool>,
    /// The counters as of the last second, for a reader on another thread
    /// (the metrics endpoint): the same figures `stats.log` is written from.
    pub live: LiveStats,
}

/// The run's counters, published by the capture loop about once a second
/// and once more, final, at the end.
#[derive(Clone, Default)]
pub struct LiveStats(Arc<Mutex<LiveState>>);

#[derive(Clone, Debug, Default)]
pub struct LiveState {
    /// The counters, as a stats record (none before the source is open).
    pub stats: Option<StatsRecord>,
    /// When the capture loop last published: a loop that stops publishing
    /// is stuck (its workers or output do not keep up, or the source hangs).
    pub updated: Option<Instant>,
    /// The source is open and read; false before and once the run ended.
    pub capturing: bool,
    /// Capturing from an interface (not a file).
    pub live: bool,
}

impl LiveStats {
    pub fn get(&self) -> LiveState {
        self.0.lock().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    fn set(&self, stats: StatsRecord, capturing: bool, live: bool) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *g = LiveState { stats: Some(stats), updated: Some(Instant::now()), capturing, live };
    }
}

/// How far a replay has come, for a progress display.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub packets: u64,
    /// Bytes of the capture file consumed (record headers included).
    pub file_bytes: u64,
}

pub type ProgressHook = Box<dyn FnMut(Progress) + Send>;
pub type ReportHook = Box<dyn FnMut(&StatsRecord) + Send>;
pub type StartedHook = Box<dyn FnOnce(&str) + Send>;
/// Called once the source is open, before any thread is started or packet
/// read; an error stops the run (the sensor drops its privileges here).
pub type OpenedHook = Box<dyn FnOnce() -> Result<(), String> + Send>;

#[derive(Default)]
pub struct Hooks {
    pub progress: Option<ProgressHook>,
    /// Called with the counters when `Controls::report` is raised.
    pub report: Option<ReportHook>,
    /// Called once the source is open and packets are being read.
    pub started: Option<StartedHook>,
    /// Called once the source is open, before any packet is read.
    pub opened: Option<OpenedHook>,
}

pub struct RunSummary {
    pub stats: StatsRecord,
    /// The source failed part-way (a damaged file): everything before the
    /// failure was processed and logged.
    pub source_error: Option<SensorError>,
    pub elapsed: Duration,
    pub wire_bytes: u64,
}

struct Batch {
    data: Vec<u8>,
    pkts: Vec<(Time, u32, u32)>,
    now: Time,
}

impl Batch {
    fn new(cap: usize) -> Batch {
        Batch { data: Vec::with_capacity(cap * 128), pkts: Vec::with_capacity(cap), now: Time(i64::MIN) }
    }
}

#[derive(Default)]
struct CaptureCounters {
    pkts: u64,
    bytes: u64,
    drops: DropStats,
}

fn stats_record(ts: Time, peer: &str, cap: &CaptureCounters, w: &WorkerCounters, live: bool) -> StatsRecord {
    StatsRecord {
        ts,
        peer: peer.to_string(),
        pkts_read: cap.pkts,
        bytes_read: cap.bytes,
        pkts_dropped_kernel: cap.drops.dropped,
        pkts_dropped_iface: live.then_some(cap.drops.if_dropped),
        pkts_flow: w.pkts_flow,
        pkts_non_ip: w.pkts_non_ip,
        pkts_malformed: w.pkts_malformed + w.pkts_tunnel_too_deep,
        pkts_fragment: w.pkts_fragment,
        pkts_bad_checksum: w.pkts_bad_checksum,
        fragments_reassembled: w.fragments_reassembled,
        fragments_dropped: w.fragments_dropped,
        flows_created: w.flows_created,
        flows_expired: w.flows_expired,
        flows_evicted: w.flows_evicted,
        flows_flushed: w.flows_flushed,
        flows_active: w.flows_active,
        reassembly_held_bytes: w.reassembly_held_bytes,
        reassembly_forced_gaps: w.reassembly_forced_gaps,
        weirds: w.weirds,
        version: Some(env!("CARGO_PKG_VERSION").to_string()),
        ..StatsRecord::default()
    }
}

fn sum(all: &[Arc<Mutex<WorkerCounters>>]) -> WorkerCounters {
    let mut t = WorkerCounters::default();
    for c in all {
        let c = c.lock().map(|g| g.clone()).unwrap_or_default();
        t.pkts += c.pkts;
        t.pkts_flow += c.pkts_flow;
        t.pkts_non_ip += c.pkts_non_ip;
        t.pkts_malformed += c.pkts_malformed;
        t.pkts_fragment += c.pkts_fragment;
        t.pkts_bad_checksum += c.pkts_bad_checksum;
        t.pkts_tunnel_too_deep += c.pkts_tunnel_too_deep;
        t.fragments_reassembled += c.fragments_reassembled;
        t.fragments_dropped += c.fragments_dropped;
        t.weirds += c.weirds;
        t.weirds_suppressed += c.weirds_suppressed;
        t.flows_created += c.flows_created;
        t.flows_expired += c.flows_expired;
        t.flows_evicted += c.flows_evicted;
        t.flows_flushed += c.flows_flushed;
        t.flows_active += c.flows_active;
        t.reassembly_held_bytes += c.reassembly_held_bytes;
        t.reassembly_forced_gaps += c.reassembly_forced_gaps;
    }
    t
}

fn wall_now() -> Time {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Time(d.as_micros() as i64)
}

/// Runs the sensor over `spec` until the source ends or `controls.stop` is
/// set, delivering every record to `sink`. Returns the summary and the sink.
pub fn run<S: EventSink + 'static>(
    spec: &SourceSpec,
    cfg: &PipelineConfig,
    sink: S,
    controls: Controls,
    mut hooks: Hooks,
) -> Result<(RunSummary, S), SensorError> {
    let started = Instant::now();
    let mut source = Source::open(spec)?;
    if let Some(f) = hooks.opened.take() {
        f().map_err(SensorError::Setup)?;
    }
    let live = source.is_live();
    let linktype = source.linktype();
    let n = cfg.workers.max(1);
    let peer = cfg.worker.sensor_name.clone();

    let (ev_tx, ev_rx) = bounded::<Vec<Event>>(64);
    let output = thread::Builder::new()
        .name("output".into())
        .spawn(move || output_loop(sink, ev_rx))
        .map_err(|e| SensorError::Thread(e.to_string()))?;

    let mut to_workers: Vec<Sender<Batch>> = Vec::with_capacity(n);
    let mut recycled: Vec<Receiver<Batch>> = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    let mut shared: Vec<Arc<Mutex<WorkerCounters>>> = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = bounded::<Batch>(cfg.queue_batches.max(1));
        let (back_tx, back_rx) = bounded::<Batch>(cfg.queue_batches.max(1) + 2);
        let counters = Arc::new(Mutex::new(WorkerCounters::default()));
        let wcfg = cfg.worker.clone();
        let out = ev_tx.clone();
        let c2 = counters.clone();
        let h = thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || worker_loop(wcfg, linktype, (i, n), rx, back_tx, out, c2))
            .map_err(|e| SensorError::Thread(e.to_string()))?;
        to_workers.push(tx);
        recycled.push(back_rx);
        handles.push(h);
        shared.push(counters);
    }

    if let Some(f) = hooks.started.take() {
        f(source.name());
    }
    let publish_every = Duration::from_secs(1);
    let mut last_publish = Instant::now();
    let mut idle = false;
    controls.live.set(stats_record(wall_now(), &peer, &CaptureCounters::default(), &sum(&shared), live), true, live);
    // The capture loop runs here, on the caller's thread.
    let mut cap = CaptureCounters::default();
    let mut batches: Vec<Batch> = (0..n).map(|_| Batch::new(cfg.batch_packets)).collect();
    let mut now = Time(i64::MIN);
    let mut last_tick = Time(i64::MIN);
    let tick_every = Interval::from_secs(1);
    let mut last_report = Instant::now();
    let mut source_error = None;
    let mut file_bytes: u64 = 24;
    let send = |i: usize, b: &mut Batch, now: Time, recycled: &[Receiver<Batch>]| -> bool {
        let fresh = recycled[i].try_recv().map(|mut r| {
            r.data.clear();
            r.pkts.clear();
            r
        });
        let mut full = std::mem::replace(b, fresh.unwrap_or_else(|_| Batch::new(cfg.batch_packets)));
        full.now = now;
        to_workers[i].send(full).is_ok()
    };
    loop {
        if controls.stop.load(Ordering::Relaxed) {
            break;
        }
        let due = cfg.report_every.is_some_and(|every| last_report.elapsed() >= every);
        if due || controls.report.swap(false, Ordering::Relaxed) {
            if live {
                cap.drops = source.drops();
            }
            let rec = stats_record(if live { wall_now() } else { now.max(Time(0)) }, &peer, &cap, &sum(&shared), live);
            if due {
                last_report = Instant::now();
                // Behind the records already queued; the capture waits if the
                // output is behind, as it does for records.
                let _ = ev_tx.send(vec![Event::Stats(rec.clone())]);
            } else if let Some(r) = hooks.report.as_mut() {
                r(&rec);
            }
        }
        // Checked every few packets (and when idle): a clock read per
        // packet would cost more than the publishing.
        if (cap.pkts % 256 == 0 || idle) && last_publish.elapsed() >= publish_every {
            last_publish = Instant::now();
            if live {
                cap.drops = source.drops();
            }
            let ts = if live { wall_now() } else { now.max(Time(0)) };
            controls.live.set(stats_record(ts, &peer, &cap, &sum(&shared), live), true, live);
        }
        match source.next_packet() {
            Ok(Next::Packet { ts, data, wire_len }) => {
                idle = false;
                cap.pkts += 1;
                cap.bytes += u64::from(wire_len);
                file_bytes += 16 + data.len() as u64;
                if ts > now {
                    now = ts;
                }
                let i = if n == 1 { 0 } else { (shard_hash(linktype, data) % n as u64) as usize };
                let b = &mut batches[i];
                let off = b.data.len() as u32;
                b.data.extend_from_slice(data);
                b.pkts.push((ts, off, data.len() as u32));
                if b.pkts.len() >= cfg.batch_packets && !send(i, b, now, &recycled) {
                    break;
                }
                if cap.pkts % 65_536 == 0 {
                    if let Some(p) = hooks.progress.as_mut() {
                        p(Progress { packets: cap.pkts, file_bytes });
                    }
                }
            }
            Ok(Next::Idle) => {
                idle = true;
                now = now.max(wall_now());
                last_tick = Time(i64::MIN);
            }
            Ok(Next::End) => break,
            Err(e) => {
                source_error = Some(e);
                break;
            }
        }
        if now.since(last_tick) >= tick_every {
            last_tick = now;
            for (i, b) in batches.iter_mut().enumerate() {
                send(i, b, now, &recycled);
            }
        }
    }
    for (i, b) in batches.iter_mut().enumerate() {
        send(i, b, now, &recycled);
    }
    if let Some(p) = hooks.progress.as_mut() {
        p(Progress { packets: cap.pkts, file_bytes });
    }
    if live {
        cap.drops = source.drops();
    }
    drop(to_workers);
    let mut panicked = None;
    for h in handles {
        // The workers log every open flow at the end: on a large table that
        // takes a while, and the reports go on meanwhile.
        while !h.is_finished() {
            thread::sleep(Duration::from_millis(20));
            if cfg.report_every.is_some_and(|every| last_report.elapsed() >= every) {
                last_report = Instant::now();
                let rec =
                    stats_record(if live { wall_now() } else { now.max(Time(0)) }, &peer, &cap, &sum(&shared), live);
                let _ = ev_tx.send(vec![Event::Stats(rec)]);
            }
        }
        if h.join().is_err() {
            panicked = Some(SensorError::Thread("worker".into()));
        }
    }
    let totals = sum(&shared);
    let stats = stats_record(if live { wall_now() } else { now.max(Time(0)) }, &peer, &cap, &totals, live);
    controls.live.set(stats.clone(), false, live);
    let _ = ev_tx.send(vec![Event::Stats(stats.clone())]);
    drop(ev_tx);
    let sink = match output.join() {
        Ok(r) => r?,
        Err(_) => return Err(SensorError::Thread("output".into())),
    };
    if let Some(e) = panicked {
        return Err(e);
    }
    Ok((RunSummary { stats, source_error, elapsed: started.elapsed(), wire_bytes: cap.bytes }, sink))
}

fn worker_loop(
    cfg: WorkerConfig,
    linktype: crate::decode::LinkType,
    (index, workers): (usize, usize),
    rx: Receiver<Batch>,
    back: Sender<Batch>,
    out: Sender<Vec<Event>>,
    counters: Arc<Mutex<WorkerCounters>>,
) {
    let ring = cfg.ring.clone();
    let mut w = Worker::new(cfg);
    if let Some(r) = ring {
        match crate::ring::PacketRing::open(r.cfg, r.pins, index, workers, linktype.dlt()) {
            Ok(ring) => w.attach_ring(ring),
            Err(e) => tracing::error!(error = %e, "packet ring not opened; packets are not kept"),
        }
    }
    let mut events = Vec::new();
    for batch in rx {
        for &(ts, off, len) in &batch.pkts {
            let data = batch.data.get(off as usize..(off + len) as usize).unwrap_or(&[]);
            w.process(ts, linktype, data, &mut events);
        }
        w.tick(batch.now, &mut events);
        // Records go out in bunches (fewer wake-ups of the output thread),
        // and at once with a partial batch: the capture sends those on its
        // clock ticks, so a quiet link still sees its records within a second.
        let partial = batch.pkts.len() < batch.pkts.capacity().min(256);
        let _ = back.try_send(batch);
        if (events.len() >= 512 || (partial && !events.is_empty())) && out.send(std::mem::take(&mut events)).is_err() {
            return;
        }
        if let Ok(mut g) = counters.lock() {
            *g = w.counters();
        }
    }
    // Flush in slices so the output queue, not memory, absorbs a large table.
    while w.finish_some(4096, &mut events) {
        if out.send(std::mem::take(&mut events)).is_err() {
            return;
        }
    }
    if let Ok(mut g) = counters.lock() {
        *g = w.counters();
    }
    let _ = out.send(events);
}

fn output_loop<S: EventSink>(mut sink: S, rx: Receiver<Vec<Event>>) -> Result<S, SensorError> {
    let mut result = Ok(());
    for mut events in rx {
        // Keep draining after a write error so the workers never block; the
        // first error is reported when the run ends.
        if result.is_ok() {
            result = sink.write(&mut events);
        }
    }
    result?;
    sink.flush()?;
    Ok(sink)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::SourceSpec;
    use crate::output::EventSink;

    /// An output slow enough that the workers' last records (every flow
    /// still open at the end of the capture) take a while to pass.
    struct Slow(Arc<Mutex<Vec<StatsRecord>>>);

    impl EventSink for Slow {
        fn write(&mut self, events: &mut [Event]) -> Result<(), SensorError> {
            for e in events.iter() {
                if let Event::Stats(s) = e {
                    self.0.lock().unwrap().push(s.clone());
                }
            }
            if events.iter().any(|e| !matches!(e, Event::Stats(_))) {
                thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        }
        fn flush(&mut self) -> Result<(), SensorError> {
            Ok(())
        }
    }

    #[test]
    fn reports_go_on_while_the_workers_log_the_flows_left_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let cap = dir.path().join("mix.pcap");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&cap).unwrap());
        pcapgen::bench_mix_with(&mut w, 2 << 20, false).unwrap();
        std::io::Write::flush(&mut w).unwrap();
        drop(w);
        let reports = Arc::new(Mutex::new(Vec::new()));
        let cfg = PipelineConfig { report_every: Some(Duration::from_millis(50)), ..Default::default() };
        let spec = SourceSpec::File(cap);
        let (run, _) = run(&spec, &cfg, Slow(Arc::clone(&reports)), Controls::default(), Hooks::default()).unwrap();
        let reports = reports.lock().unwrap();
        // Reports made once every packet was read, the final one aside:
        // none before reports went on through the drain. How many depends
        // on the machine's load, so one is what is asked.
        let after = reports.iter().filter(|r| r.pkts_read == run.stats.pkts_read).count() - 1;
        assert!(after >= 1, "{after} reports after the capture was read, of {}", reports.len());
    }
}

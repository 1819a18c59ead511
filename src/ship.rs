//! Shipping records and alerts to the SIEM's ingest API: JSON lines with
//! their `_log`, zstd-compressed, in batches with ids that make a retry
//! harmless. A batch is retried (with back-off, honouring `Retry-After`)
//! until the SIEM acknowledges it or the retry budget runs out; while it
//! retries, the output thread waits, so the pipeline slows down instead of
//! dropping records.

use schema::Event;
use sensor::output::EventSink;
use sensor::SensorError;
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct ShipConfig {
    /// Base URL of the SIEM (`http://soc:8080`).
    pub url: String,
    pub token: String,
    /// Records per batch.
    pub batch_records: usize,
    /// A partial batch is sent after this long.
    pub batch_secs: f64,
    /// Give up on a batch after retrying this long.
    pub retry_secs: u64,
}

pub struct ShipSink<S> {
    inner: S,
    cfg: ShipConfig,
    agent: ureq::Agent,
    buf: Vec<u8>,
    records: usize,
    started: Instant,
    /// Batch ids: `<run>-<sequence>`, the run drawn once per process.
    run: String,
    seq: u64,
    pub shipped_records: u64,
    pub shipped_batches: u64,
    pub retries: u64,
}

impl<S: EventSink> ShipSink<S> {
    pub fn new(inner: S, cfg: ShipConfig, sensor: &str) -> Self {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let run = format!("{}-{:x}-{:x}", sanitize(sensor), nanos, std::process::id());
        ShipSink {
            inner,
            cfg,
            agent,
            buf: Vec::new(),
            records: 0,
            started: Instant::now(),
            run,
            seq: 0,
            shipped_records: 0,
            shipped_batches: 0,
            retries: 0,
        }
    }

    fn add(&mut self, ev: &Event) -> Result<(), SensorError> {
        let mut v = serde_json::to_value(ev)
            .map_err(|e| SensorError::Log { path: "ship".into(), source: std::io::Error::other(e) })?;
        if let Some(m) = v.as_object_mut() {
            m.insert("_log".into(), serde_json::Value::String(ev.log_name().into()));
        }
        serde_json::to_writer(&mut self.buf, &v)
            .map_err(|e| SensorError::Log { path: "ship".into(), source: std::io::Error::other(e) })?;
        self.buf.push(b'\n');
        self.records += 1;
        Ok(())
    }

    fn send(&mut self) -> Result<(), SensorError> {
        if self.records == 0 {
            return Ok(());
        }
        let err = |m: String| SensorError::Log { path: self.cfg.url.clone().into(), source: std::io::Error::other(m) };
        let body = zstd::encode_all(&self.buf[..], 3).map_err(|e| err(e.to_string()))?;
        self.seq += 1;
        let id = format!("{}-{}", self.run, self.seq);
        let url = format!("{}/api/v1/ingest", self.cfg.url.trim_end_matches('/'));
        let deadline = Instant::now() + Duration::from_secs(self.cfg.retry_secs);
        let mut wait = Duration::from_millis(200);
        loop {
            let r = self
                .agent
                .post(&url)
                .set("Authorization", &format!("Bearer {}", self.cfg.token))
                .set("Content-Encoding", "zstd")
                .set("X-Batch-Id", &id)
                .send_bytes(&body);
            let retry_after = match r {
                Ok(resp) => {
                    let reply: serde_json::Value = resp.into_json().unwrap_or_default();
                    if let Some(bad) = reply["rejected"].as_array().filter(|b| !b.is_empty()) {
                        tracing::warn!(rejected = bad.len(), first = %bad[0], "the SIEM refused records");
                    }
                    break;
                }
                // The SIEM is busy or restarting: wait as it asks.
                Err(ureq::Error::Status(code @ (429 | 502 | 503 | 504), resp)) => {
                    tracing::debug!(code, "SIEM busy");
                    resp.header("Retry-After").and_then(|s| s.parse::<u64>().ok()).map(Duration::from_secs)
                }
                Err(ureq::Error::Status(code, resp)) => {
                    let text = resp.into_string().unwrap_or_default();
                    return Err(err(format!(
                        "the SIEM refused the batch: {code} {}",
                        text.chars().take(200).collect::<String>()
                    )));
                }
                Err(ureq::Error::Transport(t)) => {
                    tracing::debug!(error = %t, "SIEM unreachable");
                    None
                }
            };
            if Instant::now() >= deadline {
                return Err(err(format!("the SIEM did not take batch {id} within {} s", self.cfg.retry_secs)));
            }
            self.retries += 1;
            std::thread::sleep(retry_after.unwrap_or(wait).min(Duration::from_secs(10)));
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        self.shipped_records += self.records as u64;
        self.shipped_batches += 1;
        self.buf.clear();
        self.records = 0;
        self.started = Instant::now();
        Ok(())
    }
}

fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).take(40).collect()
}

impl<S: EventSink> EventSink for ShipSink<S> {
    fn write(&mut self, events: &mut [Event]) -> Result<(), SensorError> {
        self.inner.write(events)?;
        for ev in events.iter() {
            // Counters stay with the sensor's own stats.log.
            if matches!(ev, Event::Stats(_)) {
                continue;
            }
            self.add(ev)?;
            if self.records >= self.cfg.batch_records {
                self.send()?;
            }
        }
        if self.started.elapsed().as_secs_f64() >= self.cfg.batch_secs {
            self.send()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SensorError> {
        self.inner.flush()?;
        self.send()?;
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// The sensor's output: its log files, and the SIEM when shipping.
pub enum Output<S> {
    Logs(S),
    Shipped(Box<ShipSink<S>>),
}

impl<S: EventSink> EventSink for Output<S> {
    fn write(&mut self, events: &mut [Event]) -> Result<(), SensorError> {
        match self {
            Output::Logs(s) => s.write(events),
            Output::Shipped(s) => s.write(events),
        }
    }

    fn flush(&mut self) -> Result<(), SensorError> {
        match self {
            Output::Logs(s) => s.flush(),
            Output::Shipped(s) => s.flush(),
        }
    }
}

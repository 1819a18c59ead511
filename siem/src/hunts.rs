//! Hunts: detection run again over a stored time range while the SIEM
//! serves. The SIEM keeps each hunt (who started it, the range, what it
//! ran, how far it got, what it found) in `hunts/` of its data folder; what
//! runs is the caller's [`Hunter`] (the composition root wires the models
//! and Sigma rules in). It reads through the store the server already holds
//! open, so nothing takes the index writer's lock a second time.

use crate::store::Store;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What one hunt may run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Choice {
    /// `model:scan`, a Sigma rule's id.
    pub id: String,
    pub title: String,
    /// `model` or `sigma`.
    pub kind: String,
}

/// Runs detection over stored records.
pub trait Hunter: Send + Sync {
    /// The models and rules a hunt can run.
    fn choices(&self) -> Vec<Choice>;
    /// Runs the chosen models and rules (their ids; empty: all) over
    /// `[from, to)` of `store`, telling `progress` the records read so far.
    /// Returns the records read and the alerts raised, as the alerts log
    /// holds them.
    fn hunt(
        &self,
        store: &dyn Store,
        from: f64,
        to: f64,
        chosen: &[String],
        progress: &dyn Fn(u64),
    ) -> Result<(u64, Vec<Value>), String>;
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HuntState {
    Running,
    Done,
    Failed,
}

/// One alert a hunt raised.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Finding {
    /// Its place in the hunt's findings, from 1.
    pub n: usize,
    /// The alert as detection made it (`id`, `rule.id`, `summary`, `evidence`…).
    pub alert: Value,
    /// Whether an alert with its id is in the queue: raised live, or
    /// promoted from this hunt.
    #[serde(default)]
    pub in_queue: bool,
    /// Who promoted it to the queue, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_by: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hunt {
    pub id: String,
    pub by: String,
    pub started: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<f64>,
    pub from: f64,
    pub to: f64,
    /// What ran (empty: every model and rule).
    pub chosen: Vec<String>,
    pub state: HuntState,
    /// Records read so far.
    pub records: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub findings: Vec<Finding>,
}

/// Hunts a SIEM keeps at most; the oldest finished ones go first.
pub const MAX_HUNTS: usize = 200;
/// Findings one hunt keeps at most.
pub const MAX_FINDINGS: usize = 10_000;

/// The hunts, in memory and one JSON file each under `dir`.
pub struct Hunts {
    dir: Option<PathBuf>,
    map: Mutex<BTreeMap<String, Hunt>>,
}

impl Hunts {
    /// Loads the hunts kept in `data/hunts`; one that was running when the
    /// server stopped is failed (its thread is gone).
    pub fn open(data: Option<&Path>) -> std::io::Result<Hunts> {
        let dir = data.map(|d| d.join("hunts"));
        let mut map = BTreeMap::new();
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir)?;
            for e in std::fs::read_dir(dir)?.flatten() {
                let Ok(text) = std::fs::read_to_string(e.path()) else { continue };
                let Ok(mut h) = serde_json::from_str::<Hunt>(&text) else {
                    tracing::warn!(path = %e.path().display(), "hunt file unreadable: left out");
                    continue;
                };
                if h.state == HuntState::Running {
                    h.state = HuntState::Failed;
                    h.error = Some("the server stopped during the hunt".into());
                }
                map.insert(h.id.clone(), h);
            }
        }
        Ok(Hunts { dir, map: Mutex::new(map) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Hunt>> {
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn save(&self, h: &Hunt) {
        let Some(dir) = &self.dir else { return };
        let path = dir.join(format!("{}.json", h.id));
        let tmp = dir.join(format!(".{}.tmp", h.id));
        let res = serde_json::to_vec_pretty(h)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = res {
            tracing::error!(path = %path.display(), error = %e, "cannot keep a hunt");
        }
    }

    /// Newest first.
    pub fn list(&self) -> Vec<Hunt> {
        let mut v: Vec<Hunt> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| b.started.total_cmp(&a.started).then_with(|| b.id.cmp(&a.id)));
        v
    }

    pub fn get(&self, id: &str) -> Option<Hunt> {
        self.lock().get(id).cloned()
    }

    /// Changes one hunt and keeps it.
    pub fn update<T>(&self, id: &str, f: impl FnOnce(&mut Hunt) -> T) -> Option<T> {
        let mut g = self.lock();
        let h = g.get_mut(id)?;
        let out = f(h);
        let copy = h.clone();
        drop(g);
        self.save(&copy);
        Some(out)
    }

    /// Adds a new running hunt; past [`MAX_HUNTS`] the oldest finished one
    /// is dropped.
    pub fn add(&self, h: Hunt) {
        let mut g = self.lock();
        while g.len() >= MAX_HUNTS {
            let oldest = g
                .values()
                .filter(|x| x.state != HuntState::Running)
                .min_by(|a, b| a.started.total_cmp(&b.started))
                .map(|x| x.id.clone());
            let Some(o) = oldest else { break };
            g.remove(&o);
            if let Some(dir) = &self.dir {
                let _ = std::fs::remove_file(dir.join(format!("{o}.json")));
            }
        }
        g.insert(h.id.clone(), h.clone());
        drop(g);
        self.save(&h);
    }

    pub fn running(&self) -> usize {
        self.lock().values().filter(|h| h.state == HuntState::Running).count()
    }
}

/// Runs `hunt` on its own thread, recording progress and findings in
/// `hunts`; `in_queue` tells which alert ids the queue already holds.
pub fn spawn(
    hunts: Arc<Hunts>,
    hunter: Arc<dyn Hunter>,
    store: Arc<dyn Store>,
    id: String,
    in_queue: impl Fn(&[String]) -> Vec<bool> + Send + 'static,
) {
    let h = match hunts.get(&id) {
        Some(h) => h,
        None => return,
    };
    let (hunts2, id2) = (Arc::clone(&hunts), id.clone());
    let run = move || {
        let last = std::cell::Cell::new(std::time::Instant::now());
        let progress = |n: u64| {
            // Kept at most once a second: progress is for the eye.
            if last.get().elapsed().as_secs_f64() >= 1.0 {
                last.set(std::time::Instant::now());
                hunts.update(&id, |x| x.records = n);
            }
        };
        let res = hunter.hunt(store.as_ref(), h.from, h.to, &h.chosen, &progress);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        match res {
            Ok((read, mut alerts)) => {
                alerts.truncate(MAX_FINDINGS);
                let ids: Vec<String> =
                    alerts.iter().map(|a| a["id"].as_str().unwrap_or_default().to_string()).collect();
                let known = in_queue(&ids);
                let records = alerts.len();
                hunts.update(&id, |x| {
                    x.findings = alerts
                        .into_iter()
                        .enumerate()
                        .map(|(i, alert)| Finding {
                            n: i + 1,
                            alert,
                            in_queue: known.get(i).copied().unwrap_or(false),
                            promoted_by: None,
                        })
                        .collect();
                    x.records = read;
                    x.state = HuntState::Done;
                    x.finished = Some(now);
                });
                tracing::info!(hunt = %id, findings = records, "hunt done");
            }
            Err(e) => {
                tracing::warn!(hunt = %id, error = %e, "hunt failed");
                hunts.update(&id, |x| {
                    x.state = HuntState::Failed;
                    x.error = Some(e);
                    x.finished = Some(now);
                });
            }
        }
    };
    if let Err(e) = std::thread::Builder::new().name("hunt".into()).spawn(run) {
        tracing::error!(error = %e, "cannot start a hunt thread");
        hunts2.update(&id2, |x| {
            x.state = HuntState::Failed;
            x.error = Some(format!("cannot start: {e}"));
        });
    }
}

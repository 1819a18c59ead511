//! The replay suite: every directory under `replay-pcaps/` holds a capture
//! made by the project's generator and a `case.toml` of checks on the logs
//! the sensor writes for it. Checks count matching records rather than
//! comparing whole files, so they keep passing when logs gain fields.

use crate::detection;
use crate::sensor_setup::SensorConfig;
use anyhow::{bail, Context};
use detector::detect::RuleSet;
use sensor::capture::SourceSpec;
use sensor::pipeline::{self, Controls, Hooks};
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Value as Toml;

/// Writing `UNSET` in a check asserts that the field is absent from the record.
pub const UNSET: &str = "(unset)";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSpec {
    /// What the capture holds and what the checks establish.
    pub description: String,
    /// The generator scenario that produced `capture.pcap`.
    pub scenario: String,
    /// Sensor settings for this case (the sensor's TOML keys).
    #[serde(default)]
    pub sensor: toml::Table,
    /// Values that `stats.log` must hold.
    #[serde(default)]
    pub stats: toml::Table,
    #[serde(default)]
    pub expect: Vec<Expect>,
    /// The alerts the case raises. Any other alert in alerts.log fails
    /// the case, so every case is also a "stays silent" check for every
    /// rule it does not list.
    #[serde(default)]
    pub alert: Vec<ExpectAlert>,
    /// Rules this case is a benign look-alike for: traffic close to what
    /// they detect, on which they must stay silent.
    #[serde(default)]
    pub benign_for: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectAlert {
    /// `rule.id` of the alert.
    pub rule: String,
    /// Alerts (after folding) with this rule id.
    pub count: usize,
    /// Field values each of them has.
    #[serde(default, rename = "where")]
    pub fields: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Log name without `.log`.
    pub log: String,
    /// How many records of the log match.
    pub count: usize,
    /// Field values a matching record has.
    #[serde(default, rename = "where")]
    pub fields: toml::Table,
    /// A record of another log (`log` key plus field values) whose uid a
    /// matching record lists in `tunnel_parents`.
    #[serde(default)]
    pub tunnel_parent: Option<toml::Table>,
}

pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    pub spec: CaseSpec,
}

impl Case {
    pub fn capture(&self) -> PathBuf {
        self.dir.join("capture.pcap")
    }
}

pub fn load_cases(root: &Path) -> anyhow::Result<Vec<Case>> {
    let mut cases = Vec::new();
    let entries = std::fs::read_dir(root).with_context(|| format!("cannot read {}", root.display()))?;
    for entry in entries {
        let dir = entry?.path();
        let toml_path = dir.join("case.toml");
        if !toml_path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&toml_path)?;
        let spec: CaseSpec = toml::from_str(&text).with_context(|| format!("{}", toml_path.display()))?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        cases.push(Case { name, dir, spec });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

pub struct Outcome {
    pub checks: usize,
    pub failures: Vec<String>,
}

/// Replays one case into `log_dir` with `workers` workers and checks it;
/// with `rules`, detection runs too and its alerts are checked.
pub fn run_case(case: &Case, log_dir: &Path, workers: usize, rules: Option<&Arc<RuleSet>>) -> anyhow::Result<Outcome> {
    run_case_with_ring(case, log_dir, workers, rules, None)
}

/// As [`run_case`], keeping the packets in the packet ring under `ring`.
pub fn run_case_with_ring(
    case: &Case,
    log_dir: &Path,
    workers: usize,
    rules: Option<&Arc<RuleSet>>,
    ring: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let mut cfg: SensorConfig =
        Toml::Table(case.spec.sensor.clone()).try_into().with_context(|| format!("{}: [sensor]", case.name))?;
    cfg.workers = workers;
    cfg.uid_seed.get_or_insert(1);
    if let Some(r) = ring {
        cfg.ring.dir = Some(r.to_path_buf());
    }
    if let Err(e) = cfg.validate() {
        bail!("{}: [sensor]: {}", case.name, e.join("; "));
    }
    if log_dir.exists() {
        std::fs::remove_dir_all(log_dir)?;
    }
    let writer = cfg.log_writer(log_dir)?;
    let mut pcfg = cfg.pipeline();
    if let Some(r) = rules {
        detection::attach(&mut pcfg, r);
    }
    let sink = cfg.with_inventory(
        detection::MaybeDetecting::new(writer, rules.cloned())
            .with_pins(pcfg.worker.ring.as_ref().map(|r| std::sync::Arc::clone(&r.pins))),
    );
    let (summary, _) =
        pipeline::run(&SourceSpec::File(case.capture()), &pcfg, sink, Controls::default(), Hooks::default())?;
    if let Some(r) = &pcfg.worker.ring {
        sensor::ring::enforce_dir(&r.cfg, &r.pins)?;
    }
    if let Some(e) = summary.source_error {
        bail!("{}: {e}", case.name);
    }
    let mut out = check(case, log_dir)?;
    if rules.is_some() {
        check_alerts(case, log_dir, &mut out)?;
    }
    Ok(out)
}

/// Alert counts per rule id in a case's alerts.log.
pub fn alert_counts(log_dir: &Path) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut m = BTreeMap::new();
    for a in read_log(log_dir, "alerts")? {
        if let Some(id) = a.get("rule.id").and_then(Json::as_str) {
            *m.entry(id.to_string()).or_default() += 1;
        }
    }
    Ok(m)
}

fn check_alerts(case: &Case, log_dir: &Path, out: &mut Outcome) -> anyhow::Result<()> {
    let alerts = read_log(log_dir, "alerts")?;
    // One check per listed alert and one for "nothing else".
    out.checks += case.spec.alert.len() + 1;
    out.failures.extend(alert_failures(case, &alerts, &|_| true));
    Ok(())
}

/// What `alerts` (a case's alerts.log) breaks of the case's alert
/// expectations, looking only at the rules `judged` accepts: the alerts the
/// case lists, and no other alert of those rules.
pub fn alert_failures(case: &Case, alerts: &[Json], judged: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut failures = Vec::new();
    for e in case.spec.alert.iter().filter(|e| judged(&e.rule)) {
        let n = alerts
            .iter()
            .filter(|a| a.get("rule.id").and_then(Json::as_str) == Some(e.rule.as_str()))
            .filter(|a| record_matches(&e.fields, a))
            .count();
        if n != e.count {
            failures.push(format!(
                "alerts.log: expected {} alert(s) of rule {} {}, found {n}",
                e.count,
                e.rule,
                describe(&e.fields)
            ));
        }
    }
    // Every alert raised is one the case lists: no more, no other rules.
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in alerts.iter().filter_map(|a| a.get("rule.id").and_then(Json::as_str)) {
        *counts.entry(id).or_default() += 1;
    }
    for (rule, n) in counts.into_iter().filter(|(r, _)| judged(r)) {
        let listed: usize = case.spec.alert.iter().filter(|e| e.rule == rule).map(|e| e.count).sum();
        if n > listed {
            failures.push(format!("alerts.log: {n} alert(s) of rule {rule}, the case lists {listed}"));
        }
    }
    failures
}

/// Replays every case with `rules` (logs under `log_dir/<case>`) and
/// returns each case's alerts, in case order.
pub fn suite_alerts(cases: &[Case], rules: &Arc<RuleSet>, log_dir: &Path) -> anyhow::Result<Vec<Vec<Json>>> {
    cases
        .iter()
        .map(|case| {
            let out = log_dir.join(&case.name);
            run_case(case, &out, 1, Some(rules))?;
            read_log(&out, "alerts")
        })
        .collect()
}

fn read_log(dir: &Path, name: &str) -> anyhow::Result<Vec<Json>> {
    let path = dir.join(format!("{name}.log"));
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path)?;
    text.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("{}: bad JSON line", path.display())))
        .collect()
}

fn value_matches(want: &Toml, got: Option<&Json>) -> bool {
    match (want, got) {
        (Toml::String(s), None) => s == UNSET,
        (_, None) => false,
        (Toml::String(s), Some(Json::String(g))) => s == g,
        (Toml::Integer(i), Some(Json::Number(n))) => n.as_f64().is_some_and(|g| (g - (*i as f64)).abs() < 1e-9),
        (Toml::Float(f), Some(Json::Number(n))) => n.as_f64().is_some_and(|g| (g - f).abs() < 1e-6),
        (Toml::Boolean(b), Some(Json::Bool(g))) => b == g,
        (Toml::Array(a), Some(Json::Array(g))) => {
            a.len() == g.len() && a.iter().zip(g).all(|(w, x)| value_matches(w, Some(x)))
        }
        _ => false,
    }
}

fn record_matches(fields: &toml::Table, rec: &Json) -> bool {
    fields.iter().all(|(k, v)| value_matches(v, rec.get(k)))
}

fn describe(fields: &toml::Table) -> String {
    fields.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

pub fn check(case: &Case, log_dir: &Path) -> anyhow::Result<Outcome> {
    let mut logs: BTreeMap<String, Vec<Json>> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut checks = 0;
    for e in &case.spec.expect {
        let mut parent_uids: Option<Vec<String>> = None;
        if let Some(p) = &e.tunnel_parent {
            let mut p = p.clone();
            let Some(Toml::String(plog)) = p.remove("log") else {
                bail!("{}: tunnel_parent needs a log", case.name);
            };
            if !logs.contains_key(&plog) {
                logs.insert(plog.clone(), read_log(log_dir, &plog)?);
            }
            let uids = logs[&plog]
                .iter()
                .filter(|r| record_matches(&p, r))
                .filter_map(|r| r.get("uid").and_then(Json::as_str).map(str::to_string))
                .collect();
            parent_uids = Some(uids);
        }
        if !logs.contains_key(&e.log) {
            logs.insert(e.log.clone(), read_log(log_dir, &e.log)?);
        }
        let recs = &logs[&e.log];
        let n = recs
            .iter()
            .filter(|r| record_matches(&e.fields, r))
            .filter(|r| match &parent_uids {
                None => true,
                Some(uids) => r
                    .get("tunnel_parents")
                    .and_then(Json::as_array)
                    .is_some_and(|tp| tp.iter().any(|u| u.as_str().is_some_and(|u| uids.iter().any(|x| x == u)))),
            })
            .count();
        checks += 1;
        if n != e.count {
            let closest = recs
                .iter()
                .max_by_key(|r| e.fields.iter().filter(|(k, v)| value_matches(v, r.get(k.as_str()))).count())
                .map(|r| r.to_string())
                .unwrap_or_else(|| "no records".into());
            failures.push(format!(
                "{}.log: expected {} record(s) with {}, found {}; closest: {}",
                e.log,
                e.count,
                describe(&e.fields),
                n,
                closest
            ));
        }
    }
    if !case.spec.stats.is_empty() {
        let stats = read_log(log_dir, "stats")?;
        let last = stats.last().cloned().unwrap_or(Json::Null);
        for (k, v) in &case.spec.stats {
            checks += 1;
            if !value_matches(v, last.get(k)) {
                failures.push(format!("stats.log: {k} expected {v}, found {}", last.get(k).unwrap_or(&Json::Null)));
            }
        }
    }
    Ok(Outcome { checks, failures })
}

/// Stores every log of a directory of per-scenario log directories.
pub fn ingest_logs(store: &dyn siem::store::Store, root: &Path, sensor: &str) -> anyhow::Result<(usize, usize)> {
    let catalog = siem::schema::Catalog::new();
    let (mut ok, mut bad) = (0, 0);
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)?.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        files.sort();
        for f in files {
            let log = f.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
            let text = std::fs::read_to_string(&f)?;
            let (recs, errs) = siem::api::parse_lines(&catalog, &text, sensor, Some(&log));
            for e in &errs {
                eprintln!("{}:{}: not stored: {}", f.display(), e.line, e.error);
            }
            store.ingest(&recs).with_context(|| format!("storing {}", f.display()))?;
            ok += recs.len();
            bad += errs.len();
        }
    }
    Ok((ok, bad))
}

/// One rule's alerts over the suite: expected by the cases and raised.
#[derive(Clone, Debug)]
pub struct RuleTally {
    pub rule: String,
    pub expected: usize,
    pub got: usize,
    pub cases: Vec<String>,
}

/// The suite run with a rule set: per rule, alerts expected and raised;
/// per failing case, why.
#[derive(Clone, Debug, Default)]
pub struct SuiteResult {
    pub tally: Vec<RuleTally>,
    pub failures: Vec<(String, Vec<String>)>,
    pub cases: usize,
}

/// Replays every case with `rules` (logs under `log_dir/<case>`).
pub fn test_rules(rules: &Arc<RuleSet>, cases_dir: &Path, log_dir: &Path) -> anyhow::Result<SuiteResult> {
    let cases = load_cases(cases_dir)?;
    let mut table: BTreeMap<String, RuleTally> = BTreeMap::new();
    let mut res = SuiteResult { cases: cases.len(), ..Default::default() };
    fn tally<'a>(t: &'a mut BTreeMap<String, RuleTally>, r: &str) -> &'a mut RuleTally {
        t.entry(r.to_string()).or_insert_with(|| RuleTally {
            rule: r.to_string(),
            expected: 0,
            got: 0,
            cases: Vec::new(),
        })
    }
    for case in &cases {
        let out = log_dir.join(&case.name);
        let outcome = run_case(case, &out, 1, Some(rules))?;
        for a in &case.spec.alert {
            tally(&mut table, &a.rule).expected += a.count;
        }
        for (rule, n) in alert_counts(&out)? {
            let t = tally(&mut table, &rule);
            t.got += n;
            t.cases.push(case.name.clone());
        }
        if !outcome.failures.is_empty() {
            res.failures.push((case.name.clone(), outcome.failures));
        }
    }
    res.tally = table.into_values().collect();
    Ok(res)
}

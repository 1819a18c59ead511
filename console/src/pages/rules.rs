//! The rules page, the rule editor and tuning.

use super::*;

#[derive(Template)]
#[template(path = "rule_edit.html")]
pub(super) struct RuleEditPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) files: Vec<String>,
    pub(super) path: String,
    pub(super) text: String,
    pub(super) problems: Vec<crate::editor::Problem>,
    pub(super) checked: bool,
    pub(super) report: Option<crate::editor::TestReport>,
    pub(super) saved: String,
    pub(super) versions: Vec<(String, String, String)>,
    /// A save held back: the cases the candidate breaks, for the admin to
    /// confirm.
    pub(super) confirm: Vec<String>,
    pub(super) lens: Lens,
}

#[derive(Deserialize)]
pub(super) struct RuleEditQuery {
    pub(super) path: Option<String>,
}

pub(super) fn editor(c: &Console) -> Result<Arc<dyn crate::editor::RuleEditor>, ConsoleError> {
    c.cfg
        .editor
        .0
        .clone()
        .ok_or_else(|| ConsoleError::Invalid("this console was started without a rules folder".into()))
}

/// The path only if it is one of the editable files: nothing else reaches
/// the file system.
pub(super) fn known_path(ed: &dyn crate::editor::RuleEditor, path: &str) -> Result<String, ConsoleError> {
    ed.files().into_iter().find(|f| f == path).ok_or(ConsoleError::NotFound)
}

pub(super) fn versions(a: &Auth, ed: &dyn crate::editor::RuleEditor, path: &str) -> Vec<(String, String, String)> {
    ed.versions(path).into_iter().rev().take(20).map(|v| (v.id, a.lens.time(v.ts), v.sha256)).collect()
}

/// The rules folder's files; one of them open for editing.
pub(super) async fn rule_edit(State(c): State<Arc<Console>>, a: Auth, Query(q): Query<RuleEditQuery>) -> Res {
    a.need(Perm::Tune)?;
    let ed = editor(&c)?;
    let files = ed.files();
    let (path, text) = match q.path {
        Some(p) => {
            let p = known_path(ed.as_ref(), &p)?;
            let e2 = Arc::clone(&ed);
            let p2 = p.clone();
            let text = blocking(move || e2.read(&p2).map_err(ConsoleError::Io)).await?;
            (p, text)
        }
        None => (String::new(), String::new()),
    };
    let versions = if path.is_empty() { Vec::new() } else { versions(&a, ed.as_ref(), &path) };
    page(RuleEditPage {
        t: a.t,
        nav: nav(&a),
        files,
        path,
        text,
        problems: Vec::new(),
        checked: false,
        report: None,
        saved: String::new(),
        versions,
        confirm: Vec::new(),
        lens: a.lens.clone(),
    })
}

/// Check, back-test against the bundled captures, or save (only what
/// checks clean). A save is back-tested first: one that breaks cases waits
/// for the admin to confirm, and its audit entry names the cases. Tests and
/// saves are audited; a save keeps the old content.
pub(super) async fn rule_edit_post(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Tune)?;
    let ed = editor(&c)?;
    let path = known_path(ed.as_ref(), f.get("path").unwrap_or(""))?;
    // Browsers send CR LF in text areas; the files are LF.
    let text = f.get("text").unwrap_or("").replace("\r\n", "\n");
    if text.len() > 1 << 20 {
        return Err(ConsoleError::Invalid("a rule file is 1 MiB at most".into()));
    }
    let action = f.get("action").unwrap_or("check").to_string();
    let confirmed = f.get("confirm") == Some("yes");
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (e2, p2, t2) = (Arc::clone(&ed), path.clone(), text.clone());
    let (problems, report, saved, confirm) = blocking(move || {
        let problems = e2.check(&p2, &t2);
        let mut report = None;
        let mut saved = String::new();
        let mut confirm = Vec::new();
        match action.as_str() {
            "test" => {
                let r = e2.test(&p2, &t2).map_err(ConsoleError::Internal)?;
                let failing = r.failing();
                siem.audit_as(
                    &who,
                    &peer,
                    "rule.test",
                    json!({"path": p2, "failed_cases": failing.len(), "failing": failing, "cases": r.cases}),
                )?;
                report = Some(r);
            }
            "save" if problems.is_empty() => {
                siem.writable()?;
                // A back-test that cannot run (no bundled captures on this
                // machine) is a reason to confirm too, not a lock on saving.
                let (r, failing) = match e2.test(&p2, &t2) {
                    Ok(r) => {
                        let failing: Vec<String> = r.failing().into_iter().map(String::from).collect();
                        (Some(r), failing)
                    }
                    Err(e) => (None, vec![format!("back-test not run: {e}")]),
                };
                if !failing.is_empty() && !confirmed {
                    confirm = failing;
                } else {
                    let (old, new) = e2.save(&p2, &t2).map_err(ConsoleError::Io)?;
                    siem.audit_as(
                        &who,
                        &peer,
                        "rule.save",
                        json!({"path": p2, "sha256_before": old, "sha256_after": new,
                               "failed_cases": failing.len(), "failing": failing,
                               "cases": r.as_ref().map_or(0, |r| r.cases)}),
                    )?;
                    saved = new;
                }
                report = r;
            }
            _ => {}
        }
        Ok((problems, report, saved, confirm))
    })
    .await?;
    let versions = versions(&a, ed.as_ref(), &path);
    page(RuleEditPage {
        t: a.t,
        nav: nav(&a),
        files: ed.files(),
        path,
        text,
        problems,
        checked: true,
        report,
        saved,
        versions,
        confirm,
        lens: a.lens.clone(),
    })
}

#[derive(Template)]
#[template(path = "rule_history.html")]
pub(super) struct RuleHistoryPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) path: String,
    /// (id, time, sha256), newest first.
    pub(super) versions: Vec<(String, String, String)>,
    /// The version shown, and what it is compared with.
    pub(super) shown: String,
    pub(super) against: String,
    pub(super) diff: Vec<DiffLine>,
}

/// One line of a diff: ' ' kept, '-' only in the older, '+' only in the newer.
pub(super) struct DiffLine {
    pub(super) op: char,
    pub(super) text: String,
}

#[derive(Deserialize)]
pub(super) struct RuleHistoryQuery {
    pub(super) path: String,
    pub(super) v: Option<String>,
}

/// A file's earlier versions, one of them compared with the content that
/// replaced it (the next version, or the file as it is now).
pub(super) async fn rule_history(State(c): State<Arc<Console>>, a: Auth, Query(q): Query<RuleHistoryQuery>) -> Res {
    a.need(Perm::Tune)?;
    let ed = editor(&c)?;
    let path = known_path(ed.as_ref(), &q.path)?;
    let all = ed.versions(&path);
    let shown = match &q.v {
        Some(v) => all.iter().position(|x| &x.id == v).ok_or(ConsoleError::NotFound)?,
        None => all.len().saturating_sub(1),
    };
    let (e2, p2) = (Arc::clone(&ed), path.clone());
    let ids: Vec<String> = all.iter().map(|v| v.id.clone()).collect();
    let (diff, shown_id, against) = blocking(move || {
        let Some(id) = ids.get(shown) else { return Ok((Vec::new(), String::new(), String::new())) };
        let old = e2.version_text(&p2, id).map_err(ConsoleError::Io)?;
        let (new, against) = match ids.get(shown + 1) {
            Some(next) => (e2.version_text(&p2, next).map_err(ConsoleError::Io)?, next.clone()),
            None => (e2.read(&p2).map_err(ConsoleError::Io)?, String::new()),
        };
        Ok((line_diff(&old, &new), id.clone(), against))
    })
    .await?;
    page(RuleHistoryPage {
        t: a.t,
        nav: nav(&a),
        versions: all.into_iter().rev().map(|v| (v.id, a.lens.time(v.ts), v.sha256)).collect(),
        path,
        shown: shown_id,
        against,
        diff,
    })
}

/// Puts an earlier version back (after it checks clean), keeping what it
/// replaces as a version too; audited.
pub(super) async fn rule_restore(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Tune)?;
    c.siem.writable()?;
    let ed = editor(&c)?;
    let path = known_path(ed.as_ref(), f.get("path").unwrap_or(""))?;
    let version = f.get("v").unwrap_or("").to_string();
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (e2, p2) = (Arc::clone(&ed), path.clone());
    blocking(move || {
        let text = e2.version_text(&p2, &version).map_err(|_| ConsoleError::NotFound)?;
        if let Some(p) = e2.check(&p2, &text).first() {
            return Err(ConsoleError::Invalid(format!("{}:{}: {}", p.file, p.line, p.message)));
        }
        let (old, new) = e2.save(&p2, &text).map_err(ConsoleError::Io)?;
        siem.audit_as(
            &who,
            &peer,
            "rule.restore",
            json!({"path": p2, "version": version, "sha256_before": old, "sha256_after": new}),
        )?;
        Ok(())
    })
    .await?;
    Ok(Redirect::to(&format!("/rules/history?path={}", enc(&path))).into_response())
}

/// A line diff by longest common subsequence: rule files are some hundred
/// lines, so the quadratic table is small; past that the whole files are
/// shown as replaced.
fn line_diff(old: &str, new: &str) -> Vec<DiffLine> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let line = |op, t: &str| DiffLine { op, text: t.to_string() };
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        return a.iter().map(|t| line('-', t)).chain(b.iter().map(|t| line('+', t))).collect();
    }
    let (n, m) = (a.len(), b.len());
    let mut l = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            l[i][j] = if a[i] == b[j] { l[i + 1][j + 1] + 1 } else { l[i + 1][j].max(l[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(line(' ', a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < n && (j == m || l[i + 1][j] >= l[i][j + 1]) {
            // What goes before what comes, as diff(1) shows it.
            out.push(line('-', a[i]));
            i += 1;
        } else {
            out.push(line('+', b[j]));
            j += 1;
        }
    }
    out
}

/// A rule as the rules page shows it: where it is written, whether it is
/// on, how often it fired and how its alerts were judged.
pub(super) struct RuleRow {
    pub(super) disabled: bool,
    /// Why it was switched off, as the admin wrote it.
    pub(super) reason: String,
    pub(super) source: String,
    pub(super) id: String,
    pub(super) title: String,
    /// The file of the rules folder it is written in; empty for a rule
    /// that fired but is no longer in the folder.
    pub(super) file: String,
    pub(super) alerts: u64,
    pub(super) last: String,
    pub(super) true_positive: u64,
    pub(super) false_positive: u64,
    pub(super) benign: u64,
    pub(super) open: u64,
    pub(super) fp_ratio: String,
    pub(super) href: String,
}

#[derive(Template)]
#[template(path = "rules.html")]
pub(super) struct RulesPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) rows: Vec<RuleRow>,
    pub(super) total: usize,
    pub(super) judged_of: usize,
    pub(super) can_edit: bool,
    pub(super) can_tune: bool,
    pub(super) q: String,
    pub(super) state: String,
}

#[derive(Deserialize)]
pub(super) struct RulesQuery {
    /// Words the rule's title, id, engine or file contain.
    pub(super) q: Option<String>,
    /// `on`, `off`, `fired` or `silent`; empty: every rule.
    pub(super) state: Option<String>,
}

/// Switch a rule off (with a reason, required) or on, or suppress its
/// alerts by a field's value for some days: written to `tuning.toml`
/// (sensors read it when they start), versioned, audited.
pub(super) async fn rule_tune(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Tune)?;
    c.siem.writable()?;
    let Some(tuning) = c.cfg.tuning_file.clone() else {
        return Err(ConsoleError::Invalid("this console was started without a rules folder".into()));
    };
    let get = |k: &str| f.get(k).unwrap_or("").trim().to_string();
    let (rule, action) = (get("rule"), get("action"));
    let (field, value, reason) = (get("field"), get("value"), get("reason"));
    if action == "disable" && reason.is_empty() {
        return Err(ConsoleError::Bad(crate::error::Msg::new("tune.reason_required")));
    }
    let days: Option<u64> = match get("days").as_str() {
        "" => None,
        d => Some(
            d.parse()
                .ok()
                .filter(|d| (1..=3650).contains(d))
                .ok_or_else(|| ConsoleError::Invalid("days: 1 to 3650".into()))?,
        ),
    };
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let editor = c.cfg.editor.0.clone();
    blocking(move || {
        let old = match std::fs::read_to_string(&tuning) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(ConsoleError::Io(e.to_string())),
        };
        let (new, detail) = match action.as_str() {
            "disable" | "enable" => (
                crate::tune::disabled_text(&old, &rule, (action == "disable").then_some(reason.as_str()))?,
                json!({"rule": rule, "action": action, "reason": reason}),
            ),
            "suppress" => {
                let until = days.map(|d| {
                    let t = std::time::SystemTime::now() + std::time::Duration::from_secs(d * 86_400);
                    humantime::format_rfc3339_seconds(t).to_string()
                });
                let s = crate::tune::Suppression {
                    rule: &rule,
                    field: &field,
                    value: &value,
                    until: until.as_deref(),
                    reason: &reason,
                };
                let new = crate::tune::suppress_text(&old, &s)?;
                (new, json!({"rule": rule, "action": action, "field": field, "value": value, "until": until, "reason": reason}))
            }
            _ => return Err(ConsoleError::Invalid("action is disable, enable or suppress".into())),
        };
        // Through the rule editor when there is one, so the change is
        // versioned like any edit; otherwise written in place.
        match editor.filter(|e| e.files().iter().any(|f| f == "tuning.toml")) {
            Some(e) => {
                e.save("tuning.toml", &new).map_err(ConsoleError::Io)?;
            }
            None => {
                let tmp = tuning.with_extension("toml.tmp");
                std::fs::write(&tmp, &new)
                    .and_then(|_| std::fs::rename(&tmp, &tuning))
                    .map_err(|e| ConsoleError::Io(e.to_string()))?;
            }
        }
        siem.audit_as(&who, &peer, "rule.tune", detail)?;
        Ok(())
    })
    .await?;
    Ok(Redirect::to("/rules").into_response())
}

/// Every rule of the rules folder (and any rule that fired but is no longer
/// there), with hit counts over every stored alert, the last time it fired,
/// its switch, and outcomes from the triage of the newest 10 000 alerts.
pub(super) async fn rules(State(c): State<Arc<Console>>, a: Auth, Query(fq): Query<RulesQuery>) -> Res {
    a.need(Perm::Rules)?;
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let editor = c.cfg.editor.0.clone();
    let (hits, alerts, catalog) = blocking(move || {
        let hits = buckets(siem.aggregate_records_unaudited(&AggParams {
            q: Some("_log:alerts".into()),
            from: None,
            to: None,
            agg: "terms".into(),
            field: Some("rule.id".into()),
            size: Some(1000),
            interval: None,
            sum: None,
        })?);
        let p = AlertsParams {
            q: None,
            status: None,
            from: None,
            to: None,
            limit: Some(siem::store::MAX_LIMIT),
            offset: None,
        };
        let catalog = editor.map(|e| e.rules()).unwrap_or_default();
        Ok((hits, siem.list_alerts(&who, &peer, &p)?.1, catalog))
    })
    .await?;
    let row = |id: &str| RuleRow {
        href: format!("/alerts?rule={}", enc(id)),
        disabled: false,
        reason: String::new(),
        id: id.to_string(),
        source: String::new(),
        title: String::new(),
        file: String::new(),
        alerts: 0,
        last: "—".into(),
        true_positive: 0,
        false_positive: 0,
        benign: 0,
        open: 0,
        fp_ratio: "—".into(),
    };
    let mut rows: Vec<RuleRow> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for r in &catalog {
        at.insert(r.id.clone(), rows.len());
        rows.push(RuleRow {
            source: r.source.clone(),
            title: a.lens.rule_title(&r.title),
            file: r.file.clone(),
            ..row(&r.id)
        });
    }
    for b in hits {
        let i = *at.entry(b.key.clone()).or_insert_with(|| {
            rows.push(row(&b.key));
            rows.len() - 1
        });
        rows[i].alerts = b.count;
    }
    let mut last: HashMap<&str, f64> = HashMap::new();
    for al in &alerts {
        let Some(id) = al["rule.id"].as_str() else { continue };
        let Some(&i) = at.get(id) else { continue };
        let r = &mut rows[i];
        if r.title.is_empty() {
            r.title = a.lens.alert_title(al);
        }
        if r.source.is_empty() {
            r.source = al["rule.source"].as_str().unwrap_or("").to_string();
        }
        if let Some(ts) = al["ts"].as_f64() {
            let l = last.entry(id).or_insert(ts);
            *l = l.max(ts);
        }
        match al["triage"]["status"].as_str().unwrap_or("new") {
            "closed_true_positive" => r.true_positive += 1,
            "closed_false_positive" => r.false_positive += 1,
            "closed_benign" => r.benign += 1,
            _ => r.open += 1,
        }
    }
    let off = c.cfg.tuning_file.as_deref().map(crate::tune::disabled_with_reasons).unwrap_or_default();
    for r in &mut rows {
        let judged = r.true_positive + r.false_positive + r.benign;
        if judged > 0 {
            r.fp_ratio = format!("{:.0}%", 100.0 * r.false_positive as f64 / judged as f64);
        }
        if let Some(ts) = last.get(r.id.as_str()) {
            r.last = a.lens.time(*ts);
        }
        if let Some((_, why)) = off.iter().find(|(id, _)| *id == r.id) {
            r.disabled = true;
            r.reason = why.clone();
        }
    }
    // Rules that fired before the newest alerts: their last time from the
    // store, one small aggregation each.
    let older: Vec<String> = rows.iter().filter(|r| r.alerts > 0 && r.last == "—").map(|r| r.id.clone()).collect();
    if !older.is_empty() {
        let siem = Arc::clone(&c.siem);
        let found = blocking(move || {
            let mut found = Vec::new();
            for id in older.into_iter().take(200) {
                let r = siem.aggregate_records_unaudited(&AggParams {
                    q: Some(format!("_log:alerts rule.id:{}", quote(&id))),
                    from: None,
                    to: None,
                    agg: "stats".into(),
                    field: Some("ts".into()),
                    size: None,
                    interval: None,
                    sum: None,
                })?;
                if let AggResult::Stats { max: Some(m), .. } = r {
                    found.push((id, m));
                }
            }
            Ok(found)
        })
        .await?;
        for (id, ts) in found {
            if let Some(&i) = at.get(&id) {
                rows[i].last = a.lens.time(ts);
            }
        }
    }
    let total = rows.len();
    let q_raw = fq.q.unwrap_or_default().trim().to_string();
    let q = q_raw.to_lowercase();
    let state = fq.state.unwrap_or_default();
    rows.retain(|r| {
        let words = q
            .split_whitespace()
            .all(|w| [&r.title, &r.id, &r.source, &r.file, &r.reason].iter().any(|f| f.to_lowercase().contains(w)));
        let st = match state.as_str() {
            "on" => !r.disabled,
            "off" => r.disabled,
            "fired" => r.alerts > 0,
            "silent" => r.alerts == 0,
            _ => true,
        };
        words && st
    });
    // Most alerts first; then by engine and title.
    rows.sort_by(|x, y| y.alerts.cmp(&x.alerts).then_with(|| (&x.source, &x.title).cmp(&(&y.source, &y.title))));
    let can_edit = a.may(Perm::Tune) && c.cfg.editor.0.is_some();
    let can_tune = a.may(Perm::Tune) && c.cfg.tuning_file.is_some();
    page(RulesPage { t: a.t, nav: nav(&a), rows, total, judged_of: alerts.len(), can_edit, can_tune, q: q_raw, state })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_diff_shows_what_went_before_what_came() {
        let d = line_diff("a\nlevel: high\nc\n", "a\nlevel: critical\nc\nd\n");
        let s: Vec<String> = d.iter().map(|l| format!("{}{}", l.op, l.text)).collect();
        assert_eq!(s, [" a", "-level: high", "+level: critical", " c", "+d"]);
        assert!(line_diff("", "").is_empty());
    }
}

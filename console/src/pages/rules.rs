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
    })
}

/// Check, test against the bundled captures, or save (only what checks
/// clean). Tests and saves are audited; a save keeps the old content.
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
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (e2, p2, t2) = (Arc::clone(&ed), path.clone(), text.clone());
    let (problems, report, saved) = blocking(move || {
        let problems = e2.check(&p2, &t2);
        let mut report = None;
        let mut saved = String::new();
        match action.as_str() {
            "test" => {
                let r = e2.test(&p2, &t2).map_err(ConsoleError::Internal)?;
                siem.audit_as(
                    &who,
                    &peer,
                    "rule.test",
                    json!({"path": p2, "failed_cases": r.failures.len(), "cases": r.cases}),
                )?;
                report = Some(r);
            }
            "save" if problems.is_empty() => {
                siem.writable()?;
                let (old, new) = e2.save(&p2, &t2).map_err(ConsoleError::Io)?;
                siem.audit_as(
                    &who,
                    &peer,
                    "rule.save",
                    json!({"path": p2, "sha256_before": old, "sha256_after": new}),
                )?;
                saved = new;
            }
            _ => {}
        }
        Ok((problems, report, saved))
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
    })
}

/// A rule as the rules page shows it: how often it fired and how its
/// alerts were judged.
pub(super) struct RuleRow {
    pub(super) disabled: bool,
    pub(super) source: String,
    pub(super) id: String,
    pub(super) title: String,
    pub(super) alerts: u64,
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
    pub(super) judged_of: usize,
    pub(super) can_edit: bool,
    pub(super) can_tune: bool,
}

/// Switch a rule off or on, or suppress its alerts by a field's value for
/// some days: written to `tuning.toml` (sensors read it when they start),
/// audited.
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
                crate::tune::disabled_text(&old, &rule, action == "disable")?,
                json!({"rule": rule, "action": action}),
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

/// Rules that fired, with hit counts over every stored alert and outcomes
/// from the triage of the newest 10 000 alerts.
pub(super) async fn rules(State(c): State<Arc<Console>>, a: Auth) -> Res {
    a.need(Perm::Rules)?;
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (hits, alerts) = blocking(move || {
        let hits = buckets(siem.aggregate_records(
            &who,
            &peer,
            &AggParams {
                q: Some("_log:alerts".into()),
                from: None,
                to: None,
                agg: "terms".into(),
                field: Some("rule.id".into()),
                size: Some(1000),
                interval: None,
                sum: None,
            },
        )?);
        let p = AlertsParams {
            q: None,
            status: None,
            from: None,
            to: None,
            limit: Some(siem::store::MAX_LIMIT),
            offset: None,
        };
        Ok((hits, siem.list_alerts(&who, &peer, &p)?.1))
    })
    .await?;
    let mut rows: Vec<RuleRow> = hits
        .into_iter()
        .map(|b| RuleRow {
            href: format!("/alerts?rule={}", enc(&b.key)),
            disabled: false,
            id: b.key,
            source: String::new(),
            title: String::new(),
            alerts: b.count,
            true_positive: 0,
            false_positive: 0,
            benign: 0,
            open: 0,
            fp_ratio: "—".into(),
        })
        .collect();
    for al in &alerts {
        let Some(r) = rows.iter_mut().find(|r| al["rule.id"].as_str() == Some(r.id.as_str())) else { continue };
        if r.title.is_empty() {
            r.title = a.lens.alert_title(al);
            r.source = al["rule.source"].as_str().unwrap_or("").to_string();
        }
        match al["triage"]["status"].as_str().unwrap_or("new") {
            "closed_true_positive" => r.true_positive += 1,
            "closed_false_positive" => r.false_positive += 1,
            "closed_benign" => r.benign += 1,
            _ => r.open += 1,
        }
    }
    for r in &mut rows {
        let judged = r.true_positive + r.false_positive + r.benign;
        if judged > 0 {
            r.fp_ratio = format!("{:.0}%", 100.0 * r.false_positive as f64 / judged as f64);
        }
    }
    let can_edit = a.may(Perm::Tune) && c.cfg.editor.0.is_some();
    let can_tune = a.may(Perm::Tune) && c.cfg.tuning_file.is_some();
    let off = c.cfg.tuning_file.as_deref().map(crate::tune::disabled).unwrap_or_default();
    for r in &mut rows {
        r.disabled = off.contains(&r.id);
    }
    page(RulesPage { t: a.t, nav: nav(&a), rows, judged_of: alerts.len(), can_edit, can_tune })
}

//! The alert queue, an alert's page, triage and its evidence downloads.

use super::*;

/// One alert as a row of the queue.
pub(super) struct AlertRow {
    pub(super) id: String,
    pub(super) time: String,
    pub(super) severity: String,
    pub(super) title: String,
    pub(super) count: u64,
    pub(super) src: String,
    pub(super) dst: String,
    pub(super) sensor: String,
    pub(super) techniques: String,
    pub(super) status: String,
    pub(super) assignee: String,
}

pub(super) const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];
pub(super) const STATUSES: [&str; 6] =
    ["new", "acknowledged", "in_progress", "closed_true_positive", "closed_false_positive", "closed_benign"];

pub(super) fn severity_rank(s: &str) -> usize {
    SEVERITIES.iter().position(|x| *x == s).map_or(0, |i| SEVERITIES.len() - i)
}

pub(super) fn alert_row(lens: &Lens, a: &Value) -> AlertRow {
    let s = |k: &str| a[k].as_str().unwrap_or("").to_string();
    let techniques = a["mitre_attack"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    let severity = s("severity");
    AlertRow {
        id: s("id"),
        time: lens.time(a["ts"].as_f64().unwrap_or(0.0)),
        severity: if SEVERITIES.contains(&severity.as_str()) { severity } else { "info".into() },
        title: lens.alert_title(a),
        count: a["count"].as_u64().unwrap_or(1),
        src: lens.endpoint(a, "orig"),
        dst: lens.endpoint(a, "resp"),
        sensor: s("sensor"),
        techniques,
        status: a["triage"]["status"].as_str().unwrap_or("new").to_string(),
        assignee: a["triage"]["assignee"].as_str().unwrap_or("").to_string(),
    }
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(super) struct AlertFilter {
    pub(super) severity: String,
    pub(super) status: String,
    pub(super) rule: String,
    pub(super) sensor: String,
    pub(super) src: String,
    pub(super) dst: String,
    pub(super) technique: String,
    pub(super) range: String,
    pub(super) from: String,
    pub(super) to: String,
    /// The stored rule titles `rule` is a part of (any case, in English or
    /// the reader's language), found by [`queue`].
    #[serde(skip)]
    pub(super) rule_titles: Vec<String>,
}

impl AlertFilter {
    /// The filter as a query of the search language, every value quoted.
    pub(super) fn query(&self) -> Result<String, ConsoleError> {
        let mut parts = Vec::new();
        let mut add = |field: &str, v: &str| {
            if !v.trim().is_empty() {
                parts.push(format!("{field}:{}", quote(v.trim())));
            }
        };
        if !self.severity.is_empty() && !SEVERITIES.contains(&self.severity.as_str()) {
            return Err(ConsoleError::Bad(crate::error::Msg::with("error.severity", self.severity.as_str())));
        }
        add("severity", &self.severity);
        add("sensor", &self.sensor);
        add("mitre_attack", &self.technique);
        let mut q = parts.join(" AND ");
        for (field, v) in [("id.orig_h", &self.src), ("id.resp_h", &self.dst)] {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            // An address or a network: anything else is refused here, not
            // passed on as query syntax.
            let ok = v.parse::<std::net::IpAddr>().is_ok() || v.parse::<cidr::IpCidr>().is_ok();
            if !ok {
                return Err(ConsoleError::Bad(crate::error::Msg::with("error.address", v)));
            }
            let term = if v.contains('/') { format!("{field}:{v}") } else { format!("{field}:{}", quote(v)) };
            q = if q.is_empty() { term } else { format!("{q} AND {term}") };
        }
        let rule = self.rule.trim();
        if !rule.is_empty() {
            let mut any: Vec<String> = self.rule_titles.iter().map(|t| format!("rule.title:{}", quote(t))).collect();
            if !any.iter().any(|t| *t == format!("rule.title:{}", quote(rule))) {
                any.push(format!("rule.title:{}", quote(rule)));
            }
            any.push(format!("rule.id:{}", quote(rule)));
            let term = format!("({})", any.join(" OR "));
            q = if q.is_empty() { term } else { format!("{q} AND {term}") };
        }
        Ok(q)
    }

    fn url_query(&self) -> String {
        [
            ("severity", &self.severity),
            ("status", &self.status),
            ("rule", &self.rule),
            ("sensor", &self.sensor),
            ("src", &self.src),
            ("dst", &self.dst),
            ("technique", &self.technique),
            ("range", &self.range),
            ("from", &self.from),
            ("to", &self.to),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
    }
}

/// Rule titles a rule filter may stand for at once (each is a term of
/// the query, whose size is bounded).
const MAX_RULE_TITLES: usize = 100;

/// The titles of the rules that have alerts, most alerts first.
pub(super) async fn rule_titles(c: &Arc<Console>, a: &Auth) -> Result<Vec<String>, ConsoleError> {
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let p = AggParams {
        q: Some("_log:alerts".into()),
        from: None,
        to: None,
        agg: "terms".into(),
        field: Some("rule.title".into()),
        size: Some(1000),
        interval: None,
        sum: None,
    };
    let b = blocking(move || Ok(buckets(siem.aggregate_records(&who, &peer, &p)?))).await?;
    Ok(b.into_iter().map(|b| b.key).collect())
}

/// The queue: most severe first, then newest.
/// A refresh of a view the user opened is not audited again (the opening
/// was); a refresh with another filter is a new view, and is.
pub(super) async fn queue(
    c: &Arc<Console>,
    a: &Auth,
    f: &AlertFilter,
    refresh: bool,
) -> Result<(usize, Vec<AlertRow>), ConsoleError> {
    a.need(Perm::ReadAlerts)?;
    // A filter by a real address would tell a viewer which pseudonym it
    // hides: an oracle, refused.
    if a.lens.pseudonymised() && !(f.src.trim().is_empty() && f.dst.trim().is_empty()) {
        return Err(ConsoleError::Refused(crate::error::Msg::new("error.viewer_address_filter")));
    }
    if !f.status.is_empty() && !STATUSES.contains(&f.status.as_str()) {
        return Err(ConsoleError::Bad(crate::error::Msg::with("error.status", f.status.as_str())));
    }
    let rng = range_in(a, &f.range, &f.from, &f.to)?;
    let mut f = f.clone();
    if !f.rule.trim().is_empty() {
        let needle = f.rule.trim().to_lowercase();
        f.rule_titles = rule_titles(c, a)
            .await?
            .into_iter()
            .filter(|t| {
                // Matched as this reader sees the title (a viewer's
                // pseudonyms, not the addresses behind them).
                let shown = a.lens.text(t);
                shown.to_lowercase().contains(&needle) || a.lens.rule_title(&shown).to_lowercase().contains(&needle)
            })
            .take(MAX_RULE_TITLES)
            .collect();
    }
    let p = AlertsParams {
        q: Some(f.query()?),
        status: (!f.status.is_empty()).then(|| f.status.clone()),
        from: rng.from,
        to: rng.to,
        limit: Some(500),
        offset: None,
    };
    let view = (a.session.user.clone(), f.url_query());
    let again = {
        let mut views = c.queue_views.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: forgetting only means the next refresh is audited.
        if views.len() >= 10_000 {
            views.clear();
        }
        refresh && views.contains(&view)
    };
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (total, hits) =
        blocking(move || Ok(if again { siem.list_alerts_again(&p)? } else { siem.list_alerts(&who, &peer, &p)? }))
            .await?;
    if !again {
        c.queue_views.lock().unwrap_or_else(|p| p.into_inner()).insert(view);
    }
    let hits: Vec<Value> = hits.into_iter().map(|h| shown(a, h)).collect();
    let mut rows: Vec<AlertRow> = hits.iter().map(|h| alert_row(&a.lens, h)).collect();
    let ts: HashMap<String, f64> =
        hits.iter().map(|h| (h["id"].as_str().unwrap_or("").to_string(), h["ts"].as_f64().unwrap_or(0.0))).collect();
    rows.sort_by(|x, y| {
        severity_rank(&y.severity)
            .cmp(&severity_rank(&x.severity))
            .then(ts.get(&y.id).unwrap_or(&0.0).total_cmp(ts.get(&x.id).unwrap_or(&0.0)))
    });
    Ok((total, rows))
}

#[derive(Template)]
#[template(path = "alerts.html")]
pub(super) struct AlertsPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) f: AlertFilter,
    pub(super) severities: [&'static str; 5],
    pub(super) statuses: [&'static str; 6],
    pub(super) ranges: [(&'static str, &'static str); 5],
    pub(super) rng: Range,
    /// The rules' titles, offered in the rule filter.
    pub(super) titles: Vec<String>,
    pub(super) rows: Vec<AlertRow>,
    pub(super) total: usize,
    pub(super) can_triage: bool,
    /// What the time filter applies.
    pub(super) range_shown: String,
    /// Filters by address (not for pseudonymised readers).
    pub(super) address_filters: bool,
    pub(super) query: String,
    pub(super) back: String,
    /// Why the filter was refused; the form keeps what was typed.
    pub(super) error: String,
    pub(super) refused: bool,
}

pub(super) async fn alerts(State(c): State<Arc<Console>>, a: Auth, Query(mut f): Query<AlertFilter>) -> Res {
    // A filter refused for what was typed: the queue's page again, empty,
    // with the filter as typed and why.
    let refused = |e: ConsoleError| match e {
        ConsoleError::Bad(m) => Ok(m.text(a.t)),
        ConsoleError::Api(m) if m.status == StatusCode::BAD_REQUEST => Ok(m.text(a.t)),
        other => Err(other),
    };
    let (range, mut error) = match range_in(&a, &f.range, &f.from, &f.to) {
        Ok(r) => (r, String::new()),
        Err(e) => (range_of("")?, refused(e)?),
    };
    if error.is_empty() {
        f.range = range.code.clone();
    }
    let (total, rows) = if error.is_empty() {
        match queue(&c, &a, &f, false).await {
            Ok(found) => found,
            Err(e) => {
                error = refused(e)?;
                (0, Vec::new())
            }
        }
    } else {
        (0, Vec::new())
    };
    let titles = rule_titles(&c, &a).await?.iter().map(|t| a.lens.rule_title(&a.lens.text(t))).collect();
    let query = f.url_query();
    let refused = !error.is_empty();
    page(AlertsPage {
        t: a.t,
        nav: nav(&a),
        severities: SEVERITIES,
        statuses: STATUSES,
        ranges: RANGES,
        rows,
        total,
        can_triage: a.may(Perm::Triage),
        address_filters: !a.lens.pseudonymised(),
        range_shown: range_shown_to(&a, range.from, range.to),
        rng: range,
        titles,
        back: format!("/alerts?{query}"),
        query,
        f,
        refused,
        error,
    })
    .map(|r| if refused { (StatusCode::BAD_REQUEST, r).into_response() } else { r })
}

#[derive(Template)]
#[template(path = "alert_rows.html")]
pub(super) struct AlertRows {
    pub(super) t: Tr,
    pub(super) rows: Vec<AlertRow>,
    pub(super) can_triage: bool,
}

/// The queue's rows alone, for the page's live refresh; the total rides in
/// a header.
pub(super) async fn alert_rows(State(c): State<Arc<Console>>, a: Auth, Query(f): Query<AlertFilter>) -> Res {
    let (total, rows) = queue(&c, &a, &f, true).await?;
    let mut r = page(AlertRows { t: a.t, rows, can_triage: a.may(Perm::Triage) })?;
    r.headers_mut().insert("x-total", HeaderValue::from(total));
    Ok(r)
}

/// Acknowledge, assign or close many alerts at once.
pub(super) async fn bulk(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Triage)?;
    let ids: Vec<String> = f.all("ids").into_iter().map(str::to_string).collect();
    if ids.is_empty() || ids.len() > 500 {
        return Err(ConsoleError::Bad(crate::error::Msg::new("error.bulk_count")));
    }
    let action = f.get("action").unwrap_or("");
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let target = f.get("incident").unwrap_or("").trim().to_string();
    if action == "incident_new" || action == "incident_add" {
        let new = action == "incident_new";
        let id = blocking(move || {
            Ok(if new {
                siem.create_incident(&who, &peer, NewIncident { title: target, alerts: ids })?.id
            } else {
                let change = IncidentChange { add_alerts: ids, ..Default::default() };
                siem.change_incident(&who, &peer, &target, change)?.id
            })
        })
        .await?;
        return Ok(Redirect::to(&format!("/incidents/{}", enc(&id))).into_response());
    }
    let reason = f.get("reason").map(str::to_string).filter(|r| !r.trim().is_empty());
    let change = |id: &str| -> Result<TriageChange, ConsoleError> {
        let _ = id;
        Ok(match action {
            "assign" => TriageChange {
                status: None,
                reason: None,
                assign: Some(f.get("assignee").unwrap_or("").to_string()),
                comment: None,
            },
            s if STATUSES.contains(&s) => {
                TriageChange { status: Some(s.to_string()), reason: reason.clone(), assign: None, comment: None }
            }
            other => return Err(ConsoleError::Invalid(format!("unknown action '{other}'"))),
        })
    };
    let mut changes = Vec::new();
    for id in &ids {
        changes.push((id.clone(), change(id)?));
    }
    blocking(move || {
        for (id, ch) in changes {
            siem.triage_alert(&who, &peer, &id, ch)?;
        }
        Ok(())
    })
    .await?;
    let back = f.get("back").filter(|b| b.starts_with("/alerts") && !b.starts_with("//")).unwrap_or("/alerts");
    Ok(Redirect::to(back).into_response())
}

/// A record as a row of an evidence or results table.
pub(super) struct RecordRow {
    pub(super) time: String,
    pub(super) log: String,
    pub(super) sensor: String,
    pub(super) fields: Vec<(String, String, String)>,
    /// The record's own page (an alert's), if it has one.
    pub(super) href: String,
}

pub(super) fn record_row(lens: &Lens, r: &Value) -> RecordRow {
    let log = r["_log"].as_str().unwrap_or("").to_string();
    let mut fields = lens.fields(r, &["ts", "_log", "_sensor"]);
    // An alert found by a search leads to its page.
    let alert = if log == "alerts" { r["id"].as_str().filter(|id| valid_id(id)) } else { None };
    let href = alert.map(|id| format!("/alerts/{}", enc(id))).unwrap_or_default();
    if !href.is_empty() {
        if let Some(f) = fields.iter_mut().find(|(k, ..)| k == "id") {
            f.2 = href.clone();
        }
    }
    RecordRow {
        time: lens.time(r["ts"].as_f64().unwrap_or(0.0)),
        log,
        sensor: r["_sensor"].as_str().unwrap_or("").to_string(),
        fields,
        href,
    }
}

/// An id fit for a link's path (alert and incident ids are letters and
/// digits; anything else is not linked).
pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[derive(Template)]
#[template(path = "alert.html")]
pub(super) struct AlertPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) a: AlertRow,
    pub(super) summary: String,
    pub(super) rule_source: String,
    pub(super) rule_id: String,
    pub(super) rule_version: String,
    pub(super) first_last: String,
    pub(super) techniques: Vec<(String, String)>,
    pub(super) matched: Vec<(String, String)>,
    pub(super) reason: String,
    pub(super) incident: String,
    pub(super) can_triage: bool,
    pub(super) can_search: bool,
    pub(super) statuses: [&'static str; 6],
    pub(super) comments: Vec<(String, String, String)>,
    pub(super) trail: Vec<(String, String, String)>,
    pub(super) uid: String,
    pub(super) uid_query: String,
    /// The source's and destination's timelines (readers who search, real
    /// addresses only).
    pub(super) src_href: String,
    pub(super) dst_href: String,
    /// Keeping the alert's flow in an investigation.
    pub(super) add: AddForm,
    /// How many flows the alert names.
    pub(super) flows: usize,
    pub(super) can_packets: bool,
    /// The IoT model's change, as it would be accepted (admins only).
    pub(super) accept_line: String,
    /// That change is in the models' accepted list already.
    pub(super) accepted: bool,
    pub(super) evidence: Vec<RecordRow>,
    pub(super) related: Vec<AlertRow>,
    /// The triage form as it was sent, when it was refused.
    pub(super) kept: TriageKept,
}

/// An admin accepts what an IoT profile alert reported as the device's new
/// normal: it joins `[iot] accepted` in `models.toml` (sensors read it when
/// they start). Audited.
pub(super) async fn accept_change(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Tune)?;
    // Changes audited after they are made wait while the trail is broken.
    c.siem.writable()?;
    let Some(models) = c.cfg.models_file.clone() else {
        return Err(ConsoleError::Invalid("this console was started without a rules folder".into()));
    };
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let id2 = id.clone();
    blocking(move || {
        // Read as part of the acceptance, audited with it (one entry).
        let p = AlertsParams {
            q: Some(format!("id:{}", quote(&id2))),
            status: None,
            from: None,
            to: None,
            limit: Some(1),
            offset: None,
        };
        let al = siem.list_alerts_again(&p)?.1.into_iter().next().ok_or(ConsoleError::NotFound)?;
        let line = iot_accept_line(&al).ok_or_else(|| ConsoleError::Invalid("not a device profile alert".into()))?;
        let added = crate::tune::accept(&models, &line)?;
        // What it reported is normal now: the alert is closed as benign,
        // saying why, in the one entry of the acceptance.
        let already_closed = al["triage"]["status"].as_str().is_some_and(|s| s.starts_with("closed"));
        if already_closed {
            siem.audit_as(&who, &peer, "model.accept", json!({"id": id2, "accepted": line, "added": added}))?;
        } else {
            let close = TriageChange {
                status: Some("closed_benign".into()),
                reason: Some(format!("accepted as the device's normal: {line}")),
                assign: None,
                comment: None,
            };
            siem.triage_alert_for(&who, &peer, &id2, close, "model.accept", json!({"accepted": line, "added": added}))?;
        }
        Ok(())
    })
    .await?;
    Ok(Redirect::to(&format!("/alerts/{}", enc(&id))).into_response())
}

pub(super) fn iot_accept_line(al: &Value) -> Option<String> {
    if al["rule.source"].as_str() != Some("model") || al["rule.id"].as_str() != Some("model:iot") {
        return None;
    }
    let matched: Vec<&str> = al["matched"].as_array()?.iter().filter_map(Value::as_str).collect();
    crate::tune::accepted_line(al["id.orig_h"].as_str()?, &matched)
}

/// Packets and evidence bundles carry the flows as they were: they cannot be
/// pseudonymised faithfully, so a pseudonymised reader is refused them, and
/// told why.
pub(super) fn need_packets(a: &Auth) -> Result<(), ConsoleError> {
    if a.lens.pseudonymised() {
        return Err(ConsoleError::Refused(crate::error::Msg::new("error.viewer_packets")));
    }
    a.need(Perm::Packets)
}

/// A signed evidence bundle of an alert or an incident, as a download.
pub(super) async fn evidence_bundle(c: Arc<Console>, a: Auth, p: siem::api::EvidenceParams) -> Res {
    need_packets(&a)?;
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (name, bytes) = blocking(move || Ok(siem.export_evidence(&who, &peer, p)?)).await?;
    Ok((
        [
            ("content-type", "application/x-tar".to_string()),
            ("content-disposition", format!("attachment; filename=\"{name}\"")),
        ],
        bytes,
    )
        .into_response())
}

pub(super) async fn alert_evidence(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>) -> Res {
    evidence_bundle(c, a, siem::api::EvidenceParams { alert: Some(id), incident: None }).await
}

pub(super) async fn incident_evidence(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>) -> Res {
    evidence_bundle(c, a, siem::api::EvidenceParams { alert: None, incident: Some(id) }).await
}

/// The packets of an alert's flow, from the sensor's ring, as a pcap file.
pub(super) async fn alert_pcap(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>) -> Res {
    need_packets(&a)?;
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (name, bytes) = blocking(move || {
        // Every flow the alert names, its own and its evidence's; the
        // download is audited as that, in the alert's own trail.
        let al = siem.find_alert(&id)?;
        if siem::api::alert_flow_uids(&al).is_empty() {
            return Err(ConsoleError::Missing("this alert names no flow".into()));
        }
        let p = siem::api::PcapParams { alert: Some(id), ..Default::default() };
        Ok(siem.flow_pcap(&who, &peer, p)?)
    })
    .await?;
    Ok((
        [
            ("content-type", "application/vnd.tcpdump.pcap".to_string()),
            ("content-disposition", format!("attachment; filename=\"{name}\"")),
        ],
        bytes,
    )
        .into_response())
}

/// A host's timeline, when the reader may open it and there is a host.
fn host_href(may: bool, addr: &str) -> String {
    if may && addr.parse::<std::net::IpAddr>().is_ok() {
        crate::view::timeline_href("addr", addr)
    } else {
        String::new()
    }
}

/// What the triage form held, given back with the reason it was refused.
#[derive(Default)]
pub(super) struct TriageKept {
    pub(super) status: String,
    pub(super) reason: String,
    pub(super) assign: String,
    pub(super) comment: String,
    pub(super) error: String,
}

pub(super) async fn alert(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>) -> Res {
    alert_page(c, a, id, TriageKept::default()).await
}

pub(super) async fn alert_page(c: Arc<Console>, a: Auth, id: String, kept: TriageKept) -> Res {
    a.need(Perm::ReadAlerts)?;
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let can_search = a.may(Perm::Search);
    let id2 = id.clone();
    let (al, evidence, related, trail) = blocking(move || {
        let al = siem.alert(&who, &peer, &id2)?;
        // The records of every flow it names, for those who may see records,
        // and its own flow as other sensors saw it (through its Community ID).
        let evidence = if can_search {
            let mut records = siem.alert_records(&al)?;
            if let Some(uid) = al["uid"].as_str().filter(|u| !u.is_empty()) {
                let named = siem::api::alert_flow_uids(&al);
                let p = PivotParams { uid: Some(uid.to_string()), community_id: None };
                let others = siem.flow_records(p)?;
                records.extend(
                    others.into_iter().filter(|r| r["uid"].as_str().is_none_or(|u| !named.iter().any(|n| n == u))),
                );
                records.sort_by(|a, b| a["ts"].as_f64().unwrap_or(0.0).total_cmp(&b["ts"].as_f64().unwrap_or(0.0)));
            }
            records
        } else {
            Vec::new()
        };
        let src = al["id.orig_h"].as_str().unwrap_or("").to_string();
        let related = if src.is_empty() {
            Vec::new()
        } else {
            let p = AlertsParams {
                q: Some(format!("id.orig_h:{}", quote(&src))),
                status: None,
                from: None,
                to: None,
                limit: Some(20),
                offset: None,
            };
            // Part of the alert's view, audited as such.
            siem.list_alerts_again(&p)?.1.into_iter().filter(|r| r["id"] != al["id"]).collect()
        };
        let flows: Vec<&str> = al["uid"]
            .as_str()
            .into_iter()
            .chain(al["evidence"].as_array().into_iter().flatten().filter_map(|e| e.as_str()?.strip_prefix("conn:")))
            .collect();
        let trail: Vec<siem::audit::AuditEntry> = match &siem.audit {
            Some(log) => log
                .read(None, None, 100_000)
                .map_err(|e| ConsoleError::Internal(e.to_string()))?
                .into_iter()
                // Its own entries and its flows' (packet downloads name the
                // flow; an evidence bundle names the alert).
                .filter(|e| e.targets().iter().any(|t| *t == id2 || flows.contains(t)))
                .collect(),
            None => Vec::new(),
        };
        Ok((al, evidence, related, trail))
    })
    .await?;
    // Scrubbed together: a name the flow's records mark goes everywhere.
    let (n_ev, n_rel) = (evidence.len(), related.len());
    let mut all: Vec<Value> = std::iter::once(al).chain(evidence).chain(related).collect();
    a.lens.scrub_all(&mut all);
    let related: Vec<Value> = all.split_off(1 + n_ev);
    let evidence: Vec<Value> = all.split_off(1);
    let al = all.pop().unwrap_or(Value::Null);
    debug_assert_eq!((evidence.len(), related.len()), (n_ev, n_rel));
    let lens = &a.lens;
    let refused = !kept.error.is_empty();
    let s = |k: &str| al[k].as_str().unwrap_or("").to_string();
    let techniques = al["mitre_attack"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|t| attack_href(t).map(|h| (t.to_string(), h)))
        .collect();
    let matched = al["matched"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m.split_once('=') {
            Some((k, v)) if !k.contains(' ') && !k.starts_with('$') => (k.to_string(), v.to_string()),
            _ => (String::new(), m.to_string()),
        })
        .collect();
    let comments = al["triage"]["comments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|cm| {
            (
                cm["by"].as_str().unwrap_or("").to_string(),
                lens.time(cm["ts"].as_f64().unwrap_or(0.0)),
                cm["text"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let trail = trail
        .iter()
        .map(|e| {
            let what = match e.detail["status"].as_str() {
                Some(st) => format!("{} → {}", a.t.action(&e.action), a.t.tk("status", st)),
                None => a.t.action(&e.action),
            };
            (lens.time(e.ts), e.who.clone(), what)
        })
        .collect();
    let flows = siem::api::alert_flow_uids(&al);
    let uid = flows.first().cloned().unwrap_or_default();
    let uid_query = flows.iter().map(|u| format!("uid:{}", quote(u))).collect::<Vec<_>>().join(" OR ");
    let first_last = format!(
        "{} – {}",
        lens.time(al["first_seen"].as_f64().unwrap_or(0.0)),
        lens.time(al["last_seen"].as_f64().unwrap_or(0.0))
    );
    page(AlertPage {
        t: a.t,
        nav: nav(&a),
        summary: lens.alert_summary(&al),
        rule_source: s("rule.source"),
        rule_id: s("rule.id"),
        rule_version: s("rule.version"),
        first_last,
        techniques,
        matched,
        reason: al["triage"]["reason"].as_str().unwrap_or("").to_string(),
        incident: al["incident"].as_str().unwrap_or("").to_string(),
        can_triage: a.may(Perm::Triage),
        can_search,
        statuses: STATUSES,
        comments,
        trail,
        uid_query: enc(&uid_query),
        flows: flows.len(),
        add: AddForm { allowed: can_search && !uid.is_empty(), ..add_form(&c, &a, "uid", &uid, &Range::default()) },
        src_href: host_href(can_search && !lens.pseudonymised(), &s("id.orig_h")),
        dst_href: host_href(can_search && !lens.pseudonymised(), &s("id.resp_h")),
        can_packets: a.may(Perm::Packets) && !flows.is_empty(),
        accept_line: if a.may(Perm::Tune) && c.cfg.models_file.is_some() {
            iot_accept_line(&al).unwrap_or_default()
        } else {
            String::new()
        },
        accepted: match (&c.cfg.models_file, iot_accept_line(&al)) {
            (Some(m), Some(line)) => crate::tune::is_accepted(m, &line),
            _ => false,
        },
        uid,
        evidence: evidence.iter().map(|r| record_row(lens, r)).collect(),
        related: related.iter().map(|r| alert_row(lens, r)).collect(),
        a: alert_row(lens, &al),
        kept,
    })
    .map(|r| if refused { (StatusCode::BAD_REQUEST, r).into_response() } else { r })
}

pub(super) async fn triage(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Triage)?;
    let nonempty = |k: &str| f.get(k).map(str::to_string).filter(|v| !v.trim().is_empty());
    let change = TriageChange {
        status: nonempty("status"),
        reason: nonempty("reason"),
        assign: nonempty("assign"),
        comment: nonempty("comment"),
    };
    let kept = TriageKept {
        status: f.get("status").unwrap_or("").to_string(),
        reason: f.get("reason").unwrap_or("").to_string(),
        assign: f.get("assign").unwrap_or("").to_string(),
        comment: f.get("comment").unwrap_or("").to_string(),
        error: String::new(),
    };
    // The SIEM refuses it too; asked here first, the reader is told in
    // their language.
    let closing = change.status.as_deref().is_some_and(|s| s.starts_with("closed_"));
    if closing && change.reason.is_none() {
        let error = crate::error::Msg::new("triage.needs_reason").text(a.t);
        return alert_page(c, a, id, TriageKept { error, ..kept }).await;
    }
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let id2 = id.clone();
    match blocking(move || Ok(siem.triage_alert(&who, &peer, &id2, change)?)).await {
        Ok(_) => Ok(Redirect::to(&format!("/alerts/{}", enc(&id))).into_response()),
        // Refused for what was typed: the page again, the typing kept.
        Err(e @ (ConsoleError::Invalid(_) | ConsoleError::Bad(_))) | Err(e @ ConsoleError::Api(_)) if !matches!(&e, ConsoleError::Api(m) if m.status != StatusCode::BAD_REQUEST) =>
        {
            let error = match &e {
                ConsoleError::Bad(m) => m.text(a.t),
                ConsoleError::Api(m) => m.text(a.t),
                other => other.to_string(),
            };
            alert_page(c, a, id, TriageKept { error, ..kept }).await
        }
        Err(e) => Err(e),
    }
}

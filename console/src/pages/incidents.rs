//! Incidents: the list, one incident and its changes.

use super::*;

pub(super) struct IncidentRow {
    pub(super) id: String,
    pub(super) title: String,
    pub(super) status: String,
    pub(super) owner: String,
    /// Its alerts: id, title and severity (the id again, `info`, until
    /// they are looked up).
    pub(super) alerts: Vec<(String, String, String)>,
    pub(super) updated: String,
}

#[derive(Template)]
#[template(path = "incidents.html")]
pub(super) struct IncidentsPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) rows: Vec<IncidentRow>,
}

pub(super) async fn incidents(State(c): State<Arc<Console>>, a: Auth) -> Res {
    a.need(Perm::ReadAlerts)?;
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (list, alerts) = blocking(move || {
        let list = siem.list_incidents(&who, &peer, None)?;
        // Their alerts' titles and severities: part of reading the list
        // (audited above as such), not another reading.
        let ids: Vec<&String> = list.iter().flat_map(|i| i.alerts.iter()).take(2000).collect();
        let mut alerts = Vec::new();
        for chunk in ids.chunks(100) {
            let q = chunk.iter().map(|i| format!("id:{}", quote(i))).collect::<Vec<_>>().join(" OR ");
            let p = AlertsParams { q: Some(q), status: None, from: None, to: None, limit: Some(100), offset: None };
            alerts.extend(siem.list_alerts_again(&p)?.1);
        }
        Ok((list, alerts))
    })
    .await?;
    let mut alerts = alerts.into_iter().map(|x| shown(&a, x)).collect::<Vec<_>>();
    a.lens.scrub_all(&mut alerts);
    let known: HashMap<String, AlertRow> =
        alerts.iter().map(|x| alert_row(&a.lens, x)).map(|r| (r.id.clone(), r)).collect();
    let rows = list
        .into_iter()
        .map(|i| {
            let mut row = incident_row(&a.lens, shown_incident(&a, i, &mut Vec::new()));
            for (id, title, severity) in &mut row.alerts {
                if let Some(r) = known.get(id.as_str()) {
                    (*title, *severity) = (r.title.clone(), r.severity.clone());
                }
            }
            // The most severe first.
            row.alerts.sort_by_key(|(_, _, s)| std::cmp::Reverse(severity_rank(s)));
            row
        })
        .collect();
    page(IncidentsPage { t: a.t, nav: nav(&a), rows })
}

/// An incident as this reader may see it (titles and notes are free text),
/// with the names its alerts mark as people's.
pub(super) fn shown_incident(
    a: &Auth,
    i: siem::workflow::Incident,
    alerts: &mut Vec<Value>,
) -> siem::workflow::Incident {
    if !a.lens.pseudonymised() {
        return i;
    }
    let id = i.id.clone();
    alerts.push(serde_json::to_value(&i).unwrap_or(Value::Null));
    a.lens.scrub_all(alerts);
    let v = alerts.pop().unwrap_or(Value::Null);
    // Alert ids are kept: they are the links to the alerts.
    serde_json::from_value(v)
        .map(|mut x: siem::workflow::Incident| {
            x.id = id;
            x.alerts = i.alerts.clone();
            x
        })
        .unwrap_or_else(|_| siem::workflow::Incident {
            title: String::new(),
            notes: Vec::new(),
            evidence: Vec::new(),
            ..i
        })
}

pub(super) fn incident_row(lens: &Lens, i: siem::workflow::Incident) -> IncidentRow {
    IncidentRow {
        status: serde_json::to_value(i.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
        owner: i.owner.unwrap_or_default(),
        updated: lens.time(i.updated_ts),
        id: i.id,
        title: i.title,
        alerts: i.alerts.into_iter().map(|id| (id.clone(), id, "info".to_string())).collect(),
    }
}

pub(super) const INCIDENT_STATUSES: [&str; 4] = ["open", "investigating", "contained", "closed"];

#[derive(Template)]
#[template(path = "incident.html")]
pub(super) struct IncidentPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) i: IncidentRow,
    pub(super) created: String,
    pub(super) auto: String,
    pub(super) notes: Vec<(String, String, String)>,
    pub(super) evidence: Vec<String>,
    pub(super) alerts: Vec<AlertRow>,
    pub(super) statuses: [&'static str; 4],
    pub(super) can_change: bool,
    pub(super) can_export: bool,
    /// The investigations attached to it.
    pub(super) investigations: Vec<InvestigationRow>,
    /// The change form as it was sent, when it was refused.
    pub(super) kept: IncidentKept,
}

/// What the change form held, given back with the reason it was refused.
#[derive(Default)]
pub(super) struct IncidentKept {
    pub(super) status: String,
    pub(super) owner: String,
    pub(super) note: String,
    pub(super) evidence: String,
    pub(super) merge: String,
    pub(super) error: String,
}

pub(super) async fn incident(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>) -> Res {
    incident_page(c, a, id, IncidentKept::default()).await
}

async fn incident_page(c: Arc<Console>, a: Auth, id: String, kept: IncidentKept) -> Res {
    a.need(Perm::ReadAlerts)?;
    let wf = c.siem.workflow.as_ref().ok_or_else(|| ConsoleError::Invalid("no triage state kept".into()))?;
    let inc = wf.incident(&id).ok_or(ConsoleError::NotFound)?;
    c.siem.audit_as(&a.session.user, &a.peer, "incident.view", json!({"id": id}))?;
    let ids = inc.alerts.clone();
    let siem = Arc::clone(&c.siem);
    let alerts = blocking(move || {
        let mut out = Vec::new();
        for chunk in ids.chunks(100) {
            let q = chunk.iter().map(|i| format!("id:{}", quote(i))).collect::<Vec<_>>().join(" OR ");
            let p = AlertsParams { q: Some(q), status: None, from: None, to: None, limit: Some(100), offset: None };
            // Part of the incident's view, audited as such.
            out.extend(siem.list_alerts_again(&p)?.1);
        }
        Ok(out)
    })
    .await?;
    let mut alerts = alerts;
    let inc = shown_incident(&a, inc, &mut alerts);
    let lens = &a.lens;
    let refused = !kept.error.is_empty();
    let notes = inc.notes.iter().map(|n| (n.by.clone(), lens.time(n.ts), n.text.clone())).collect();
    page(IncidentPage {
        t: a.t,
        nav: nav(&a),
        created: format!("{} · {}", inc.created_by, lens.time(inc.created_ts)),
        auto: inc.auto.clone().unwrap_or_default(),
        notes,
        evidence: inc.evidence.clone(),
        alerts: alerts.iter().map(|x| alert_row(lens, x)).collect(),
        statuses: INCIDENT_STATUSES,
        can_change: a.may(Perm::Triage),
        can_export: a.may(Perm::Packets),
        investigations: of_incident(&c, lens, &inc.id),
        i: incident_row(lens, inc),
        kept,
    })
    .map(|r| if refused { (StatusCode::BAD_REQUEST, r).into_response() } else { r })
}

/// Status, owner, a note, evidence, alerts removed, another incident merged.
pub(super) async fn change_incident(
    State(c): State<Arc<Console>>,
    a: Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Triage)?;
    let nonempty = |k: &str| f.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let change = IncidentChange {
        status: nonempty("status"),
        owner: nonempty("owner"),
        note: nonempty("note"),
        evidence: nonempty("evidence").into_iter().collect(),
        add_alerts: Vec::new(),
        remove_alerts: f.all("remove").into_iter().map(str::to_string).collect(),
        merge: nonempty("merge"),
    };
    let kept = IncidentKept {
        status: f.get("status").unwrap_or("").to_string(),
        owner: f.get("owner").unwrap_or("").to_string(),
        note: f.get("note").unwrap_or("").to_string(),
        evidence: f.get("evidence").unwrap_or("").to_string(),
        merge: f.get("merge").unwrap_or("").to_string(),
        error: String::new(),
    };
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let id2 = id.clone();
    match blocking(move || Ok(siem.change_incident(&who, &peer, &id2, change)?)).await {
        Ok(_) => Ok(Redirect::to(&format!("/incidents/{}", enc(&id))).into_response()),
        // Refused for what was typed: the page again, the typing kept.
        Err(e) => {
            let error = match e {
                ConsoleError::Bad(m) => m.text(a.t),
                ConsoleError::Invalid(m) => m,
                ConsoleError::Api(m) if m.status == StatusCode::BAD_REQUEST => m.text(a.t),
                other => return Err(other),
            };
            incident_page(c, a, id, IncidentKept { error, ..kept }).await
        }
    }
}

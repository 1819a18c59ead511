//! Saved investigations: the searches, flows and hosts a responder looked
//! at, over their ranges, with notes; kept under a title, reopened step by
//! step, and attached to an incident.

use super::*;
use crate::investigations::{Investigation, Kind, Step};

/// The "keep in an investigation" form a search or a timeline shows: what
/// it would keep, and the investigations it could go to.
pub(super) struct AddForm {
    pub(super) allowed: bool,
    pub(super) kind: &'static str,
    pub(super) value: String,
    pub(super) rng: Range,
    pub(super) investigations: Vec<(String, String)>,
}

pub(super) fn add_form(c: &Console, a: &Auth, kind: &'static str, value: &str, rng: &Range) -> AddForm {
    AddForm {
        allowed: a.may(Perm::Search),
        kind,
        value: value.to_string(),
        rng: rng.clone(),
        investigations: c.investigations.list().into_iter().take(50).map(|i| (i.id, i.title)).collect(),
    }
}

/// Where a step leads: the search or the timeline it kept, over its range.
fn step_href(s: &Step) -> String {
    let r = Range { code: s.range.clone(), from_text: s.from.clone(), to_text: s.to.clone(), ..Range::default() };
    match s.kind {
        Kind::Search => format!("{}&{}", search_href(&s.value), r.url_query()),
        Kind::Uid | Kind::CommunityId | Kind::Addr => {
            format!("{}&{}", crate::view::timeline_href(s.kind.name(), &s.value), r.url_query())
        }
        Kind::Note => String::new(),
    }
}

/// A step's range in words: the list's choice, or the typed ends.
fn step_range(t: Tr, s: &Step) -> String {
    if s.kind == Kind::Note {
        return String::new();
    }
    if s.from.is_empty() && s.to.is_empty() {
        let key = RANGES.iter().find(|(v, _)| *v == s.range).map_or("range.all", |(_, k)| k);
        return t.t(key).to_string();
    }
    format!("{} – {}", s.from, if s.to.is_empty() { t.t("range.now") } else { &s.to })
}

pub(super) struct StepRow {
    pub(super) by: String,
    pub(super) when: String,
    pub(super) kind: &'static str,
    pub(super) value: String,
    pub(super) range: String,
    pub(super) href: String,
    pub(super) note: String,
}

pub(super) struct InvestigationRow {
    pub(super) id: String,
    pub(super) title: String,
    pub(super) owner: String,
    pub(super) updated: String,
    pub(super) steps: usize,
    pub(super) incident: String,
}

fn investigation_row(lens: &Lens, i: &Investigation) -> InvestigationRow {
    InvestigationRow {
        id: i.id.clone(),
        title: i.title.clone(),
        owner: i.owner.clone(),
        updated: lens.time(i.updated_ts),
        steps: i.steps.len(),
        incident: i.incident.clone().unwrap_or_default(),
    }
}

/// The investigations attached to an incident, for its page.
pub(super) fn of_incident(c: &Console, lens: &Lens, incident: &str) -> Vec<InvestigationRow> {
    c.investigations.of_incident(incident).iter().map(|i| investigation_row(lens, i)).collect()
}

#[derive(Template)]
#[template(path = "investigations.html")]
pub(super) struct InvestigationsPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) rows: Vec<InvestigationRow>,
}

pub(super) async fn investigations(State(c): State<Arc<Console>>, a: Auth) -> Res {
    a.need(Perm::Search)?;
    let rows = c.investigations.list().iter().map(|i| investigation_row(&a.lens, i)).collect();
    page(InvestigationsPage { t: a.t, nav: nav(&a), rows })
}

#[derive(Template)]
#[template(path = "investigation.html")]
pub(super) struct InvestigationPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) i: InvestigationRow,
    pub(super) created: String,
    pub(super) steps: Vec<StepRow>,
    /// Incidents it may be attached to: (id, title).
    pub(super) incidents: Vec<(String, String)>,
    pub(super) incident_title: String,
}

pub(super) async fn investigation(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>) -> Res {
    a.need(Perm::Search)?;
    let inv = c.investigations.get(&id).ok_or(ConsoleError::NotFound)?;
    c.siem.audit_as(&a.session.user, &a.peer, "investigation.view", json!({"id": id}))?;
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let incidents = if a.may(Perm::ReadAlerts) && c.siem.workflow.is_some() {
        blocking(move || Ok(siem.list_incidents(&who, &peer, None)?)).await?
    } else {
        Vec::new()
    };
    let lens = &a.lens;
    let incident_title = inv
        .incident
        .as_ref()
        .and_then(|x| incidents.iter().find(|i| &i.id == x))
        .map(|i| lens.text(&i.title))
        .unwrap_or_default();
    let incidents = incidents
        .into_iter()
        .filter(|i| i.status != siem::workflow::IncidentStatus::Merged)
        .map(|i| (i.id, lens.text(&i.title)))
        .collect();
    let steps = inv
        .steps
        .iter()
        .map(|s| StepRow {
            by: s.by.clone(),
            when: lens.time(s.ts),
            kind: s.kind.name(),
            value: s.value.clone(),
            range: step_range(a.t, s),
            href: step_href(s),
            note: s.note.clone(),
        })
        .collect();
    page(InvestigationPage {
        t: a.t,
        nav: nav(&a),
        created: format!("{} · {}", inv.owner, lens.time(inv.created_ts)),
        i: investigation_row(lens, &inv),
        steps,
        incidents,
        incident_title,
    })
}

/// Keeps a step (a search, a flow, a host, or a note) in an investigation,
/// a new one when no id is given (then titled by the form): one audit
/// entry with what was kept and the note typed.
pub(super) async fn add_step(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Search)?;
    c.siem.writable()?;
    let get = |k: &str| f.get(k).unwrap_or("").trim().to_string();
    let kind = Kind::parse(&get("kind")).ok_or_else(|| ConsoleError::Invalid("unknown kind of step".into()))?;
    let value = get("value");
    if kind == Kind::Search {
        // A search that could not run is not kept.
        siem::query::parse(&value, &c.siem.catalog)
            .map_err(|e| ConsoleError::Invalid(format!("invalid query: {e}")))?;
    }
    // The range once it reads: spans stay relative, times get their offset.
    let rng = if kind == Kind::Note {
        Range::default()
    } else {
        range_in(&a, &get("range"), &get("from"), &get("to"))?.kept(&a.lens)
    };
    let step = Step {
        ts: now(),
        by: a.session.user.clone(),
        kind,
        value: if kind == Kind::Note { String::new() } else { value },
        range: rng.code.clone(),
        from: rng.from_text.clone(),
        to: rng.to_text.clone(),
        note: f.get("note").unwrap_or("").trim().to_string(),
    };
    let store = &c.investigations;
    let (id, title, created) = match get("investigation").as_str() {
        "" | "new" => {
            let inv = store.create(&a.session.user, &get("title"), step.ts)?;
            (inv.id, inv.title, true)
        }
        id => {
            let inv = store.get(id).ok_or(ConsoleError::NotFound)?;
            (inv.id, inv.title, false)
        }
    };
    store.add(&id, step.clone())?;
    c.siem.audit_as(
        &a.session.user,
        &a.peer,
        "investigation.add",
        json!({"id": id, "title": title, "created": created, "kind": kind.name(), "value": step.value,
               "range": step.range, "from": step.from, "to": step.to, "note": step.note}),
    )?;
    Ok(Redirect::to(&format!("/investigations/{}", enc(&id))).into_response())
}

/// Attaches an investigation to an incident, with a note of why (kept as
/// the investigation's step): one audit entry with the texts.
pub(super) async fn attach(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Search)?;
    a.need(Perm::ReadAlerts)?;
    c.siem.writable()?;
    let inv = c.investigations.get(&id).ok_or(ConsoleError::NotFound)?;
    let incident = f.get("incident").unwrap_or("").trim().to_string();
    let wf = c.siem.workflow.as_ref().ok_or_else(|| ConsoleError::Invalid("no triage state kept".into()))?;
    let inc = wf
        .incident(&incident)
        .ok_or_else(|| ConsoleError::Bad(crate::error::Msg::with("error.incident", incident.as_str())))?;
    let note = f.get("note").unwrap_or("").trim().to_string();
    let ts = now();
    if !note.is_empty() {
        let step = Step {
            ts,
            by: a.session.user.clone(),
            kind: Kind::Note,
            value: String::new(),
            range: String::new(),
            from: String::new(),
            to: String::new(),
            note: note.clone(),
        };
        c.investigations.add(&id, step)?;
    }
    c.investigations.attach(&id, &inc.id, ts)?;
    c.siem.audit_as(
        &a.session.user,
        &a.peer,
        "investigation.attach",
        json!({"id": id, "title": inv.title, "incident": inc.id, "incident_title": inc.title,
               "previous": inv.incident, "note": note}),
    )?;
    Ok(Redirect::to(&format!("/investigations/{}", enc(&id))).into_response())
}

//! Hunts: the models run again over a stored time range, their progress and
//! findings, and the promotion of a finding to the alert queue.

use super::*;

pub(super) struct HuntRow {
    pub(super) id: String,
    pub(super) by: String,
    pub(super) range: String,
    pub(super) chosen: String,
    pub(super) state: String,
    pub(super) records: u64,
    pub(super) found: usize,
    pub(super) error: String,
}

pub(super) struct FindingRow {
    pub(super) n: usize,
    pub(super) a: AlertRow,
    pub(super) summary: String,
    pub(super) flows: usize,
    pub(super) in_queue: bool,
    pub(super) promoted_by: String,
}

#[derive(Template)]
#[template(path = "hunts.html")]
pub(super) struct HuntsPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) choices: Vec<siem::hunts::Choice>,
    pub(super) rows: Vec<HuntRow>,
    pub(super) from: String,
    pub(super) to: String,
    pub(super) error: String,
}

#[derive(Template)]
#[template(path = "hunt.html")]
pub(super) struct HuntPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) h: HuntRow,
    pub(super) running: bool,
    pub(super) findings: Vec<FindingRow>,
    pub(super) error: String,
}

fn hunt_row(a: &Auth, h: &siem::hunts::Hunt, found: usize) -> HuntRow {
    HuntRow {
        id: h.id.clone(),
        by: h.by.clone(),
        range: format!("{} – {}", a.lens.time(h.from), a.lens.time(h.to)),
        chosen: if h.chosen.is_empty() { a.t.t("hunt.all").to_string() } else { h.chosen.join(", ") },
        state: match h.state {
            siem::hunts::HuntState::Running => "running",
            siem::hunts::HuntState::Done => "done",
            siem::hunts::HuntState::Failed => "failed",
        }
        .to_string(),
        records: h.records,
        found,
        error: h.error.clone().unwrap_or_default(),
    }
}

/// A time the form was given: epoch seconds or RFC 3339 (`2023-11-14T22:00`
/// read as UTC, as the form's `datetime-local` sends it without a zone).
fn form_time(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(f) = s.parse::<f64>() {
        return f.is_finite().then_some(f);
    }
    let with_secs = if s.len() == 16 { format!("{s}:00") } else { s.to_string() };
    let t = humantime::parse_rfc3339_weak(&with_secs).ok()?;
    t.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs_f64())
}

fn form_value(t: f64) -> String {
    let secs = t.max(0.0) as u64;
    let s = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string();
    s.trim_end_matches('Z').chars().take(16).collect()
}

async fn hunts_page(c: Arc<Console>, a: Auth, error: String, from: String, to: String) -> Res {
    a.need(Perm::Triage)?;
    let siem = Arc::clone(&c.siem);
    let list = blocking(move || Ok(siem.list_hunts()?)).await?;
    let choices: Vec<siem::hunts::Choice> = serde_json::from_value(list["choices"].clone()).unwrap_or_default();
    let rows = list["hunts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let found = v["found"].as_u64().unwrap_or(0) as usize;
            serde_json::from_value::<siem::hunts::Hunt>(v.clone()).ok().map(|h| hunt_row(&a, &h, found))
        })
        .collect();
    // The last day, by default.
    let (from, to) =
        if from.is_empty() { (form_value(now() - 86_400.0), form_value(now() + 60.0)) } else { (from, to) };
    let status = if error.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    page(HuntsPage { t: a.t, nav: nav(&a), choices, rows, from, to, error }).map(|r| (status, r).into_response())
}

pub(super) async fn hunts(State(c): State<Arc<Console>>, a: Auth) -> Res {
    hunts_page(c, a, String::new(), String::new(), String::new()).await
}

/// Starts a hunt over the range and models the form chose.
pub(super) async fn start_hunt(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Triage)?;
    let (from_s, to_s) = (f.get("from").unwrap_or("").to_string(), f.get("to").unwrap_or("").to_string());
    let (Some(from), Some(to)) = (form_time(&from_s), form_time(&to_s)) else {
        let e = a.t.t("hunt.bad_time").to_string();
        return hunts_page(c, a, e, from_s, to_s).await;
    };
    let chosen: Vec<String> = f.all("model").into_iter().map(str::to_string).collect();
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let n = siem::api::NewHunt { from, to, chosen };
    match blocking(move || Ok(siem.start_hunt(&who, &peer, n)?)).await {
        Ok(h) => Ok(Redirect::to(&format!("/hunts/{}", enc(&h.id))).into_response()),
        Err(ConsoleError::Api(m)) if m.status == StatusCode::BAD_REQUEST => {
            let msg = m.text(a.t);
            hunts_page(c, a, msg, from_s, to_s).await
        }
        Err(e) => Err(e),
    }
}

async fn one_hunt_page(c: Arc<Console>, a: Auth, id: String, error: String) -> Res {
    a.need(Perm::Triage)?;
    let siem = Arc::clone(&c.siem);
    let h = blocking(move || Ok(siem.hunt(&id)?)).await?;
    let mut alerts: Vec<Value> = h.findings.iter().map(|f| f.alert.clone()).collect();
    a.lens.scrub_all(&mut alerts);
    let findings = h
        .findings
        .iter()
        .zip(&alerts)
        .map(|(f, al)| FindingRow {
            n: f.n,
            a: alert_row(&a.lens, al),
            summary: a.lens.alert_summary(al),
            flows: siem::api::alert_flow_uids(al).len(),
            in_queue: f.in_queue,
            promoted_by: f.promoted_by.clone().unwrap_or_default(),
        })
        .collect();
    let running = h.state == siem::hunts::HuntState::Running;
    let status = if error.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    page(HuntPage { t: a.t, nav: nav(&a), h: hunt_row(&a, &h, h.findings.len()), running, findings, error })
        .map(|r| (status, r).into_response())
}

pub(super) async fn hunt(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>) -> Res {
    one_hunt_page(c, a, id, String::new()).await
}

/// Puts one finding into the alert queue, with the reason typed.
pub(super) async fn promote(State(c): State<Arc<Console>>, a: Auth, Path(id): Path<String>, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Triage)?;
    let Some(n) = f.get("n").and_then(|n| n.parse::<usize>().ok()) else {
        return Err(ConsoleError::Bad(crate::error::Msg::new("error.not_found")));
    };
    let reason = f.get("reason").unwrap_or("").trim().to_string();
    let (siem, who, peer, id2) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone(), id.clone());
    match blocking(move || Ok(siem.promote_finding(&who, &peer, &id2, n, &reason)?)).await {
        Ok(alert) => Ok(Redirect::to(&format!("/alerts/{}", enc(&alert))).into_response()),
        Err(ConsoleError::Api(m)) if m.status == StatusCode::BAD_REQUEST => {
            let msg = m.text(a.t);
            one_hunt_page(c, a, id, msg).await
        }
        Err(e) => Err(e),
    }
}

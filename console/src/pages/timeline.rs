//! A flow's or a host's timeline: every record and alert of it in time
//! order, protocol records and alerts interleaved, with links to the
//! alerts, the packets and the search.

use super::*;
use siem::schema::Kind as FieldKind;

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct TimelineForm {
    pub(super) uid: String,
    pub(super) community_id: String,
    pub(super) addr: String,
    pub(super) range: String,
    pub(super) from: String,
    pub(super) to: String,
}

/// What a timeline is of: one flow (by uid, or by Community ID across
/// sensors) or one host.
pub(super) enum Subject {
    Uid(String),
    CommunityId(String),
    Addr(std::net::IpAddr),
}

impl Subject {
    pub(super) fn of(f: &TimelineForm) -> Result<Subject, ConsoleError> {
        let given = |s: &str| !s.trim().is_empty();
        match (given(&f.uid), given(&f.community_id), given(&f.addr)) {
            (true, false, false) => Ok(Subject::Uid(f.uid.trim().to_string())),
            (false, true, false) => Ok(Subject::CommunityId(f.community_id.trim().to_string())),
            (false, false, true) => f
                .addr
                .trim()
                .parse()
                .map(Subject::Addr)
                .map_err(|_| ConsoleError::Bad(crate::error::Msg::with("error.address", f.addr.trim()))),
            _ => Err(ConsoleError::Bad(crate::error::Msg::new("timeline.one_subject"))),
        }
    }

    /// The step kind and value an investigation keeps of it.
    pub(super) fn kind_value(&self) -> (&'static str, String) {
        match self {
            Subject::Uid(u) => ("uid", u.clone()),
            Subject::CommunityId(c) => ("community_id", c.clone()),
            Subject::Addr(a) => ("addr", a.to_string()),
        }
    }

    /// The same records in the search language.
    fn query(&self, catalog: &siem::schema::Catalog) -> String {
        match self {
            Subject::Uid(u) => format!("uid:{}", quote(u)),
            Subject::CommunityId(c) => format!("community_id:{}", quote(c)),
            Subject::Addr(a) => {
                let a = quote(&a.to_string());
                let fields: Vec<String> = catalog
                    .fields
                    .iter()
                    .filter(|f| f.kind == FieldKind::Addr)
                    .map(|f| format!("{}:{a}", f.path))
                    .collect();
                fields.join(" OR ")
            }
        }
    }
}

pub(super) struct TimelineRow {
    pub(super) time: String,
    pub(super) log: String,
    pub(super) sensor: String,
    /// Alerts: severity, title and the alert's page.
    pub(super) alert: bool,
    pub(super) severity: String,
    pub(super) title: String,
    pub(super) href: String,
    pub(super) fields: Vec<(String, String, String)>,
}

#[derive(Template)]
#[template(path = "timeline.html")]
pub(super) struct TimelinePage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) f: TimelineForm,
    pub(super) heading: String,
    pub(super) rng: Range,
    pub(super) ranges: [(&'static str, &'static str); 5],
    pub(super) range_shown: String,
    pub(super) rows: Vec<TimelineRow>,
    pub(super) total: u64,
    pub(super) alerts: usize,
    pub(super) search_href: String,
    pub(super) pcap_href: String,
    /// Shown fewer than there are (the newest kept).
    pub(super) truncated: bool,
    pub(super) add: AddForm,
}

/// Most records a timeline shows (a host over a long range: the newest).
pub(super) const TIMELINE_MAX: usize = 1000;

pub(super) async fn timeline(State(c): State<Arc<Console>>, a: Auth, Query(f): Query<TimelineForm>) -> Res {
    a.need(Perm::Search)?;
    let subject = Subject::of(&f)?;
    let rng = range_in(&a, &f.range, &f.from, &f.to)?;
    let (from, to) = (rng.from, rng.to);
    let q = subject.query(&c.siem.catalog);
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let pivot = match &subject {
        Subject::Uid(u) => Some(PivotParams { uid: Some(u.clone()), community_id: None }),
        Subject::CommunityId(c) => Some(PivotParams { uid: None, community_id: Some(c.clone()) }),
        Subject::Addr(_) => None,
    };
    let q2 = q.clone();
    let (total, mut hits) = blocking(move || match pivot {
        // A flow: every sensor's records of it (uid -> Community ID ->
        // the other sensors' uids), within the range if one is given.
        Some(p) => {
            let hits: Vec<Value> = siem
                .flow_timeline(&who, &peer, p)?
                .into_iter()
                .filter(|h| {
                    let ts = h["ts"].as_f64().unwrap_or(0.0);
                    from.is_none_or(|f| ts >= f) && to.is_none_or(|t| ts < t)
                })
                .collect();
            Ok((hits.len() as u64, hits))
        }
        // A host: the newest records naming the address in any address
        // field, shown oldest first.
        None => {
            let sp = SearchParams {
                q: Some(q2),
                from,
                to,
                sort: Some("ts".into()),
                order: Some("desc".into()),
                limit: Some(TIMELINE_MAX),
                offset: None,
                completeness: None,
                cursor: None,
            };
            let r = siem.search_records(&who, &peer, &sp)?;
            let mut hits = r.hits;
            hits.reverse();
            Ok((r.total, hits))
        }
    })
    .await?;
    hits.truncate(TIMELINE_MAX);
    let lens = &a.lens;
    lens.scrub_all(&mut hits);
    let rows: Vec<TimelineRow> = hits
        .iter()
        .map(|h| {
            let rec = record_row(lens, h);
            let alert = rec.log == "alerts";
            let (severity, title) = if alert {
                let r = alert_row(lens, h);
                (r.severity, r.title)
            } else {
                (String::new(), String::new())
            };
            TimelineRow {
                time: rec.time,
                log: rec.log,
                sensor: rec.sensor,
                alert,
                severity,
                title,
                href: rec.href,
                fields: rec.fields,
            }
        })
        .collect();
    let range_q = rng.url_query();
    let (kind, value) = subject.kind_value();
    let heading = match &subject {
        Subject::Uid(u) => format!("{} {u}", a.t.t("timeline.flow")),
        Subject::CommunityId(c) => format!("{} {c}", a.t.t("timeline.community")),
        Subject::Addr(x) => format!("{} {}", a.t.t("timeline.host"), lens.addr(&x.to_string())),
    };
    let pcap_href = if !a.may(Perm::Packets) || lens.pseudonymised() {
        String::new()
    } else {
        match &subject {
            Subject::Uid(u) => format!("/timeline/pcap?uid={}&{range_q}", enc(u)),
            Subject::CommunityId(c) => format!("/timeline/pcap?community_id={}&{range_q}", enc(c)),
            // A host's packets: a filter over a range of a day at most.
            Subject::Addr(x) => match (from, to) {
                (Some(f), Some(t)) if t - f <= 86_400.0 => {
                    format!("/timeline/pcap?addr={}&{range_q}", enc(&x.to_string()))
                }
                _ => String::new(),
            },
        }
    };
    let alerts = rows.iter().filter(|r| r.alert).count();
    let add = add_form(&c, &a, kind, &value, &rng);
    page(TimelinePage {
        t: a.t,
        nav: nav(&a),
        heading,
        ranges: RANGES,
        range_shown: range_shown_to(&a, from, to),
        truncated: total > rows.len() as u64,
        total,
        alerts,
        search_href: format!("{}&{range_q}", search_href(&q)),
        pcap_href,
        rows,
        rng,
        add,
        f,
    })
}

/// The packets of a timeline's flow, or of its host over a range of a day
/// at most.
pub(super) async fn timeline_pcap(State(c): State<Arc<Console>>, a: Auth, Query(f): Query<TimelineForm>) -> Res {
    need_packets(&a)?;
    let subject = Subject::of(&f)?;
    let rng = range_in(&a, &f.range, &f.from, &f.to)?;
    let p = match subject {
        Subject::Uid(u) => siem::api::PcapParams { uid: Some(u), from: rng.from, to: rng.to, ..Default::default() },
        Subject::CommunityId(c) => {
            siem::api::PcapParams { community_id: Some(c), from: rng.from, to: rng.to, ..Default::default() }
        }
        Subject::Addr(x) => siem::api::PcapParams {
            filter: Some(format!("host {x}")),
            from: rng.from,
            to: rng.to,
            ..Default::default()
        },
    };
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (name, bytes) = blocking(move || Ok(siem.flow_pcap(&who, &peer, p)?)).await?;
    Ok((
        [
            ("content-type", "application/vnd.tcpdump.pcap".to_string()),
            ("content-disposition", format!("attachment; filename=\"{name}\"")),
        ],
        bytes,
    )
        .into_response())
}

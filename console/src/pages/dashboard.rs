//! The dashboard: what happened over a range, at a glance.

use super::*;

#[derive(Template)]
#[template(path = "dashboard.html")]
pub(super) struct DashboardPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) rng: Range,
    pub(super) range_shown: String,
    pub(super) ranges: [(&'static str, &'static str); 5],
    pub(super) severity_counts: Vec<(&'static str, u64)>,
    pub(super) records: u64,
    pub(super) alerts_chart: String,
    pub(super) rules_chart: String,
    pub(super) protocols_chart: String,
    pub(super) talkers: Vec<(String, String, u64)>,
    /// Sources by the bytes of their flows: (address, search link, flows, bytes).
    pub(super) talkers_bytes: Vec<(String, String, u64, String)>,
    pub(super) destinations: Vec<(String, String, u64)>,
    /// Most queried DNS names: (name, search link, queries).
    pub(super) dns_names: Vec<(String, String, u64)>,
    /// The aggregation page for each list, over the whole of it.
    pub(super) more: [String; 4],
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RangeForm {
    pub(super) range: String,
    pub(super) from: String,
    pub(super) to: String,
}

pub(super) async fn dashboard(State(c): State<Arc<Console>>, a: Auth, Query(f): Query<RangeForm>) -> Res {
    let rng = range_in(&a, &f.range, &f.from, &f.to)?;
    let (from, to) = (rng.from, rng.to);
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let agg = move |siem: &AppState, q: &str, agg: &str, field: Option<&str>, size: usize, interval: Option<f64>| {
        let sum = (agg == "terms_bytes").then(|| FLOW_BYTES.join(","));
        siem.aggregate_records_unaudited(&AggParams {
            q: Some(q.into()),
            from,
            to,
            agg: if sum.is_some() { "terms".into() } else { agg.into() },
            field: field.map(str::to_string),
            size: Some(size),
            interval,
            sum,
        })
    };
    let data = blocking(move || {
        // One look at the dashboard is one entry of the trail, not one per
        // chart.
        siem.audit_as(&who, &peer, "dashboard", json!({"from": from, "to": to}))?;
        let by_sev = buckets(agg(&siem, "_log:alerts", "terms", Some("severity"), 10, None)?);
        let span = match agg(&siem, "_log:alerts", "stats", Some("ts"), 0, None)? {
            AggResult::Stats { min: Some(lo), max: Some(hi), .. } => hi - lo,
            _ => 86_400.0,
        };
        let interval = match (from, to) {
            (Some(f), Some(t)) => interval_for(None, t - f),
            _ => interval_for(from, span),
        };
        let mut over_time = Vec::new();
        for s in SEVERITIES {
            let q = format!("_log:alerts AND severity:{s}");
            over_time.push((s, buckets(agg(&siem, &q, "histogram", None, 0, Some(interval))?)));
        }
        let rules = buckets(agg(&siem, "_log:alerts", "terms", Some("rule.title"), 10, None)?);
        let protocols = buckets(agg(&siem, "NOT _log:alerts", "terms", Some("_log"), 12, None)?);
        let talkers = buckets(agg(&siem, "_log:conn", "terms", Some("id.orig_h"), 10, None)?);
        let talkers_bytes = buckets(agg(&siem, "_log:conn", "terms_bytes", Some("id.orig_h"), 10, None)?);
        let dests = buckets(agg(&siem, "_log:conn", "terms", Some("id.resp_h"), 10, None)?);
        let dns = buckets(agg(&siem, "_log:dns", "terms", Some("query"), 10, None)?);
        let records = match agg(&siem, "", "stats", Some("ts"), 0, None)? {
            AggResult::Stats { count, .. } => count,
            _ => 0,
        };
        Ok((by_sev, over_time, rules, protocols, (talkers, talkers_bytes), (dests, dns), records))
    })
    .await?;
    let (by_sev, over_time, rules, protocols, (talkers, talkers_bytes), (dests, dns), records) = data;
    let lens = &a.lens;
    let rng_q = rng.url_query();
    let severity_counts =
        SEVERITIES.iter().map(|s| (*s, by_sev.iter().find(|b| b.key == *s).map_or(0, |b| b.count))).collect();
    // One time axis for every severity.
    let mut keys: Vec<f64> =
        over_time.iter().flat_map(|(_, b)| b.iter().filter_map(|x| x.key.parse::<f64>().ok())).collect();
    keys.sort_by(f64::total_cmp);
    keys.dedup();
    let sets = over_time
        .iter()
        .map(|(s, b)| {
            let data = keys
                .iter()
                .map(|k| b.iter().find(|x| x.key.parse::<f64>().ok() == Some(*k)).map_or(0, |x| x.count))
                .collect();
            (a.t.tk("sev", s), data)
        })
        .collect();
    let alerts_chart = chart(keys.iter().map(|k| lens.time(*k)).collect(), sets, "stacked");
    let rules_chart = chart(
        rules.iter().map(|b| lens.rule_title(&lens.text(&b.key))).collect(),
        vec![(a.t.t("nav.alerts").to_string(), rules.iter().map(|b| b.count).collect())],
        "hbar",
    );
    let protocols_chart = chart(
        protocols.iter().map(|b| b.key.clone()).collect(),
        vec![(a.t.t("dash.records").to_string(), protocols.iter().map(|b| b.count).collect())],
        "doughnut",
    );
    let href_of = |q: &str, field: &str, key: &str| {
        if lens.pseudonymised() || !a.may(Perm::Search) {
            String::new()
        } else {
            search_href(&format!("{q} {field}:{}", quote(key)))
        }
    };
    // An address opens the host's timeline over the range shown.
    let host_href = |key: &str| {
        if lens.pseudonymised() || !a.may(Perm::Search) {
            String::new()
        } else {
            format!("{}&{}", timeline_href("addr", key), rng_q)
        }
    };
    let addr_rows = |b: &[siem::store::Bucket]| -> Vec<(String, String, u64)> {
        b.iter().map(|x| (lens.text(&x.key), host_href(&x.key), x.count)).collect()
    };
    let talkers_bytes = talkers_bytes
        .iter()
        .map(|x| (lens.text(&x.key), host_href(&x.key), x.count, bytes(x.sum.unwrap_or(0))))
        .collect();
    let dns_names = dns.iter().map(|x| (lens.text(&x.key), href_of("_log:dns", "query", &x.key), x.count)).collect();
    let more_of = |q: &str, field: &str, by: &str| {
        if a.may(Perm::Search) {
            format!("/aggregate?q={}&{rng_q}&agg=terms&field={field}&by={by}", enc(q))
        } else {
            String::new()
        }
    };
    let more = [
        more_of("_log:conn", "id.orig_h", "count"),
        more_of("_log:conn", "id.orig_h", "bytes"),
        more_of("_log:conn", "id.resp_h", "count"),
        more_of("_log:dns", "query", "count"),
    ];
    page(DashboardPage {
        t: a.t,
        nav: nav(&a),
        range_shown: range_shown_to(&a, from, to),
        rng,
        ranges: RANGES,
        severity_counts,
        records,
        alerts_chart,
        rules_chart,
        protocols_chart,
        talkers: addr_rows(&talkers),
        talkers_bytes,
        destinations: addr_rows(&dests),
        dns_names,
        more,
    })
}

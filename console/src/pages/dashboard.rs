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
    pub(super) destinations: Vec<(String, String, u64)>,
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
        siem.aggregate_records(
            &who,
            &peer,
            &AggParams {
                q: Some(q.into()),
                from,
                to,
                agg: agg.into(),
                field: field.map(str::to_string),
                size: Some(size),
                interval,
            },
        )
    };
    let data = blocking(move || {
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
        let dests = buckets(agg(&siem, "_log:conn", "terms", Some("id.resp_h"), 10, None)?);
        let records = match agg(&siem, "", "stats", Some("ts"), 0, None)? {
            AggResult::Stats { count, .. } => count,
            _ => 0,
        };
        Ok((by_sev, over_time, rules, protocols, talkers, dests, records))
    })
    .await?;
    let (by_sev, over_time, rules, protocols, talkers, dests, records) = data;
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
    let addr_rows = |b: &[siem::store::Bucket]| -> Vec<(String, String, u64)> {
        b.iter()
            .map(|x| {
                let shown = lens.text(&x.key);
                let href = if lens.pseudonymised() || !a.may(Perm::Search) {
                    String::new()
                } else {
                    // The host's timeline over the range shown.
                    format!("{}&{}", timeline_href("addr", &x.key), rng_q)
                };
                (shown, href, x.count)
            })
            .collect()
    };
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
        destinations: addr_rows(&dests),
    })
}

//! The aggregation page: a query and a time range, then the top values of
//! a field by records or by bytes, records over time, or a distinct count;
//! every bucket links to the search for its records.

use super::*;

/// A flow's bytes, both ways, at the IP level: what "by bytes" totals.
pub(super) const FLOW_BYTES: [&str; 2] = ["orig_ip_bytes", "resp_ip_bytes"];

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct AggForm {
    pub(super) q: String,
    pub(super) range: String,
    /// Typed ends of the range (ISO 8601 in the reader's zone, or `15m`).
    pub(super) from: String,
    pub(super) to: String,
    /// terms, histogram or cardinality.
    pub(super) agg: String,
    pub(super) field: String,
    /// terms: `count` (records) or `bytes` (the flows' bytes).
    pub(super) by: String,
    /// Numbers as typed: an empty box is no choice (browsers send it).
    pub(super) size: String,
    /// histogram: seconds per bucket; none: about 60 bars over the range.
    pub(super) interval: String,
}

/// A number box of the form: empty is none, anything else must read.
fn number<T: std::str::FromStr>(text: &str) -> Result<Option<T>, ConsoleError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    t.parse().map(Some).map_err(|_| ConsoleError::Bad(crate::error::Msg::with("error.number", t)))
}

/// One row of an answer: its key as shown, the search for its records,
/// its count, its bytes (by bytes) and its share of the largest bar.
pub(super) struct AggRow {
    pub(super) key: String,
    pub(super) href: String,
    pub(super) count: u64,
    pub(super) bytes: String,
    pub(super) pct: u64,
}

#[derive(Template)]
#[template(path = "aggregate.html")]
pub(super) struct AggregatePage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) q: String,
    pub(super) rng: Range,
    pub(super) range_shown: String,
    pub(super) ranges: [(&'static str, &'static str); 5],
    pub(super) agg: String,
    pub(super) field: String,
    pub(super) by: String,
    pub(super) size: usize,
    pub(super) interval: String,
    pub(super) fields: Vec<String>,
    pub(super) error: String,
    pub(super) done: bool,
    pub(super) rows: Vec<AggRow>,
    pub(super) chart: String,
    /// Cardinality: the count, and whether it is exact.
    pub(super) value: String,
    pub(super) approximate: String,
    /// Histogram: the interval used, and a note when it is not the one asked.
    pub(super) interval_used: String,
    pub(super) widened: String,
    pub(super) search_all: String,
}

/// The time range of the page: `[from, to)`. Relative choices as the search
/// page takes them (one place to switch when absolute ranges come).
fn agg_range(a: &Auth, f: &AggForm) -> Result<(Range, Option<f64>), ConsoleError> {
    let r = range_in(a, &f.range, &f.from, &f.to)?;
    let to = r.to;
    Ok((r, to))
}

/// The query of a bucket: the page's query and the bucket's condition.
fn and(q: &str, cond: &str) -> String {
    if q.trim().is_empty() {
        cond.to_string()
    } else {
        format!("({q}) AND {cond}")
    }
}

/// A duration for people: 90 → "1m 30s".
fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    let parts = [(s / 86_400, "d"), (s % 86_400 / 3600, "h"), (s % 3600 / 60, "m"), (s % 60, "s")];
    let out: Vec<String> = parts.iter().filter(|(n, _)| *n > 0).map(|(n, u)| format!("{n}{u}")).collect();
    if out.is_empty() {
        "0s".into()
    } else {
        out.join(" ")
    }
}

pub(super) async fn aggregate(State(c): State<Arc<Console>>, a: Auth, Query(f): Query<AggForm>) -> Res {
    a.need(Perm::Search)?;
    let (range, to) = agg_range(&a, &f)?;
    let range_q = range.url_query();
    let from = range.from;
    let agg = match f.agg.as_str() {
        "" => "terms".to_string(),
        other => other.to_string(),
    };
    let by = if f.by == "bytes" { "bytes" } else { "count" };
    let size = number::<usize>(&f.size)?.unwrap_or(10).clamp(1, 1000);
    let interval = number::<f64>(&f.interval)?.filter(|i| i.is_finite() && *i > 0.0);
    let mut fields: Vec<String> = c
        .siem
        .catalog
        .fields
        .iter()
        .filter(|x| agg == "histogram" || x.kind != siem::schema::Kind::Float)
        .map(|x| x.path.clone())
        .collect();
    fields.sort();
    let field = if f.field.is_empty() && agg != "histogram" { "id.orig_h".to_string() } else { f.field.clone() };
    let mut p = AggregatePage {
        t: a.t,
        nav: nav(&a),
        q: f.q.clone(),
        rng: range.clone(),
        range_shown: range_shown_to(&a, from, to),
        ranges: RANGES,
        agg: agg.clone(),
        field: field.clone(),
        by: by.to_string(),
        size,
        interval: interval.map(|i| i.to_string()).unwrap_or_default(),
        fields,
        error: String::new(),
        done: false,
        rows: Vec::new(),
        chart: String::new(),
        value: String::new(),
        approximate: String::new(),
        interval_used: String::new(),
        widened: String::new(),
        search_all: format!("/search?q={}&{range_q}", enc(&f.q)),
    };
    // The first visit shows the form only.
    if f.agg.is_empty() {
        return page(p);
    }
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (q, kind, requested, agg_field) = (f.q.clone(), agg.clone(), interval, field.clone());
    let r = blocking(move || {
        let params = |agg: &str, field: Option<String>, interval: Option<f64>| AggParams {
            q: Some(q.clone()),
            from,
            to,
            agg: agg.into(),
            field,
            size: Some(size),
            interval,
            sum: (agg == "terms" && by == "bytes").then(|| FLOW_BYTES.join(",")),
        };
        let interval = match (kind.as_str(), requested) {
            ("histogram", None) => {
                // About 60 bars over what the records span, as search shows.
                let span = match siem.aggregate_records(&who, &peer, &params("stats", Some("ts".into()), None))? {
                    AggResult::Stats { min: Some(lo), max: Some(hi), .. } => hi - lo,
                    _ => 86_400.0,
                };
                Some(interval_for(from, span))
            }
            _ => requested,
        };
        let field = (kind != "histogram").then_some(agg_field);
        Ok(siem.aggregate_records(&who, &peer, &params(&kind, field, interval))?)
    })
    .await;
    let res = match r {
        Ok(res) => res,
        Err(ConsoleError::Invalid(m)) => {
            p.error = m;
            return page(p).map(|r| (StatusCode::BAD_REQUEST, r).into_response());
        }
        Err(ConsoleError::Api(m)) if m.status == StatusCode::BAD_REQUEST => {
            p.error = m.text(a.t);
            return page(p).map(|r| (StatusCode::BAD_REQUEST, r).into_response());
        }
        Err(e) => return Err(e),
    };
    p.done = true;
    let lens = &a.lens;
    let linked = !lens.pseudonymised();
    // `range` is a whole query string of range parameters.
    let href = |cond: &str, range: &str| {
        if linked {
            format!("/search?q={}&{range}", enc(&and(&f.q, cond)))
        } else {
            String::new()
        }
    };
    match res {
        AggResult::Buckets(b) => {
            let top = b.iter().map(|x| if by == "bytes" { x.sum.unwrap_or(0) } else { x.count }).max().unwrap_or(0);
            p.rows = b
                .iter()
                .map(|x| {
                    let measure = if by == "bytes" { x.sum.unwrap_or(0) } else { x.count };
                    AggRow {
                        key: lens.text(&x.key),
                        href: href(&format!("{field}:{}", quote(&x.key)), &range_q),
                        count: x.count,
                        bytes: x.sum.map(bytes).unwrap_or_default(),
                        pct: (measure * 100).checked_div(top).unwrap_or(0),
                    }
                })
                .collect();
            let label = if by == "bytes" { a.t.t("dash.bytes") } else { a.t.t("agg.records") };
            let data = b.iter().map(|x| if by == "bytes" { x.sum.unwrap_or(0) } else { x.count }).collect();
            p.chart = chart(p.rows.iter().map(|r| r.key.clone()).collect(), vec![(label.to_string(), data)], "hbar");
        }
        AggResult::Histogram { interval_secs, requested_interval_secs, buckets } => {
            p.interval_used = duration(interval_secs);
            if interval_secs != requested_interval_secs {
                p.widened =
                    a.t.t("agg.widened")
                        .replace("{asked}", &duration(requested_interval_secs))
                        .replace("{used}", &duration(interval_secs));
            }
            p.rows = buckets
                .iter()
                .map(|x| {
                    let lo = x.key.parse::<f64>().unwrap_or(0.0);
                    let cond = format!("ts:[{lo} TO {}}}", lo + interval_secs);
                    AggRow {
                        key: lens.time(lo),
                        // The bucket's own bounds make the range.
                        href: href(&cond, "range=all"),
                        count: x.count,
                        bytes: String::new(),
                        pct: 0,
                    }
                })
                .collect();
            let top = p.rows.iter().map(|r| r.count).max().unwrap_or(0);
            for r in &mut p.rows {
                r.pct = (r.count * 100).checked_div(top).unwrap_or(0);
            }
            p.chart = chart(
                p.rows.iter().map(|r| r.key.clone()).collect(),
                vec![(a.t.t("agg.records").to_string(), p.rows.iter().map(|r| r.count).collect())],
                "bar",
            );
        }
        AggResult::Value { value, approximate, relative_error } => {
            p.value = value.to_string();
            p.approximate = if approximate {
                a.t.t("agg.approximate").replace("{}", &format!("{:.1}", relative_error * 100.0))
            } else {
                a.t.t("agg.exact").to_string()
            };
        }
        AggResult::Stats { .. } => {}
    }
    page(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_queries_keep_the_page_query_whole() {
        assert_eq!(and("", "uid:C1"), "uid:C1");
        assert_eq!(and("a OR b", "uid:C1"), "(a OR b) AND uid:C1");
        let q = and("_log:conn OR _log:dns", &format!("ts:[{} TO {}}}", 1_700_000_000.0, 1_700_003_600.0));
        assert!(siem::query::parse(&q, &siem::schema::Catalog::new()).is_ok(), "{q}");
        assert_eq!(duration(90.0), "1m 30s");
        assert_eq!(duration(86_400.0), "1d");
    }
}

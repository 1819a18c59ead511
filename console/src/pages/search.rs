//! Search, saved searches and CSV export.

use super::*;

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct SearchForm {
    pub(super) q: String,
    pub(super) range: String,
    /// Typed ends of the range (ISO 8601 in the reader's zone, or `15m`).
    pub(super) from: String,
    pub(super) to: String,
    pub(super) offset: usize,
    /// Columns to show, comma-separated field names (none: every field).
    pub(super) cols: String,
}

#[derive(Template)]
#[template(path = "search.html")]
pub(super) struct SearchPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) q: String,
    pub(super) rng: Range,
    pub(super) range_shown: String,
    pub(super) ranges: [(&'static str, &'static str); 5],
    pub(super) fields: Vec<String>,
    pub(super) searched: bool,
    pub(super) error: String,
    pub(super) total: u64,
    pub(super) hits: Vec<RecordRow>,
    pub(super) histogram: String,
    pub(super) export_query: String,
    pub(super) prev: String,
    pub(super) next: String,
    /// The reader's saved searches: (name, link).
    pub(super) saved: Vec<(String, String)>,
    /// The columns chosen (catalog fields only), and each hit's cells in them.
    pub(super) cols: Vec<String>,
    pub(super) cols_text: String,
    pub(super) cells: Vec<Vec<(String, String)>>,
    /// What the loss ledger says about the range (empty without one).
    pub(super) completeness: String,
    pub(super) complete: bool,
    /// Keeping this search in an investigation.
    pub(super) add: AddForm,
}

pub(super) const PAGE: usize = 50;

/// A histogram's interval: about 60 bars over the range.
pub(super) fn interval_for(from: Option<f64>, span_hint: f64) -> f64 {
    let span = from.map_or(span_hint, |f| now() - f).max(60.0);
    let nice = [60.0, 300.0, 900.0, 3600.0, 3.0 * 3600.0, 6.0 * 3600.0, 86_400.0, 7.0 * 86_400.0];
    nice.into_iter().find(|n| span / n <= 60.0).unwrap_or(30.0 * 86_400.0)
}

pub(super) fn chart(labels: Vec<String>, sets: Vec<(String, Vec<u64>)>, kind: &str) -> String {
    let datasets: Vec<Value> = sets.into_iter().map(|(label, data)| json!({"label": label, "data": data})).collect();
    json!({"type": kind, "labels": labels, "datasets": datasets}).to_string()
}

pub(super) fn buckets(r: AggResult) -> Vec<siem::store::Bucket> {
    r.buckets()
}

pub(super) async fn search(State(c): State<Arc<Console>>, a: Auth, Query(f): Query<SearchForm>) -> Res {
    a.need(Perm::Search)?;
    let mut fields: Vec<String> = c.siem.catalog.fields.iter().map(|f| f.path.clone()).collect();
    fields.sort();
    // A range that does not read is said on the page, with what was typed.
    let (rng, range_error) = match range_in(&a, &f.range, &f.from, &f.to) {
        Ok(r) => (r, None),
        Err(ConsoleError::Bad(m)) => {
            let kept =
                Range { code: "custom".into(), from_text: f.from.clone(), to_text: f.to.clone(), ..Range::default() };
            (kept, Some(m.text(a.t)))
        }
        Err(e) => return Err(e),
    };
    let (from, to) = (rng.from, rng.to);
    let range_q = rng.url_query();
    // Only catalog fields become columns: the choice is echoed into links
    // and headers.
    let cols: Vec<String> = f
        .cols
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty() && fields.iter().any(|x| x == c))
        .take(20)
        .map(String::from)
        .collect();
    let cols_text = cols.join(",");
    let mut p = SearchPage {
        t: a.t,
        nav: nav(&a),
        q: f.q.clone(),
        rng: rng.clone(),
        range_shown: range_shown_to(&a, from, to),
        ranges: RANGES,
        fields,
        searched: false,
        error: String::new(),
        total: 0,
        hits: Vec::new(),
        histogram: String::new(),
        export_query: format!("q={}&{range_q}", enc(&f.q)),
        prev: String::new(),
        next: String::new(),
        saved: c
            .saved
            .list(&a.session.user)
            .into_iter()
            .map(|s| {
                let r = Range { code: s.range, from_text: s.from, to_text: s.to, ..Range::default() };
                let href = format!("/search?q={}&{}", enc(&s.q), r.url_query());
                (s.name, href)
            })
            .collect(),
        cols,
        cols_text,
        cells: Vec::new(),
        completeness: String::new(),
        complete: false,
        add: add_form(&c, &a, "search", &f.q, &rng),
    };
    if let Some(e) = range_error {
        p.error = e;
        return page(p).map(|r| (StatusCode::BAD_REQUEST, r).into_response());
    }
    if f.q.trim().is_empty() {
        return page(p);
    }
    let sp = SearchParams {
        q: Some(f.q.clone()),
        from,
        to,
        sort: None,
        order: None,
        limit: Some(PAGE),
        offset: Some(f.offset.min(10_000)),
        completeness: None,
        cursor: None,
    };
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let q = f.q.clone();
    let r = blocking(move || {
        let res = siem.search_records(&who, &peer, &sp)?;
        let span = siem
            .aggregate_records(
                &who,
                &peer,
                &AggParams {
                    q: Some(q.clone()),
                    from,
                    to,
                    agg: "stats".into(),
                    field: Some("ts".into()),
                    size: None,
                    interval: None,
                    sum: None,
                },
            )
            .ok()
            .and_then(|s| match s {
                AggResult::Stats { min: Some(lo), max: Some(hi), .. } => Some(hi - lo),
                _ => None,
            })
            .unwrap_or(86_400.0);
        let interval = match (from, to) {
            (Some(f), Some(t)) => interval_for(None, t - f),
            _ => interval_for(from, span),
        };
        let hist = siem.aggregate_records_unaudited(&AggParams {
            q: Some(q),
            from,
            to,
            agg: "histogram".into(),
            field: None,
            size: None,
            interval: Some(interval),
            sum: None,
        })?;
        let verdict = match from {
            Some(from) => {
                // The ledger holds at most 10 000 windows: a range of years
                // is judged in longer ones (hours at least, 31 days at most).
                let span = to.unwrap_or_else(now) - from;
                let window = (span / 10_000.0).ceil().clamp(3600.0, 86_400.0 * 31.0);
                let p = LedgerParams { from: Some(from), to, window: Some(window), ..LedgerParams::default() };
                Some(siem.loss_ledger(&who, &peer, &p)?.1)
            }
            None => None,
        };
        Ok((res, buckets(hist), verdict))
    })
    .await;
    match r {
        Ok((res, hist, verdict)) => {
            if let Some(v) = verdict {
                p.complete = v.complete;
                p.completeness = if v.complete {
                    a.t.t("search.complete").to_string()
                } else {
                    let silent = if v.unreported.is_empty() {
                        String::new()
                    } else {
                        format!(" · {}: {}", a.t.t("sensors.unreported"), v.unreported.join(", "))
                    };
                    // Lost without a count: only when there are some.
                    let silent = if v.records_unaccounted > 0 {
                        format!(" · {} {}{silent}", v.records_unaccounted, a.t.t("search.unaccounted"))
                    } else {
                        silent
                    };
                    format!(
                        "{}: {} {} · {} {} · {} {}{silent}",
                        a.t.t("search.incomplete"),
                        v.packets_dropped,
                        a.t.t("sensors.dropped"),
                        v.records_spool_dropped,
                        a.t.t("sensors.spool_dropped"),
                        v.pending,
                        a.t.t("sensors.pending"),
                    )
                };
            }
            p.searched = true;
            p.total = res.total;
            p.hits = res.hits.into_iter().map(|h| record_row(&a.lens, &shown(&a, h))).collect();
            if !p.cols.is_empty() {
                p.cells = p
                    .hits
                    .iter()
                    .map(|r| {
                        p.cols
                            .iter()
                            .map(|c| {
                                r.fields
                                    .iter()
                                    .find(|(k, _, _)| k == c)
                                    .map_or((String::new(), String::new()), |(_, v, h)| (v.clone(), h.clone()))
                            })
                            .collect()
                    })
                    .collect();
            }
            let labels = hist.iter().map(|b| a.lens.time(b.key.parse::<f64>().unwrap_or(0.0))).collect();
            p.histogram =
                chart(labels, vec![(a.t.t("search.hits").to_string(), hist.iter().map(|b| b.count).collect())], "bar");
            let base = format!("/search?q={}&{range_q}&cols={}", enc(&f.q), enc(&p.cols_text));
            if f.offset > 0 {
                p.prev = format!("{base}&offset={}", f.offset.saturating_sub(PAGE));
            }
            if ((f.offset + PAGE) as u64) < res.total && f.offset + PAGE <= 10_000 {
                p.next = format!("{base}&offset={}", f.offset + PAGE);
            }
            page(p)
        }
        Err(ConsoleError::Invalid(m)) => {
            p.error = m;
            page(p).map(|r| (StatusCode::BAD_REQUEST, r).into_response())
        }
        Err(ConsoleError::Api(m)) if m.status == StatusCode::BAD_REQUEST => {
            p.error = m.text(a.t);
            page(p).map(|r| (StatusCode::BAD_REQUEST, r).into_response())
        }
        Err(e) => Err(e),
    }
}

/// Saves the search in the form under a name, for its user.
pub(super) async fn save_search(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Search)?;
    // Kept once it reads: a span such as `15m` stays relative, a typed
    // time gets the offset of the zone it was read in.
    let rng = range_in(&a, f.get("range").unwrap_or(""), f.get("from").unwrap_or(""), f.get("to").unwrap_or(""))?;
    let rng = rng.kept(&a.lens);
    let s = crate::saved::Saved {
        name: f.get("name").unwrap_or("").to_string(),
        q: f.get("q").unwrap_or("").to_string(),
        range: rng.code.clone(),
        from: rng.from_text.clone(),
        to: rng.to_text.clone(),
    };
    // A search that could not run is not kept (the language's bounds hold
    // when it runs too).
    siem::query::parse(&s.q, &c.siem.catalog).map_err(|e| ConsoleError::Invalid(format!("invalid query: {e}")))?;
    let back = format!("/search?q={}&{}", enc(&s.q), rng.url_query());
    c.siem.audit_as(&a.session.user, &a.peer, "console.search_save", json!({"name": s.name, "q": s.q}))?;
    c.saved.save(&a.session.user, s)?;
    Ok(Redirect::to(&back).into_response())
}

pub(super) async fn delete_search(State(c): State<Arc<Console>>, a: Auth, body: Bytes) -> Res {
    let f = Form::parse(&body);
    a.csrf(&f)?;
    a.need(Perm::Search)?;
    let name = f.get("name").unwrap_or("");
    c.siem.audit_as(&a.session.user, &a.peer, "console.search_delete", json!({"name": name}))?;
    c.saved.delete(&a.session.user, name)?;
    Ok(Redirect::to("/search").into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ExportForm {
    pub(super) q: String,
    pub(super) range: String,
    pub(super) from: String,
    pub(super) to: String,
    pub(super) format: String,
}

pub(super) const EXPORT_MAX: usize = 10_000;

/// The first matches of a search as CSV or JSON lines (at most 10 000).
pub(super) async fn export(State(c): State<Arc<Console>>, a: Auth, Query(f): Query<ExportForm>) -> Res {
    a.need(Perm::Search)?;
    if f.format != "csv" && f.format != "json" {
        return Err(ConsoleError::Bad(crate::error::Msg::new("error.export_format")));
    }
    let rng = range_in(&a, &f.range, &f.from, &f.to)?;
    let sp = SearchParams {
        q: Some(f.q.clone()),
        from: rng.from,
        to: rng.to,
        sort: None,
        order: None,
        limit: Some(EXPORT_MAX),
        offset: None,
        completeness: None,
        cursor: None,
    };
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let res = blocking(move || {
        siem.audit_as(&who, &peer, "export", json!({"q": sp.q, "format": "search", "from": sp.from, "to": sp.to}))?;
        Ok(siem.search_records(&who, &peer, &sp)?)
    })
    .await?;
    let lens = &a.lens;
    let shown: Vec<Value> = res
        .hits
        .into_iter()
        .map(|h| {
            let h = shown(&a, h);
            let mut m = serde_json::Map::new();
            for (k, v, _) in lens.fields(&h, &[]) {
                m.insert(k, Value::String(v));
            }
            Value::Object(m)
        })
        .collect();
    let (body, ctype, ext) = if f.format == "json" {
        let mut out = String::new();
        for h in &shown {
            out.push_str(&h.to_string());
            out.push('\n');
        }
        (out, "application/x-ndjson", "jsonl")
    } else {
        let mut cols: Vec<String> = Vec::new();
        for h in &shown {
            for k in h.as_object().into_iter().flat_map(|m| m.keys()) {
                if !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
        }
        let mut out = cols.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(",");
        out.push('\n');
        for h in &shown {
            let row: Vec<String> = cols.iter().map(|c| csv_cell(h[c].as_str().unwrap_or(""))).collect();
            out.push_str(&row.join(","));
            out.push('\n');
        }
        (out, "text/csv; charset=utf-8", "csv")
    };
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"citysoc-search.{ext}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
    );
    Ok(r)
}

/// A CSV cell, quoted, with a leading formula character neutralised so a
/// spreadsheet does not run what a packet put there.
pub(super) fn csv_cell(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{v}") } else { v.to_string() };
    format!("\"{}\"", v.replace('"', "\"\""))
}

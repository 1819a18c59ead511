//! Sensors: shipping state and the ingest ledger.

use super::*;

#[derive(Template)]
#[template(path = "sensors.html")]
pub(super) struct SensorsPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) sensors: Vec<SensorRow>,
    pub(super) storage: Vec<(String, u64, String, String, String)>,
}

/// A sensor's health as its records and stats reports tell it.
pub(super) struct SensorRow {
    pub(super) name: String,
    pub(super) records: u64,
    pub(super) alerts: u64,
    pub(super) last: String,
    /// Since its last record.
    pub(super) lag: String,
    pub(super) packets: u64,
    pub(super) dropped: u64,
    pub(super) drop_ratio: String,
    /// Records per hour over the day up to its last record (Chart.js).
    pub(super) chart: String,
    /// The loss ledger over that day: made by the sensor, stored here,
    /// deleted from its full spool, waiting at its last report.
    pub(super) made: u64,
    pub(super) stored: u64,
    pub(super) spool_dropped: u64,
    pub(super) pending: String,
    pub(super) rules: String,
    pub(super) version: String,
    pub(super) ledger: Vec<LedgerRow>,
}

pub(super) struct LedgerRow {
    pub(super) start: String,
    pub(super) packets: u64,
    pub(super) dropped: u64,
    pub(super) made: u64,
    pub(super) spool_dropped: u64,
    pub(super) shipped: u64,
    pub(super) stored: u64,
    pub(super) pending: String,
    pub(super) complete: bool,
}

pub(super) async fn sensors(State(c): State<Arc<Console>>, a: Auth) -> Res {
    a.need(Perm::Sensors)?;
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (rows, parts) = blocking(move || {
        let terms = |q: &str| -> Result<Vec<siem::store::Bucket>, ConsoleError> {
            Ok(buckets(siem.aggregate_records_unaudited(&AggParams {
                q: Some(q.into()),
                from: None,
                to: None,
                agg: "terms".into(),
                field: Some("_sensor".into()),
                size: Some(200),
                interval: None,
                sum: None,
            })?))
        };
        let all = terms("")?;
        let alerts = terms("_log:alerts")?;
        let mut rows = Vec::new();
        for b in all {
            let last = siem
                .search_records(
                    &who,
                    &peer,
                    &SearchParams {
                        q: Some(format!("_sensor:{}", quote(&b.key))),
                        from: None,
                        to: None,
                        sort: None,
                        order: None,
                        limit: Some(1),
                        offset: None,
                        completeness: None,
                        cursor: None,
                    },
                )?
                .hits
                .first()
                .and_then(|h| h["ts"].as_f64())
                .unwrap_or(0.0);
            let n_alerts = alerts.iter().find(|x| x.key == b.key).map_or(0, |x| x.count);
            let q = |extra: &str| format!("_sensor:{}{extra}", quote(&b.key));
            let agg = |q: String, agg: &str, field: Option<&str>, from: Option<f64>, interval: Option<f64>| {
                siem.aggregate_records_unaudited(&AggParams {
                    q: Some(q),
                    from,
                    to: from.map(|_| last + 1.0),
                    agg: agg.into(),
                    field: field.map(String::from),
                    size: None,
                    interval,
                    sum: None,
                })
            };
            // Stats reports count from the start of a run: the ledger turns
            // them into what happened in each hour.
            let (windows, _) = siem.loss_ledger(
                &who,
                &peer,
                &LedgerParams {
                    from: Some((last - 86_400.0).max(0.0)),
                    to: Some(last + 1.0),
                    window: Some(3600.0),
                    sensor: Some(b.key.clone()),
                },
            )?;
            let hist = buckets(agg(q(""), "histogram", None, Some(last - 86_400.0), Some(3600.0))?);
            rows.push((b.key, b.count, n_alerts, last, windows, hist));
        }
        let parts = siem.store.partitions().map_err(|e| ConsoleError::Internal(e.to_string()))?;
        Ok((rows, parts))
    })
    .await?;
    let now_s = now();
    let sensors = rows
        .into_iter()
        .map(|(name, records, alerts, last, windows, hist)| {
            let total = |f: fn(&siem::ledger::Window) -> u64| windows.iter().map(f).sum::<u64>();
            let (packets, dropped) = (total(|w| w.packets_read), total(|w| w.packets_dropped));
            let latest = |f: fn(&siem::ledger::Window) -> Option<String>| windows.iter().rev().find_map(f);
            let ledger = windows
                .iter()
                .rev()
                .map(|w| LedgerRow {
                    start: a.lens.time(w.start),
                    packets: w.packets_read,
                    dropped: w.packets_dropped,
                    made: w.records_made,
                    spool_dropped: w.records_spool_dropped,
                    shipped: w.records_shipped,
                    stored: w.records_stored,
                    pending: w.pending.map_or("—".into(), |p| p.to_string()),
                    complete: w.complete(),
                })
                .collect();
            let labels = hist.iter().map(|b| a.lens.time(b.key.parse::<f64>().unwrap_or(0.0))).collect();
            let chart = chart(
                labels,
                vec![(a.t.t("sensors.records").to_string(), hist.iter().map(|b| b.count).collect())],
                "line",
            );
            SensorRow {
                name,
                records,
                alerts,
                last: a.lens.time(last),
                lag: lag_text(now_s - last),
                packets,
                dropped,
                drop_ratio: if packets > 0 {
                    format!("{:.3}%", 100.0 * dropped as f64 / (packets + dropped) as f64)
                } else {
                    "—".into()
                },
                chart,
                made: total(|w| w.records_made),
                stored: total(|w| w.records_stored),
                spool_dropped: total(|w| w.records_spool_dropped),
                pending: latest(|w| w.pending.map(|p| p.to_string())).unwrap_or_else(|| "—".into()),
                rules: latest(|w| w.rules_version.clone()).unwrap_or_else(|| "—".into()),
                version: latest(|w| w.version.clone()).unwrap_or_else(|| "—".into()),
                ledger,
            }
        })
        .collect();
    let storage = siem::retention::status(&parts, &c.siem.retention)
        .into_iter()
        .map(|s| {
            let age = s.policy.max_age.map_or("—".to_string(), |d| format!("{} d", d.as_secs() / 86_400));
            let budget = s.policy.max_bytes.map_or("—".to_string(), bytes);
            (
                s.class.name().to_string(),
                s.records,
                bytes(s.bytes),
                s.oldest.unwrap_or_default(),
                format!("{age} · {budget}"),
            )
        })
        .collect();
    page(SensorsPage { t: a.t, nav: nav(&a), sensors, storage })
}

/// `3 min`, `5 h`, `12 d`: how long a sensor has been silent.
pub(super) fn lag_text(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.0} h", s / 3600.0)
    } else {
        format!("{:.0} d", s / 86_400.0)
    }
}

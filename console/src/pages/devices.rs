//! The passive device inventory.

use super::*;

/// A device as the inventory's latest snapshot (or its first change) shows it.
pub(super) struct DeviceRow {
    pub(super) host: String,
    pub(super) mac: String,
    pub(super) vendor: String,
    pub(super) name: String,
    pub(super) services: String,
    pub(super) protocols: String,
    pub(super) peers: String,
    pub(super) first_seen: String,
    pub(super) last_seen: String,
    /// Changed within a day of the newest record.
    pub(super) recent: bool,
}

#[derive(Template)]
#[template(path = "devices.html")]
pub(super) struct DevicesPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) rows: Vec<DeviceRow>,
    pub(super) changes: Vec<(String, String, String, String, String)>,
}

pub(super) const DEVICE_ROWS: usize = 2000;

/// The passive inventory: every device with its latest snapshot, and the
/// newest changes, devices that changed in the last day first.
pub(super) async fn devices(State(c): State<Arc<Console>>, a: Auth) -> Res {
    if !(a.may(Perm::Sensors) || a.may(Perm::Search)) {
        return Err(ConsoleError::Forbidden);
    }
    let (siem, who, peer) = (Arc::clone(&c.siem), a.session.user.clone(), a.peer.clone());
    let (snapshots, changes) = blocking(move || {
        let find = |q: &str, limit: usize| -> Result<Vec<Value>, ConsoleError> {
            let p = SearchParams {
                q: Some(q.into()),
                from: None,
                to: None,
                sort: None,
                order: None,
                limit: Some(limit),
                offset: None,
                completeness: None,
                cursor: None,
            };
            Ok(siem.search_records(&who, &peer, &p)?.hits)
        };
        Ok((
            find("_log:known_devices AND change:snapshot", DEVICE_ROWS)?,
            find("_log:known_devices AND NOT change:snapshot", 500)?,
        ))
    })
    .await?;
    let lens = &a.lens;
    let newest = changes.iter().chain(&snapshots).filter_map(|r| r["ts"].as_f64()).fold(0.0, f64::max);
    let recent_hosts: std::collections::HashSet<&str> = changes
        .iter()
        .filter(|r| r["ts"].as_f64().is_some_and(|t| newest - t < 86_400.0))
        .filter_map(|r| r["host"].as_str())
        .collect();
    let list = |v: &Value| {
        v.as_array().map(|x| x.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()
    };
    let mut seen = std::collections::HashSet::new();
    let mut rows = Vec::new();
    // Snapshots newest first: the first of each host is its latest; hosts
    // with no snapshot yet come from their first change.
    for r in snapshots.iter().chain(changes.iter().rev()) {
        let Some(host) = r["host"].as_str() else { continue };
        if !seen.insert(host.to_string()) {
            continue;
        }
        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
        rows.push(DeviceRow {
            host: lens.addr(host),
            mac: if lens.pseudonymised() { String::new() } else { s("mac") },
            vendor: s("vendor"),
            name: s("dhcp_host_name"),
            services: list(&r["services"]),
            protocols: list(&r["protocols"]),
            peers: r["peers"].as_u64().map_or(String::new(), |n| n.to_string()),
            first_seen: r["first_seen"].as_f64().or(r["ts"].as_f64()).map_or(String::new(), |t| lens.time(t)),
            last_seen: r["last_seen"].as_f64().or(r["ts"].as_f64()).map_or(String::new(), |t| lens.time(t)),
            recent: recent_hosts.contains(host),
        });
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.recent));
    let changes = changes
        .iter()
        .take(100)
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            let what = match (r["proto"].as_str(), r["port"].as_u64(), r["service"].as_str()) {
                (Some(p), Some(port), svc) => format!("{p}/{port} {}", svc.unwrap_or("")),
                (_, _, Some(svc)) => svc.to_string(),
                _ => String::new(),
            };
            let peer = r["peer"].as_str().map(|p| lens.addr(p)).unwrap_or_default();
            (lens.time(r["ts"].as_f64().unwrap_or(0.0)), lens.addr(&s("host")), s("change"), what, peer)
        })
        .collect();
    page(DevicesPage { t: a.t, nav: nav(&a), rows, changes })
}

//! The passive device inventory: searchable, by type, a page at a time.

use super::*;

/// A device as the inventory's latest snapshot (or its first change) shows it.
pub(super) struct DeviceRow {
    pub(super) host: String,
    pub(super) mac: String,
    /// Addresses behind the MAC when more than one (a router's or NAT's
    /// MAC), empty otherwise.
    pub(super) mac_shared: String,
    pub(super) vendor: String,
    pub(super) name: String,
    /// The type's key (`camera`), empty when none is known.
    pub(super) kind: String,
    pub(super) evidence: String,
    pub(super) services: String,
    pub(super) protocols: String,
    pub(super) peers: String,
    pub(super) first_seen: String,
    pub(super) last_seen: String,
    /// Changed within a day of the newest record.
    pub(super) recent: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct DeviceFilter {
    /// Words every shown device holds (address, MAC, vendor, name, type,
    /// services, protocols), case-insensitive.
    q: String,
    /// A device type key; empty for all.
    kind: String,
    /// The page, from 1.
    page: usize,
}

#[derive(Template)]
#[template(path = "devices.html")]
pub(super) struct DevicesPage {
    pub(super) t: Tr,
    pub(super) nav: Nav,
    pub(super) rows: Vec<DeviceRow>,
    pub(super) changes: Vec<(String, String, String, String, String)>,
    pub(super) q: String,
    pub(super) kind: String,
    /// The types present, with their device counts.
    pub(super) kinds: Vec<(String, usize)>,
    /// Devices matching the filter, all pages.
    pub(super) matching: usize,
    pub(super) page: usize,
    pub(super) pages: usize,
    /// Links to the previous and next pages, empty at either end.
    pub(super) prev: String,
    pub(super) next: String,
}

/// Snapshot records read: the latest of each device is among them.
pub(super) const DEVICE_ROWS: usize = 5000;
/// Devices on one page.
pub(super) const DEVICES_PER_PAGE: usize = 100;

/// The passive inventory: every device with its latest snapshot, and the
/// newest changes, devices that changed in the last day first.
pub(super) async fn devices(State(c): State<Arc<Console>>, a: Auth, Query(f): Query<DeviceFilter>) -> Res {
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
            find("_log:known_devices AND NOT change:snapshot", 2000)?,
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
        let hide_mac = lens.pseudonymised();
        rows.push(DeviceRow {
            host: lens.addr(host),
            mac: if hide_mac { String::new() } else { s("mac") },
            mac_shared: r["mac_shared"].as_u64().filter(|_| !hide_mac).map_or(String::new(), |n| n.to_string()),
            vendor: s("vendor"),
            name: s("dhcp_host_name"),
            kind: s("device_type"),
            evidence: s("type_evidence"),
            services: list(&r["services"]),
            protocols: list(&r["protocols"]),
            peers: r["peers"].as_u64().map_or(String::new(), |n| n.to_string()),
            first_seen: r["first_seen"].as_f64().or(r["ts"].as_f64()).map_or(String::new(), |t| lens.time(t)),
            last_seen: r["last_seen"].as_f64().or(r["ts"].as_f64()).map_or(String::new(), |t| lens.time(t)),
            recent: recent_hosts.contains(host),
        });
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.recent));
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for r in rows.iter().filter(|r| !r.kind.is_empty()) {
        match kinds.iter_mut().find(|(k, _)| *k == r.kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((r.kind.clone(), 1)),
        }
    }
    kinds.sort();
    let words: Vec<String> = f.q.split_whitespace().map(str::to_lowercase).collect();
    let t = a.t;
    rows.retain(|r| {
        let kind_name = if r.kind.is_empty() { String::new() } else { t.tk("devtype", &r.kind) };
        let hay = [&r.host, &r.mac, &r.vendor, &r.name, &r.kind, &kind_name, &r.evidence, &r.services, &r.protocols]
            .iter()
            .map(|s| s.to_lowercase())
            .collect::<Vec<_>>()
            .join(" ");
        (f.kind.is_empty() || r.kind == f.kind) && words.iter().all(|w| hay.contains(w.as_str()))
    });
    let matching = rows.len();
    let pages = matching.div_ceil(DEVICES_PER_PAGE).max(1);
    let page_no = f.page.clamp(1, pages);
    let rows: Vec<DeviceRow> = rows.into_iter().skip((page_no - 1) * DEVICES_PER_PAGE).take(DEVICES_PER_PAGE).collect();
    let link = |p: usize| format!("/devices?q={}&kind={}&page={p}", enc(&f.q), enc(&f.kind));
    // The same change seen again (the capture replayed, a second sensor
    // seeing the same link) is one line, its newest.
    let mut once = std::collections::HashSet::new();
    let changes = changes
        .iter()
        .filter(|r| {
            let key = ["host", "change", "proto", "port", "service"].map(|k| r[k].to_string());
            once.insert(key)
        })
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
    page(DevicesPage {
        t: a.t,
        nav: nav(&a),
        rows,
        changes,
        kinds,
        matching,
        page: page_no,
        pages,
        prev: if page_no > 1 { link(page_no - 1) } else { String::new() },
        next: if page_no < pages { link(page_no + 1) } else { String::new() },
        q: f.q,
        kind: f.kind,
    })
}

//! The passive device inventory: every local device the records show, with
//! its MAC address and vendor (IEEE OUI registry), DHCP host name, the
//! services it serves and the protocols it uses. Each change is written as
//! a `known_devices.log` record, so the detector and the SIEM see it.
//!
//! It runs on the output thread, over the records on their way to the logs
//! (an `EventSink` wrapper), and needs nothing from the packets themselves.

use crate::flow::LocalNets;
use crate::output::EventSink;
use crate::SensorError;
use schema::{ConnRecord, DhcpRecord, Event, KnownDeviceRecord, Time};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::IpAddr;
use std::sync::OnceLock;

/// The IEEE MA-L registry as `PREFIX<TAB>Organisation` lines, gzipped
/// (`data/README.md` says where it comes from).
const OUI_GZ: &[u8] = include_bytes!("../data/oui.tsv.gz");

/// Organisation an OUI (the first three bytes of a MAC) is assigned to.
pub fn vendor(mac: &str) -> Option<&'static str> {
    static TABLE: OnceLock<HashMap<[u8; 3], &'static str>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut text = String::new();
        if flate2::read::GzDecoder::new(OUI_GZ).read_to_string(&mut text).is_err() {
            return HashMap::new();
        }
        // Read once per process, kept for its life.
        let text: &'static str = Box::leak(text.into_boxed_str());
        text.lines()
            .filter_map(|l| {
                let (prefix, org) = l.split_once('\t')?;
                let b = u32::from_str_radix(prefix, 16).ok()?.to_be_bytes();
                Some(([b[1], b[2], b[3]], org))
            })
            .collect()
    });
    let mut key = [0u8; 3];
    let mut parts = mac.split(':');
    for k in &mut key {
        *k = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    table.get(&key).copied()
}

/// Settings of the inventory (`[inventory]` in the sensor's configuration).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    /// Keep the inventory and write `known_devices.log`.
    pub enabled: bool,
    /// Devices tracked at once; past it new devices are counted, not kept.
    pub max_devices: usize,
    /// A MAC address seen with more addresses than this is a router's: it
    /// is not given to the devices behind it.
    pub max_addresses_per_mac: usize,
    /// A `snapshot` record of every device is written this often (record
    /// time), and when the run ends.
    pub snapshot_secs: u64,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig { enabled: true, max_devices: 65_536, max_addresses_per_mac: 16, snapshot_secs: 3600 }
    }
}

/// Services a device may hold on to before the rest are no longer listed.
const MAX_SERVICES: usize = 256;
/// Peers remembered per device; past it they are counted no further.
const MAX_PEERS: usize = 1024;

#[derive(Debug, Default)]
struct Device {
    mac: Option<String>,
    host_name: Option<String>,
    vendor_class: Option<String>,
    first_seen: Time,
    last_seen: Time,
    peers: HashSet<IpAddr>,
    /// (transport, port) it answered on.
    served: HashSet<(&'static str, u16)>,
    /// Protocols it spoke as a client.
    used: HashSet<String>,
}

pub struct Inventory {
    cfg: InventoryConfig,
    nets: LocalNets,
    devices: HashMap<IpAddr, Device>,
    /// Addresses seen behind each MAC (bounded by the router threshold).
    mac_hosts: HashMap<String, HashSet<IpAddr>>,
    /// Devices not tracked because the inventory was full.
    pub untracked: u64,
    /// Record time of the last snapshot.
    last_snapshot: Option<Time>,
}

/// Connection states in which the responder answered: it serves the port.
fn answered(state: &str) -> bool {
    matches!(state, "SF" | "S1" | "S2" | "S3" | "RSTO" | "RSTR" | "RSTOS0" | "SHR")
}

impl Inventory {
    pub fn new(cfg: InventoryConfig, nets: LocalNets) -> Inventory {
        Inventory { cfg, nets, devices: HashMap::new(), mac_hosts: HashMap::new(), untracked: 0, last_snapshot: None }
    }

    /// Looks at one record; appends the changes it shows to `out`.
    pub fn observe(&mut self, ev: &Event, out: &mut Vec<Event>) {
        let ts = match ev {
            Event::Conn(c) => {
                self.conn(c, out);
                c.ts
            }
            Event::Dhcp(d) => {
                self.dhcp(d, out);
                d.ts
            }
            _ => return,
        };
        let every = schema::Interval::from_secs(self.cfg.snapshot_secs.max(1) as i64);
        match self.last_snapshot {
            None => self.last_snapshot = Some(ts),
            Some(last) if ts.since(last) >= every => {
                self.snapshot(ts, out);
                self.last_snapshot = Some(ts);
            }
            Some(_) => {}
        }
    }

    /// A `snapshot` record of every device, in address order.
    pub fn snapshot(&self, ts: Time, out: &mut Vec<Event>) {
        let mut hosts: Vec<&IpAddr> = self.devices.keys().collect();
        hosts.sort();
        for host in hosts {
            let Some(d) = self.devices.get(host) else { continue };
            let mut r = self.change(ts, *host, "snapshot");
            r.first_seen = Some(d.first_seen);
            r.last_seen = Some(d.last_seen);
            r.peers = Some(d.peers.len() as u64);
            let mut services: Vec<String> = d.served.iter().map(|(t, p)| format!("{t}/{p}")).collect();
            services.sort();
            let mut protocols: Vec<String> = d.used.iter().cloned().collect();
            protocols.sort();
            r.services = services;
            r.protocols = protocols;
            out.push(Event::KnownDevice(r));
        }
    }

    fn change(&self, ts: Time, host: IpAddr, change: &'static str) -> KnownDeviceRecord {
        let d = self.devices.get(&host);
        let mac = d.and_then(|d| d.mac.clone());
        KnownDeviceRecord {
            ts,
            host,
            vendor: mac.as_deref().and_then(vendor).map(str::to_string),
            mac,
            dhcp_host_name: d.and_then(|d| d.host_name.clone()),
            dhcp_vendor_class: d.and_then(|d| d.vendor_class.clone()),
            change,
            proto: None,
            port: None,
            service: None,
            peer: None,
            uid: None,
            first_seen: None,
            last_seen: None,
            peers: None,
            services: Vec::new(),
            protocols: Vec::new(),
        }
    }

    /// The device of `host`, created (and announced) if new; None when the
    /// host is not local or the inventory is full.
    fn device(&mut self, ts: Time, host: IpAddr, mac: Option<&str>, out: &mut Vec<Event>) -> bool {
        let not_a_device = match host {
            IpAddr::V4(v) => v.is_unspecified() || v.is_broadcast() || v.is_multicast(),
            IpAddr::V6(v) => v.is_unspecified() || v.is_multicast(),
        };
        if not_a_device || !self.nets.contains(host) {
            return false;
        }
        let mac = mac.filter(|m| self.mac_is_the_hosts(m, host)).map(str::to_string);
        match self.devices.get_mut(&host) {
            Some(d) => {
                if d.mac.is_none() && mac.is_some() {
                    d.mac = mac;
                }
                d.last_seen = d.last_seen.max(ts);
                true
            }
            None => {
                if self.devices.len() >= self.cfg.max_devices {
                    self.untracked += 1;
                    return false;
                }
                // A MAC already known at another address: the device moved.
                let moved = mac.as_ref().is_some_and(|m| {
                    self.devices.iter().any(|(ip, d)| *ip != host && d.mac.as_deref() == Some(m.as_str()))
                });
                self.devices.insert(host, Device { mac, first_seen: ts, last_seen: ts, ..Default::default() });
                let change = if moved { "new_address" } else { "new_device" };
                out.push(Event::KnownDevice(self.change(ts, host, change)));
                true
            }
        }
    }

    /// Whether a MAC belongs to this host rather than to a router in front
    /// of many.
    fn mac_is_the_hosts(&mut self, mac: &str, host: IpAddr) -> bool {
        let limit = self.cfg.max_addresses_per_mac;
        if self.mac_hosts.len() >= self.cfg.max_devices && !self.mac_hosts.contains_key(mac) {
            return false;
        }
        let hosts = self.mac_hosts.entry(mac.to_string()).or_default();
        if hosts.len() <= limit {
            hosts.insert(host);
        }
        if hosts.len() > limit {
            // A router: take its MAC back from the devices it was given to.
            for d in self.devices.values_mut() {
                if d.mac.as_deref() == Some(mac) {
                    d.mac = None;
                }
            }
            return false;
        }
        true
    }

    fn conn(&mut self, c: &ConnRecord, out: &mut Vec<Event>) {
        let (orig, resp) = (c.orig_h, c.resp_h);
        let orig_known = self.device(c.ts, orig, c.orig_l2_addr.as_deref(), out);
        let resp_known = self.device(c.ts, resp, c.resp_l2_addr.as_deref(), out);
        let end = Time(c.ts.0 + c.duration.map_or(0, |d| d.0));
        for (known, me, peer) in [(orig_known, orig, resp), (resp_known, resp, orig)] {
            if let Some(d) = self.devices.get_mut(&me).filter(|_| known) {
                d.last_seen = d.last_seen.max(end);
                if d.peers.len() < MAX_PEERS {
                    d.peers.insert(peer);
                }
            }
        }
        let transport: Option<&'static str> = match c.proto {
            "tcp" => Some("tcp"),
            "udp" => Some("udp"),
            _ => None,
        };
        if resp_known && answered(c.conn_state) {
            if let Some(t) = transport {
                let key = (t, c.resp_p);
                let new =
                    self.devices.get_mut(&resp).is_some_and(|d| d.served.len() < MAX_SERVICES && d.served.insert(key));
                if new {
                    let mut r = self.change(c.ts, resp, "new_service");
                    r.proto = Some(t);
                    r.port = Some(c.resp_p);
                    r.service = c.service.clone();
                    r.peer = Some(orig);
                    r.uid = Some(c.uid);
                    out.push(Event::KnownDevice(r));
                }
            }
        }
        if let (true, Some(service)) = (orig_known, c.service.as_ref()) {
            let new = self
                .devices
                .get_mut(&orig)
                .is_some_and(|d| d.used.len() < MAX_SERVICES && d.used.insert(service.clone()));
            if new {
                let mut r = self.change(c.ts, orig, "new_protocol");
                r.proto = transport;
                r.port = None;
                r.service = Some(service.clone());
                r.peer = Some(resp);
                r.uid = Some(c.uid);
                out.push(Event::KnownDevice(r));
            }
        }
    }

    fn dhcp(&mut self, d: &DhcpRecord, out: &mut Vec<Event>) {
        let Some(host) = d.assigned_addr.or(d.client_addr) else { return };
        // DHCP names the client's own MAC: trusted even behind a relay.
        if let Some(m) = &d.mac {
            self.mac_hosts.entry(m.clone()).or_default().insert(host);
        }
        if !self.device(d.ts, host, d.mac.as_deref(), out) {
            return;
        }
        if let Some(dev) = self.devices.get_mut(&host) {
            if d.mac.is_some() {
                dev.mac.clone_from(&d.mac);
            }
            if d.host_name.is_some() {
                dev.host_name.clone_from(&d.host_name);
            }
            if d.client_software.is_some() {
                dev.vendor_class.clone_from(&d.client_software);
            }
        }
    }
}

/// Runs the inventory over the records on their way to `inner`, adding the
/// changes to the same batch.
pub struct InventorySink<S> {
    inner: S,
    inventory: Option<Inventory>,
    batch: Vec<Event>,
}

impl<S: EventSink> InventorySink<S> {
    pub fn new(inner: S, cfg: InventoryConfig, nets: LocalNets) -> Self {
        let inventory = cfg.enabled.then(|| Inventory::new(cfg, nets));
        InventorySink { inner, inventory, batch: Vec::new() }
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn inventory(&self) -> Option<&Inventory> {
        self.inventory.as_ref()
    }
}

impl<S: EventSink> EventSink for InventorySink<S> {
    fn write(&mut self, events: &mut [Event]) -> Result<(), SensorError> {
        let Some(inv) = self.inventory.as_mut() else { return self.inner.write(events) };
        self.batch.clear();
        for ev in events.iter() {
            inv.observe(ev, &mut self.batch);
        }
        if self.batch.is_empty() {
            return self.inner.write(events);
        }
        let mut all: Vec<Event> = events.to_vec();
        all.append(&mut self.batch);
        self.inner.write(&mut all)
    }

    fn flush(&mut self) -> Result<(), SensorError> {
        // The run ends: every device as last seen.
        if let Some(inv) = &self.inventory {
            let ts = inv.devices.values().map(|d| d.last_seen).max();
            if let Some(ts) = ts {
                let mut batch = Vec::new();
                inv.snapshot(ts, &mut batch);
                self.inner.write(&mut batch)?;
            }
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::FlowUid;

    fn conn(orig: &str, omac: &str, resp: &str, rmac: &str, port: u16, state: &'static str) -> Event {
        Event::Conn(ConnRecord {
            ts: Time(1),
            uid: FlowUid::new(1),
            orig_h: orig.parse().unwrap(),
            orig_p: 40000,
            resp_h: resp.parse().unwrap(),
            resp_p: port,
            proto: "tcp",
            service: (port == 502).then(|| "modbus".to_string()),
            duration: None,
            orig_bytes: None,
            resp_bytes: None,
            conn_state: state,
            local_orig: true,
            local_resp: true,
            missed_bytes: 0,
            history: None,
            orig_pkts: 1,
            orig_ip_bytes: 1,
            resp_pkts: 1,
            resp_ip_bytes: 1,
            tunnel_parents: Vec::new(),
            ip_proto: 6,
            orig_l2_addr: Some(omac.into()),
            resp_l2_addr: Some(rmac.into()),
            vlan: None,
            inner_vlan: None,
            community_id: None,
        })
    }

    fn changes(inv: &mut Inventory, ev: &Event) -> Vec<(String, &'static str, Option<u16>)> {
        let mut out = Vec::new();
        inv.observe(ev, &mut out);
        out.into_iter()
            .filter_map(|e| match e {
                Event::KnownDevice(d) => Some((d.host.to_string(), d.change, d.port)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn devices_services_and_protocols_are_announced_once() {
        let nets = LocalNets::parse(&["10.0.0.0/8".into()]).unwrap();
        let mut inv = Inventory::new(InventoryConfig::default(), nets);
        let ev = conn("10.33.9.5", "00:0e:8c:00:00:01", "10.33.0.7", "00:80:f4:00:00:07", 502, "SF");
        assert_eq!(
            changes(&mut inv, &ev),
            [
                ("10.33.9.5".to_string(), "new_device", None),
                ("10.33.0.7".to_string(), "new_device", None),
                ("10.33.0.7".to_string(), "new_service", Some(502)),
                ("10.33.9.5".to_string(), "new_protocol", None),
            ]
        );
        assert!(changes(&mut inv, &ev).is_empty(), "nothing new the second time");
        let mut snap = Vec::new();
        inv.snapshot(Time(9), &mut snap);
        let plc = snap.iter().find_map(|e| match e {
            Event::KnownDevice(d) if d.host.to_string() == "10.33.0.7" => Some(d.clone()),
            _ => None,
        });
        let plc = plc.expect("a snapshot of the controller");
        assert_eq!((plc.change, plc.services.clone(), plc.peers), ("snapshot", vec!["tcp/502".to_string()], Some(1)));
        // A refused connection shows no service.
        let refused = conn("10.33.9.5", "00:0e:8c:00:00:01", "10.33.0.7", "00:80:f4:00:00:07", 23, "REJ");
        assert!(changes(&mut inv, &refused).is_empty());
        // Vendors come from the registry (00:80:F4 is Telemecanique, 00:0E:8C Siemens).
        let mut out = Vec::new();
        inv.observe(&conn("10.33.0.9", "00:80:f4:00:00:09", "10.33.0.7", "00:80:f4:00:00:07", 80, "S0"), &mut out);
        let Some(Event::KnownDevice(d)) = out.first() else { panic!("a new device") };
        assert!(d.vendor.as_deref().is_some_and(|v| v.to_ascii_lowercase().contains("telemecanique")), "{d:?}");
    }

    #[test]
    fn a_routers_mac_is_not_a_device_mac_and_the_inventory_is_bounded() {
        let nets = LocalNets::parse(&["10.0.0.0/8".into()]).unwrap();
        let cfg = InventoryConfig { max_devices: 40, max_addresses_per_mac: 4, ..Default::default() };
        let mut inv = Inventory::new(cfg, nets);
        for i in 0..60u8 {
            let ev = conn(&format!("10.1.0.{i}"), "aa:aa:aa:00:00:01", "203.0.113.9", "aa:aa:aa:00:00:02", 443, "SF");
            inv.observe(&ev, &mut Vec::new());
        }
        assert_eq!(inv.devices.len(), 40);
        assert_eq!(inv.untracked, 20);
        assert!(inv.devices.values().all(|d| d.mac.is_none()), "the gateway's MAC is nobody's");
        assert!(!inv.devices.contains_key(&"203.0.113.9".parse::<IpAddr>().unwrap()));
    }
}

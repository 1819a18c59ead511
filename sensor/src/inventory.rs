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

/// OUI → organisation, from the registry in use.
pub type OuiTable = HashMap<[u8; 3], &'static str>;

static TABLE: OnceLock<OuiTable> = OnceLock::new();

/// Reads registry text: the `PREFIX<TAB>Organisation` lines we ship and
/// `update-oui` writes, IEEE's `oui.csv` (`MA-L,001B63,"Apple, Inc.",…`),
/// or IEEE's `oui.txt` (`00-1B-63   (hex)  Apple, Inc.`). Kept for the
/// process's life.
pub fn parse_registry(text: &str) -> OuiTable {
    let mut table = HashMap::new();
    let mut add = |prefix: &str, org: &str| {
        // Names as the registry spells them, spaces collapsed (IEEE pads
        // some and breaks others over lines).
        let org = org.split_whitespace().collect::<Vec<_>>().join(" ");
        let prefix = prefix.trim().replace('-', "");
        let Some(n) = (prefix.len() == 6).then(|| u32::from_str_radix(&prefix, 16).ok()).flatten() else { return };
        if org.is_empty() {
            return;
        }
        let b = n.to_be_bytes();
        let org: &'static str = Box::leak(org.into_boxed_str());
        table.insert([b[1], b[2], b[3]], org);
    };
    if text.starts_with("Registry,") {
        for rec in csv_records(text) {
            if let [kind, prefix, org, ..] = rec.as_slice() {
                if kind == "MA-L" {
                    add(prefix, org);
                }
            }
        }
    } else {
        for line in text.lines() {
            if let Some((p, o)) = line.split_once("(hex)").or_else(|| line.split_once('\t')) {
                add(p, o);
            }
        }
    }
    table
}

/// The records of CSV text (RFC 4180: quoted fields may hold commas,
/// doubled quotes and line breaks).
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let (mut out, mut rec, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => rec.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                rec.push(std::mem::take(&mut field));
                out.push(std::mem::take(&mut rec));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !rec.is_empty() {
        rec.push(field);
        out.push(rec);
    }
    out
}

/// Reads a registry file (gzipped or not, any form [`parse_registry`]
/// reads).
pub fn read_registry(path: &std::path::Path) -> Result<OuiTable, SensorError> {
    let fail = |msg: String| SensorError::Registry { path: path.to_path_buf(), msg };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut text = String::new();
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    let read = if gz {
        flate2::read::GzDecoder::new(bytes.as_slice()).read_to_string(&mut text).map(|_| ())
    } else {
        String::from_utf8(bytes).map(|t| text = t).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    };
    read.map_err(|e| fail(e.to_string()))?;
    let table = parse_registry(&text);
    if table.is_empty() {
        return Err(fail("no OUI assignment in it".into()));
    }
    Ok(table)
}

/// Writes a registry as we ship it (`PREFIX<TAB>Organisation` lines in
/// prefix order, gzipped), beside `path` and renamed: a sensor starting
/// meanwhile reads the old registry or the new one, never half of one.
pub fn write_registry(table: &OuiTable, path: &std::path::Path) -> Result<(), SensorError> {
    use std::io::Write;
    let fail = |e: std::io::Error| SensorError::Registry { path: path.to_path_buf(), msg: e.to_string() };
    let mut rows: Vec<(String, &str)> =
        table.iter().map(|(k, org)| (format!("{:02X}{:02X}{:02X}", k[0], k[1], k[2]), *org)).collect();
    rows.sort();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for (prefix, org) in &rows {
        // One line per assignment: a name never holds a tab or a newline.
        let org = org.replace(['\t', '\n', '\r'], " ");
        writeln!(gz, "{prefix}\t{org}").map_err(fail)?;
    }
    let bytes = gz.finish().map_err(fail)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// Names vendors from `path` (as `citysoc inventory update-oui` writes
/// it) rather than from the copy built in. Call it before the first
/// lookup; returns the assignments read, or None if a registry was in use
/// already.
pub fn use_registry(path: &std::path::Path) -> Result<Option<usize>, SensorError> {
    let table = read_registry(path)?;
    let n = table.len();
    Ok(TABLE.set(table).is_ok().then_some(n))
}

/// Organisation an OUI (the first three bytes of a MAC) is assigned to.
/// None for a locally administered or group address (IEEE 802 §8.2: bit
/// 0x02 of the first octet set, or 0x01): such an address was not handed
/// out by IEEE, whatever its first bytes look like (phones' private
/// addresses, virtual NICs, cameras configured by hand).
pub fn vendor(mac: &str) -> Option<&'static str> {
    let table = TABLE.get_or_init(|| {
        let mut text = String::new();
        if flate2::read::GzDecoder::new(OUI_GZ).read_to_string(&mut text).is_err() {
            return HashMap::new();
        }
        parse_registry(&text)
    });
    let mut key = [0u8; 3];
    let mut parts = mac.split(':');
    for k in &mut key {
        *k = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    if key[0] & 0x03 != 0 {
        return None;
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
    /// The IEEE OUI registry vendors are named from, as `citysoc inventory
    /// update-oui` writes it; unset, the copy built into the binary.
    pub oui_file: Option<std::path::PathBuf>,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            enabled: true,
            max_devices: 65_536,
            max_addresses_per_mac: 16,
            snapshot_secs: 3600,
            oui_file: None,
        }
    }
}

/// Services a device may hold on to before the rest are no longer listed.
const MAX_SERVICES: usize = 256;
/// Peers remembered per device; past it they are counted no further.
const MAX_PEERS: usize = 1024;

/// The IANA name of a well-known port, for a service no analyzer confirmed
/// (IANA service name registry; 37777 and 34567 are the Dahua and XMEye
/// camera protocols, 1911 Niagara Fox).
pub fn port_name(transport: &str, port: u16) -> Option<&'static str> {
    let tcp = transport == "tcp";
    Some(match port {
        20 | 21 if tcp => "ftp",
        22 if tcp => "ssh",
        23 if tcp => "telnet",
        25 | 587 if tcp => "smtp",
        53 => "dns",
        67 | 68 if !tcp => "dhcp",
        69 if !tcp => "tftp",
        80 | 8080 | 8000 | 8008 if tcp => "http",
        102 if tcp => "s7comm",
        110 if tcp => "pop3",
        123 if !tcp => "ntp",
        139 | 445 if tcp => "smb",
        143 if tcp => "imap",
        161 | 162 if !tcp => "snmp",
        389 => "ldap",
        443 | 8443 if tcp => "ssl",
        502 if tcp => "modbus",
        514 if !tcp => "syslog",
        515 if tcp => "lpd",
        554 | 8554 => "rtsp",
        631 if tcp => "ipp",
        1433 if tcp => "mssql",
        1883 | 8883 if tcp => "mqtt",
        1911 if tcp => "niagara-fox",
        2404 if tcp => "iec-104",
        3306 if tcp => "mysql",
        3389 if tcp => "rdp",
        3702 if !tcp => "ws-discovery",
        4840 if tcp => "opc-ua",
        5060 => "sip",
        5683 if !tcp => "coap",
        9100 if tcp => "jetdirect",
        20000 => "dnp3",
        34567 if tcp => "xmeye",
        37777 if tcp => "dahua-dvrip",
        44818 => "enip",
        47808 if !tcp => "bacnet",
        _ => return None,
    })
}

/// What a device is, from the services it answers on and the protocols it
/// speaks, the first rule that matches: `(type, services it serves, as
/// client)`. Cameras answer RTSP or ONVIF discovery (or their vendors'
/// protocols), controllers the field-bus protocols, masters and engineering
/// stations speak those protocols as clients.
const TYPES: &[(&str, &[&str], &[&str])] = &[
    ("camera", &["rtsp", "ws-discovery", "dahua-dvrip", "xmeye"], &[]),
    ("plc", &["modbus", "s7comm", "dnp3", "enip", "iec-104", "opc-ua"], &[]),
    ("building_controller", &["bacnet", "niagara-fox"], &[]),
    ("mqtt_broker", &["mqtt"], &[]),
    ("printer", &["ipp", "jetdirect", "lpd"], &[]),
    ("dhcp_server", &["dhcp"], &[]),
    ("dns_server", &["dns"], &[]),
    ("mail_server", &["smtp", "smtp,ssl", "imap", "pop3"], &[]),
    ("file_server", &["smb", "ftp", "tftp"], &[]),
    ("database", &["mysql", "mssql"], &[]),
    ("web_server", &["http", "ssl"], &[]),
    ("ics_master", &[], &["modbus", "dnp3", "s7comm", "enip", "iec-104", "bacnet"]),
    ("iot_device", &[], &["mqtt", "coap"]),
];

#[derive(Debug, Default)]
struct Device {
    mac: Option<String>,
    /// The MAC came from the device's own DHCP message: it is its own, not
    /// a router's.
    mac_from_dhcp: bool,
    host_name: Option<String>,
    vendor_class: Option<String>,
    first_seen: Time,
    last_seen: Time,
    peers: HashSet<IpAddr>,
    /// (transport, port) it answered on, with the protocol an analyzer
    /// confirmed there.
    served: HashMap<(&'static str, u16), Option<String>>,
    /// Protocols it spoke as a client.
    used: HashSet<String>,
}

impl Device {
    /// The name of what it serves on a port: the analyzer's, else the
    /// port's well-known name in parentheses (a guess, not an observation).
    fn service_label(transport: &str, port: u16, confirmed: Option<&str>) -> String {
        match (confirmed, port_name(transport, port)) {
            (Some(s), _) => format!("{transport}/{port} {s}"),
            (None, Some(n)) => format!("{transport}/{port} ({n})"),
            (None, None) => format!("{transport}/{port}"),
        }
    }

    /// The device's type and the evidence for it (`serves tcp/554 (rtsp)`).
    fn classify(&self) -> Option<(&'static str, String)> {
        let mut served: Vec<(&(&'static str, u16), &Option<String>)> = self.served.iter().collect();
        served.sort();
        for (kind, serves, speaks) in TYPES {
            let evidence: Vec<String> = served
                .iter()
                .filter(|((t, p), s)| {
                    let name = s.as_deref().or_else(|| port_name(t, *p));
                    name.is_some_and(|n| serves.contains(&n))
                })
                .map(|((t, p), s)| format!("serves {}", Device::service_label(t, *p, s.as_deref())))
                .collect();
            if !evidence.is_empty() {
                return Some((kind, evidence.join(", ")));
            }
            let mut used: Vec<&String> = self.used.iter().filter(|u| speaks.contains(&u.as_str())).collect();
            if !used.is_empty() {
                used.sort();
                let names: Vec<&str> = used.iter().map(|u| u.as_str()).collect();
                return Some((kind, format!("speaks {} as a client", names.join(", "))));
            }
        }
        None
    }
}

pub struct Inventory {
    cfg: InventoryConfig,
    nets: LocalNets,
    devices: HashMap<IpAddr, Device>,
    /// Addresses seen behind each MAC (counted up to one past the router
    /// threshold).
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
            let mut served: Vec<_> = d.served.iter().collect();
            served.sort();
            r.services = served.into_iter().map(|((t, p), s)| Device::service_label(t, *p, s.as_deref())).collect();
            let mut protocols: Vec<String> = d.used.iter().cloned().collect();
            protocols.sort();
            r.protocols = protocols;
            out.push(Event::KnownDevice(r));
        }
    }

    /// Addresses seen behind a MAC, when more than one: a router or NAT in
    /// front of them (counted up to one past `max_addresses_per_mac`).
    fn mac_shared(&self, mac: &str) -> Option<u64> {
        let n = self.mac_hosts.get(mac).map_or(0, HashSet::len);
        (n > 1).then_some(n as u64)
    }

    fn change(&self, ts: Time, host: IpAddr, change: &'static str) -> KnownDeviceRecord {
        let d = self.devices.get(&host);
        let mac = d.and_then(|d| d.mac.clone());
        let mac_shared =
            mac.as_deref().and_then(|m| self.mac_shared(m)).filter(|_| !d.is_some_and(|d| d.mac_from_dhcp));
        let (device_type, type_evidence) =
            d.and_then(Device::classify).map_or((None, None), |(k, e)| (Some(k), Some(e)));
        KnownDeviceRecord {
            ts,
            host,
            // A shared MAC is the router's: its vendor is not the device's.
            vendor: mac.as_deref().filter(|_| mac_shared.is_none()).and_then(vendor).map(str::to_string),
            mac,
            mac_shared,
            device_type,
            type_evidence,
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

    /// The device of `host`, created (and announced) if new; false when
    /// the host is not local or the inventory is full. Only an address that
    /// sent something is a device: one that was only sent to (a scan's
    /// target that never answered) is not.
    fn device(&mut self, ts: Time, host: IpAddr, mac: Option<&str>, out: &mut Vec<Event>) -> bool {
        let not_a_device = match host {
            IpAddr::V4(v) => v.is_unspecified() || v.is_broadcast() || v.is_multicast(),
            IpAddr::V6(v) => v.is_unspecified() || v.is_multicast(),
        };
        if not_a_device || !self.nets.contains(host) {
            return false;
        }
        let mac = mac.filter(|m| self.count_mac(m, host)).map(str::to_string);
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
                // A MAC already known at one other address: the device
                // moved (a MAC at many addresses is a router's).
                let moved = mac.as_ref().is_some_and(|m| {
                    self.mac_shared(m) == Some(2)
                        && self.devices.iter().any(|(ip, d)| *ip != host && d.mac.as_deref() == Some(m.as_str()))
                });
                self.devices.insert(host, Device { mac, first_seen: ts, last_seen: ts, ..Default::default() });
                let change = if moved { "new_address" } else { "new_device" };
                out.push(Event::KnownDevice(self.change(ts, host, change)));
                true
            }
        }
    }

    /// Counts `host` behind `mac`; false when the MAC is not usable (the
    /// table of MACs is full).
    fn count_mac(&mut self, mac: &str, host: IpAddr) -> bool {
        let limit = self.cfg.max_addresses_per_mac;
        if self.mac_hosts.len() >= self.cfg.max_devices && !self.mac_hosts.contains_key(mac) {
            return false;
        }
        let hosts = self.mac_hosts.entry(mac.to_string()).or_default();
        if hosts.len() <= limit {
            hosts.insert(host);
        }
        true
    }

    fn conn(&mut self, c: &ConnRecord, out: &mut Vec<Event>) {
        let (orig, resp) = (c.orig_h, c.resp_h);
        let orig_known = self.device(c.ts, orig, c.orig_l2_addr.as_deref(), out);
        // The responder is a device only if it answered (any packet back,
        // a reset included); a probe's silent target is not.
        let resp_known = c.resp_pkts > 0 && self.device(c.ts, resp, c.resp_l2_addr.as_deref(), out);
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
                let confirmed = c.service.clone();
                let new = self.devices.get_mut(&resp).is_some_and(|d| {
                    let room = d.served.len() < MAX_SERVICES;
                    match d.served.get_mut(&key) {
                        // An analyzer confirmed later what the port only hinted.
                        Some(s) => {
                            if s.is_none() && confirmed.is_some() {
                                s.clone_from(&confirmed);
                            }
                            false
                        }
                        None if room => {
                            d.served.insert(key, confirmed.clone());
                            true
                        }
                        None => false,
                    }
                });
                if new {
                    let mut r = self.change(c.ts, resp, "new_service");
                    r.proto = Some(t);
                    r.port = Some(c.resp_p);
                    r.service = confirmed.or_else(|| port_name(t, c.resp_p).map(|n| format!("({n})")));
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
        if !self.device(d.ts, host, d.mac.as_deref(), out) {
            return;
        }
        if let Some(dev) = self.devices.get_mut(&host) {
            // DHCP names the client's own MAC: trusted even behind a relay.
            if d.mac.is_some() {
                dev.mac.clone_from(&d.mac);
                dev.mac_from_dhcp = true;
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
        assert_eq!(
            (plc.change, plc.services.clone(), plc.peers),
            ("snapshot", vec!["tcp/502 modbus".to_string()], Some(1))
        );
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
    fn a_routers_mac_is_flagged_shared_and_the_inventory_is_bounded() {
        let nets = LocalNets::parse(&["10.0.0.0/8".into()]).unwrap();
        let cfg = InventoryConfig { max_devices: 40, max_addresses_per_mac: 4, ..Default::default() };
        let mut inv = Inventory::new(cfg, nets);
        // Apple's OUI, seen in front of sixty addresses: the gateway's.
        for i in 0..60u8 {
            let ev = conn(&format!("10.1.0.{i}"), "00:1b:63:00:00:01", "203.0.113.9", "aa:aa:aa:00:00:02", 443, "SF");
            inv.observe(&ev, &mut Vec::new());
        }
        assert_eq!(inv.devices.len(), 40);
        assert_eq!(inv.untracked, 20);
        assert!(!inv.devices.contains_key(&"203.0.113.9".parse::<IpAddr>().unwrap()));
        let mut snap = Vec::new();
        inv.snapshot(Time(9), &mut snap);
        for e in &snap {
            let Event::KnownDevice(d) = e else { panic!("{e:?}") };
            assert_eq!(d.mac.as_deref(), Some("00:1b:63:00:00:01"));
            assert_eq!(d.mac_shared, Some(5), "counted up to one past the threshold");
            assert_eq!(d.vendor, None, "the router's vendor is not the devices'");
        }
        // Its own DHCP exchange gives a device its MAC and vendor back.
        let mut out = Vec::new();
        inv.observe(&dhcp("10.1.0.7", "00:1b:63:84:45:e6"), &mut out);
        inv.snapshot(Time(9), &mut out);
        let d = known(&out, "10.1.0.7", "snapshot").expect("the device");
        assert_eq!(
            (d.mac.as_deref(), d.vendor.as_deref(), d.mac_shared),
            (Some("00:1b:63:84:45:e6"), Some("Apple, Inc."), None)
        );
    }

    fn dhcp(host: &str, mac: &str) -> Event {
        Event::Dhcp(DhcpRecord {
            ts: Time(2),
            uids: Vec::new(),
            client_addr: None,
            server_addr: None,
            mac: Some(mac.into()),
            host_name: Some("cam-7".into()),
            client_fqdn: None,
            domain: None,
            requested_addr: None,
            assigned_addr: Some(host.parse().unwrap()),
            lease_time: None,
            client_message: None,
            server_message: None,
            msg_types: Vec::new(),
            duration: Default::default(),
            client_software: None,
        })
    }

    fn known(out: &[Event], host: &str, change: &str) -> Option<KnownDeviceRecord> {
        out.iter().rev().find_map(|e| match e {
            Event::KnownDevice(d) if d.host.to_string() == host && d.change == change => Some(d.clone()),
            _ => None,
        })
    }

    #[test]
    fn a_probed_address_that_never_answered_is_no_device() {
        let nets = LocalNets::parse(&["10.0.0.0/8".into()]).unwrap();
        let mut inv = Inventory::new(InventoryConfig::default(), nets);
        // A SYN scan: one answered with a reset, one served, the rest silent.
        let mut out = Vec::new();
        for i in 1..=200u8 {
            let mut ev = conn("10.9.0.66", "00:0e:8c:00:00:01", &format!("10.9.1.{i}"), "00:0e:8c:00:00:02", 80, "S0");
            if let Event::Conn(c) = &mut ev {
                c.resp_pkts = 0;
                if i == 5 {
                    (c.conn_state, c.resp_pkts) = ("REJ", 1);
                }
                if i == 6 {
                    (c.conn_state, c.resp_pkts) = ("SF", 3);
                }
            }
            inv.observe(&ev, &mut out);
        }
        let mut hosts: Vec<String> = inv.devices.keys().map(|h| h.to_string()).collect();
        hosts.sort();
        assert_eq!(hosts, ["10.9.0.66", "10.9.1.5", "10.9.1.6"]);
        let reset = known(&out, "10.9.1.5", "new_device").expect("a reset is an answer");
        assert!(known(&out, "10.9.1.5", "new_service").is_none(), "but serves nothing: {reset:?}");
        let web = known(&out, "10.9.1.6", "new_service").expect("a served port");
        assert_eq!(web.service.as_deref(), Some("(http)"), "no analyzer confirmed it: the port's name, marked");
    }

    #[test]
    fn the_registry_is_read_from_ieee_csv_and_txt_and_ours() {
        let csv = "Registry,Assignment,Organization Name,Organization Address\n\
                   MA-L,001B63,\"Apple, Inc.\",1 Infinite Loop Cupertino CA US 95014\n\
                   MA-L,0080F4,TELEMECANIQUE ELECTRIQUE,33 BIS AVENUE FR\n";
        let txt = "OUI/MA-L\t\t\tOrganization\n00-1B-63   (hex)\t\tApple, Inc.\n001B63     (base 16)\t\tApple, Inc.\n";
        let ours = "001B63\tApple, Inc.\n";
        for text in [csv, txt, ours] {
            let t = parse_registry(text);
            assert_eq!(t.get(&[0x00, 0x1b, 0x63]).copied(), Some("Apple, Inc."), "{text}");
        }
        assert_eq!(parse_registry(csv).len(), 2);
        assert_eq!(parse_registry(txt).len(), 1, "the base-16 line is the same assignment");
    }

    #[test]
    fn a_locally_administered_mac_has_no_vendor() {
        // 00:1b:63 is Apple's; 02:1b:63 is the same bytes with the U/L bit
        // set (a private or hand-configured address), 01:.. a group address.
        assert_eq!(vendor("00:1b:63:84:45:e6"), Some("Apple, Inc."));
        assert_eq!(vendor("02:1b:63:84:45:e6"), None);
        assert_eq!(vendor("01:1b:63:84:45:e6"), None);
        let nets = LocalNets::parse(&["10.0.0.0/8".into()]).unwrap();
        let mut inv = Inventory::new(InventoryConfig::default(), nets);
        let mut out = Vec::new();
        inv.observe(&conn("10.9.0.5", "02:1b:63:00:00:05", "10.9.0.6", "00:1b:63:00:00:06", 554, "SF"), &mut out);
        let cam = known(&out, "10.9.0.5", "new_device").unwrap();
        assert_eq!((cam.mac.as_deref(), cam.vendor), (Some("02:1b:63:00:00:05"), None));
    }

    #[test]
    fn types_come_from_what_a_device_serves_and_speaks_with_the_evidence() {
        let nets = LocalNets::parse(&["10.0.0.0/8".into()]).unwrap();
        let mut inv = Inventory::new(InventoryConfig::default(), nets);
        let mut out = Vec::new();
        let udp = |orig: &str, resp: &str, port: u16, service: Option<&str>| {
            let mut ev = conn(orig, "00:0e:8c:00:00:01", resp, "00:80:f4:00:00:07", port, "SF");
            if let Event::Conn(c) = &mut ev {
                c.service = service.map(str::to_string);
                if port == 47808 || port == 20000 {
                    c.proto = "udp";
                }
            }
            ev
        };
        for ev in [
            udp("10.9.0.1", "10.9.0.20", 554, None),
            udp("10.9.0.1", "10.9.0.20", 80, Some("http")),
            udp("10.9.0.2", "10.9.0.30", 502, Some("modbus")),
            udp("10.9.0.2", "10.9.0.40", 47808, Some("bacnet")),
            udp("10.9.0.3", "10.9.0.50", 1883, Some("mqtt")),
            udp("10.9.0.3", "10.9.0.60", 9100, None),
            udp("10.9.0.3", "10.9.0.70", 443, Some("ssl")),
            udp("10.9.0.3", "10.9.0.80", 20000, None),
        ] {
            inv.observe(&ev, &mut out);
        }
        out.clear();
        inv.snapshot(Time(9), &mut out);
        let kind = |h: &str| {
            let d = known(&out, h, "snapshot").unwrap();
            (d.device_type.unwrap_or("-"), d.type_evidence.unwrap_or_default())
        };
        assert_eq!(kind("10.9.0.20"), ("camera", "serves tcp/554 (rtsp)".into()), "RTSP before its web page");
        assert_eq!(kind("10.9.0.30"), ("plc", "serves tcp/502 modbus".into()));
        assert_eq!(kind("10.9.0.40").0, "building_controller");
        assert_eq!(kind("10.9.0.50").0, "mqtt_broker");
        assert_eq!(kind("10.9.0.60"), ("printer", "serves tcp/9100 (jetdirect)".into()));
        assert_eq!(kind("10.9.0.70").0, "web_server");
        assert_eq!(kind("10.9.0.80"), ("plc", "serves udp/20000 (dnp3)".into()));
        assert_eq!(kind("10.9.0.2"), ("ics_master", "speaks bacnet, modbus as a client".into()));
        assert_eq!(kind("10.9.0.3").0, "iot_device", "an MQTT client");
        let cam = known(&out, "10.9.0.20", "snapshot").unwrap();
        assert_eq!(cam.services, ["tcp/80 http", "tcp/554 (rtsp)"]);
        assert_eq!(kind("10.9.0.1").0, "-", "a client of nothing telling");
    }
}

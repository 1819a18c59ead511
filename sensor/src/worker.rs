//! One packet-processing worker: decoding, reassembly, tunnels and its share
//! of the flow table. Workers share nothing; the pipeline gives each one the
//! packets whose outer address pair hashes to it.

use crate::decode::{
    self, decode_ethernet, decode_link, FragConfig, FragOutcome, IpView, LinkType, Malformed, Reassembler, L3,
};
use crate::flow::{EndReason, FlowConfig, FlowOutput, FlowTable, PacketMeta, Transport};
use crate::ring::{PacketRing, Pins, RingConfig};
use schema::{Event, FlowUid, Interval, Time, TunnelRecord, WeirdRecord};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub flow: FlowConfig,
    pub frag: FragConfig,
    /// Verify IP/TCP/UDP/ICMP checksums and skip packets that fail (Zeek
    /// without `-C`). Off by default: capture offload makes them unreliable.
    pub verify_checksums: bool,
    /// Nested tunnels followed at most (Zeek's `Tunnel::max_depth`).
    pub max_tunnel_depth: u8,
    /// IP-level tunnels (GRE, IP-in-IP) tracked at once.
    pub max_ip_tunnels: usize,
    /// An IP-level tunnel idle this long is logged as expired.
    pub tunnel_expiration: Interval,
    /// Records of one weird name that are written before sampling starts.
    pub weird_sampling_threshold: u64,
    /// Past the threshold, one record in this many is written.
    pub weird_sampling_rate: u64,
    /// Name written in the `peer` field of weird.log and stats.log.
    pub sensor_name: String,
    /// Keep packets in the on-disk ring (and pin those alerts name).
    pub ring: Option<RingSetup>,
}

/// The packet ring's settings and the pins shared with the output thread.
#[derive(Clone, Debug)]
pub struct RingSetup {
    pub cfg: Arc<RingConfig>,
    pub pins: Arc<Pins>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            flow: FlowConfig::default(),
            frag: FragConfig::default(),
            verify_checksums: false,
            max_tunnel_depth: 2,
            max_ip_tunnels: 65_536,
            tunnel_expiration: Interval::from_secs(3600),
            weird_sampling_threshold: 25,
            weird_sampling_rate: 1000,
            ring: None,
            sensor_name: "sensor".into(),
        }
    }
}

/// Counters of one worker; summed by the pipeline.
#[derive(Clone, Debug, Default)]
pub struct WorkerCounters {
    pub pkts: u64,
    pub pkts_flow: u64,
    pub pkts_non_ip: u64,
    pub pkts_malformed: u64,
    pub pkts_fragment: u64,
    pub pkts_bad_checksum: u64,
    pub pkts_tunnel_too_deep: u64,
    pub fragments_reassembled: u64,
    pub fragments_dropped: u64,
    pub weirds: u64,
    pub weirds_suppressed: u64,
    pub flows_created: u64,
    pub flows_expired: u64,
    pub flows_evicted: u64,
    pub flows_flushed: u64,
    pub flows_active: u64,
    pub reassembly_held_bytes: u64,
    pub reassembly_forced_gaps: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum TunnelKind {
    Gre,
    Ip,
}

impl TunnelKind {
    fn name(self) -> &'static str {
        match self {
            TunnelKind::Gre => "Tunnel::GRE",
            TunnelKind::Ip => "Tunnel::IP",
        }
    }
}

struct IpTunnel {
    uid: FlowUid,
    orig: IpAddr,
    resp: IpAddr,
    last_seen: Time,
}

#[derive(Clone, Copy)]
struct Ctx {
    vlan: Option<u16>,
    inner_vlan: Option<u16>,
    /// MAC addresses of the outermost frame (not of tunnelled ones).
    macs: Option<([u8; 6], [u8; 6])>,
    parent: Option<FlowUid>,
    depth: u8,
}

/// UDP ports of the tunnels Zeek decodes by default.
const VXLAN_PORT: u16 = 4789;
const GENEVE_PORT: u16 = 6081;
const GTPU_PORT: u16 = 2152;
const TEREDO_PORT: u16 = 3544;

pub struct Worker {
    cfg: WorkerConfig,
    flows: FlowTable,
    frags: Reassembler,
    ip_tunnels: HashMap<(IpAddr, IpAddr, TunnelKind), IpTunnel>,
    /// UDP tunnels by the uid of their outer connection.
    udp_tunnels: HashMap<FlowUid, &'static str>,
    weird_counts: HashMap<&'static str, u64>,
    flow_out: FlowOutput,
    counters: WorkerCounters,
    last_tunnel_sweep: Time,
    ring: Option<PacketRing>,
    /// The flows the packet being processed belongs to (outer and inner).
    pkt_uids: Vec<FlowUid>,
    /// Where its innermost transport payload starts in the frame.
    pkt_headers: Option<usize>,
    /// An endpoint is in the ring's `headers_only` networks.
    pkt_private: bool,
    frame: (usize, usize),
    ring_synced: std::time::Instant,
}

impl Worker {
    pub fn new(cfg: WorkerConfig) -> Self {
        Worker {
            flows: FlowTable::new(cfg.flow.clone()),
            frags: Reassembler::new(cfg.frag.clone()),
            cfg,
            ip_tunnels: HashMap::new(),
            udp_tunnels: HashMap::new(),
            weird_counts: HashMap::new(),
            flow_out: FlowOutput::default(),
            counters: WorkerCounters::default(),
            last_tunnel_sweep: Time(i64::MIN),
            ring: None,
            pkt_uids: Vec::new(),
            pkt_headers: None,
            pkt_private: false,
            frame: (0, 0),
            ring_synced: std::time::Instant::now(),
        }
    }

    pub fn counters(&self) -> WorkerCounters {
        let mut c = self.counters.clone();
        let f = &self.flows.counters;
        c.flows_created = f.created;
        c.flows_expired = f.expired;
        c.flows_evicted = f.evicted;
        c.flows_flushed = f.flushed;
        c.flows_active = self.flows.len() as u64;
        c.fragments_dropped = self.frags.dropped_fragments;
        let (held, forced) = self.flows.reassembly();
        c.reassembly_held_bytes = held as u64;
        c.reassembly_forced_gaps = forced;
        c
    }

    /// Keeps every packet in the ring from now on.
    pub fn attach_ring(&mut self, ring: PacketRing) {
        self.ring = Some(ring);
    }

    pub fn ring_counters(&self) -> Option<&crate::ring::RingCounters> {
        self.ring.as_ref().map(|r| &r.counters)
    }

    /// Decodes and accounts one captured packet.
    pub fn process(&mut self, ts: Time, lt: LinkType, data: &[u8], out: &mut Vec<Event>) {
        self.counters.pkts += 1;
        if self.ring.is_some() {
            self.pkt_uids.clear();
            self.pkt_headers = None;
            self.pkt_private = false;
            self.frame = (data.as_ptr() as usize, data.len());
        }
        match decode_link(lt, data) {
            Ok(view) => match view.l3 {
                L3::Ip(ip) => {
                    let ctx =
                        Ctx { vlan: view.vlan, inner_vlan: view.inner_vlan, macs: view.macs, parent: None, depth: 0 };
                    self.handle_ip(ts, ip, ctx, out);
                }
                L3::NonIp(_) => self.counters.pkts_non_ip += 1,
            },
            Err(m) => {
                self.counters.pkts_malformed += 1;
                self.net_weird(ts, m.weird_name(), None, out);
            }
        }
        if let Some(r) = self.ring.as_mut() {
            r.write(ts, data, &self.pkt_uids, self.pkt_headers, self.pkt_private);
        }
        self.drain_flows(out);
    }

    /// Advances time without a packet: timeouts fire.
    pub fn tick(&mut self, now: Time, out: &mut Vec<Event>) {
        // What the ring holds becomes readable within a second.
        if let Some(r) = self.ring.as_mut() {
            if self.ring_synced.elapsed() >= std::time::Duration::from_secs(1) {
                self.ring_synced = std::time::Instant::now();
                r.sync();
            }
        }
        self.flows.expire(now, &mut self.flow_out);
        let dropped = self.frags.expire(now);
        if dropped > 0 {
            self.net_weird(now, "fragment_reassembly_timeout", Some(format!("{dropped} fragments")), out);
        }
        if now.since(self.last_tunnel_sweep) >= Interval::from_secs(60) {
            self.last_tunnel_sweep = now;
            let exp = self.cfg.tunnel_expiration;
            let old: Vec<_> =
                self.ip_tunnels.iter().filter(|(_, t)| now.since(t.last_seen) >= exp).map(|(k, _)| *k).collect();
            for k in old {
                if let Some(t) = self.ip_tunnels.remove(&k) {
                    out.push(tunnel_event(now, &t, k.2, "Tunnel::EXPIRE"));
                }
            }
        }
        self.drain_flows(out);
    }

    /// Ends the run: every open flow is logged.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        self.flows.flush(&mut self.flow_out);
        self.drain_flows(out);
        if let Some(r) = self.ring.as_mut() {
            r.finish();
        }
    }

    /// Ends the run in steps of at most `max` flows; returns false when no
    /// flow is left. Keeps the records of a huge table from piling up at once.
    pub fn finish_some(&mut self, max: usize, out: &mut Vec<Event>) -> bool {
        let n = self.flows.flush_some(max, &mut self.flow_out);
        self.drain_flows(out);
        n > 0
    }

    fn drain_flows(&mut self, out: &mut Vec<Event>) {
        if self.flow_out.weirds.is_empty() && self.flow_out.conns.is_empty() && self.flow_out.events.is_empty() {
            return;
        }
        out.append(&mut self.flow_out.events);
        for w in self.flow_out.weirds.drain(..) {
            let n = self.weird_counts.entry(w.name).or_insert(0);
            *n += 1;
            if !sampled(*n, self.cfg.weird_sampling_threshold, self.cfg.weird_sampling_rate) {
                self.counters.weirds_suppressed += 1;
                continue;
            }
            self.counters.weirds += 1;
            out.push(Event::Weird(WeirdRecord {
                ts: w.ts,
                uid: Some(w.uid),
                orig_h: Some(w.orig.0),
                orig_p: Some(w.orig.1),
                resp_h: Some(w.resp.0),
                resp_p: Some(w.resp.1),
                name: w.name,
                addl: None,
                notice: false,
                peer: self.cfg.sensor_name.clone(),
                source: None,
            }));
        }
        if let Some(r) = self.ring.as_mut() {
            for (rec, _) in &self.flow_out.conns {
                r.flow_ended(rec.uid);
            }
        }
        for (rec, reason) in self.flow_out.conns.drain(..) {
            if reason == EndReason::Evicted {
                self.counters.weirds += 1;
                out.push(Event::Weird(WeirdRecord {
                    ts: rec.ts,
                    uid: Some(rec.uid),
                    orig_h: Some(rec.orig_h),
                    orig_p: Some(rec.orig_p),
                    resp_h: Some(rec.resp_h),
                    resp_p: Some(rec.resp_p),
                    name: "flow_table_full_evicted",
                    addl: None,
                    notice: false,
                    peer: self.cfg.sensor_name.clone(),
                    source: Some("sensor"),
                }));
            }
            if let Some(kind) = self.udp_tunnels.remove(&rec.uid) {
                out.push(Event::Tunnel(TunnelRecord {
                    ts: rec.ts.plus(rec.duration.unwrap_or_default()),
                    uid: rec.uid,
                    orig_h: rec.orig_h,
                    orig_p: rec.orig_p,
                    resp_h: rec.resp_h,
                    resp_p: rec.resp_p,
                    tunnel_type: kind,
                    action: "Tunnel::CLOSE",
                }));
            }
            out.push(Event::Conn(rec));
        }
    }

    fn net_weird(&mut self, ts: Time, name: &'static str, addl: Option<String>, out: &mut Vec<Event>) {
        let n = self.weird_counts.entry(name).or_insert(0);
        *n += 1;
        if !sampled(*n, self.cfg.weird_sampling_threshold, self.cfg.weird_sampling_rate) {
            self.counters.weirds_suppressed += 1;
            return;
        }
        self.counters.weirds += 1;
        out.push(Event::Weird(WeirdRecord {
            ts,
            uid: None,
            orig_h: None,
            orig_p: None,
            resp_h: None,
            resp_p: None,
            name,
            addl,
            notice: false,
            peer: self.cfg.sensor_name.clone(),
            source: None,
        }));
    }

    fn malformed(&mut self, ts: Time, m: Malformed, out: &mut Vec<Event>) {
        self.counters.pkts_malformed += 1;
        self.net_weird(ts, m.weird_name(), None, out);
    }

    fn handle_ip(&mut self, ts: Time, data: &[u8], ctx: Ctx, out: &mut Vec<Event>) {
        let ip = match decode::parse_ip(data) {
            Ok(ip) => ip,
            Err(m) => return self.malformed(ts, m, out),
        };
        if self.cfg.verify_checksums && matches!(ip.src, IpAddr::V4(_)) {
            let ok = data.get(..ip.header_len).is_some_and(decode::ipv4_header_checksum_ok);
            if !ok {
                self.counters.pkts_bad_checksum += 1;
                return self.net_weird(ts, "bad_IP_checksum", None, out);
            }
        }
        if let Some(frag) = ip.fragment {
            self.counters.pkts_fragment += 1;
            let mut notes = decode::frag::FragNotes::default();
            let outcome = self.frags.push(ts, &ip, &frag, data, &mut notes);
            if notes.inconsistent {
                self.net_weird(ts, "fragment_inconsistency", Some(format!("{} > {}", ip.src, ip.dst)), out);
            } else if notes.overlap {
                self.net_weird(ts, "fragment_overlap", Some(format!("{} > {}", ip.src, ip.dst)), out);
            }
            if notes.evicted > 0 {
                self.net_weird(ts, "fragment_buffer_full", Some(format!("{} fragments dropped", notes.evicted)), out);
            }
            match outcome {
                FragOutcome::Held => {}
                FragOutcome::Dropped(name) => {
                    self.net_weird(ts, name, Some(format!("{} > {}", ip.src, ip.dst)), out);
                }
                FragOutcome::Complete(buf) => {
                    self.counters.fragments_reassembled += 1;
                    self.handle_ip(ts, &buf, ctx, out);
                }
            }
            return;
        }
        self.handle_datagram(ts, &ip, ctx, out);
    }

    fn handle_datagram(&mut self, ts: Time, ip: &IpView<'_>, ctx: Ctx, out: &mut Vec<Event>) {
        let transport = match ip.proto {
            decode::IPPROTO_TCP => match decode::parse_tcp(ip) {
                Ok(t) => Transport::Tcp(t),
                Err(m) => return self.malformed(ts, m, out),
            },
            decode::IPPROTO_UDP => match decode::parse_udp(ip) {
                Ok(u) => Transport::Udp { src_port: u.src_port, dst_port: u.dst_port, len: u.len },
                Err(m) => return self.malformed(ts, m, out),
            },
            decode::IPPROTO_ICMP | decode::IPPROTO_ICMPV6 => {
                match decode::parse_icmp(ip, ip.proto == decode::IPPROTO_ICMPV6) {
                    Ok(i) => Transport::Icmp(i),
                    Err(m) => return self.malformed(ts, m, out),
                }
            }
            decode::IPPROTO_GRE => return self.handle_gre(ts, ip, ctx, out),
            decode::IPPROTO_IPIP | decode::IPPROTO_IPV6 => {
                let Some(inner) = self.enter_ip_tunnel(ts, ip, TunnelKind::Ip, ctx, out) else {
                    return;
                };
                return self.handle_ip(ts, ip.payload, inner, out);
            }
            _ => Transport::Other { len: ip.payload_len },
        };
        let bad_checksum = self.cfg.verify_checksums && decode::transport_checksum_ok(ip) == Some(false);
        if bad_checksum {
            self.counters.pkts_bad_checksum += 1;
        }
        let meta = PacketMeta {
            ts,
            src: ip.src,
            dst: ip.dst,
            ip_proto: ip.proto,
            ip_len: ip.ip_len,
            transport,
            vlan: ctx.vlan,
            inner_vlan: ctx.inner_vlan,
            macs: ctx.macs,
            tunnel_parent: ctx.parent,
            bad_checksum,
        };
        self.counters.pkts_flow += 1;
        let obs = self.flows.observe(&meta, &mut self.flow_out);
        if let Some(r) = &self.ring {
            self.pkt_uids.push(obs.uid);
            // The frame's headers end where the innermost transport's
            // payload starts (a reassembled datagram is not in the frame).
            let at = ip.payload.as_ptr() as usize;
            let (start, len) = self.frame;
            if at >= start && at <= start + len {
                let l4 = match transport {
                    Transport::Tcp(_) => ip.payload.get(12).map_or(20, |b| usize::from(b >> 4) * 4),
                    Transport::Udp { .. } | Transport::Icmp(_) => 8,
                    Transport::Other { .. } => 0,
                };
                self.pkt_headers = Some((at - start + l4).min(len));
            }
            if let Some(nets) = &r.config().headers_only {
                self.pkt_private |= nets.contains(ip.src) || nets.contains(ip.dst);
            }
        }
        if bad_checksum {
            return;
        }
        if let Transport::Udp { src_port, dst_port, len } = transport {
            let payload = ip.payload.get(8..).unwrap_or(&[]);
            let tunnel = self.maybe_udp_tunnel(ts, ip, obs.uid, src_port, dst_port, ctx, out);
            // A datagram cut by the snap length is not handed on: the
            // analyzer would misread its end.
            if !tunnel && payload.len() as u32 == len && !payload.is_empty() {
                self.flows.udp_payload(&obs, ts, (src_port, dst_port), payload, &mut self.flow_out);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn maybe_udp_tunnel(
        &mut self,
        ts: Time,
        ip: &IpView<'_>,
        uid: FlowUid,
        sport: u16,
        dport: u16,
        ctx: Ctx,
        out: &mut Vec<Event>,
    ) -> bool {
        let payload = ip.payload.get(8..).unwrap_or(&[]);
        let is = |p: u16| sport == p || dport == p;
        let (kind, service, inner): (&'static str, &'static str, Option<InnerL2<'_>>) = if is(VXLAN_PORT) {
            ("Tunnel::VXLAN", "vxlan", vxlan_inner(payload))
        } else if is(GENEVE_PORT) {
            ("Tunnel::GENEVE", "geneve", geneve_inner(payload))
        } else if is(GTPU_PORT) {
            ("Tunnel::GTPv1", "gtpv1", gtpu_inner(payload))
        } else if is(TEREDO_PORT) {
            ("Tunnel::TEREDO", "teredo", teredo_inner(payload))
        } else {
            return false;
        };
        let Some(inner) = inner else { return false };
        if ctx.depth >= self.cfg.max_tunnel_depth {
            self.counters.pkts_tunnel_too_deep += 1;
            self.net_weird(ts, "exceeded_tunnel_max_depth", None, out);
            return true;
        }
        let (src, dst) = (ip.src, ip.dst);
        self.flows.set_service(uid, (src, sport), (dst, dport), decode::IPPROTO_UDP, service);
        if self.udp_tunnels.insert(uid, kind).is_none() {
            out.push(Event::Tunnel(TunnelRecord {
                ts,
                uid,
                orig_h: src,
                orig_p: sport,
                resp_h: dst,
                resp_p: dport,
                tunnel_type: kind,
                action: "Tunnel::DISCOVER",
            }));
        }
        // Addresses of the carrier's frame are not the inner hosts'.
        let mut inner_ctx = Ctx { parent: Some(uid), depth: ctx.depth + 1, macs: None, ..ctx };
        let bytes = match inner {
            InnerL2::Ip(b) => b,
            InnerL2::Ethernet(frame) => match decode_ethernet(frame) {
                Ok(v) => {
                    if v.vlan.is_some() {
                        inner_ctx.vlan = v.vlan;
                        inner_ctx.inner_vlan = v.inner_vlan;
                    }
                    match v.l3 {
                        L3::Ip(b) => b,
                        L3::NonIp(_) => {
                            self.counters.pkts_non_ip += 1;
                            return true;
                        }
                    }
                }
                Err(m) => {
                    self.malformed(ts, m, out);
                    return true;
                }
            },
        };
        self.handle_ip(ts, bytes, inner_ctx, out);
        true
    }

    fn enter_ip_tunnel(
        &mut self,
        ts: Time,
        ip: &IpView<'_>,
        kind: TunnelKind,
        ctx: Ctx,
        out: &mut Vec<Event>,
    ) -> Option<Ctx> {
        if ctx.depth >= self.cfg.max_tunnel_depth {
            self.counters.pkts_tunnel_too_deep += 1;
            self.net_weird(ts, "exceeded_tunnel_max_depth", None, out);
            return None;
        }
        let key = if ip.src <= ip.dst { (ip.src, ip.dst, kind) } else { (ip.dst, ip.src, kind) };
        if let Some(t) = self.ip_tunnels.get_mut(&key) {
            t.last_seen = ts;
            let uid = t.uid;
            return Some(Ctx { parent: Some(uid), depth: ctx.depth + 1, ..ctx });
        }
        if self.ip_tunnels.len() >= self.cfg.max_ip_tunnels.max(1) {
            // Full: the longest idle tunnel is logged as expired to make room.
            if let Some(oldest) = self.ip_tunnels.iter().min_by_key(|(_, t)| t.last_seen).map(|(k, _)| *k) {
                if let Some(t) = self.ip_tunnels.remove(&oldest) {
                    out.push(tunnel_event(ts, &t, oldest.2, "Tunnel::EXPIRE"));
                }
                self.net_weird(ts, "tunnel_table_full", None, out);
            }
        }
        let uid = self.flows.make_aux_uid(ip.src, ip.dst, ts, kind as u8);
        let t = IpTunnel { uid, orig: ip.src, resp: ip.dst, last_seen: ts };
        out.push(tunnel_event(ts, &t, kind, "Tunnel::DISCOVER"));
        self.ip_tunnels.insert(key, t);
        Some(Ctx { parent: Some(uid), depth: ctx.depth + 1, ..ctx })
    }

    fn handle_gre(&mut self, ts: Time, ip: &IpView<'_>, ctx: Ctx, out: &mut Vec<Event>) {
        let inner = match gre_inner(ip.payload) {
            Ok(Some(i)) => i,
            Ok(None) => {
                self.counters.pkts_non_ip += 1;
                return;
            }
            Err(m) => return self.malformed(ts, m, out),
        };
        let view = match decode::link::decode_gre_payload(inner.0, inner.1) {
            Ok(v) => v,
            Err(m) => return self.malformed(ts, m, out),
        };
        let L3::Ip(bytes) = view.l3 else {
            self.counters.pkts_non_ip += 1;
            return;
        };
        let Some(mut inner_ctx) = self.enter_ip_tunnel(ts, ip, TunnelKind::Gre, ctx, out) else {
            return;
        };
        if view.vlan.is_some() {
            inner_ctx.vlan = view.vlan;
            inner_ctx.inner_vlan = view.inner_vlan;
        }
        self.handle_ip(ts, bytes, inner_ctx, out);
    }
}

fn tunnel_event(ts: Time, t: &IpTunnel, kind: TunnelKind, action: &'static str) -> Event {
    Event::Tunnel(TunnelRecord {
        ts,
        uid: t.uid,
        orig_h: t.orig,
        orig_p: 0,
        resp_h: t.resp,
        resp_p: 0,
        tunnel_type: kind.name(),
        action,
    })
}

/// Zeek's weird sampling: the first `threshold` of a name, then one in `rate`.
fn sampled(n: u64, threshold: u64, rate: u64) -> bool {
    n <= threshold || (rate > 0 && n.is_multiple_of(rate))
}

enum InnerL2<'a> {
    Ip(&'a [u8]),
    Ethernet(&'a [u8]),
}

/// VXLAN (RFC 7348 5): 8-byte header with the I flag, then an Ethernet frame.
fn vxlan_inner(p: &[u8]) -> Option<InnerL2<'_>> {
    let h = p.get(..8)?;
    (h[0] & 0x08 != 0).then(|| InnerL2::Ethernet(&p[8..]))
}

/// Geneve (RFC 8926 3.4): version 0, options, then the announced protocol.
fn geneve_inner(p: &[u8]) -> Option<InnerL2<'_>> {
    let h = p.get(..8)?;
    if h[0] >> 6 != 0 {
        return None;
    }
    let opt = usize::from(h[0] & 0x3f) * 4;
    let body = p.get(8 + opt..)?;
    match u16::from_be_bytes([h[2], h[3]]) {
        0x6558 => Some(InnerL2::Ethernet(body)),
        0x0800 | 0x86dd => Some(InnerL2::Ip(body)),
        _ => None,
    }
}

/// GTP-U version 1 (3GPP TS 29.281 5): G-PDU messages carry a user IP packet.
fn gtpu_inner(p: &[u8]) -> Option<InnerL2<'_>> {
    let h = p.get(..8)?;
    if h[0] >> 5 != 1 || h[0] & 0x10 == 0 || h[1] != 0xff {
        return None;
    }
    let mut off = 8;
    if h[0] & 0x07 != 0 {
        // Sequence number, N-PDU number and next extension header type.
        let opt = p.get(8..12)?;
        off = 12;
        let mut next = opt[3];
        let mut guard = 0;
        while next != 0 {
            let len = usize::from(*p.get(off)?) * 4;
            if len == 0 {
                return None;
            }
            next = *p.get(off + len - 1)?;
            off += len;
            guard += 1;
            if guard > 16 {
                return None;
            }
        }
    }
    let body = p.get(off..)?;
    matches!(body.first().map(|b| b >> 4), Some(4) | Some(6)).then_some(InnerL2::Ip(body))
}

/// Teredo (RFC 4380 5.1.1): optional authentication and origin indications,
/// then an IPv6 packet whose length matches what is left.
fn teredo_inner(p: &[u8]) -> Option<InnerL2<'_>> {
    let mut off = 0;
    if p.get(..2)? == [0, 1] {
        let id_len = usize::from(*p.get(2)?);
        let auth_len = usize::from(*p.get(3)?);
        off += 4 + id_len + auth_len + 9;
    }
    if p.get(off..off + 2)? == [0, 0] {
        off += 8;
    }
    let body = p.get(off..)?;
    let h = body.get(..40)?;
    if h[0] >> 4 != 6 {
        return None;
    }
    let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
    (plen + 40 == body.len()).then_some(InnerL2::Ip(body))
}

/// GRE (RFC 2784, RFC 2890, PPTP's enhanced GRE of RFC 2637 4.1, ERSPAN):
/// returns the protocol type and the payload, or `None` for payloads we do
/// not follow.
fn gre_inner(p: &[u8]) -> Result<Option<(u16, &[u8])>, Malformed> {
    let h = p.get(..4).ok_or(Malformed::Truncated("truncated_GRE"))?;
    let (flags, version) = (h[0], h[1] & 0x07);
    let proto = u16::from_be_bytes([h[2], h[3]]);
    let (csum, routing, key, seq) = (flags & 0x80 != 0, flags & 0x40 != 0, flags & 0x20 != 0, flags & 0x10 != 0);
    let mut off = 4;
    match version {
        0 => {
            if routing {
                return Err(Malformed::Bad("gre_routing_unsupported"));
            }
            if csum {
                off += 4;
            }
            if key {
                off += 4;
            }
            if seq {
                off += 4;
            }
        }
        1 => {
            // Enhanced GRE: key (payload length + call id) always present,
            // sequence and acknowledgement optional.
            if proto != 0x880b || !key {
                return Err(Malformed::Bad("bad_enhanced_GRE"));
            }
            off += 4;
            if seq {
                off += 4;
            }
            if h[1] & 0x80 != 0 {
                off += 4;
            }
        }
        _ => return Err(Malformed::Bad("unknown_gre_version")),
    }
    let body = p.get(off..).ok_or(Malformed::Truncated("truncated_GRE"))?;
    match proto {
        // ERSPAN type II (with sequence number): 8-byte header; type I has none.
        0x88be => {
            let skip = if seq { 8 } else { 0 };
            Ok(body.get(skip..).map(|b| (link::ETH_TEB, b)))
        }
        // ERSPAN type III: 12-byte header, plus 8 when the O flag is set.
        0x22eb => {
            let h3 = body.get(..12).ok_or(Malformed::Truncated("truncated_ERSPAN"))?;
            let skip = if h3[11] & 0x01 != 0 { 20 } else { 12 };
            Ok(body.get(skip..).map(|b| (link::ETH_TEB, b)))
        }
        0x0800 | 0x86dd | 0x6558 | 0x880b | 0x8847 => Ok(Some((proto, body))),
        _ => Ok(None),
    }
}

use crate::decode::link;

#[cfg(test)]
mod tests {
    use super::*;
    use pcapgen::{eth, TcpSession, ACK, ETH_IPV4, PSH, SYN};

    fn run(budget: usize) -> WorkerCounters {
        let mut cfg = WorkerConfig::default();
        cfg.flow.stream_memory = budget;
        let mut w = Worker::new(cfg);
        let mut out = Vec::new();
        let (c, s) = ("10.0.0.1".parse().unwrap(), "10.0.0.80".parse().unwrap());
        let mut x = TcpSession::new(c, 40000, s, 80, 100, 900);
        let mut t = 1_700_000_000_000_000;
        let mut send = |w: &mut Worker, ip: Vec<u8>| {
            t += 1000;
            w.process(Time(t), LinkType::Ethernet, &eth(ETH_IPV4, &ip), &mut out);
        };
        send(&mut w, x.seg(true, SYN, &[]));
        send(&mut w, x.seg(false, SYN | ACK, &[]));
        send(&mut w, x.seg(true, ACK, &[]));
        let start = x.cseq;
        // The second half of the request arrives first.
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        send(&mut w, x.seg_at(true, start.wrapping_add(10), PSH | ACK, &req[10..]));
        let held = w.counters().reassembly_held_bytes;
        send(&mut w, x.seg_at(true, start, PSH | ACK, &req[..10]));
        let mut c = w.counters();
        c.reassembly_held_bytes = held;
        w.finish(&mut out);
        c
    }

    #[test]
    fn reassembly_budget_forces_gaps_and_is_released() {
        let roomy = run(1 << 20);
        assert_eq!(roomy.reassembly_forced_gaps, 0);
        assert_eq!(roomy.reassembly_held_bytes, 17);
        let full = run(0);
        assert_eq!(full.reassembly_forced_gaps, 1);
        assert_eq!(full.reassembly_held_bytes, 0);
    }
}

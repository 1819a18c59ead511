//! The field catalog: every log and field, with its type and meaning.
//!
//! Stores and the console derive their schemas from this table; a test keeps it
//! in step with the record types.

/// Logical type of a field, independent of any store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Time,
    Interval,
    String,
    Addr,
    Port,
    Count,
    Bool,
    /// A set of strings (`tunnel_parents`).
    StringSet,
}

#[derive(Clone, Copy, Debug)]
pub struct FieldDef {
    pub path: &'static str,
    pub ty: FieldType,
    pub doc: &'static str,
}

#[derive(Clone, Copy, Debug)]
pub struct LogDef {
    pub name: &'static str,
    pub fields: &'static [FieldDef],
}

const fn f(path: &'static str, ty: FieldType, doc: &'static str) -> FieldDef {
    FieldDef { path, ty, doc }
}

use FieldType::*;

pub const CATALOG: &[LogDef] = &[
    LogDef {
        name: "conn",
        fields: &[
            f("ts", Time, "time of the first packet"),
            f("uid", String, "connection identifier, shared by every log about this connection"),
            f("id.orig_h", Addr, "originator address"),
            f("id.orig_p", Port, "originator port (ICMP: message type)"),
            f("id.resp_h", Addr, "responder address"),
            f("id.resp_p", Port, "responder port (ICMP: counterpart type or code)"),
            f("proto", String, "transport protocol: tcp, udp, icmp or unknown_transport"),
            f("service", String, "protocols confirmed on the connection, comma-separated"),
            f("duration", Interval, "last minus first packet time; unset when zero"),
            f("orig_bytes", Count, "originator payload bytes (TCP: from sequence numbers)"),
            f("resp_bytes", Count, "responder payload bytes (TCP: from sequence numbers)"),
            f("conn_state", String, "Zeek connection state (S0, S1, SF, REJ, ...)"),
            f("local_orig", Bool, "originator is in a local network"),
            f("local_resp", Bool, "responder is in a local network"),
            f("missed_bytes", Count, "bytes lost in TCP content gaps"),
            f("history", String, "state history letters; upper case for the originator"),
            f("orig_pkts", Count, "packets sent by the originator"),
            f("orig_ip_bytes", Count, "IP-level bytes sent by the originator"),
            f("resp_pkts", Count, "packets sent by the responder"),
            f("resp_ip_bytes", Count, "IP-level bytes sent by the responder"),
            f("tunnel_parents", StringSet, "uids of the tunnels that carried this connection"),
            f("ip_proto", Count, "IP protocol number"),
            f("vlan", Count, "outer 802.1Q VLAN id"),
            f("inner_vlan", Count, "inner 802.1Q VLAN id (QinQ)"),
            f("community_id", String, "Community ID v1 flow hash"),
        ],
    },
    LogDef {
        name: "weird",
        fields: &[
            f("ts", Time, "time of the event"),
            f("uid", String, "connection the event belongs to, if any"),
            f("id.orig_h", Addr, "originator address"),
            f("id.orig_p", Port, "originator port"),
            f("id.resp_h", Addr, "responder address"),
            f("id.resp_p", Port, "responder port"),
            f("name", String, "what was unusual"),
            f("addl", String, "details"),
            f("notice", Bool, "whether a notice was raised"),
            f("peer", String, "sensor that saw it"),
            f("source", String, "layer that reported it (IP, TCP, sensor, ...)"),
        ],
    },
    LogDef {
        name: "tunnel",
        fields: &[
            f("ts", Time, "time of the action"),
            f("uid", String, "tunnel identifier, listed in tunnel_parents of inner connections"),
            f("id.orig_h", Addr, "tunnel originator address"),
            f("id.orig_p", Port, "tunnel originator port (0 for IP-level tunnels)"),
            f("id.resp_h", Addr, "tunnel responder address"),
            f("id.resp_p", Port, "tunnel responder port (0 for IP-level tunnels)"),
            f("tunnel_type", String, "Tunnel::GRE, Tunnel::VXLAN, ..."),
            f("action", String, "Tunnel::DISCOVER, Tunnel::CLOSE or Tunnel::EXPIRE"),
        ],
    },
    LogDef {
        name: "dns",
        fields: &[
            f("ts", Time, "time of the query (or of the reply when no query was seen)"),
            f("uid", String, "connection the exchange belongs to"),
            f("id.orig_h", Addr, "client address"),
            f("id.orig_p", Port, "client port"),
            f("id.resp_h", Addr, "server address"),
            f("id.resp_p", Port, "server port"),
            f("proto", String, "udp or tcp"),
            f("trans_id", Count, "DNS transaction id"),
            f("rtt", Interval, "time from the query to its reply, when the reply had answers"),
            f("query", String, "queried name, lower case"),
            f("qclass", Count, "query class"),
            f("qclass_name", String, "query class name"),
            f("qtype", Count, "query type"),
            f("qtype_name", String, "query type name"),
            f("rcode", Count, "response code"),
            f("rcode_name", String, "response code name"),
            f("AA", Bool, "authoritative answer"),
            f("TC", Bool, "truncated"),
            f("RD", Bool, "recursion desired (from the query)"),
            f("RA", Bool, "recursion available"),
            f("Z", Count, "reserved header bits"),
            f("answers", StringSet, "answer data: addresses, names, TXT strings"),
            f("TTLs", StringSet, "TTL of each answer, in seconds"),
            f("rejected", Bool, "the server answered with no records"),
            f("opcode", Count, "DNS opcode"),
            f("opcode_name", String, "DNS opcode name"),
        ],
    },
    LogDef {
        name: "ssh",
        fields: &[
            f("ts", Time, "time of the first version string"),
            f("uid", String, "connection"),
            f("id.orig_h", Addr, "client address"),
            f("id.orig_p", Port, "client port"),
            f("id.resp_h", Addr, "server address"),
            f("id.resp_p", Port, "server port"),
            f("version", Count, "SSH major version (0 when client and server disagree)"),
            f("auth_success", Bool, "authentication outcome, when it can be told"),
            f("auth_attempts", Count, "authentication attempts seen"),
            f("direction", String, "INBOUND or OUTBOUND when exactly one side is local"),
            f("client", String, "client version string"),
            f("server", String, "server version string"),
            f("cipher_alg", String, "negotiated cipher"),
            f("mac_alg", String, "negotiated MAC"),
            f("compression_alg", String, "negotiated compression"),
            f("kex_alg", String, "negotiated key exchange"),
            f("host_key_alg", String, "negotiated host key algorithm"),
            f("host_key", String, "MD5 fingerprint of the server host key"),
            f("hasshVersion", String, "HASSH version"),
            f("hassh", String, "HASSH of the client"),
            f("hasshAlgorithms", String, "the client algorithms HASSH hashes"),
            f("hasshServer", String, "HASSH of the server"),
            f("hasshServerAlgorithms", String, "the server algorithms HASSH hashes"),
            f("cshka", String, "client's host key algorithms"),
            f("sshka", String, "server's host key algorithms"),
        ],
    },
    LogDef {
        name: "http",
        fields: &[
            f("ts", Time, "time of the request"),
            f("uid", String, "connection"),
            f("id.orig_h", Addr, "client address"),
            f("id.orig_p", Port, "client port"),
            f("id.resp_h", Addr, "server address"),
            f("id.resp_p", Port, "server port"),
            f("trans_depth", Count, "position of the request in the connection"),
            f("method", String, "request method"),
            f("host", String, "Host header"),
            f("uri", String, "request target"),
            f("referrer", String, "Referer header"),
            f("version", String, "HTTP version of the reply"),
            f("user_agent", String, "User-Agent header"),
            f("origin", String, "Origin header"),
            f("request_body_len", Count, "request body bytes after transfer decoding"),
            f("response_body_len", Count, "response body bytes after transfer and content decoding"),
            f("status_code", Count, "final status code"),
            f("status_msg", String, "final status message"),
            f("info_code", Count, "last 1xx status code"),
            f("info_msg", String, "last 1xx status message"),
            f("tags", StringSet, "indicators set by analysis"),
            f("username", String, "user name from Basic authentication"),
            f("orig_mime_types", StringSet, "MIME types sniffed from the request body"),
            f("resp_mime_types", StringSet, "MIME types sniffed from the response body"),
        ],
    },
    LogDef {
        name: "ssl",
        fields: &[
            f("ts", Time, "time of the ClientHello"),
            f("uid", String, "connection"),
            f("id.orig_h", Addr, "client address"),
            f("id.orig_p", Port, "client port"),
            f("id.resp_h", Addr, "server address"),
            f("id.resp_p", Port, "server port"),
            f("version", String, "negotiated version (TLSv12, TLSv13, ...)"),
            f("cipher", String, "negotiated cipher suite"),
            f("curve", String, "key exchange group"),
            f("server_name", String, "SNI host name"),
            f("resumed", Bool, "the session was resumed"),
            f("last_alert", String, "last alert seen in clear"),
            f("next_protocol", String, "ALPN protocol chosen by the server"),
            f("established", Bool, "the handshake completed"),
            f("subject", String, "subject of the server's leaf certificate"),
            f("issuer", String, "issuer of the server's leaf certificate"),
            f("ja3", String, "JA3 of the ClientHello"),
            f("ja3s", String, "JA3S of the ServerHello"),
            f("ja4", String, "JA4 of the ClientHello"),
            f("ja4s", String, "JA4S of the ServerHello"),
        ],
    },
    LogDef {
        name: "ntp",
        fields: &[
            f("ts", Time, "time of the message"),
            f("uid", String, "connection"),
            f("id.orig_h", Addr, "client address"),
            f("id.orig_p", Port, "client port"),
            f("id.resp_h", Addr, "server address"),
            f("id.resp_p", Port, "server port"),
            f("version", Count, "NTP version"),
            f("mode", Count, "association mode (3 client, 4 server, ...)"),
            f("stratum", Count, "distance from the reference clock"),
            f("poll", Interval, "maximum interval between messages"),
            f("precision", Interval, "precision of the sender's clock"),
            f("root_delay", Interval, "round-trip delay to the reference clock"),
            f("root_disp", Interval, "dispersion to the reference clock"),
            f("ref_id", String, "reference clock code or address"),
            f("ref_time", Time, "when the clock was last set"),
            f("org_time", Time, "origin timestamp"),
            f("rec_time", Time, "receive timestamp"),
            f("xmt_time", Time, "transmit timestamp"),
            f("num_exts", Count, "extension fields"),
        ],
    },
    LogDef {
        name: "stats",
        fields: &[
            f("ts", Time, "time of the report"),
            f("peer", String, "sensor"),
            f("pkts_read", Count, "packets read from the source"),
            f("bytes_read", Count, "wire bytes of those packets"),
            f("pkts_dropped_kernel", Count, "packets dropped by the kernel"),
            f("pkts_dropped_iface", Count, "packets dropped by the interface"),
            f("pkts_flow", Count, "packets that reached a flow"),
            f("pkts_non_ip", Count, "non-IP packets skipped"),
            f("pkts_malformed", Count, "malformed packets skipped"),
            f("pkts_fragment", Count, "IP fragments taken into reassembly"),
            f("pkts_bad_checksum", Count, "packets skipped for a bad checksum"),
            f("fragments_reassembled", Count, "datagrams rebuilt from fragments"),
            f("fragments_dropped", Count, "fragments dropped by a cap or a timeout"),
            f("flows_created", Count, "flows created"),
            f("flows_expired", Count, "flows ended by a timeout or a close"),
            f("flows_evicted", Count, "flows ended early because the flow table was full"),
            f("flows_flushed", Count, "flows ended by the end of the capture"),
            f("flows_active", Count, "flows open at the time of the report"),
            f("weirds", Count, "weird.log records written"),
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::CATALOG;
    use crate::{
        ConnRecord, DnsRecord, Event, FlowUid, HttpRecord, Interval, NtpRecord, SshRecord, SslRecord, StatsRecord,
        Time, TunnelRecord, WeirdRecord,
    };
    use std::net::IpAddr;

    fn keys(v: &serde_json::Value) -> Vec<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    fn log(name: &str) -> Vec<&'static str> {
        CATALOG.iter().find(|l| l.name == name).unwrap().fields.iter().map(|f| f.path).collect()
    }

    /// Every field a fully populated record writes is in the catalog, and the
    /// catalog lists nothing the record cannot write.
    #[test]
    fn catalog_matches_records() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let conn = Event::Conn(ConnRecord {
            ts: Time(1),
            uid: FlowUid::new(1),
            orig_h: a,
            orig_p: 1,
            resp_h: a,
            resp_p: 2,
            proto: "tcp",
            service: Some("http".into()),
            duration: Some(Interval(1)),
            orig_bytes: Some(1),
            resp_bytes: Some(1),
            conn_state: "SF",
            local_orig: true,
            local_resp: true,
            missed_bytes: 0,
            history: Some("ShADadFf".into()),
            orig_pkts: 1,
            orig_ip_bytes: 1,
            resp_pkts: 1,
            resp_ip_bytes: 1,
            tunnel_parents: vec![FlowUid::new(2)],
            ip_proto: 6,
            vlan: Some(1),
            inner_vlan: Some(2),
            community_id: Some("1:x".into()),
        });
        let weird = Event::Weird(WeirdRecord {
            ts: Time(1),
            uid: Some(FlowUid::new(1)),
            orig_h: Some(a),
            orig_p: Some(1),
            resp_h: Some(a),
            resp_p: Some(1),
            name: "x",
            addl: Some("y".into()),
            notice: false,
            peer: "s".into(),
            source: Some("IP"),
        });
        let tunnel = Event::Tunnel(TunnelRecord {
            ts: Time(1),
            uid: FlowUid::new(1),
            orig_h: a,
            orig_p: 0,
            resp_h: a,
            resp_p: 0,
            tunnel_type: "Tunnel::GRE",
            action: "Tunnel::DISCOVER",
        });
        let stats = Event::Stats(StatsRecord { pkts_dropped_iface: Some(0), ..Default::default() });
        let dns = Event::Dns(DnsRecord {
            ts: Time(1),
            uid: FlowUid::new(1),
            orig_h: a,
            orig_p: 1,
            resp_h: a,
            resp_p: 53,
            proto: "udp",
            trans_id: 1,
            rtt: Some(Interval(1)),
            query: Some("a".into()),
            qclass: Some(1),
            qclass_name: Some("C_INTERNET".into()),
            qtype: Some(1),
            qtype_name: Some("A".into()),
            rcode: Some(0),
            rcode_name: Some("NOERROR".into()),
            aa: false,
            tc: false,
            rd: true,
            ra: true,
            z: 0,
            answers: Some(vec!["10.0.0.1".into()]),
            ttls: Some(vec![Interval(1)]),
            rejected: false,
            opcode: 0,
            opcode_name: "query",
        });
        let s = || Some("x".to_string());
        let ssh = Event::Ssh(SshRecord {
            ts: Time(1),
            uid: FlowUid::new(1),
            orig_h: a,
            orig_p: 1,
            resp_h: a,
            resp_p: 22,
            version: Some(2),
            auth_success: Some(true),
            auth_attempts: 1,
            direction: Some("INBOUND"),
            client: s(),
            server: s(),
            cipher_alg: s(),
            mac_alg: s(),
            compression_alg: s(),
            kex_alg: s(),
            host_key_alg: s(),
            host_key: s(),
            hassh_version: Some("1.1"),
            hassh: s(),
            hassh_algorithms: s(),
            hassh_server: s(),
            hassh_server_algorithms: s(),
            cshka: s(),
            sshka: s(),
        });
        let http = Event::Http(HttpRecord {
            ts: Time(1),
            uid: FlowUid::new(1),
            orig_h: a,
            orig_p: 1,
            resp_h: a,
            resp_p: 80,
            trans_depth: 1,
            method: s(),
            host: s(),
            uri: s(),
            referrer: s(),
            version: s(),
            user_agent: s(),
            origin: s(),
            request_body_len: 0,
            response_body_len: 1,
            status_code: Some(200),
            status_msg: s(),
            info_code: Some(100),
            info_msg: s(),
            tags: vec![],
            username: s(),
            orig_mime_types: Some(vec![]),
            resp_mime_types: Some(vec![]),
        });
        let ssl = Event::Ssl(SslRecord {
            ts: Time(1),
            uid: FlowUid::new(1),
            orig_h: a,
            orig_p: 1,
            resp_h: a,
            resp_p: 443,
            version: s(),
            cipher: s(),
            curve: s(),
            server_name: s(),
            resumed: false,
            last_alert: s(),
            next_protocol: s(),
            established: true,
            subject: s(),
            issuer: s(),
            ja3: s(),
            ja3s: s(),
            ja4: s(),
            ja4s: s(),
        });
        let ntp = Event::Ntp(NtpRecord {
            ts: Time(1),
            uid: FlowUid::new(1),
            orig_h: a,
            orig_p: 123,
            resp_h: a,
            resp_p: 123,
            version: 4,
            mode: 3,
            stratum: 2,
            poll: Interval(1),
            precision: Interval(1),
            root_delay: Interval(1),
            root_disp: Interval(1),
            ref_id: "x".into(),
            ref_time: Time(1),
            org_time: Time(1),
            rec_time: Time(1),
            xmt_time: Time(1),
            num_exts: 0,
        });
        for ev in [conn, weird, tunnel, stats, dns, ssh, http, ssl, ntp] {
            let v = serde_json::to_value(&ev).unwrap();
            let mut got = keys(&v);
            let mut want: Vec<String> = log(ev.log_name()).iter().map(|s| s.to_string()).collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "log {}", ev.log_name());
        }
    }
}

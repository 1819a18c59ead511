use crate::{FlowUid, Interval, Time};
use serde::Serialize;
use std::borrow::Cow;
use std::net::IpAddr;

/// One finished (or flushed) connection: a line of Zeek's `conn.log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConnRecord {
    pub ts: Time,
    pub uid: FlowUid,
    #[serde(rename = "id.orig_h")]
    pub orig_h: IpAddr,
    #[serde(rename = "id.orig_p")]
    pub orig_p: u16,
    #[serde(rename = "id.resp_h")]
    pub resp_h: IpAddr,
    #[serde(rename = "id.resp_p")]
    pub resp_p: u16,
    /// `tcp`, `udp`, `icmp` or `unknown_transport`.
    pub proto: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<Interval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resp_bytes: Option<u64>,
    pub conn_state: &'static str,
    pub local_orig: bool,
    pub local_resp: bool,
    pub missed_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
    pub orig_pkts: u64,
    pub orig_ip_bytes: u64,
    pub resp_pkts: u64,
    pub resp_ip_bytes: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tunnel_parents: Vec<FlowUid>,
    pub ip_proto: u8,
    /// Originator's MAC address (Zeek's `mac-logging` policy), when seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_l2_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resp_l2_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inner_vlan: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community_id: Option<String>,
}

/// Something unusual in the traffic or in the sensor itself: a line of
/// Zeek's `weird.log`. Malformed input is data, recorded here, never an error.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WeirdRecord {
    pub ts: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<FlowUid>,
    #[serde(rename = "id.orig_h", skip_serializing_if = "Option::is_none")]
    pub orig_h: Option<IpAddr>,
    #[serde(rename = "id.orig_p", skip_serializing_if = "Option::is_none")]
    pub orig_p: Option<u16>,
    #[serde(rename = "id.resp_h", skip_serializing_if = "Option::is_none")]
    pub resp_h: Option<IpAddr>,
    #[serde(rename = "id.resp_p", skip_serializing_if = "Option::is_none")]
    pub resp_p: Option<u16>,
    pub name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addl: Option<String>,
    pub notice: bool,
    pub peer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
}

/// A tunnel seen or closed: a line of Zeek's `tunnel.log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TunnelRecord {
    pub ts: Time,
    pub uid: FlowUid,
    #[serde(rename = "id.orig_h")]
    pub orig_h: IpAddr,
    #[serde(rename = "id.orig_p")]
    pub orig_p: u16,
    #[serde(rename = "id.resp_h")]
    pub resp_h: IpAddr,
    #[serde(rename = "id.resp_p")]
    pub resp_p: u16,
    /// `Tunnel::GRE`, `Tunnel::VXLAN`, ...
    pub tunnel_type: &'static str,
    /// `Tunnel::DISCOVER`, `Tunnel::CLOSE` or `Tunnel::EXPIRE`.
    pub action: &'static str,
}

/// One DNS query and its response: a line of Zeek's `dns.log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DnsRecord {
    pub ts: Time,
    pub uid: FlowUid,
    #[serde(rename = "id.orig_h")]
    pub orig_h: IpAddr,
    #[serde(rename = "id.orig_p")]
    pub orig_p: u16,
    #[serde(rename = "id.resp_h")]
    pub resp_h: IpAddr,
    #[serde(rename = "id.resp_p")]
    pub resp_p: u16,
    /// `udp` or `tcp`.
    pub proto: &'static str,
    pub trans_id: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt: Option<Interval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qclass: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qclass_name: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qtype: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qtype_name: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcode: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcode_name: Option<Cow<'static, str>>,
    #[serde(rename = "AA")]
    pub aa: bool,
    #[serde(rename = "TC")]
    pub tc: bool,
    #[serde(rename = "RD")]
    pub rd: bool,
    #[serde(rename = "RA")]
    pub ra: bool,
    #[serde(rename = "Z")]
    pub z: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answers: Option<Vec<String>>,
    #[serde(rename = "TTLs", skip_serializing_if = "Option::is_none")]
    pub ttls: Option<Vec<Interval>>,
    pub rejected: bool,
    pub opcode: u8,
    pub opcode_name: &'static str,
}

/// One SSH session: a line of Zeek's `ssh.log`, with the HASSH fields of
/// the widely used hassh package.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SshRecord {
    pub ts: Time,
    pub uid: FlowUid,
    #[serde(rename = "id.orig_h")]
    pub orig_h: IpAddr,
    #[serde(rename = "id.orig_p")]
    pub orig_p: u16,
    #[serde(rename = "id.resp_h")]
    pub resp_h: IpAddr,
    #[serde(rename = "id.resp_p")]
    pub resp_p: u16,
    /// SSH major version (1 or 2; 0 when the two sides disagree).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_success: Option<bool>,
    pub auth_attempts: u32,
    /// `INBOUND` or `OUTBOUND` when exactly one side is local.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher_alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kex_alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_key_alg: Option<String>,
    /// MD5 of the server's host key, as colon-separated hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// SHA-256 of the server host key in OpenSSH's notation (`SHA256:` and
    /// base64), cut to 32 characters as newer Zeek writes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_key_fingerprint: Option<String>,
    #[serde(rename = "hasshVersion", skip_serializing_if = "Option::is_none")]
    pub hassh_version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hassh: Option<String>,
    #[serde(rename = "hasshAlgorithms", skip_serializing_if = "Option::is_none")]
    pub hassh_algorithms: Option<String>,
    #[serde(rename = "hasshServer", skip_serializing_if = "Option::is_none")]
    pub hassh_server: Option<String>,
    #[serde(rename = "hasshServerAlgorithms", skip_serializing_if = "Option::is_none")]
    pub hassh_server_algorithms: Option<String>,
    /// The client's server-host-key algorithms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cshka: Option<String>,
    /// The server's host-key algorithms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sshka: Option<String>,
}

/// One HTTP request and its response: a line of Zeek's `http.log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HttpRecord {
    pub ts: Time,
    pub uid: FlowUid,
    #[serde(rename = "id.orig_h")]
    pub orig_h: IpAddr,
    #[serde(rename = "id.orig_p")]
    pub orig_p: u16,
    #[serde(rename = "id.resp_h")]
    pub resp_h: IpAddr,
    #[serde(rename = "id.resp_p")]
    pub resp_p: u16,
    /// Position of the request in its connection, from 1.
    pub trans_depth: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    /// The reply's HTTP version (the request's when there was no reply).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    pub request_body_len: u64,
    pub response_body_len: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_msg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info_msg: Option<String>,
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_fuids: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orig_mime_types: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resp_fuids: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resp_mime_types: Option<Vec<String>>,
}

/// One TLS session: a line of Zeek's `ssl.log`, with the fingerprints of the
/// widely used ja3 and ja4 packages.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SslRecord {
    pub ts: Time,
    pub uid: FlowUid,
    #[serde(rename = "id.orig_h")]
    pub orig_h: IpAddr,
    #[serde(rename = "id.orig_p")]
    pub orig_p: u16,
    #[serde(rename = "id.resp_h")]
    pub resp_h: IpAddr,
    #[serde(rename = "id.resp_p")]
    pub resp_p: u16,
    /// `TLSv12`, `TLSv13`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub curve: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    pub resumed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_alert: Option<String>,
    /// The ALPN protocol the server chose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_protocol: Option<String>,
    pub established: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja3: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja3s: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja4s: Option<String>,
}

/// One NTP message: a line of Zeek's `ntp.log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NtpRecord {
    pub ts: Time,
    pub uid: FlowUid,
    #[serde(rename = "id.orig_h")]
    pub orig_h: IpAddr,
    #[serde(rename = "id.orig_p")]
    pub orig_p: u16,
    #[serde(rename = "id.resp_h")]
    pub resp_h: IpAddr,
    #[serde(rename = "id.resp_p")]
    pub resp_p: u16,
    pub version: u8,
    pub mode: u8,
    pub stratum: u8,
    /// Maximum interval between messages.
    pub poll: Interval,
    /// Precision of the sender's clock.
    pub precision: Interval,
    pub root_delay: Interval,
    pub root_disp: Interval,
    /// Reference clock: a 4-character code at stratum 0 and 1, else an address.
    pub ref_id: String,
    pub ref_time: Time,
    pub org_time: Time,
    pub rec_time: Time,
    pub xmt_time: Time,
    pub num_exts: u32,
}

/// One DHCP transaction (the messages sharing a transaction id within a
/// short time, over any number of connections): a line of Zeek's `dhcp.log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DhcpRecord {
    /// The first message.
    pub ts: Time,
    /// Every connection that carried a message of the transaction.
    pub uids: Vec<FlowUid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<IpAddr>,
    /// The server that handed out an address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_addr: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    /// The client's vendor class identifier (option 60), as Zeek's DHCP
    /// software policy logs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_software: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_fqdn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_addr: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_addr: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_time: Option<Interval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_message: Option<String>,
    pub msg_types: Vec<&'static str>,
    /// From the first message to the last.
    pub duration: Interval,
}

/// One QUIC connection as its Initial packets show it: a line of Zeek's
/// `quic.log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QuicRecord {
    pub ts: Time,
    pub uid: FlowUid,
    #[serde(rename = "id.orig_h")]
    pub orig_h: IpAddr,
    #[serde(rename = "id.orig_p")]
    pub orig_p: u16,
    #[serde(rename = "id.resp_h")]
    pub resp_h: IpAddr,
    #[serde(rename = "id.resp_p")]
    pub resp_p: u16,
    /// `1`, `quicv2`, `draft-29`, or the number in hex.
    pub version: String,
    pub client_initial_dcid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_scid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_scid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The first ALPN value the client offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_protocol: Option<String>,
}

/// One FTP command and its final reply: a line of Zeek's `ftp.log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FtpRecord {
    pub ts: Time,
    pub uid: FlowUid,
    #[serde(rename = "id.orig_h")]
    pub orig_h: IpAddr,
    #[serde(rename = "id.orig_p")]
    pub orig_p: u16,
    #[serde(rename = "id.resp_h")]
    pub resp_h: IpAddr,
    #[serde(rename = "id.resp_p")]
    pub resp_p: u16,
    pub user: String,
    /// Logged for anonymous (guest) logins only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    pub command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_msg: Option<String>,
    #[serde(rename = "data_channel.passive", skip_serializing_if = "Option::is_none")]
    pub dc_passive: Option<bool>,
    #[serde(rename = "data_channel.orig_h", skip_serializing_if = "Option::is_none")]
    pub dc_orig_h: Option<IpAddr>,
    #[serde(rename = "data_channel.resp_h", skip_serializing_if = "Option::is_none")]
    pub dc_resp_h: Option<IpAddr>,
    #[serde(rename = "data_channel.resp_p", skip_serializing_if = "Option::is_none")]
    pub dc_resp_p: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuid: Option<String>,
}

/// One file seen on the wire: a line of Zeek's `files.log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FilesRecord {
    pub ts: Time,
    /// File identifier (`F...`), listed by the protocol log that carried it.
    pub fuid: String,
    pub uid: FlowUid,
    #[serde(rename = "id.orig_h")]
    pub orig_h: IpAddr,
    #[serde(rename = "id.orig_p")]
    pub orig_p: u16,
    #[serde(rename = "id.resp_h")]
    pub resp_h: IpAddr,
    #[serde(rename = "id.resp_p")]
    pub resp_p: u16,
    /// `HTTP`, `FTP_DATA`, `SMTP`, ...
    pub source: &'static str,
    /// Position of the file in its protocol session (HTTP: trans_depth).
    pub depth: u32,
    pub analyzers: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    pub duration: Interval,
    pub local_orig: bool,
    /// The originator of the connection sent the file.
    pub is_orig: bool,
    pub seen_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    pub missing_bytes: u64,
    pub overflow_bytes: u64,
    pub timedout: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Name of the extracted copy under the log directory's `extract_files/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extracted: Option<String>,
    /// The copy stops short of the file (the size cap was reached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extracted_cutoff: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extracted_size: Option<u64>,
    /// The file's bytes, up to the extraction cap, when extraction is on.
    /// Never logged: the log writer stores them and later stages (content
    /// scanning) read them from here, so they are copied out of the
    /// protocol stream once.
    #[serde(skip)]
    pub content: Option<Vec<u8>>,
}

/// One SMTP transaction: a line of Zeek's `smtp.log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SmtpRecord {
    pub ts: Time,
    pub uid: FlowUid,
    #[serde(rename = "id.orig_h")]
    pub orig_h: IpAddr,
    #[serde(rename = "id.orig_p")]
    pub orig_p: u16,
    #[serde(rename = "id.resp_h")]
    pub resp_h: IpAddr,
    #[serde(rename = "id.resp_p")]
    pub resp_p: u16,
    pub trans_depth: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mailfrom: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcptto: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cc: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x_originating_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_received: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second_received: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reply: Option<String>,
    pub path: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    pub tls: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuids: Option<Vec<String>>,
}

/// The sensor's own counters for one run or one reporting interval: a line of
/// `stats.log`. Every packet read is accounted for in exactly one bucket.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StatsRecord {
    pub ts: Time,
    pub peer: String,
    /// Packets handed to the sensor by libpcap.
    pub pkts_read: u64,
    /// Bytes on the wire of those packets.
    pub bytes_read: u64,
    /// Packets dropped by the kernel or the interface (live capture only).
    pub pkts_dropped_kernel: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pkts_dropped_iface: Option<u64>,
    /// Packets that reached a transport flow.
    pub pkts_flow: u64,
    /// Packets that are not IP (ARP, LLDP, ...), counted and skipped.
    pub pkts_non_ip: u64,
    /// Packets with a malformed or truncated header, counted and skipped.
    pub pkts_malformed: u64,
    /// Fragments held for reassembly (the datagram counts once it completes).
    pub pkts_fragment: u64,
    /// Packets skipped because of a bad checksum (verification on only).
    pub pkts_bad_checksum: u64,
    pub fragments_reassembled: u64,
    pub fragments_dropped: u64,
    pub flows_created: u64,
    pub flows_expired: u64,
    /// Flows removed before their time because the table was full.
    pub flows_evicted: u64,
    pub flows_flushed: u64,
    pub flows_active: u64,
    /// Out-of-order TCP bytes held for the analyzers at the report.
    pub reassembly_held_bytes: u64,
    /// Gaps declared because a stream or the reassembly budget was full.
    pub reassembly_forced_gaps: u64,
    pub weirds: u64,
    /// The loss ledger's sensor side, filled in by the shipping output:
    /// counters since the start of `run`, like the rest of the report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Records and alerts the sensor made (stats reports aside).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_made: Option<u64>,
    /// Of those, packed into spool batches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_spooled: Option<u64>,
    /// Deleted from a full spool before they could ship.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_spool_dropped: Option<u64>,
    /// Acknowledged by the SIEM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_shipped: Option<u64>,
    /// Bytes waiting in the spool at the report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool_bytes: Option<u64>,
    /// Records and alerts waiting to ship at the report, from this run or
    /// an earlier one (the spool is the sensor's, not the run's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool_records: Option<u64>,
    /// When the report was made, by the sensor's clock (a replay's `ts` is
    /// the capture's time): orders reports of different runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_at: Option<Time>,
    /// Version of the rule set the sensor runs (the SIEM's content hash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules_version: Option<String>,
    /// The sensor's software version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Everything the sensor emits, typed; JSON exists only at the log edge.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Event {
    Conn(ConnRecord),
    Weird(WeirdRecord),
    Tunnel(TunnelRecord),
    Stats(StatsRecord),
    Dns(DnsRecord),
    Ssh(SshRecord),
    Http(HttpRecord),
    Ssl(SslRecord),
    Ntp(NtpRecord),
    Ftp(FtpRecord),
    Files(FilesRecord),
    Smtp(SmtpRecord),
    Dhcp(DhcpRecord),
    Quic(QuicRecord),
    Modbus(crate::ModbusRecord),
    ModbusDetail(crate::ModbusDetailRecord),
    MqttConnect(crate::MqttConnectRecord),
    MqttPublish(crate::MqttPublishRecord),
    MqttSubscribe(crate::MqttSubscribeRecord),
    Dnp3(crate::Dnp3Record),
    Dnp3Object(crate::Dnp3ObjectRecord),
    KnownDevice(crate::KnownDeviceRecord),
    Coap(crate::CoapRecord),
    Snmp(crate::SnmpRecord),
    Bacnet(crate::BacnetRecord),
    Alert(Box<crate::AlertRecord>),
}

impl Event {
    /// The Zeek log this record belongs to (`conn` for `conn.log`).
    pub fn log_name(&self) -> &'static str {
        match self {
            Event::Conn(_) => "conn",
            Event::Weird(_) => "weird",
            Event::Tunnel(_) => "tunnel",
            Event::Stats(_) => "stats",
            Event::Dns(_) => "dns",
            Event::Ssh(_) => "ssh",
            Event::Http(_) => "http",
            Event::Ssl(_) => "ssl",
            Event::Ntp(_) => "ntp",
            Event::Ftp(_) => "ftp",
            Event::Files(_) => "files",
            Event::Smtp(_) => "smtp",
            Event::Dhcp(_) => "dhcp",
            Event::Quic(_) => "quic",
            Event::Modbus(_) => "modbus",
            Event::ModbusDetail(_) => "modbus_detailed",
            Event::MqttConnect(_) => "mqtt_connect",
            Event::MqttPublish(_) => "mqtt_publish",
            Event::MqttSubscribe(_) => "mqtt_subscribe",
            Event::Dnp3(_) => "dnp3",
            Event::Dnp3Object(_) => "dnp3_objects",
            Event::KnownDevice(_) => "known_devices",
            Event::Coap(_) => "coap",
            Event::Snmp(_) => "snmp",
            Event::Bacnet(_) => "bacnet",
            Event::Alert(_) => "alerts",
        }
    }
}

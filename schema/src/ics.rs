//! Records of the IoT and control protocols a city runs: Modbus/TCP, MQTT
//! and DNP3. Names follow Zeek's built-in logs (`modbus.log`, `mqtt_*.log`,
//! `dnp3.log`) and, for register detail, CISA's ICSNPP `modbus_detailed.log`.

use crate::{FlowUid, Time};
use serde::Serialize;
use std::net::IpAddr;

/// One Modbus/TCP message (request or response): a line of `modbus.log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModbusRecord {
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
    /// Transaction identifier of the MBAP header.
    pub tid: u16,
    pub unit: u8,
    /// Function name (`READ_COILS`), or its number when unknown.
    pub func: String,
    /// `REQ` or `RESP`.
    pub pdu_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<String>,
}

/// What a read or write touched: a line of `modbus_detailed.log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModbusDetailRecord {
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
    pub is_orig: bool,
    pub tid: u16,
    pub unit: u8,
    pub func: String,
    /// `REQUEST` or `RESPONSE`.
    pub request_response: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u16>,
    /// Register or coil values, comma-separated, in address order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<String>,
}

/// One MQTT CONNECT and its answer: a line of `mqtt_connect.log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MqttConnectRecord {
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
    /// `MQTT`, or `MQIsdp` for 3.1.
    pub proto_name: String,
    /// `3.1`, `3.1.1` or `5.0`.
    pub proto_version: String,
    pub client_id: String,
    /// The CONNACK's return code, as text; unset without a CONNACK.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub will_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub will_payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// One PUBLISH, logged once its QoS handshake ends: a line of
/// `mqtt_publish.log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MqttPublishRecord {
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
    pub from_client: bool,
    pub retain: bool,
    /// `at most once`, `at least once` or `exactly once`.
    pub qos: &'static str,
    /// `ok`, or `incomplete_qos` when the connection ended mid-handshake.
    pub status: &'static str,
    pub topic: String,
    /// The first bytes of the payload, escaped.
    pub payload: String,
    pub payload_len: u64,
}

/// One SUBSCRIBE or UNSUBSCRIBE and its answer: a line of
/// `mqtt_subscribe.log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MqttSubscribeRecord {
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
    /// `MQTT::SUBSCRIBE` or `MQTT::UNSUBSCRIBE`.
    pub action: &'static str,
    pub topics: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub qos_levels: Vec<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted_qos_level: Option<u8>,
    pub ack: bool,
}

/// One DNP3 request and its response: a line of `dnp3.log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dnp3Record {
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fc_request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fc_reply: Option<String>,
    /// Internal indications of the response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iin: Option<u16>,
}

/// A change in the passive device inventory (a device first seen, a new
/// address, service or protocol for it): a line of `known_devices.log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KnownDeviceRecord {
    pub ts: Time,
    /// The device's address.
    pub host: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Addresses seen behind the MAC, when more than one: a router or NAT
    /// in front of them, whose MAC it is (counted up to a cap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_shared: Option<u64>,
    /// Organisation the MAC's OUI is registered to (IEEE registry); none for
    /// a locally administered or shared MAC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// What the device is, from what it serves and speaks: `camera`, `plc`,
    /// `building_controller`, `mqtt_broker`, `printer`, `dhcp_server`,
    /// `dns_server`, `mail_server`, `file_server`, `database`, `web_server`,
    /// `ics_master` or `iot_device`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_type: Option<&'static str>,
    /// What the type was inferred from (`serves tcp/554 (rtsp)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_evidence: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcp_host_name: Option<String>,
    /// The vendor class the device gave in DHCP (option 60).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcp_vendor_class: Option<String>,
    /// `new_device`, `new_address`, `new_service`, `new_protocol`, or
    /// `snapshot` (the whole device, written periodically and at the end).
    pub change: &'static str,
    /// For services and protocols: `tcp` or `udp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proto: Option<&'static str>,
    /// The port the device serves (`new_service`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The protocol name, when an analyzer confirmed it; else the port's
    /// well-known name in parentheses (`(rtsp)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The other end of the connection that showed the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<IpAddr>,
    /// The connection that showed the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<FlowUid>,
    /// Snapshots: when the device was first and last seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    /// Snapshots: distinct peers seen (counted up to a cap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<u64>,
    /// Snapshots: what the device serves (`tcp/502 modbus`, or
    /// `tcp/554 (rtsp)` where only the port names it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// Snapshots: the protocols it speaks as a client.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<String>,
}

/// One CoAP request and its response (RFC 7252): a line of `coap.log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CoapRecord {
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
    /// Message type of the request: CON or NON.
    #[serde(rename = "type")]
    pub msg_type: &'static str,
    /// GET, POST, PUT, DELETE, FETCH, PATCH, iPATCH, or the code as c.dd.
    pub method: String,
    pub message_id: u16,
    /// The token, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri_host: Option<String>,
    /// Uri-Path options joined with `/`, with a leading `/`.
    pub uri_path: String,
    /// Uri-Query options joined with `&`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri_query: Option<String>,
    /// Content-Format of the request's payload (`application/json`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_format: Option<String>,
    pub request_len: u64,
    /// The response's code, `2.05 Content` style; unset without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_len: Option<u64>,
    /// Block-wise transfer (RFC 7959): `block1` or `block2` as num/more/size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
    /// The request carried an Observe option (RFC 7641).
    pub observe: bool,
}

/// One SNMP conversation (the messages between a manager and an agent):
/// a line of `snmp.log`, written when the flow ends.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnmpRecord {
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
    /// From the first to the last message.
    pub duration: crate::Interval,
    /// `1`, `2c` or `3`.
    pub version: &'static str,
    /// The community string (v1/v2c), or `<redacted>` when so configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community: Option<String>,
    /// The USM user name (v3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub get_requests: u64,
    pub get_bulk_requests: u64,
    pub get_responses: u64,
    pub set_requests: u64,
    pub traps: u64,
    /// sysDescr (1.3.6.1.2.1.1.1.0) from a response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_string: Option<String>,
    /// When the agent started, from sysUpTime (1.3.6.1.2.1.1.3.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up_since: Option<Time>,
}

/// One BACnet/IP message (BVLC, NPDU and APDU headers): a line of
/// `bacnet.log`, named and shaped after CISA ICSNPP's.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BacnetRecord {
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
    pub is_orig: bool,
    /// BVLC function (`original-unicast-npdu`, `forwarded-npdu`, ...).
    pub bvlc_function: String,
    /// APDU type (`confirmed-request`, `complex-ack`, ...); unset for
    /// network-layer messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pdu_type: Option<&'static str>,
    /// Service (`read-property`, `who-is`, `device-communication-control`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pdu_service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoke_id: Option<u8>,
    /// `ack`, or the class and code of an error, reject or abort.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_code: Option<String>,
    /// Object of a property read or write (`analog-value:3`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Property of a read or write (`present-value`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
}

/// One object header of a DNP3 application fragment: a line of
/// `dnp3_objects.log` (after CISA ICSNPP's).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dnp3ObjectRecord {
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
    pub is_orig: bool,
    /// The fragment's application function (`READ`, `OPERATE`, `RESPONSE`).
    pub function: String,
    /// Group and variation, `g12v1`.
    pub object_type: String,
    /// Qualifier code, hex (`0x17`).
    pub qualifier: String,
    /// Objects the header covers, when its range says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range_low: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range_high: Option<u32>,
}

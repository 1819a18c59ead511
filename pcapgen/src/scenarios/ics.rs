//! Scenarios of the city's IoT and control networks: Modbus/TCP to a
//! flood-gate controller (10.33.0.7), DNP3 to a pumping-station outstation
//! (10.33.0.8), MQTT to the sensor broker (10.33.0.6). Engineering stations
//! are 10.33.9.0/28 (`rules/placeholders.toml`); 198.51.100.0/24 is the
//! Internet.

use super::*;

/// A TCP conversation: handshake, each message in turn, teardown.
pub(super) fn conversation(
    c: &mut Cap,
    t: i64,
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    msgs: &[(bool, Vec<u8>)],
) {
    let mut s = TcpSession::new(a(src), sport, a(dst), dport, 31_000, 47_000);
    let mut t = t;
    c.ip(t, s.seg(true, SYN, &[]));
    c.ip(t + 100, s.seg(false, SYN | ACK, &[]));
    c.ip(t + 200, s.seg(true, ACK, &[]));
    t += MS;
    for (from_client, m) in msgs {
        stream_send(c, &mut s, &mut t, *from_client, m, 1400);
        t += 20 * MS;
    }
    c.ip(t, s.seg(true, FIN | ACK, &[]));
    c.ip(t + 100, s.seg(false, FIN | ACK, &[]));
    c.ip(t + 200, s.seg(true, ACK, &[]));
}

/// A Modbus/TCP ADU: transaction, unit 1, function, data.
pub(super) fn mb(tid: u16, func: u8, data: &[u8]) -> Vec<u8> {
    let mut v = tid.to_be_bytes().to_vec();
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&((data.len() + 2) as u16).to_be_bytes());
    v.push(1);
    v.push(func);
    v.extend_from_slice(data);
    v
}

pub(super) fn ics_modbus_write() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // A laptop outside the engineering range opens the flood gates: coils
    // 0-7 on, then the level setpoint register to 0.
    conversation(
        &mut c,
        0,
        "10.33.1.50",
        50100,
        "10.33.0.7",
        502,
        &[
            (true, mb(1, 15, &[0, 0, 0, 8, 1, 0xff])),
            (false, mb(1, 15, &[0, 0, 0, 8])),
            (true, mb(2, 6, &[0, 40, 0, 0])),
            (false, mb(2, 6, &[0, 40, 0, 0])),
        ],
    );
    // The engineering station reads the same controller meanwhile.
    conversation(
        &mut c,
        S,
        "10.33.9.5",
        50101,
        "10.33.0.7",
        502,
        &[(true, mb(7, 3, &[0, 40, 0, 2])), (false, mb(7, 3, &[4, 0, 0, 0, 0x98]))],
    );
    c
}

pub(super) fn ics_modbus_benign() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // The engineering station changes the setpoint and checks the coils;
    // the HMI (also an engineering station) polls registers.
    conversation(
        &mut c,
        0,
        "10.33.9.5",
        50200,
        "10.33.0.7",
        502,
        &[
            (true, mb(1, 6, &[0, 40, 0, 0x96])),
            (false, mb(1, 6, &[0, 40, 0, 0x96])),
            (true, mb(2, 1, &[0, 0, 0, 8])),
            (false, mb(2, 1, &[1, 0x0f])),
        ],
    );
    conversation(
        &mut c,
        S,
        "10.33.9.6",
        50201,
        "10.33.0.7",
        502,
        &[(true, mb(3, 4, &[0, 0, 0, 4])), (false, mb(3, 4, &[8, 0, 1, 0, 2, 0, 3, 0, 4]))],
    );
    c
}

const DNP: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_DNP);

/// A DNP3 link frame carrying one transport segment with `app`.
fn dnp3(app: &[u8], dst: u16, src: u16, from_master: bool) -> Vec<u8> {
    let mut user = vec![0xc0];
    user.extend_from_slice(app);
    // DIR set on frames from the master; PRM set; unconfirmed user data.
    let ctrl = if from_master { 0xc4 } else { 0x44 };
    let mut header = vec![0x05, 0x64, (5 + user.len()) as u8, ctrl];
    header.extend_from_slice(&dst.to_le_bytes());
    header.extend_from_slice(&src.to_le_bytes());
    let mut out = header.clone();
    out.extend_from_slice(&DNP.checksum(&header).to_le_bytes());
    for block in user.chunks(16) {
        out.extend_from_slice(block);
        out.extend_from_slice(&DNP.checksum(block).to_le_bytes());
    }
    out
}

/// Class 0 read (object group 60 variation 1, all points) and a response
/// with no flags raised.
fn dnp3_poll(seq: u8) -> Vec<(bool, Vec<u8>)> {
    vec![
        (true, dnp3(&[0xc0 | seq, 1, 60, 1, 6], 10, 1, true)),
        (false, dnp3(&[0xc0 | seq, 129, 0, 0, 30, 1, 0, 0, 0, 0x01, 0x10, 0], 1, 10, false)),
    ]
}

pub(super) fn ics_dnp3_restart() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // From a host that is not an engineering station: a cold restart of
    // the pumping station's outstation, answered with the restart flag.
    let mut msgs = dnp3_poll(0);
    msgs.push((true, dnp3(&[0xc1, 13], 10, 1, true)));
    msgs.push((false, dnp3(&[0xc1, 129, 0x80, 0, 52, 2, 7, 1, 0x10, 0x27], 1, 10, false)));
    conversation(&mut c, 0, "10.33.1.50", 50300, "10.33.0.8", 20000, &msgs);
    c
}

pub(super) fn ics_dnp3_benign() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // The SCADA master polls class 0 data, and the outstation reports an
    // event unsolicited.
    let mut msgs = dnp3_poll(0);
    msgs.extend(dnp3_poll(1));
    msgs.push((false, dnp3(&[0xf2, 130, 0, 0, 2, 1, 0x28, 1, 0, 3, 0, 0x81], 1, 10, false)));
    msgs.push((true, dnp3(&[0xd2, 0], 10, 1, true)));
    conversation(&mut c, 0, "10.33.9.5", 50400, "10.33.0.8", 20000, &msgs);
    c
}

/// An MQTT control packet: type and flags, remaining length, body.
fn mq(first: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
    let mut n = body.len();
    loop {
        let mut b = (n & 0x7f) as u8;
        n >>= 7;
        if n > 0 {
            b |= 0x80;
        }
        v.push(b);
        if n == 0 {
            break;
        }
    }
    v.extend_from_slice(body);
    v
}

fn mstr(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

/// CONNECT 3.1.1 with a user name and password, and the broker's CONNACK.
pub(super) fn mqtt_login(client: &str, user: &str, password: &str, code: u8) -> Vec<(bool, Vec<u8>)> {
    let mut body = mstr("MQTT");
    body.extend_from_slice(&[4, 0xc2, 0, 60]);
    body.extend(mstr(client));
    body.extend(mstr(user));
    body.extend(mstr(password));
    vec![(true, mq(0x10, &body)), (false, mq(0x20, &[0, code]))]
}

fn mqtt_subscribe(id: u16, filter: &str) -> Vec<(bool, Vec<u8>)> {
    let mut body = id.to_be_bytes().to_vec();
    body.extend(mstr(filter));
    body.push(0);
    let mut ack = id.to_be_bytes().to_vec();
    ack.push(0);
    vec![(true, mq(0x82, &body)), (false, mq(0x90, &ack))]
}

pub(super) fn mqtt_publish(topic: &str, payload: &[u8]) -> (bool, Vec<u8>) {
    let mut body = mstr(topic);
    body.extend_from_slice(payload);
    (true, mq(0x30, &body))
}

pub(super) fn iot_mqtt_abuse() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // Six guesses at the broker's password from the Internet, then one
    // that works and a subscription to every topic.
    for (i, pw) in ["admin", "123456", "password", "mqtt", "broker", "city2024"].iter().enumerate() {
        let msgs = mqtt_login("scanner", "admin", pw, 4);
        conversation(&mut c, i as i64 * 2 * S, "198.51.100.23", 51000 + i as u16, "10.33.0.6", 1883, &msgs);
    }
    let mut msgs = mqtt_login("scanner", "admin", "flood", 0);
    msgs.extend(mqtt_subscribe(1, "#"));
    msgs.push((false, mq(0x30, &[&mstr("city/flood/gate-3")[..], b"open"].concat())));
    conversation(&mut c, 14 * S, "198.51.100.23", 51010, "10.33.0.6", 1883, &msgs);
    c
}

pub(super) fn iot_mqtt_benign() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // Water-level sensors publish; one mistypes its password once first.
    let mut msgs = mqtt_login("level-12", "sensor", "typo", 4);
    conversation(&mut c, 0, "10.33.2.12", 52000, "10.33.0.6", 1883, &msgs);
    msgs = mqtt_login("level-12", "sensor", "s3nsor-key", 0);
    msgs.push(mqtt_publish("city/flood/level-12", b"1.42"));
    conversation(&mut c, S, "10.33.2.12", 52001, "10.33.0.6", 1883, &msgs);
    msgs = mqtt_login("level-13", "sensor", "s3nsor-key", 0);
    msgs.push(mqtt_publish("city/flood/level-13", b"0.97"));
    conversation(&mut c, 2 * S, "10.33.2.13", 52002, "10.33.0.6", 1883, &msgs);
    // The operations dashboard follows the flood topics, with wildcards
    // that stay inside its subtree.
    msgs = mqtt_login("ops-dashboard", "dashboard", "d4sh-key", 0);
    msgs.extend(mqtt_subscribe(1, "city/flood/+"));
    msgs.extend(mqtt_subscribe(2, "city/lighting/#"));
    conversation(&mut c, 3 * S, "10.33.1.20", 52003, "10.33.0.6", 1883, &msgs);
    c
}

/// A CoAP message: version 1, type, token, code, message id, options
/// (number, value) in ascending order, payload.
fn coap(typ: u8, code: u8, mid: u16, token: &[u8], options: &[(u16, &[u8])], payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x40 | typ << 4 | token.len() as u8, code];
    v.extend_from_slice(&mid.to_be_bytes());
    v.extend_from_slice(token);
    let mut last = 0;
    for (n, val) in options {
        // Deltas and lengths here stay below 13: no extended nibbles.
        v.push(((n - last) as u8) << 4 | val.len() as u8);
        v.extend_from_slice(val);
        last = *n;
    }
    if !payload.is_empty() {
        v.push(0xff);
        v.extend_from_slice(payload);
    }
    v
}

/// A confirmable request and its piggybacked response.
#[allow(clippy::too_many_arguments)]
fn coap_exchange(
    c: &mut Cap,
    t: i64,
    client: &str,
    sport: u16,
    server: &str,
    code: u8,
    mid: u16,
    path: &[&str],
    payload: &[u8],
    answer: u8,
    body: &[u8],
) {
    let (cl, sv) = (a(client), a(server));
    let token = mid.to_be_bytes();
    let mut opts: Vec<(u16, &[u8])> = path.iter().map(|p| (11u16, p.as_bytes())).collect();
    if !payload.is_empty() {
        opts.push((12, &[]));
    }
    let req = coap(0, code, mid, &token, &opts, payload);
    let resp = coap(2, answer, mid, &token, &[], body);
    c.ip(t, ip(cl, sv, 17, &udp(cl, sv, sport, 5683, &req)));
    c.ip(t + 3 * MS, ip(sv, cl, 17, &udp(sv, cl, 5683, sport, &resp)));
}

pub(super) fn iot_coap_abuse() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // From the Internet, straight to street-light controllers: one is
    // switched off, another's firmware deleted.
    coap_exchange(
        &mut c,
        0,
        "198.51.100.31",
        53000,
        "10.33.3.12",
        3,
        0x100,
        &["lights", "12", "state"],
        b"off",
        0x44,
        b"",
    );
    coap_exchange(&mut c, S, "198.51.100.31", 53001, "10.33.3.13", 4, 0x101, &["firmware"], b"", 0x42, b"");
    // The same source reads a sensor: reading alone raises nothing here.
    coap_exchange(
        &mut c,
        2 * S,
        "198.51.100.31",
        53002,
        "10.33.3.14",
        1,
        0x102,
        &["sensors", "lux"],
        b"",
        0x45,
        b"412",
    );
    c
}

pub(super) fn iot_coap_benign() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // The lighting gateway (an IoT controller) dims a light and reads the
    // lux sensor; a city host reads a sensor.
    coap_exchange(&mut c, 0, "10.33.3.1", 53100, "10.33.3.12", 3, 0x200, &["lights", "12", "level"], b"40", 0x44, b"");
    coap_exchange(&mut c, S, "10.33.3.1", 53101, "10.33.3.14", 1, 0x201, &["sensors", "lux"], b"", 0x45, b"388");
    coap_exchange(&mut c, 2 * S, "10.33.1.20", 53102, "10.33.3.14", 1, 0x202, &["sensors", "lux"], b"", 0x45, b"390");
    c
}

/// A BER element.
fn ber(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag, body.len() as u8];
    v.extend_from_slice(body);
    v
}

/// An SNMP v2c message with one PDU of one varbind.
fn snmp(community: &str, pdu: u8, id: u8, oid: &[u8], vtag: u8, value: &[u8]) -> Vec<u8> {
    let bind = ber(0x30, &[ber(0x06, oid), ber(vtag, value)].concat());
    let body = [ber(0x02, &[id]), ber(0x02, &[0]), ber(0x02, &[0]), ber(0x30, &bind)].concat();
    ber(0x30, &[ber(0x02, &[1]), ber(0x04, community.as_bytes()), ber(pdu, &body)].concat())
}

const SYS_DESCR: &[u8] = &[0x2b, 6, 1, 2, 1, 1, 1, 0];
const SYS_NAME: &[u8] = &[0x2b, 6, 1, 2, 1, 1, 5, 0];

fn snmp_exchange(c: &mut Cap, t: i64, client: &str, sport: u16, agent: &str, req: &[u8], resp: &[u8]) {
    let (cl, ag) = (a(client), a(agent));
    c.ip(t, ip(cl, ag, 17, &udp(cl, ag, sport, 161, req)));
    c.ip(t + 4 * MS, ip(ag, cl, 17, &udp(ag, cl, 161, sport, resp)));
}

pub(super) fn iot_snmp_abuse() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // From the Internet: the default read community identifies a traffic
    // controller, the default write community renames it.
    snmp_exchange(
        &mut c,
        0,
        "198.51.100.40",
        54000,
        "10.33.4.10",
        &snmp("public", 0xa0, 1, SYS_DESCR, 0x05, &[]),
        &snmp("public", 0xa2, 1, SYS_DESCR, 0x04, b"TrafficCtl TC-200 fw 3.2"),
    );
    snmp_exchange(
        &mut c,
        S,
        "198.51.100.40",
        54001,
        "10.33.4.10",
        &snmp("private", 0xa3, 2, SYS_NAME, 0x04, b"owned"),
        &snmp("private", 0xa2, 2, SYS_NAME, 0x04, b"owned"),
    );
    c
}

pub(super) fn iot_snmp_benign() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // The network management station (an engineering station) polls and
    // sets a name with the city's own communities.
    snmp_exchange(
        &mut c,
        0,
        "10.33.9.7",
        54100,
        "10.33.4.10",
        &snmp("c1ty-nms-ro", 0xa0, 1, SYS_DESCR, 0x05, &[]),
        &snmp("c1ty-nms-ro", 0xa2, 1, SYS_DESCR, 0x04, b"TrafficCtl TC-200 fw 3.2"),
    );
    snmp_exchange(
        &mut c,
        S,
        "10.33.9.7",
        54101,
        "10.33.4.10",
        &snmp("c1ty-nms-rw", 0xa3, 2, SYS_NAME, 0x04, b"junction-14"),
        &snmp("c1ty-nms-rw", 0xa2, 2, SYS_NAME, 0x04, b"junction-14"),
    );
    c
}

/// A BACnet/IP unicast message (BVLC, NPDU without addresses, APDU).
fn bacnet(apdu: &[u8], expect_reply: bool) -> Vec<u8> {
    let mut v = vec![0x81, 0x0a, 0, 0, 0x01, if expect_reply { 0x04 } else { 0x00 }];
    v.extend_from_slice(apdu);
    let n = v.len() as u16;
    v[2..4].copy_from_slice(&n.to_be_bytes());
    v
}

fn bacnet_exchange(c: &mut Cap, t: i64, client: &str, server: &str, req: &[u8], resp: &[u8]) {
    let (cl, sv) = (a(client), a(server));
    c.ip(t, ip(cl, sv, 17, &udp(cl, sv, 47808, 47808, &bacnet(req, true))));
    c.ip(t + 5 * MS, ip(sv, cl, 17, &udp(sv, cl, 47808, 47808, &bacnet(resp, false))));
}

pub(super) fn iot_bacnet_abuse() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // A laptop that is not an engineering station silences the building
    // controller of the city hall (device-communication-control, disable)
    // and restarts it (reinitialize-device, warmstart).
    bacnet_exchange(&mut c, 0, "10.33.1.50", "10.33.5.20", &[0x00, 0x05, 0x01, 0x11, 0x19, 0x01], &[0x20, 0x01, 0x11]);
    bacnet_exchange(&mut c, S, "10.33.1.50", "10.33.5.20", &[0x00, 0x05, 0x02, 0x14, 0x09, 0x01], &[0x20, 0x02, 0x14]);
    c
}

pub(super) fn iot_bacnet_benign() -> Cap {
    let mut c = Cap::new(DLT_EN10MB);
    // The engineering station reads a room temperature (analog-input 1,
    // present-value) and writes a setpoint (analog-value 3).
    bacnet_exchange(
        &mut c,
        0,
        "10.33.9.5",
        "10.33.5.20",
        &[0x00, 0x05, 0x01, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55],
        &[0x30, 0x01, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55, 0x3e, 0x44, 0x41, 0xb4, 0x00, 0x00, 0x3f],
    );
    bacnet_exchange(
        &mut c,
        S,
        "10.33.9.5",
        "10.33.5.20",
        &[0x00, 0x05, 0x02, 0x0f, 0x0c, 0x00, 0x80, 0x00, 0x03, 0x19, 0x55, 0x3e, 0x44, 0x41, 0xa8, 0x00, 0x00, 0x3f],
        &[0x20, 0x02, 0x0f],
    );
    c
}

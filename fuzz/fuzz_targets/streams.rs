//! Every stream analyzer (HTTP, TLS, SSH, FTP, SMTP with MIME, DNS over TCP, Modbus, MQTT, DNP3)
//! and the datagram analyzers (NTP, DHCP, QUIC, CoAP, SNMP, BACnet), fed both sides of a conversation with gaps; see
//! `sensor::fuzzing::run_streams` for the input format.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sensor::fuzzing::run_streams(data));

#!/usr/bin/env python3
"""Turns the bundled replay captures into seed inputs for the fuzz targets.

`packets` (see sensor::fuzzing::run_packets): one byte choosing the link type,
then records of [len: u16 le][delta_ms: u8][packet bytes].

`streams` (see sensor::fuzzing::run_streams): one byte choosing the analyzer,
then records of [control: u8][len: u8][bytes], control bit 0 set for the
responder's side. Seeds are the TCP payloads of the Ethernet/IPv4 captures of
each protocol's scenario, in capture order.

`query` (see siem::fuzzing::run_query): the text of a search; one seed per
line of `query-seeds.txt`.

`ingest` (see siem::fuzzing::run_ingest): one byte choosing the content
encoding (0 none, 1 gzip, 2 deflate), then the body: JSON lines of several
logs, with unknown fields and wrong types among them.
"""
import os
import struct
import sys

LINKS = [1, 0, 9, 50, 104, 101, 108, 113, 276, 228, 229]


def packets(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off, out = 24, []
    while off + 16 <= len(data):
        _, _, caplen, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        out.append(data[off + 16:off + 16 + caplen])
        off += 16 + caplen
    return linktype, out


def main(cases_dir, corpus_dir):
    os.makedirs(corpus_dir, exist_ok=True)
    for case in sorted(os.listdir(cases_dir)):
        cap = os.path.join(cases_dir, case, "capture.pcap")
        if not os.path.exists(cap):
            continue
        linktype, pkts = packets(cap)
        if linktype not in LINKS:
            continue
        body = bytes([LINKS.index(linktype)])
        for p in pkts:
            body += struct.pack("<HB", len(p), 1) + p
        with open(os.path.join(corpus_dir, case), "wb") as f:
            f.write(body)


# Scenario -> analyzer selector of run_streams.
STREAM_CASES = {"http": 0, "tls": 1, "ssh": 2, "ftp": 3, "smtp": 4, "dns": 5, "ntp": 6, "dhcp": 7, "quic": 8,
                "ics-modbus-write": 9, "iot-mqtt-abuse": 10, "ics-dnp3-restart": 11,
                "iot-coap-abuse": 12, "iot-snmp-abuse": 13,
                "iot-bacnet-abuse": 14}


def payloads(pkts):
    """(from_client, payload) of each TCP or UDP segment of Ethernet/IPv4 packets."""
    client = None
    for p in pkts:
        if len(p) < 34 or p[12:14] != b"\x08\x00":
            continue
        ihl = (p[14] & 0x0F) * 4
        proto, src = p[23], p[26:30]
        l4 = p[14 + ihl:14 + struct.unpack(">H", p[16:18])[0]]
        if proto == 6 and len(l4) >= 20:
            body = l4[(l4[12] >> 4) * 4:]
            if client is None and l4[13] & 0x12 == 0x02:
                client = src
        elif proto == 17 and len(l4) >= 8:
            body = l4[8:]
        else:
            continue
        if body:
            yield (client is None or src == client), body


def stream_seeds(cases_dir, corpus_dir):
    os.makedirs(corpus_dir, exist_ok=True)
    for case, sel in STREAM_CASES.items():
        cap = os.path.join(cases_dir, case, "capture.pcap")
        if not os.path.exists(cap):
            continue
        _, pkts = packets(cap)
        body = bytes([sel])
        for from_client, data in payloads(pkts):
            for i in range(0, len(data), 255):
                chunk = data[i:i + 255]
                body += bytes([0 if from_client else 1, len(chunk)]) + chunk
        with open(os.path.join(corpus_dir, case), "wb") as f:
            f.write(body)


def query_seeds(seeds, corpus_dir):
    os.makedirs(corpus_dir, exist_ok=True)
    with open(seeds, "rb") as f:
        for i, line in enumerate(f.read().splitlines()):
            with open(os.path.join(corpus_dir, "seed-%02d" % i), "wb") as out:
                out.write(line)


INGEST_LINES = [
    b'{"ts":1700000000.5,"uid":"CHhAvVGS1DHFjwGM9","id.orig_h":"10.1.2.3","id.orig_p":40000,'
    b'"id.resp_h":"192.0.2.7","id.resp_p":80,"proto":"tcp","service":"http","duration":1.5}',
    b'{"_log":"dns","ts":1700000001,"uid":"C2","query":"example.org","qtype_name":"A","answers":["192.0.2.1"]}',
    b'{"_path":"http","ts":1700000002,"uid":"C3","method":"GET","host":"a.example","uri":"/?q=1","site":"x"}',
    b'{"ts":"not a time","uid":["C4"]}',
]


def ingest_seeds(corpus_dir):
    import gzip
    import zlib
    os.makedirs(corpus_dir, exist_ok=True)
    body = b"\n".join(INGEST_LINES) + b"\n"
    for name, data in (("plain", b"\x00" + body), ("gzip", b"\x01" + gzip.compress(body)),
                       ("deflate", b"\x02" + zlib.compress(body))):
        with open(os.path.join(corpus_dir, name), "wb") as out:
            out.write(data)


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    cases = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "replay-pcaps")
    corpus = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "corpus")
    main(cases, os.path.join(corpus, "packets"))
    stream_seeds(cases, os.path.join(corpus, "streams"))
    query_seeds(os.path.join(here, "query-seeds.txt"), os.path.join(corpus, "query"))
    ingest_seeds(os.path.join(corpus, "ingest"))

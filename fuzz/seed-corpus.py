#!/usr/bin/env python3
"""Turns the bundled replay captures into seed inputs for the `packets` target.

Input format (see fuzz_targets/packets.rs): one byte choosing the link type,
then records of [len: u16 le][delta_ms: u8][packet bytes].
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


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "replay-pcaps"),
         sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "corpus", "packets"))

"""A DNS server that knows no name: `python -m tests.support.dns_stub PORT QUERY_LOG`.

Every query gets NXDOMAIN, and its name is appended to QUERY_LOG. Runs on 127.0.0.1 only; the DNS-failure
test starts it inside a network namespace whose resolv.conf points at it, so no lookup leaves loopback.
"""

from __future__ import annotations

import socket
import struct
import sys


def query_name(packet: bytes) -> str:
    labels, pos = [], 12
    while pos < len(packet) and packet[pos]:
        size = packet[pos]
        labels.append(packet[pos + 1 : pos + 1 + size].decode("ascii", "replace"))
        pos += 1 + size
    return ".".join(labels)


def nxdomain(packet: bytes) -> bytes:
    ident, flags = struct.unpack("!HH", packet[:4])
    # QR=1, the query's opcode and RD, RA=1, RCODE=3 (NXDOMAIN); the question is echoed, no answers.
    reply_flags = 0x8000 | (flags & 0x7900) | 0x0080 | 3
    question_end = 12
    while question_end < len(packet) and packet[question_end]:
        question_end += 1 + packet[question_end]
    question_end += 5  # the zero label, QTYPE, QCLASS
    return struct.pack("!HHHHHH", ident, reply_flags, 1, 0, 0, 0) + packet[12:question_end]


def main(port: int, log_path: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    with open(log_path, "a", buffering=1) as log:
        while True:
            packet, peer = sock.recvfrom(4096)
            if len(packet) < 12:
                continue
            log.write(query_name(packet) + "\n")
            sock.sendto(nxdomain(packet), peer)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])

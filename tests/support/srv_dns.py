"""A DNS server on 127.0.0.1 answering SRV and A records: `python -m tests.support.srv_dns PORT RECORDS_JSON`.

RECORDS_JSON is read again for every query, so a test changes the answers by rewriting it:
  {"ttl": 1, "srv": {"api.service.test.": [[priority, weight, port, "a.node.test."], ...]},
   "a": {"a.node.test.": "127.0.0.1"}, "additional": false}
With "additional": true, SRV answers carry their targets' A records in the additional section (as Consul's do).
Unknown names get NXDOMAIN. Every query's name and type is appended to RECORDS_JSON + ".log".
"""

from __future__ import annotations

import json
import socket
import sys

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


def respond(packet: bytes, records: dict) -> bytes:
    query = dns.message.from_wire(packet)
    response = dns.message.make_response(query)
    question = query.question[0]
    name, ttl = str(question.name).lower(), records.get("ttl", 1)
    if question.rdtype == dns.rdatatype.SRV and name in records.get("srv", {}):
        texts = [f"{p} {w} {port} {target}" for p, w, port, target in records["srv"][name]]
        response.answer.append(dns.rrset.from_text(name, ttl, "IN", "SRV", *texts))
        if records.get("additional"):
            for *_, target in records["srv"][name]:
                if target in records.get("a", {}):
                    response.additional.append(dns.rrset.from_text(target, ttl, "IN", "A", records["a"][target]))
    elif question.rdtype == dns.rdatatype.A and name in records.get("a", {}):
        response.answer.append(dns.rrset.from_text(name, ttl, "IN", "A", records["a"][name]))
    elif name not in records.get("a", {}) and name not in records.get("srv", {}):
        response.set_rcode(dns.rcode.NXDOMAIN)
    return response.to_wire()


def main(port: int, path: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    with open(path + ".log", "a", buffering=1) as log:
        while True:
            packet, peer = sock.recvfrom(4096)
            try:
                with open(path) as f:
                    records = json.load(f)
                out = respond(packet, records)
                q = dns.message.from_wire(packet).question[0]
                log.write(f"{q.name} {dns.rdatatype.to_text(q.rdtype)}\n")
            except Exception as exc:  # a test server: say why, keep serving
                log.write(f"error {exc!r}\n")
                continue
            sock.sendto(out, peer)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])

"""The router's `forwarded_by_client_ip`: the client's address read from a trusted proxy's headers, as gin's ClientIP.

Only a peer inside `trusted_proxies` is believed. In its header (the first of `remote_ip_headers` that gives an
address; X-Forwarded-For, then X-Real-IP by default) the addresses are read right to left, skipping trusted proxies:
the first untrusted one is the client (or the leftmost, when all are trusted). A malformed entry ends the search
and the header is not used. Without trusted proxies nothing is believed (gin would trust every peer).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from lambdagate.front import Exchange, Handler, Step
from lambdagate.pipeline.render import Reply

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    def __init__(self, networks: Iterable[str], headers: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in networks)
        self.headers = tuple(h.lower().encode("latin-1") for h in headers)

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client_of(self, peer: str, raw_headers: list[tuple[bytes, bytes]]) -> str:
        """The client's address: from the headers when `peer` is trusted, else the peer's own ("" for peer)."""
        if not self.networks or not self.trusts(peer):
            return ""
        for name in self.headers:
            value = next((v for k, v in raw_headers if k == name), None)  # the first one, as Go's Header.Get
            if value:
                found = self._from_header(value.decode("latin-1"))
                if found:
                    return found
        return ""

    def _from_header(self, value: str) -> str:
        items = value.split(",")
        for i in range(len(items) - 1, -1, -1):
            item = items[i].strip()
            try:
                ipaddress.ip_address(item)
            except ValueError:
                return ""
            if i == 0 or not self.trusts(item):
                return item
        return ""


def forwarded_client_ip(proxies: TrustedProxies) -> Step:
    def step(handler: Handler) -> Handler:
        async def with_client_ip(ex: Exchange) -> Reply:
            client = ex.scope.get("client")
            if client:
                ex.forwarded_ip = proxies.client_of(client[0], ex.scope["headers"])
            return await handler(ex)

        return with_client_ip

    return step

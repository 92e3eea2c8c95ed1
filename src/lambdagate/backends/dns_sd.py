"""`sd: "dns"`: a backend's hosts come from a DNS SRV record, as KrakenD's `sd/dnssrv` reads it.

The SRV name (the backend's first `host`) is resolved when the backend is built and then again in the background,
when the records' TTL runs out (at least 1 s apart, at most `dns_cache_ttl`, KrakenD's refresh period, 30 s by
default). Of the records, only those of the lowest priority are used; each target gets a share of the calls by
its weight (KrakenD's scaling: weights summing to more than 100 are scaled to 100, then divided by their greatest
common divisor), handed out round robin. A failed lookup keeps the last good hosts.

Target names are resolved through the same DNS server (the reply's additional records, or A/AAAA lookups), and
the backend client's resolver (`DirectoryResolver`) answers with those addresses, so a call keeps the target's
name in its URL (Host header, TLS server name) as in KrakenD.

The DNS server is the system's (resolv.conf). `LAMBDAGATE_SD_DNS_SERVER=host:port` replaces it: the tests use it
to point the gateway at a DNS server on loopback.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
from collections.abc import Callable
from functools import reduce

import aiohttp
import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver
from aiohttp.abc import AbstractResolver, ResolveResult

from lambdagate.errors import BackendError

log = logging.getLogger("lambdagate")
DNS_SERVER_ENV = "LAMBDAGATE_SD_DNS_SERVER"
DEFAULT_REFRESH = 30.0  # KrakenD's dnssrv TTL when dns_cache_ttl is not set
MIN_REFRESH = 1.0
LOOKUP_TIMEOUT = 5.0
_MAX_TARGETS = 256  # target names looked up per refresh; SRV replies are bounded by DNS message sizes anyway


def _resolver() -> dns.asyncresolver.Resolver:
    server = os.environ.get(DNS_SERVER_ENV)
    if not server:
        return dns.asyncresolver.Resolver()
    host, _, port = server.rpartition(":")
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [host.strip("[]")]
    resolver.port = int(port)
    return resolver


def weighted(records: list, scheme: str) -> list[str]:
    """The round-robin list of base URLs for SRV records: the lowest priority only, each target repeated by its
    scaled weight (all weights 0: each once, where KrakenD would have no host)."""
    if not records:
        return []
    records = sorted(records, key=lambda r: (r.priority, -r.weight, str(r.target), r.port))
    best = [r for r in records if r.priority == records[0].priority]
    weights = [r.weight for r in best]
    scale, total = max(100, len(weights)), sum(weights)
    if total > scale:
        weights = [w * scale // total for w in weights]
    divisor = reduce(math.gcd, weights)
    if divisor > 1:
        weights = [w // divisor for w in weights]
    if not any(weights):
        weights = [1] * len(best)
    urls = []
    for record, times in zip(best, weights):
        host = str(record.target).rstrip(".")
        urls.extend([f"{scheme}://{host}:{record.port}"] * times)
    return urls


class SrvDirectory:
    """The worker's SRV names and the addresses of their targets (shared by every `sd: "dns"` backend)."""

    def __init__(self, max_refresh: float = DEFAULT_REFRESH) -> None:
        self.max_refresh = max_refresh if max_refresh >= MIN_REFRESH else DEFAULT_REFRESH
        self.addresses: dict[str, list[str]] = {}
        self._services: dict[tuple[str, str], SrvService] = {}
        self._resolver: dns.asyncresolver.Resolver | None = None

    @property
    def resolver(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            self._resolver = _resolver()
        return self._resolver

    async def service(self, name: str, scheme: str) -> SrvService:
        """The service of an SRV name, resolved once before it is returned, then refreshed in the background."""
        key = (name, scheme)
        if key not in self._services:
            service = self._services[key] = SrvService(self, name, scheme)
            await service.start()
        return self._services[key]

    async def close(self) -> None:
        for service in self._services.values():
            await service.stop()
        self._services.clear()


class SrvService:
    """One SRV name's current hosts, handed out round robin."""

    def __init__(self, directory: SrvDirectory, name: str, scheme: str) -> None:
        self.directory, self.name, self.scheme = directory, name, scheme
        self.hosts: list[str] = []
        self._counter = 0
        self._task: asyncio.Task | None = None

    def next_host(self) -> str:
        hosts = self.hosts
        if not hosts:
            raise BackendError("the backend is unavailable", cause=f"no hosts resolved for SRV {self.name}")
        self._counter = (self._counter + 1) % len(hosts)
        return hosts[self._counter]

    async def start(self) -> None:
        delay = await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._loop(delay))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self, delay: float) -> None:
        while True:
            await asyncio.sleep(delay)
            delay = await self.refresh()

    async def refresh(self) -> float:
        """Resolve once; the seconds until the next time (the answer's TTL, bounded)."""
        limit = self.directory.max_refresh
        try:
            answer = await self.directory.resolver.resolve(self.name, "SRV", lifetime=LOOKUP_TIMEOUT)
            ttl = await self._learn_targets(answer)
        except (dns.exception.DNSException, OSError) as exc:
            log.warning("sd dns: resolving %s failed (%s); keeping %d known hosts", self.name, exc, len(self.hosts))
            return min(limit, 5.0)
        hosts = weighted(list(answer), self.scheme)
        if hosts != self.hosts:
            log.info("sd dns: %s → %s", self.name, sorted(set(hosts)))
        self.hosts = hosts
        return min(max(float(ttl), MIN_REFRESH), limit)

    async def _learn_targets(self, answer: dns.resolver.Answer) -> int:
        """Record the targets' addresses (additional section, else lookups); the smallest TTL seen."""
        ttl = answer.rrset.ttl if answer.rrset is not None else 0
        found: dict[str, list[str]] = {}
        for rrset in answer.response.additional:
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                found.setdefault(str(rrset.name).rstrip(".").lower(), []).extend(r.address for r in rrset)
                ttl = min(ttl, rrset.ttl)
        targets = {str(r.target).rstrip(".").lower() for r in answer}
        for target in list(targets - set(found))[:_MAX_TARGETS]:
            try:
                reply = await self.directory.resolver.resolve(target, "A", lifetime=LOOKUP_TIMEOUT)
            except dns.exception.DNSException:
                continue  # left to the system's resolver
            found[target] = [r.address for r in reply]
            ttl = min(ttl, reply.rrset.ttl)
        self.directory.addresses.update(found)
        return ttl


class DirectoryResolver(AbstractResolver):
    """The backend client's name resolution: SRV targets from the directory, everything else as usual."""

    def __init__(self, directory: SrvDirectory, fallback: AbstractResolver | None = None) -> None:
        self.directory = directory
        self.fallback = fallback or aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        known = self.directory.addresses.get(host.rstrip(".").lower())
        if not known:
            return await self.fallback.resolve(host, port, family)
        results: list[ResolveResult] = []
        for address in known:
            fam = socket.AF_INET6 if ":" in address else socket.AF_INET
            if family in (socket.AF_UNSPEC, fam):
                results.append(
                    ResolveResult(
                        hostname=host, host=address, port=port, family=fam, proto=0, flags=socket.AI_NUMERICHOST
                    )
                )
        return results or await self.fallback.resolve(host, port, family)

    async def close(self) -> None:
        await self.fallback.close()


HostPicker = Callable[[], str]

"""Prometheus metrics (`telemetry/metrics`): counted cheaply in each worker, exported by the main process.

granian runs the app in several worker processes, so no process sees every request. Each worker counts in
plain Python objects bound at start-up (no prometheus_client, no locks on the request path) and every
`flush_interval` writes a snapshot of its cumulative counts to its own file in a shared directory. The main
process serves `/metrics` on its own listener and sums all the files at scrape time.

A snapshot file is named `<pid>-<time_ns>.json` (a new name per worker start, so a reused pid never
overwrites an old worker's counts) and is replaced atomically (tmp file + rename):

    {"pid": 4242, "in_flight": 3,
     "requests": [{"labels": {"endpoint": "/users/{id}", "method": "GET"}, "counts": {"200": 7, "404": 1},
                   "buckets": [0, 5, 3, 0, ...], "sum": 0.0123, "count": 8}],
     "backend_calls": [{"labels": {"endpoint": ..., "method": ..., "backend": ...}, "counts": {"success": 8}, ...}],
     "lambda_invocations": [{"labels": {"function": "users"}, "counts": {"throttled": 1}, "retries": 2, ...}],
     "breaker_changes": [{"labels": {..., "breaker": "users"}, "counts": {"open": 1}, ...}]}

"counts" are requests by status or calls by outcome; "buckets" are non-cumulative counts per LATENCY_BUCKETS
bound, the last one for +Inf. The in-flight gauge sums only workers that are alive.

Counts of workers that exited still count (counters never go down), but their files do not pile up: at scrape
time the exporter (the only reader) folds each file whose pid is no longer alive into `retired.json` (same
schema, pid 0, in_flight 0, also replaced atomically) and then deletes it, so the directory holds one file per
live worker plus `retired.json`. A worker that exits cleanly has flushed its final counts (`close()`); one
that crashes loses at most its last `flush_interval`.

Cardinality: endpoint and backend series are fixed by the config at start-up. Lambda function names can come
from URLs: each worker gives at most MAX_FUNCTIONS of them a series of their own, and after merging all files
the exporter gives at most MAX_SERIES (5000) function label values a series, "_other" included (so at most
that many series per family, times the fixed outcomes in the invocation counter). Names get their series
first come, first served and keep it; later ones are folded into "_other".
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from lambdagate.config.durations import Duration
from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.model import ServiceConfig
from lambdagate.config.namespaces import Namespace, NamespaceContext

NAMESPACE = "telemetry/metrics"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)  # seconds
MAX_FUNCTIONS = 1000  # function names come from URLs: beyond this many, all share the "_other" series
MAX_SERIES = 5000  # function label values exported after merging all workers, "_other" included
RETIRED = "retired.json"  # the summed counts of workers that exited
log = logging.getLogger("lambdagate.metrics")

# --- config -------------------------------------------------------------------------------------------------

_LISTEN_RE = re.compile(r"(?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[A-Za-z0-9.-]*)):(?P<port>[0-9]{1,5})")
_LISTEN_EXAMPLE = 'write it like "127.0.0.1:9091", or "0.0.0.0:9091" for all interfaces'
DEFAULT_LISTEN = "127.0.0.1:9091"
LOOPBACK_ONLY = (
    'listens on 127.0.0.1 only (in KrakenD it means all interfaces); write "0.0.0.0:{port}" or '
    '"[::]:{port}" to serve metrics on every interface'
)


def parse_listen_address(text: str) -> tuple[str, int]:
    """(host, port) for KrakenD's "[host]:port". No host means loopback here, not all interfaces as in KrakenD:
    exposing the metrics must be explicit ("0.0.0.0:9091"). ValueError with a hint otherwise."""
    match = _LISTEN_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a listen address: {_LISTEN_EXAMPLE}")
    port = int(match["port"])
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range 1-65535: {_LISTEN_EXAMPLE}")
    if match["ipv6"] is None:
        return match["host"] or "127.0.0.1", port
    try:
        ipaddress.IPv6Address(match["ipv6"])
    except ValueError:
        raise ValueError(f"[{match['ipv6']}] is not an IPv6 address: {_LISTEN_EXAMPLE}") from None
    return match["ipv6"], port


class MetricsOptions(BaseModel):
    """KrakenD's `telemetry/metrics`. The namespace being present, even as `{}`, turns metrics on."""

    model_config = ConfigDict(extra="allow")

    listen_address: str = DEFAULT_LISTEN
    # KrakenD aggregates over this window; our counters are cumulative, so it is accepted and unused.
    collection_time: Duration = Field(default=60.0, ge=0)
    proxy_disabled: StrictBool = False
    router_disabled: StrictBool = False
    backend_disabled: StrictBool = False
    endpoint_disabled: StrictBool = False

    @field_validator("listen_address", mode="before")
    @classmethod
    def _valid_listen_address(cls, value: Any) -> Any:
        parse_listen_address(value)
        return value

    @property
    def address(self) -> tuple[str, int]:
        return parse_listen_address(self.listen_address)

    @property
    def url(self) -> str:
        """Where /metrics is served, to print: the host as given ("127.0.0.1" when none), IPv6 in brackets."""
        host, port = self.address
        return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"

    @property
    def endpoint_metrics(self) -> bool:
        """Per-endpoint request counts and latencies."""
        return not (self.router_disabled or self.endpoint_disabled)

    @property
    def backend_metrics(self) -> bool:
        """Per-backend call counts and latencies (Lambda function metrics are always on)."""
        return not (self.backend_disabled or self.proxy_disabled)


def parse(value: Any, ctx: NamespaceContext) -> MetricsOptions:
    options = parse_namespace_model(MetricsOptions, value, ctx, '{"listen_address": "127.0.0.1:9091"}')
    if options.listen_address.startswith(":"):  # KrakenD's usual ":9091" would silently change meaning
        ctx.warnings.append(
            ("listen_address", f"{options.listen_address!r} " + LOOPBACK_ONLY.format(port=options.address[1]))
        )
    return options


METRICS_NAMESPACE = Namespace(NAMESPACE, "service", parse)


def metrics_options(service: ServiceConfig) -> MetricsOptions | None:
    """The options, or None when the config does not turn metrics on."""
    return service.namespaces.get(NAMESPACE)


# --- worker side: plain counters, written to a file now and then ----------------------------------------------


class _Series:
    """Counts by status or outcome plus a latency histogram, for one set of labels."""

    __slots__ = ("labels", "counts", "buckets", "sum", "count")

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.counts: dict[Any, int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "counts": {str(k): v for k, v in self.counts.items()},
            "buckets": self.buckets,
            "sum": self.sum,
            "count": self.count,
        }

    def observe(self, key: Any, seconds: float) -> None:
        """One request or call: `key` is its status or outcome."""
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1


class EndpointStats(_Series):
    """Requests of one endpoint: `observe(status, seconds)`."""

    __slots__ = ()


class BackendStats(_Series):
    """Calls of one backend: `observe(outcome, seconds)`, outcome "success", "error" or "timeout"."""

    __slots__ = ()


class BreakerStats(_Series):
    """State changes of one backend's circuit breaker(s): `observe(new_state, 0.0)` (no latency: never exported)."""

    __slots__ = ()


# FunctionStats repeats the update inline rather than calling the base: a second call would double its cost.
class FunctionStats(_Series):
    __slots__ = ("retries",)

    def __init__(self, labels: dict[str, str]) -> None:
        super().__init__(labels)
        self.retries = 0

    def observe(self, outcome: str, seconds: float, retries: int = 0) -> None:
        """outcome: "success", "function_error", "throttled", "timeout" or "aws_error"."""
        counts = self.counts
        counts[outcome] = counts.get(outcome, 0) + 1
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1
        self.retries += retries

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "retries": self.retries}


class WorkerMetrics:
    """One worker's counts. Get the stats objects at start-up and call their `observe` per request.
    `in_flight` is read from `in_flight_of` (the server's own count) at each write, or set directly.
    `run()` writes the snapshot in the background."""

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        flush_interval: float = 0.5,
        pid: int | None = None,
        in_flight_of: Callable[[], int] | None = None,
    ) -> None:
        self.pid = os.getpid() if pid is None else pid  # another pid only where tests stand in for other workers
        self.path = Path(directory) / f"{self.pid}-{time.time_ns()}.json"
        self.flush_interval = flush_interval
        self.in_flight = 0
        self._in_flight_of = in_flight_of
        self._endpoints: dict[tuple[str, str], EndpointStats] = {}
        self._backends: dict[tuple[str, str, str], BackendStats] = {}
        self._functions: dict[str, FunctionStats] = {}
        self._breakers: dict[tuple[str, str, str, str], BreakerStats] = {}
        self._flushed: tuple[int, int] | None = None  # (observations, in_flight) in the file

    def endpoint(self, method: str, template: str) -> EndpointStats:
        key = (template, method)
        if key not in self._endpoints:
            self._endpoints[key] = EndpointStats({"endpoint": template, "method": method})
        return self._endpoints[key]

    def backend(self, endpoint: str, method: str, backend: str) -> BackendStats:
        key = (endpoint, method, backend)
        if key not in self._backends:
            self._backends[key] = BackendStats({"endpoint": endpoint, "method": method, "backend": backend})
        return self._backends[key]

    def breaker(self, endpoint: str, method: str, backend: str, name: str) -> BreakerStats:
        """The state changes of a backend's breakers (all of a backend's per-function breakers share one)."""
        key = (endpoint, method, backend, name)
        if key not in self._breakers:
            self._breakers[key] = BreakerStats(
                {"endpoint": endpoint, "method": method, "backend": backend, "breaker": name}
            )
        return self._breakers[key]

    def function(self, name: str) -> FunctionStats:
        stats = self._functions.get(name)
        if stats is None:
            if len(self._functions) >= MAX_FUNCTIONS:
                name = "_other"
                stats = self._functions.get(name)
            if stats is None:
                stats = self._functions[name] = FunctionStats({"function": name})
        return stats

    def flush(self) -> None:
        """Write the snapshot if anything changed since the last write. Never raises: metrics must not take
        the worker down."""
        if self._in_flight_of is not None:
            self.in_flight = self._in_flight_of()
        series = (self._endpoints, self._backends, self._functions, self._breakers)
        state = (sum(s.count for group in series for s in group.values()), self.in_flight)
        if state == self._flushed:
            return
        snapshot = {
            "pid": self.pid,
            "in_flight": self.in_flight,
            "requests": [s.to_json() for s in self._endpoints.values()],
            "backend_calls": [s.to_json() for s in self._backends.values()],
            "lambda_invocations": [s.to_json() for s in self._functions.values()],
            "breaker_changes": [s.to_json() for s in self._breakers.values()],
        }
        tmp = self.path.with_suffix(".tmp")  # not *.json: the exporter never sees a half-written file
        try:
            tmp.write_bytes(orjson.dumps(snapshot))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot write metrics snapshot %s: %s", self.path, exc)
            return
        self._flushed = state

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            self.flush()

    def close(self) -> None:
        self._in_flight_of = None
        self.in_flight = 0  # the worker is gone: its requests are no longer in flight
        self.flush()


# --- main process: sum the snapshots at scrape time ------------------------------------------------------------

# snapshot key → (counter name, histogram name or None, label names, the label "counts" are keyed by)
_KINDS = {
    "requests": ("lambdagate_requests", "lambdagate_request_duration_seconds", ("endpoint", "method"), "status"),
    "backend_calls": (
        "lambdagate_backend_calls",
        "lambdagate_backend_call_duration_seconds",
        ("endpoint", "method", "backend"),
        "outcome",
    ),
    "lambda_invocations": (
        "lambdagate_lambda_invocations",
        "lambdagate_lambda_invocation_duration_seconds",
        ("function",),
        "outcome",
    ),
    # a counter only (no histogram): circuit breaker state changes, by the state changed to
    "breaker_changes": ("lambdagate_circuit_breaker_changes", None, ("endpoint", "method", "backend", "breaker"), "to"),
}
_HELP = {
    "requests": ("Requests answered, by endpoint, method and status.", "Request latency."),
    "backend_calls": ("Backend calls, by outcome.", "Backend call latency."),
    "lambda_invocations": ("Lambda invocations, by outcome.", "Lambda invocation latency, retries included."),
    "breaker_changes": ("Circuit breaker state changes, by the state changed to (closed, open, half-open).", ""),
}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _add(
    totals: dict[tuple, list],
    key: tuple,
    counts: dict[str, int],
    buckets: list[int],
    total: float,
    count: int,
    retries: int,
) -> None:
    """Add one series to `totals`: key → [counts, buckets, sum, count, retries]."""
    acc = totals.setdefault(key, [{}, [0] * len(buckets), 0.0, 0, 0])
    for label, n in counts.items():
        acc[0][label] = acc[0].get(label, 0) + n
    acc[1] = [a + b for a, b in zip(acc[1], buckets)]
    acc[2] += total
    acc[3] += count
    acc[4] += retries


# Listening sockets of the metrics servers in this process. granian forks its workers after the listener is
# open: they would hold it (and its port) open for nothing, so a forked child closes them. One hook serves every
# server, whatever their number; a server shut down has a closed socket, and closing it again does nothing.
_listeners: weakref.WeakSet = weakref.WeakSet()


def _close_listeners_in_child() -> None:
    for sock in list(_listeners):
        sock.close()  # only the fd: the server thread was not copied into the child


os.register_at_fork(after_in_child=_close_listeners_in_child)


class MetricsExporter:
    """A prometheus_client collector over the workers' snapshot directory."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self._warned: set[str] = set()  # a bad file is reported once, not at every scrape
        self._lock = threading.Lock()  # prometheus_client scrapes in a thread per request: one fold at a time
        self._named: set[str] = set()  # functions with a series of their own (see _cap)

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
        from prometheus_client.utils import floatToGoString

        with self._lock:
            totals, in_flight, workers = self._gather()

        bounds = [floatToGoString(b) for b in LATENCY_BUCKETS] + ["+Inf"]
        families = {
            kind: (
                CounterMetricFamily(counter, _HELP[kind][0], labels=[*labels, by]),
                HistogramMetricFamily(histogram, _HELP[kind][1], labels=list(labels)) if histogram else None,
            )
            for kind, (counter, histogram, labels, by) in _KINDS.items()
        }
        retries = CounterMetricFamily("lambdagate_lambda_retries", "Lambda invocation retries.", labels=["function"])
        for (kind, values), (counts, buckets, total, _, retried) in sorted(totals.items(), key=lambda kv: kv[0]):
            counter, histogram = families[kind]
            for label, n in sorted(counts.items()):
                counter.add_metric([*values, label], n)
            if histogram is None:
                continue
            running, cumulative = 0, []
            for bound, n in zip(bounds, buckets):
                running += n
                cumulative.append((bound, running))
            histogram.add_metric(list(values), cumulative, total)
            if kind == "lambda_invocations":
                retries.add_metric(list(values), retried)
        for counter, histogram in families.values():
            yield counter
            if histogram is not None:
                yield histogram
        yield retries
        yield GaugeMetricFamily("lambdagate_in_flight_requests", "Requests being served now.", value=in_flight)
        yield GaugeMetricFamily("lambdagate_workers", "Worker processes reporting metrics.", value=workers)

    def _gather(self) -> tuple[dict[tuple, list], int, int]:
        """(totals by (kind, label values), in flight, live workers) over all files. Files of dead workers are
        folded into retired.json first."""
        totals: dict[tuple, list] = {}
        retired: dict[tuple, list] = {}
        dead: list[Path] = []
        in_flight = workers = 0
        for path in sorted(self.directory.glob("*.json")):
            snapshot = self._read(path)
            if snapshot is None:
                continue
            pid, flying, entries = snapshot
            if path.name == RETIRED:
                for entry in entries:
                    _add(retired, *entry)
            elif _alive(pid):
                in_flight += flying
                workers += 1
                for entry in entries:
                    _add(totals, *entry)
            else:
                dead.append(path)
        if dead:
            self._retire(retired, dead)
        for key, value in retired.items():
            _add(totals, key, *value)
        self._cap(totals)
        return totals, in_flight, workers

    def _retire(self, retired: dict[tuple, list], dead: list[Path]) -> None:
        """Add the dead workers' files to `retired`, write it to retired.json, and only then delete the files:
        if the write fails they are still there (and folded at the next scrape), so nothing is lost."""
        for path in dead:
            snapshot = self._read(path)  # again: the worker may have written its last counts after the first read
            for entry in snapshot[2] if snapshot else ():
                _add(retired, *entry)
        self._cap(retired)
        doc: dict[str, Any] = {"pid": 0, "in_flight": 0, **{kind: [] for kind in _KINDS}}
        for (kind, values), (counts, buckets, total, count, retries) in retired.items():
            doc[kind].append(
                {
                    "labels": dict(zip(_KINDS[kind][2], values)),
                    "counts": counts,
                    "buckets": buckets,
                    "sum": total,
                    "count": count,
                    "retries": retries,
                }
            )
        path = self.directory / RETIRED
        try:
            path.with_suffix(".tmp").write_bytes(orjson.dumps(doc))
            os.replace(path.with_suffix(".tmp"), path)
            for done in dead:
                done.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot fold exited workers' metrics into %s: %s", path, exc)

    def _cap(self, totals: dict[tuple, list]) -> None:
        """Keep at most MAX_SERIES function label values ("_other" included): names get their own series first
        come, first served and keep it at every later scrape; the rest are folded into "_other"."""
        other = ("lambda_invocations", ("_other",))
        for key in sorted(k for k in totals if k[0] == "lambda_invocations" and k != other):
            if key[1][0] in self._named:
                continue
            if len(self._named) < MAX_SERIES - 1:
                self._named.add(key[1][0])
            else:
                _add(totals, other, *totals.pop(key))

    def _read(self, path: Path) -> tuple[int, int, list[tuple]] | None:
        """(pid, in_flight, entries) of one snapshot, checked whole so a bad file adds nothing; None if bad."""
        try:
            doc = orjson.loads(path.read_bytes())
            pid, flying = doc["pid"], doc["in_flight"]
            # pid 0 only for retired.json, which is never checked for liveness: os.kill(0, ...) means the group
            if not (type(pid) is int and (pid > 0 or path.name == RETIRED) and type(flying) is int):
                raise ValueError("bad pid or in_flight")
            entries = []
            for kind, (_, _, labels, _) in _KINDS.items():
                for s in doc.get(kind, []):
                    values = tuple(str(s["labels"][name]) for name in labels)
                    counts = {str(k): int(v) for k, v in s["counts"].items()}
                    buckets = [int(n) for n in s["buckets"]]
                    if len(buckets) != len(LATENCY_BUCKETS) + 1:
                        raise ValueError(f"{len(buckets)} buckets")
                    entries.append(
                        ((kind, values), counts, buckets, float(s["sum"]), int(s["count"]), int(s.get("retries", 0)))
                    )
        except FileNotFoundError:  # removed since the glob
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            if path.name not in self._warned:
                self._warned.add(path.name)
                log.warning("skipping unreadable metrics snapshot %s: %s", path, exc)
            return None
        return pid, flying, entries

    def serve(self, host: str, port: int) -> MetricsServer:
        """Serve /metrics (text exposition format) from a daemon thread, with only this collector."""
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        server, thread = start_http_server(port, addr=host, registry=registry)
        _listeners.add(server.socket)
        return MetricsServer(server, thread)


class MetricsServer:
    def __init__(self, server: Any, thread: Any) -> None:
        self.server, self.thread = server, thread

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    close = shutdown

"""Prometheus metrics: the `telemetry/metrics` namespace, worker snapshots, and /metrics summed over them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lambdagate.telemetry.metrics import (
    LATENCY_BUCKETS,
    MAX_FUNCTIONS,
    MAX_SERIES,
    RETIRED,
    MetricsExporter,
    MetricsOptions,
    WorkerMetrics,
    metrics_options,
    parse_listen_address,
)
from tests.support.configs import load_with_namespace, namespace_errors
from tests.support.procs import free_port

EXAMPLE = 'write it like "127.0.0.1:9091", or "0.0.0.0:9091" for all interfaces'
PATH = 'extra_config["telemetry/metrics"]'

# --- the namespace, through the real loader ---------------------------------------------------------------


def load(tmp_path: Path, metrics: Any = None) -> Any:
    return load_with_namespace(tmp_path, "telemetry/metrics", metrics)


def config_errors(tmp_path: Path, metrics: Any) -> list[str]:
    return namespace_errors(tmp_path, "telemetry/metrics", metrics)


def test_metrics_are_off_without_the_namespace_and_on_with_an_empty_one(tmp_path: Path) -> None:
    assert metrics_options(load(tmp_path).service) is None
    options = metrics_options(load(tmp_path, {}).service)
    assert options == MetricsOptions()
    assert (options.address, options.collection_time, options.endpoint_metrics, options.backend_metrics) == (
        ("127.0.0.1", 9091),
        60.0,
        True,
        True,
    )  # loopback unless all interfaces are asked for


def test_good_values_are_parsed(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        {"listen_address": "127.0.0.1:9100", "collection_time": "30s", "router_disabled": True, "proxy_disabled": True},
    )
    options = metrics_options(loaded.service)
    assert loaded.warnings == []
    assert (options.address, options.collection_time) == (("127.0.0.1", 9100), 30.0)
    assert (options.endpoint_metrics, options.backend_metrics) == (False, False)
    options = metrics_options(load(tmp_path, {"endpoint_disabled": True}).service)
    assert (options.endpoint_metrics, options.backend_metrics) == (False, True)
    options = metrics_options(load(tmp_path, {"backend_disabled": True}).service)
    assert (options.endpoint_metrics, options.backend_metrics) == (True, False)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        (":9091", ("127.0.0.1", 9091)),
        ("0.0.0.0:9091", ("0.0.0.0", 9091)),
        ("127.0.0.1:1", ("127.0.0.1", 1)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::1]:9091", ("::1", 9091)),
        ("[::]:80", ("::", 80)),
    ],
)
def test_listen_addresses(text: str, address: tuple[str, int]) -> None:
    assert parse_listen_address(text) == address


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("9091", f"'9091' is not a listen address: {EXAMPLE}"),
        ("127.0.0.1", f"'127.0.0.1' is not a listen address: {EXAMPLE}"),
        ("host:http", f"'host:http' is not a listen address: {EXAMPLE}"),
        ("::1:9091", f"'::1:9091' is not a listen address: {EXAMPLE}"),
        (":0", f"port 0 is out of range 1-65535: {EXAMPLE}"),
        (":70000", f"port 70000 is out of range 1-65535: {EXAMPLE}"),
        ("[nope]:9091", f"[nope] is not an IPv6 address: {EXAMPLE}"),
        (9091, f"9091 is not a listen address: {EXAMPLE}"),
    ],
)
def test_bad_listen_address_names_its_path(tmp_path: Path, value: Any, message: str) -> None:
    assert config_errors(tmp_path, {"listen_address": value}) == [f"{PATH}.listen_address: {message}"]


@pytest.mark.parametrize(
    ("text", "url"),
    [
        (":9091", "http://127.0.0.1:9091/metrics"),
        ("0.0.0.0:9091", "http://0.0.0.0:9091/metrics"),
        ("127.0.0.1:9091", "http://127.0.0.1:9091/metrics"),
        ("localhost:9100", "http://localhost:9100/metrics"),
        ("[::1]:9091", "http://[::1]:9091/metrics"),
        ("[::]:80", "http://[::]:80/metrics"),
    ],
)
def test_url_to_print(text: str, url: str) -> None:
    assert MetricsOptions(listen_address=text).url == url


def test_a_port_without_host_means_loopback_and_is_warned_about(tmp_path: Path) -> None:
    """KrakenD reads ":9091" as all interfaces; here exposing the metrics must be explicit."""
    loaded = load(tmp_path, {"listen_address": ":9100"})
    assert metrics_options(loaded.service).address == ("127.0.0.1", 9100)
    assert [str(w) for w in loaded.warnings] == [
        f"{PATH}.listen_address: ':9100' listens on 127.0.0.1 only (in KrakenD it means all interfaces); write "
        '"0.0.0.0:9100" or "[::]:9100" to serve metrics on every interface'
    ]
    for explicit in ("0.0.0.0:9100", "[::]:9100", "127.0.0.1:9100"):
        assert load(tmp_path, {"listen_address": explicit}).warnings == []


def test_other_bad_values(tmp_path: Path) -> None:
    assert config_errors(tmp_path, {"router_disabled": "yes", "collection_time": "soon"}) == [
        f'{PATH}.collection_time: malformed duration \'soon\': write it like "3s", "500ms" or "1m30s"',
        f"{PATH}.router_disabled: Input should be a valid boolean, got str 'yes': write true or false, without quotes",
    ]
    assert config_errors(tmp_path, [":9091"]) == [
        f'{PATH}: must be an object such as {{"listen_address": "127.0.0.1:9091"}}'
    ]


def test_unknown_key_is_warned_about(tmp_path: Path) -> None:
    loaded = load(tmp_path, {"export_as": "prometheus"})
    assert [str(w) for w in loaded.warnings] == [f"{PATH}.export_as: not supported, ignored"]
    assert metrics_options(loaded.service) is not None


# --- workers write snapshots, the exporter sums them over real HTTP ---------------------------------------


@pytest.fixture
def scrape(tmp_path: Path) -> Iterator[Any]:
    """Fetch /metrics of an exporter over `tmp_path`: its text, or with parse=True {sample name: {labels: value}}."""
    server = MetricsExporter(tmp_path).serve("127.0.0.1", port := free_port())

    def fetch(parse: bool = True) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            assert reply.headers["Content-Type"].startswith("text/plain")
            text = reply.read().decode()
        if not parse:
            return text
        samples: dict[str, dict[tuple, float]] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
        return samples

    yield fetch
    server.shutdown()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()  # reaped: the pid names no process now
    return proc.pid


def labels(**kw: str) -> tuple:
    return tuple(sorted(kw.items()))


def test_counters_and_histograms_are_summed_over_workers(tmp_path: Path, scrape: Any) -> None:
    one, two = WorkerMetrics(tmp_path), WorkerMetrics(tmp_path, pid=dead_pid())
    for worker in (one, two):
        users = worker.endpoint("GET", "/users/{id}")
        users.observe(200, 0.003)
        users.observe(200, 0.001)  # on a bound: counted in that bucket (le)
        worker.backend("/users/{id}", "GET", "http://svc/u").observe("success", 0.002)
        worker.function("users").observe("throttled", 0.2, retries=2)
        worker.in_flight = 4
    one.endpoint("GET", "/users/{id}").observe(404, 99.0)  # beyond the last bound: +Inf only
    one.endpoint("POST", "/users").observe(201, 0.5)
    one.flush()
    two.flush()

    samples = scrape()
    ep = labels(endpoint="/users/{id}", method="GET")
    assert samples["lambdagate_requests_total"] == {
        labels(endpoint="/users/{id}", method="GET", status="200"): 4,
        labels(endpoint="/users/{id}", method="GET", status="404"): 1,
        labels(endpoint="/users", method="POST", status="201"): 1,
    }
    buckets = {
        dict(k)["le"]: v
        for k, v in samples["lambdagate_request_duration_seconds_bucket"].items()
        if dict(k)["endpoint"] == "/users/{id}"
    }
    assert list(buckets) == [str(b) for b in LATENCY_BUCKETS] + ["+Inf"]
    assert (buckets["0.001"], buckets["0.0025"], buckets["0.005"], buckets["30.0"], buckets["+Inf"]) == (2, 2, 4, 4, 5)
    assert list(buckets.values()) == sorted(buckets.values())  # cumulative
    assert samples["lambdagate_request_duration_seconds_count"][ep] == 5
    assert samples["lambdagate_request_duration_seconds_sum"][ep] == pytest.approx(2 * 0.004 + 99.0)

    backend = labels(endpoint="/users/{id}", method="GET", backend="http://svc/u")
    assert samples["lambdagate_backend_calls_total"] == {labels(**dict(backend), outcome="success"): 2}
    assert samples["lambdagate_backend_call_duration_seconds_count"] == {backend: 2}
    assert samples["lambdagate_lambda_invocations_total"] == {labels(function="users", outcome="throttled"): 2}
    assert samples["lambdagate_lambda_retries_total"] == {labels(function="users"): 4}
    assert samples["lambdagate_lambda_invocation_duration_seconds_sum"] == {
        labels(function="users"): pytest.approx(0.4)
    }
    # The dead worker's counts stay, but only the live one is in flight.
    assert samples["lambdagate_in_flight_requests"] == {(): 4}
    assert samples["lambdagate_workers"] == {(): 1}


def test_metric_names_are_exact(tmp_path: Path, scrape: Any) -> None:
    worker = WorkerMetrics(tmp_path)
    worker.endpoint("GET", "/a").observe(200, 0.01)
    worker.backend("/a", "GET", "b").observe("error", 0.01)
    worker.function("f").observe("success", 0.01, retries=1)
    worker.flush()
    text = scrape(parse=False)
    types = dict(line.split()[2:] for line in text.splitlines() if line.startswith("# TYPE"))
    assert types == {
        "lambdagate_requests_total": "counter",
        "lambdagate_request_duration_seconds": "histogram",
        "lambdagate_backend_calls_total": "counter",
        "lambdagate_backend_call_duration_seconds": "histogram",
        "lambdagate_lambda_invocations_total": "counter",
        "lambdagate_lambda_retries_total": "counter",
        "lambdagate_lambda_invocation_duration_seconds": "histogram",
        "lambdagate_circuit_breaker_changes_total": "counter",
        "lambdagate_in_flight_requests": "gauge",
        "lambdagate_workers": "gauge",
    }
    assert 'lambdagate_requests_total{endpoint="/a",method="GET",status="200"} 1.0' in text
    assert 'lambdagate_backend_calls_total{backend="b",endpoint="/a",method="GET",outcome="error"} 1.0' in text


def test_bad_files_are_skipped(tmp_path: Path, scrape: Any, caplog: pytest.LogCaptureFixture) -> None:
    worker = WorkerMetrics(tmp_path)
    worker.endpoint("GET", "/a").observe(200, 0.01)
    worker.flush()
    (tmp_path / "1-1.json").write_bytes(b'{"pid": 1, "in_flight": 3, "requests": [{"lab')  # cut short
    (tmp_path / "2-2.json").write_bytes(
        orjson.dumps(
            {
                "pid": 2,
                "in_flight": 0,
                "requests": [
                    {
                        "labels": {"endpoint": "/a", "method": "GET"},
                        "counts": {"200": 5},
                        "buckets": [5],
                        "sum": 1,
                        "count": 5,
                    }
                ],
            }
        )
    )
    (tmp_path / "3-3.json").write_bytes(b"[]")
    (tmp_path / "4-4.tmp").write_bytes(b"half")  # a write in progress is not read at all

    samples = scrape()
    assert samples["lambdagate_requests_total"] == {labels(endpoint="/a", method="GET", status="200"): 1}
    assert samples["lambdagate_workers"] == {(): 1}
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skipped) == 3 and not any("4-4" in m for m in skipped)
    scrape()
    assert len([r for r in caplog.records if "skipping" in r.getMessage()]) == 3  # once per file


def test_function_names_are_capped(tmp_path: Path, scrape: Any) -> None:
    worker = WorkerMetrics(tmp_path)
    stats = [worker.function(f"fn-{i}") for i in range(MAX_FUNCTIONS + 5)]
    assert worker.function("fn-0") is stats[0]
    assert len({id(s) for s in stats}) == MAX_FUNCTIONS + 1
    assert stats[-1] is stats[-5] is worker.function("yet-another")
    for s in stats:
        s.observe("success", 0.01)
    worker.flush()

    counts = scrape()["lambdagate_lambda_invocations_total"]
    assert len(counts) == MAX_FUNCTIONS + 1
    assert counts[labels(function="_other", outcome="success")] == 5
    assert counts[labels(function="fn-999", outcome="success")] == 1


def test_snapshot_is_written_only_when_something_changed(tmp_path: Path) -> None:
    worker = WorkerMetrics(tmp_path)
    stats = worker.endpoint("GET", "/a")
    worker.flush()
    assert worker.path.exists() and worker.path.name.startswith(f"{worker.pid}-")
    worker.path.unlink()  # a rewrite would bring it back
    worker.flush()
    assert not worker.path.exists()
    stats.observe(200, 0.01)
    worker.flush()
    assert orjson.loads(worker.path.read_bytes())["requests"][0]["count"] == 1
    worker.path.unlink()
    worker.in_flight += 1
    worker.flush()
    assert orjson.loads(worker.path.read_bytes())["in_flight"] == 1
    worker.close()
    assert orjson.loads(worker.path.read_bytes())["in_flight"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [worker.path.name]  # no tmp file left behind


def test_in_flight_is_read_from_the_servers_count(tmp_path: Path) -> None:
    requests = {"in_flight": 3}
    worker = WorkerMetrics(tmp_path, in_flight_of=lambda: requests["in_flight"])
    worker.flush()
    assert orjson.loads(worker.path.read_bytes())["in_flight"] == 3
    requests["in_flight"] = 1
    worker.flush()  # a changed gauge alone is worth a write
    assert orjson.loads(worker.path.read_bytes())["in_flight"] == 1
    worker.close()  # the worker is gone: nothing of it is in flight, whatever the count said
    assert orjson.loads(worker.path.read_bytes())["in_flight"] == 0


def test_run_flushes_in_the_background(tmp_path: Path) -> None:
    worker = WorkerMetrics(tmp_path, flush_interval=0.01)

    async def main() -> None:
        task = asyncio.create_task(worker.run())
        worker.backend("/a", "GET", "b").observe("timeout", 1.0)
        for _ in range(200):
            await asyncio.sleep(0.01)
            if worker.path.exists():
                break
        task.cancel()

    asyncio.run(main())
    assert orjson.loads(worker.path.read_bytes())["backend_calls"][0]["counts"] == {"timeout": 1}


def test_same_labels_give_the_same_stats(tmp_path: Path) -> None:
    worker = WorkerMetrics(tmp_path)
    assert worker.endpoint("GET", "/a") is worker.endpoint("GET", "/a")
    assert worker.backend("/a", "GET", "b") is worker.backend("/a", "GET", "b")
    assert worker.endpoint("GET", "/a") is not worker.endpoint("POST", "/a")


# --- files of exited workers, cardinality, forked children ---------------------------------------------------


def collected(exporter: MetricsExporter) -> dict[str, dict[tuple, float]]:
    """One collect() without HTTP, as {sample name: {labels: value}}."""
    samples: dict[str, dict[tuple, float]] = {}
    for family in exporter.collect():
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def exited_worker(directory: Path, pid: int, requests: int) -> WorkerMetrics:
    """The last snapshot of a worker that exited: `requests` times GET /a → 200, one Lambda call with a retry."""
    worker = WorkerMetrics(directory, pid=pid)
    for _ in range(requests):
        worker.endpoint("GET", "/a").observe(200, 0.01)
    worker.function("f").observe("success", 0.02, retries=1)
    worker.in_flight = 1
    worker.flush()  # not close(): a crash, in flight stays 1 in the file
    return worker


A200 = labels(endpoint="/a", method="GET", status="200")


def test_files_of_dead_workers_are_folded_into_retired_json(tmp_path: Path) -> None:
    live = WorkerMetrics(tmp_path)
    live.endpoint("GET", "/a").observe(200, 0.01)
    live.in_flight = 2
    live.flush()
    exited_worker(tmp_path, dead_pid(), 3)
    exited_worker(tmp_path, dead_pid(), 4)
    exporter = MetricsExporter(tmp_path)

    first = collected(exporter)
    assert first["lambdagate_requests_total"] == {A200: 8}
    assert first["lambdagate_request_duration_seconds_sum"] == {
        labels(endpoint="/a", method="GET"): pytest.approx(0.08)
    }
    assert first["lambdagate_lambda_invocations_total"] == {labels(function="f", outcome="success"): 2}
    assert first["lambdagate_lambda_retries_total"] == {labels(function="f"): 2}
    assert (first["lambdagate_in_flight_requests"], first["lambdagate_workers"]) == ({(): 2}, {(): 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.path.name, RETIRED])
    retired = orjson.loads((tmp_path / RETIRED).read_bytes())
    assert (retired["pid"], retired["in_flight"], retired["requests"][0]["counts"]) == (0, 0, {"200": 7})
    assert collected(exporter) == first  # nothing lost, nothing folded twice

    exited_worker(tmp_path, dead_pid(), 5)  # a later exit adds to retired.json
    third = collected(exporter)
    assert third["lambdagate_requests_total"] == {A200: 13}
    assert third["lambdagate_lambda_retries_total"] == {labels(function="f"): 3}
    assert orjson.loads((tmp_path / RETIRED).read_bytes())["requests"][0]["counts"] == {"200": 12}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.path.name, RETIRED])
    assert collected(MetricsExporter(tmp_path)) == third  # retired.json is all a new reader needs


def test_a_failed_fold_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gone = exited_worker(tmp_path, dead_pid(), 3)
    exporter = MetricsExporter(tmp_path)

    def refuse(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    assert collected(exporter)["lambdagate_requests_total"] == {A200: 3}
    assert "cannot fold" in caplog.text and gone.path.exists()
    monkeypatch.undo()
    assert collected(exporter)["lambdagate_requests_total"] == {A200: 3}
    assert [p.name for p in tmp_path.iterdir()] == [RETIRED]


def test_concurrent_scrapes_fold_once(tmp_path: Path) -> None:
    gone = dead_pid()
    for i in range(100):
        exited_worker(tmp_path, gone, 1).path.rename(tmp_path / f"{gone}-{i}.json")  # distinct names for sure
    exporter = MetricsExporter(tmp_path)
    start, results = threading.Barrier(4), []

    def scrape() -> None:
        start.wait()
        results.append(collected(exporter)["lambdagate_requests_total"])

    threads = [threading.Thread(target=scrape) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [{A200: 100}] * 4
    assert [p.name for p in tmp_path.iterdir()] == [RETIRED]
    assert collected(exporter)["lambdagate_requests_total"] == {A200: 100}


def test_function_series_are_capped_after_merging(tmp_path: Path) -> None:
    total = MAX_SERIES + 1000
    for first in range(0, total, MAX_FUNCTIONS):  # each worker stays within its own cap
        worker = WorkerMetrics(tmp_path)
        worker.path = tmp_path / f"{worker.pid}-{first}.json"
        for i in range(first, first + MAX_FUNCTIONS):
            worker.function(f"fn-{i:05}").observe("success", 0.01)
        worker.flush()
    exporter = MetricsExporter(tmp_path)

    samples = collected(exporter)
    counts = samples["lambdagate_lambda_invocations_total"]
    assert len(counts) == len(samples["lambdagate_lambda_retries_total"]) == MAX_SERIES
    assert len(samples["lambdagate_lambda_invocation_duration_seconds_count"]) == MAX_SERIES
    assert counts[labels(function=f"fn-{MAX_SERIES - 2:05}", outcome="success")] == 1
    assert counts[labels(function="_other", outcome="success")] == total - (MAX_SERIES - 1)

    late = WorkerMetrics(tmp_path)  # a new name, first in sort order: the names that have a series keep it
    late.function("a-late-one").observe("success", 0.01)
    late.flush()
    counts = collected(exporter)["lambdagate_lambda_invocations_total"]
    assert len(counts) == MAX_SERIES and labels(function="a-late-one", outcome="success") not in counts
    assert counts[labels(function="fn-00000", outcome="success")] == 1
    assert counts[labels(function="_other", outcome="success")] == total - (MAX_SERIES - 1) + 1


def test_forked_children_close_the_metrics_listeners(tmp_path: Path) -> None:
    servers = [MetricsExporter(tmp_path).serve("127.0.0.1", free_port()) for _ in range(2)]
    MetricsExporter(tmp_path).serve("127.0.0.1", free_port()).shutdown()  # closed before the fork: no harm
    fds = [s.server.socket.fileno() for s in servers]

    def fd_open(fd: int) -> bool:
        try:
            os.fstat(fd)
        except OSError:
            return False
        return True

    try:
        pid = os.fork()
        if pid == 0:  # the child: exit 0 if both listeners are closed, 1 if not, 2 on any error
            code = 2
            try:
                closed = all(s.server.socket.fileno() == -1 for s in servers)
                code = 0 if closed and not any(fd_open(fd) for fd in fds) else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        for server in servers:  # the parent still serves
            assert fd_open(server.server.socket.fileno())
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as reply:
                assert reply.status == 200
    finally:
        for server in servers:
            server.shutdown()

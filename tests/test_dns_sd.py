"""`sd: "dns"`: SRV names resolved through a real DNS server on loopback (tests/support/srv_dns.py, reached through
LAMBDAGATE_SD_DNS_SERVER), weighted round robin, re-resolution when the TTL runs out, and the config rules."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from lambdagate.backends.dns_sd import weighted
from lambdagate.config import LoadOptions, validate_document
from lambdagate.errors import ConfigError
from tests.support.procs import Process, free_port, python_module, serve_module
from tests.support.rawhttp import build, exchange


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    with (
        serve_module("tests.support.raw_upstream", "/ready", tmp_path_factory.mktemp("a")) as a,
        serve_module("tests.support.raw_upstream", "/ready", tmp_path_factory.mktemp("b")) as b,
    ):
        yield int(a.rsplit(":", 1)[1]), int(b.rsplit(":", 1)[1])


@pytest.fixture
def dns(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    records = tmp_path / "records.json"
    records.write_text("{}")
    port = free_port()
    proc = Process(python_module("tests.support.srv_dns", str(port), str(records)), tmp_path / "dns.log")
    time.sleep(0.3)  # a UDP socket has nothing to poll; the first lookups retry anyway
    yield records, port
    proc.stop()


def _records(path: Path, srv: list, additional: bool = False) -> None:
    data = {"ttl": 1, "srv": {"api.service.test.": srv}, "additional": additional}
    data["a"] = {"a.node.test.": "127.0.0.1", "b.node.test.": "127.0.0.1"}
    path.write_text(json.dumps(data))


def _config(**backend) -> dict:
    b = {"host": ["api.service.test"], "sd": "dns", "disable_host_sanitize": True, "url_pattern": "/echo", **backend}
    return {"version": 3, "endpoints": [{"endpoint": "/s", "backend": [b]}]}


def _ports(gw, n: int) -> Counter:
    port = int(gw.url.rsplit(":", 1)[1])
    seen: Counter = Counter()
    for _ in range(n):
        resp = exchange(port, build(b"GET", b"/s"))
        assert resp.status == 200, resp.raw[:300]
        body = json.loads(resp.body)
        seen[({k.lower(): v for k, v in body["headers"]}["host"], body["port"])] += 1
    return seen


def test_weighted_round_robin_over_the_lowest_priority(start_gateway, upstreams, dns):
    (a, b), (records, dns_port) = upstreams, dns
    # weights 3:1 at priority 1; the priority 2 target is a fallback KrakenD never uses while priority 1 answers.
    _records(records, [[1, 30, a, "a.node.test."], [1, 10, b, "b.node.test."], [2, 50, b, "c.node.test."]])
    gw = start_gateway(_config(), env={"LAMBDAGATE_SD_DNS_SERVER": f"127.0.0.1:{dns_port}"})
    seen = _ports(gw, 8)
    assert seen == {(f"a.node.test:{a}", a): 6, (f"b.node.test:{b}", b): 2}


def test_records_are_resolved_again_when_their_ttl_runs_out(start_gateway, upstreams, dns):
    (a, b), (records, dns_port) = upstreams, dns
    _records(records, [[1, 1, a, "a.node.test."]], additional=True)
    gw = start_gateway(_config(), env={"LAMBDAGATE_SD_DNS_SERVER": f"127.0.0.1:{dns_port}"})
    assert set(_ports(gw, 2)) == {(f"a.node.test:{a}", a)}
    _records(records, [[1, 1, b, "b.node.test."]], additional=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and set(_ports(gw, 1)) != {(f"b.node.test:{b}", b)}:
        time.sleep(0.2)
    assert set(_ports(gw, 3)) == {(f"b.node.test:{b}", b)}
    # A failing DNS server keeps the last hosts.
    records.write_text("not json")
    time.sleep(1.5)
    assert set(_ports(gw, 2)) == {(f"b.node.test:{b}", b)}


def test_an_unresolvable_name_fails_the_backend_with_the_cause_logged(start_gateway, dns):
    records, dns_port = dns
    _records(records, [])
    gw = start_gateway(
        _config(host=["nothing.service.test"]), env={"LAMBDAGATE_SD_DNS_SERVER": f"127.0.0.1:{dns_port}"}
    )
    resp = exchange(int(gw.url.rsplit(":", 1)[1]), build(b"GET", b"/s"))
    assert resp.status == 500 and "no hosts resolved for SRV nothing.service.test" in gw.log()


def test_krakens_weight_scaling():
    rec = lambda p, w, port, t: SimpleNamespace(priority=p, weight=w, port=port, target=t)  # noqa: E731
    assert weighted([rec(0, 20, 1, "a."), rec(0, 10, 2, "b.")], "http") == ["http://a:1"] * 2 + ["http://b:2"]
    # Summing past 100: scaled to 100 first (60:40 → 3:2 once divided by the common divisor).
    assert Counter(weighted([rec(0, 600, 1, "a."), rec(0, 400, 2, "b.")], "https")) == {
        "https://a:1": 3,
        "https://b:2": 2,
    }
    assert weighted([rec(0, 0, 1, "a."), rec(0, 5, 2, "b.")], "http") == ["http://b:2"]  # weight 0: unused
    assert weighted([rec(0, 0, 1, "a."), rec(0, 0, 2, "b.")], "http") == ["http://a:1", "http://b:2"]


def _issues(config: dict) -> tuple[list[str], list[str]]:
    try:
        loaded = validate_document(config, LoadOptions())
    except ConfigError as exc:
        return [str(i) for i in exc.issues], []
    return [], [str(w) for w in loaded.warnings]


def test_config_rules():
    errors, warnings = _issues(_config())
    assert errors == [] and warnings == []
    # Without disable_host_sanitize the scheme KrakenD's sanitising adds is not part of the SRV name.
    assert _issues(_config(disable_host_sanitize=False)) == ([], [])
    errors, _ = _issues(_config(sd_scheme="ftp"))
    assert any("sd_scheme" in e for e in errors)
    # KrakenD starts with a name that cannot resolve (every call fails): warned, not refused.
    errors, warnings = _issues(_config(host=["not a name!"]))
    assert errors == [] and any("host[0]" in w and "is not a DNS SRV name: every call fails" in w for w in warnings)
    _, warnings = _issues(_config(host=["a.test", "b.test"]))
    assert any("only the first SRV name" in w for w in warnings)
    _, warnings = _issues(_config(sd="consul", host=["http://svc:8080"]))
    assert any("not a known discovery" in w for w in warnings)
    # Without sd dns, a bare name is a host KrakenD sanitises into http://name: accepted as before.
    plain = {
        "version": 3,
        "endpoints": [{"endpoint": "/s", "backend": [{"host": ["catalogue.service.consul"], "url_pattern": "/x"}]}],
    }
    assert _issues(plain)[0] == []

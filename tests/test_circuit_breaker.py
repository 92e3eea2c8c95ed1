"""`qos/circuit-breaker`: the state machine on a fake clock; the backend wrapper in-process with fake backends
(small timeouts, real time); end to end with a real gateway against the faulty HTTP upstream and the Lambda Invoke
stub, counting the calls that reach them; load-time checks and the legacy name; the metrics series."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from lambdagate.backends import circuit_breaker
from lambdagate.backends.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, BreakerOpen, BreakerSet, Rules
from lambdagate.config import LoadOptions, validate_document
from lambdagate.errors import BackendError, ConfigError
from lambdagate.pipeline import BuildContext, BuiltBackend, wrapped_factory
from lambdagate.proxy import ProxyRequest, ProxyResponse
from lambdagate.telemetry.metrics import MetricsExporter, WorkerMetrics
from tests.support.asgi import InProcessGateway
from tests.support.procs import free_port

CB = "qos/circuit-breaker"
PATH = f'endpoints[0].backend[0].extra_config["{CB}"]'
LEGACY = "github.com/devopsfaith/krakend-circuitbreaker/gobreaker"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "secret",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_CONFIG_FILE": "/nonexistent/config",
}


# --- the state machine, on a fake clock --------------------------------------------------------------------------


def machine(max_errors: int = 2, interval: float = 0.0, timeout: float = 10.0) -> tuple[Breaker, list[tuple]]:
    changes: list[tuple] = []
    breaker = Breaker("b", Rules(max_errors, interval, timeout), lambda b, old, new: changes.append((old, new)), 0.0)
    return breaker, changes


def fail(breaker: Breaker, now: float, n: int = 1) -> None:
    for _ in range(n):
        breaker.settle(breaker.admit(now), True, now)


def test_opens_when_consecutive_errors_exceed_max_errors() -> None:
    breaker, changes = machine(max_errors=2)
    fail(breaker, 1.0, 2)
    breaker.settle(breaker.admit(1.0), False, 1.0)  # a success resets the count
    fail(breaker, 1.0, 2)
    assert breaker.state == CLOSED and changes == []
    fail(breaker, 1.0)  # the third in a row: more than max_errors
    assert breaker.state == OPEN and changes == [(CLOSED, OPEN)]
    with pytest.raises(BreakerOpen) as refused:
        breaker.admit(5.0)
    assert refused.value.retry_in == pytest.approx(6.0)


def test_interval_starts_the_count_again() -> None:
    breaker, _ = machine(max_errors=1, interval=5.0)
    fail(breaker, 1.0)
    fail(breaker, 5.5)  # a new window: this error is the first of it
    assert breaker.state == CLOSED
    fail(breaker, 6.0)
    assert breaker.state == OPEN


def test_without_interval_errors_count_until_a_success() -> None:
    breaker, _ = machine(max_errors=1)
    fail(breaker, 1.0)
    fail(breaker, 10_000.0)
    assert breaker.state == OPEN


def test_half_open_lets_one_trial_through_and_its_success_closes() -> None:
    breaker, changes = machine(max_errors=0 + 1, timeout=10.0)
    fail(breaker, 0.0, 2)
    trial = breaker.admit(10.0)
    assert breaker.state == HALF_OPEN
    with pytest.raises(BreakerOpen):  # the trial is still running
        breaker.admit(10.1)
    breaker.settle(trial, False, 10.2)
    assert breaker.state == CLOSED and changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    fail(breaker, 10.3)  # counting starts from zero again
    assert breaker.state == CLOSED


def test_half_open_trial_failure_reopens_for_another_timeout() -> None:
    breaker, changes = machine(max_errors=1, timeout=10.0)
    fail(breaker, 0.0, 2)
    breaker.settle(breaker.admit(10.0), True, 10.5)
    assert breaker.state == OPEN and changes[-1] == (HALF_OPEN, OPEN)
    with pytest.raises(BreakerOpen):
        breaker.admit(20.0)
    breaker.admit(20.6)
    assert breaker.state == HALF_OPEN


def test_a_trial_that_says_nothing_decides_nothing() -> None:
    breaker, _ = machine(max_errors=1, timeout=1.0)
    fail(breaker, 0.0, 2)
    breaker.settle(breaker.admit(2.0), None, 2.0)  # the client's mistake
    assert breaker.state == HALF_OPEN
    breaker.settle(breaker.admit(2.1), False, 2.1)  # the next call is the trial
    assert breaker.state == CLOSED


def test_outcomes_from_an_earlier_period_are_ignored() -> None:
    breaker, _ = machine(max_errors=1, timeout=1.0)
    early = breaker.admit(0.0)
    fail(breaker, 0.0, 2)
    trial = breaker.admit(1.5)
    breaker.settle(early, False, 1.6)  # a slow call from before the breaker opened: no trial
    assert breaker.state == HALF_OPEN and breaker.trial
    breaker.settle(trial, True, 1.7)
    assert breaker.state == OPEN


def test_breaker_set_is_bounded_least_recently_used_first() -> None:
    made: list[str] = []

    def make(key: str) -> Breaker:
        made.append(key)
        return machine()[0]

    functions = BreakerSet(make, cap=2)
    a = functions.create("a")
    functions.create("b")
    assert functions.get("a") is a  # now "b" is the least recently used
    functions.create("c")
    assert len(functions) == 2 and functions.get("b") is None and functions.get("a") is a
    assert functions.get("c") is not None and made == ["a", "b", "c"]


# --- config -------------------------------------------------------------------------------------------------


def doc(value: Any, key: str = CB) -> dict:
    return {
        "version": 3,
        "endpoints": [
            {
                "endpoint": "/a",
                "backend": [{"host": ["http://svc:1"], "url_pattern": "/a", "extra_config": {key: value}}],
            }
        ],
    }


def errors_of(value: Any) -> list[str]:
    with pytest.raises(ConfigError) as err:
        validate_document(doc(value), LoadOptions())
    return [str(issue) for issue in err.value.issues]


def test_config_fields_and_units() -> None:
    loaded = validate_document(
        doc({"interval": 60, "timeout": "500ms", "max_errors": 5, "name": "users", "log_status_change": False}),
        LoadOptions(),
    )
    cfg = loaded.service.endpoints[0].backend[0].namespaces[CB]
    assert (cfg.interval, cfg.timeout, cfg.max_errors, cfg.name, cfg.log_status_change) == (60, 0.5, 5, "users", False)
    defaults = validate_document(doc({"max_errors": 1}), LoadOptions()).service.endpoints[0].backend[0].namespaces[CB]
    assert (defaults.interval, defaults.timeout, defaults.log_status_change) == (0, 60, True)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({}, "max_errors"),
        ({"max_errors": 0}, "max_errors"),
        ({"max_errors": -1}, "max_errors"),
        ({"max_errors": 2.5}, "max_errors"),
        ({"max_errors": "5"}, "max_errors"),
        ({"max_errors": True}, "max_errors"),
        ({"max_errors": 1, "interval": -1}, "interval"),
        ({"max_errors": 1, "interval": "soon"}, "interval"),
        ({"max_errors": 1, "timeout": 0}, "timeout"),
        ({"max_errors": 1, "timeout": False}, "timeout"),
        ({"max_errors": 1, "timeout": 1e12}, "timeout"),
        ({"max_errors": 1, "name": 7}, "name"),
        ({"max_errors": 1, "log_status_change": "yes"}, "log_status_change"),
    ],
)
def test_bad_values_are_refused_with_their_path(value: dict, field: str) -> None:
    issues = errors_of(value)
    assert len(issues) == 1 and issues[0].startswith(f"{PATH}.{field}: "), issues


def test_not_an_object_is_refused() -> None:
    assert errors_of([1]) == [f"{PATH}: must be an object such as " + circuit_breaker._EXAMPLE]


def test_legacy_name_is_read_with_a_warning() -> None:
    loaded = validate_document(doc({"max_errors": 3}, LEGACY), LoadOptions())
    assert loaded.service.endpoints[0].backend[0].namespaces[CB].max_errors == 3
    assert [str(w) for w in loaded.warnings] == [
        f'endpoints[0].backend[0].extra_config["{LEGACY}"]: `{LEGACY}` is the old name of `{CB}` and is read as '
        f"`{CB}`; write `{CB}` (KrakenD 2 reads this spelling too)"
    ]


# --- in process: the wrapper around fake backends --------------------------------------------------------------


class Scripted:
    """Fake backends behind the real wrappers: `answers[url_pattern]` is popped per call (the last one repeats)."""

    def __init__(self, answers: dict[str, list]) -> None:
        self.answers = answers
        self.calls: dict[str, int] = {}

    def factory(self, backend):
        from lambdagate import plugins

        async def build(cfg, ctx: BuildContext) -> BuiltBackend:
            key = cfg.url_pattern

            async def call(req: ProxyRequest) -> ProxyResponse:
                self.calls[key] = self.calls.get(key, 0) + 1
                queue = self.answers[key]
                answer = queue.pop(0) if len(queue) > 1 else queue[0]
                if isinstance(answer, BaseException):
                    raise answer
                if answer == "slow":
                    await asyncio.sleep(5)
                return ProxyResponse.decoded({"from": key})

            return BuiltBackend(call, f"fake {key}")

        wrappers = [w for name, w in plugins.BACKEND_WRAPPERS.items() if name in backend.namespaces]
        return wrapped_factory(build, wrappers)


def cb_config(*backends: dict, timeout: str = "1s") -> dict:
    return {"version": 3, "timeout": timeout, "endpoints": [{"endpoint": "/x", "backend": list(backends)}]}


def fake_backend(pattern: str, **options: Any) -> dict:
    return {"host": ["http://fake:1"], "url_pattern": pattern, "extra_config": {CB: {"max_errors": 1, **options}}}


def run_in_process(config: dict, fakes: Scripted, scenario) -> None:
    async def main() -> None:
        async with InProcessGateway(config, fakes) as gateway:
            await scenario(gateway)

    asyncio.run(main())


@contextlib.contextmanager
def breaker_log(name: str = "lambdagate.breaker") -> Iterator[list[logging.LogRecord]]:
    """A logger's records (the gateway stops "lambdagate" logs from reaching pytest's root handler)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


BOOM = BackendError("the backend failed", status=500, cause="boom")


def test_in_process_open_fails_fast_then_trial_closes() -> None:
    fakes = Scripted({"/a": [BOOM, BOOM, "ok"]})

    async def scenario(gw: InProcessGateway) -> None:
        assert [(await gw.request("GET", "/x")).status for _ in range(2)] == [500, 500]
        refused = await gw.request("GET", "/x")
        assert refused.status == 503 and refused.header("retry-after") == "1"
        assert b"boom" not in refused.body
        assert fakes.calls["/a"] == 2  # refused without a call
        await asyncio.sleep(0.25)
        trial = await gw.request("GET", "/x")
        assert trial.status == 200 and trial.json() == {"from": "/a"}
        assert (await gw.request("GET", "/x")).status == 200 and fakes.calls["/a"] == 4

    with breaker_log() as records, breaker_log("lambdagate.pipeline") as failures:
        run_in_process(cb_config(fake_backend("/a", timeout="200ms")), fakes, scenario)
    assert [r.getMessage() for r in records] == [
        f"circuit breaker 'GET /x backend[0]' went from {old} to {new} (GET /x backend[0])"
        for old, new in ((CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED))
    ]
    # The two real failures are warnings; the refusal while open is not (a flood of refusals must not flood the log).
    warned = [r.getMessage() for r in failures if r.levelno >= logging.WARNING]
    assert len(warned) == 2 and all("status=500" in m for m in warned), warned


def test_in_process_deadline_counts_and_merge_is_partial() -> None:
    fakes = Scripted({"/slow": ["slow"], "/ok": ["ok"]})

    async def scenario(gw: InProcessGateway) -> None:
        for _ in range(2):
            reply = await gw.request("GET", "/x")
            assert reply.status == 200 and reply.header("x-krakend-completed") == "false"
        assert fakes.calls["/slow"] == 2
        started = time.monotonic()
        reply = await gw.request("GET", "/x")  # open: the slow backend is not waited for
        assert time.monotonic() - started < 0.1 and fakes.calls["/slow"] == 2
        assert reply.status == 200 and reply.json() == {"from": "/ok"}

    run_in_process(
        cb_config(
            fake_backend("/slow", timeout="10s"), {"host": ["http://fake:1"], "url_pattern": "/ok"}, timeout="100ms"
        ),
        fakes,
        scenario,
    )


def test_in_process_client_statuses_do_not_count() -> None:
    mistakes = [
        BackendError("invalid function name", status=400),
        BackendError("unknown function", status=404),
        BackendError("request payload too large", status=413),
    ]
    fakes = Scripted({"/a": mistakes * 3 + [BOOM]})

    async def scenario(gw: InProcessGateway) -> None:
        statuses = [(await gw.request("GET", "/x")).status for _ in range(9)]
        assert statuses == [400, 404, 413] * 3
        assert [(await gw.request("GET", "/x")).status for _ in range(3)] == [500, 500, 503]
        assert fakes.calls["/a"] == 11

    with breaker_log() as records:
        run_in_process(cb_config(fake_backend("/a", log_status_change=False)), fakes, scenario)
    assert records == []  # log_status_change: false


# --- metrics ------------------------------------------------------------------------------------------------


def test_state_changes_are_a_counter_without_histogram(tmp_path) -> None:
    worker = WorkerMetrics(tmp_path)
    stats = worker.breaker("/x", "GET", "http svc", "users")
    stats.observe(OPEN, 0.0)
    stats.observe(HALF_OPEN, 0.0)
    stats.observe(OPEN, 0.0)
    worker.flush()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in MetricsExporter(tmp_path).collect()
        for s in family.samples
    }
    labels = (("backend", "http svc"), ("breaker", "users"), ("endpoint", "/x"), ("method", "GET"))
    assert samples[("lambdagate_circuit_breaker_changes_total", (*labels, ("to", "half-open")))] == 1
    assert samples[("lambdagate_circuit_breaker_changes_total", (*labels, ("to", "open")))] == 2
    assert not any(
        name.startswith("lambdagate_circuit_breaker_changes_") and name.endswith(("_bucket", "_sum"))
        for name, _ in samples
    )


def test_in_process_per_function_breakers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(circuit_breaker, "MAX_FUNCTION_BREAKERS", 2)
    calls: dict[str, int] = {}

    class Functions:
        def factory(self, backend):
            async def build(cfg, ctx: BuildContext) -> BuiltBackend:
                async def call(req: ProxyRequest) -> ProxyResponse:
                    name = req.params["name"]
                    calls[name] = calls.get(name, 0) + 1
                    if name.startswith("bad"):
                        raise BOOM
                    return ProxyResponse.decoded({"fn": name})

                return BuiltBackend(call, "fake lambda", kind="lambda")

            return wrapped_factory(build, [circuit_breaker.with_circuit_breaker])

    config = {
        "version": 3,
        "endpoints": [
            {
                "endpoint": "/fn/{name}",
                "backend": [
                    {
                        "extra_config": {
                            "backend/lambda": {"function_param_name": "name", "region": "us-east-1"},
                            CB: {"max_errors": 1},
                        }
                    }
                ],
            }
        ],
    }

    async def scenario(gw: InProcessGateway) -> None:
        async def statuses(name: str, n: int) -> list[int]:
            return [(await gw.request("GET", f"/fn/{name}")).status for _ in range(n)]

        assert await statuses("bad-a", 3) == [500, 500, 503]
        assert await statuses("ok", 3) == [200, 200, 200]  # one function's breaker does not cut off another
        assert await statuses("bad-b", 3) == [500, 500, 503]
        assert await statuses("bad-c", 3) == [500, 500, 503]  # a third breaker: bad-a's, the oldest, is dropped
        assert await statuses("bad-b", 1) == [503]
        assert await statuses("bad-a", 3) == [500, 500, 503]  # counted again from zero
        assert calls == {"bad-a": 4, "ok": 3, "bad-b": 2, "bad-c": 2}

    run_in_process(config, Functions(), scenario)


# --- end to end: a real gateway, the faulty upstream, the Invoke stub -------------------------------------------


def http(url: str) -> tuple[int, Any, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=15) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def counted(server: str, name: str) -> int:
    return json.loads(http(f"{server}/__calls/{name}")[2])["calls"]


def statuses(url: str, n: int) -> list[int]:
    return [http(url)[0] for _ in range(n)]


def wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_http_backend_opens_fails_fast_and_recovers(faulty, start_gateway) -> None:
    metrics_port = free_port()
    config = {
        "version": 3,
        "timeout": "2s",
        "extra_config": {"telemetry/metrics": {"listen_address": f"127.0.0.1:{metrics_port}"}},
        "endpoints": [
            {
                "endpoint": "/cb/{mode}",
                "backend": [
                    {
                        "host": [faulty],
                        "url_pattern": "/{mode}",
                        "extra_config": {
                            CB: {"max_errors": 2, "timeout": "500ms", "interval": 60, "name": "faulty-cb"}
                        },
                    }
                ],
            }
        ],
    }
    gw = start_gateway(config)
    assert statuses(f"{gw.url}/cb/status-500", 3) == [500, 500, 500]
    status, headers, body = http(f"{gw.url}/cb/status-500")
    assert (status, headers["Retry-After"]) == (503, "1") and b"status-500" not in body
    assert statuses(f"{gw.url}/cb/cb-ok", 2) == [503, 503]
    assert counted(faulty, "status-500") == 3 and counted(faulty, "cb-ok") == 0  # nothing reached the upstream
    time.sleep(0.6)
    assert http(f"{gw.url}/cb/status-500")[0] == 500  # the trial fails: open again
    assert http(f"{gw.url}/cb/cb-ok")[0] == 503 and counted(faulty, "cb-ok") == 0
    time.sleep(0.6)
    assert statuses(f"{gw.url}/cb/cb-ok", 2) == [200, 200]  # the trial succeeds: closed
    assert statuses(f"{gw.url}/cb/status-500", 2) == [500, 500]  # counting from zero
    assert counted(faulty, "status-500") == 6 and counted(faulty, "cb-ok") == 2
    changes = [
        line.split("went from ")[1]
        for line in gw.log().splitlines()
        if "lambdagate.breaker: circuit breaker 'faulty-cb'" in line
    ]
    assert changes == [
        "closed to open (GET /cb/{mode} backend[0])",
        "open to half-open (GET /cb/{mode} backend[0])",
        "half-open to open (GET /cb/{mode} backend[0])",
        "open to half-open (GET /cb/{mode} backend[0])",
        "half-open to closed (GET /cb/{mode} backend[0])",
    ]

    def scraped() -> str:
        return http(f"http://127.0.0.1:{metrics_port}/metrics")[2].decode()

    def changes_counted() -> list[str]:
        return sorted(
            line.split(",to=")[1]
            for line in scraped().splitlines()
            if line.startswith("lambdagate_circuit_breaker_changes_total{") and 'breaker="faulty-cb"' in line
        )

    expected = ['"closed"} 1.0', '"half-open"} 2.0', '"open"} 2.0']
    assert wait_for(lambda: changes_counted() == expected), changes_counted()


def lambda_backend(stub: str, **fields: Any) -> dict:
    return {
        "extra_config": {
            "backend/lambda": {"endpoint": stub, "max_retries": 0, **fields},
            LEGACY if fields.get("function_name") else CB: {"max_errors": 1, "timeout": "500ms"},
        }
    }


def test_lambda_breakers_per_function_and_client_mistakes(stub, start_gateway) -> None:
    config = {
        "version": 3,
        "timeout": "1s",
        "endpoints": [
            {"endpoint": "/fn/{name}", "backend": [lambda_backend(stub, function_param_name="name")]},
            {"endpoint": "/static", "backend": [lambda_backend(stub, function_name="service-500")]},
        ],
    }
    gw = start_gateway(config, env=AWS_ENV)
    # A function error, a throttle and a timeout count; each function has a breaker of its own.
    assert statuses(f"{gw.url}/fn/unhandled", 3) == [500, 500, 503]
    assert statuses(f"{gw.url}/fn/throttle", 3) == [429, 429, 503]
    assert statuses(f"{gw.url}/fn/slow", 3) == [504, 504, 503]
    assert statuses(f"{gw.url}/fn/echo-cb", 2) == [200, 200]
    assert [counted(stub, n) for n in ("unhandled", "throttle", "slow", "echo-cb")] == [2, 2, 2, 2]
    # The client's mistakes say nothing about the functions: never counted.
    assert statuses(f"{gw.url}/fn/nosuch-cb", 4) == [404] * 4
    assert statuses(f"{gw.url}/fn/invalid-content", 4) == [400] * 4
    assert statuses(f"{gw.url}/fn/too-large", 4) == [413] * 4
    assert statuses(f"{gw.url}/fn/bad.name", 4) == [400] * 4
    assert [counted(stub, n) for n in ("nosuch-cb", "invalid-content", "too-large")] == [4, 4, 4]
    # A static function name: one breaker for the backend (read here under its legacy name).
    assert statuses(f"{gw.url}/static", 3) == [500, 500, 503] and counted(stub, "service-500") == 2
    # Half-open: flaky-2 throttles twice, then recovers; the trial closes its breaker.
    assert statuses(f"{gw.url}/fn/flaky-2", 3) == [429, 429, 503] and counted(stub, "flaky-2") == 2
    time.sleep(0.6)
    assert statuses(f"{gw.url}/fn/flaky-2", 2) == [200, 200] and counted(stub, "flaky-2") == 4
    assert "function=flaky-2' went from half-open to closed" in gw.log()

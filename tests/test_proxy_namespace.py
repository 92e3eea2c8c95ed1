"""The `proxy` namespace, concurrent_calls and no-op backends under data endpoints, in-process
(tests/support/asgi.py: the real request stack with fake backends). The HTTP side (url_pattern filling,
backend/http) runs against real processes in tests/test_proxy_http.py."""

from __future__ import annotations

import asyncio
import time

import pytest

from lambdagate.config import LoadOptions, validate_document
from lambdagate.errors import BackendError, ConfigError
from lambdagate.proxy import ProxyRequest, ProxyResponse
from tests.support.asgi import FakeBackends, InProcessGateway, returning, run

FAIL = BackendError("boom", cause="test")


def endpoint(path: str, *backends: str | dict, **kw) -> dict:
    listed = [{"host": ["http://fake"], "url_pattern": b} if isinstance(b, str) else b for b in backends]
    return {"endpoint": path, "backend": listed, **kw}


def proxy(**options) -> dict:
    return {"extra_config": {"proxy": options}}


def config(*endpoints: dict) -> dict:
    return {"version": 3, "timeout": "1s", "endpoints": list(endpoints)}


def noop_reply(body: bytes) -> object:
    async def answer(req: ProxyRequest) -> ProxyResponse:
        return ProxyResponse.passthrough(404, [("content-type", "text/plain")], body, complete=False)

    return answer


# --- sequential ---------------------------------------------------------------------------------------------------


def test_sequential_feeds_earlier_replies_to_later_calls_and_merges_in_order() -> None:
    fakes = FakeBackends(
        {
            "/hotels/{id}": returning({"destination_id": 1034, "user": {"hash": "abc"}, "tags": ["a", 2, True]}),
            "/destinations/{resp0_destination_id}/{resp0_user.hash}": returning({"destinations": ["LAX"]}),
            "/last": returning({"done": True}),
        }
    )
    seq = proxy(sequential=True, sequential_propagated_params=["resp0_tags", "resp1_destinations", "resp0"])

    async def scenario(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "/h/25")
        assert (r.status, r.header("x-krakend-completed")) == (200, "true")
        assert r.json() == {
            "destination_id": 1034,
            "user": {"hash": "abc"},
            "tags": ["a", 2, True],
            "destinations": ["LAX"],
            "done": True,
        }
        second = fakes.seen["/destinations/{resp0_destination_id}/{resp0_user.hash}"][0].params
        assert (second["resp0_destination_id"], second["resp0_user.hash"]) == ("1034", "abc")
        assert second["Resp0_tags"] == "a,2,true"
        assert "Resp1_destinations" not in second  # not yet answered
        third = fakes.seen["/last"][0].params
        assert (third["id"], third["Resp1_destinations"], third["Resp0_tags"]) == ("25", "LAX", "a,2,true")
        assert "Resp0" not in third  # the first reply has no body (not no-op)

    backends = ["/hotels/{id}", "/destinations/{resp0_destination_id}/{resp0_user.hash}", "/last"]
    run(config(endpoint("/h/{id}", *backends, **seq)), fakes, scenario)


def test_sequential_stops_at_a_failure_first_fails_the_endpoint_later_gives_partial_data() -> None:
    fakes = FakeBackends({"/ok": returning({"a": 1}), "/bad": returning(error=FAIL), "/never": returning({"z": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        first = await gw.request("GET", "/first")
        assert first.status == 500
        later = await gw.request("GET", "/later")
        assert (later.status, later.json(), later.header("x-krakend-completed")) == (200, {"a": 1}, "false")
        assert not fakes.seen["/never"]

    run(
        config(
            endpoint("/first", "/bad", "/never", **proxy(sequential=True)),
            endpoint("/later", "/ok", "/bad", "/never", **proxy(sequential=True)),
        ),
        fakes,
        scenario,
    )


def test_sequential_stops_after_an_incomplete_reply_which_is_merged() -> None:
    async def incomplete(req: ProxyRequest) -> ProxyResponse:
        return ProxyResponse.error_details("error_x", {"http_status_code": 404}, 404)

    fakes = FakeBackends({"/ok": returning({"a": 1}), "/details": incomplete, "/never": returning({"z": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "/s")
        assert (r.status, r.header("x-krakend-completed")) == (200, "false")
        assert r.json() == {"a": 1, "error_x": {"http_status_code": 404}}
        assert not fakes.seen["/never"]

    run(config(endpoint("/s", "/ok", "/details", "/never", **proxy(sequential=True))), fakes, scenario)


def test_sequential_hands_a_no_op_body_on_as_resp0_and_its_data_is_empty() -> None:
    fakes = FakeBackends({"/raw": noop_reply(b"<raw body>"), "/next": returning({"b": 2})})
    raw = {"host": ["http://fake"], "url_pattern": "/raw", "encoding": "no-op"}

    async def scenario(gw: InProcessGateway) -> None:
        r = await gw.request("GET", "/s")
        assert (r.status, r.json(), r.header("x-krakend-completed")) == (200, {"b": 2}, "true")
        assert fakes.seen["/next"][0].params["Resp0"] == "<raw body>"

    seq = proxy(sequential=True, sequential_propagated_params=["resp0"])
    run(config(endpoint("/s", raw, "/next", **seq)), fakes, scenario)


# --- static -------------------------------------------------------------------------------------------------------

STATIC = {"fallback": {"n": 1}}


@pytest.mark.parametrize(
    ("strategy", "backends", "status", "body", "completed"),
    [
        ("always", ["/ok"], 200, {"a": 1, "fallback": {"n": 1}}, "true"),
        ("always", ["/bad"], 200, STATIC, "false"),
        ("success", ["/ok", "/ok2"], 200, {"a": 1, "b": 2, "fallback": {"n": 1}}, "true"),
        ("success", ["/ok", "/bad"], 200, {"a": 1}, "false"),
        ("complete", ["/ok"], 200, {"a": 1, "fallback": {"n": 1}}, "true"),
        ("complete", ["/incomplete"], 200, {"error_x": {"http_status_code": 404}}, "false"),
        ("success", ["/incomplete"], 200, {"error_x": {"http_status_code": 404}, "fallback": {"n": 1}}, "false"),
        ("errored", ["/ok"], 200, {"a": 1}, "true"),
        ("errored", ["/bad"], 200, STATIC, "false"),
        ("errored", ["/ok", "/bad"], 200, {"a": 1, "fallback": {"n": 1}}, "false"),
        ("incomplete", ["/ok"], 200, {"a": 1}, "true"),
        ("incomplete", ["/bad"], 200, STATIC, "false"),
        ("incomplete", ["/ok", "/bad"], 200, {"a": 1, "fallback": {"n": 1}}, "false"),
    ],
)
def test_static_strategies(strategy: str, backends: list[str], status: int, body: dict, completed: str) -> None:
    async def incomplete(req: ProxyRequest) -> ProxyResponse:
        return ProxyResponse.error_details("error_x", {"http_status_code": 404}, 404)

    fakes = FakeBackends(
        {
            "/ok": returning({"a": 1}),
            "/ok2": returning({"b": 2}),
            "/bad": returning(error=FAIL),
            "/incomplete": incomplete,
        }
    )

    async def scenario(gw: InProcessGateway) -> None:
        for _ in range(2):  # the config's data is never changed by a reply
            r = await gw.request("GET", "/s")
            assert (r.status, r.json(), r.header("x-krakend-completed")) == (status, body, completed)

    static = proxy(static={"strategy": strategy, "data": {"fallback": {"n": 1}}})
    run(config(endpoint("/s", *backends, **static)), fakes, scenario)


# --- flatmap ------------------------------------------------------------------------------------------------------


def test_endpoint_flatmap_on_merged_and_single_data_and_backend_flatmap_replaces_allow() -> None:
    fakes = FakeBackends(
        {
            "/users": returning({"collection": [{"id": 1, "password": "x"}, {"id": 2, "password": "y"}]}),
            "/meta": returning({"total": 2, "secret": "s"}),
        }
    )
    ops = [{"type": "del", "args": ["g.users.*.password", "secret"]}, {"type": "move", "args": ["total", "count"]}]
    backend_flat = {
        "host": ["http://fake"],
        "url_pattern": "/users",
        "allow": ["nothing"],  # replaced by flatmap_filter, as in KrakenD
        "group": "g",
        "extra_config": {"proxy": {"flatmap_filter": [{"type": "move", "args": ["collection", "users"]}]}},
    }

    async def scenario(gw: InProcessGateway) -> None:
        merged = await gw.request("GET", "/merged")
        assert merged.json() == {"g": {"users": [{"id": 1}, {"id": 2}]}, "count": 2}
        single = await gw.request("GET", "/single")
        assert single.json() == {"count": 2}  # unlike KrakenD, a single backend's data is filtered too
        grouped = await gw.request("GET", "/grouped")
        assert grouped.json() == {"g": {"users": [{"id": 1, "password": "x"}, {"id": 2, "password": "y"}]}}

    run(
        config(
            endpoint("/merged", backend_flat, "/meta", **proxy(flatmap_filter=ops)),
            endpoint("/single", "/meta", **proxy(flatmap_filter=ops)),
            endpoint("/grouped", backend_flat),
        ),
        fakes,
        scenario,
    )


# --- shadow -------------------------------------------------------------------------------------------------------


def test_a_shadow_backend_is_called_and_its_reply_discarded_without_delaying_the_client() -> None:
    fakes = FakeBackends({"/main": returning({"a": 1}), "/shadow": returning({"shadow": 1}, delay=0.3)})
    shadow = {"host": ["http://fake"], "url_pattern": "/shadow", "extra_config": {"proxy": {"shadow": True}}}

    async def scenario(gw: InProcessGateway) -> None:
        started = time.monotonic()
        r = await gw.request("GET", "/s")
        assert time.monotonic() - started < 0.25
        assert (r.status, r.json(), r.header("x-krakend-completed")) == (200, {"a": 1}, "true")
        await asyncio.sleep(0.05)
        assert len(fakes.seen["/shadow"]) == 1

    run(config(endpoint("/s", "/main", shadow)), fakes, scenario)


# --- concurrent_calls ---------------------------------------------------------------------------------------------


def test_concurrent_calls_race_each_backend_first_complete_wins_others_cancelled() -> None:
    delays = iter([0.3, 0.01, 0.3])
    cancelled = []

    async def racing(req: ProxyRequest) -> ProxyResponse:
        delay = next(delays)
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            cancelled.append(delay)
            raise
        return ProxyResponse.decoded({"delay": delay})

    fakes = FakeBackends({"/r": racing})

    async def scenario(gw: InProcessGateway) -> None:
        started = time.monotonic()
        r = await gw.request("GET", "/c")
        assert time.monotonic() - started < 0.25
        assert (r.status, r.json()) == (200, {"delay": 0.01})
        await asyncio.sleep(0)
        assert (len(fakes.seen["/r"]), cancelled) == (3, [0.3, 0.3])

    run(config(endpoint("/c", "/r", concurrent_calls=3)), fakes, scenario)


def test_concurrent_calls_all_failing_fail_and_a_failure_beats_an_incomplete_reply() -> None:
    outcomes = iter([FAIL, None])

    async def mixed(req: ProxyRequest) -> ProxyResponse:
        err = next(outcomes)
        if err is not None:
            raise err
        return ProxyResponse.error_details("error_x", {"http_status_code": 404}, 404)

    fakes = FakeBackends({"/bad": returning(error=FAIL), "/mixed": mixed})

    async def scenario(gw: InProcessGateway) -> None:
        assert (await gw.request("GET", "/all-bad")).status == 500
        assert (await gw.request("GET", "/mixed")).status == 500  # Lura returns the error with the reply

    run(
        config(endpoint("/all-bad", "/bad", concurrent_calls=2), endpoint("/mixed", "/mixed", concurrent_calls=2)),
        fakes,
        scenario,
    )


# --- no-op backend under a data endpoint ----------------------------------------------------------------------------


def test_a_no_op_backend_under_a_json_endpoint_gives_empty_data_whatever_its_status() -> None:
    fakes = FakeBackends({"/raw": noop_reply(b"not json"), "/ok": returning({"a": 1})})
    raw = {"host": ["http://fake"], "url_pattern": "/raw", "encoding": "no-op"}

    async def scenario(gw: InProcessGateway) -> None:
        alone = await gw.request("GET", "/alone")
        assert (alone.status, alone.json(), alone.header("x-krakend-completed")) == (200, {}, "false")
        merged = await gw.request("GET", "/merged")
        assert (merged.status, merged.json(), merged.header("x-krakend-completed")) == (200, {"a": 1}, "true")

    run(config(endpoint("/alone", raw), endpoint("/merged", raw, "/ok")), fakes, scenario)


# --- config -------------------------------------------------------------------------------------------------------


def load(doc: dict):
    return validate_document(doc, LoadOptions())


def issues(doc: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(doc)
    return [str(i) for i in info.value.issues]


def test_resp_placeholders_are_accepted_and_warned_where_never_filled() -> None:
    seq = endpoint("/a/{id}", "/x/{id}", "/y/{resp0_a.b}/{resp0_c}", **proxy(sequential=True))
    assert [str(w) for w in load(config(seq)).warnings] == []
    parallel = endpoint("/a", "/x", "/y/{resp0_c}")
    assert [str(w) for w in load(config(parallel)).warnings] == [
        'endpoints[0].backend[1].url_pattern: a {respN_...} placeholder is filled only with "proxy": '
        '{"sequential": true}: it is sent empty'
    ]
    forward = endpoint("/a", "/x/{resp1_c}", "/y", **proxy(sequential=True))
    assert [str(w) for w in load(config(forward)).warnings] == [
        "endpoints[0].backend[0].url_pattern: {resp1_c} names no earlier backend: it is sent empty"
    ]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"static": {"strategy": "sometimes", "data": {}}},
            'endpoints[0].extra_config.proxy.static.strategy: one of "always", "success", "complete", "errored", '
            "\"incomplete\", got 'sometimes'",
        ),
        (
            {"static": {"data": []}},
            "endpoints[0].extra_config.proxy.static.data: Input should be a valid dictionary, got list []",
        ),
        (
            {"flatmap_filter": [{"type": "move", "args": ["a"]}]},
            'endpoints[0].extra_config.proxy.flatmap_filter[0]: "move" takes two paths (from, to), got 1',
        ),
        (
            {"flatmap_filter": [{"type": "delete", "args": ["a"]}]},
            "endpoints[0].extra_config.proxy.flatmap_filter[0].type: Input should be 'move', 'del' or 'append', "
            "got 'delete'",
        ),
        (
            {"flatmap_filter": [{"type": "del", "args": ["a..b"]}]},
            "endpoints[0].extra_config.proxy.flatmap_filter[0].args: 'a..b' is not a path: write keys separated "
            'by dots, such as "data.*.password"',
        ),
        (
            {"sequential": True, "sequential_propagated_params": ["foo"]},
            "endpoints[0].extra_config.proxy.sequential_propagated_params[0]: 'foo' names no reply: write "
            '"resp0_field"',
        ),
    ],
)
def test_bad_proxy_values_are_refused_with_their_path(extra: dict, expected: str) -> None:
    assert issues(config(endpoint("/a", "/x", "/y", **proxy(**extra)))) == [expected]


def test_every_backend_a_shadow_is_refused() -> None:
    shadow = {"host": ["http://fake"], "url_pattern": "/s", "extra_config": {"proxy": {"shadow": True}}}
    assert issues(config(endpoint("/a", shadow))) == [
        'endpoints[0].backend: every backend is a "shadow": one must answer the client'
    ]

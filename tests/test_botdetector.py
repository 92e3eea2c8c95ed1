"""`security/bot-detector`, in-process (tests/support/asgi.py): lists and patterns in KrakenD's order, service and
endpoint level, patterns that would backtrack for ever in Python's `re`, the bounded verdict cache."""

from __future__ import annotations

import time

import pytest

from lambdagate.config import LoadOptions, validate_document
from lambdagate.errors import ConfigError
from lambdagate.security.botdetector import CACHED_USER_AGENT, MAX_USER_AGENT, BotDetectorOptions, Detector, build_step
from lambdagate.stack import StepContext
from tests.support.asgi import FakeBackends, InProcessGateway, returning, run

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
DETECTOR = {
    "allow": ["MyMonitor/1.0 bot"],
    "deny": ["BadBot/1.0"],
    "patterns": ["(Pingdom.com_bot_version_).*", "(?i)bot"],
    "cache_size": 100,
    "empty_user_agent_is_bot": True,
}


def endpoint(path: str, detector: dict | None = None) -> dict:
    extra = {"extra_config": {"security/bot-detector": detector}} if detector is not None else {}
    return {"endpoint": path, "backend": [{"host": ["http://fake"], "url_pattern": "/a"}], **extra}


def config(*endpoints: dict, service: dict | None = None) -> dict:
    extra = {"extra_config": {"security/bot-detector": service}} if service is not None else {}
    return {"version": 3, "timeout": "1s", "endpoints": list(endpoints), **extra}


def agent(value: str | None) -> list[tuple[str, str]]:
    return [] if value is None else [("User-Agent", value)]


def test_lists_and_patterns_in_krakends_order_at_service_level() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})

    async def scenario(gw: InProcessGateway) -> None:
        for ua, status in [
            (CHROME, 200),
            ("MyMonitor/1.0 bot", 200),  # allow wins over a matching pattern
            ("BadBot/1.0", 403),
            ("Pingdom.com_bot_version_1.4", 403),
            ("x GoogleBOT y", 403),
            (None, 403),
            ("", 403),
            ("Friendly/1.0", 200),
        ]:
            r = await gw.request("GET", "/a", agent(ua))
            assert r.status == status, ua
            if status == 403:
                assert r.json() == {"error": "forbidden"}
        # Before routing: an unknown path is refused too.
        assert (await gw.request("GET", "/nope", agent("BadBot/1.0"))).status == 403
        assert (await gw.request("GET", "/nope", agent(CHROME))).status == 404
        assert len(fakes.seen["/a"]) == 3

    run(config(endpoint("/a"), service=DETECTOR), fakes, scenario)


def test_endpoint_level_guards_its_endpoint_and_both_levels_check() -> None:
    fakes = FakeBackends({"/a": returning({"a": 1})})
    endpoints = (endpoint("/guarded", {"deny": ["Scraper/2.0"]}), endpoint("/open"))

    async def scenario(gw: InProcessGateway) -> None:
        guarded = await gw.request("GET", "/guarded", agent("Scraper/2.0"))
        assert (guarded.status, guarded.json()) == (403, {"error": "forbidden"})
        assert guarded.header("x-request-id")  # an endpoint guard's refusal is observed as the endpoint's
        assert (await gw.request("GET", "/open", agent("Scraper/2.0"))).status == 200
        assert (await gw.request("GET", "/guarded", agent(CHROME))).status == 200
        # The service's detector checks every request, whatever the endpoint's says.
        assert (await gw.request("GET", "/guarded", agent("BadBot/1.0"))).status == 403
        assert (await gw.request("GET", "/open", agent(""))).status == 200  # the service's does not refuse it

    run(config(*endpoints, service={"deny": ["BadBot/1.0"]}), fakes, scenario)


def test_a_catastrophic_pattern_does_not_stall_the_worker() -> None:
    # With Python's `re`, "(a+)+$" on 30 a's and a "!" takes about 2^30 steps: minutes. RE2 is linear.
    fakes = FakeBackends({"/a": returning({"a": 1})})
    detector = {"patterns": ["(a+)+$", "(x|x)*y", "(.*a){20}z"]}

    async def scenario(gw: InProcessGateway) -> None:
        started = time.monotonic()
        for ua, status in [
            ("a" * 30 + "!", 200),
            ("a" * (MAX_USER_AGENT - 1) + "!", 200),
            ("x" * 2000, 200),
            ("b" * 30 + "a", 403),
            ("a" * (MAX_USER_AGENT + 1), 403),
        ]:
            assert (await gw.request("GET", "/a", agent(ua))).status == status, ua[:40]
        assert time.monotonic() - started < 1.0

    run(config(endpoint("/a", detector)), fakes, scenario)


def test_the_verdict_cache_is_a_bounded_lru() -> None:
    detector = Detector(BotDetectorOptions(patterns=["bot"], cache_size=3))
    for i in range(10):
        assert detector.is_bot(f"client-{i}".encode()) is False
    assert list(detector.cache) == [b"client-7", b"client-8", b"client-9"]
    assert detector.is_bot(b"client-7") is False  # a hit moves it to the end
    assert detector.is_bot(b"a bot") is True
    assert list(detector.cache) == [b"client-9", b"client-7", b"a bot"]
    long = b"x" * (CACHED_USER_AGENT + 1)
    assert detector.is_bot(long) is False and long not in detector.cache
    assert Detector(BotDetectorOptions(deny=["x"], cache_size=3)).cache is None  # nothing to cache without patterns


def test_a_detector_that_cannot_refuse_is_not_composed() -> None:
    import asyncio

    loaded = validate_document(config(endpoint("/a", {"allow": ["Mine/1.0"], "cache_size": 10})), LoadOptions())
    ctx = StepContext(loaded.service, loaded.service.endpoints[0], resources=None)  # type: ignore[arg-type]
    assert asyncio.run(build_step(ctx)) is None


@pytest.mark.parametrize(
    ("detector", "error"),
    [
        ({"patterns": ["ok", "(a)\\1"]}, "patterns[1]: invalid regular expression (invalid escape sequence: \\1)"),
        ({"patterns": ["(?=lookahead)"]}, "patterns[0]: invalid regular expression (invalid perl operator: (?=)"),
        ({"cache_size": -1}, "cache_size: Input should be greater than or equal to 0"),
        ({"cache_size": 1_000_000}, "cache_size: Input should be less than or equal to 100000"),
        ({"deny": "BadBot"}, "deny: Input should be a valid list"),
    ],
)
def test_bad_options_are_refused_with_their_path(detector: dict, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_document(config(endpoint("/a", detector)), LoadOptions())
    messages = [str(issue) for issue in info.value.issues]
    assert len(messages) == 1 and messages[0].startswith(
        f'endpoints[0].extra_config["security/bot-detector"].{error}'
    ), messages

"""`security/bot-detector`: refuse requests whose User-Agent says a bot sent them (403), as KrakenD's
krakend-botdetector.

```json
"extra_config": {"security/bot-detector": {"deny": ["BadBot/1.0"], "patterns": ["(Pingdom.com_bot_version_).*"],
                                           "allow": ["MyMonitor/1.0"], "cache_size": 10000,
                                           "empty_user_agent_is_bot": true}}
```
A User-Agent is checked in KrakenD's order: empty → `empty_user_agent_is_bot`; listed in `allow` → not a bot;
listed in `deny` → a bot; else a bot when one of `patterns` matches anywhere in it. `allow` and `deny` compare the
whole User-Agent exactly.

Where: in the service's extra_config it checks every request, before routing (unknown paths too); in an endpoint's,
that endpoint's requests, as its first guard. With both, both check (as KrakenD: two detectors, each with its own
lists and cache).

Patterns are RE2 (Go's syntax, as in KrakenD), compiled once into one set: matching takes time linear in the
User-Agent, so no pattern can stall the worker (Python's `re` could backtrack for ever, and has no timeout). The
User-Agent is also bounded: one longer than MAX_USER_AGENT bytes is a bot when patterns are configured (no browser
sends one; this bounds the matching cost per request). `cache_size` keeps that many verdicts of the patterns in an
LRU, for User-Agents of at most CACHED_USER_AGENT bytes, so the cache holds at most cache_size × ~0.6 KB.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError
from lambdagate.front import Exchange, Handler, Step
from lambdagate.pipeline.render import Reply, json_reply
from lambdagate.security.patterns import pattern_error, pattern_set

if TYPE_CHECKING:
    from lambdagate.stack import StepContext

NAMESPACE = "security/bot-detector"
# The KrakenD 1.x name, as config/guards.py normalises it (`github_com/…` is read too): applied, with a warning.
LEGACY_NAME = "github.com/devopsfaith/krakend-botdetector"
MAX_USER_AGENT = 2048
CACHED_USER_AGENT = 512
MAX_CACHE_SIZE = 100_000
FORBIDDEN = json_reply(403, {"error": "forbidden"})
log = logging.getLogger("lambdagate")


class BotDetectorOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    allow: list[StrictStr] = Field(default_factory=list)
    deny: list[StrictStr] = Field(default_factory=list)
    patterns: list[StrictStr] = Field(default_factory=list)
    cache_size: StrictInt = Field(default=0, ge=0, le=MAX_CACHE_SIZE)  # 0: no cache
    empty_user_agent_is_bot: StrictBool = False


def parse(value: Any, ctx: NamespaceContext) -> BotDetectorOptions:
    opts = parse_namespace_model(
        BotDetectorOptions,
        value,
        ctx,
        '{"patterns": ["(Pingdom.com_bot_version_).*"], "empty_user_agent_is_bot": true}',
    )
    issues = [(f"patterns[{i}]", error) for i, p in enumerate(opts.patterns) if (error := pattern_error(p))]
    if issues:
        raise NamespaceError(issues)
    return opts


BOT_DETECTOR_NAMESPACE = Namespace(NAMESPACE, "endpoint", parse, aliases=(LEGACY_NAME,), other_scopes=("service",))


class Detector:
    """One detector's lists, compiled patterns and verdict cache."""

    def __init__(self, opts: BotDetectorOptions) -> None:
        self.allow = frozenset(a.encode() for a in opts.allow)
        self.deny = frozenset(d.encode() for d in opts.deny)
        self.patterns = pattern_set(opts.patterns) if opts.patterns else None
        self.empty_is_bot = opts.empty_user_agent_is_bot
        self.cache_size = opts.cache_size
        self.cache: OrderedDict[bytes, bool] | None = OrderedDict() if opts.cache_size and opts.patterns else None

    @property
    def can_refuse(self) -> bool:
        return bool(self.deny or self.patterns is not None or self.empty_is_bot)

    def is_bot(self, agent: bytes) -> bool:
        if not agent:
            return self.empty_is_bot
        if agent in self.allow:
            return False
        if agent in self.deny:
            return True
        if self.patterns is None:
            return False
        cache = self.cache
        if cache is None or len(agent) > CACHED_USER_AGENT:
            return self._matches(agent)
        verdict = cache.get(agent)
        if verdict is None:
            verdict = cache[agent] = self._matches(agent)
            if len(cache) > self.cache_size:
                cache.popitem(last=False)
        else:
            cache.move_to_end(agent)
        return verdict

    def _matches(self, agent: bytes) -> bool:
        if len(agent) > MAX_USER_AGENT:
            return True
        return self.patterns.Match(agent) is not None  # type: ignore[union-attr] - checked by the caller


def detecting(handler: Handler, detector: Detector, where: str) -> Handler:
    async def detect(ex: Exchange) -> Reply:
        agent = b""
        for name, value in ex.scope["headers"]:
            if name == b"user-agent":
                agent = value
                break
        if detector.is_bot(agent):
            log.debug("bot detector (%s) refused %s %s: User-Agent %r", where, ex.method, ex.path[:200], agent[:200])
            return FORBIDDEN
        return await handler(ex)

    return detect


async def build_step(ctx: StepContext) -> Step | None:
    """The service's detector (before routing) or the endpoint's (its first guard), by where the context is."""
    owner = ctx.endpoint if ctx.endpoint is not None else ctx.service
    opts: BotDetectorOptions | None = owner.namespaces.get(NAMESPACE)
    if opts is None:
        return None
    detector = Detector(opts)
    if not detector.can_refuse:  # an allow list alone refuses nothing: not composed
        return None
    where = "service" if ctx.endpoint is None else f"{ctx.endpoint.method} {ctx.endpoint.endpoint}"
    return lambda handler: detecting(handler, detector, where)

"""`qos/circuit-breaker`: stop calling a backend that keeps failing, and try it again after a while.

```json
"extra_config": {"qos/circuit-breaker": {"interval": 60, "timeout": 10, "max_errors": 5,
                                         "name": "users", "log_status_change": true}}
```
Read in a backend's extra_config, as KrakenD does (also under the old name
`github.com/devopsfaith/krakend-circuitbreaker/gobreaker`, with a warning). The state machine is in
backends/breaker.py. `interval` and `timeout` are seconds (whole or not) or Go durations ("500ms").

While the breaker is open the backend fails at once with 503 and `Retry-After`, without calling the upstream or
Lambda (KrakenD answers 500). Errors: every failure of the backend (a failed call, a timeout, an HTTP error status,
a Lambda function error or throttle, a reply of 500 and above passed through) but the client's own mistakes: a
BackendError with status 400, 404 or 413 (an invalid or unknown function name from the URL, a payload too large)
says nothing about the backend's health and counts neither way.

A Lambda backend with `function_param_name` has one breaker per function (so one failing function does not cut
off the others), at most MAX_FUNCTION_BREAKERS per backend and worker, the least recently used dropped first. Every
state is per worker process, as all of lambdagate's in-memory state.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import replace
from time import monotonic
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from lambdagate.backends.breaker import CLOSED, Breaker, BreakerOpen, BreakerSet, Rules
from lambdagate.backends.lambda_ import NAMESPACE as LAMBDA
from lambdagate.config.durations import SecondsOrDuration
from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.model import BackendConfig
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError
from lambdagate.errors import BackendError, retry_seconds
from lambdagate.pipeline import BuildContext, BuiltBackend
from lambdagate.proxy import ProxyRequest, ProxyResponse

NAMESPACE = "qos/circuit-breaker"
LEGACY_NAMES = ("github.com/devopsfaith/krakend-circuitbreaker/gobreaker",)
MAX_FUNCTION_BREAKERS = 1000  # per backend with function_param_name, per worker
# Statuses of the client's own mistakes (see lambda_errors.py): they count neither as an error nor as a success.
CLIENT_STATUSES = frozenset({400, 404, 413})
_EXAMPLE = '{"interval": 60, "timeout": 10, "max_errors": 5}'
_MAX_SECONDS = 366 * 24 * 3600.0
log = logging.getLogger("lambdagate.breaker")


class CircuitBreakerConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    max_errors: StrictInt = Field(ge=1, le=2**31)
    interval: SecondsOrDuration = Field(default=0.0, ge=0, le=_MAX_SECONDS)  # 0: errors count until a success
    timeout: SecondsOrDuration = Field(
        default=60.0, gt=0, le=_MAX_SECONDS
    )  # gobreaker's default when KrakenD gives none
    name: StrictStr = ""
    log_status_change: StrictBool = True  # KrakenD's default is false; see the README

    @property
    def rules(self) -> Rules:
        return Rules(self.max_errors, self.interval, self.timeout)


def parse(value: Any, ctx: NamespaceContext) -> CircuitBreakerConfig:
    if isinstance(value, dict) and "max_errors" not in value:  # KrakenD reads none as 0: open on the first error
        raise NamespaceError(
            [
                (
                    "max_errors",
                    "required: how many consecutive errors the backend may have before "
                    "the breaker opens (it opens on one more), e.g. 5",
                )
            ]
        )
    return parse_namespace_model(
        CircuitBreakerConfig,
        value,
        ctx,
        _EXAMPLE,
        hints={
            "max_errors": "must be a whole number >= 1 (the breaker opens when the consecutive errors exceed it), e.g. 5",
            "interval": 'must be seconds >= 0 (0: no window) or a duration such as "60s"',
            "timeout": 'must be seconds > 0 or a duration such as "10s" (how long the breaker stays open)',
        },
    )


CIRCUIT_BREAKER_NAMESPACE = Namespace(NAMESPACE, "backend", parse, aliases=LEGACY_NAMES)


def _on_change(
    options: CircuitBreakerConfig, ctx: BuildContext, label: str, name: str
) -> Callable[[Breaker, str, str], None]:
    """What a state change does: count it in the metrics (when on) and log it (with log_status_change)."""
    metrics = ctx.resources.metrics
    stats = metrics.breaker(ctx.endpoint.endpoint, ctx.endpoint.method, label, name) if metrics else None

    def changed(breaker: Breaker, before: str, after: str) -> None:
        if stats is not None:
            stats.observe(after, 0.0)
        if options.log_status_change:
            log.warning("circuit breaker %r went from %s to %s (%s)", breaker.name, before, after, ctx.path)

    return changed


def _refused(exc: BreakerOpen) -> BackendError:
    return BackendError(
        "the backend is temporarily unavailable",
        status=503,
        retry_after=str(retry_seconds(exc.retry_in)),
        cause=str(exc),
        refused=True,
    )


def _is_error(exc: BaseException) -> bool | None:
    """A failed call's outcome for the breaker: an error, or None for the client's own mistake."""
    return None if isinstance(exc, BackendError) and exc.status in CLIENT_STATUSES else True


async def with_circuit_breaker(built: BuiltBackend, cfg: BackendConfig, ctx: BuildContext) -> BuiltBackend:
    """The backend's calls behind a breaker: one for the backend, or one per function named in the URL."""
    options: CircuitBreakerConfig | None = cfg.namespaces.get(NAMESPACE)
    if options is None:
        return built
    name = options.name or ctx.path  # KrakenD's default is no name at all
    rules, changed = options.rules, _on_change(options, ctx, built.label, name)
    lambda_cfg = cfg.namespaces.get(LAMBDA)
    param = lambda_cfg.param if lambda_cfg is not None and lambda_cfg.function_name is None else None
    if param is None:
        call = _guarded(built.call, Breaker(name, rules, changed, monotonic()))
    else:
        functions = BreakerSet(
            lambda fn: Breaker(f"{name} function={fn}", rules, changed, monotonic()), MAX_FUNCTION_BREAKERS
        )
        call = _guarded_per_function(built.call, functions, param)
    return replace(built, call=call)


def _guarded(call: Callable, breaker: Breaker) -> Callable:
    # A partial, not a closure around _through: calling it gives _through's coroutine, one per request.
    return functools.partial(_through, breaker, call)


async def _through(breaker: Breaker, call: Callable, req: ProxyRequest) -> ProxyResponse:
    """One call through `breaker`: refused while it is open, its outcome counted."""
    try:
        generation = breaker.admit(monotonic())
    except BreakerOpen as exc:
        raise _refused(exc) from None
    try:
        resp = await call(req)
    except BaseException as exc:  # CancelledError included: the endpoint's deadline cut the call short
        breaker.settle(generation, _is_error(exc), monotonic())
        raise
    breaker.settle(generation, resp.status >= 500, monotonic())
    return resp


def _guarded_per_function(call: Callable, functions: BreakerSet, param: str) -> Callable:
    def failed(key: str) -> None:
        """A counted error of a function without a breaker when its call started (it may have one by now)."""
        breaker = functions.get(key) or functions.create(key)
        if breaker.state == CLOSED:
            breaker.settle(breaker.generation, True, monotonic())

    async def guarded(req: ProxyRequest) -> ProxyResponse:
        key = req.params.get(param, "")
        breaker = functions.get(key)
        if breaker is not None:
            return await _through(breaker, call, req)
        # No error counted for this function yet (or it was dropped): call it, and give it a breaker on an error.
        try:
            resp = await call(req)
        except BaseException as exc:
            if _is_error(exc):
                failed(key)
            raise
        if resp.status >= 500:
            failed(key)
        return resp

    return guarded

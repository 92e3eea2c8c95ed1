"""One Invoke as a Lambda backend sees it, and the wrappers measuring it when metrics or tracing are on.

`invoke_with_retries` is the call (the invoker retries throttling, the service's 5xx and connection failures
within the request's deadline). `traced` adds the invoke span, `metered` the per-function series; the
backend composes them only when that telemetry is on, so a feature that is off costs nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any, NamedTuple

from lambdagate.aws.invoke import InvokeResponse, LambdaDeadlineError, LambdaError, LambdaInvoker
from lambdagate.proxy import ProxyRequest

# (function name, payload, request, X-Amzn-Trace-Id or None) -> the result, after any retries
Invoke = Callable[[str, bytes, ProxyRequest, "str | None"], Awaitable[InvokeResponse]]


def invoke_with_retries(invoker: LambdaInvoker, qualifier: str | None, invocation_type: str) -> Invoke:
    def invoke(name: str, payload: bytes, req: ProxyRequest, trace_header: str | None = None):
        return invoker.invoke(
            name,
            payload,
            deadline=req.deadline,
            qualifier=qualifier,
            invocation_type=invocation_type,
            request_id=req.request_id,
            trace_header=trace_header,
        )

    return invoke


class Outcome(NamedTuple):
    """How an Invoke ended, for metrics and spans: success, function_error, throttled, timeout or aws_error."""

    label: str
    retries: int = 0
    lambda_request_id: str | None = None
    known_function: bool = True  # False when AWS said the function does not exist


def result_outcome(result: InvokeResponse) -> Outcome:
    """A completed Invoke; a function that ran out of its own time is a timeout."""
    if not result.function_error:
        label = "success"
    else:
        label = "timeout" if b'"Sandbox.Timedout"' in result.payload[:512] else "function_error"
    return Outcome(label, result.attempts - 1, result.request_id)


def error_outcome(exc: BaseException) -> Outcome:
    """A failed Invoke: throttled, timeout or aws_error; cancelled by the endpoint's deadline is a timeout."""
    if isinstance(exc, LambdaError):
        if exc.status == 429:
            label = "throttled"
        elif isinstance(exc, LambdaDeadlineError) or exc.code in ("Timeout", "ConnectTimeout"):
            label = "timeout"
        else:
            label = "aws_error"
        return Outcome(label, exc.attempts - 1, exc.request_id, exc.code != "ResourceNotFoundException")
    if isinstance(exc, (TimeoutError, asyncio.CancelledError)):
        return Outcome("timeout")
    return Outcome("aws_error")


def traced(invoke: Invoke, tracing: Any, region: str | None) -> Invoke:
    """Each Invoke in a span (telemetry.tracing.Tracing.invoke_span) whose trace context goes to Lambda."""

    async def traced_invoke(name: str, payload: bytes, req: ProxyRequest, trace_header: str | None = None):
        with tracing.invoke_span(name, region) as span:
            try:
                result = await invoke(name, payload, req, span.headers().get("x-amzn-trace-id"))
            except BaseException as exc:
                outcome = error_outcome(exc)
                span.set(outcome.label, outcome.retries, outcome.lambda_request_id)
                raise
            outcome = result_outcome(result)
            span.set(outcome.label, outcome.retries, outcome.lambda_request_id)
            return result

    return traced_invoke


def metered(invoke: Invoke, metrics: Any, static_name: str | None) -> Invoke:
    """Each Invoke counted and timed per function (telemetry.metrics.WorkerMetrics.function)."""
    static_stats = metrics.function(static_name) if static_name else None

    def observe(name: str, outcome: Outcome, seconds: float) -> None:
        # A name from the URL becomes a label only once AWS knows it: made-up names share one series.
        stats = static_stats or metrics.function(name if outcome.known_function else "_unknown")
        stats.observe(outcome.label, seconds, outcome.retries)

    async def metered_invoke(name: str, payload: bytes, req: ProxyRequest, trace_header: str | None = None):
        started = perf_counter()
        try:
            result = await invoke(name, payload, req, trace_header)
        except BaseException as exc:
            observe(name, error_outcome(exc), perf_counter() - started)
            raise
        observe(name, result_outcome(result), perf_counter() - started)
        return result

    return metered_invoke

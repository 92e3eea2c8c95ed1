"""Call an endpoint's backends under its deadline and merge their answers in config order.

A failed or late backend never fails the others: the result is partial and says so.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from lambdagate.deadline import deadline_at
from lambdagate.errors import BackendError
from lambdagate.proxy import Backend, ProxyRequest, ProxyResponse

log = logging.getLogger("lambdagate.pipeline")


@dataclass(slots=True)
class MergedResponse:
    """What the endpoint's backends produced together."""

    response: ProxyResponse | None  # merged data (or a single pass-through reply)
    complete: bool
    error: BackendError | None = None  # set when every backend failed
    error_details: dict[str, Any] | None = None  # the failed backends' details (return_error_details)
    failed: int = 0  # how many backends failed (proxy `static` tells "success" from "errored" by it)
    # A status and headers for the reply of a decoded (non pass-through) response, set by a modifier/lua-proxy
    # post script; None: the renderer's own.
    reply_status: int | None = None
    reply_headers: list[tuple[str, str]] | None = None


@dataclass(slots=True)
class BackendSlot:
    call: Backend
    label: str  # for logs: which backend of which endpoint
    details_key: str | None = None  # where error details go in a merge, when the backend shares them
    loop: asyncio.AbstractEventLoop | None = None  # the worker's loop, when built in it (deadline_at's fast path)


def _timeout_error(slot: BackendSlot) -> BackendError:
    return BackendError(
        "the backend did not answer in time", status=504, timed_out=True, cause=f"{slot.label}: deadline exceeded"
    )


def _log_failure(slot: BackendSlot, req: ProxyRequest, err: BackendError) -> None:
    (log.debug if err.refused else log.warning)(
        "backend failed: %s status=%d cause=%s request_id=%s",
        slot.label,
        err.status,
        err.cause or err.message,
        req.request_id,
    )


def _as_backend_error(slot: BackendSlot, exc: BaseException) -> BackendError:
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, TimeoutError):
        return _timeout_error(slot)
    log.error("backend raised an unexpected error: %s", slot.label, exc_info=exc)
    return BackendError("the backend failed", cause=f"{type(exc).__name__}: {exc}")


async def call_one(slot: BackendSlot, req: ProxyRequest) -> MergedResponse:
    try:
        with deadline_at(req.deadline, slot.loop):  # asyncio.timeout_at costs ~6-10 µs a request; this ~1 µs
            resp = await slot.call(req)
    except Exception as exc:
        err = _as_backend_error(slot, exc)
        # Break the cycle err → traceback → this frame → err: it would pin the failed backend's locals (a reply
        # of up to max_backend_response_bytes) until the next full GC pass.
        err.__traceback__ = None
        _log_failure(slot, req, err)
        return MergedResponse(None, False, err, failed=1)
    return MergedResponse(resp, resp.is_complete and bool(resp.data or resp.body is not None))


async def call_all(slots: list[BackendSlot], req: ProxyRequest) -> MergedResponse:
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(s.call(req)) for s in slots]
    done, pending = await asyncio.wait(tasks, timeout=max(0.0, req.deadline - loop.time()))
    if pending:
        for task in pending:
            task.cancel()
        # Let the cancelled calls unwind (a step each), so their timeouts reach metrics, spans and the access log
        # before the reply is logged; bounded, in case a backend is slow to give up.
        await asyncio.wait(pending, timeout=0.1)
    merged: dict[str, Any] = {}
    complete = True
    errors: list[BackendError] = []
    details: dict[str, Any] = {}
    for slot, task in zip(slots, tasks):
        if task in done and task.exception() is None:
            resp: ProxyResponse = task.result()
            complete = complete and resp.is_complete
            if resp.data:
                merged.update(resp.data)
            continue
        err = _as_backend_error(slot, task.exception()) if task in done else _timeout_error(slot)
        _log_failure(slot, req, err)
        errors.append(err)
        complete = False
        if slot.details_key and err.details:
            details[slot.details_key] = err.details
    if len(errors) == len(slots):
        timed_out = all(e.timed_out for e in errors)
        summary = BackendError("all backends failed", status=504 if timed_out else 500, timed_out=timed_out)
        return MergedResponse(None, False, summary, details, len(errors))
    merged.update(details)
    return MergedResponse(
        ProxyResponse.merged(merged, complete=complete), complete and bool(merged), failed=len(errors)
    )

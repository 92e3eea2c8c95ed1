"""`concurrent_calls: N` (endpoint): each backend is called N times at once and the first complete reply wins;
the other calls are cancelled, as Lura's concurrent middleware.

Each call takes the next host in turn (a backend with several hosts spreads them). When no call gives a complete
reply, the result is a failure if any call failed (the last failure), else the last incomplete reply. A pass-through
reply (`no-op`) counts as complete. The race is one call for metrics, traces and the access log.
"""

from __future__ import annotations

import asyncio
import copy

from lambdagate.proxy import Backend, ProxyRequest, ProxyResponse


def concurrent(call: Backend, calls: int) -> Backend:
    if calls <= 1:
        return call

    async def race(req: ProxyRequest) -> ProxyResponse:
        loop = asyncio.get_running_loop()
        # A copy each: a call may not see another's changes to its request (as Lura's clones).
        tasks = [loop.create_task(call(copy.copy(req))) for _ in range(calls)]
        last: ProxyResponse | None = None
        failure: BaseException | None = None
        try:
            for next_done in asyncio.as_completed(tasks):
                try:
                    resp = await next_done
                except Exception as exc:
                    failure = exc
                    continue
                if resp.is_complete or resp.body is not None:
                    return resp
                last = resp
        finally:
            for task in tasks:
                task.cancel()  # nothing for those done
                task.add_done_callback(_retrieve)
        if failure is not None:
            raise failure
        assert last is not None
        return last

    return race


def _retrieve(task: asyncio.Task) -> None:
    """Mark a losing call's outcome as seen, so asyncio logs no 'exception was never retrieved'."""
    if not task.cancelled():
        task.exception()

"""Shadow backends (backend `proxy.shadow: true`): called with each request, in the background, and their replies
discarded, as Lura's shadow proxy. They are not part of the endpoint's merge or its sequence (indexes of
`{respN_...}` count the others), and they never delay or change the client's reply.

Each shadow call has its own deadline (`shadow_timeout`, else the endpoint's timeout), measured from the request,
so it may outlive the client's reply. In-flight shadow calls are capped per endpoint: past the cap a request sends
none (logged once a minute), so a slow shadow service cannot pile up work in the gateway.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Sequence

from lambdagate.pipeline.fanout import BackendSlot, call_all, call_one
from lambdagate.proxy import ProxyRequest

log = logging.getLogger("lambdagate.pipeline")
MAX_IN_FLIGHT = 256  # shadow requests under way per endpoint and worker


class Shadows:
    def __init__(self, slots: Sequence[BackendSlot], timeout: float, endpoint: str) -> None:
        self._slots = list(slots)
        self._timeout = timeout
        self._endpoint = endpoint
        self._tasks: set[asyncio.Task] = set()
        self._warned_at = -60.0

    def send(self, req: ProxyRequest) -> None:
        if len(self._tasks) >= MAX_IN_FLIGHT:
            now = time.monotonic()
            if now - self._warned_at >= 60:
                self._warned_at = now
                log.warning(
                    "shadow backends of %s skipped: %d requests already under way", self._endpoint, MAX_IN_FLIGHT
                )
            return
        loop = asyncio.get_running_loop()
        shadow = copy.copy(req)
        shadow.deadline = loop.time() + self._timeout
        shadow.calls = None  # not the client's request: not in its access line
        task = loop.create_task(self._call(shadow))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, req: ProxyRequest) -> None:
        # Failures are logged by the fan-out, as any backend's; the outcome is dropped.
        if len(self._slots) == 1:
            await call_one(self._slots[0], req)
        else:
            await call_all(self._slots, req)

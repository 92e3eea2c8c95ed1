"""Log shipping off the request path: a bounded queue drained by one background thread per process.

GELF and syslog outputs put their items here. `offer` never blocks and never grows memory: when the queue is
full the item is dropped and counted. The thread delivers items one by one; a failed delivery is counted too
(and, for stream transports such as TCP, retried once the connection is back). Drops and failures are reported
as log lines at most once per `REPORT_EVERY` seconds, on a logger the shipping handlers themselves ignore (so
a report about an unreachable server is not queued for that same server).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

REPORT_LOGGER = "lambdagate.telemetry.shipping"
REPORT_EVERY = 10.0  # seconds between two report lines of one shipper
_STOP = object()

log = logging.getLogger(REPORT_LOGGER)


class Shipper:
    """Deliver queued items with `deliver(item)` on a daemon thread; `deliver` raises OSError when it fails.

    `retry`: a failed item is kept and tried again after a back-off (up to `max_backoff` seconds) instead of
    dropped: meant for connections that can come back (TCP); datagrams are dropped (UDP, syslog)."""

    def __init__(
        self,
        name: str,
        deliver: Callable[[Any], None],
        *,
        capacity: int = 2048,
        retry: bool = False,
        max_backoff: float = 5.0,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.deliver = deliver
        self.retry = retry
        self.max_backoff = max_backoff
        self.on_failure = on_failure  # e.g. close a broken connection so the next delivery reconnects
        self.queue: queue.Queue[Any] = queue.Queue(capacity)
        self.pid = os.getpid()
        self.dropped = 0  # queue full (incremented by producers only)
        self.failed = 0  # delivery failures (incremented by the thread only)
        self.sent = 0
        self._reported = {"dropped": 0, "failed": 0, "at": 0.0}
        self._last_error = ""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lambdagate-{name}", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def offer(self, item: Any) -> bool:
        """Queue `item` for delivery; False (and counted) when the queue is full. Never blocks."""
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def close(self, timeout: float = 1.0) -> None:
        """Deliver what is queued for at most `timeout` seconds, then stop the thread (idempotent)."""
        if os.getpid() != self.pid or self._stopping.is_set():
            return  # a forked copy has no thread of its own to stop
        self._stopping.set()
        try:
            self.queue.put(_STOP, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                item = self.queue.get(timeout=1.0)
            except queue.Empty:
                self._report()
                continue
            if item is _STOP:
                self._report(final=True)
                return
            self._deliver(item)
            self._report()

    def _deliver(self, item: Any) -> None:
        backoff = 0.1
        while True:
            try:
                self.deliver(item)
            except Exception as exc:  # OSError: the server; others (a message too large…): this item only
                self.failed += 1
                self._last_error = str(exc) or type(exc).__name__
                if self.on_failure is not None:
                    self.on_failure()
                if not self.retry or not isinstance(exc, OSError):
                    return
                self._report()
                # While waiting, the queue fills up and producers drop (counted): memory stays bounded.
                if self._stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, self.max_backoff)
                continue
            self.sent += 1
            return

    def _report(self, final: bool = False) -> None:
        """One line about what was lost since the last line, at most every REPORT_EVERY seconds."""
        seen = self._reported
        dropped, failed = self.dropped - seen["dropped"], self.failed - seen["failed"]
        now = time.monotonic()
        if not (dropped or failed) or (not final and now - seen["at"] < REPORT_EVERY):
            return
        seen.update(dropped=self.dropped, failed=self.failed, at=now)
        if dropped:
            log.warning(
                "%s: %d log records dropped, the queue (%d) was full: the server is slow or unreachable",
                self.name,
                dropped,
                self.queue.maxsize,
            )
        if failed:
            log.warning("%s: %d failed deliveries (last: %s)", self.name, failed, self._last_error)


class ReportFilter(logging.Filter):
    """Keep the shippers' own reports out of the shippers (they still reach the stream handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != REPORT_LOGGER

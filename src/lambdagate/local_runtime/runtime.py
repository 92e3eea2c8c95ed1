"""The runtime proper: the function registry, its pools, hot reload and logging.

HTTP-agnostic (server.py adapts it to Lambda's REST API). Reloading is driven
two ways: a watchfiles ``awatch`` task notices changes promptly and logs them,
and every lookup re-stats the directory's top-level files (a few stat calls),
so an edit is guaranteed to apply to the very next invocation even if it
lands before the watcher has reported it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from pathlib import Path

from lambdagate.local_runtime.functions import CONFIG_FILES, ConfigError, FunctionConfig, load_functions
from lambdagate.local_runtime.pool import FunctionPool, Invocation, reap_killed

log = logging.getLogger("lambdagate.local_runtime")
# Function output (print/logging in handlers) is echoed on its own logger so it
# can be silenced separately from the one-line-per-invocation log.
output_log = logging.getLogger("lambdagate.local_runtime.output")


def _scan(root: Path) -> dict[str, tuple[int, int]]:
    stamps = {}
    try:
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.name.endswith(".py") or entry.name in CONFIG_FILES:
                    try:
                        st = entry.stat()
                    except OSError:
                        continue
                    stamps[entry.name] = (st.st_mtime_ns, st.st_size)
    except OSError:
        pass
    return stamps


def default_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


class LocalRuntime:
    def __init__(self, directory, region: str | None = None):
        self.root = Path(directory).resolve()
        self.region = region or default_region()
        self.functions: dict[str, FunctionConfig] = load_functions(self.root)  # ConfigError: refuse to start
        self._stamps = _scan(self.root)
        self._pools: dict[str, FunctionPool] = {}
        self._tasks: set[asyncio.Task] = set()
        self._queued: dict[str, int] = {}  # unfinished Event invocations by function name
        self._stop = asyncio.Event()

    # -- registry -----------------------------------------------------------

    def refresh(self, retire_all: bool = False) -> None:
        """Pick up edits: reload the configuration and retire stale workers."""
        stamps = _scan(self.root)
        if stamps == self._stamps and not retire_all:
            return
        changed = {n for n in stamps.keys() | self._stamps.keys() if stamps.get(n) != self._stamps.get(n)}
        self._stamps = stamps
        try:
            functions = load_functions(self.root)
        except ConfigError as e:
            log.error("%s (keeping the previous configuration)", e)
            functions = self.functions

        def top_level_module(fn: FunctionConfig) -> str | None:
            path = fn.source_path(self.root)
            return path.name if path.parent == self.root else None

        modules = {top_level_module(fn) for fn in functions.values()}
        # A changed .py that is no function's module may be a helper any of them imports.
        helper_changed = retire_all or any(n.endswith(".py") and n not in modules for n in changed)
        for name, pool in list(self._pools.items()):
            fn = functions.get(name)
            if fn is None or fn != pool.fn or helper_changed or top_level_module(fn) in changed:
                pool.close()
                del self._pools[name]
        added, removed = functions.keys() - self.functions.keys(), self.functions.keys() - functions.keys()
        self.functions = functions
        log.info(
            "reloaded %s: %d function(s)%s%s",
            self.root,
            len(functions),
            f", added {', '.join(sorted(added))}" if added else "",
            f", removed {', '.join(sorted(removed))}" if removed else "",
        )

    def get(self, name: str) -> FunctionConfig | None:
        self.refresh()
        return self.functions.get(name)

    def list(self) -> list[FunctionConfig]:
        self.refresh()
        return list(self.functions.values())

    # -- invocations ----------------------------------------------------------

    def _pool(self, fn: FunctionConfig) -> FunctionPool:
        pool = self._pools.get(fn.name)
        if pool is None or pool.fn != fn:
            if pool is not None:
                pool.close()
            pool = self._pools[fn.name] = FunctionPool(fn, self.root, self.region)
        return pool

    async def invoke(
        self,
        fn: FunctionConfig,
        payload: bytes,
        *,
        request_id: str,
        invoked_arn: str,
        invocation_type: str = "RequestResponse",
        client_context: dict | None = None,
    ) -> Invocation:
        # Synchronous callers wait for a free worker at most the function's
        # timeout, then are throttled (429) as Lambda would; queued Event
        # invocations wait as long as it takes (invoke_in_background bounds how many).
        wait = fn.timeout if invocation_type == "RequestResponse" else None
        started = time.monotonic()
        result = await self._pool(fn).invoke(request_id, payload, invoked_arn, client_context, wait)
        total_ms = (time.monotonic() - started) * 1000
        outcome = result.outcome
        if result.error_type:
            outcome += f" ({result.error_type})"
        log.info(
            "invoke %s request_id=%s type=%s duration=%.1fms total=%.1fms%s outcome=%s",
            fn.name,
            request_id,
            invocation_type,
            result.duration_ms,
            total_ms,
            " cold" if result.cold else "",
            outcome,
        )
        if result.output.strip():
            text = result.output.decode("utf-8", "replace").rstrip("\n")
            output_log.info("%s", "\n".join(f"[{fn.name}] {line}" for line in text.splitlines()))
        return result

    def invoke_in_background(self, fn: FunctionConfig, payload: bytes, **kwargs) -> bool:
        """Queue an Event invocation; False (nothing queued) when ``fn`` already has its
        ``max_queued_events`` unfinished ones, so a flood cannot grow memory without bound."""
        queued = self._queued.get(fn.name, 0)
        if queued >= fn.max_queued_events:
            log.info(
                "invoke %s request_id=%s type=Event outcome=throttled (%d queued, the most allowed)",
                fn.name,
                kwargs.get("request_id"),
                queued,
            )
            return False
        self._queued[fn.name] = queued + 1
        task = asyncio.get_running_loop().create_task(self.invoke(fn, payload, invocation_type="Event", **kwargs))
        self._tasks.add(task)  # keep a reference until done, or it may be collected mid-run
        task.add_done_callback(functools.partial(self._event_done, fn.name))
        return True

    def _event_done(self, name: str, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        left = self._queued.pop(name) - 1
        if left:
            self._queued[name] = left

    # -- lifecycle ------------------------------------------------------------

    async def watch(self) -> None:
        """Reload on file changes until close(); subdirectory changes retire every worker."""
        from watchfiles import awatch

        try:
            async for changes in awatch(self.root, stop_event=self._stop, step=50):
                nested = any(Path(path).parent != self.root for _, path in changes)
                self.refresh(retire_all=nested)
        except Exception:
            log.exception("file watcher stopped; edits still apply on the next invocation")

    async def close(self) -> None:
        self._stop.set()
        for task in list(self._tasks):
            task.cancel()
        for pool in self._pools.values():
            pool.kill_all()
        self._pools.clear()
        await reap_killed()

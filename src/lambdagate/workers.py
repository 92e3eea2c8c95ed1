"""granian's worker processes under our supervision: a worker that dies for any reason is respawned.

granian's own `respawn_failed_workers` stops the whole server when a worker dies twice within 5.5 s of being
respawned ("crash loop"): a client that can crash a worker (a panic in the HTTP server aborts the process) could
then stop the gateway with a few requests. Here the rule depends on whether the dead worker had started:

- A worker that had started (its ASGI lifespan start-up completed, so it was accepting connections) is always
  respawned: at once when it had run for STABLE_AFTER seconds, otherwise after a back-off (0.5 s, doubling up to
  MAX_BACKOFF) so that a worker dying again and again cannot make the main process spin.
- A worker that died while starting failed on its own, not because of a client. Before any worker has ever
  started, the gateway stops at once (exit 1: the deployment is broken, as without supervision). Later, it is
  tried again with the same back-off; once a slot has failed START_ATTEMPTS times in a row, the gateway stops
  if no other worker is alive (nothing would answer), and otherwise keeps serving and keeps trying every
  MAX_BACKOFF seconds.

A worker says that it started by creating a file named after its pid in a private directory (`ReadyMarks`).
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from granian.server import Server

log = logging.getLogger("lambdagate")
STABLE_AFTER = 10.0  # seconds: a started worker that ran this long died of something new
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 5.0
START_ATTEMPTS = 3  # a worker slot failing to start this many times in a row stops the gateway


# --- worker side ----------------------------------------------------------------------------------------------


def load_app(target: str, ready_dir: str) -> Callable:
    """granian's target loader, run in each worker: call the factory `module:name`, and mark the worker ready
    once the app's lifespan start-up completes (before that the worker accepts no connection)."""
    module, _, name = target.partition(":")
    app = getattr(importlib.import_module(module), name)()
    marker = Path(ready_dir, str(os.getpid()))

    async def lifespan(scope: dict, receive: Any, send: Any) -> None:
        async def marking_send(message: dict) -> None:
            await send(message)
            if message.get("type") == "lifespan.startup.complete":
                marker.touch()

        await app(scope, receive, marking_send)

    def entry(scope: dict, receive: Any, send: Any) -> Any:
        # A plain function returning the app's coroutine: one call more per request, no extra coroutine.
        if scope["type"] == "lifespan":
            return lifespan(scope, receive, send)
        return app(scope, receive, send)

    return entry


# --- main process -----------------------------------------------------------------------------------------------


class ReadyMarks:
    """The private directory where workers mark themselves started."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="lambdagate-workers-")

    def take(self, pid: int | None) -> bool:
        """Whether the worker `pid` had started; forgets it."""
        path = Path(self.directory, str(pid))
        started = path.exists()
        path.unlink(missing_ok=True)
        return started

    def any_started(self) -> bool:
        return any(Path(self.directory).iterdir())

    def prune(self, live: set[int]) -> None:
        """Forget workers that are gone (replaced by a reload), so that a reused pid starts unmarked."""
        for path in Path(self.directory).iterdir():
            if not path.name.isdigit() or int(path.name) not in live:
                path.unlink(missing_ok=True)

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class RespawnPolicy:
    """When to respawn a dead worker (see the module docstring); pure, so that it is tested without processes."""

    ever_started: bool = False  # whether any worker has started (the server also sets it from the marks)
    quick_deaths: dict[int, int] = field(default_factory=dict)  # slot → started workers dying young, in a row
    start_failures: dict[int, int] = field(default_factory=dict)  # slot → failed starts in a row

    def delay(self, slot: int, started: bool, age: float, others_alive: bool) -> float | None:
        """Seconds to wait before respawning the worker of `slot`, or None to stop the gateway."""
        if started:
            self.ever_started = True
            self.start_failures[slot] = 0
            if age >= STABLE_AFTER:
                self.quick_deaths[slot] = 0
                return 0.0
            self.quick_deaths[slot] = deaths = self.quick_deaths.get(slot, 0) + 1
            return min(FIRST_BACKOFF * 2 ** (deaths - 1), MAX_BACKOFF)
        if not self.ever_started:
            return None
        self.start_failures[slot] = failures = self.start_failures.get(slot, 0) + 1
        if failures >= START_ATTEMPTS and not others_alive:
            return None
        return min(FIRST_BACKOFF * 2 ** (failures - 1), MAX_BACKOFF)


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "it exited"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        if name == "SIGABRT":
            return "killed by SIGABRT (a panic in the HTTP server aborts its worker)"
        return f"killed by {name}"
    return f"exit code {exitcode}"


class SupervisedServer(Server):
    """granian's server with our respawn rule instead of its crash-loop exit.

    It overrides granian's `_serve_loop` (granian 2.8; `tests/test_workers.py` fails if a granian upgrade
    changes what it relies on: `interrupt_children`, `main_loop_interrupt`, `_respawn_workers`, `_reload`).
    """

    def __init__(self, target: str, **options: Any) -> None:
        super().__init__(target, factory=True, respawn_failed_workers=True, **options)
        self.marks = ReadyMarks()
        self.policy = RespawnPolicy()

    def serve(self) -> None:  # type: ignore[override]
        try:
            super().serve(target_loader=partial(load_app, ready_dir=self.marks.directory))
        finally:
            self.marks.cleanup()

    def _serve_loop(self, spawn_target: Any, target_loader: Any) -> None:
        while True:
            # A timeout too: granian's reload clears the event, which could hide a worker that died meanwhile.
            self.main_loop_interrupt.wait(1.0)
            self.main_loop_interrupt.clear()
            if self.interrupt_signal:
                break
            if self.interrupt_children and not self._respawn_dead(spawn_target, target_loader):
                break
            if self.reload_signal:
                self._reload(spawn_target, target_loader)
                self.marks.prune({wrk.inner.pid for wrk in self.wrks})

    def _respawn_dead(self, spawn_target: Any, target_loader: Any) -> bool:
        """Respawn the workers that died; False to stop the gateway (granian then exits 1)."""
        while self.interrupt_children:
            slot = self.interrupt_children.pop(0)
            worker = self.wrks[slot]
            if worker.is_alive():  # a reload replaced it meanwhile
                continue
            pid, age = getattr(worker.inner, "pid", None), time.monotonic() - worker.birth
            started = self.marks.take(pid)
            self.policy.ever_started |= self.marks.any_started()
            how = describe_exit(getattr(worker.inner, "exitcode", None))
            others_alive = any(other.is_alive() for other in self.wrks if other is not worker)
            delay = self.policy.delay(slot, started, age, others_alive)
            if delay is None:
                why = "no other worker is alive" if self.policy.ever_started else "no worker has ever started"
                log.error(
                    "worker-%d (pid %s) failed to start (%s) and %s; stopping the gateway", slot + 1, pid, how, why
                )
                self.interrupt_children.append(slot)  # granian's shutdown exits 1 when this is not empty
                return False
            state = f"after {age:.1f}s of service" if started else "while starting"
            log.error(
                "worker-%d (pid %s) died %s: %s; respawning it%s",
                slot + 1,
                pid,
                state,
                how,
                f" in {delay:g}s" if delay else "",
            )
            if not self._pause(delay):
                return False
            self._respawn_workers([slot], spawn_target, target_loader)
            self._metrics.incr_respawn_err(1)
        self.marks.prune({wrk.inner.pid for wrk in self.wrks})
        return True

    def _pause(self, seconds: float) -> bool:
        """Sleep, unless the gateway is told to stop meanwhile (then False)."""
        deadline = time.monotonic() + seconds
        while not self.interrupt_signal and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
        return not self.interrupt_signal

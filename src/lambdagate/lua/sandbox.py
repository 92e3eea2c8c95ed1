"""One script set (a `modifier/lua-*` block) in one worker: its Lua 5.4 runtime, built once at start-up, and the
driver that runs its `pre` or `post` code for a request.

Limits. Each call (a request's `pre`, or its `post`) gets `lua_cpu_ms` of the worker thread's CPU time: a debug
hook on the call's coroutine checks the clock every `HOOK_EVERY` instructions and raises an error the script cannot
catch (the sandbox's pcall re-raises it). Memory: the runtime's allocator refuses to grow past what the loaded set
uses plus `lua_memory_bytes` (shared by the calls of that set that are in flight at once), and what a script stores
on the Python side counts against the same cap. Either way the request fails with 500, the log names the script
and the limit, and the runtime is collected and serves the next request.

Async. lupa is synchronous, so each call runs in a Lua coroutine on the event loop thread. `http_response.new`
yields to the driver, which makes the HTTP call with the worker's own client under the request's deadline and
resumes the coroutine with the answer; other requests run meanwhile (each call has its own globals, switched on
every resume). CPU time spent waiting is not charged.
"""

from __future__ import annotations

import logging
import os
from importlib.resources import files
from time import monotonic, thread_time
from typing import TYPE_CHECKING, Any

import lupa.lua54 as lua

from lambdagate.lua import api
from lambdagate.lua.config import LuaConfig, read_source

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    Fetch = Callable[[tuple[Any, ...], float, api.CallState], Awaitable[tuple[Any, ...]]]

log = logging.getLogger("lambdagate.lua")
BOOT = files("lambdagate.lua").joinpath("boot.lua").read_bytes()
GUARDS = files("lambdagate.lua").joinpath("guards.lua").read_bytes()
HOOK_EVERY = 10_000  # instructions between two CPU-clock checks (~tens of µs of Lua)
LIVE_CHECK_SECONDS = 1.0  # a `live` set looks at its sources' files at most this often
_PRINT_MAX = 1024


class ScriptFailed(Exception):
    """A script stopped the request: `status` and `message` are what the client gets (a custom_error's own
    message, or a generic one)."""

    def __init__(self, status: int, message: str, content_type: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.content_type = content_type


class ScriptSet:
    """A configured block's runtime: sources loaded, `pre` and `post` compiled; `begin` and `run` serve requests."""

    def __init__(self, config: LuaConfig, cpu_seconds: float, memory_bytes: int, fetch: Fetch) -> None:
        self.config = config
        self.cpu_seconds = cpu_seconds
        self.memory_bytes = memory_bytes
        self._fetch = fetch
        self.active = api.CallState(memory_bytes)  # the running call's; set before every resume
        rt = lua.LuaRuntime(
            encoding=None,
            register_eval=False,
            register_builtins=False,
            attribute_filter=api.attribute_filter,
            max_memory=0,
        )
        self._rt = rt
        g = rt.globals()
        guards = rt.execute(GUARDS, g[b"string"], g[b"table"], g[b"math"])
        boot = rt.execute(BOOT, thread_time, HOOK_EVERY, self._print, guards, api.method_tables(rt), api.kind_of)
        self._new_env, self._compile, self._run_source = boot[b"new_env"], boot[b"compile"], boot[b"run_source"]
        self._start, self._step = boot[b"start"], boot[b"step"]
        self._begin, self.set_response = boot[b"begin"], boot[b"set_response"]
        if not config.options.allow_open_libs:
            boot[b"lock_strings"]()
        self._api = rt.table_from(
            {
                b"luaTable": rt.table_from({b"new": lambda: api.LuaTableApi({}, self.active)}),
                b"luaList": rt.table_from({b"new": lambda: api.LuaListApi([], self.active)}),
                b"luaNil": rt.table_from({b"new": lambda: None}),
            }
        )
        self._pre = self._post = None
        self._broken: str | None = None
        self._stamp = self._file_stamp()
        self._checked = monotonic()
        problem = self._load(config.texts)
        if problem is not None:
            raise ValueError(problem)

    @property
    def label(self) -> str:
        return self.config.label

    def _print(self, message: bytes) -> None:
        log.info("lua %s: %s", self.label, api.text(message[:_PRINT_MAX]))

    def _load(self, texts: tuple[tuple[str, bytes], ...]) -> str | None:
        """Load the sources into a new set of globals and compile pre and post there; a problem, or None."""
        self._rt.set_max_memory(0)
        env = self._new_env(self.config.options.allow_open_libs, self._api)
        for path, content in texts:
            f, err = self._compile(env, content, os.path.basename(path).encode())
            if f is None:
                return api.text(err)
            if (err := self._run_source(f)) is not None:
                return f"{os.path.basename(path)}: {api.text(err)}"
        pre = self._compile(env, self.config.options.pre.encode(), b"pre")
        post = self._compile(env, self.config.options.post.encode(), b"post")
        if pre[0] is None or post[0] is None:
            return api.text(pre[1] or post[1])
        self._pre = pre[0] if self.config.options.pre.strip() else None
        self._post = post[0] if self.config.options.post.strip() else None
        self._rt.gccollect()
        self._rt.set_max_memory(self._rt.get_memory_used() + self.memory_bytes, total=True)
        return None

    @property
    def has_post(self) -> bool:
        """Whether there is a `post` to run (else its response need not be handed to the runtime)."""
        return self._post is not None or self._broken is not None

    def new_state(self) -> api.CallState:
        """A request's accounting, for the objects its scripts get."""
        return api.CallState(self.memory_bytes)

    def begin(self, request: Any = None, response: Any = None, ctx: Any = None) -> Any:
        """A request's call table: its objects (`request.load()`, ...) and its globals, shared by its pre and post
        runs; `set_response(call, response)` gives post its response."""
        self._refresh()
        return self._begin(request, response, ctx)

    async def run(self, which: str, call: Any, state: api.CallState, deadline: float) -> None:
        """Run `pre` or `post` for one request (`call` from `begin`); ScriptFailed when it stops the request.
        Each run has its own CPU budget; `state` (from `new_state`) counts what the request's objects store."""
        if self._broken is not None:
            log.error("lua %s %s not run: %s", self.label, which, self._broken)
            raise ScriptFailed(500, "internal server error")
        code = self._pre if which == "pre" else self._post
        if code is None:
            return
        handle, args = None, ()
        remaining = self.cpu_seconds
        while True:
            self.active = state
            started = thread_time()
            handle, result = self._resume(handle, code, call, started + remaining, args)
            kind = result[0]
            if state.violation is not None:
                result = (b"limit", state.violation.encode())
                kind = b"limit"
            if kind == b"done":
                return
            if kind == b"await":
                remaining -= thread_time() - started
                args = await self._fetch(result[1:], deadline, state)
                continue
            self._fail(which, result)

    def _resume(
        self, handle: Any, code: Any, call: Any, deadline: float, args: tuple[Any, ...]
    ) -> tuple[Any, tuple[Any, ...]]:
        """One resume of the call's coroutine (its start: one call into Lua for the coroutine and its first run)."""
        try:
            if handle is None:
                handle, *rest = self._start(code, call, deadline)
                return handle, tuple(rest)
            result = self._step(handle, call, deadline, *args)
        except lua.LuaMemoryError:
            return handle, (b"limit", b"memory")
        except lua.LuaError as exc:
            return handle, (b"error", str(exc).encode())
        return handle, result if isinstance(result, tuple) else (result,)

    def _fail(self, which: str, result: tuple[Any, ...]) -> None:
        kind = result[0]
        if kind == b"custom":
            message, status, content_type = (list(result[1:]) + [None, None, None])[:3]
            log.info("lua %s %s: custom_error %s: %s", self.label, which, status, api.text(message))
            code = int(status) if status is not None and 100 <= status <= 999 else 500
            raise ScriptFailed(code, api.text(message), api.text(content_type) if content_type else None)
        if kind == b"limit":
            limit = api.text(result[1])
            what = (
                f"CPU limit of {self.cpu_seconds * 1000:g} ms"
                if limit == "cpu"
                else f"memory limit of {self.memory_bytes} bytes"
            )
            log.error(
                "lua %s %s stopped: %s exceeded (lambdagate/server lua_%s)",
                self.label,
                which,
                what,
                "cpu_ms" if limit == "cpu" else "memory_bytes",
            )
            self._rt.gccollect()
        else:
            detail = result[1] if len(result) > 1 else b"unknown error"
            log.error(
                "lua %s %s failed: %s", self.label, which, api.text(detail) if isinstance(detail, bytes) else detail
            )
        raise ScriptFailed(500, "internal server error")

    def _file_stamp(self) -> tuple[Any, ...]:
        stamps = []
        for path in self.config.options.sources:
            try:
                st = os.stat(path)
                stamps.append((st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def _refresh(self) -> None:
        """`live`: reload the sources when their files changed (looked at once a second at most)."""
        if not self.config.options.live or monotonic() - self._checked < LIVE_CHECK_SECONDS:
            return
        self._checked = monotonic()
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            texts = tuple((path, read_source(path)) for path in self.config.options.sources)
        except (OSError, ValueError) as exc:
            self._broken = f"cannot read a source: {exc}"
        else:
            self._broken = self._load(texts)
        log.warning("lua %s: sources reloaded%s", self.label, f", broken: {self._broken}" if self._broken else "")

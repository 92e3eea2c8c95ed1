"""Worker processes and per-function pools: isolation, warm reuse, concurrency.

Each worker is a separate ``python -m lambdagate.local_runtime.worker`` process
(its own session, so a kill takes its children too) talking the protocol.py
framing over a socket pair. Whatever a handler does (os._exit, a segfault,
sys.exit, an endless loop, a memory blow-up) ends at most that process: the
invocation gets Lambda's error payload and the next one gets a fresh worker.
A worker's environment is built from nothing (worker_env): Lambda's variables
and the function's own, never the runtime's (so not the gateway's AWS keys).

A FunctionPool bounds a function's concurrent invocations by its
``reserved_concurrency`` and keeps finished workers warm for reuse (most recent
first, like Lambda favouring warm environments).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import sys
import sysconfig
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from lambdagate.local_runtime.functions import FunctionConfig
from lambdagate.local_runtime.protocol import encode, read_message_async

INIT_TIMEOUT = 10.0  # Lambda's limit for the init phase (importing the handler module)
MAX_RESPONSE_BYTES = 6291556  # Lambda's synchronous response payload limit
_OUTPUT_KEPT = 256 * 1024  # how much of one invocation's output is read back
_reaping: set[asyncio.Future] = set()  # waits on killed workers, see reap_killed()


@dataclass
class Invocation:
    """What one invocation produced, independent of HTTP."""

    outcome: str  # ok | error | timeout | exit | throttled
    payload: bytes = b""
    error_type: str | None = None
    output: bytes = b""  # what the handler printed/logged
    log: bytes = b""  # output framed by START/END/REPORT lines, as in CloudWatch
    duration_ms: float = 0.0
    cold: bool = False

    @property
    def function_error(self) -> str | None:
        return "Unhandled" if self.outcome in ("error", "timeout", "exit") else None


class WorkerGone(Exception):
    """The worker process closed its socket (exited or was killed)."""


def _error_payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def _exit_error(request_id: str, reason: str) -> Invocation:
    message = f"RequestId: {request_id} Error: {reason}"
    return Invocation("exit", _error_payload("Runtime.ExitError", message), "Runtime.ExitError")


def _timed_out(request_id: str, what: str) -> Invocation:
    message = f"RequestId: {request_id} Error: {what}"
    return Invocation("timeout", _error_payload("Sandbox.Timedout", message), "Sandbox.Timedout")


def _exit_reason(returncode: int | None) -> str:
    # Lambda's wording (its runtime API is written in Go, hence "signal: killed").
    if returncode is None:
        return "Runtime exited without providing a reason"
    if returncode < 0:
        try:
            name = signal.strsignal(-returncode) or f"signal {-returncode}"
        except ValueError:
            name = f"signal {-returncode}"
        return f"Runtime exited with error: signal: {name.lower()}"
    if returncode == 0:
        return "Runtime exited without providing a reason"
    return f"Runtime exited with error: exit status {returncode}"


# Where this lambdagate is imported from: Lambda's LAMBDA_RUNTIME_DIR (/var/runtime, the runtime's own code).
RUNTIME_DIR = str(Path(__file__).resolve().parents[2])
# The only variables taken from the runtime's own environment: what the interpreter may need to start and
# find its libraries. Nothing else (keys, tokens, proxy URLs with passwords) reaches handlers.
INHERITED_ENV = ("LD_LIBRARY_PATH", "PYTHONHOME", "TMPDIR")


def _python_path(root: Path, configured: str | None) -> str:
    """PYTHONPATH: the handler directory (or the function's own setting), then this package if needed."""
    parts = [configured or str(root)]
    # Installed into site-packages, lambdagate is importable anyway, and site-packages must not go before the
    # stdlib; run from a source tree (or an editable install of another tree) it must be named here, or the
    # worker would import some other copy of lambdagate, or none.
    site_dirs = {str(Path(sysconfig.get_path(k)).resolve()) for k in ("purelib", "platlib")}
    if RUNTIME_DIR not in site_dirs and RUNTIME_DIR not in parts[0].split(os.pathsep):
        parts.append(RUNTIME_DIR)
    return os.pathsep.join(parts)


def worker_env(fn: FunctionConfig, root: Path, region: str, log_stream: str) -> dict[str, str]:
    """A worker's whole environment: Lambda's variables plus the function's ``environment``.

    Built from nothing, never from ``os.environ``: the gateway's AWS keys and other secrets must not reach
    handlers. Credentials come only from functions.yaml, as a role's would on Lambda.
    """
    env = {name: os.environ[name] for name in INHERITED_ENV if os.environ.get(name)}
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": fn.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}",
            "LAMBDA_TASK_ROOT": str(root),
            "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
            "_HANDLER": fn.handler,
            "TZ": ":UTC",
            "LANG": "en_US.UTF-8",
            # Lambda's PATH starts with its Python's bin directory; ours is this interpreter's.
            "PATH": os.pathsep.join((os.path.dirname(sys.executable), os.environ.get("PATH") or os.defpath)),
            # An SDK in a handler must not find the developer's ~/.aws files or an EC2 instance role either:
            # like the keys, those are credentials not given in functions.yaml (which may set these three).
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "PYTHONUNBUFFERED": "1",  # so output printed just before a crash is not lost
            "MALLOC_ARENA_MAX": "2",  # per-thread malloc arenas would eat the RLIMIT_AS budget
            "_LAMBDAGATE_RUNTIME_PID": str(os.getpid()),
        }
    )
    env.update(fn.environment)
    env["PYTHONPATH"] = _python_path(root, fn.environment.get("PYTHONPATH"))
    return env


class Worker:
    """One execution environment: a worker process plus its log file."""

    def __init__(self, fn: FunctionConfig, root: Path, region: str):
        self.fn = fn
        self.root = root
        self.region = region
        stamp = time.strftime("%Y/%m/%d", time.gmtime())
        self.log_stream = f"{stamp}/[$LATEST]{uuid.uuid4().hex}"
        self.proc: asyncio.subprocess.Process | None = None
        self.init_ms: float | None = None  # reported on the first invocation only (cold start)
        self.max_memory_mb = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._log_fd = self._open_log()

    def _open_log(self) -> int:
        # O_APPEND matters: the child shares the file offset, and the runtime
        # truncates the file between invocations.
        fd, path = tempfile.mkstemp(prefix=f"lambdagate-{self.fn.name}-", suffix=".log")
        try:
            return os.open(path, os.O_RDWR | os.O_APPEND)
        finally:
            os.close(fd)
            os.unlink(path)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> tuple[dict, bytes]:
        """Spawn and wait for the init phase; returns the worker's ready/init_error message."""
        spawned = time.monotonic()
        parent, child = socket.socketpair()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "lambdagate.local_runtime.worker",
                str(child.fileno()),
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=self._log_fd,
                stderr=self._log_fd,
                cwd=self.root,
                env=worker_env(self.fn, self.root, self.region, self.log_stream),
                start_new_session=True,
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self._reader, self._writer = await asyncio.open_unix_connection(sock=parent)
        try:
            header, body = await asyncio.wait_for(read_message_async(self._reader), INIT_TIMEOUT)
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            raise WorkerGone() from e
        # Like Lambda's Init Duration: process start + runtime setup + handler import.
        self.init_ms = (time.monotonic() - spawned) * 1000
        return header, body

    async def invoke(self, header: dict, body: bytes) -> tuple[dict, bytes]:
        try:
            self._writer.write(encode(header, body))
            await self._writer.drain()
            reply, payload = await read_message_async(self._reader)
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            raise WorkerGone() from e
        self.max_memory_mb = reply.get("max_memory_mb", self.max_memory_mb)
        return reply, payload

    def peak_memory_mb(self) -> int:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) // 1024
        except (OSError, AttributeError, ValueError):
            pass
        return self.max_memory_mb

    async def exit_reason(self) -> str:
        try:
            returncode = await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.kill()
            returncode = None
        return _exit_reason(returncode)

    def clear_output(self) -> None:
        os.ftruncate(self._log_fd, 0)

    def read_output(self) -> bytes:
        if self._log_fd < 0:  # disposed at shutdown while still busy
            return b""
        size = os.fstat(self._log_fd).st_size
        start = max(0, size - _OUTPUT_KEPT)
        return os.pread(self._log_fd, size - start, start)

    def kill(self) -> None:
        if self.alive:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            reaped = asyncio.ensure_future(self.proc.wait())
            _reaping.add(reaped)
            reaped.add_done_callback(_reaping.discard)

    def dispose(self) -> None:
        self.kill()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._log_fd >= 0:
            os.close(self._log_fd)
            self._log_fd = -1


def compose_log(
    request_id: str,
    output: bytes,
    duration_ms: float,
    memory_mb: int,
    max_used_mb: int,
    init_ms: float | None,
    status: str = "",
) -> bytes:
    """The invocation's log as CloudWatch would show it (what LogType=Tail returns)."""
    if output and not output.endswith(b"\n"):
        output += b"\n"
    report = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {math.ceil(duration_ms)} ms\tMemory Size: {memory_mb} MB\t"
        f"Max Memory Used: {max_used_mb} MB\t"
    )
    if init_ms is not None:
        report += f"Init Duration: {init_ms:.2f} ms\t"
    report += status
    return (
        f"START RequestId: {request_id} Version: $LATEST\n".encode()
        + output
        + f"END RequestId: {request_id}\n{report}\n".encode()
    )


class FunctionPool:
    """Warm workers of one function (one configuration of it) and its concurrency bound."""

    def __init__(self, fn: FunctionConfig, root: Path, region: str):
        self.fn = fn
        self.root = root
        self.region = region
        self.closed = False
        self._slots = asyncio.Semaphore(fn.reserved_concurrency)
        self._idle: list[Worker] = []
        self._workers: set[Worker] = set()

    async def _acquire(self, wait: float | None) -> bool:
        if self.fn.reserved_concurrency == 0:
            return False
        try:
            await asyncio.wait_for(self._slots.acquire(), wait)
        except TimeoutError:
            return False
        return True

    async def invoke(
        self,
        request_id: str,
        payload: bytes,
        invoked_arn: str,
        client_context: dict | None = None,
        wait: float | None = None,
    ) -> Invocation:
        """Run one invocation; ``wait`` bounds the wait for a free slot (None: forever)."""
        if not await self._acquire(wait):
            return Invocation("throttled")
        try:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    return await self._run(worker, False, request_id, payload, invoked_arn, client_context)
                self._discard(worker)
            worker = Worker(self.fn, self.root, self.region)
            self._workers.add(worker)
            failed = await self._init(worker, request_id)
            if failed is not None:
                return failed
            return await self._run(worker, True, request_id, payload, invoked_arn, client_context)
        finally:
            self._slots.release()

    async def _init(self, worker: Worker, request_id: str) -> Invocation | None:
        """Start ``worker``; None when ready, else the failed invocation (worker discarded)."""
        started = time.monotonic()
        try:
            header, body = await worker.start()
        except OSError as e:  # could not even spawn (e.g. out of file descriptors)
            result = _exit_error(request_id, f"Runtime failed to start: {e}")
        except TimeoutError:
            worker.kill()
            result = _timed_out(request_id, f"Init phase timed out after {INIT_TIMEOUT:.2f} seconds")
        except WorkerGone:
            result = _exit_error(request_id, await worker.exit_reason())
        else:
            if header.get("type") == "ready":
                return None
            result = Invocation("error", body, json.loads(body).get("errorType"))
        # Like Lambda, an environment whose init failed is torn down; the next
        # invocation starts a fresh one.
        self._finish(result, request_id, worker, started, True, worker.peak_memory_mb(), init_failed=True)
        self._discard(worker)
        return result

    async def _run(
        self, worker: Worker, cold: bool, request_id: str, payload: bytes, invoked_arn: str, client_context: dict | None
    ) -> Invocation:
        timeout = self.fn.timeout
        worker.clear_output()
        header = {
            "type": "invoke",
            "request_id": request_id,
            "deadline_ms": int(time.time() * 1000) + timeout * 1000,
            "invoked_arn": invoked_arn,
            "client_context": client_context,
        }
        started = time.monotonic()
        healthy = False
        try:
            reply, body = await asyncio.wait_for(worker.invoke(header, payload), timeout)
        except TimeoutError:
            max_used = worker.peak_memory_mb()
            worker.kill()
            result = _timed_out(request_id, f"Task timed out after {timeout:.2f} seconds")
        except WorkerGone:
            max_used = worker.max_memory_mb
            result = _exit_error(request_id, await worker.exit_reason())
        else:
            max_used = reply.get("max_memory_mb", 0)
            healthy = not reply.get("fatal")
            if reply["status"] == "oom":
                result = _exit_error(
                    request_id, f"Runtime exited with error: out of memory (Memory Size: {self.fn.memory_mb} MB)"
                )
            elif reply["status"] == "error":
                result = Invocation("error", body, reply.get("error_type"))
            elif len(body) > MAX_RESPONSE_BYTES:
                result = Invocation(
                    "error",
                    _error_payload(
                        "Function.ResponseSizeTooLarge",
                        f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).",
                    ),
                    "Function.ResponseSizeTooLarge",
                )
            else:
                result = Invocation("ok", body)
        self._finish(result, request_id, worker, started, cold, max_used)
        if healthy and not self.closed and worker.alive:
            self._idle.append(worker)
        else:
            self._discard(worker)
        return result

    def _finish(
        self,
        result: Invocation,
        request_id: str,
        worker: Worker,
        started: float,
        cold: bool,
        max_used_mb: int,
        init_failed: bool = False,
    ) -> None:
        """Fill in timing and the CloudWatch-style log of a finished invocation."""
        result.duration_ms = (time.monotonic() - started) * 1000
        result.cold = cold
        result.output = worker.read_output()
        # Lambda adds a status to REPORT only when the environment itself failed.
        status = ""
        if result.outcome == "timeout":
            status = "Status: timeout"
        elif result.outcome == "exit" or init_failed:
            status = f"Status: error\tError Type: {result.error_type}"
        init_ms = (worker.init_ms or result.duration_ms) if cold else None
        result.log = compose_log(
            request_id, result.output, result.duration_ms, self.fn.memory_mb, max_used_mb, init_ms, status
        )

    def _discard(self, worker: Worker) -> None:
        worker.dispose()
        self._workers.discard(worker)

    def close(self) -> None:
        """Retire this pool: idle workers go now, busy ones when their invocation ends."""
        self.closed = True
        for worker in self._idle:
            self._discard(worker)
        self._idle.clear()

    def kill_all(self) -> None:
        """Kill every worker, busy or not (shutdown)."""
        self.close()
        for worker in list(self._workers):
            self._discard(worker)


async def reap_killed(timeout: float = 2.0) -> None:
    """Wait for killed workers to be reaped; at shutdown this must happen
    before the event loop closes, or asyncio's child watcher complains."""
    if _reaping:
        await asyncio.wait(list(_reaping), timeout=timeout)

"""Worker process: one warm execution environment for one function.

pool.py starts ``python -m lambdagate.local_runtime.worker FD`` with the
function's Lambda environment variables, cwd = the functions directory, stdout
and stderr pointing at a log file the runtime reads back, and one end of a
socket pair as FD. The worker imports the handler once (Lambda's init phase),
reports ``ready`` (or ``init_error``) and then serves invocations one at a time
until the socket closes, so module-level state survives between invocations
exactly as in a warm Lambda container.

Kept to the stdlib (and this package's stdlib-only modules) so that nothing of
the runtime's own dependencies leaks into the handler's import environment.
"""

from __future__ import annotations

import decimal
import importlib
import json
import logging
import os
import resource
import signal
import socket
import sys
import time
import traceback

from lambdagate.local_runtime.context import LambdaContext
from lambdagate.local_runtime.protocol import read_message, send_message

# Address space granted on top of the interpreter's own footprint and memory_mb:
# RLIMIT_AS counts reserved (not resident) memory, and thread stacks and
# extension libraries reserve a lot, so the bound is deliberately generous.
# It exists to stop runaway allocations, not to account memory like Lambda.
HEADROOM_MB = 512

_request_id = ""


class _Fault(Exception):
    """An error the runtime itself reports, with Lambda's errorType names."""

    def __init__(self, error_type: str, message: str, trace: list[str] | None = None):
        super().__init__(message)
        self.error_type, self.message, self.trace = error_type, message, trace or []


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = _request_id
        return True


def _setup_logging() -> None:
    # Same line format as the Python Lambda runtime; root stays at WARNING as there.
    logging.Formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    handler.addFilter(_RequestIdFilter())
    logging.getLogger().addHandler(handler)


def _die_with_parent(parent_pid: int) -> None:
    # A handler stuck in a loop never reads the socket, so EOF alone cannot stop
    # an orphaned worker; ask the kernel to kill us when the runtime dies.
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:
            pass
    if parent_pid and os.getppid() != parent_pid:
        os._exit(1)


def _limit_memory(memory_mb: int) -> None:
    try:
        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        current = 256 << 20
    limit = current + ((memory_mb + HEADROOM_MB) << 20)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a segfault should not dump core
    except (ValueError, OSError):
        pass


def _error(message: str, error_type: str, trace: list[str], request_id: str = "") -> dict:
    return {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": trace}


def _user_frames(tb) -> list[str]:
    # Drop the runtime's own frames (as awslambdaric drops bootstrap.py's).
    frames = [
        f for f in traceback.extract_tb(tb) if f.filename != __file__ and not f.filename.startswith("<frozen importlib")
    ]
    return traceback.format_list(frames)


def _error_from_exception(exc: BaseException, request_id: str = "") -> dict:
    if isinstance(exc, _Fault):
        return _error(exc.message, exc.error_type, exc.trace, request_id)
    return _error(str(exc), type(exc).__name__, _user_frames(exc.__traceback__), request_id)


def _log_error(error: dict) -> None:
    lines = [f"[ERROR] {error['errorType']}: {error['errorMessage']}", "Traceback (most recent call last):"]
    lines += [line for frame in error["stackTrace"] for line in frame.splitlines()]
    sys.stdout.write("\n".join(lines) + "\n")


def _load_handler(spec: str):
    modname, _, attr = spec.rpartition(".")
    if not modname or not attr:
        raise _Fault("Runtime.MalformedHandlerName", f"Bad handler '{spec}': expected 'module.function'")
    try:
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        raise _Fault("Runtime.ImportModuleError", f"Unable to import module '{modname}': {e}") from None
    except SyntaxError as e:
        trace = [f'  File "{e.filename}" Line {e.lineno}\n    {(e.text or "").rstrip()}\n']
        raise _Fault("Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {e}", trace) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise _Fault("Runtime.HandlerNotFound", f"Handler '{attr}' missing on module '{modname}'") from None


def _json_default(obj):
    if isinstance(obj, decimal.Decimal):  # as the Lambda runtime does for DynamoDB items
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _marshal(result) -> bytes:
    if isinstance(result, bytes):
        return result
    try:
        return json.dumps(result, default=_json_default).encode()
    except Exception as e:
        raise _Fault("Runtime.MarshalError", f"Unable to marshal response: {e}") from None


def _invoke(handler, header: dict, body: bytes) -> tuple[dict, bytes]:
    global _request_id
    request_id = _request_id = header["request_id"]
    status, fatal, error_type = "ok", False, None
    try:
        context = LambdaContext(request_id, header["deadline_ms"], header["invoked_arn"], header.get("client_context"))
        payload = _marshal(handler(json.loads(body), context))
    except MemoryError:
        # Lambda would have killed the environment: report that and go away,
        # because after a MemoryError the interpreter's state is not trustworthy.
        status, fatal, payload = "oom", True, b""
        sys.stdout.write("[ERROR] MemoryError: the handler exceeded the memory limit\n")
    except Exception as exc:
        error = _error_from_exception(exc, request_id)
        _log_error(error)
        status, error_type, payload = "error", error["errorType"], json.dumps(error).encode()
    finally:
        _request_id = ""
        sys.stdout.flush()
        sys.stderr.flush()
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    reply = {"status": status, "fatal": fatal, "error_type": error_type, "max_memory_mb": max_rss_mb}
    return reply, payload


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv if argv is None else argv
    sock = socket.socket(fileno=int(argv[1]))
    os.set_inheritable(sock.fileno(), False)  # handlers' own subprocesses must not hold it
    _die_with_parent(int(os.environ.pop("_LAMBDAGATE_RUNTIME_PID", "0")))
    stream = sock.makefile("rb")
    _limit_memory(int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")))
    sys.path[0] = os.environ["LAMBDA_TASK_ROOT"]  # like /var/task, first on sys.path
    # Never write .pyc next to user code: a stale pyc with the same mtime second
    # and size could otherwise shadow an edit and defeat hot reload.
    sys.dont_write_bytecode = True
    _setup_logging()

    try:
        handler = _load_handler(os.environ["_HANDLER"])
    except Exception as exc:
        error = _error_from_exception(exc)
        _log_error(error)
        sys.stdout.flush()
        send_message(sock, {"type": "init_error"}, json.dumps(error).encode())
        return 0
    send_message(sock, {"type": "ready"})

    while (message := read_message(stream)) is not None:
        header, body = message
        reply, payload = _invoke(handler, header, body)
        send_message(sock, reply, payload)
        if reply["fatal"]:
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

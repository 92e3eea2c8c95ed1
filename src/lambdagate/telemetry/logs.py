"""Logs: readable text or one JSON object per line, the `telemetry/logging` namespace, and the access log.

Every line goes through one `LineWriter` per process. In a worker it buffers: lines are written every 100 ms,
when 4 KiB wait, or at once for warnings and errors. Each write holds whole lines and at most PIPE_BUF bytes,
so workers sharing a pipe never mix their lines (a single line longer than 4 KiB, such as a long traceback,
is written alone and is the one case the kernel may interleave). The access log bypasses `logging` (its lock and record
object cost more than the line itself): `AccessLog.write` formats straight into the buffer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import sys
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, StrictBool, StrictStr

from lambdagate.config import guards
from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.namespaces import Namespace, NamespaceContext

NAMESPACE = "telemetry/logging"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_PIPE_BUF = 4096  # POSIX minimum: writes up to this size to a pipe are atomic


class LoggingOptions(BaseModel):
    """KrakenD's `telemetry/logging`; `syslog` and `custom_format` are accepted but not supported."""

    model_config = ConfigDict(extra="allow")

    level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
    ] = "INFO"
    prefix: StrictStr = ""
    stdout: StrictBool = False  # True: stdout; otherwise stderr (KrakenD would print nothing without syslog)
    syslog: StrictBool = False
    # "logstash" → JSON lines. KrakenD reads any other string as "default": so do we, with a warning.
    format: StrictStr = "default"


def _parse(value: Any, ctx: NamespaceContext) -> LoggingOptions:
    options = parse_namespace_model(
        LoggingOptions,
        value,
        ctx,
        '{"level": "INFO", "stdout": true}',
        {"level": f"must be one of {', '.join(LEVELS)}"},
    )
    if options.syslog:
        ctx.warnings.append(("syslog", 'syslog is not supported; logs go to stderr (or stdout with "stdout": true)'))
    if options.format == "custom":
        ctx.warnings.append(("format", "custom formats are not supported; the default text format is used"))
    elif options.format not in ("default", "logstash"):
        ctx.warnings.append(
            (
                "format",
                f'{options.format!r} is no KrakenD format ("default", "logstash" or "custom"): the default text format '
                'is used, as KrakenD does; write "logstash" for JSON lines',
            )
        )
        options.format = "default"
    return options


LOGGING_NAMESPACE = Namespace(NAMESPACE, "service", _parse)

LOGSTASH = "telemetry/logstash"
GELF = "telemetry/gelf"


def _parse_logstash(value: Any, ctx: NamespaceContext) -> bool:
    """KrakenD's `telemetry/logstash` (`{"enabled": true}`): its presence turns `telemetry/logging` into JSON lines
    (see `logging_options`); without `telemetry/logging` KrakenD ignores it too."""
    if not isinstance(value, dict):
        ctx.warnings.append(("", 'not an object such as {"enabled": true}: ignored'))
        return False
    ctx.warnings.extend((key, "not supported, ignored") for key in value if key != "enabled")
    if not any(guards.canonical(key) == NAMESPACE for key in ctx.service.extra_config):
        ctx.warnings.append(
            ("", f'ignored without "{NAMESPACE}", as in KrakenD: add "{NAMESPACE}": {{"level": "INFO"}}')
        )
        return False
    return True


def _parse_gelf(value: Any, ctx: NamespaceContext) -> None:
    """KrakenD's `telemetry/gelf` (`{"address": "graylog:12201", "enable_tcp": false}`): not implemented."""
    ctx.warnings.append(
        ("", "GELF output is not supported, ignored: logs go to stderr (or stdout); ship them to Graylog from there")
    )


LOGSTASH_NAMESPACE = Namespace(LOGSTASH, "service", _parse_logstash)
GELF_NAMESPACE = Namespace(GELF, "service", _parse_gelf)


def logging_options(service: Any) -> LoggingOptions | None:
    """The service's `telemetry/logging`, in the "logstash" format when `telemetry/logstash` is on (as in KrakenD)."""
    options = service.namespaces.get(NAMESPACE)
    if options is not None and service.namespaces.get(LOGSTASH) and options.format != "logstash":
        options = options.model_copy(update={"format": "logstash"})
    return options


@dataclass(frozen=True)
class LogSettings:
    """How this process logs: the config's `telemetry/logging`, overridden by the command line."""

    format: str = "text"  # "text" | "json"
    level: str = "INFO"
    prefix: str = ""
    stdout: bool = False
    access: bool = True  # one line per request (INFO): off with --no-access-log or a level above INFO

    @classmethod
    def resolve(
        cls,
        options: LoggingOptions | None,
        *,
        log_format: str | None = None,
        level: str | None = None,
        debug: bool = False,
        access: bool = True,
    ) -> LogSettings:
        options = options or LoggingOptions()
        fmt = log_format or ("json" if options.format == "logstash" else "text")
        lvl = "DEBUG" if debug else (level or options.level).upper()
        return cls(fmt, lvl, options.prefix, options.stdout, access and LEVELS.index(lvl) <= LEVELS.index("INFO"))

    def to_env(self) -> dict[str, str]:
        return {
            "LAMBDAGATE_LOG_FORMAT": self.format,
            "LAMBDAGATE_LOG_LEVEL": self.level,
            "LAMBDAGATE_LOG_PREFIX": self.prefix,
            "LAMBDAGATE_LOG_STDOUT": "1" if self.stdout else "0",
            "LAMBDAGATE_ACCESS_LOG": "1" if self.access else "0",
        }

    @classmethod
    def from_env(cls) -> LogSettings:
        env = os.environ
        return cls(
            env.get("LAMBDAGATE_LOG_FORMAT", "text"),
            env.get("LAMBDAGATE_LOG_LEVEL", "INFO"),
            env.get("LAMBDAGATE_LOG_PREFIX", ""),
            env.get("LAMBDAGATE_LOG_STDOUT") == "1",
            env.get("LAMBDAGATE_ACCESS_LOG", "1") == "1",
        )


class LineWriter:
    """Whole lines to a file descriptor; buffered only while `run()` flushes them (in a worker's loop)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()
        self.buffering = False

    def write(self, line: bytes, urgent: bool = False) -> None:
        if len(self.buffer) + len(line) > _PIPE_BUF:
            self.flush()
        self.buffer += line
        if urgent or not self.buffering:
            self.flush()

    def flush(self) -> None:
        data, self.buffer = bytes(self.buffer), bytearray()
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:  # a non-blocking stdout that is full: wait for room rather than drop lines
                select.select([], [self.fd], [], 1.0)
            except OSError:  # closed or broken: logging must never take the server down
                return

    async def run(self, interval: float = 0.1) -> None:
        self.buffering = True
        try:
            while True:
                await asyncio.sleep(interval)
                if self.buffer:
                    self.flush()
        finally:
            self.buffering = False
            self.flush()


_STD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_clock = {"second": -1, "text": ""}


def timestamp(now: float) -> str:
    """ISO 8601 UTC with milliseconds; the part up to the second is formatted once per second."""
    second = int(now)
    if second != _clock["second"]:
        _clock["second"], _clock["text"] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_clock['text']}.{int((now - second) * 1000):03d}Z"


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(char: str) -> str:
    code = ord(char)
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(text: str) -> str:
    """`text` on one line: CR, LF, every other control character and whatever else is not printable (U+2028,
    bidi overrides, lone surrogates) written as `\\n`, `\\x1b`, `\\u2028`… Client-influenced text (paths,
    function error messages) then cannot forge a log line. Backslashes are left as they are."""
    if text.isprintable():  # the common case, checked in C
        return text
    return "".join(char if char.isprintable() else _escape_char(char) for char in text)


class TextFormatter(logging.Formatter):
    """One line per record, every field escaped; a traceback follows on the same line (its line breaks as `\\n`)."""

    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.prefix = f"{escape(prefix)} " if prefix else ""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return (
            f"{self.prefix}{timestamp(record.created)} {escape(record.levelname)} {escape(record.name)}: {escape(text)}"
        )


class JsonFormatter(logging.Formatter):
    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.prefix:
            entry["prefix"] = self.prefix
        for key, value in vars(record).items():
            if key not in _STD_ATTRS:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json_line(entry).decode()


def json_line(entry: dict[str, Any]) -> bytes:
    """One JSON object on one line (JSON escapes every control character in strings). orjson refuses lone
    surrogates; the standard library writes them as `\\udcxx` instead of losing the line."""
    try:
        return orjson.dumps(entry, default=str)
    except TypeError:
        return json.dumps(entry, default=str).encode()


class LineHandler(logging.Handler):
    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.writer.write(line.encode("utf-8", "replace") + b"\n", urgent=record.levelno >= logging.WARNING)


_writer: LineWriter | None = None


def configure(settings: LogSettings) -> LineWriter:
    """Set up the `lambdagate` loggers for this process; returns the process's line writer."""
    global _writer
    fd = (sys.stdout if settings.stdout else sys.stderr).fileno()
    if _writer is None or _writer.fd != fd:
        if _writer is not None:
            _writer.flush()
        _writer = LineWriter(fd)
    handler = LineHandler(_writer)
    handler.setFormatter(
        JsonFormatter(settings.prefix) if settings.format == "json" else TextFormatter(settings.prefix)
    )
    root = logging.getLogger("lambdagate")
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    root.propagate = False
    # OpenTelemetry's exporter reports its failures (collector down) through `logging`: same lines as ours.
    otel = logging.getLogger("opentelemetry")
    otel.handlers[:] = [handler]
    otel.setLevel(max(logging.WARNING, logging.getLevelName(settings.level)))
    otel.propagate = False
    return _writer


class _GranianName(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.name = "granian"
        return True


def granian_handler() -> logging.Handler:
    """The handler granian's own logger gets (through its `log_dictconfig`): our format, prefix and stream."""
    handlers = logging.getLogger("lambdagate").handlers
    handler = LineHandler(_writer or LineWriter(sys.stderr.fileno()))
    if handlers:
        handler.setFormatter(handlers[0].formatter)
    handler.addFilter(_GranianName())
    return handler


def granian_log_config() -> dict[str, Any]:
    """granian's `log_dictconfig`: its start-up and worker lines in our format (granian's access log stays off)."""
    return {
        "handlers": {"lambdagate": {"()": f"{__name__}.granian_handler"}},
        "loggers": {"_granian": {"handlers": ["lambdagate"], "propagate": False}},
    }


class AccessLog:
    """One line per request, written straight into the process's line writer."""

    skip_paths: frozenset[str] = frozenset()  # request paths without a line (the router's logger_skip_paths)

    def __init__(self, settings: LogSettings, writer: LineWriter) -> None:
        self.json = settings.format == "json"
        self.prefix = f"{settings.prefix} " if settings.prefix and not self.json else ""
        self.json_prefix = settings.prefix
        self.writer = writer

    def write(
        self,
        method: str,
        route: str | None,
        path: str,
        status: int,
        duration_ms: float,
        size: int,
        request_id: str,
        client_ip: str,
        calls: list[tuple[str, str, float]] | None,
        trace_id: str | None = None,
    ) -> None:
        if path in self.skip_paths:
            return
        now = time.time()
        if self.json:
            entry: dict[str, Any] = {
                "time": timestamp(now),
                "level": "INFO",
                "logger": "lambdagate.access",
                "message": f"{method} {path} {status}",
                "method": method,
                "route": route,
                "path": path,
                "status": status,
                "duration_ms": duration_ms,
                "bytes": size,
                "request_id": request_id,
                "client_ip": client_ip,
                "backends": [{"backend": b, "outcome": o, "duration_ms": d} for b, o, d in calls or ()],
            }
            if trace_id:
                entry["trace_id"] = trace_id
            if self.json_prefix:
                entry["prefix"] = self.json_prefix
            self.writer.write(json_line(entry) + b"\n")
            return
        backends = "".join(f' backend="{b}" {o} {d:.2f}ms;' for b, o, d in calls or ())
        line = (
            f"{self.prefix}{timestamp(now)} INFO lambdagate.access: {method} {path} {status} {duration_ms:.2f}ms "
            f"{size}B route={route or '-'} client={client_ip} request_id={request_id}"
            f"{f' trace_id={trace_id}' if trace_id else ''}{backends}"
        )
        if not line.isprintable():  # a decoded path can hold a line break (%0A): escaped like every text field
            line = escape(line)
        self.writer.write(line.encode("utf-8", "replace") + b"\n")

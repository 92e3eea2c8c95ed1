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
from lambdagate.telemetry import logstash, syslog
from lambdagate.telemetry.gelf import GelfHandler, GelfOptions

NAMESPACE = "telemetry/logging"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_PIPE_BUF = 4096  # POSIX minimum: writes up to this size to a pipe are atomic


class LoggingOptions(BaseModel):
    """KrakenD's `telemetry/logging`; `custom_format` is accepted but not supported."""

    model_config = ConfigDict(extra="allow")

    level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
    ] = "INFO"
    prefix: StrictStr = ""
    stdout: StrictBool = False  # True: stdout; otherwise stderr (KrakenD would print nothing without syslog)
    syslog: StrictBool = False
    syslog_facility: Any = None  # local0…local7; KrakenD ignores a value that is not a string
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
    facility, problem = syslog.facility_of(options.syslog_facility)
    if problem:
        ctx.warnings.append(("syslog_facility", problem))
    options.syslog_facility = facility
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


LOGSTASH_NAMESPACE = Namespace(LOGSTASH, "service", _parse_logstash)


def logging_options(service: Any) -> LoggingOptions | None:
    """The service's `telemetry/logging`, in the "logstash" format when `telemetry/logstash` is on (as in KrakenD)."""
    options = service.namespaces.get(NAMESPACE)
    if options is not None and service.namespaces.get(LOGSTASH) and options.format != "logstash":
        options = options.model_copy(update={"format": "logstash"})
    return options


@dataclass(frozen=True)
class LogSettings:
    """How this process logs: the config's `telemetry/logging`, overridden by the command line."""

    format: str = "text"  # "text" | "json" (lambdagate's fields) | "logstash" (krakend-logstash's records)
    level: str = "INFO"
    prefix: str = ""
    stdout: bool = False
    access: bool = True  # one line per request (INFO): off with --no-access-log or a level above INFO
    gelf: str = ""  # telemetry/gelf's address: lines go there too
    gelf_tcp: bool = False
    syslog: str = ""  # the facility when application lines go to syslog too

    @classmethod
    def resolve(
        cls,
        options: LoggingOptions | None,
        *,
        log_format: str | None = None,
        level: str | None = None,
        debug: bool = False,
        access: bool = True,
        gelf: GelfOptions | None = None,
    ) -> LogSettings:
        options = options or LoggingOptions()
        fmt = log_format or ("logstash" if options.format == "logstash" else "text")
        lvl = "DEBUG" if debug else (level or options.level).upper()
        facility = ""
        if options.syslog:
            if syslog.syslog_address() is None:
                logging.getLogger(__name__).warning(
                    "syslog: true, but there is no %s here: no syslog lines", syslog.DEV_LOG
                )
            else:
                facility = options.syslog_facility or syslog.DEFAULT_FACILITY
        return cls(
            fmt,
            lvl,
            options.prefix,
            options.stdout,
            access and LEVELS.index(lvl) <= LEVELS.index("INFO"),
            gelf.address if gelf else "",
            bool(gelf and gelf.enable_tcp),
            facility,
        )

    def to_env(self) -> dict[str, str]:
        return {
            "LAMBDAGATE_LOG_FORMAT": self.format,
            "LAMBDAGATE_LOG_LEVEL": self.level,
            "LAMBDAGATE_LOG_PREFIX": self.prefix,
            "LAMBDAGATE_LOG_STDOUT": "1" if self.stdout else "0",
            "LAMBDAGATE_ACCESS_LOG": "1" if self.access else "0",
            "LAMBDAGATE_LOG_GELF": self.gelf,
            "LAMBDAGATE_LOG_GELF_TCP": "1" if self.gelf_tcp else "0",
            "LAMBDAGATE_LOG_SYSLOG": self.syslog,
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
            env.get("LAMBDAGATE_LOG_GELF", ""),
            env.get("LAMBDAGATE_LOG_GELF_TCP") == "1",
            env.get("LAMBDAGATE_LOG_SYSLOG", ""),
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
# This process's GELF and syslog handlers, by what they are for; a forked worker makes its own (new threads).
_outputs: dict[tuple[Any, ...], logging.Handler] = {}


def _formatter(settings: LogSettings) -> logging.Formatter:
    if settings.format == "json":
        return JsonFormatter(settings.prefix)
    if settings.format == "logstash":
        return logstash.LogstashFormatter(settings.prefix)
    return TextFormatter(settings.prefix)


def _shipping_handlers(settings: LogSettings) -> list[logging.Handler]:
    """The GELF and syslog handlers the settings ask for: kept when unchanged, the others closed."""
    wanted: dict[tuple[Any, ...], Any] = {}
    if settings.gelf:
        wanted[("gelf", settings.gelf, settings.gelf_tcp, settings.prefix, os.getpid())] = lambda: GelfHandler(
            settings.gelf, settings.gelf_tcp, settings.prefix
        )
    address = syslog.syslog_address() if settings.syslog else None
    if address is not None:
        wanted[("syslog", address, settings.syslog, settings.prefix, os.getpid())] = lambda: syslog.SyslogHandler(
            address, settings.syslog, settings.prefix
        )
    for key in [key for key in _outputs if key not in wanted]:
        handler = _outputs.pop(key)
        if key[-1] == os.getpid():  # an inherited copy's thread is not ours to stop
            handler.close()
    for key, make in wanted.items():
        if key not in _outputs:
            _outputs[key] = make()
    return [_outputs[key] for key in wanted]


def gelf_handler() -> GelfHandler | None:
    """This process's GELF handler (the access log sends its lines there too), or None."""
    pid = os.getpid()
    return next((h for k, h in _outputs.items() if k[-1] == pid and isinstance(h, GelfHandler)), None)


def flush_outputs() -> None:
    """Send what the GELF and syslog handlers still hold, for at most a second each, and stop them: a worker
    process ends without running `atexit`."""
    for key, handler in list(_outputs.items()):
        if key[-1] == os.getpid():
            handler.close()
            del _outputs[key]


def configure(settings: LogSettings) -> LineWriter:
    """Set up the `lambdagate` loggers for this process; returns the process's line writer."""
    global _writer
    fd = (sys.stdout if settings.stdout else sys.stderr).fileno()
    if _writer is None or _writer.fd != fd:
        if _writer is not None:
            _writer.flush()
        _writer = LineWriter(fd)
    handler = LineHandler(_writer)
    handler.setFormatter(_formatter(settings))
    handlers = [handler, *_shipping_handlers(settings)]  # the line handler first: granian_handler reads it
    root = logging.getLogger("lambdagate")
    root.handlers[:] = handlers
    root.setLevel(settings.level)
    root.propagate = False
    # OpenTelemetry's exporter reports its failures (collector down) through `logging`: same lines as ours.
    otel = logging.getLogger("opentelemetry")
    otel.handlers[:] = handlers
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


class _ToShipping(logging.Handler):
    """granian's lines to this process's GELF and syslog handlers, looked up at each line: granian sets its
    logging up before the worker has read its settings."""

    def emit(self, record: logging.LogRecord) -> None:
        for handler in logging.getLogger("lambdagate").handlers[1:]:
            if record.levelno >= handler.level:
                handler.handle(record)


def granian_shipping_handler() -> logging.Handler:
    handler = _ToShipping()
    handler.addFilter(_GranianName())
    return handler


def granian_log_config() -> dict[str, Any]:
    """granian's `log_dictconfig`: its start-up and worker lines in our format (granian's access log stays off)."""
    return {
        "handlers": {
            "lambdagate": {"()": f"{__name__}.granian_handler"},
            "lambdagate-shipping": {"()": f"{__name__}.granian_shipping_handler"},
        },
        "loggers": {"_granian": {"handlers": ["lambdagate", "lambdagate-shipping"], "propagate": False}},
    }


class AccessLog:
    """One line per request, written straight into the process's line writer (and queued for GELF when on)."""

    skip_paths: frozenset[str] = frozenset()  # request paths without a line (the router's logger_skip_paths)

    def __init__(self, settings: LogSettings, writer: LineWriter) -> None:
        self.format = settings.format
        self.prefix = f"{settings.prefix} " if settings.prefix and self.format == "text" else ""
        self.json_prefix = settings.prefix
        self.module = settings.prefix or logstash.DEFAULT_MODULE
        self.writer = writer
        self.gelf = gelf_handler()

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
        text = ""
        if self.format == "text" or self.gelf is not None:
            backends = "".join(f' backend="{b}" {o} {d:.2f}ms;' for b, o, d in calls or ())
            text = (
                f"{method} {path} {status} {duration_ms:.2f}ms {size}B route={route or '-'} client={client_ip} "
                f"request_id={request_id}{f' trace_id={trace_id}' if trace_id else ''}{backends}"
            )
        if self.format == "text":
            line = f"{self.prefix}{timestamp(now)} INFO lambdagate.access: {text}"
            if not line.isprintable():  # a decoded path can hold a line break (%0A): escaped like every text field
                line = escape(line)
            self.writer.write(line.encode("utf-8", "replace") + b"\n")
            if self.gelf is None:
                return
        fields: dict[str, Any] = {
            "logger": "lambdagate.access",
            "method": method,
            "route": route,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "bytes": size,
            "request_id": request_id,
            "client_ip": client_ip,
        }
        if trace_id:
            fields["trace_id"] = trace_id
        if self.gelf is not None:  # GELF is JSON: it escapes what the text line escapes, so the raw text goes
            self.gelf.access(text, now, dict(fields))
        if self.format != "text":
            fields["backends"] = [{"backend": b, "outcome": o, "duration_ms": d} for b, o, d in calls or ()]
            self.writer.write(self._json(fields, f"{method} {path} {status}", now) + b"\n")

    def _json(self, fields: dict[str, Any], message: str, now: float) -> bytes:
        if self.format == "logstash":
            return logstash.record(fields, "INFO", message, self.module, now)
        entry = {"time": timestamp(now), "level": "INFO", "logger": fields.pop("logger"), "message": message}
        entry.update(fields)
        if self.json_prefix:
            entry["prefix"] = self.json_prefix
        return json_line(entry)

"""`telemetry/gelf`: log lines sent to Graylog (or any GELF input) over UDP or TCP, as KrakenD's krakend-gelf.

KrakenD's writer (Graylog2/go-gelf v2) sends GELF 1.1 messages: over UDP gzip-compressed (fastest level) and
split into chunks of at most 1420 bytes when larger (magic 0x1e 0x0f, an 8-byte message id, sequence number and
count, at most 128 chunks); over TCP uncompressed and ended by a null byte. Sending happens on a background
thread (see `shipper`): a request never waits for Graylog, and a slow or absent server costs dropped log lines
(counted and reported), never memory or latency.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import socket
import time
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.namespaces import Namespace, NamespaceContext
from lambdagate.telemetry.logstash import HOST
from lambdagate.telemetry.shipper import ReportFilter, Shipper

NAMESPACE = "telemetry/gelf"
CHUNK_SIZE = 1420  # go-gelf's: below a typical MTU once the UDP and IP headers are added
_CHUNK_HEADER = 12
_CHUNK_DATA = CHUNK_SIZE - _CHUNK_HEADER
MAX_CHUNKS = 128  # the GELF spec's limit: Graylog drops a message with more
MAX_TEXT = 32 * 1024  # characters of one message kept (a huge traceback is cut, the queue stays small)
FACILITY = "lambdagate"
# syslog severities, GELF's `level`
SEVERITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
_FIELD_NAME = re.compile(r"[^\w.\-]")
_EXCEPTIONS = logging.Formatter()


class GelfOptions(BaseModel):
    """KrakenD's `telemetry/gelf`: where Graylog listens, and TCP instead of UDP."""

    model_config = ConfigDict(extra="allow")

    address: StrictStr = ""
    enable_tcp: StrictBool = False


def split_address(address: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` → (host, port); ValueError with the reason otherwise."""
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port")
    return host, int(port)


def _parse(value: Any, ctx: NamespaceContext) -> GelfOptions | None:
    """The options, or None (GELF off) where KrakenD would run without it: the reason is warned about."""
    if not isinstance(value, dict):
        ctx.warnings.append(("", 'not an object such as {"address": "graylog:12201"}: ignored, as KrakenD does'))
        return None
    options = parse_namespace_model(GelfOptions, value, ctx, '{"address": "graylog:12201", "enable_tcp": false}')
    if not options.address:
        ctx.warnings.append(("address", "missing: no GELF output (KrakenD logs the same error and runs without)"))
        return None
    try:
        split_address(options.address)
    except ValueError as exc:
        ctx.warnings.append(("address", f"{exc}: no GELF output (KrakenD cannot dial it either)"))
        return None
    return options


GELF_NAMESPACE = Namespace(NAMESPACE, "service", _parse)


def gelf_options(service: Any) -> GelfOptions | None:
    return service.namespaces.get(NAMESPACE)


def _dumps(message: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(message, default=str)
    except TypeError:  # a lone surrogate: orjson refuses it, the standard library escapes it
        return json.dumps(message, default=str, separators=(",", ":")).encode()


def datagrams(payload: bytes, message_id: bytes | None = None) -> list[bytes]:
    """A GELF message for UDP: gzip-compressed, in chunks when it does not fit in one datagram."""
    data = gzip.compress(payload, compresslevel=1, mtime=0)
    if len(data) <= CHUNK_SIZE:
        return [data]
    count = -(-len(data) // _CHUNK_DATA)
    if count > MAX_CHUNKS:
        raise ValueError(f"a message of {len(data)} compressed bytes needs {count} chunks, more than {MAX_CHUNKS}")
    ident = message_id or os.urandom(8)
    return [
        b"\x1e\x0f" + ident + bytes((seq, count)) + data[seq * _CHUNK_DATA : (seq + 1) * _CHUNK_DATA]
        for seq in range(count)
    ]


def message(text: str, level: int, now: float, fields: dict[str, Any]) -> dict[str, Any]:
    """A GELF 1.1 message: the first line is `short_message`, the whole text `full_message` when it has more."""
    text = text.strip()
    short, newline, _ = text.partition("\n")
    entry: dict[str, Any] = {"version": "1.1", "host": HOST, "short_message": short or "-"}
    if newline:
        entry["full_message"] = text
    entry.update(timestamp=now, level=level, facility=FACILITY)
    for key, value in fields.items():
        name = "_" + _FIELD_NAME.sub("_", key)
        plain = isinstance(value, int | float | str) and not isinstance(value, bool)  # GELF: strings and numbers
        entry["_id_" if name == "_id" else name] = value if plain else str(value)
    return entry


class Transport:
    """One connection to the GELF server, made (and the name resolved) on first use and after a failure."""

    def __init__(self, address: str, tcp: bool) -> None:
        self.host, self.port = split_address(address)
        self.tcp = tcp
        self.sock: socket.socket | None = None
        self.hold_until = 0.0
        self.last_error = ""

    def send(self, entry: dict[str, Any]) -> None:
        payload = _dumps(entry)
        if self.tcp:
            self._socket().sendall(payload + b"\0")  # JSON escapes every NUL inside: the byte ends the frame
            return
        parts = datagrams(payload)
        sock = self._socket()
        for part in parts:
            sock.send(part)

    def _socket(self) -> socket.socket:
        if self.sock is None:
            if time.monotonic() < self.hold_until:  # a name that did not resolve is not asked again at once
                raise OSError(f"{self.host}:{self.port} unreachable: {self.last_error}")
            try:
                self.sock = self._connect()
            except OSError as exc:
                self.hold_until, self.last_error = time.monotonic() + 1.0, str(exc)
                raise
            self.sock.settimeout(5.0)  # a stalled TCP peer holds the thread (and fills the queue), not a worker
        return self.sock

    def _connect(self) -> socket.socket:
        if self.tcp:
            return socket.create_connection((self.host, self.port), timeout=3.0)
        family, kind, proto, _, where = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.connect(where)  # connected: a refused port is reported on a later send
        except OSError:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class GelfHandler(logging.Handler):
    """Log records (and access lines, through `access`) to the GELF server, queued for the shipping thread."""

    def __init__(self, address: str, tcp: bool, prefix: str = "", capacity: int = 2048) -> None:
        super().__init__()
        self.address, self.tcp = address, tcp
        self.prefix = f"{prefix} " if prefix else ""
        self.transport = Transport(address, tcp)
        name = f"GELF {'TCP' if tcp else 'UDP'} {address}"
        self.shipper = Shipper(name, self._deliver, capacity=capacity, retry=tcp, on_failure=self.transport.close)
        self.addFilter(ReportFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:  # the traceback is GELF's full_message (the first line stays the short one)
                text += "\n" + _EXCEPTIONS.formatException(record.exc_info)
        except Exception:
            self.handleError(record)
            return
        fields = {"logger": record.name}
        self.shipper.offer((self.prefix + text[:MAX_TEXT], SEVERITY.get(record.levelname, 6), record.created, fields))

    def access(self, text: str, now: float, fields: dict[str, Any]) -> None:
        """An access line: its text and its fields (`_method`, `_status`…), at INFO."""
        self.shipper.offer((self.prefix + text[:MAX_TEXT], 6, now, fields))

    def _deliver(self, item: tuple[str, int, float, dict[str, Any]]) -> None:
        self.transport.send(message(*item))

    def close(self) -> None:
        self.shipper.close()
        self.transport.close()
        super().close()

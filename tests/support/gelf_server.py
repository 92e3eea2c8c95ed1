"""GELF inputs for tests, as Graylog's: UDP (whole or chunked datagrams, gzip, zlib or plain) and TCP (frames
ended by a null byte), on 127.0.0.1, each served by a thread of the test process.

`GelfServer("udp")` / `GelfServer("tcp")` listen on a free port, or the one given (`.address`); `.messages` holds each decoded
message (a dict), `.datagrams` counts what came in, `.errors` what could not be decoded (a test asserts it stays
empty), `.wait_for(predicate)` polls for a message, bounded in time. Incomplete chunked messages are forgotten
after 5 seconds, as Graylog does, so a test that sends garbage cannot grow the receiver without bound.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

CHUNK_MAGIC = b"\x1e\x0f"


def decode(payload: bytes) -> dict[str, Any]:
    """One GELF message's bytes (gzip, zlib or plain JSON) as a dict."""
    if payload[:2] == b"\x1f\x8b":
        payload = gzip.decompress(payload)
    elif payload[:1] == b"\x78":
        payload = zlib.decompress(payload)
    return json.loads(payload)


class GelfServer:
    def __init__(self, transport: str, port: int = 0) -> None:
        self.transport = transport
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.messages: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.datagrams = 0
        self.chunked = 0  # messages that arrived in more than one chunk
        self.connections = 0
        self._partial: dict[bytes, tuple[float, dict[int, bytes], int]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        if transport == "tcp":
            self.sock.listen(16)
        self.sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._udp if transport == "udp" else self._accept, daemon=True)
        self._thread.start()

    def __enter__(self) -> GelfServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        self.sock.close()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = next((m for m in self.messages if predicate(m)), None)
            if found is not None:
                return found
            time.sleep(0.05)
        return None

    def _store(self, payload: bytes) -> None:
        try:
            message = decode(payload)
        except (OSError, ValueError, EOFError, zlib.error) as exc:
            with self._lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            return
        with self._lock:
            self.messages.append(message)

    def _udp(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.datagrams += 1
            if data[:2] == CHUNK_MAGIC:
                self._chunk(data)
            else:
                self._store(data)

    def _chunk(self, data: bytes) -> None:
        if len(data) < 12 or not 0 < data[11] <= 128 or data[10] >= data[11]:
            self.errors.append(f"bad chunk header {data[:12].hex()}")
            return
        ident, seq, count = data[2:10], data[10], data[11]
        now = time.monotonic()
        for stale in [k for k, (at, _, _) in self._partial.items() if now - at > 5]:
            del self._partial[stale]
        at, parts, _ = self._partial.setdefault(ident, (now, {}, count))
        parts[seq] = data[12:]
        if len(parts) == count:
            del self._partial[ident]
            self.chunked += 1
            self._store(b"".join(parts[i] for i in range(count)))

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._stream, args=(conn,), daemon=True).start()

    def _stream(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buffer = b""
        with conn:
            while not self._closed.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                if len(buffer) > 1 << 20:  # a frame never ended: a sender bug, not a reason to grow
                    self.errors.append("a TCP frame over 1 MiB without a null byte")
                    return
                *frames, buffer = buffer.split(b"\0")
                for frame in frames:
                    self._store(frame)

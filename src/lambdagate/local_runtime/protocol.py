"""Wire format between the runtime and its worker processes.

Each message is ``[u32 header length][u32 body length][header JSON][body bytes]``
on a Unix socket pair. The header carries small metadata; the body carries the
event or result verbatim, so a 6 MB payload is never re-encoded inside JSON.

Stdlib only: the worker imports this before any user code runs.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct

_LENGTHS = struct.Struct(">II")


def encode(header: dict, body: bytes = b"") -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    return _LENGTHS.pack(len(raw), len(body)) + raw + body


def _decode(prefix: bytes) -> tuple[int, int]:
    return _LENGTHS.unpack(prefix)


def read_message(stream) -> tuple[dict, bytes] | None:
    """Blocking read from a binary file object (worker side); None on EOF."""
    prefix = stream.read(_LENGTHS.size)
    if len(prefix) < _LENGTHS.size:
        return None
    header_len, body_len = _decode(prefix)
    header = stream.read(header_len)
    body = stream.read(body_len)
    if len(header) < header_len or len(body) < body_len:
        return None
    return json.loads(header), body


def send_message(sock: socket.socket, header: dict, body: bytes = b"") -> None:
    sock.sendall(encode(header, body))


async def read_message_async(reader: asyncio.StreamReader) -> tuple[dict, bytes]:
    """Runtime side; raises asyncio.IncompleteReadError when the worker is gone."""
    header_len, body_len = _decode(await reader.readexactly(_LENGTHS.size))
    header = json.loads(await reader.readexactly(header_len))
    body = await reader.readexactly(body_len) if body_len else b""
    return header, body

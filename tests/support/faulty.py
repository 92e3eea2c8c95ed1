"""A deliberately broken HTTP/1.1 server for the fault matrix: `python -m tests.support.faulty PORT`.

Raw asyncio sockets, so it can misbehave in ways a framework will not: close mid-body, lie about sizes,
send bytes no parser would produce. The behaviour is picked by a name, which is the last path segment
for an HTTP backend (`/reset`) or the function name for a Lambda backend
(`/2015-03-31/functions/reset/invocations`), so one process serves both backend types.

  reset           headers (Content-Length: 1000), a part of the body, then a TCP reset
  huge            a 50 MiB JSON string with Content-Length (sent until the client hangs up)
  huge-chunked    the same, chunked (no Content-Length)
  gzip-bomb       ~50 KiB gzip with its true Content-Length, inflating to 50 MiB
  throttle        429 with Retry-After: 7
  header-utf8     200 JSON with a header value in UTF-8 outside Latin-1 ("€"), and one that is not UTF-8
  header-ctl      200 JSON with a control character (0x01) in a header value
  many-headers    200 JSON with 101 headers of its own (X-H-0 … X-H-100)
  big-headers     200 JSON with 9 headers of 8,000 bytes each (72 KB together)
  own-headers     200 JSON with an X-Request-Id and an X-KrakenD-Completed of its own
  status-NNN      JSON with the status line "HTTP/1.1 NNN Odd" (any three digits: 099, 101, 600 …)
  anything else   200 {"name", "method", "target", "host"}: where the request landed, as received
`GET /__calls/{name}` answers {"calls": N}: how many requests that name received.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import socket
import struct
import sys
from collections import Counter

HUGE = 50 * 1024 * 1024
_CHUNK = b"x" * 65536
calls: Counter[str] = Counter()
_NAME = re.compile(rb"^(?:/2015-03-31/functions/([^/?]+)/invocations|.*/([^/?]+))(?:\?.*)?$")


def _gzip_bomb() -> bytes:
    # Compress in pieces: never hold the 50 MiB inflated text in this process either.
    import io

    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as gz:
        gz.write(b'"')
        for _ in range(HUGE // len(_CHUNK)):
            gz.write(_CHUNK)
        gz.write(b'"')
    return buf.getvalue()


_BOMB = _gzip_bomb()
_HEADERS = {  # extra reply headers by name (aiohttp, the gateway's client, takes up to 128 of up to 8190 bytes)
    "many-headers": [(b"X-H-%d" % i, b"v") for i in range(101)],
    "big-headers": [(b"X-Big-%d" % i, b"b" * 8000) for i in range(9)],
    "own-headers": [(b"X-Request-Id", b"upstream-id"), (b"X-KrakenD-Completed", b"true")],
}


def _header(head: bytes, wanted: bytes) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == wanted:
            return value.strip().decode("latin-1")
    return None


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, bytes, bytes, bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.split(b"\r\n")
    method, target, _ = lines[0].split(b" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return method.decode(), target, body, head


def _head(status: str, headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"HTTP/1.1 " + status.encode() + b"\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n"


async def _send_huge(writer: asyncio.StreamWriter, chunked: bool) -> None:
    if chunked:
        writer.write(_head("200 OK", [(b"Content-Type", b"application/json"), (b"Transfer-Encoding", b"chunked")]))
    else:
        writer.write(
            _head("200 OK", [(b"Content-Type", b"application/json"), (b"Content-Length", str(HUGE + 2).encode())])
        )
    pieces = [b'"'] + [_CHUNK] * (HUGE // len(_CHUNK)) + [b'"']
    for piece in pieces:
        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        await writer.drain()  # raises once the client has hung up: that ends the loop
    if chunked:
        writer.write(b"0\r\n\r\n")
    await writer.drain()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            request = await _read_request(reader)
            if request is None:
                return
            method, target, _body, request_head = request
            if target.startswith(b"/__calls/"):
                payload = json.dumps({"calls": calls[target[9:].decode()]}).encode()
                writer.write(
                    _head(
                        "200 OK",
                        [(b"Content-Type", b"application/json"), (b"Content-Length", str(len(payload)).encode())],
                    )
                    + payload
                )
                await writer.drain()
                continue
            m = _NAME.match(target)
            name = (m.group(1) or m.group(2)).decode() if m else ""
            calls[name] += 1
            if name == "reset":
                writer.write(
                    _head("200 OK", [(b"Content-Type", b"application/json"), (b"Content-Length", b"1000")])
                    + b'{"partial": "'
                )
                await writer.drain()
                await asyncio.sleep(0.05)
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
                writer.transport.abort()
                return
            if name in ("huge", "huge-chunked"):
                await _send_huge(writer, chunked=name == "huge-chunked")
                continue
            if name == "gzip-bomb":
                writer.write(
                    _head(
                        "200 OK",
                        [
                            (b"Content-Type", b"application/json"),
                            (b"Content-Encoding", b"gzip"),
                            (b"Content-Length", str(len(_BOMB)).encode()),
                        ],
                    )
                    + _BOMB
                )
                await writer.drain()
                continue
            if name == "throttle":
                payload = b'{"message": "slow down"}'
                writer.write(
                    _head(
                        "429 Too Many Requests",
                        [
                            (b"Content-Type", b"application/json"),
                            (b"Retry-After", b"7"),
                            (b"Content-Length", str(len(payload)).encode()),
                        ],
                    )
                    + payload
                )
                await writer.drain()
                continue
            if name.startswith("status-"):
                payload = json.dumps({"name": name}).encode()
                writer.write(
                    _head(
                        f"{name[7:]} Odd",
                        [(b"Content-Type", b"application/json"), (b"Content-Length", str(len(payload)).encode())],
                    )
                    + payload
                )
                await writer.drain()
                continue
            if name in _HEADERS or name in ("header-utf8", "header-ctl"):
                payload = json.dumps({"name": name}).encode()
            else:  # where the request landed, as sent: the SSRF and traversal tests read it
                payload = json.dumps(
                    {
                        "name": name,
                        "method": method,
                        "target": target.decode("latin-1"),
                        "host": _header(request_head, b"host"),
                    }
                ).encode()
            headers = [(b"Content-Type", b"application/json"), (b"Content-Length", str(len(payload)).encode())]
            if name == "header-utf8":
                headers += [(b"X-Utf8", "price: 5\u20ac".encode()), (b"X-Latin1", b"caf\xe9")]
            elif name == "header-ctl":
                headers += [(b"X-Ctl", b"a\x01b")]
            headers += _HEADERS.get(name, [])
            writer.write(_head("200 OK", headers) + payload)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.transport.abort() if writer.transport.is_closing() else writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, limit=1 << 20)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

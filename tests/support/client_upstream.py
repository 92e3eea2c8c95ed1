"""An HTTP/1.1 upstream that misbehaves on purpose, for the client tests: `python -m tests.support.client_upstream PORT`.

Every reply carries `X-Conn: N`, the number of the connection it came on (1, 2, ...), so a test sees reuse.
Connections idle for more than 1 s are closed by the server (as many servers do). Routes:
  /ready, /ok        200 with Content-Length
  /echo              200, the request head and body as JSON ({"head": [...lines], "body": "..."})
  /chunked           200, a chunked body in three chunks
  /close             200 with `Connection: close`, then the connection is closed
  /churn             200 with Content-Length, then the connection is closed without saying so
  /every/N           as /ok, and the connection is closed without saying so after its Nth request
  /eof               200 without Content-Length or chunking: the body ends when the connection does
  /head              200 with Content-Length 100 and (to GET) 100 bytes; to HEAD, the head only
  /204, /304         that status, no body (the 304 with a Content-Length, as servers send)
  /continue          100 Continue, then 200
  /gzip              a gzip body ({"gzip": true})
  /bomb              ~30 KiB of gzip inflating to 32 MiB
  /gzip-*, /deflate* compressed bodies that end early, come in several members or have bytes after their end
                     (ENCODED below; the gzip-split ones chunked: a member ending at a chunk's end, a header
                     split across two chunks)
  /big               Content-Length 8 MiB (sent until the client hangs up)
  /big-chunked       8 MiB chunked, no Content-Length
  /truncated         Content-Length 100, 10 bytes, then the connection closes
  /slow-head         the head after 2 s
  /slow-body         the head at once, the body's bytes one per 0.2 s (10 of them)
  /bad-status        "HTTP/1.1 abc OK"
  /garbage           not HTTP at all
  /huge-head         a 2 MiB header
  /inject            a header value with a bare LF that would start a new header
  /stats             {"connections": N}
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import sys
import zlib

connections = 0
_IDLE = 1.0


def _bomb() -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as gz:
        for _ in range(32):
            gz.write(bytes(1024 * 1024))
    return buf.getvalue()


BOMB = _bomb()
DATA = b'{"gzip":true,"members":"' + b"m" * 2000 + b'"}'
_HALF = len(DATA) // 2


def _deflate(data: bytes, wbits: int) -> bytes:
    encoder = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return encoder.compress(data) + encoder.flush()


BROTLI = b"\x0b\x01\x80hello\x03"  # "hello" as brotli

# path: (Content-Encoding, body). Each whole stream decodes to DATA.
ENCODED = {
    "/gzip-truncated": ("gzip", gzip.compress(DATA)[:-10]),  # cut inside the trailer (CRC, size)
    "/gzip-cut-early": ("gzip", gzip.compress(DATA)[:20]),  # cut inside the deflate data
    "/gzip-members": ("gzip", gzip.compress(DATA[:_HALF]) + gzip.compress(DATA[_HALF:])),
    "/gzip-trailing": ("gzip", gzip.compress(DATA) + b"trailing garbage"),
    "/gzip-trailing-zeros": ("gzip", gzip.compress(DATA) + bytes(8)),
    # a member decoding to more than one 256 KiB step, then bytes: the old decoder loop spun on them forever
    "/gzip-big-trailing": ("gzip", gzip.compress(bytes(1 << 20)) + b"trailing garbage"),
    "/gzip-member-cut": ("gzip", gzip.compress(DATA[:_HALF]) + gzip.compress(DATA[_HALF:])[:6]),
    "/gzip-empty": ("gzip", b""),
    "/bomb-members": ("gzip", b"".join(gzip.compress(bytes(8 << 20), 9) for _ in range(4))),  # 32 MiB in all
    "/deflate": ("deflate", zlib.compress(DATA)),
    "/deflate-raw": ("deflate", _deflate(DATA, -zlib.MAX_WBITS)),
    "/deflate-truncated": ("deflate", zlib.compress(DATA)[:-6]),
    "/deflate-raw-truncated": ("deflate", _deflate(DATA, -zlib.MAX_WBITS)[:-3]),
    "/deflate-trailing": ("deflate", zlib.compress(DATA) + b"x"),
    "/deflate-raw-trailing": ("deflate", _deflate(DATA, -zlib.MAX_WBITS) + zlib.compress(DATA)),
}


def _split_members() -> bytes:
    """Three gzip members of DATA as HTTP chunks: the first member's end is a chunk's end, the second member's
    10-byte header is split over two chunks."""
    first, second, third = gzip.compress(DATA[:100]), gzip.compress(DATA[100:_HALF]), gzip.compress(DATA[_HALF:])
    pieces = [first[:7], first[7:], second[:4], second[4:] + third[:30], third[30:]]
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in pieces) + b"0\r\n\r\n"


GZIP_SPLIT = _split_members()


def reply(status: str, headers: list[tuple[str, str]], body: bytes = b"", conn: int = 0) -> bytes:
    head = f"HTTP/1.1 {status}\r\nX-Conn: {conn}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + body


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, list[str], bytes] | None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _IDLE)
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")[:-2]
    method, target, _ = lines[0].split(" ", 2)
    length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0)
    body = await reader.readexactly(length) if length else b""
    return method, target, lines, body


async def stream(writer: asyncio.StreamWriter, total: int, chunked: bool) -> None:
    piece = b"x" * 65536
    for _ in range(total // len(piece)):
        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        await writer.drain()  # raises once the client has hung up
    if chunked:
        writer.write(b"0\r\n\r\n")


async def answer(method: str, path: str, lines: list[str], body: bytes, n: int, writer) -> bool:
    """Write the reply to one request; False when the connection is to be closed."""
    ok = [("Content-Type", "application/json")]
    if path in ("/ready", "/ok"):
        writer.write(reply("200 OK", ok + [("Content-Length", "11")], b'{"ok":true}', n))
    elif path == "/echo":
        data = json.dumps({"head": lines, "body": body.decode("latin-1")}).encode()
        writer.write(reply("200 OK", ok + [("Content-Length", str(len(data)))], data, n))
    elif path == "/stats":
        data = json.dumps({"connections": connections}).encode()
        writer.write(reply("200 OK", ok + [("Content-Length", str(len(data)))], data, n))
    elif path == "/chunked":
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (b'{"a":', b'"chunked"', b"}")) + b"0\r\n\r\n"
        writer.write(reply("200 OK", ok + [("Transfer-Encoding", "chunked")], chunks, n))
    elif path in ("/close", "/churn"):
        extra = [("Connection", "close")] if path == "/close" else []
        writer.write(reply("200 OK", ok + extra + [("Content-Length", "11")], b'{"ok":true}', n))
        return False
    elif path == "/eof":
        writer.write(reply("200 OK", ok, b'{"until":"close"}', n))
        return False
    elif path == "/head":
        writer.write(reply("200 OK", [("Content-Length", "100")], b"" if method == "HEAD" else b"h" * 100, n))
    elif path in ("/204", "/304"):
        extra = [("Content-Length", "5")] if path == "/304" else []
        writer.write(reply("204 No Content" if path == "/204" else "304 Not Modified", extra, b"", n))
    elif path == "/continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + reply("200 OK", ok + [("Content-Length", "2")], b"{}", n))
    elif path == "/gzip":
        data = gzip.compress(b'{"gzip":true}')
        writer.write(reply("200 OK", ok + [("Content-Encoding", "gzip"), ("Content-Length", str(len(data)))], data, n))
    elif path == "/bomb":
        extra = [("Content-Encoding", "gzip"), ("Content-Length", str(len(BOMB)))]
        writer.write(reply("200 OK", ok + extra, BOMB, n))
    elif path == "/br":  # an encoding nobody asked for (the gateway asks for gzip only): bytes to pass on as they are
        extra = [("Content-Encoding", "br"), ("Content-Length", str(len(BROTLI)))]
        writer.write(reply("200 OK", ok + extra, BROTLI, n))
    elif path in ENCODED:
        coding, data = ENCODED[path]
        extra = [("Content-Encoding", coding), ("Content-Length", str(len(data)))]
        writer.write(reply("200 OK", ok + extra, data, n))
    elif path == "/gzip-split":
        writer.write(
            reply("200 OK", ok + [("Content-Encoding", "gzip"), ("Transfer-Encoding", "chunked")], GZIP_SPLIT, n)
        )
    elif path in ("/big", "/big-chunked"):
        size = 8 * 1024 * 1024
        chunked = path == "/big-chunked"
        writer.write(
            reply("200 OK", [("Transfer-Encoding", "chunked")] if chunked else [("Content-Length", str(size))])
        )
        await stream(writer, size, chunked)
    else:
        return await odd(path, writer, n)
    return True


async def odd(path: str, writer: asyncio.StreamWriter, n: int) -> bool:
    """The replies that break off, come late, or are not valid HTTP."""
    if path == "/truncated":
        writer.write(reply("200 OK", [("Content-Length", "100")], b"0123456789", n))
        return False
    if path == "/slow-head":
        await asyncio.sleep(2)
        writer.write(reply("200 OK", [("Content-Length", "2")], b"{}", n))
    elif path == "/slow-body":
        writer.write(reply("200 OK", [("Content-Length", "10")], b"", n))
        for _ in range(10):
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(b"1")
    elif path == "/bad-status":
        writer.write(b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\n{}")
    elif path == "/garbage":
        writer.write(b"hello there\r\n\r\n")
        return False
    elif path == "/huge-head":
        writer.write(reply("200 OK", [("X-Huge", "h" * (2 * 1024 * 1024)), ("Content-Length", "2")], b"{}", n))
    elif path == "/inject":
        writer.write(b"HTTP/1.1 200 OK\r\nX-A: a\nInjected: 1\r\nContent-Length: 2\r\n\r\n{}")
    else:
        writer.write(reply("404 Not Found", [("Content-Length", "0")], b"", n))
    return True


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global connections
    connections += 1
    n = connections
    served = 0
    try:
        while True:
            request = await read_request(reader)
            if request is None:
                break
            method, target, lines, body = request
            served += 1
            path = target.split("?", 1)[0]
            if path.startswith("/every/"):  # a server with a per-connection request limit, e.g. 100 in nginx
                keep = await answer(method, "/ok", lines, body, n, writer) and served % int(path[7:]) != 0
            else:
                keep = await answer(method, path, lines, body, n, writer)
            await writer.drain()
            if not keep:
                break
    except (ConnectionError, zlib.error):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, limit=1 << 20)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

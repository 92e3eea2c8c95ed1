"""An HTTP/1.1 upstream that shows exactly what it received: `python -m tests.support.raw_upstream PORT
[CERT KEY [CLIENT_CA]]` (with CERT and KEY it speaks HTTPS; with CLIENT_CA it requires a client certificate).

Routes:
  /ready                  200 "ok"
  /hop/{status}/{n}       n > 0: that redirect status to /hop/{status}/{n-1}; n = 0: the echo
  /away/{status}?to=URL   that redirect status to URL
  /noloc/{status}         that status without Location
  anything else           the echo: {"method", "target", "headers": [[name, value], ...] in the order and case
                          they arrived, "body", "port"}
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from urllib.parse import parse_qs, urlsplit

MAX_HEAD = 65536


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, list[tuple[str, str]], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")[:-2]
    method, target, _ = lines[0].split(" ", 2)
    headers = [(n, v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
    lower = {n.lower(): v for n, v in headers}
    if "content-length" in lower:
        body = await reader.readexactly(int(lower["content-length"]))
    elif lower.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readline()).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = b""
    return method, target, headers, body


def reply(status: int, body: bytes, extra: list[tuple[str, str]] = ()) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Content-Type: application/json", *extra]
    return ("\r\n".join(f"{h[0]}: {h[1]}" if isinstance(h, tuple) else h for h in head) + "\r\n\r\n").encode() + body


def answer(method: str, target: str, headers: list[tuple[str, str]], body: bytes, port: int) -> bytes:
    parts = urlsplit(target)
    path = parts.path.strip("/").split("/")
    if path == ["ready"]:
        return reply(200, b'"ok"')
    if path[0] == "hop" and len(path) == 3 and int(path[2]) > 0:
        return reply(int(path[1]), b"{}", [("Location", f"/hop/{path[1]}/{int(path[2]) - 1}")])
    if path[0] == "away" and len(path) == 2:
        return reply(int(path[1]), b"{}", [("Location", parse_qs(parts.query)["to"][0])])
    if path[0] == "noloc" and len(path) == 2:
        return reply(int(path[1]), b"{}")
    echo = {"method": method, "target": target, "headers": headers, "body": body.decode("latin-1"), "port": port}
    return reply(200, json.dumps(echo).encode())


def main(port: int, tls: list[str]) -> None:
    context = None
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls[0], tls[1])
        if len(tls) > 2:
            context.load_verify_locations(cafile=tls[2])
            context.verify_mode = ssl.CERT_REQUIRED

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (request := await read_request(reader)) is not None:
                writer.write(answer(*request, port))
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=context, limit=MAX_HEAD)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])

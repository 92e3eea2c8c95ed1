"""One HTTP/1.1 connection of the fast client (client.fast): an asyncio Protocol parsing replies with httptools.

One request at a time per connection (no pipelining). A reply ends at its Content-Length, its last chunk, or,
without either, when the server closes the connection. A reply to HEAD, a 204 or a 304 has no body; 1xx replies
other than 101 are interim and skipped. Whatever the parser refuses (a bad status line, a CR or LF inside a header,
a bad chunk) fails the call as MalformedResponse; the head is capped in size and header count. The body is counted
while it arrives, so a reply over the cap stops being read at once and its connection is closed.
"""

from __future__ import annotations

import asyncio

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from lambdagate.client.base import (
    ClientError,
    ConnectError,
    HeadTimeout,
    MalformedResponse,
    PayloadError,
    Reply,
    too_large,
)
from lambdagate.client.inflate import Inflater

MAX_HEAD_BYTES = 256 * 1024  # status line and headers; the gateway's own caps on what it passes on are smaller
MAX_HEADERS = 10_000
_NO_BODY_STATUS = (204, 304)


class _Stop(Exception):
    """Raised in a parser callback to stop parsing: the call's outcome is already set."""


class NotWritten(ConnectError):
    """The connection was closed before the request was written: safe to send again, whatever the method."""


class Connection(asyncio.Protocol):
    """A pooled connection. `exchange` sends one request and returns its reply; the pool reads `reusable`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        # Control characters in header values pass (as with aiohttp): what a reply passes on is checked later
        # (backends.reply_headers). CR and LF stay refused by the parser.
        self.parser.set_dangerous_leniencies(lenient_headers=True)
        self.closed = False
        self.reused = False  # taken from the pool's idle list (a stale keep-alive may fail: the caller retries)
        self.idle_since = 0.0
        self.reusable = False
        self._waiter: asyncio.Future | None = None
        self._reset(0, False)

    def _reset(self, limit: int, head_only: bool) -> None:
        self._limit, self._head_only = limit, head_only
        self._received = False  # any byte of the reply
        self._late = False  # the parser is on a reply nobody asked for
        self._head_done = False
        self._interim = False
        self._until_close = False
        self._status = 0
        self._headers: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._chunks: list[bytes] = []
        self._size = 0
        self._proxy: CIMultiDictProxy | None = None
        self._inflater: Inflater | None = None

    # --- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self._received = True
        try:
            self.parser.feed_data(data)
        except _Stop:
            pass
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Stop):
                self._fail(ClientError(f"ClientError: {exc.__context__ or exc}"))
        except httptools.HttpParserUpgrade:  # 101: the reply is its head (the caller refuses it as a final status)
            self._finish(b"", reusable=False)
        except httptools.HttpParserError as exc:
            self._fail(MalformedResponse(f"ClientResponseError: invalid HTTP reply ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._until_close and self._head_done:  # no Content-Length, not chunked: the body ends here
            self._finish(b"".join(self._chunks), reusable=False)
        elif not self._received:
            self._fail(ConnectError("ServerDisconnectedError: Server disconnected"))
        else:
            self._fail(PayloadError("ClientPayloadError: Response payload is not completed"))

    # --- httptools callbacks

    def on_message_begin(self) -> None:
        # A reply after the call's own was complete (in the same read): the connection is out of step.
        self._late = self._waiter is None or self._waiter.done()
        if self._late:
            self.reusable = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._late:
            return
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD_BYTES or len(self._headers) >= MAX_HEADERS:
            self._fail(MalformedResponse("ClientResponseError: the reply's head is too large"))
            raise _Stop
        self._headers.append((name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        if self._late:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim, self._headers, self._head_bytes = True, [], 0  # read on for the final reply
            return
        self._status, self._head_done = status, True
        if self._head_only:
            # A Content-Length here counts a body that is not sent, but the parser would wait for it: the reply
            # ends here, and so does the connection (the parser stopped mid-message).
            self._finish(b"", reusable=False)
            raise _Stop
        headers = self.headers()
        length = headers.get("content-length", "")
        if length.isascii() and length.isdigit() and int(length) > self._limit:  # refused before any of it is read
            self._fail(too_large(self._limit, status, headers, int(length)))
            raise _Stop
        encoding = headers.get("content-encoding")
        if encoding is not None:
            self._inflater = Inflater.for_encoding(encoding, self._limit, status, headers)
        self._until_close = status not in _NO_BODY_STATUS and (
            "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "").lower()
        )

    def on_body(self, body: bytes) -> None:
        if self._late:
            return
        self._size += len(body)
        if self._size > self._limit:  # compressed bodies too: their decoded size is counted by the Inflater
            self._fail(too_large(self._limit, self._status, self.headers()))
            raise _Stop
        if self._inflater is None:
            self._chunks.append(body)
            return
        try:
            self._inflater.feed(body, self._chunks)
        except ClientError as exc:
            self._fail(exc)
            raise _Stop from None

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._late:
            self.reusable = False
            return
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._finish(body, reusable=self.parser.should_keep_alive())

    # --- the call

    def headers(self) -> CIMultiDictProxy:
        if self._proxy is None:
            self._proxy = CIMultiDictProxy(CIMultiDict(self._headers))
        return self._proxy

    def _finish(self, body: bytes, reusable: bool) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._inflater is not None:
            try:
                body = self._inflater.finish(self._chunks)
            except ClientError as exc:
                self._fail(exc)
                return
        self.reusable = reusable
        self._chunks = []
        waiter.set_result(Reply(self._status, self.headers(), body))

    def _fail(self, exc: ClientError) -> None:
        self._chunks.clear()  # in place: a traceback may hold the list; a refused body is let go at once
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def _head_late(self, seconds: float) -> None:
        if not self._head_done:
            self._fail(HeadTimeout(f"ServerTimeoutError: no reply head within {seconds:g}s"))

    async def exchange(self, request: bytes, limit: int, head_only: bool, header_timeout: float | None) -> Reply:
        """Send `request` (head and body, serialised) and wait for its final reply. The caller closes the
        connection on any error or cancellation; `reusable` says whether it may go back to the pool."""
        self._reset(limit, head_only)
        self.reusable = False
        if self.closed or self.transport is None or self.transport.is_closing():
            raise NotWritten("ServerDisconnectedError: Server disconnected")
        waiter = self._waiter = self.loop.create_future()
        self.transport.write(request)
        timer = self.loop.call_later(header_timeout, self._head_late, header_timeout) if header_timeout else None
        try:
            return await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None

    def nothing_received(self) -> bool:
        return not self._received

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

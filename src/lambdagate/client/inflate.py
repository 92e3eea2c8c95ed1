"""A gzip or deflate reply body decoded as it arrives (both clients: client.fast_conn, client.aiohttp_client).

As Go's compress/gzip reader, which KrakenD's transport uses: a stream that stops before its end fails ("unexpected
EOF"), several gzip members are one body (multistream, Go's default), and bytes after a member that are not another
member fail ("invalid header"). A deflate stream is one stream: bytes after its end fail too (Go's transport does
not decode deflate at all; the strict reading is ours).
"""

from __future__ import annotations

import zlib

from multidict import CIMultiDictProxy

from lambdagate.client.base import DECODED_ENCODINGS, PayloadError, too_large

# Real multi-member bodies have a few members; 830,000 empty ones in 16 MB held the worker for 4.7 s.
MAX_MEMBERS = 1024


class Inflater:
    """Decodes in steps of at most 256 KiB of output: TooLarge as soon as the output (of all members together)
    passes the cap, so a gzip bomb stops there and never needs more than the cap in memory."""

    STEP = 256 * 1024

    def __init__(self, encoding: str, limit: int, status: int, headers: CIMultiDictProxy) -> None:
        self.encoding, self.limit, self.status, self.headers = encoding, limit, status, headers
        self.size = 0
        self.streams = 0
        self.decoder = None  # made for the first byte (deflate's framing is told by it), and for each gzip member

    @classmethod
    def for_encoding(cls, encoding: str, limit: int, status: int, headers: CIMultiDictProxy) -> Inflater | None:
        coding = encoding.strip().lower()
        return cls(coding, limit, status, headers) if coding in DECODED_ENCODINGS else None  # others: as received

    def feed(self, data: bytes, out: list[bytes]) -> None:
        try:
            while data:
                decoder = self.decoder
                if decoder is None or decoder.eof:
                    decoder = self.decoder = self._next_stream(data)
                    self.streams += 1
                    if self.streams > MAX_MEMBERS:  # each costs a decoder and a copy of the rest: bounded, as aiohttp
                        raise PayloadError(f"ClientPayloadError: more than {MAX_MEMBERS} gzip members")
                piece = decoder.decompress(data, self.STEP)
                self.size += len(piece)
                if self.size > self.limit:
                    raise too_large(self.limit, self.status, self.headers)
                out.append(piece)
                # At a stream's end zlib may leave the rest in unconsumed_tail too: what follows is unused_data.
                data = decoder.unused_data if decoder.eof else decoder.unconsumed_tail
        except zlib.error as exc:
            raise PayloadError(
                f"ClientPayloadError: Can not decode content-encoding: {self.encoding} ({exc})"
            ) from None

    def _next_stream(self, data: bytes):
        if self.encoding != "deflate":  # the first gzip member, or the next one
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self.decoder is None:  # zlib-wrapped as the RFC says, or raw as some servers send it
            return zlib.decompressobj(zlib.MAX_WBITS if data[:1] == b"\x78" else -zlib.MAX_WBITS)
        raise PayloadError(
            "ClientPayloadError: Can not decode content-encoding: deflate (data after the end of the stream)"
        )

    def finish(self, out: list[bytes]) -> bytes:
        """The decoded body; PayloadError when the stream stopped before its end. No byte at all is an empty body."""
        decoder = self.decoder
        if decoder is not None:
            try:
                rest = decoder.flush()
            except zlib.error:
                raise PayloadError(f"ClientPayloadError: Can not decode content-encoding: {self.encoding}") from None
            self.size += len(rest)
            if self.size > self.limit:
                raise too_large(self.limit, self.status, self.headers)
            if not decoder.eof:
                raise PayloadError(
                    f"ClientPayloadError: Response payload is not completed: the {self.encoding} stream ends early"
                    " (unexpected EOF)"
                )
            out.append(rest)
        return out[0] if len(out) == 1 else b"".join(out)

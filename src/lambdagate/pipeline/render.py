"""Turn an endpoint's outcome into the HTTP reply: status, headers and body, per `output_encoding`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from lambdagate.pipeline import encodings
from lambdagate.pipeline.fanout import MergedResponse

JSON_TYPE = (b"content-type", b"application/json; charset=utf-8")
TEXT_TYPE = (b"content-type", b"text/plain; charset=utf-8")
COMPLETE = (b"x-krakend-completed", b"true")
INCOMPLETE = (b"x-krakend-completed", b"false")
# Hop-by-hop headers and framing are the server's business, never copied from a backend.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "date",
        "server",
    }
)
# No header value may hold these (HTAB is allowed); a backend's or function's header carrying one is malformed.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(slots=True)
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def json_reply(status: int, payload: Any, extra: list[tuple[bytes, bytes]] | None = None) -> Reply:
    return Reply(status, [JSON_TYPE, *(extra or ())], orjson.dumps(payload))


# A reply whose data is larger than this as JSON is rendered as XML or YAML in a thread (Renderer.in_thread).
IN_THREAD_BYTES = 256 * 1024


class Renderer:
    """Built once per endpoint: header lists and the encoder are fixed before the first request."""

    def __init__(self, output_encoding: str, cache_ttl: float | None, *, per_user: bool = False) -> None:
        """`per_user`: the endpoint forwards credentials (Authorization, Cookie), so its replies may differ per
        user and a shared cache must not keep them: `cache_ttl` gives `private` instead of `public`."""
        self.encoding = output_encoding
        self.cache_control = None
        if cache_ttl:
            scope = "private" if per_user else "public"
            self.cache_control = (b"cache-control", f"{scope}, max-age={int(cache_ttl)}".encode())
        content_type = TEXT_TYPE if output_encoding == "string" else JSON_TYPE
        self.complete_headers, self.incomplete_headers = self._headers(content_type)
        # xml, yaml, negotiate: (complete headers, incomplete headers, encoder) per encoding; None for the others.
        self.others: dict[str, tuple[list, list, Callable[[dict[str, Any]], bytes]]] | None = None
        if output_encoding in ("xml", "yaml", "negotiate"):
            self.others = {
                "json": (*self._headers(JSON_TYPE), orjson.dumps),
                "xml": (*self._headers(encodings.XML_TYPE), encodings.xml_body),
                "yaml": (*self._headers(encodings.YAML_TYPE), encodings.yaml_body),
            }
            self.negotiated = encodings.negotiated

    def _headers(self, content_type: tuple[bytes, bytes]) -> tuple[list, list]:
        complete = [content_type, COMPLETE]
        if self.cache_control is not None:
            complete.append(self.cache_control)
        return complete, [content_type, INCOMPLETE]

    def in_thread(self, outcome: MergedResponse, accept: str) -> bool:
        """Whether this reply goes out as XML or YAML — encoders written in Python, ~1 s a MB — and is large: the
        pipeline then renders it in a thread, so the worker's loop keeps serving other requests meanwhile (a
        client choosing YAML for a large reply must not stall everyone's). Only asked when `others` is set."""
        resp = outcome.response
        if outcome.error is not None or resp is None or resp.body is not None or not resp.data:
            return False
        encoding = self.negotiated(accept) if self.encoding == "negotiate" else self.encoding
        return encoding != "json" and len(orjson.dumps(resp.data)) > IN_THREAD_BYTES

    def render(self, outcome: MergedResponse, accept: str = "") -> Reply:
        """`accept`: the client's Accept header, read only by `negotiate`."""
        reply = self._render(outcome, accept)
        if outcome.reply_status is not None or outcome.reply_headers:  # set by a modifier/lua-proxy post script
            reply.status = outcome.reply_status or reply.status
            if outcome.reply_headers:
                names = {k.lower().encode("latin-1") for k, _ in outcome.reply_headers}
                reply.headers = [h for h in reply.headers if h[0] not in names] + [
                    (k.lower().encode("latin-1"), v.encode("utf-8", "surrogateescape"))
                    for k, v in outcome.reply_headers
                    if k.lower() not in HOP_BY_HOP
                ]
        return reply

    def _render(self, outcome: MergedResponse, accept: str) -> Reply:
        err = outcome.error
        if err is not None:
            body: dict[str, Any] = {"error": err.message}
            if err.details:
                body["details"] = err.details
            elif outcome.error_details:
                body["details"] = outcome.error_details
            headers = [JSON_TYPE, INCOMPLETE]
            if err.retry_after:
                headers.append((b"retry-after", err.retry_after.encode()))
            return Reply(err.status, headers, orjson.dumps(body))
        resp = outcome.response
        assert resp is not None
        if resp.body is not None:  # pass-through (no-op, or a Lambda proxy reply on a single backend)
            # Values as UTF-8: aiohttp decodes header bytes as UTF-8 with surrogateescape, so this gives back the
            # upstream's exact bytes, and a function's header text goes out as UTF-8 (Latin-1 would fail on "€").
            headers = [
                (k.lower().encode("latin-1"), v.encode("utf-8", "surrogateescape"))
                for k, v in resp.headers
                if k.lower() not in HOP_BY_HOP
            ]
            headers.append(COMPLETE if outcome.complete else INCOMPLETE)
            return Reply(resp.status, headers, resp.body)
        data = resp.data or {}
        if self.others is not None:
            encoding = self.negotiated(accept) if self.encoding == "negotiate" else self.encoding
            complete, incomplete, encode = self.others[encoding]
            return Reply(200, complete if outcome.complete else incomplete, encode(data))
        headers = self.complete_headers if outcome.complete else self.incomplete_headers
        if self.encoding == "json-collection":
            return Reply(200, headers, orjson.dumps(data.get("collection", [])))
        if self.encoding == "string":
            content = data.get("content", "")
            return Reply(200, headers, content.encode() if isinstance(content, str) else orjson.dumps(content))
        return Reply(200, headers, orjson.dumps(data))

"""HTTP backend: call an upstream service and decode its reply by the backend's `encoding`.

URL templates, host rotation and header lists are prepared once per backend; a request only fills them in.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from urllib.parse import quote, urlencode

import aiohttp
import orjson
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from lambdagate import __version__
from lambdagate.auth.tokens import jwt_params
from lambdagate.backends.forwarded import CLIENT_FORWARDING, without
from lambdagate.backends.http_cache import response_cache
from lambdagate.backends.reply_data import TooDeep, is_blank, load_json, shape_data
from lambdagate.backends.reply_headers import NOT_PASSED, HeaderLimits, MalformedReply, checked
from lambdagate.config.loader import sanitize_host
from lambdagate.config.model import JWT_PLACEHOLDER_RE, URL_PLACEHOLDER_RE, BackendConfig
from lambdagate.errors import BackendError
from lambdagate.modifiers.martian import martian_exchange
from lambdagate.pipeline import BuildContext, BuiltBackend
from lambdagate.proxy import ProxyRequest, ProxyResponse

USER_AGENT = f"lambdagate/{__version__}"
# Characters a path segment may carry unencoded (RFC 3986 pchar without "/"): a placeholder value can
# never add a path segment, so "../admin" or "a/b" stay inside their own segment.
_SEGMENT_SAFE = "!$&'()*+,;=:@~"
# Never sent to an HTTP backend, whatever input_headers says: the client's forwarding headers, and Expect (the
# gateway sends the whole body at once; an upstream would wait for a body no one sends after 100-continue).
NOT_FORWARDED = CLIENT_FORWARDING | {"expect"}
# (status, headers, body) of a backend's reply → the backend's response
DecodeReply = Callable[[int, CIMultiDictProxy, bytes], ProxyResponse]


def compile_url_pattern(pattern: str, safe: str = _SEGMENT_SAFE) -> Callable[[dict[str, str]], str]:
    """A function filling `{placeholders}` of a url_pattern with values percent-encoded but for `safe`."""
    parts = URL_PLACEHOLDER_RE.split(pattern)
    if len(parts) == 1:
        return lambda params: pattern
    literals, names = parts[0::2], parts[1::2]

    def render(params: dict[str, str]) -> str:
        out = [literals[0]]
        for name, literal in zip(names, literals[1:]):
            out.append(quote(params.get(name, ""), safe=safe))
            out.append(literal)
        return "".join(out)

    return render


def _without_userinfo(host: str) -> str:
    """`http://user:pass@svc/api` → `http://svc/api`."""
    scheme, sep, rest = host.partition("://")
    authority, slash, tail = rest.partition("/")
    return f"{scheme}{sep}{authority.rpartition('@')[2]}{slash}{tail}" if sep else host


async def read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    length = resp.content_length
    if length is not None:
        if length > limit:
            raise BackendError(
                "the backend reply is too large", status=502, cause=f"reply of {length} bytes exceeds {limit}"
            )
        if "Content-Encoding" not in resp.headers:
            return await resp.read()
        # Compressed: Content-Length counts the compressed bytes, so the decoded body is counted as it is read.
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise BackendError("the backend reply is too large", status=502, cause=f"reply exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def outgoing_headers(req: ProxyRequest) -> CIMultiDict:
    """The allowed request headers, with the gateway's forwarding headers and request id (a client's never go
    on: backends.forwarded), without Expect, plus the trace context when tracing is on."""
    # A CIMultiDict, which aiohttp takes without converting; User-Agent is the session's default header
    # (lambdagate/VERSION) unless the client's is forwarded.
    allowed = req.headers
    headers = CIMultiDict(allowed if NOT_FORWARDED.isdisjoint(allowed) else without(allowed, NOT_FORWARDED))
    headers["x-forwarded-for"] = req.client_ip
    if req.host:
        headers["x-forwarded-host"] = req.host
    headers["x-request-id"] = req.request_id
    if req.trace_headers:
        headers.update(req.trace_headers)
    return headers


def url_builder(cfg: BackendConfig, hosts: list[str]) -> Callable[[ProxyRequest], URL]:
    """The URL of each call: the next host (round robin), the url_pattern filled in, the allowed query."""
    next_host = itertools.cycle(hosts).__next__ if len(hosts) > 1 else (lambda h=hosts[0]: h)
    path, _, fixed_query = cfg.url_pattern.partition("?")
    render_path = compile_url_pattern(path)
    # Placeholders in the query part too ("/users?id={id}"), encoded so a value cannot add "&k=v" pairs.
    render_query = compile_url_pattern(fixed_query, safe="")
    claims = tuple(dict.fromkeys(JWT_PLACEHOLDER_RE.findall(cfg.url_pattern)))  # "{JWT.sub}" → "sub"
    # Without placeholders, a request without a query string always goes to the same URL: parse it once per host.
    static_urls = (
        {}
        if URL_PLACEHOLDER_RE.search(cfg.url_pattern)
        else {h: URL(h + path + (f"?{fixed_query}" if fixed_query else ""), encoded=True) for h in hosts}
    )

    def url_for(req: ProxyRequest) -> URL:
        host = next_host()
        if static_urls and not req.query:
            return static_urls[host]
        params = jwt_params(req.params, req.claims, claims) if claims else req.params  # auth/validator's claims
        text = host + render_path(params)
        query = render_query(params)
        if req.query:
            query = f"{query}&{urlencode(req.query)}" if query else urlencode(req.query)
        return URL(f"{text}?{query}" if query else text, encoded=True)

    return url_for


def reply_decoder(cfg: BackendConfig, drop: frozenset[str], limits: HeaderLimits) -> DecodeReply:
    """How this backend's reply becomes its response, by `encoding`: as is (no-op), text, or JSON."""
    if cfg.encoding == "no-op":

        def passthrough(status: int, headers: CIMultiDictProxy, body: bytes) -> ProxyResponse:
            # aiohttp takes what the server can't send: any three-digit status (granian's worker panics under
            # 100, and 1xx are interim replies, 101 a protocol switch), headers it refuses or has no room for.
            try:
                if not 200 <= status <= 599:
                    raise MalformedReply(f"status {status} is not a final HTTP status (200-599)")
                kept = checked(list(headers.items()), limits, drop)
            except MalformedReply as exc:
                raise BackendError("the backend reply is malformed", status=502, cause=str(exc)) from None
            return ProxyResponse.passthrough(status, kept, body, complete=False)

        return passthrough

    as_text = cfg.encoding == "string"

    def decode(status: int, headers: CIMultiDictProxy, body: bytes) -> ProxyResponse:
        if status >= 400:
            raise BackendError("the backend failed", cause=f"invalid status code {status}")
        if as_text:
            return ProxyResponse.decoded({"content": body.decode("utf-8", "replace")})
        if is_blank(body):
            return ProxyResponse.decoded({})
        try:
            # Complete even when empty (unlike a function's null: see lambda_reply.data_response).
            return ProxyResponse.decoded(shape_data(load_json(body)))
        except orjson.JSONDecodeError as exc:
            raise BackendError("the backend reply is not valid JSON", cause=f"invalid JSON: {exc}") from None
        except TooDeep as exc:
            raise BackendError("the backend reply is malformed", cause=str(exc)) from None

    return decode


async def http_backend(cfg: BackendConfig, ctx: BuildContext) -> BuiltBackend:
    resources = ctx.resources
    session, limit = resources.session, resources.max_response_bytes
    hosts = [h if cfg.disable_host_sanitize else sanitize_host(h) for h in (cfg.host or ctx.service.host)]
    url_for = url_builder(cfg, hosts)
    method = cfg.method or ctx.endpoint.method
    send_body = method not in ("GET", "HEAD")
    passthrough = cfg.encoding == "no-op"
    # aiohttp has already decoded a compressed reply: passing its Content-Encoding on would lie to the client.
    drop = NOT_PASSED | {"content-encoding"} if session.auto_decompress else NOT_PASSED
    decode = reply_decoder(cfg, drop, HeaderLimits(resources.max_reply_headers, resources.max_reply_header_bytes))

    cache = response_cache(cfg, ctx, method)  # qos/http-cache: None unless configured (GET only)
    martian = martian_exchange(cfg, decode)  # modifier/martian: None unless configured

    async def call(req: ProxyRequest) -> ProxyResponse:
        url, headers, data, decode_reply = url_for(req), outgoing_headers(req), req.body if send_body else None, decode
        if martian is not None:  # the request as sent (and cached) and the reply as decoded are the modified ones
            url, headers, data, decode_reply = martian(url, headers, data)
        if cache is not None:
            key = str(url)
            hit = await cache.lookup(key, headers)
            if hit is not None:  # decoded anew: the pipeline may change the data it gets
                return decode_reply(hit.status, hit.headers, hit.body)
        try:
            async with session.request(method, url, headers=headers, data=data) as resp:
                body = await read_bounded(resp, limit)
        except aiohttp.ClientError as exc:
            raise BackendError(
                "the backend is unavailable", status=502 if passthrough else 500, cause=f"{type(exc).__name__}: {exc}"
            ) from None
        if cache is not None:
            await cache.store(key, headers, resp.status, resp.headers, body)
        return decode_reply(resp.status, resp.headers, body)

    # Logs, metrics labels and span names show it: no credentials from the host, no fixed query (it may carry keys).
    return BuiltBackend(call, f"{method} {_without_userinfo(hosts[0])}{cfg.url_pattern.partition('?')[0]}")

"""HTTP backend: call an upstream service and decode its reply by the backend's `encoding`.

URL templates, host rotation and header lists are prepared once per backend; a request only fills them in.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable
from urllib.parse import quote, urlencode

import aiohttp
import orjson
from multidict import CIMultiDict
from yarl import URL

from lambdagate import __version__
from lambdagate.auth.tokens import jwt_params
from lambdagate.config.loader import sanitize_host
from lambdagate.config.model import JWT_PLACEHOLDER_RE, URL_PLACEHOLDER_RE, BackendConfig
from lambdagate.errors import BackendError
from lambdagate.pipeline import BuildContext, BuiltBackend
from lambdagate.pipeline.render import CONTROL_CHARS
from lambdagate.proxy import ProxyRequest, ProxyResponse

USER_AGENT = f"lambdagate/{__version__}"
# Characters a path segment may carry unencoded (RFC 3986 pchar without "/"): a placeholder value can
# never add a path segment, so "../admin" or "a/b" stay inside their own segment.
_SEGMENT_SAFE = "!$&'()*+,;=:@~"


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


def decode_json(body: bytes) -> dict[str, Any]:
    """KrakenD's `json`/`safejson`: an object as is, an array as {"collection": [...]}, a scalar as {"content": v}."""
    if not body or body.isspace():  # not body.strip(): that copies the body
        return {}
    value = orjson.loads(body)
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {"collection": value}
    return {"content": value}


def _without_userinfo(host: str) -> str:
    """`http://user:pass@svc/api` → `http://svc/api`."""
    scheme, sep, rest = host.partition("://")
    authority, slash, tail = rest.partition("/")
    return f"{scheme}{sep}{authority.rpartition('@')[2]}{slash}{tail}" if sep else host


async def read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    length = resp.content_length
    if length is not None:
        if length > limit:
            raise BackendError("the backend reply is too large", status=502, cause=f"reply of {length} bytes exceeds {limit}")
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


async def http_backend(cfg: BackendConfig, ctx: BuildContext) -> BuiltBackend:
    session = ctx.resources.session
    limit = ctx.resources.max_response_bytes
    hosts = [h if cfg.disable_host_sanitize else sanitize_host(h) for h in (cfg.host or ctx.service.host)]
    next_host = itertools.cycle(hosts).__next__ if len(hosts) > 1 else (lambda h=hosts[0]: h)
    method = cfg.method or ctx.endpoint.method
    path, _, fixed_query = cfg.url_pattern.partition("?")
    render_path = compile_url_pattern(path)
    # Placeholders in the query part too ("/users?id={id}"), encoded so a value cannot add "&k=v" pairs.
    render_query = compile_url_pattern(fixed_query, safe="")
    claims = tuple(dict.fromkeys(JWT_PLACEHOLDER_RE.findall(cfg.url_pattern)))  # "{JWT.sub}" → "sub"
    send_body = method not in ("GET", "HEAD")
    passthrough = cfg.encoding == "no-op"
    as_text = cfg.encoding == "string"
    # Logs, metrics labels and span names show it: no credentials from the host, no fixed query (it may carry keys).
    label = f"{method} {_without_userinfo(hosts[0])}{path}"
    # aiohttp has already decoded a compressed reply: passing its Content-Encoding on would lie to the client.
    drop = frozenset({"content-encoding"}) if session.auto_decompress else frozenset()
    # Without placeholders, a request without a query string always goes to the same URL: parse it once per host.
    static_urls = {} if URL_PLACEHOLDER_RE.search(cfg.url_pattern) else {
        h: URL(h + path + (f"?{fixed_query}" if fixed_query else ""), encoded=True) for h in hosts}

    async def call(req: ProxyRequest) -> ProxyResponse:
        host = next_host()
        if static_urls and not req.query:
            url = static_urls[host]
        else:
            params = jwt_params(req.params, req.claims, claims) if claims else req.params  # auth/validator's claims
            text = host + render_path(params)
            query = render_query(params)
            if req.query:
                query = f"{query}&{urlencode(req.query)}" if query else urlencode(req.query)
            url = URL(f"{text}?{query}" if query else text, encoded=True)
        # A CIMultiDict, which aiohttp takes without converting; User-Agent is the session's default header
        # (lambdagate/VERSION) unless the client's is forwarded.
        headers = CIMultiDict(req.headers)
        headers["x-forwarded-for"] = req.client_ip
        if req.host:
            headers["x-forwarded-host"] = req.host
        headers["x-request-id"] = req.request_id
        if req.trace_headers:
            headers.update(req.trace_headers)
        try:
            async with session.request(method, url, headers=headers,
                                       data=req.body if send_body else None) as resp:
                body = await read_bounded(resp, limit)
                status = resp.status
                reply_headers = [(k, v) for k, v in resp.headers.items() if k.lower() not in drop] if passthrough else None
        except aiohttp.ClientError as exc:
            raise BackendError("the backend is unavailable", status=502 if passthrough else 500,
                               cause=f"{type(exc).__name__}: {exc}") from None
        if passthrough:
            for name, value in reply_headers:
                if CONTROL_CHARS.search(value):  # aiohttp lets them through; the server would refuse
                    raise BackendError("the backend reply is malformed", status=502,
                                       cause=f"header {name} holds a control character")
            return ProxyResponse(None, False, status, reply_headers, body)
        if status >= 400:
            raise BackendError("the backend failed", cause=f"invalid status code {status}")
        if as_text:
            return ProxyResponse({"content": body.decode("utf-8", "replace")})
        try:
            return ProxyResponse(decode_json(body))
        except orjson.JSONDecodeError as exc:
            raise BackendError("the backend reply is not valid JSON", cause=f"invalid JSON: {exc}") from None

    return BuiltBackend(call, label)

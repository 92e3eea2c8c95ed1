"""HTTP backend: call an upstream service and decode its reply by the backend's `encoding`.

URL templates, host rotation and header lists are prepared once per backend; a request only fills them in.
"""

from __future__ import annotations

import itertools
import ssl
from collections.abc import Callable
from urllib.parse import quote, urlencode

import orjson
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from lambdagate.auth.tokens import jwt_params
from lambdagate.backends import dns_sd, redirects
from lambdagate.backends.client_options import USER_AGENT
from lambdagate.backends.decoders import DECODERS, XmlRefused
from lambdagate.backends.forwarded import CLIENT_FORWARDING, without
from lambdagate.backends.http_cache import response_cache
from lambdagate.backends.http_status import SUCCESS, on_failure
from lambdagate.backends.reply_data import BULK_BYTES, TooDeep, gc_paused, is_blank, load_json, shape_data
from lambdagate.backends.reply_headers import NOT_PASSED, HeaderLimits, MalformedReply, checked
from lambdagate.backends.unavailable import has_no_host, unavailable_backend
from lambdagate.client.base import DECODED_ENCODINGS, ClientError, TooLarge
from lambdagate.config.backend_client import http_client_options, pool_settings, srv_name, tls_context
from lambdagate.config.loader import sanitize_host
from lambdagate.config.model import JWT_PLACEHOLDER_RE, URL_PLACEHOLDER_RE, BackendConfig
from lambdagate.errors import BackendError
from lambdagate.modifiers.martian import martian_exchange
from lambdagate.pipeline import BuildContext, BuiltBackend
from lambdagate.proxy import ProxyRequest, ProxyResponse

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


def outgoing_headers(req: ProxyRequest, gzip: bool = True) -> CIMultiDict:
    """What a backend receives, as in KrakenD: the allowed request headers; `User-Agent: lambdagate/VERSION`, or
    the client's when it is forwarded (then `X-Forwarded-Via: lambdagate/VERSION`); the gateway's forwarding
    headers (a client's never go on: backends.forwarded); `Accept-Encoding: gzip` (`gzip`: unless
    disable_compression or a HEAD call, and not with Range, as Go's transport). Plus the request id, and the
    trace context when tracing is on. A backend's own input_headers may drop the forwarding headers
    (`req.gateway_headers`: pipeline/backend_inputs.py)."""
    allowed = req.headers  # a CIMultiDict, which aiohttp takes without converting
    headers = CIMultiDict(allowed if NOT_FORWARDED.isdisjoint(allowed) else without(allowed, NOT_FORWARDED))
    kept = req.gateway_headers
    if "user-agent" not in allowed:
        headers["user-agent"] = USER_AGENT
    elif kept is None or "x-forwarded-via" in kept:
        headers["x-forwarded-via"] = USER_AGENT
    if gzip and "range" not in allowed:
        headers["accept-encoding"] = "gzip"
    if kept is None or "x-forwarded-for" in kept:
        headers["x-forwarded-for"] = req.client_ip
    if req.host and (kept is None or "x-forwarded-host" in kept):
        headers["x-forwarded-host"] = req.host
    headers["x-request-id"] = req.request_id
    if req.trace_headers:
        headers.update(req.trace_headers)
    return headers


def url_builder(
    cfg: BackendConfig, hosts: list[str], pick: Callable[[], str] | None = None
) -> tuple[Callable[[ProxyRequest], URL], Callable[[ProxyRequest], tuple[str, str, str]]]:
    """The URL of each call: the next host (round robin, or `pick`'s), the url_pattern filled in, the allowed
    query. And its parts (host, path, fixed query) for modifier/lua-backend, from the same rotation."""
    next_host = pick or (itertools.cycle(hosts).__next__ if len(hosts) > 1 else (lambda h=hosts[0]: h))
    path, _, fixed_query = cfg.url_pattern.partition("?")
    render_path = compile_url_pattern(path)
    # Placeholders in the query part too ("/users?id={id}"), encoded so a value cannot add "&k=v" pairs.
    render_query = compile_url_pattern(fixed_query, safe="")
    claims = tuple(dict.fromkeys(JWT_PLACEHOLDER_RE.findall(cfg.url_pattern)))  # "{JWT.sub}" → "sub"
    # Without placeholders, a request without a query string always goes to the same URL: parse it once per host.
    static_urls = (
        {}
        if pick is not None or URL_PLACEHOLDER_RE.search(cfg.url_pattern)
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

    def parts(req: ProxyRequest) -> tuple[str, str, str]:
        params = jwt_params(req.params, req.claims, claims) if claims else req.params
        return next_host(), render_path(params), render_query(params)

    return url_for, parts


def reply_decoder(cfg: BackendConfig, drop: frozenset[str], limits: HeaderLimits) -> DecodeReply:
    """How this backend's reply becomes its response, by `encoding`: as is (no-op), text, or JSON."""
    if cfg.encoding == "no-op":
        # A reply in an encoding the client does not decode (say br, never asked for) keeps its Content-Encoding:
        # the body goes on as received, and dropping the header would hand the client bytes it cannot read.
        raw_drop = drop - {"content-encoding"}

        def passthrough(status: int, headers: CIMultiDictProxy, body: bytes) -> ProxyResponse:
            coding = headers.get("content-encoding")
            dropped = drop if coding is None or coding.strip().lower() in DECODED_ENCODINGS else raw_drop
            # aiohttp takes what the server can't send: any three-digit status (granian's worker panics under
            # 100, and 1xx are interim replies, 101 a protocol switch), headers it refuses or has no room for.
            try:
                if not 200 <= status <= 599:
                    raise MalformedReply(f"status {status} is not a final HTTP status (200-599)")
                kept = checked(list(headers.items()), limits, dropped)
            except MalformedReply as exc:
                raise BackendError("the backend reply is malformed", status=502, cause=str(exc)) from None
            return ProxyResponse.passthrough(status, kept, body, complete=False)

        return passthrough

    if cfg.encoding in DECODERS:
        return _markup_decoder(cfg)
    as_text = cfg.encoding == "string"
    failed = on_failure(cfg)  # backends/http_status.py: KrakenD's status rule and backend/http

    def decode(status: int, headers: CIMultiDictProxy, body: bytes) -> ProxyResponse:
        if status not in SUCCESS:
            return failed(status, headers, body)
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


def _markup_decoder(cfg: BackendConfig) -> DecodeReply:
    """`xml` and `rss` (backends.decoders): a document that cannot be read safely fails the backend, as bad JSON."""
    parse = DECODERS[cfg.encoding](cfg.is_collection)
    what = "XML" if cfg.encoding == "xml" else "an RSS or Atom feed"

    def decode(status: int, headers: CIMultiDictProxy, body: bytes) -> ProxyResponse:
        if status >= 400:
            raise BackendError("the backend failed", cause=f"invalid status code {status}")
        try:
            if len(body) <= BULK_BYTES:
                return ProxyResponse.decoded(parse(body))
            with gc_paused():
                return ProxyResponse.decoded(parse(body))
        except XmlRefused as exc:
            raise BackendError(f"the backend reply is not {what}", cause=str(exc)) from None

    return decode


async def _hosts(cfg: BackendConfig, ctx: BuildContext) -> tuple[list[str], Callable[[], str] | None]:
    """The backend's base URLs, and for `sd: "dns"` the picker of the SRV record's current ones."""
    if cfg.sd == "dns":
        name = srv_name(cfg.host[0])
        shared = ctx.resources.shared
        directory = shared.get(dns_sd.SrvDirectory)
        if directory is None:  # a worker built without a service (tests): addresses from the system resolver
            directory = shared[dns_sd.SrvDirectory] = dns_sd.SrvDirectory(ctx.service.dns_cache_ttl)
            ctx.resources.on_close(directory.close)
        service = await directory.service(name, cfg.sd_scheme)
        return [f"{cfg.sd_scheme}://{name}"], service.next_host
    return [h if cfg.disable_host_sanitize else sanitize_host(h) for h in (cfg.host or ctx.service.host)], None


def call_policy(cfg: BackendConfig, ctx: BuildContext) -> redirects.CallPolicy:
    """Redirects and TLS of this backend's calls (`backend/http/client`), the service's response_header_timeout."""
    options = http_client_options(cfg)
    context: ssl.SSLContext | bool = True if options.client_tls is None else tls_context(options.client_tls)
    return redirects.CallPolicy(
        follow_redirects=not options.no_redirect,
        send_body_on_redirect=options.send_body_on_redirect,
        ssl=context,
        header_timeout=pool_settings(ctx.service).response_header_timeout,
    )


async def http_backend(cfg: BackendConfig, ctx: BuildContext) -> BuiltBackend:
    if has_no_host(cfg, ctx):  # KrakenD starts with it; every call fails ("no hosts available")
        return await unavailable_backend(cfg, ctx)
    resources = ctx.resources
    client, limit = resources.client, resources.max_response_bytes
    hosts, pick = await _hosts(cfg, ctx)
    url_for, url_parts = url_builder(cfg, hosts, pick)
    method = cfg.method or ctx.endpoint.method
    send_body = method not in ("GET", "HEAD")
    passthrough = cfg.encoding == "no-op"
    # The client has already decoded a compressed reply: passing its Content-Encoding on would lie to the client.
    drop = NOT_PASSED | {"content-encoding"} if client.decompresses else NOT_PASSED
    decode = reply_decoder(cfg, drop, HeaderLimits(resources.max_reply_headers, resources.max_reply_header_bytes))
    policy = call_policy(cfg, ctx)
    gzip = method != "HEAD" and not pool_settings(ctx.service).disable_compression
    cache = response_cache(cfg, ctx, method)  # qos/http-cache: None unless configured (GET only)
    martian = martian_exchange(cfg, decode)  # modifier/martian: None unless configured

    async def call(req: ProxyRequest) -> ProxyResponse:
        verb, data, decode_reply, cached = method, req.body if send_body else None, decode, cache
        if req.backend_call is None:
            url = url_for(req)
        else:  # a modifier/lua-backend script's method and URL (a changed method's reply is not the cached one)
            verb, url = req.backend_call[0], URL(req.backend_call[1], encoded=True)
            data = None if verb in ("GET", "HEAD") else req.body
            cached = cache if verb == method else None
        headers = outgoing_headers(req, gzip and verb != "HEAD")
        if martian is not None:  # the request as sent (and cached) and the reply as decoded are the modified ones
            url, headers, data, decode_reply = martian(url, headers, data)
        if cached is not None:
            key = str(url)
            hit = await cached.lookup(key, headers)
            if hit is not None:  # decoded anew: the pipeline may change the data it gets
                return decode_reply(hit.status, hit.headers, hit.body)
        try:
            reply = await redirects.call(client, verb, url, headers, data, policy, limit)
        except TooLarge as exc:
            raise BackendError("the backend reply is too large", status=502, cause=str(exc)) from None
        except ClientError as exc:
            raise BackendError(
                "the backend is unavailable", status=502 if passthrough else 500, cause=str(exc)
            ) from None
        if cached is not None:
            await cached.store(key, headers, reply.status, reply.headers, reply.body)
        return decode_reply(reply.status, reply.headers, reply.body)

    # Logs, metrics labels and span names show it: no credentials from the host, no fixed query (it may carry keys).
    return BuiltBackend(
        call,
        f"{method} {_without_userinfo(hosts[0])}{cfg.url_pattern.partition('?')[0]}",
        target=lambda req: (method, *url_parts(req)),
    )

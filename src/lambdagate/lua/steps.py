"""Where Lua scripts run, each composed only when its namespace is configured, as in KrakenD's krakend-lua:

- `modifier/lua-endpoint` (service or endpoint extra_config): a front guard on the client's request (`ctx`), after
  JWT validation and before the endpoint's rate limit; a `pre` script only (KrakenD runs no `post` there).
- `modifier/lua-proxy` (endpoint): around the endpoint's fan-out; `pre` sees the request before any backend,
  `post` the merged response before it is rendered.
- `modifier/lua-backend` (backend): around one backend call, on a copy of the request (the others do not see
  its changes).

`skip_next` skips what the script wraps (the backends, or the backend call): `post` then gets an empty response.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict
from yarl import URL

from lambdagate import __version__
from lambdagate.client.base import ClientError
from lambdagate.config.server_options import server_options
from lambdagate.errors import BackendError, StartupError
from lambdagate.front import Exchange, Handler, Step
from lambdagate.front.request import read_request_body
from lambdagate.lua import api
from lambdagate.lua.config import BACKEND, ENDPOINT, PROXY, LuaConfig
from lambdagate.lua.sandbox import ScriptFailed, ScriptSet
from lambdagate.pipeline.fanout import MergedResponse
from lambdagate.pipeline.render import JSON_TYPE, Reply, json_reply
from lambdagate.proxy import ProxyRequest, ProxyResponse

if TYPE_CHECKING:
    from lambdagate.backends import Resources
    from lambdagate.config.model import BackendConfig, EndpointConfig, ServiceConfig
    from lambdagate.pipeline import BuildContext, BuiltBackend, EndpointProxy, ProxyWrapper
    from lambdagate.stack import StepContext

log = logging.getLogger("lambdagate.lua")
_PROXY_URL_IGNORED = (
    "lua %s: request:url() set in modifier/lua-proxy does not change the backend calls (each backend builds its "
    "URL from its url_pattern, as in KrakenD); set it in modifier/lua-backend"
)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_MAX_SCRIPT_HEADERS = 100


def fetcher(resources: Resources):
    """`http_response.new` for a script: the worker's client (lambdagate.client), the request's deadline, the reply
    size cap; no redirects followed (the script sees the 3xx)."""
    client, limit = resources.client, resources.max_response_bytes
    defaults = [("User-Agent", f"lambdagate/{__version__}")] + (
        [("Accept-Encoding", "gzip")] if client.decompresses else []
    )

    async def fetch(args: tuple[Any, ...], deadline: float, state: api.CallState) -> tuple[Any, ...]:
        url, method, body, headers = (list(args[1:]) + [None] * 4)[:4]
        target = api.text(url)
        if not target.startswith(("http://", "https://")):
            return (None, b"http_response.new: only http and https URLs")
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            return (None, b"http_response.new: the request's deadline has passed")
        try:
            sent = CIMultiDict(_script_headers(headers))
            for name, value in defaults:
                sent.setdefault(name, value)
            payload = (body if isinstance(body, bytes) else api.text(body).encode()) if body else None
            async with asyncio.timeout(left):
                reply = await client.request(
                    api.text(method) if method else "GET", URL(target), sent, payload, limit=limit
                )
        except (TimeoutError, ClientError, ValueError) as exc:
            return (None, f"http_response.new: {_failure_name(exc)}".encode())
        state.charge(len(reply.body))
        return (api.LuaHttpResponseApi(reply.status, list(reply.headers.items()), reply.body),)

    return fetch


def _failure_name(exc: Exception) -> str:
    """What a script is told of a failed call: the error's kind, never its text (it may name internal hosts)."""
    kind = str(exc).partition(":")[0] if isinstance(exc, ClientError) else ""
    return kind if kind.isidentifier() else type(exc).__name__


def _script_headers(headers: Any) -> list[tuple[str, str]]:
    """A script's header table ({name = value} or {name = {values}}) as a header list, checked like any header."""
    if headers is None or not hasattr(headers, "items"):
        return []
    result: list[tuple[str, str]] = []
    check = api.CallState(1 << 30)
    for name, value in list(headers.items())[:_MAX_SCRIPT_HEADERS]:
        values = list(value.values()) if hasattr(value, "values") else [value]
        result.extend((api.header_name(name), api.header_value(v, check)) for v in values[:_MAX_SCRIPT_HEADERS])
    return result


def script_set(config: LuaConfig, service: ServiceConfig, resources: Resources) -> ScriptSet:
    options = server_options(service)
    try:
        return ScriptSet(config, options.lua_cpu_ms / 1000, options.lua_memory_bytes, fetcher(resources))
    except ValueError as exc:  # a source that fails when it runs (it compiled at load time)
        raise StartupError(f"{config.label}: {exc}") from None


def _failure_reply(err: ScriptFailed) -> Reply:
    extra = [(b"content-type", err.content_type.encode("latin-1", "replace"))] if err.content_type else None
    reply = json_reply(err.status, {"error": err.message})
    if extra:
        reply.headers = [h for h in reply.headers if h is not JSON_TYPE] + extra
    return reply


# ---- modifier/lua-endpoint: a front guard --------------------------------------------------------------------


async def endpoint_step(ctx: StepContext) -> Step | None:
    """`modifier/lua-endpoint` as a guard on the client's request: the service's script first, then the
    endpoint's, as KrakenD runs its router middleware before the endpoint's handler."""
    configs = [ctx.service.namespaces.get(ENDPOINT)]
    if ctx.endpoint is not None:
        configs.append(ctx.endpoint.namespaces.get(ENDPOINT))
    steps = [_endpoint_guard(c, ctx) for c in configs if c is not None and c.options.pre.strip()]
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]
    return lambda inner: steps[0](steps[1](inner))


def _endpoint_guard(config: LuaConfig, ctx: StepContext) -> Step:
    scripts = shared_set(config, ctx.service, ctx.resources)
    options = server_options(ctx.service)
    timeout = (ctx.endpoint.timeout if ctx.endpoint else None) or ctx.service.timeout

    def step(inner: Handler) -> Handler:
        async def guarded(ex: Exchange) -> Reply:
            reads_body = ex.method in _BODY_METHODS
            body = await read_request_body(ex, options.max_body_bytes, options.read_timeout) if reads_body else b""
            state = scripts.new_state()
            context = api.LuaContextApi(ex, state, body)
            deadline = asyncio.get_running_loop().time() + timeout
            try:
                await scripts.run("pre", scripts.begin(ctx=context), state, deadline)
            except ScriptFailed as err:
                return _failure_reply(err)
            if reads_body or context.body_changed:
                ex.receive = _replay(context.body_bytes)
            return await inner(ex)

        return guarded

    return step


def _replay(body: bytes):
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def shared_set(config: LuaConfig, service: ServiceConfig, resources: Resources) -> ScriptSet:
    """The worker's runtime for this block: built on first use at start-up, shared by every endpoint it serves
    (a service-level block serves them all)."""
    key = ("lua", id(config))
    found = resources.shared.get(key)
    if found is None:
        found = resources.shared[key] = script_set(config, service, resources)
    return found


# ---- modifier/lua-backend: around one backend call -----------------------------------------------------------


async def with_lua_backend(built: BuiltBackend, cfg: BackendConfig, ctx: BuildContext) -> BuiltBackend:
    config: LuaConfig = cfg.namespaces[BACKEND]
    scripts = shared_set(config, ctx.service, ctx.resources)
    call, skip, target = built.call, config.options.skip_next, built.target

    async def scripted(req: ProxyRequest) -> ProxyResponse:
        # A copy: the endpoint's other backends get the request as it came.
        req = dataclasses.replace(req, headers=dict(req.headers), params=dict(req.params), query=list(req.query))
        state = scripts.new_state()
        view = api.LuaRequestApi(req, state, target)
        objects = scripts.begin(request=view)
        try:
            await scripts.run("pre", objects, state, req.deadline)
            view.finish()
            resp = ProxyResponse({}, is_complete=False) if skip else await call(req)
            if scripts.has_post:
                scripts.set_response(objects, api.LuaResponseApi(resp, state))
                await scripts.run("post", objects, state, req.deadline)
        except ScriptFailed as err:
            raise BackendError(err.message, status=err.status, cause=f"lua {scripts.label}") from None
        return resp

    return dataclasses.replace(built, call=scripted, target=None)


# ---- modifier/lua-proxy: around the endpoint's fan-out -------------------------------------------------------


async def lua_proxy(service: ServiceConfig, endpoint: EndpointConfig, resources: Resources) -> ProxyWrapper | None:
    """modifier/lua-proxy: `pre` before the endpoint's backends, `post` on their merged response."""
    config: LuaConfig | None = endpoint.namespaces.get(PROXY)
    if config is None:
        return None
    scripts = shared_set(config, service, resources)
    skip = config.options.skip_next
    warned = False

    def wrap(fanout: EndpointProxy) -> EndpointProxy:
        async def scripted(req: ProxyRequest) -> MergedResponse:
            nonlocal warned
            state = scripts.new_state()
            request = api.LuaRequestApi(req, state)
            objects = scripts.begin(request=request)
            try:
                await scripts.run("pre", objects, state, req.deadline)
                if request.url_set and not warned:
                    warned = True
                    log.warning(_PROXY_URL_IGNORED, scripts.label)
                outcome = MergedResponse(ProxyResponse({}, is_complete=False), False) if skip else await fanout(req)
                resp = outcome.response
                if resp is None:  # every backend failed: KrakenD returns the error without running post
                    return outcome
                view = api.LuaResponseApi(resp, state)
                if scripts.has_post:
                    scripts.set_response(objects, view)
                    await scripts.run("post", objects, state, req.deadline)
            except ScriptFailed as err:
                return MergedResponse(None, False, BackendError(err.message, status=err.status, cause=scripts.label))
            outcome.complete = resp.is_complete and bool(resp.data or resp.body is not None)
            if view.touched and resp.body is None:
                outcome.reply_status, outcome.reply_headers = resp.status, resp.headers
            return outcome

        return scripted

    return wrap

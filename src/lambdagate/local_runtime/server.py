"""Lambda's Invoke REST API, plus enough of the control plane for boto3 and the AWS CLI.

Routes (paths as botocore builds them; signatures are accepted, never checked):

- ``POST /2015-03-31/functions/{name}/invocations``  Invoke
- ``GET  /2015-03-31/functions/``                    ListFunctions
- ``GET  /2015-03-31/functions/{name}``              GetFunction
- ``GET  /2015-03-31/functions/{name}/configuration`` GetFunctionConfiguration
- ``GET  /__health``                                 readiness probe

Everything else answers a JSON ``UnknownOperationException`` so SDK callers get
a parseable error instead of an HTML page.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import uuid

import orjson
from aiohttp import web

from lambdagate.local_runtime import responses as r
from lambdagate.local_runtime.functions import FunctionConfig
from lambdagate.local_runtime.runtime import LocalRuntime

log = logging.getLogger("lambdagate.local_runtime")

MAX_PAYLOAD = 6291456  # Lambda's synchronous invocation request limit
MAX_EVENT_PAYLOAD = 1048576  # and its asynchronous one (1 MB): queued payloads stay bounded (max_queued_events × 1 MB)
MAX_LOG_TAIL = 4096
INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
RUNTIME_KEY = web.AppKey("runtime", LocalRuntime)
WATCHER_KEY = web.AppKey("watcher", asyncio.Task)
SHOW_ENV_KEY = web.AppKey("show_env", bool)  # --show-env: environment values in the control plane's replies


def parse_function_name(raw: str) -> tuple[str, str | None] | None:
    """NAME, NAME:QUALIFIER, full or partial (ACCOUNT:function:NAME) ARN -> (name, qualifier)."""
    parts = raw.split(":")
    if parts[0] == "arn":
        if len(parts) not in (7, 8) or parts[2] != "lambda" or parts[5] != "function":
            return None
        parts = parts[6:]
    elif len(parts) in (3, 4) and parts[1] == "function":
        parts = parts[2:]
    if len(parts) > 2 or not parts[0]:
        return None
    return parts[0], (parts[1] if len(parts) == 2 else None)


def _resolve(request: web.Request) -> tuple[FunctionConfig, str | None] | web.Response:
    """The function and the qualifier used (if any), or the error response."""
    region = request.app[RUNTIME_KEY].region
    raw = request.match_info["name"]
    parsed = parse_function_name(raw)
    if parsed is None:
        return r.error_response(404, "ResourceNotFoundException", f"Function not found: {raw}")
    name, qualifier = parsed
    query_qualifier = request.query.get("Qualifier")
    if qualifier and query_qualifier and qualifier != query_qualifier:
        return r.error_response(
            400,
            "InvalidParameterValueException",
            "The derived qualifier from the function name does not match the specified qualifier.",
        )
    qualifier = qualifier or query_qualifier
    # Only $LATEST exists here: there are no published versions or aliases.
    fn = request.app[RUNTIME_KEY].get(name)
    if fn is None or qualifier not in (None, "$LATEST"):
        return r.not_found(region, name, qualifier)
    return fn, qualifier


async def _read_body(request: web.Request) -> bytes | None:
    """The request body, or None (after draining it) when over Lambda's limit."""
    # Drain instead of answering early: SDKs still writing a large body would
    # otherwise see a broken pipe instead of the 413.
    too_large = (request.content_length or 0) > MAX_PAYLOAD
    body = bytearray()
    async for chunk in request.content.iter_any():
        if not too_large:
            body += chunk
            too_large = len(body) > MAX_PAYLOAD
    return None if too_large else bytes(body)


def _is_json(payload: bytes) -> str | None:
    """None if ``payload`` is JSON, else the parser's complaint."""
    try:
        orjson.loads(payload)
        return None
    except orjson.JSONDecodeError:
        pass
    # orjson also refuses some valid JSON (1e400, nesting deeper than 1024), so
    # let Python's json decide, minus the NaN/Infinity it would otherwise accept.
    try:
        json.loads(payload, parse_constant=_reject_constant)
        return None
    except (ValueError, RecursionError) as e:
        return str(e)


def _reject_constant(name: str):
    raise ValueError(f"Non-standard token '{name}'")


async def invoke(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
    body = await _read_body(request)
    if invocation_type not in INVOCATION_TYPES:
        return r.error_response(
            400,
            "InvalidParameterValueException",
            f"Invalid invocation type {invocation_type!r}; expected one of {', '.join(INVOCATION_TYPES)}",
        )
    limit = MAX_EVENT_PAYLOAD if invocation_type == "Event" else MAX_PAYLOAD
    if body is None or len(body) > limit:
        return r.error_response(
            413,
            "RequestEntityTooLargeException",
            f"Request must be smaller than {limit} bytes for the InvokeFunction operation",
        )
    resolved = _resolve(request)
    if isinstance(resolved, web.Response):
        return resolved
    fn, qualifier = resolved
    headers = {"X-Amz-Executed-Version": "$LATEST"}
    if invocation_type == "DryRun":
        return web.Response(status=204, headers=headers)

    payload = body if body.strip() else b"{}"  # Lambda hands an empty invocation {}
    problem = _is_json(payload)
    if problem is not None:
        return r.error_response(
            400, "InvalidRequestContentException", f"Could not parse request body into json: {problem}"
        )
    client_context = None
    if "X-Amz-Client-Context" in request.headers:
        try:
            client_context = json.loads(base64.b64decode(request.headers["X-Amz-Client-Context"]))
        except ValueError as e:
            return r.error_response(400, "InvalidRequestContentException", f"Client context must be base64 JSON: {e}")

    kwargs = {
        "request_id": request["request_id"],
        "invoked_arn": r.function_arn(runtime.region, fn.name, qualifier),
        "client_context": client_context,
    }
    if invocation_type == "Event":
        if not runtime.invoke_in_background(fn, payload, **kwargs):
            # The function's queue is full (max_queued_events): try again once some have run.
            return r.throttled("FunctionInvocationRateLimitExceeded", retry_after=1)
        return web.Response(status=202, headers=headers)

    result = await runtime.invoke(fn, payload, **kwargs)
    if result.outcome == "throttled":
        return r.throttled("ReservedFunctionConcurrentInvocationLimitExceeded")
    if result.function_error:
        headers["X-Amz-Function-Error"] = result.function_error
    if request.headers.get("X-Amz-Log-Type") == "Tail":
        headers["X-Amz-Log-Result"] = base64.b64encode(result.log[-MAX_LOG_TAIL:]).decode()
    return web.Response(body=result.payload, status=200, headers=headers, content_type="application/json")


async def list_functions(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    try:
        start = int(request.query.get("Marker", "0"))
        limit = min(int(request.query.get("MaxItems", "50")), 50)
        if start < 0 or limit < 1:
            raise ValueError
    except ValueError:
        return r.error_response(400, "InvalidParameterValueException", "Invalid Marker or MaxItems")
    functions = runtime.list()
    page = functions[start : start + limit]
    show_env = request.app[SHOW_ENV_KEY]
    body = {"Functions": [r.function_configuration(fn, runtime.root, runtime.region, show_env) for fn in page]}
    if start + limit < len(functions):
        body["NextMarker"] = str(start + limit)
    return r.json_response(body)


async def get_function(request: web.Request) -> web.Response:
    resolved = _resolve(request)
    if isinstance(resolved, web.Response):
        return resolved
    runtime = request.app[RUNTIME_KEY]
    return r.json_response(r.get_function(resolved[0], runtime.root, runtime.region, request.app[SHOW_ENV_KEY]))


async def get_function_configuration(request: web.Request) -> web.Response:
    resolved = _resolve(request)
    if isinstance(resolved, web.Response):
        return resolved
    runtime = request.app[RUNTIME_KEY]
    show_env = request.app[SHOW_ENV_KEY]
    return r.json_response(r.function_configuration(resolved[0], runtime.root, runtime.region, show_env))


async def health(request: web.Request) -> web.Response:
    return r.json_response({"status": "ok", "functions": len(request.app[RUNTIME_KEY].functions)})


async def unknown_operation(request: web.Request) -> web.Response:
    return r.error_response(
        404,
        "UnknownOperationException",
        f"The lambdagate local runtime does not implement {request.method} {request.path}",
    )


@web.middleware
async def _request_id(request: web.Request, handler) -> web.StreamResponse:
    # One id per request: the invocation's aws_request_id and x-amzn-RequestId agree, as on AWS.
    request["request_id"] = str(uuid.uuid4())
    response = await handler(request)
    response.headers["x-amzn-RequestId"] = request["request_id"]
    return response


def create_app(directory, region: str | None = None, show_env: bool = False) -> web.Application:
    """The aiohttp application serving ``directory``; raises ConfigError if it is unusable.

    ``show_env``: ListFunctions/GetFunction show environment values (else redacted)."""
    runtime = LocalRuntime(directory, region)
    app = web.Application(middlewares=[_request_id])
    app[RUNTIME_KEY] = runtime
    app[SHOW_ENV_KEY] = show_env
    prefix = "/2015-03-31/functions"
    app.router.add_get("/__health", health)
    app.router.add_get(prefix, list_functions)
    app.router.add_get(prefix + "/", list_functions)
    app.router.add_get(prefix + "/{name}", get_function)
    app.router.add_get(prefix + "/{name}/configuration", get_function_configuration)
    app.router.add_post(prefix + "/{name}/invocations", invoke)
    app.router.add_route("*", "/{tail:.*}", unknown_operation)

    async def start_watcher(app: web.Application) -> None:
        app[WATCHER_KEY] = asyncio.get_running_loop().create_task(runtime.watch())

    async def stop(app: web.Application) -> None:
        await runtime.close()
        app[WATCHER_KEY].cancel()

    app.on_startup.append(start_watcher)
    app.on_cleanup.append(stop)
    return app


async def _serve(app: web.Application, host: str, port: int, parent_pid: int | None) -> None:
    runtime = app[RUNTIME_KEY]
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound = runner.addresses[0]
        log.info(
            "lambdagate local runtime serving %d function(s) from %s on http://%s:%s",
            len(runtime.functions),
            runtime.root,
            host,
            bound[1],
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if parent_pid:
            loop.create_task(_exit_with_parent(parent_pid, stop))
        await stop.wait()
        log.info("lambdagate local runtime shutting down")
        await runtime.close()  # first, so in-flight invocations end now instead of at their timeout
    finally:
        await runner.cleanup()


async def _exit_with_parent(parent_pid: int, stop: asyncio.Event) -> None:
    # When embedded (start_in_background), never outlive the process that started us.
    while os.getppid() == parent_pid:
        await asyncio.sleep(1.0)
    log.info("parent process %d exited", parent_pid)
    stop.set()


def serve(
    directory,
    host: str = "127.0.0.1",
    port: int = 9001,
    *,
    region: str | None = None,
    parent_pid: int | None = None,
    show_env: bool = False,
) -> None:
    """Serve ``directory`` until SIGINT/SIGTERM (blocking). Raises ConfigError, OSError."""
    app = create_app(directory, region, show_env)
    asyncio.run(_serve(app, host, port, parent_pid))

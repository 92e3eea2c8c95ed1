"""Lambda backend (`backend/lambda`): invoke a function through Lambda's Invoke API, no API Gateway between.

The namespace is parsed and checked at load time; the factory builds one invoker per backend at start-up.
A request then only builds the payload, invokes, and turns the reply into backend data (or a pass-through
HTTP reply for proxy-shaped replies on a single-backend endpoint). See the README's error table.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import re
from contextlib import nullcontext
from time import perf_counter
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from lambdagate.aws.credentials import CredentialProvider, NoCredentialsError, resolve_region
from lambdagate.aws.invoke import (InvokeResult, LambdaDeadlineError, LambdaError, LambdaInvoker, LambdaServiceError,
                                   is_valid_function_reference, max_attempts_from_max_retries)
from lambdagate.aws.sigv4 import Credentials
from lambdagate.backends.lambda_events import apigateway_v1_payload, apigateway_v2_payload, krakend_payload
from lambdagate.backends.lambda_reply import MalformedReply, is_proxy_shaped, unwrap
from lambdagate.config.loader import is_base_url, parse_namespace_model
from lambdagate.config.model import BackendConfig
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError
from lambdagate.errors import BackendError, StartupError
from lambdagate.pipeline import BuildContext, BuiltBackend
from lambdagate.proxy import ProxyRequest, ProxyResponse

NAMESPACE = "backend/lambda"
LEGACY_NAMESPACE = "github.com/devopsfaith/krakend-lambda"
URL_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024  # Lambda's limit for RequestResponse
EVENT_PAYLOAD_LIMIT = 1024 * 1024  # and for Event (asynchronous) invocations
MAX_REPLY_BYTES = 6 * 1024 * 1024 + 1024  # Lambda's reply limit (and the invoker's default); lower with max_backend_response_bytes
# Credentials for endpoints that check no signature (the local runtime; moto, Localstack when none are set).
PLACEHOLDER_CREDENTIALS = Credentials("LAMBDAGATELOCAL", "lambdagate-local-placeholder-secret")

log = logging.getLogger("lambdagate.lambda")


class LambdaConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    function_name: str | None = None
    function_param_name: str | None = None
    region: str | None = None
    max_retries: StrictInt = Field(default=0, ge=-1)
    endpoint: str | None = None
    qualifier: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9$_-]{1,128}$")
    invocation_type: Literal["RequestResponse", "Event"] = "RequestResponse"
    payload_format: Literal["krakend", "apigateway_v1", "apigateway_v2"] = "krakend"
    response_format: Literal["data", "proxy", "auto"] | None = None
    allowed_functions: list[str] = Field(default_factory=list)
    assume_role_arn: str | None = None
    external_id: str | None = None
    role_session_name: str | None = None
    return_error_details: StrictBool = False

    # Filled in by parse(): the endpoint placeholder named by function_param_name, and where calls go.
    param: str | None = None
    resolved_region: str = ""
    local: bool = False


def parse(value: Any, ctx: NamespaceContext) -> LambdaConfig:
    cfg = parse_namespace_model(
        LambdaConfig, value, ctx, '{"function_name": "my-function", "region": "us-east-1"}',
        hints={"max_retries": "must be an integer >= -1 (-1 = the AWS SDK's default of 3 attempts)"})
    issues: list[tuple[str, str]] = []
    placeholders = ctx.endpoint.placeholders if ctx.endpoint else []
    if (cfg.function_name is None) == (cfg.function_param_name is None):
        issues.append(("", 'set exactly one of "function_name" (a fixed function) or "function_param_name" '
                           "(the endpoint placeholder naming the function)"))
    if cfg.function_name is not None and not is_valid_function_reference(cfg.function_name):
        issues.append(("function_name", f"{cfg.function_name!r} is not a Lambda function name, name:qualifier "
                                         "or ARN (letters, digits, - and _, at most 64 characters for a name)"))
    if cfg.function_param_name is not None:
        wanted = cfg.function_param_name.lower()
        cfg.param = next((p for p in placeholders if p.lower() == wanted), None)
        if cfg.param is None:
            have = ", ".join(f"{{{p}}}" for p in placeholders) or "none"
            issues.append(("function_param_name", f"{cfg.function_param_name!r} names no placeholder of endpoint "
                                                  f"{ctx.endpoint.endpoint if ctx.endpoint else ''} (it has {have})"))
    elif cfg.allowed_functions:
        ctx.warnings.append(("allowed_functions", "only applies with function_param_name, ignored"))
    if cfg.endpoint is None:
        # botocore's service endpoint variables, so a config can stay verbatim and point at moto/Localstack.
        cfg.endpoint = os.environ.get("AWS_ENDPOINT_URL_LAMBDA") or os.environ.get("AWS_ENDPOINT_URL") or None
    if cfg.endpoint is not None:
        if not is_base_url(cfg.endpoint):
            issues.append(("endpoint", f"{cfg.endpoint!r} is not a usable URL: write it like \"http://127.0.0.1:4566\""))
    cfg.local = cfg.endpoint is None and ctx.options.local_lambda_endpoint is not None
    region, looked = resolve_region(cfg.region)
    if region is None:
        if cfg.local:
            region = "us-east-1"
        else:
            issues.append(("region", f"no AWS region found (looked at: {', '.join(looked)}): add \"region\": \"us-east-1\""))
    cfg.resolved_region = region or ""
    if cfg.response_format is None:
        cfg.response_format = "data" if cfg.payload_format == "krakend" else "proxy"
    if issues:
        raise NamespaceError(issues)
    return cfg


LAMBDA_NAMESPACE = Namespace(NAMESPACE, "backend", parse, aliases=(LEGACY_NAMESPACE,), backend_type=True)


async def _credentials(cfg: LambdaConfig, ctx: BuildContext) -> CredentialProvider:
    """One provider per (role, external id, session name) per worker, shared by the backends that use it."""
    if cfg.local:
        return CredentialProvider.static(PLACEHOLDER_CREDENTIALS)
    key = ("aws-credentials", cfg.assume_role_arn, cfg.external_id, cfg.role_session_name)
    provider = ctx.resources.shared.get(key)
    if provider is None:
        try:
            provider = await CredentialProvider.create(assume_role_arn=cfg.assume_role_arn, external_id=cfg.external_id,
                                                       role_session_name=cfg.role_session_name,
                                                       region=cfg.resolved_region)
        except NoCredentialsError as exc:
            if cfg.endpoint is None:
                raise StartupError(f"{ctx.path}: {exc}") from None
            # A custom endpoint (moto, Localstack, a test double) may need no real credentials.
            log.warning("no AWS credentials found; signing calls to %s with placeholder credentials", cfg.endpoint)
            provider = CredentialProvider.static(PLACEHOLDER_CREDENTIALS)
        ctx.resources.shared[key] = provider
        ctx.resources.on_close(provider.close)
    return provider


def _result_outcome(result: InvokeResult) -> str:
    """A completed Invoke as a metrics outcome; a function that ran out of its own time is a timeout."""
    if not result.function_error:
        return "success"
    return "timeout" if b'"Sandbox.Timedout"' in result.payload[:512] else "function_error"


def _invoke_outcome(err: LambdaError) -> str:
    """An Invoke failure as a metrics outcome: throttled, timeout or aws_error."""
    if err.status == 429:
        return "throttled"
    if isinstance(err, LambdaDeadlineError) or err.code in ("Timeout", "ConnectTimeout"):
        return "timeout"
    return "aws_error"


def _function_error(result_payload: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(result_payload)
    except orjson.JSONDecodeError:
        return {"errorMessage": result_payload[:200].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"errorMessage": str(value)[:200]}


async def lambda_backend(backend: BackendConfig, ctx: BuildContext) -> BuiltBackend:
    cfg: LambdaConfig = backend.namespaces[NAMESPACE]
    resources = ctx.resources
    endpoint_url = cfg.endpoint or (resources.local_lambda_endpoint if cfg.local else None)
    invoker = LambdaInvoker(resources.session, region=cfg.resolved_region, credentials=await _credentials(cfg, ctx),
                            endpoint_url=endpoint_url, max_attempts=max_attempts_from_max_retries(cfg.max_retries),
                            logger=log, max_response_bytes=min(resources.max_response_bytes, MAX_REPLY_BYTES))
    method = backend.method or ctx.endpoint.method
    if cfg.payload_format == "apigateway_v1":
        build_payload = apigateway_v1_payload(ctx.endpoint.endpoint)
    elif cfg.payload_format == "apigateway_v2":
        build_payload = apigateway_v2_payload(ctx.endpoint.method, ctx.endpoint.endpoint)
    else:
        build_payload = krakend_payload(method)
    static_name = cfg.function_name
    param = cfg.param
    allowed = cfg.allowed_functions
    qualifier = cfg.qualifier
    invocation_type = cfg.invocation_type
    payload_limit = EVENT_PAYLOAD_LIMIT if invocation_type == "Event" else SYNC_PAYLOAD_LIMIT
    single = len(ctx.endpoint.backend) == 1
    response_format = cfg.response_format
    details_wanted = cfg.return_error_details
    where = f"{ctx.path} function={static_name or '{' + (param or '') + '}'}"

    def function_from_url(req: ProxyRequest) -> str:
        name = req.params.get(param or "", "")
        if not URL_FUNCTION_NAME.fullmatch(name):
            raise BackendError("invalid function name", status=400, cause=f"rejected function name {name[:80]!r} from the URL")
        if allowed and not any(fnmatch.fnmatchcase(name, pattern) for pattern in allowed):
            raise BackendError("unknown function", status=404, cause=f"function {name!r} is not in allowed_functions")
        return name

    def service_failure(err: LambdaServiceError, name: str, req: ProxyRequest) -> BackendError:
        cause = f"function={name} {err.code} (HTTP {err.status}): {err.message} lambda_request_id={err.request_id}"
        if err.status == 404 and err.code == "ResourceNotFoundException":
            if static_name is None:
                return BackendError("unknown function", status=404, cause=cause)
            log.error("misconfiguration: function %s does not exist (%s) request_id=%s", name, where, req.request_id)
            return BackendError("the backend failed", status=500, cause=cause)
        if err.status == 429:
            retry_after = str(max(1, int(err.retry_after or 1)))
            return BackendError("too many requests", status=429, cause=cause, retry_after=retry_after)
        if err.status == 413 or err.code in ("RequestTooLargeException", "RequestEntityTooLargeException"):
            return BackendError("request payload too large", status=413, cause=cause)
        if err.status == 400 and err.code == "InvalidRequestContentException":
            return BackendError("the request body must be JSON", status=400, cause=cause)
        if err.code == "ResponseTooLarge":
            return BackendError("the backend reply is too large", status=502, cause=cause)
        if err.status in (401, 403):
            log.error("AWS refused the credentials or signature for %s: %s request_id=%s", where, err.code, req.request_id)
        return BackendError("the backend failed", status=500, cause=cause)

    metrics, tracing = resources.metrics, resources.tracing
    region = cfg.resolved_region or None
    static_stats = metrics.function(static_name) if metrics is not None and static_name else None

    def invoke_once(name: str, payload: bytes, req: ProxyRequest, trace_header: str | None = None):
        return invoker.invoke(name, payload, deadline=req.deadline, qualifier=qualifier, invocation_type=invocation_type,
                              request_id=req.request_id, trace_header=trace_header)

    async def invoke(name: str, payload: bytes, req: ProxyRequest) -> InvokeResult:
        """One Invoke (with its retries), measured per function and traced when those are on."""
        if metrics is None and tracing is None:
            return await invoke_once(name, payload, req)
        with tracing.invoke_span(name, region) if tracing is not None else nullcontext() as span:
            started = perf_counter()
            outcome, attempts, known, lambda_request_id = "aws_error", 1, True, None
            try:
                result = await invoke_once(name, payload, req,
                                           span.headers().get("x-amzn-trace-id") if span is not None else None)
                outcome, attempts, lambda_request_id = _result_outcome(result), result.attempts, result.request_id
                return result
            except LambdaError as err:
                outcome, attempts, lambda_request_id = _invoke_outcome(err), err.attempts, err.request_id
                known = err.code != "ResourceNotFoundException"
                raise
            except (TimeoutError, asyncio.CancelledError):
                outcome = "timeout"
                raise
            finally:
                if span is not None:
                    span.set(outcome, attempts - 1, lambda_request_id)
                if metrics is not None:
                    # A name from the URL becomes a label only once AWS knows it: made-up names share one series.
                    stats = static_stats or metrics.function(name if known else "_unknown")
                    stats.observe(outcome, perf_counter() - started, attempts - 1)

    async def call(req: ProxyRequest) -> ProxyResponse:
        name = static_name or function_from_url(req)
        payload = build_payload(req)
        if len(payload) > payload_limit:
            raise BackendError("request payload too large", status=413,
                               cause=f"payload of {len(payload)} bytes exceeds Lambda's {payload_limit}")
        try:
            result = await invoke(name, payload, req)
        except LambdaServiceError as err:
            raise service_failure(err, name, req) from None
        except LambdaDeadlineError as err:
            raise BackendError("the backend did not answer in time", status=504, timed_out=True,
                               cause=f"function={name}: {err}") from None
        except LambdaError as err:
            raise BackendError("the backend failed", status=500, cause=f"function={name}: {err}") from None
        if invocation_type == "Event":
            return ProxyResponse(None, True, 202, [], b"") if single else ProxyResponse({}, True)
        if result.function_error:
            error = _function_error(result.payload)
            log.warning("function error: function=%s kind=%s type=%s message=%s lambda_request_id=%s request_id=%s",
                        name, result.function_error, error.get("errorType"), str(error.get("errorMessage"))[:500],
                        result.request_id, req.request_id)
            details = {"error_type": error.get("errorType"), "error_message": error.get("errorMessage"),
                       "lambda_request_id": result.request_id} if details_wanted else None
            raise BackendError("the function failed", status=500, details=details,
                               cause=f"function={name} {result.function_error} error {error.get('errorType')}")
        return decode_reply(result.payload, name)

    def decode_reply(payload: bytes, name: str) -> ProxyResponse:
        if not payload or payload.isspace():  # not payload.strip(): that copies the reply
            return ProxyResponse({}, False)
        try:
            value = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise BackendError("the function reply is not valid JSON", cause=f"function={name}: reply is not JSON") from None
        if response_format == "proxy" or (response_format == "auto" and is_proxy_shaped(value)):
            return proxy_response(value, name)
        return data_response(value)

    def proxy_response(value: Any, name: str) -> ProxyResponse:
        if not is_proxy_shaped(value):
            if cfg.payload_format != "apigateway_v2":
                raise BackendError("the function reply is malformed", cause=f"function={name}: no statusCode in a proxy reply")
            # API Gateway v2 infers a 200 JSON reply from a function that returns plain JSON.
            value = {"statusCode": 200, "body": orjson.dumps(value).decode()}
        try:
            reply = unwrap(value)
        except MalformedReply as exc:
            raise BackendError("the function reply is malformed", cause=f"function={name}: {exc}") from None
        if single:
            return ProxyResponse(None, reply.status < 400, reply.status, reply.headers, reply.body)
        if reply.status >= 400:
            raise BackendError("the backend failed", cause=f"function={name}: statusCode {reply.status}")
        try:
            data = orjson.loads(reply.body) if reply.body.strip() else {}
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise BackendError("the function reply is not a JSON object", cause=f"function={name}: proxy body is not a JSON object")
        return ProxyResponse(data, bool(data))

    def data_response(value: Any) -> ProxyResponse:
        if isinstance(value, dict):
            return ProxyResponse(value, bool(value))
        if value is None:
            return ProxyResponse({}, False)
        if isinstance(value, list):
            return ProxyResponse({"collection": value})
        return ProxyResponse({"content": value})

    details_key = f"error_{backend.group or f'backend{ctx.backend_index}'}" if details_wanted else None
    # A stable label (it names metrics series): the local runtime's port changes on every start.
    location = cfg.endpoint or ("local" if endpoint_url else cfg.resolved_region)
    return BuiltBackend(call, f"lambda {static_name or '{' + (param or '') + '}'} @ {location}", details_key,
                        kind="lambda")


"""Lambda backend (`backend/lambda`): invoke a function through Lambda's Invoke API, no API Gateway between.

The namespace is parsed and checked at load time; the factory builds one invoker per backend at start-up.
A request then only builds the payload, invokes, and turns the reply into backend data (or a pass-through
HTTP reply for proxy-shaped replies on a single-backend endpoint). See the README's error table.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from lambdagate.aws.credentials import CredentialProvider, NoCredentialsError, resolve_region
from lambdagate.aws.invoke import LambdaError, LambdaInvoker, is_valid_function_reference, max_attempts_from_max_retries
from lambdagate.aws.sigv4 import Credentials
from lambdagate.backends.http_cache import lambda_cache
from lambdagate.backends.lambda_errors import LambdaErrors
from lambdagate.backends.lambda_events import (
    PayloadBuilder,
    apigateway_v1_payload,
    apigateway_v2_payload,
    krakend_payload,
)
from lambdagate.backends.lambda_invoke import Invoke, invoke_with_retries, metered, traced
from lambdagate.backends.lambda_reply import ReplyDecoder
from lambdagate.backends.reply_headers import HeaderLimits
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
# Lambda's reply limit (and the invoker's default); lower with max_backend_response_bytes
MAX_REPLY_BYTES = 6 * 1024 * 1024 + 1024
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
        LambdaConfig,
        value,
        ctx,
        '{"function_name": "my-function", "region": "us-east-1"}',
        hints={"max_retries": "must be an integer >= -1 (-1 = the AWS SDK's default of 3 attempts)"},
    )
    issues: list[tuple[str, str]] = []
    _check_function(cfg, ctx, issues)
    if cfg.endpoint is None:
        # botocore's service endpoint variables, so a config can stay verbatim and point at moto/Localstack.
        cfg.endpoint = os.environ.get("AWS_ENDPOINT_URL_LAMBDA") or os.environ.get("AWS_ENDPOINT_URL") or None
    if cfg.endpoint is not None:
        if not is_base_url(cfg.endpoint):
            issues.append(("endpoint", f'{cfg.endpoint!r} is not a usable URL: write it like "http://127.0.0.1:4566"'))
    cfg.local = cfg.endpoint is None and ctx.options.local_lambda_endpoint is not None
    region, looked = resolve_region(cfg.region)
    if region is None:
        if cfg.local:
            region = "us-east-1"
        else:
            issues.append(
                ("region", f'no AWS region found (looked at: {", ".join(looked)}): add "region": "us-east-1"')
            )
    cfg.resolved_region = region or ""
    if cfg.response_format is None:
        cfg.response_format = "data" if cfg.payload_format == "krakend" else "proxy"
    if issues:
        raise NamespaceError(issues)
    return cfg


def _check_function(cfg: LambdaConfig, ctx: NamespaceContext, issues: list[tuple[str, str]]) -> None:
    """Which function: a fixed `function_name`, or the endpoint placeholder `function_param_name` names (resolved
    into cfg.param); warns when any function could be called through the URL."""
    placeholders = ctx.endpoint.placeholders if ctx.endpoint else []
    if (cfg.function_name is None) == (cfg.function_param_name is None):
        issues.append(
            (
                "",
                'set exactly one of "function_name" (a fixed function) or "function_param_name" '
                "(the endpoint placeholder naming the function)",
            )
        )
    if cfg.function_name is not None and not is_valid_function_reference(cfg.function_name):
        issues.append(
            (
                "function_name",
                f"{cfg.function_name!r} is not a Lambda function name, name:qualifier "
                "or ARN (letters, digits, - and _, at most 64 characters for a name)",
            )
        )
    if cfg.function_param_name is not None:
        wanted = cfg.function_param_name.lower()
        cfg.param = next((p for p in placeholders if p.lower() == wanted), None)
        if cfg.param is None:
            have = ", ".join(f"{{{p}}}" for p in placeholders) or "none"
            issues.append(
                (
                    "function_param_name",
                    f"{cfg.function_param_name!r} names no placeholder of endpoint "
                    f"{ctx.endpoint.endpoint if ctx.endpoint else ''} (it has {have})",
                )
            )
        if not cfg.allowed_functions:
            ctx.warnings.append(
                (
                    "function_param_name",
                    "any function the credentials may invoke can be called "
                    'through this endpoint: list them in "allowed_functions" '
                    '(names or patterns such as "orders-*")',
                )
            )
    elif cfg.allowed_functions:
        ctx.warnings.append(("allowed_functions", "only applies with function_param_name, ignored"))


LAMBDA_NAMESPACE = Namespace(NAMESPACE, "backend", parse, aliases=(LEGACY_NAMESPACE,), backend_type=True)


async def _credentials(cfg: LambdaConfig, ctx: BuildContext) -> CredentialProvider:
    """One provider per (role, external id, session name) per worker, shared by the backends that use it."""
    if cfg.local:
        return CredentialProvider.static(PLACEHOLDER_CREDENTIALS)
    key = ("aws-credentials", cfg.assume_role_arn, cfg.external_id, cfg.role_session_name)
    provider = ctx.resources.shared.get(key)
    if provider is None:
        try:
            provider = await CredentialProvider.create(
                assume_role_arn=cfg.assume_role_arn,
                external_id=cfg.external_id,
                role_session_name=cfg.role_session_name,
                region=cfg.resolved_region,
            )
        except NoCredentialsError as exc:
            if cfg.endpoint is None:
                raise StartupError(f"{ctx.path}: {exc}") from None
            # A custom endpoint (moto, Localstack, a test double) may need no real credentials.
            log.warning("no AWS credentials found; signing calls to %s with placeholder credentials", cfg.endpoint)
            provider = CredentialProvider.static(PLACEHOLDER_CREDENTIALS)
        ctx.resources.shared[key] = provider
        ctx.resources.on_close(provider.close)
    return provider


def _payload_builder(cfg: LambdaConfig, ctx: BuildContext, method: str) -> PayloadBuilder:
    if cfg.payload_format == "apigateway_v1":
        return apigateway_v1_payload(ctx.endpoint.endpoint)
    if cfg.payload_format == "apigateway_v2":
        return apigateway_v2_payload(ctx.endpoint.method, ctx.endpoint.endpoint)
    return krakend_payload(method)


def _function_from_url(param: str, allowed: list[str]) -> Callable[[ProxyRequest], str]:
    """The function named by the endpoint's placeholder, refused unless a plain name allowed_functions lists."""

    def function_from_url(req: ProxyRequest) -> str:
        name = req.params.get(param, "")
        if not URL_FUNCTION_NAME.fullmatch(name):
            raise BackendError(
                "invalid function name", status=400, cause=f"rejected function name {name[:80]!r} from the URL"
            )
        if allowed and not any(fnmatch.fnmatchcase(name, pattern) for pattern in allowed):
            raise BackendError("unknown function", status=404, cause=f"function {name!r} is not in allowed_functions")
        return name

    return function_from_url


async def _invoke(cfg: LambdaConfig, ctx: BuildContext, endpoint_url: str | None) -> Invoke:
    """The Invoke call with its retries, measured and traced only when metrics and tracing are on."""
    resources = ctx.resources
    invoker = LambdaInvoker(
        resources.client,
        region=cfg.resolved_region,
        credentials=await _credentials(cfg, ctx),
        endpoint_url=endpoint_url,
        max_attempts=max_attempts_from_max_retries(cfg.max_retries),
        logger=log,
        max_response_bytes=min(resources.max_response_bytes, MAX_REPLY_BYTES),
    )
    invoke = invoke_with_retries(invoker, cfg.qualifier, cfg.invocation_type)
    if resources.tracing is not None:
        invoke = traced(invoke, resources.tracing, cfg.resolved_region or None)
    if resources.metrics is not None:
        invoke = metered(invoke, resources.metrics, cfg.function_name)
    return invoke


async def lambda_backend(backend: BackendConfig, ctx: BuildContext) -> BuiltBackend:
    cfg: LambdaConfig = backend.namespaces[NAMESPACE]
    endpoint_url = cfg.endpoint or (ctx.resources.local_lambda_endpoint if cfg.local else None)
    invoke = await _invoke(cfg, ctx, endpoint_url)
    build_payload = _payload_builder(cfg, ctx, backend.method or ctx.endpoint.method)
    static_name = cfg.function_name
    function_from_url = _function_from_url(cfg.param or "", cfg.allowed_functions)
    shown_name = static_name or "{" + (cfg.param or "") + "}"
    errors = LambdaErrors(f"{ctx.path} function={shown_name}", static_name is None, cfg.return_error_details)
    single = len(ctx.endpoint.backend) == 1
    decoder = ReplyDecoder(
        cfg.response_format or "data",
        cfg.payload_format,
        single,
        HeaderLimits(ctx.resources.max_reply_headers, ctx.resources.max_reply_header_bytes),
    )
    event = cfg.invocation_type == "Event"
    payload_limit = EVENT_PAYLOAD_LIMIT if event else SYNC_PAYLOAD_LIMIT
    method = backend.method or ctx.endpoint.method
    # qos/http-cache with cache_lambda (None otherwise, and for Event invocations, which have no reply to keep)
    scope = f"{endpoint_url or cfg.resolved_region} {cfg.qualifier or ''}"
    cache = None if event else lambda_cache(backend, ctx, method, cfg.payload_format == "krakend", scope)

    async def call(req: ProxyRequest) -> ProxyResponse:
        name = static_name or function_from_url(req)
        payload = build_payload(req)
        if len(payload) > payload_limit:
            raise BackendError(
                "request payload too large",
                status=413,
                cause=f"payload of {len(payload)} bytes exceeds Lambda's {payload_limit}",
            )
        key = cache.key(name, payload, req) if cache is not None else None
        if key is not None and (kept := await cache.get(key)) is not None:
            return decoder.decode(kept, name)
        try:
            result = await invoke(name, payload, req)
        except LambdaError as err:
            raise errors.invoke_failed(err, name, req.request_id) from None
        if event:  # accepted, not run yet: no reply to decode
            return ProxyResponse.passthrough(202, [], b"", complete=True) if single else ProxyResponse.decoded({})
        if result.function_error:
            raise errors.function_failed(result, name, req.request_id)
        resp = decoder.decode(result.payload, name)
        if key is not None and cache.keeps(resp):
            await cache.put(key, result.payload)
        return resp

    details_key = f"error_{backend.group or f'backend{ctx.backend_index}'}" if cfg.return_error_details else None
    # A stable label (it names metrics series): the local runtime's port changes on every start.
    location = cfg.endpoint or ("local" if endpoint_url else cfg.resolved_region)
    return BuiltBackend(call, f"lambda {shown_name} @ {location}", details_key, kind="lambda")

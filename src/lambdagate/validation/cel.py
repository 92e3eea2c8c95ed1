"""`validation/cel`: KrakenD's CEL checks (krakend-cel), at endpoint and backend level.

```json
"extra_config": {"validation/cel": [{"check_expr": "req_headers['X-Tenant'][0] == 'a'"}]}
```
Each `check_expr` is compiled and type-checked once, when the config is read, with KrakenD's variables:
`req_method`, `req_path`, `req_params`, `req_headers`, `req_querystring` (the request), `resp_completed`,
`resp_metadata_status`, `resp_metadata_headers`, `resp_data` (a response), `JWT` (the validated token's claims) and
`now` (RFC 3339). A request passes only when every check gives `true`; an error (a missing key, say) is a refusal.

When a check runs follows from the variables it names, as in KrakenD: one naming only `JWT` runs with the token's
validation (endpoint level: 401); one naming `resp_*` runs on the response (endpoint level: on the merged one);
every other one runs before the backends. A refusal before or after the backends is KrakenD's pipe error: 500 for
the endpoint, or, at backend level, that backend fails (the endpoint's other backends still answer).

The engine is cel-expr-python (Google's CEL C++ runtime, the type checker included): a typical check costs about
13 µs. Only the variables a phase's checks name are built for a request.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from cel_expr_python import cel

from lambdagate.backends.http import compile_url_pattern
from lambdagate.config import guards
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError
from lambdagate.errors import BackendError
from lambdagate.pipeline.fanout import MergedResponse
from lambdagate.pipeline.render import json_reply

if TYPE_CHECKING:
    from lambdagate.backends import Resources
    from lambdagate.config.model import BackendConfig, EndpointConfig, ServiceConfig
    from lambdagate.front import Exchange, Handler, Step
    from lambdagate.pipeline import BuildContext, BuiltBackend, EndpointProxy, ProxyWrapper
    from lambdagate.proxy import ProxyRequest, ProxyResponse
    from lambdagate.stack import StepContext

NAMESPACE = "validation/cel"
OLD_NAME = "github.com/devopsfaith/krakend-cel"
log = logging.getLogger("lambdagate.validation.cel")

_T = cel.Type
_LISTS = _T.Map(_T.STRING, _T.List(_T.STRING))
_ANY_MAP = _T.Map(_T.STRING, _T.DYN)
# KrakenD's declarations (krakend-cel internal/cel.go), with their types: an expression that misuses one (compares
# a status with a string, say) is refused when the config is read instead of failing every request.
VARIABLES: dict[str, Any] = {
    "req_method": _T.STRING,
    "req_path": _T.STRING,
    "req_params": _T.Map(_T.STRING, _T.STRING),
    "req_headers": _LISTS,
    "req_querystring": _LISTS,
    "resp_completed": _T.BOOL,
    "resp_metadata_status": _T.INT,
    "resp_metadata_headers": _LISTS,
    "resp_data": _ANY_MAP,
    "JWT": _ANY_MAP,
    "now": _T.STRING,
}
_RESPONSE_VARIABLES = frozenset(name for name in VARIABLES if name.startswith("resp_"))
_EXAMPLE = """[{"check_expr": "req_method == 'GET'"}]"""
# String literals (CEL's quotes, triple quotes, raw and bytes prefixes), skipped when looking for identifiers.
_STRINGS = re.compile(
    r"""[rRbB]{0,2}(?:'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")""", re.DOTALL
)
# An identifier that is no field selection (`x.JWT`) nor a function call's member name.
_IDENTIFIER = re.compile(r"(?<![.\w])([A-Za-z_]\w*)")
_ERROR_AT = re.compile(r"<input>:(\d+):(\d+): ([^\n]*)")
_UNAUTHORIZED = json_reply(401, {"error": "unauthorized"}, [(b"www-authenticate", b"Bearer")])


@lru_cache(maxsize=1)
def _env() -> Any:
    """The one compile environment (building it costs ~70 ms: once per process, when a config first uses CEL)."""
    return cel.NewEnv(variables=VARIABLES)


@dataclass(frozen=True, slots=True)
class Check:
    index: int  # its place in the namespace's list, as KrakenD's log names it ("evaluator #0")
    source: str
    program: Any  # a compiled cel Expression
    variables: frozenset[str]  # the KrakenD variables it names

    def passes(self, data: dict[str, Any]) -> bool:
        """True only for a boolean `true`; an evaluation error (a missing key, a value CEL cannot hold) refuses."""
        try:
            return self.program.eval(data=data).value() is True
        except Exception:
            return False


@dataclass(frozen=True, slots=True)
class Checks:
    """An endpoint's or a backend's checks, by when they run."""

    token: tuple[Check, ...]  # only JWT (and now): with the token's validation (endpoint level)
    request: tuple[Check, ...]  # before the backends
    response: tuple[Check, ...]  # on the response
    request_variables: frozenset[str]
    response_variables: frozenset[str]


def named_variables(source: str) -> frozenset[str]:
    """The KrakenD variables an expression names (a superset at worst: a comprehension's own `now` counts)."""
    code = _STRINGS.sub("''", source)
    return frozenset(name for name in _IDENTIFIER.findall(code) if name in VARIABLES)


def compile_error(message: str) -> str:
    """The engine's error as one line, with the place in the expression: "line 1, column 16: Syntax error: ..."."""
    found = _ERROR_AT.findall(message)
    if not found:
        return message.strip().splitlines()[0] if message.strip() else "does not compile"
    return "; ".join(f"line {line}, column {column}: {text.strip()}" for line, column, text in found)


def compiled(source: str) -> tuple[Any, str | None]:
    """(program, None), or (None, why it is refused)."""
    try:
        program = _env().compile(source)
    except Exception as exc:
        return None, f"does not compile: {compile_error(str(exc))}"
    kind = program.return_type()
    if kind != _T.BOOL and kind != _T.DYN:
        return None, f"gives {kind.name().lower()}, not a boolean: a check must be true or false"
    return program, None


def _check(index: int, item: Any, ctx: NamespaceContext, issues: list[tuple[str, str]]) -> Check | None:
    if not isinstance(item, dict):
        issues.append((f"[{index}]", f"must be an object such as {_EXAMPLE[1:-1]}"))
        return None
    for key in item:
        if key != "check_expr":  # mod_expr included: KrakenD CE parses it but never evaluates it
            ctx.warnings.append((f"[{index}].{key}", "not supported, ignored"))
    source = item.get("check_expr")
    if not isinstance(source, str) or not source.strip():
        issues.append((f"[{index}].check_expr", "must be a CEL expression, e.g. \"req_method == 'GET'\""))
        return None
    program, why = compiled(source)
    if program is None:
        issues.append((f"[{index}].check_expr", why or "does not compile"))
        return None
    return Check(index, source, program, named_variables(source))


def _validates_tokens(endpoint: EndpointConfig | None) -> bool:
    return endpoint is not None and any(guards.canonical(key) == "auth/validator" for key in endpoint.extra_config)


def parse(value: Any, ctx: NamespaceContext) -> Checks:
    if not isinstance(value, list) or not value:
        raise NamespaceError([("", f"must be a list of checks such as {_EXAMPLE}")])
    issues: list[tuple[str, str]] = []
    checks = [check for i, item in enumerate(value) if (check := _check(i, item, ctx, issues)) is not None]
    if not _validates_tokens(ctx.endpoint):
        for check in checks:
            if "JWT" in check.variables:
                # KrakenD evaluates JWT checks only inside its token validator: without one they never run.
                issues.append((f"[{check.index}].check_expr", "uses JWT, but the endpoint has no auth/validator"))
    if issues:
        raise NamespaceError(issues)
    return phased(checks, at_backend=ctx.backend is not None)


def phased(checks: list[Check], *, at_backend: bool) -> Checks:
    """The checks by when they run: the earliest point where every variable they name is known."""
    token, request, response = [], [], []
    for check in checks:
        if check.variables & _RESPONSE_VARIABLES:
            response.append(check)
        elif not at_backend and "JWT" in check.variables and check.variables <= {"JWT", "now"}:
            token.append(check)
        else:
            request.append(check)
    return Checks(
        tuple(token),
        tuple(request),
        tuple(response),
        frozenset().union(*(c.variables for c in request)),
        frozenset().union(*(c.variables for c in response)),
    )


CEL_NAMESPACE = Namespace(NAMESPACE, "endpoint", parse, aliases=(OLD_NAME,), other_scopes=("backend",))


class _Clock:
    """`now` as KrakenD gives it (RFC 3339, seconds), formatted once a second."""

    second = -1
    text = ""

    @classmethod
    def now(cls) -> str:
        second = int(time.time())
        if second != cls.second:
            cls.text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
            cls.second = second
        return cls.text


@lru_cache(maxsize=1024)
def canonical_header(name: str) -> str:
    """Go's canonical header name, as KrakenD's maps hold them: `x-tenant` → `X-Tenant`."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def header_lists(headers: Any) -> dict[str, list[str]]:
    """(name, value) pairs or a name → value dict, as KrakenD's header maps (canonical name → values)."""
    out: dict[str, list[str]] = {}
    for name, value in headers.items() if isinstance(headers, dict) else headers:
        out.setdefault(canonical_header(name), []).append(value)
    return out


def request_data(req: ProxyRequest, wanted: frozenset[str], method: str, path: str) -> dict[str, Any]:
    """The request variables `wanted` names (and only those: converting one costs microseconds)."""
    data: dict[str, Any] = {}
    for name in wanted:
        if name == "req_headers":
            headers = header_lists(req.headers)
            headers["X-Forwarded-For"] = [req.client_ip]  # as KrakenD's request carries them to the backends
            if req.host:
                headers["X-Forwarded-Host"] = [req.host]
            data[name] = headers
        elif name == "req_params":  # KrakenD capitalises the first letter of each parameter's name: {id} → Id
            data[name] = {k[:1].upper() + k[1:]: v for k, v in req.params.items()}
        elif name == "req_querystring":
            query: dict[str, list[str]] = {}
            for key, value in req.query:
                query.setdefault(key, []).append(value)
            data[name] = query
        elif name == "req_method":
            data[name] = method
        elif name == "req_path":
            data[name] = path
        elif name == "JWT":
            data[name] = req.claims or {}
        elif name == "now":
            data[name] = _Clock.now()
    return data


def response_data(
    data: dict[str, Any], wanted: frozenset[str], resp: ProxyResponse | None, complete: bool
) -> dict[str, Any]:
    """`data` (the request's variables) with the response variables `wanted` names."""
    for name in wanted & _RESPONSE_VARIABLES:
        if name == "resp_completed":
            data[name] = complete
        elif name == "resp_metadata_status":
            data[name] = resp.status if resp is not None else 0
        elif name == "resp_metadata_headers":
            data[name] = header_lists(resp.headers) if resp is not None else {}
        else:
            data[name] = (resp.data if resp is not None else None) or {}
    return data


def failed(checks: tuple[Check, ...], data: dict[str, Any], where: str, request_id: str) -> Check | None:
    """The first check that refuses, logged as KrakenD does (at info: it is the client's request that fails)."""
    for check in checks:
        if not check.passes(data):
            log.info(
                "%s: check #%d refused the request: %s request_id=%s", where, check.index, check.source, request_id
            )
            return check
    return None


def aborted(check: Check) -> BackendError:
    """KrakenD's pipe error for a refused check; no status of its own, so the endpoint answers 500."""
    return BackendError(f"request aborted by evaluator #{check.index}", status=500, refused=True)


async def token_checks(ctx: StepContext) -> Step | None:
    """The endpoint's JWT-only checks (stack.ENDPOINT_GUARDS, right after auth/validator): 401 when one refuses, as
    KrakenD's token validator answers when its CEL rejecter says no."""
    checks = ctx.endpoint.namespaces.get(NAMESPACE) if ctx.endpoint is not None else None
    if not isinstance(checks, Checks) or not checks.token:
        return None
    where = f"{ctx.endpoint.method} {ctx.endpoint.endpoint}"

    def step(handler: Handler) -> Handler:
        async def guard(ex: Exchange) -> Any:
            data = {"JWT": ex.claims or {}, "now": _Clock.now()}
            if failed(checks.token, data, where, ex.request_id) is not None:
                return _UNAUTHORIZED
            return await handler(ex)

        return guard

    return step


async def endpoint_checks(
    service: ServiceConfig, endpoint: EndpointConfig, resources: Resources
) -> ProxyWrapper | None:
    """The endpoint's request and response checks, around its whole fan-out (plugins.ENDPOINT_WRAPPERS)."""
    checks = endpoint.namespaces.get(NAMESPACE)
    if not isinstance(checks, Checks) or not (checks.request or checks.response):
        return None
    where = f"{endpoint.method} {endpoint.endpoint}"
    wanted = checks.request_variables | checks.response_variables

    def wrap(proxy: EndpointProxy) -> EndpointProxy:
        async def checked(req: ProxyRequest) -> MergedResponse:
            data = request_data(req, wanted, req.method, req.path)
            if checks.request and (refusal := failed(checks.request, data, where, req.request_id)) is not None:
                return MergedResponse(None, False, aborted(refusal))
            outcome = await proxy(req)
            if checks.response and outcome.error is None:  # a failed pipe is answered as it is, as KrakenD does
                response_data(data, wanted, outcome.response, outcome.complete)
                if (refusal := failed(checks.response, data, where, req.request_id)) is not None:
                    return MergedResponse(None, False, aborted(refusal))
            return outcome

        return checked

    return wrap


async def with_cel_checks(built: BuiltBackend, cfg: BackendConfig, ctx: BuildContext) -> BuiltBackend:
    """A backend's checks, before and after its call (plugins.BACKEND_WRAPPERS). As in KrakenD, `req_method` and
    `req_path` are the backend's: its method and its url_pattern filled in."""
    checks: Checks = cfg.namespaces[NAMESPACE]
    call, where = built.call, f"{ctx.path} ({built.label})"
    method = cfg.method or ctx.endpoint.method
    render_path = compile_url_pattern(cfg.url_pattern.partition("?")[0])
    wanted = checks.request_variables | checks.response_variables

    async def checked(req: ProxyRequest) -> ProxyResponse:
        data = request_data(req, wanted, method, render_path(req.params) if "req_path" in wanted else "")
        if checks.request and (refusal := failed(checks.request, data, where, req.request_id)) is not None:
            raise aborted(refusal)
        resp = await call(req)
        if checks.response:
            response_data(data, wanted, resp, resp.is_complete)
            if (refusal := failed(checks.response, data, where, req.request_id)) is not None:
                raise aborted(refusal)
        return resp

    return replace(built, call=checked)

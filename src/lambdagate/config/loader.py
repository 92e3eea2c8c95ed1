"""Read a JSON or YAML config file and validate it once: types, cross-field rules, extension namespaces.

Every problem is collected (not just the first) and named by its JSON path, with what to write instead.
Type errors come first: the cross-field rules (duplicates, placeholders, namespaces) run once the types are right.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
import yaml
from pydantic import BaseModel, ValidationError

from lambdagate.config import backend_client, core_keys, flexible, guards, namespaces, shapes
from lambdagate.config.encodings import check_service_encoding, resolve_encodings
from lambdagate.config.lenient import lenient
from lambdagate.config.model import (
    JWT_PLACEHOLDER_RE,
    PLACEHOLDER_RE,
    SEQUENTIAL_PLACEHOLDER_RE,
    BackendConfig,
    EndpointConfig,
    ServiceConfig,
    is_builtin_path,
)
from lambdagate.config.namespaces import LoadOptions, NamespaceContext, NamespaceError
from lambdagate.config.server_keys import top_level_errors, top_level_issues
from lambdagate.config.server_tls import tls_issues
from lambdagate.errors import ConfigError, ConfigIssue

M = TypeVar("M", bound=BaseModel)
# The namespace whose validated token fills `{JWT.claim}` placeholders (lambdagate.auth registers it).
CLAIMS_NAMESPACE = "auth/validator"
# The namespace of the sequential proxy and shadow backends (config/proxy_options.py registers it).
PROXY_NAMESPACE = "proxy"
# A url_pattern placeholder naming an earlier backend's reply ("resp0_id"), which no endpoint placeholder needs to be.
SEQUENTIAL_PARAM_RE = re.compile(r"resp\d+_")


@dataclass
class LoadedConfig:
    service: ServiceConfig
    warnings: list[ConfigIssue] = field(default_factory=list)
    source: str = ""


def read_document(path: str | Path) -> Any:
    """The raw document: YAML for .yaml/.yml, JSON otherwise. Syntax errors name the line."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError([ConfigIssue("", f"cannot read config file {str(p)!r}: {exc.strerror}")]) from None
    return parse_document(raw, p.suffix)


def parse_document(raw: bytes, suffix: str, *, rendered: bool = False) -> Any:
    """`raw` as YAML (suffix .yaml/.yml) or JSON. A rendered template's syntax error quotes the rendered line."""
    if suffix.lower() in (".yaml", ".yml"):
        return _parse_yaml(raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        where = f"at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        if rendered:
            lines = raw.decode("utf-8", "replace").splitlines()
            shown = lines[exc.lineno - 1].strip()[:200] if 0 < exc.lineno <= len(lines) else ""
            message = f"the rendered config is not valid JSON {where}; that line reads: {shown}"
            raise ConfigError([ConfigIssue("", message + " (print it all with check --out -)")]) from None
        hint = ""
        if b"{{" in raw:
            hint = ' (it looks like a KrakenD template: render it with FC_ENABLE=1 or --fc-enable, see "Templated configs")'
        raise ConfigError([ConfigIssue("", f"invalid JSON {where}{hint}")]) from None


def _parse_yaml(raw: bytes) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([ConfigIssue("", f"invalid YAML{where}: {getattr(exc, 'problem', exc)}")]) from None
    except RecursionError:
        raise ConfigError([ConfigIssue("", "invalid YAML: nested too deeply")]) from None
    except Exception as exc:
        # e.g. ValueError for the date 2001-02-30, IndexError for an empty "!!int"
        raise ConfigError([ConfigIssue("", f"invalid YAML value: {type(exc).__name__}: {exc}")]) from None


def render_flexible(path: str | Path, options: LoadOptions) -> str:
    """A templated config (FC_ENABLE) rendered, and written where FC_OUT says."""
    fc = options.flexible
    assert fc is not None
    text = flexible.render(path, fc)
    if fc.out and fc.out != "-":
        try:
            Path(fc.out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError([ConfigIssue("", f"cannot write FC_OUT {fc.out!r}: {exc.strerror}")]) from None
    return text


def rendered_suffix(options: LoadOptions) -> str:
    """How a rendered config is parsed: as JSON unless FC_OUT names a YAML file (KrakenD's parser goes by the
    rendered file's name)."""
    out = options.flexible.out if options.flexible else None
    return Path(out).suffix if out and out != "-" else ".json"


def load_rendered(text: str, options: LoadOptions, source: str | Path) -> LoadedConfig:
    loaded = validate_document(parse_document(text.encode(), rendered_suffix(options), rendered=True), options)
    loaded.source = str(source)
    return loaded


def load_config(path: str | Path, options: LoadOptions | None = None) -> LoadedConfig:
    options = options or LoadOptions()
    if options.flexible is not None:
        return load_rendered(render_flexible(path, options), options, path)
    loaded = validate_document(read_document(path), options)
    loaded.source = str(path)
    return loaded


def validate_document(doc: Any, options: LoadOptions) -> LoadedConfig:
    if not isinstance(doc, dict):
        raise ConfigError(
            [ConfigIssue("", 'the config must be a JSON object such as {"version": 3, "endpoints": [...]}')]
        )
    doc, warnings = lenient(doc)  # KrakenD's weakly typed decoding of the core keys, each conversion warned about
    try:
        service = ServiceConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError([_pydantic_issue(e, ServiceConfig) for e in exc.errors()]) from None
    errors: list[ConfigIssue] = []
    _check_service(service, options, errors, warnings)
    if errors:
        raise ConfigError(errors)
    # "@comment" and other "@" keys are allowed anywhere by KrakenD's schema: never worth a warning.
    return LoadedConfig(service=service, warnings=[w for w in warnings if not core_keys.is_comment_warning(w)])


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _pydantic_issue(err: dict, model: type[BaseModel] | None = None) -> ConfigIssue:
    # Drop pydantic's internal loc parts such as "function-before[...]" or literal choices.
    loc = tuple(p for p in err["loc"] if isinstance(p, int) or not ("[" in p or "(" in p))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        msg = f'required: add "{loc[-1]}"' if loc else "required"
    elif err["type"] == "literal_error":
        msg = f"{msg}, got {err.get('input')!r}"
    elif err["type"].endswith("_type") or err["type"].endswith("_parsing"):
        msg = (
            f"{msg}, got {type(err.get('input')).__name__} {_short(err.get('input'))}{_what_to_write(err, model, loc)}"
        )
    return ConfigIssue(_path(loc), msg)


def _what_to_write(err: dict, model: type[BaseModel] | None, loc: tuple) -> str:
    """For the common JSON slips (a quoted number or boolean, one value for a list), what to write instead.
    `model`: the model validated, whose field type at `loc` shapes the list shown (config/shapes.py)."""
    kind, value = err["type"], err.get("input")
    if kind.startswith(("int_", "float_")) and isinstance(value, str):
        try:
            number = int(value) if kind.startswith("int_") else float(value)
        except ValueError:
            return ""
        return f": write {number} without quotes" if math.isfinite(number) else ""
    if kind.startswith("bool_") and isinstance(value, str):
        return ": write true or false, without quotes"
    if kind == "list_type" and isinstance(value, (str, int, float)):
        return f": write a list, such as {shapes.list_example(model, loc, value)}"
    return ""


def parse_namespace_model(
    model: type[M], value: Any, ctx: NamespaceContext, example: str, hints: dict[str, str] | None = None
) -> M:
    """A namespace value parsed into its pydantic model, with the loader's error wording.

    Errors are NamespaceError issues relative to the namespace; `hints` replaces pydantic's wording for a
    field (the value given is appended). Unknown keys are warned about, as everywhere else.
    """
    if not isinstance(value, dict):
        raise NamespaceError([("", f"must be an object such as {example}")])
    try:
        parsed = model.model_validate(value)
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            issue = _pydantic_issue(err, model)
            hint = (hints or {}).get(issue.path)
            issues.append((issue.path, f"{hint}, got {err.get('input')!r}" if hint else issue.message))
        raise NamespaceError(issues) from None
    for key in parsed.model_extra or {}:
        ctx.warnings.append((key, "not supported, ignored"))
    return parsed


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _key(key: str) -> str:
    """A path step for a key: `.name`, or `["backend/lambda"]` when the key is not a plain word."""
    return f".{key}" if key.replace("_", "").isalnum() else f'["{key}"]'


def _joined(path: str, sub: str) -> str:
    """A namespace's path and a sub-path within it: `.field`, or `["key"]` / `[0]` as the sub-path starts."""
    return f"{path}{sub}" if sub.startswith("[") else f"{path}.{sub}" if sub else path


def _unknown_fields(model: BaseModel, path: str, warnings: list[ConfigIssue]) -> None:
    for key in model.model_extra or {}:
        message = core_keys.unknown_key_message(key)
        if message is not None:
            warnings.append(ConfigIssue(f"{path}.{key}" if path else key, message))


def _parse_namespaces(
    owner, scope: str, ctx: NamespaceContext, errors: list[ConfigIssue], warnings: list[ConfigIssue]
) -> None:
    base = ctx.path
    for key, value in owner.extra_config.items():
        path = f"{base}.extra_config{_key(key)}" if base else f"extra_config{_key(key)}"
        ns = namespaces.lookup(key)
        if (ns is None or not ns.reads(scope)) and guards.is_guard(key):
            _unapplied_guard(key, ns, scope, ctx, path, errors, warnings)
            continue
        if ns is None and scope == "backend" and (why := guards.backend_type_not_implemented(key)) is not None:
            errors.append(ConfigIssue(path, why))
            continue
        if ns is None:
            hint = guards.unsupported_hint(key, implemented=namespaces.lookup(guards.canonical(key)) is not None)
            warnings.append(ConfigIssue(path, "namespace not supported, ignored" + hint))
            continue
        if not ns.reads(scope):
            warnings.append(ConfigIssue(path, f"namespace belongs in a {ns.scope}'s extra_config, ignored here"))
            continue
        if ns.name in owner.namespaces:
            errors.append(ConfigIssue(path, f"{ns.name!r} is given twice (once under an alias): keep one"))
            continue
        if key != ns.name:
            warnings.append(ConfigIssue(path, guards.old_name_read(key, ns.name)))
        ctx.path, ctx.warnings = path, []
        try:
            owner.namespaces[ns.name] = ns.parse(value, ctx)
        except NamespaceError as exc:
            errors.extend(ConfigIssue(_joined(path, sub), msg) for sub, msg in exc.issues)
        warnings.extend(ConfigIssue(_joined(path, sub), msg) for sub, msg in ctx.warnings)
    ctx.path = base


def _unapplied_guard(
    key: str,
    ns: namespaces.Namespace | None,
    scope: str,
    ctx: NamespaceContext,
    path: str,
    errors: list[ConfigIssue],
    warnings: list[ConfigIssue],
) -> None:
    """Fail closed: a guard lambdagate cannot apply here refuses the config, unless --allow-unsupported names it."""
    name = guards.canonical(key)
    if name in ctx.options.allow_unsupported:
        if scope == "service":
            served = f"every endpoint ({len(ctx.service.endpoints)}) is served"
        else:
            verb = "calls this backend" if scope == "backend" else "is served"
            served = f"{ctx.endpoint.method} {ctx.endpoint.endpoint} {verb}"
        warnings.append(ConfigIssue(path, guards.served_without(key, served)))
    elif ns is not None:
        errors.append(ConfigIssue(path, guards.misplaced(key, scope, ns.scope)))
    elif namespaces.lookup(name) is not None:  # under another spelling
        errors.append(ConfigIssue(path, guards.refusal(key, scope, implemented=True)))
    elif not guards.is_krakend_name(key):  # e.g. "security/jwt": KrakenD never ran it either
        errors.append(ConfigIssue(path, guards.not_krakend(key, scope)))
    else:
        errors.append(ConfigIssue(path, guards.refusal(key, scope, implemented=False)))


def _check_service(service: ServiceConfig, options: LoadOptions, errors: list, warnings: list) -> None:
    _unknown_fields(service, "", warnings)
    ctx = NamespaceContext(service=service, endpoint=None, backend=None, path="", options=options)
    _parse_namespaces(service, "service", ctx, errors, warnings)
    check_service_encoding(service, warnings)
    if service.timeout <= 0:
        errors.append(ConfigIssue("timeout", 'must be more than 0, e.g. "2s"'))
    client_errors, client_warnings = backend_client.check_service_client(service)
    errors.extend(ConfigIssue(p, m) for p, m in client_errors)
    warnings.extend(ConfigIssue(p, m) for p, m in client_warnings)
    tls_errors, tls_warnings = tls_issues(service.tls)
    errors.extend(tls_errors)
    warnings.extend(tls_warnings)
    errors.extend(top_level_errors(service))
    warnings.extend(top_level_issues(service))
    for k, host in enumerate(service.host):  # the default hosts of backends that name none
        if not is_base_url(sanitize_host(host)):
            errors.append(ConfigIssue(f"host[{k}]", f'{host!r} is not a base URL: write it like "http://service:8080"'))
    seen: dict[tuple[str, str], int] = {}
    for i, endpoint in enumerate(service.endpoints):
        path = f"endpoints[{i}]"
        endpoint.endpoint = _clean_path(endpoint.endpoint, f"{path}.endpoint", warnings)
        # The router's view (gin's): "/a/{x}" is "/a/{y}", so both would claim the same requests ("/a/" is not "/a").
        key = (route_shape(endpoint.endpoint), endpoint.method)
        if key in seen:
            first = service.endpoints[seen[key]]
            errors.append(
                ConfigIssue(
                    path,
                    f"duplicate of endpoints[{seen[key]}] ({first.method} {first.endpoint}): "
                    'change "endpoint" or "method"',
                )
            )
        seen.setdefault(key, i)
        _check_endpoint(service, endpoint, path, options, errors, warnings)


def _check_placeholders(service: ServiceConfig, endpoint: EndpointConfig, path: str, errors: list) -> None:
    # KrakenD's disable_rest lets a placeholder sit inside a segment ("/a{x}"); lambdagate's router cannot.
    rest = " (KrakenD's disable_rest allows more; lambdagate's router does not)" if service.disable_rest else ""
    for segment in endpoint.endpoint.split("/"):
        if "{" in segment and not PLACEHOLDER_RE.fullmatch(segment):
            errors.append(
                ConfigIssue(
                    f"{path}.endpoint",
                    f'placeholder segment {segment!r} must be a whole path segment such as "/users/{{id}}"{rest}',
                )
            )
    placeholders = endpoint.placeholders
    if len(set(placeholders)) != len(placeholders):
        errors.append(
            ConfigIssue(f"{path}.endpoint", f"a placeholder appears twice in {endpoint.endpoint}: rename one")
        )


def _check_endpoint(
    service: ServiceConfig, endpoint: EndpointConfig, path: str, options: LoadOptions, errors: list, warnings: list
) -> None:
    _unknown_fields(endpoint, path, warnings)
    _check_placeholders(service, endpoint, path, errors)
    if is_builtin_path(_strip_slash(endpoint.endpoint)):
        errors.append(
            ConfigIssue(
                f"{path}.endpoint",
                f"{endpoint.endpoint} is reserved for the gateway's built-in endpoints: choose another path",
            )
        )
    for name in ("timeout", "cache_ttl"):
        value = getattr(endpoint, name)
        if value is not None and value < 0:
            errors.append(ConfigIssue(f"{path}.{name}", "must not be negative"))
    if endpoint.timeout == 0:
        errors.append(ConfigIssue(f"{path}.timeout", 'must be more than 0, e.g. "2s"'))
    encoding = resolve_encodings(service, endpoint, path, warnings)
    if encoding == "no-op" and len(endpoint.backend) > 1:
        errors.append(
            ConfigIssue(
                f"{path}.output_encoding",
                f'"no-op" passes one backend through, this endpoint has '
                f'{len(endpoint.backend)}: keep one backend or use "json"',
            )
        )
    ctx = NamespaceContext(service=service, endpoint=endpoint, backend=None, path=path, options=options)
    _parse_namespaces(endpoint, "endpoint", ctx, errors, warnings)
    for j, backend in enumerate(endpoint.backend):
        bpath = f"{path}.backend[{j}]"
        _unknown_fields(backend, bpath, warnings)
        for key, message in core_keys.backend_input_issues(
            endpoint.input_headers, endpoint.input_query_strings, backend.input_headers, backend.input_query_strings
        ):
            warnings.append(ConfigIssue(f"{bpath}.{key}", message))
        bctx = NamespaceContext(service=service, endpoint=endpoint, backend=backend, path=bpath, options=options)
        _parse_namespaces(backend, "backend", bctx, errors, warnings)
        if encoding == "no-op":
            backend.encoding = "no-op"
        # A "no-op" backend under another encoding is KrakenD's too: called, its data is {} (its body is only
        # read by a sequential endpoint's "resp<N>").
        if not is_typed_backend(backend) and not _other_backend_type(backend):
            sd_errors, sd_warnings = backend_client.check_sd(backend)
            errors.extend(ConfigIssue(f"{bpath}.{p}", m) for p, m in sd_errors)
            warnings.extend(ConfigIssue(f"{bpath}.{p}", m) for p, m in sd_warnings)
            _check_http_backend(service, endpoint, backend, bpath, errors, warnings)
            _check_sequential(endpoint, j, backend, bpath, warnings)
    if all(_is_shadow(b) for b in endpoint.backend):
        errors.append(ConfigIssue(f"{path}.backend", 'every backend is a "shadow": one must answer the client'))


def _namespace_flag(owner: EndpointConfig | BackendConfig, name: str) -> bool:
    """A flag of the parsed `proxy` namespace (config/proxy_options.py, which imports this module)."""
    return bool(getattr(owner.namespaces.get(PROXY_NAMESPACE), name, False))


def _is_shadow(backend: BackendConfig) -> bool:
    return _namespace_flag(backend, "shadow")


def _check_sequential(endpoint: EndpointConfig, index: int, backend: BackendConfig, path: str, warnings: list) -> None:
    """`{respN_x}` placeholders are KrakenD's (it starts with any of them); those never filled are warned about."""
    refs = SEQUENTIAL_PLACEHOLDER_RE.findall(backend.url_pattern)
    if not refs:
        return
    if not _namespace_flag(endpoint, "sequential"):
        warnings.append(
            ConfigIssue(
                f"{path}.url_pattern",
                'a {respN_...} placeholder is filled only with "proxy": {"sequential": true}: it is sent empty',
            )
        )
        return
    # Indexes count the backends that answer (shadows are not in the chain), as Lura's.
    position = sum(1 for b in endpoint.backend[:index] if not _is_shadow(b))
    for n, key in refs:
        if int(n) >= position:
            warnings.append(
                ConfigIssue(f"{path}.url_pattern", f"{{resp{n}_{key}}} names no earlier backend: it is sent empty")
            )


def _strip_slash(path: str) -> str:
    return path[:-1] if len(path) > 1 and path.endswith("/") else path


def route_shape(path: str) -> str:
    """The path as the router sees it: placeholder names erased (a trailing slash is significant, as in gin)."""
    return PLACEHOLDER_RE.sub("{}", path)


def _other_backend_type(backend: BackendConfig) -> bool:
    """A KrakenD backend type lambdagate does not implement (Pub/Sub, AMQP, ...): refused as such, never checked as
    an HTTP backend (its host, e.g. "kafka://", is no HTTP address)."""
    return any(guards.backend_type_not_implemented(key) for key in backend.extra_config)


def is_typed_backend(backend: BackendConfig) -> bool:
    """True when a registered backend type (e.g. Lambda) handles this backend instead of HTTP."""
    return any((ns := namespaces.lookup(k)) is not None and ns.backend_type for k in backend.extra_config)


def _clean_path(value: str, path: str, warnings: list[ConfigIssue]) -> str:
    """KrakenD's path cleaning (Lura's CleanPath): a path without its leading "/" gets one. Warned about, since it
    is more often a slip than a choice."""
    if value.startswith("/"):
        return value
    cleaned = "/" + value
    what = "empty" if not value else f'{value!r} has no leading "/"'
    warnings.append(ConfigIssue(path, f'{what}: read as "{cleaned}", as KrakenD does; write "{cleaned}"'))
    return cleaned


def _check_http_backend(
    service: ServiceConfig,
    endpoint: EndpointConfig,
    backend: BackendConfig,
    path: str,
    errors: list,
    warnings: list,
) -> None:
    backend.url_pattern = _clean_path(backend.url_pattern, f"{path}.url_pattern", warnings)
    placeholders = set(endpoint.placeholders)
    for name in PLACEHOLDER_RE.findall(backend.url_pattern):
        if name not in placeholders and not SEQUENTIAL_PARAM_RE.match(name):
            errors.append(
                ConfigIssue(f"{path}.url_pattern", f"placeholder {{{name}}} is not in endpoint {endpoint.endpoint}")
            )
    if not any(guards.canonical(key) == CLAIMS_NAMESPACE for key in endpoint.extra_config):
        for name in dict.fromkeys(JWT_PLACEHOLDER_RE.findall(backend.url_pattern)):
            errors.append(
                ConfigIssue(
                    f"{path}.url_pattern",
                    f"{{JWT.{name}}} is a claim of a validated token, and "
                    f'the endpoint validates none: add "{CLAIMS_NAMESPACE}"',
                )
            )
    hosts = backend.host or service.host
    if not hosts:  # KrakenD starts with it too; every call fails ("no hosts available")
        message = 'no host: every call fails (as in KrakenD); add "host": ["http://service:8080"] to the backend or'
        warnings.append(ConfigIssue(f"{path}.host", message + " the service"))
    for k, host in enumerate(() if backend.sd == "dns" else backend.host):  # SRV names: checked by check_sd
        if is_base_url(host if backend.disable_host_sanitize else sanitize_host(host)):
            continue
        cleaned = None if backend.disable_host_sanitize else lura_clean_host(host)
        if cleaned is None:
            errors.append(
                ConfigIssue(f"{path}.host[{k}]", f'{host!r} is not a base URL: write it like "http://service:8080"')
            )
            continue
        backend.host[k] = cleaned
        warnings.append(
            ConfigIssue(f"{path}.host[{k}]", f'{host!r} is read as "{cleaned}", as KrakenD does: write that')
        )


def is_base_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    except ValueError:  # e.g. "http://[::1" or "http://svc:http"
        return False
    # A path is allowed: KrakenD joins host and url_pattern ("http://svc/api" + "/users").
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query and not parts.fragment


# Lura's host pattern (config/uri.go): a host KrakenD accepts is one that holds exactly one match of it.
_LURA_HOST = re.compile(r"(https?://)?([a-zA-Z0-9._\-]+)(:[0-9]{2,6})?/?")


def lura_clean_host(host: str) -> str | None:
    """KrakenD's SafeCleanHost for a host our URL check refuses (e.g. "kafka://" is read as "http://kafka"): the one
    match of Lura's pattern, with "http://" when it has no scheme; None when KrakenD refuses it too."""
    matches = _LURA_HOST.findall(host)
    if len(matches) != 1:
        return None
    scheme, name, port = matches[0]
    cleaned = f"{scheme or 'http://'}{name}{port}"
    return cleaned if is_base_url(cleaned) else None


def sanitize_host(host: str) -> str:
    """KrakenD's host sanitising: add "http://" when no scheme is given and drop a trailing slash."""
    host = host.strip()
    if "://" not in host:
        host = "http://" + host
    return host.rstrip("/")

"""Which `extra_config` namespaces are guards, and what lambdagate says when it cannot apply one.

A guard is a namespace whose absence lets through what the config meant to stop: authentication, rate limits,
request validation, security policies, and the plugins and scripts that can refuse a request. lambdagate fails
closed on them: a guard it does not implement (or that sits where it is not read) refuses the config in `check`,
at start-up and on reload, unless `--allow-unsupported NAME` says to serve without it. Every other namespace it
does not implement is only warned about, as KrakenD ignores unknown namespaces.

Names are compared the way a user means them, not only the way KrakenD reads them: case and surrounding spaces
are ignored, `github_com/` is `github.com/`, and the KrakenD 1.x names (`github.com/devopsfaith/krakend-jose/
validator`, ...) stand for their current name, so `--allow-unsupported auth/validator` covers every spelling.
KrakenD 2 and later read an old name only when it is spelled exactly as in their alias table (e.g.
`github_com/devopsfaith/krakend-cors`, `github.com/devopsfaith/krakend-jose/validator`) and ignore the others, so a
guard under another spelling is served open there. A guard name that is no KrakenD namespace at all (`security/jwt`,
`modifier/lua`) is one KrakenD never ran: its refusal says so, with the namespace likely meant (`meant`).

Pure data and small functions: this module imports nothing from the gateway.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping

# How `lambdagate run` hands its --allow-unsupported list to the worker processes (comma-separated).
ALLOW_ENV = "LAMBDAGATE_ALLOW_UNSUPPORTED"

# Every name under these prefixes is a guard ("modifier/lua" also covers "modifier/lua-endpoint", -proxy, -backend).
GUARD_PREFIXES = ("auth/", "security/", "qos/ratelimit", "validation/", "modifier/lua")
# Under a guard prefix but no guard: CORS tells browsers what they may share, it does not stop a request.
NOT_GUARDS = frozenset({"security/cors"})
# Guards outside the prefixes. Plugins and middlewares that see the request can refuse it (plugin/http-client
# only replaces the transport to a backend, so it is no guard); governance/quota is a rate limit by another name.
GUARD_NAMES = frozenset(
    {
        "plugin/http-server",
        "plugin/req-resp-modifier",
        "plugin/middleware",
        "governance/quota",
        "endpoint/rate-limit",  # not a KrakenD name, but real configs write it for a rate limit
    }
)

# Old names (as normalised by `normal`) → the current name. From KrakenD's 1.x → 2.0 migration table, plus
# the spellings found in real configs. Non-guards are listed too, so a warning can say what to write instead.
# This table is the one place old names live: a namespace registered under its current name (config/namespaces.py)
# reads all of its old names with no alias of its own, and the loader's warning names the current one.
OLD_NAMES: dict[str, str] = {
    "github.com/devopsfaith/krakend-jose/validator": "auth/validator",
    "github.com/devopsfaith/krakend-jose/signer": "auth/signer",
    "github.com/devopsfaith/bloomfilter": "auth/revoker",
    "github.com/devopsfaith/krakend-oauth2-clientcredentials": "auth/client-credentials",
    "github.com/devopsfaith/krakend-apikeys": "auth/api-keys",
    "github.com/devopsfaith/krakend-ratelimit/juju/router": "qos/ratelimit/router",
    "github.com/devopsfaith/krakend-ratelimit/juju/proxy": "qos/ratelimit/proxy",
    "github.com/devopsfaith/krakend-ratelimit/rate/router": "qos/ratelimit/router",
    "github.com/devopsfaith/krakend-ratelimit/rate/proxy": "qos/ratelimit/proxy",
    "qos_ratelimit_router": "qos/ratelimit/router",
    "qos_ratelimit_proxy": "qos/ratelimit/proxy",
    "github.com/devopsfaith/krakend-botdetector": "security/bot-detector",
    "github.com/devopsfaith/krakend-httpsecure": "security/http",
    "github.com/devopsfaith/krakend-cel": "validation/cel",
    "github.com/devopsfaith/krakend-jsonschema": "validation/json-schema",
    "github.com/devopsfaith/krakend-lua/router": "modifier/lua-endpoint",
    "github.com/devopsfaith/krakend-lua/proxy": "modifier/lua-proxy",
    "github.com/devopsfaith/krakend-lua/proxy/backend": "modifier/lua-backend",
    "github.com/devopsfaith/krakend/transport/http/server/handler": "plugin/http-server",
    "github.com/devopsfaith/krakend/proxy/plugin": "plugin/req-resp-modifier",
    "github.com/devopsfaith/krakend/proxy/plugin/request": "plugin/req-resp-modifier",
    "github.com/devopsfaith/krakend/proxy/plugin/response": "plugin/req-resp-modifier",
    "plugin/request-modifier": "plugin/req-resp-modifier",
    "plugin/response-modifier": "plugin/req-resp-modifier",
    # not guards
    "github.com/devopsfaith/krakend-cors": "security/cors",
    "github.com/devopsfaith/krakend/transport/http/client/executor": "plugin/http-client",
    "github.com/devopsfaith/krakend/proxy": "proxy",
    "github.com/luraproject/lura/router/gin": "router",
    "github.com/devopsfaith/krakend/http": "backend/http",
    "github.com/devopsfaith/krakend-httpcache": "qos/http-cache",
    "github.com/devopsfaith/krakend-circuitbreaker/gobreaker": "qos/circuit-breaker",
    "github.com/devopsfaith/krakend-martian": "modifier/martian",
    "github.com/devopsfaith/krakend-amqp/agent": "async/amqp",
    "github.com/devopsfaith/krakend-amqp/consume": "backend/amqp/consumer",
    "github.com/devopsfaith/krakend-amqp/produce": "backend/amqp/producer",
    "github.com/devopsfaith/krakend-pubsub/publisher": "backend/pubsub/publisher",
    "github.com/devopsfaith/krakend-pubsub/subscriber": "backend/pubsub/subscriber",
    "github.com/devopsfaith/krakend/transport/http/client/graphql": "backend/graphql",
    "github.com/devopsfaith/krakend-lambda": "backend/lambda",
    "github.com/devopsfaith/krakend-gelf": "telemetry/gelf",
    "github.com/devopsfaith/krakend-gologging": "telemetry/logging",
    "github.com/devopsfaith/krakend-logstash": "telemetry/logstash",
    "github.com/devopsfaith/krakend-metrics": "telemetry/metrics",
    "github.com/letgoapp/krakend-influx": "telemetry/influx",
    "github.com/devopsfaith/krakend-influx": "telemetry/influx",
    "github.com/devopsfaith/krakend-opencensus": "telemetry/opencensus",
}

# Every namespace KrakenD 2.x reads, CE or EE, by its current name (the extra_config properties of KrakenD's JSON
# schemas, v2.1 to v2.13). A guard under any other name (none of the old names either) is one KrakenD never ran.
KRAKEND_NAMESPACES = frozenset(
    {
        "ai/llm", "ai/mcp", "async/amqp", "async/kafka",
        "auth/api-keys", "auth/aws-sigv4", "auth/basic", "auth/client-credentials", "auth/gcp", "auth/ntlm",
        "auth/revoker", "auth/signer", "auth/validator",
        "backend/amqp/consumer", "backend/amqp/producer", "backend/conditional", "backend/graphql", "backend/grpc",
        "backend/http", "backend/http/client", "backend/lambda", "backend/pubsub/publisher",
        "backend/pubsub/publisher/kafka", "backend/pubsub/subscriber", "backend/pubsub/subscriber/kafka",
        "backend/soap", "backend/static-filesystem",
        "documentation/openapi", "documentation/postman", "governance/processors", "governance/quota", "grpc",
        "modifier/body-generator", "modifier/jmespath", "modifier/lua-backend", "modifier/lua-endpoint",
        "modifier/lua-proxy", "modifier/martian", "modifier/request-body-extractor",
        "modifier/request-body-extractor/early", "modifier/request-body-generator", "modifier/response-body",
        "modifier/response-body-generator", "modifier/response-headers",
        "plugin/http-client", "plugin/http-server", "plugin/middleware", "plugin/req-resp-modifier", "proxy",
        "qos/circuit-breaker", "qos/circuit-breaker/http", "qos/http-cache", "qos/ratelimit/proxy",
        "qos/ratelimit/router", "qos/ratelimit/router/redis", "qos/ratelimit/service", "qos/ratelimit/service/redis",
        "qos/ratelimit/tiered", "redis", "router",
        "security/bot-detector", "security/cors", "security/http", "security/policies",
        "server/static-filesystem", "server/virtualhost",
        "telemetry/ganalytics", "telemetry/gelf", "telemetry/influx", "telemetry/instana", "telemetry/logging",
        "telemetry/logstash", "telemetry/metrics", "telemetry/moesif", "telemetry/newrelic", "telemetry/opencensus",
        "telemetry/opentelemetry", "telemetry/opentelemetry-security",
        "validation/cel", "validation/json-schema", "validation/response-json-schema", "websocket", "workflow",
    }
)  # fmt: skip
# Guard names that are no KrakenD namespace, as real configs write them → the namespaces they likely meant; `meant`
# keeps those read in the scope at hand (READ_IN). Other names get a close match among the guards KrakenD reads.
MEANT: dict[str, tuple[str, ...]] = {
    "security/jwt": ("auth/validator",),
    "auth/jwt": ("auth/validator",),
    "auth/jwk-client": ("auth/validator",),
    "auth/oauth2": ("auth/validator",),
    "auth/authorization": ("auth/validator", "security/policies"),
    "security/rate-limit": ("qos/ratelimit/router", "qos/ratelimit/service", "qos/ratelimit/proxy"),
    "endpoint/rate-limit": ("qos/ratelimit/router", "qos/ratelimit/service", "qos/ratelimit/proxy"),
    "qos/ratelimit": ("qos/ratelimit/router", "qos/ratelimit/service", "qos/ratelimit/proxy"),
    "security/secure-headers": ("security/http",),
    "security/headers": ("security/http",),
    "modifier/lua": ("modifier/lua-endpoint", "modifier/lua-proxy", "modifier/lua-backend"),
}
# Where the namespaces MEANT names protect something (KrakenD CE's reading, as lambdagate's).
READ_IN: dict[str, tuple[str, ...]] = {
    "auth/validator": ("endpoint",),  # at the service level only its key cache's duration is read
    "security/policies": ("endpoint", "backend"),
    "qos/ratelimit/router": ("endpoint",),
    "qos/ratelimit/service": ("service",),
    "qos/ratelimit/proxy": ("backend",),
    "security/http": ("service",),
    "modifier/lua-endpoint": ("service", "endpoint"),
    "modifier/lua-proxy": ("endpoint",),
    "modifier/lua-backend": ("backend",),
}

# KrakenD CE backend types that are no HTTP backend and that lambdagate does not implement → what the backend is.
# A backend with one is refused for that, before its host ("kafka://") is checked as a URL. (Enterprise-only types,
# such as backend/grpc, are not here: KrakenD CE ignores them and calls the backend over HTTP, as lambdagate does.)
BACKEND_TYPES_NOT_IMPLEMENTED: dict[str, str] = {
    "backend/pubsub/publisher": "a Pub/Sub publisher",
    "backend/pubsub/subscriber": "a Pub/Sub subscriber",
    "backend/amqp/producer": "an AMQP producer",
    "backend/amqp/consumer": "an AMQP consumer",
}

# How each scope's protection is described: (what it protects, what serving without it means).
_PROTECTS = {"service": "every endpoint", "endpoint": "this endpoint", "backend": "this backend"}
_SERVE = {"service": "serve every endpoint", "endpoint": "serve the endpoint", "backend": "call the backend"}


def normal(key: str) -> str:
    """A key as old names are written in OLD_NAMES: lower case, trimmed, `github.com/` for `github_com/`."""
    name = key.strip().lower()
    return "github.com/" + name.removeprefix("github_com/") if name.startswith("github_com/") else name


def canonical(key: str) -> str:
    """The current name of a namespace key: `auth/validator` for every spelling of the JWT validator."""
    name = normal(key)
    return OLD_NAMES.get(name, name)


def is_old_name(key: str) -> bool:
    return normal(key) in OLD_NAMES


def is_guard(key: str) -> bool:
    name = canonical(key)
    return name not in NOT_GUARDS and (name in GUARD_NAMES or name.startswith(GUARD_PREFIXES))


def _named(key: str) -> str:
    """`key` as a message names it, with its current name when it is an old one."""
    return f"`{key}` (the old name of `{canonical(key)}`)" if is_old_name(key) else f"`{key}`"


def refusal(key: str, scope: str, *, implemented: bool) -> str:
    """Why a guard that lambdagate does not implement under this name refuses the config.

    `implemented`: lambdagate does implement the guard under its current name (the config uses an old name or
    another spelling, which KrakenD reads no more than lambdagate does).
    """
    name, protects = canonical(key), f"{_named(key)} protects {_PROTECTS[scope]}"
    allow = f"start with `--allow-unsupported {name}` to {_SERVE[scope]} without it"
    if implemented:
        return f"{protects}, but lambdagate reads it only as `{name}`: rename it, or {allow}"
    return f"{protects} and lambdagate does not implement it; remove it, or {allow}"


def is_krakend_name(key: str) -> bool:
    """True for a namespace KrakenD reads under some name (a current one, or an old one): False for made-up names
    such as `security/jwt`, which KrakenD ignores."""
    return is_old_name(key) or canonical(key) in KRAKEND_NAMESPACES


_READ_WHERE = {
    "service": "the service's extra_config",
    "endpoint": "each endpoint's extra_config",
    "backend": "each backend's extra_config",
}


def meant(key: str, scope: str) -> list[str]:
    """The real namespaces a made-up guard name likely stood for, as a message names them: those read in `scope`
    first; one read elsewhere says where."""
    name = canonical(key)
    names = MEANT.get(name) or tuple(
        difflib.get_close_matches(name, sorted(n for n in KRAKEND_NAMESPACES if is_guard(n)), n=1, cutoff=0.85)
    )
    here = [n for n in names if scope in READ_IN.get(n, (scope,))]
    if here:
        return [f"`{n}`" for n in here]
    return [f"`{n}` (read in {_READ_WHERE[READ_IN[n][0]]})" for n in names[:1]]


def not_krakend(key: str, scope: str) -> str:
    """Why a guard name that is no KrakenD namespace refuses the config: KrakenD ignores it, so the guard never ran
    there, and the endpoint is open in KrakenD."""
    guesses = meant(key, scope)
    guess = (
        f"did you mean {' or '.join(guesses)}? Rename it, remove it"
        if guesses
        else "write the KrakenD namespace you meant, remove it"
    )
    return (
        f"`{key}` is not a KrakenD namespace (KrakenD ignores it, so this guard never ran there): {guess}, or "
        f"start with `--allow-unsupported {canonical(key)}` to {_SERVE[scope]} without it"
    )


def backend_type_not_implemented(key: str) -> str | None:
    """Why a backend whose `key` namespace makes it a KrakenD backend type lambdagate lacks is refused, else None."""
    kind = BACKEND_TYPES_NOT_IMPLEMENTED.get(canonical(key))
    if kind is None:
        return None
    family = canonical(key).rsplit("/", 1)[0]  # backend/pubsub, backend/amqp
    return (
        f"{family} is not supported by lambdagate: {_named(key)} makes this backend {kind}, not an HTTP backend; "
        "remove the backend, or reach the broker through an HTTP service or a Lambda function (`backend/lambda`)"
    )


def misplaced(key: str, scope: str, belongs: str) -> str:
    """Why a guard that lambdagate implements, but in another scope's extra_config, refuses the config."""
    article = "an" if belongs[0] in "aeiou" else "a"
    return (
        f"`{key}` is read only in {article} {belongs}'s extra_config, so here it protects nothing; move it "
        f"there, or start with `--allow-unsupported {canonical(key)}` to {_SERVE[scope]} without it"
    )


def served_without(key: str, served: str) -> str:
    """The warning for a guard that --allow-unsupported lets lambdagate ignore; `served` says what runs open."""
    return f"{_named(key)} is ignored: {served} WITHOUT this protection (--allow-unsupported {canonical(key)})"


# The old names KrakenD 2 and later still read, in exactly this spelling (krakend-ce's alias table); they ignore
# every other spelling of an old name.
KRAKEND_READS = frozenset(
    {
        "github_com/devopsfaith/krakend/transport/http/server/handler",
        "github.com/devopsfaith/krakend/transport/http/client/executor",
        "github.com/devopsfaith/krakend/proxy/plugin",
        "github.com/devopsfaith/krakend/proxy",
        "github_com/luraproject/lura/router/gin",
        "github.com/devopsfaith/krakend-httpcache",
        "github.com/devopsfaith/krakend-circuitbreaker/gobreaker",
        "github.com/devopsfaith/krakend-oauth2-clientcredentials",
        "github.com/devopsfaith/krakend-jose/validator",
        "github.com/devopsfaith/krakend-jose/signer",
        "github_com/devopsfaith/bloomfilter",
        "github_com/devopsfaith/krakend-botdetector",
        "github_com/devopsfaith/krakend-httpsecure",
        "github_com/devopsfaith/krakend-cors",
        "github.com/devopsfaith/krakend-cel",
        "github.com/devopsfaith/krakend-jsonschema",
        "github.com/devopsfaith/krakend-amqp/agent",
        "github.com/devopsfaith/krakend-amqp/consume",
        "github.com/devopsfaith/krakend-amqp/produce",
        "github.com/devopsfaith/krakend-lambda",
        "github.com/devopsfaith/krakend-pubsub/publisher",
        "github.com/devopsfaith/krakend-pubsub/subscriber",
        "github.com/devopsfaith/krakend/transport/http/client/graphql",
        "github.com/devopsfaith/krakend/http",
        "github_com/devopsfaith/krakend-gelf",
        "github_com/devopsfaith/krakend-gologging",
        "github_com/devopsfaith/krakend-logstash",
        "github_com/devopsfaith/krakend-metrics",
        "github_com/letgoapp/krakend-influx",
        "github_com/devopsfaith/krakend-opencensus",
        "github.com/devopsfaith/krakend-lua/router",
        "github.com/devopsfaith/krakend-lua/proxy",
        "github.com/devopsfaith/krakend-lua/proxy/backend",
        "github.com/devopsfaith/krakend-martian",
    }
)


def old_name_read(key: str, name: str) -> str:
    """The warning for an old name that lambdagate reads as its current name `name`."""
    krakend = (
        "KrakenD 2 reads this spelling too" if key in KRAKEND_READS else "KrakenD 2 and later may ignore the old name"
    )
    return f"`{key}` is the old name of `{name}` and is read as `{name}`; write `{name}` ({krakend})"


def unsupported_hint(key: str, *, implemented: bool) -> str:
    """What to add to the "not supported, ignored" warning of a namespace that is no guard."""
    if not is_old_name(key):
        return ""
    name = canonical(key)
    return f": it is the old name of `{name}`, write `{name}`" if implemented else f" (the old name of `{name}`)"


def allowed_name(value: str) -> str:
    """One --allow-unsupported value, as the current name of a guard. Raises ValueError saying what is wrong."""
    if not value.strip() or "," in value:
        raise ValueError(f"{value!r}: give one namespace per --allow-unsupported, e.g. auth/validator")
    if not is_guard(value):
        raise ValueError(
            f"{value!r} is no guard: lambdagate refuses only unsupported guards (auth/*, security/* but "
            "security/cors, qos/ratelimit/*, validation/*, modifier/lua-*, plugin/http-server, "
            "plugin/req-resp-modifier, ...); it serves other unsupported namespaces with a warning"
        )
    return canonical(value)


def allow_list_to_env(names: frozenset[str]) -> str:
    return ",".join(sorted(names))


def allow_list_from_env(environ: Mapping[str, str] = os.environ) -> frozenset[str]:
    return frozenset(canonical(name) for name in environ.get(ALLOW_ENV, "").split(",") if name.strip())

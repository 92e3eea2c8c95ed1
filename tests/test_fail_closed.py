"""Fail closed: a guard namespace lambdagate cannot apply refuses the config (check, start, reload), unless
`--allow-unsupported` names it; then every start warns which endpoints run without that protection."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from lambdagate.config import LoadOptions, guards, validate_document
from lambdagate.config.namespaces import Namespace, register
from lambdagate.errors import ConfigError
from tests.support.gateway import launch_gateway
from tests.support.procs import ROOT, Process, free_port, python_module
from tests.test_lambda_backend import http
from tests.test_reliability import _wait_for

HOST = "http://127.0.0.1:9"
JOSE_V1 = "github.com/devopsfaith/krakend-jose/validator"
APIKEYS_V1 = "github.com/devopsfaith/krakend-apikeys"  # the old name of a guard lambdagate does not implement


def doc(
    endpoint_ns: dict | None = None, backend_ns: dict | None = None, service_ns: dict | None = None, host: str = HOST
) -> dict:
    backend = {"host": [host], "url_pattern": "/echo", "extra_config": backend_ns or {}}
    return {
        "version": 3,
        "extra_config": service_ns or {},
        "endpoints": [
            {"endpoint": "/users", "method": "POST", "extra_config": endpoint_ns or {}, "backend": [backend]},
            {"endpoint": "/open", "backend": [{"host": [host], "url_pattern": "/echo"}]},
        ],
    }


def errors_of(config: dict, *allowed: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_document(config, LoadOptions(allow_unsupported=frozenset(allowed)))
    return [str(issue) for issue in info.value.issues]


def warnings_of(config: dict, *allowed: str) -> list[str]:
    return [str(w) for w in validate_document(config, LoadOptions(allow_unsupported=frozenset(allowed))).warnings]


# --- classification ---------------------------------------------------------------------------------------

GUARDS = [
    "auth/validator",
    "auth/api-keys",
    "auth/client-credentials",
    "auth/signer",
    "auth/revoker",
    "auth/basic",
    "auth/jwk-client",
    "security/http",
    "security/bot-detector",
    "security/policies",
    "security/jwt",
    "qos/ratelimit/router",
    "qos/ratelimit/proxy",
    "qos/ratelimit/service",
    "qos/ratelimit/router/redis",
    "validation/cel",
    "validation/json-schema",
    "validation/response-json-schema",
    "modifier/lua-endpoint",
    "modifier/lua-proxy",
    "modifier/lua-backend",
    "modifier/lua",
    "plugin/http-server",
    "plugin/req-resp-modifier",
    "plugin/middleware",
    "governance/quota",
    "endpoint/rate-limit",
    JOSE_V1,
    "github_com/devopsfaith/krakend-jose/validator",
    "github.com/devopsfaith/krakend-jose/signer",
    "github.com/devopsfaith/krakend-ratelimit/juju/router",
    "github.com/devopsfaith/krakend-ratelimit/juju/proxy",
    "github_com/devopsfaith/krakend-botdetector",
    "github.com/devopsfaith/krakend-httpsecure",
    "github.com/devopsfaith/krakend-cel",
    "github.com/devopsfaith/krakend-jsonschema",
    "github.com/devopsfaith/krakend-lua/router",
    "github_com/devopsfaith/bloomfilter",
    "github_com/devopsfaith/krakend-apikeys",
    "github_com/devopsfaith/krakend/transport/http/server/handler",
    "qos_ratelimit_router",
    "Auth/Validator",
    " security/http ",
]
NOT_GUARDS = [
    "security/cors",
    "github_com/devopsfaith/krakend-cors",
    "github.com/devopsfaith/krakend-cors",
    "plugin/http-client",
    "github.com/devopsfaith/krakend/transport/http/client/executor",
    "qos/circuit-breaker",
    "qos/http-cache",
    "modifier/martian",
    "telemetry/logging",
    "router",
    "proxy",
    "backend/http",
    "server/cors",
    "proxy/forward_headers",
    "_auth/validator",
    "documentation/openapi",
]


@pytest.mark.parametrize("name", GUARDS)
def test_guards(name: str) -> None:
    assert guards.is_guard(name)


@pytest.mark.parametrize("name", NOT_GUARDS)
def test_not_guards(name: str) -> None:
    assert not guards.is_guard(name)


def test_old_names_stand_for_their_current_name() -> None:
    assert (
        guards.canonical(JOSE_V1)
        == guards.canonical("github_com/devopsfaith/krakend-jose/validator")
        == guards.canonical("Auth/Validator")
        == "auth/validator"
    )
    assert guards.canonical("github.com/devopsfaith/krakend-ratelimit/juju/proxy") == "qos/ratelimit/proxy"
    assert guards.allowed_name("github_com/devopsfaith/krakend-jose/validator") == "auth/validator"


@pytest.mark.parametrize("value", ["security/cors", "plugin/http-client", "auth-validator", "", "auth/a,auth/b"])
def test_allow_list_takes_guards_only(value: str) -> None:
    with pytest.raises(ValueError):
        guards.allowed_name(value)


def test_allow_list_travels_to_the_workers_by_environment() -> None:
    names = frozenset({"auth/validator", "qos/ratelimit/router"})
    env = {guards.ALLOW_ENV: guards.allow_list_to_env(names)}
    assert env[guards.ALLOW_ENV] == "auth/validator,qos/ratelimit/router"
    assert guards.allow_list_from_env(env) == names
    assert guards.allow_list_from_env({}) == frozenset()


# --- validation: refused with a path and what to do, or served with a warning naming the endpoint --------


def test_unimplemented_guard_is_refused_at_every_scope() -> None:
    config = doc(
        endpoint_ns={"auth/api-keys": {}},
        backend_ns={"plugin/req-resp-modifier": {}},
        service_ns={"security/policies": {}},
    )
    assert errors_of(config) == [
        'extra_config["security/policies"]: `security/policies` protects every endpoint and lambdagate does not '
        "implement it; remove it, or start with `--allow-unsupported security/policies` to serve every endpoint "
        "without it",
        'endpoints[0].extra_config["auth/api-keys"]: `auth/api-keys` protects this endpoint and lambdagate does not '
        "implement it; remove it, or start with `--allow-unsupported auth/api-keys` to serve the endpoint without it",
        'endpoints[0].backend[0].extra_config["plugin/req-resp-modifier"]: `plugin/req-resp-modifier` protects this backend '
        "and lambdagate does not implement it; remove it, or start with `--allow-unsupported plugin/req-resp-modifier` "
        "to call the backend without it",
    ]


NOT_KRAKEND = "is not a KrakenD namespace (KrakenD ignores it, so this guard never ran there)"


def test_a_made_up_guard_name_says_krakend_never_ran_it_and_what_was_meant() -> None:
    config = doc(
        endpoint_ns={"security/rate-limit": {}, "auth/authorization": {}, "modifier/lua": {}},
        backend_ns={"modifier/lua": {}},
        service_ns={"security/jwt": {}, "security/secure-headers": {}, "auth/apikeys": {}, "security/csrf": {}},
    )
    assert errors_of(config) == [
        f'extra_config["security/jwt"]: `security/jwt` {NOT_KRAKEND}: did you mean `auth/validator` (read in each '
        "endpoint's extra_config)? Rename it, remove it, or start with `--allow-unsupported security/jwt` to serve "
        "every endpoint without it",
        f'extra_config["security/secure-headers"]: `security/secure-headers` {NOT_KRAKEND}: did you mean '
        "`security/http`? Rename it, remove it, or start with `--allow-unsupported security/secure-headers` to "
        "serve every endpoint without it",
        f'extra_config["auth/apikeys"]: `auth/apikeys` {NOT_KRAKEND}: did you mean `auth/api-keys`? Rename it, '
        "remove it, or start with `--allow-unsupported auth/apikeys` to serve every endpoint without it",
        f'extra_config["security/csrf"]: `security/csrf` {NOT_KRAKEND}: write the KrakenD namespace you meant, '
        "remove it, or start with `--allow-unsupported security/csrf` to serve every endpoint without it",
        f'endpoints[0].extra_config["security/rate-limit"]: `security/rate-limit` {NOT_KRAKEND}: did you mean '
        "`qos/ratelimit/router`? Rename it, remove it, or start with `--allow-unsupported security/rate-limit` to "
        "serve the endpoint without it",
        f'endpoints[0].extra_config["auth/authorization"]: `auth/authorization` {NOT_KRAKEND}: did you mean '
        "`auth/validator` or `security/policies`? Rename it, remove it, or start with `--allow-unsupported "
        "auth/authorization` to serve the endpoint without it",
        f'endpoints[0].extra_config["modifier/lua"]: `modifier/lua` {NOT_KRAKEND}: did you mean '
        "`modifier/lua-endpoint` or `modifier/lua-proxy`? Rename it, remove it, or start with `--allow-unsupported "
        "modifier/lua` to serve the endpoint without it",
        f'endpoints[0].backend[0].extra_config["modifier/lua"]: `modifier/lua` {NOT_KRAKEND}: did you mean '
        "`modifier/lua-backend`? Rename it, remove it, or start with `--allow-unsupported modifier/lua` to call the "
        "backend without it",
    ]
    # the allow-list still serves them, without the guard, each named
    allowed = ("security/rate-limit", "auth/authorization", "modifier/lua", "security/jwt", "security/secure-headers")
    assert len(warnings_of(config, *allowed, "auth/apikeys", "security/csrf")) == 8


@pytest.mark.parametrize(
    ("name", "scope", "expected"),
    [
        ("endpoint/rate-limit", "service", ["`qos/ratelimit/service`"]),
        ("endpoint/rate-limit", "backend", ["`qos/ratelimit/proxy`"]),
        ("auth/jwk-client", "endpoint", ["`auth/validator`"]),
        ("modifier/lua", "service", ["`modifier/lua-endpoint`"]),
        ("validation/jsonschema", "endpoint", ["`validation/json-schema`"]),  # a close match
        ("Security/JWT", "endpoint", ["`auth/validator`"]),
        ("security/jwtt", "endpoint", []),  # close to nothing a guard (not `security/http`)
    ],
)
def test_what_a_made_up_guard_name_likely_meant(name: str, scope: str, expected: list[str]) -> None:
    assert not guards.is_krakend_name(name)
    assert guards.meant(name, scope) == expected


@pytest.mark.parametrize("name", ["auth/api-keys", "auth/basic", APIKEYS_V1, "qos/ratelimit/tiered", "Auth/Revoker"])
def test_krakend_names_are_not_made_up(name: str) -> None:
    assert guards.is_krakend_name(name)


def test_allowed_guard_is_a_warning_naming_what_runs_without_it() -> None:
    config = doc(
        endpoint_ns={"auth/api-keys": {}},
        backend_ns={"plugin/req-resp-modifier": {}},
        service_ns={"security/policies": {}},
    )
    assert warnings_of(config, "auth/api-keys", "plugin/req-resp-modifier", "security/policies") == [
        'extra_config["security/policies"]: `security/policies` is ignored: every endpoint (2) is served WITHOUT '
        "this protection (--allow-unsupported security/policies)",
        'endpoints[0].extra_config["auth/api-keys"]: `auth/api-keys` is ignored: POST /users is served WITHOUT this '
        "protection (--allow-unsupported auth/api-keys)",
        'endpoints[0].backend[0].extra_config["plugin/req-resp-modifier"]: `plugin/req-resp-modifier` is ignored: POST /users '
        "calls this backend WITHOUT this protection (--allow-unsupported plugin/req-resp-modifier)",
    ]


def test_allowing_one_guard_does_not_allow_another() -> None:
    config = doc(endpoint_ns={"auth/api-keys": {}, "security/policies": {}})
    assert errors_of(config, "auth/api-keys") == [
        'endpoints[0].extra_config["security/policies"]: `security/policies` protects this endpoint and lambdagate '
        "does not implement it; remove it, or start with `--allow-unsupported security/policies` to serve the "
        "endpoint without it"
    ]


def test_old_names_are_refused_and_allowed_under_the_current_name() -> None:
    config = doc(endpoint_ns={APIKEYS_V1: {}}, backend_ns={"github_com/devopsfaith/krakend-apikeys": {}})
    assert errors_of(config) == [
        f'endpoints[0].extra_config["{APIKEYS_V1}"]: `{APIKEYS_V1}` (the old name of `auth/api-keys`) protects '
        "this endpoint and lambdagate does not implement it; remove it, or start with `--allow-unsupported "
        "auth/api-keys` to serve the endpoint without it",
        'endpoints[0].backend[0].extra_config["github_com/devopsfaith/krakend-apikeys"]: '
        "`github_com/devopsfaith/krakend-apikeys` (the old name of `auth/api-keys`) protects this backend "
        "and lambdagate does not implement it; remove it, or start with `--allow-unsupported auth/api-keys` to "
        "call the backend without it",
    ]
    assert len(warnings_of(config, "auth/api-keys")) == 2


def test_an_implemented_guards_old_name_is_read_with_a_warning_naming_the_current_name(tmp_path: Path) -> None:
    keys = tmp_path / "jwks.json"
    keys.write_bytes(b'{"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "kid": "h"}]}')
    validator = {"alg": "HS256", "jwk_local_path": str(keys)}
    loaded = validate_document(
        doc(endpoint_ns={"github_com/devopsfaith/krakend-jose/validator": validator}), LoadOptions()
    )
    assert [str(w) for w in loaded.warnings] == [
        'endpoints[0].extra_config["github_com/devopsfaith/krakend-jose/validator"]: '
        "`github_com/devopsfaith/krakend-jose/validator` is the old name of `auth/validator` and is read as "
        "`auth/validator`; write `auth/validator` (KrakenD 2 and later may ignore the old name)"
    ]
    assert "auth/validator" in loaded.service.endpoints[0].namespaces
    # In a backend it protects nothing, under any name: refused as misplaced, as the current name is.
    assert errors_of(doc(backend_ns={JOSE_V1: validator})) == [
        f'endpoints[0].backend[0].extra_config["{JOSE_V1}"]: `{JOSE_V1}` is read only in an endpoint\'s '
        "extra_config, so here it protects nothing; move it there, or start with `--allow-unsupported "
        "auth/validator` to call the backend without it"
    ]


def test_non_guards_stay_warnings() -> None:
    config = doc(
        endpoint_ns={"documentation/openapi": {}, "modifier/martian": {}},
        backend_ns={"plugin/http-client": {}, "backend/soap": {}},
        service_ns={"github_com/devopsfaith/krakend-gologging": {}},
    )
    assert warnings_of(config) == [
        'extra_config["github_com/devopsfaith/krakend-gologging"]: `github_com/devopsfaith/krakend-gologging` is the '
        "old name of `telemetry/logging` and is read as `telemetry/logging`; write `telemetry/logging` (KrakenD 2 "
        "reads this spelling too)",
        'endpoints[0].extra_config["documentation/openapi"]: namespace not supported, ignored',
        'endpoints[0].extra_config["modifier/martian"]: namespace belongs in a backend\'s extra_config, ignored here',
        'endpoints[0].backend[0].extra_config["plugin/http-client"]: namespace not supported, ignored',
        'endpoints[0].backend[0].extra_config["backend/soap"]: namespace not supported, ignored',
    ]


# A guard that lambdagate implements (as it does auth/validator), registered by this test.
PROBE = "auth/lambdagate-test-probe"
register(Namespace(PROBE, "endpoint", lambda value, ctx: value))


def test_implemented_guard_is_applied_not_refused() -> None:
    loaded = validate_document(doc(endpoint_ns={PROBE: {"on": True}}), LoadOptions())
    assert loaded.service.endpoints[0].namespaces == {PROBE: {"on": True}} and loaded.warnings == []


def test_implemented_guard_in_the_wrong_scope_is_refused() -> None:
    assert errors_of(doc(backend_ns={PROBE: {}})) == [
        f'endpoints[0].backend[0].extra_config["{PROBE}"]: `{PROBE}` is read only in an endpoint\'s extra_config, '
        f"so here it protects nothing; move it there, or start with `--allow-unsupported {PROBE}` to call the "
        "backend without it"
    ]
    assert warnings_of(doc(service_ns={PROBE: {}}), PROBE) == [
        f'extra_config["{PROBE}"]: `{PROBE}` is ignored: every endpoint (2) is served WITHOUT this protection '
        f"(--allow-unsupported {PROBE})"
    ]


def test_implemented_guard_under_another_spelling_says_to_rename_it() -> None:
    assert errors_of(doc(endpoint_ns={"Auth/Lambdagate-Test-Probe": {}})) == [
        'endpoints[0].extra_config["Auth/Lambdagate-Test-Probe"]: `Auth/Lambdagate-Test-Probe` protects this '
        f"endpoint, but lambdagate reads it only as `{PROBE}`: rename it, or start with `--allow-unsupported "
        f"{PROBE}` to serve the endpoint without it"
    ]


# Old names of the namespaces lambdagate implements: applied as the current name, with a warning naming it.
LEGACY = [
    ("github_com/devopsfaith/krakend-cors", "security/cors", "service"),
    ("github.com/devopsfaith/krakend-cors", "security/cors", "service"),
    ("github_com/devopsfaith/krakend-httpsecure", "security/http", "service"),
    ("github.com/devopsfaith/krakend-httpsecure", "security/http", "service"),
    ("github_com/devopsfaith/krakend-botdetector", "security/bot-detector", "service"),
    ("github.com/devopsfaith/krakend-botdetector", "security/bot-detector", "endpoint"),
]


@pytest.mark.parametrize(("old", "name", "scope"), LEGACY)
def test_old_names_of_implemented_namespaces_are_applied_with_a_warning(old: str, name: str, scope: str) -> None:
    value = {"deny": ["BadBot/1.0"]} if name == "security/bot-detector" else {}
    config = doc(service_ns={old: value}) if scope == "service" else doc(endpoint_ns={old: value})
    loaded = validate_document(config, LoadOptions())
    owner = loaded.service if scope == "service" else loaded.service.endpoints[0]
    assert list(owner.namespaces) == [name]
    where = "" if scope == "service" else "endpoints[0]."
    krakend = (
        "KrakenD 2 reads this spelling too"
        if old.startswith("github_com/")
        else "KrakenD 2 and later may ignore the old name"
    )
    assert [str(w) for w in loaded.warnings] == [
        f'{where}extra_config["{old}"]: `{old}` is the old name of `{name}` and is read as `{name}`; write `{name}` '
        f"({krakend})"
    ]


def test_an_old_name_beside_its_current_name_is_refused() -> None:
    old = "github_com/devopsfaith/krakend-httpsecure"
    assert errors_of(doc(service_ns={"security/http": {}, old: {}})) == [
        f"extra_config[\"{old}\"]: 'security/http' is given twice (once under an alias): keep one"
    ]


def test_the_bot_detector_is_read_in_the_service_and_endpoints_but_not_in_backends() -> None:
    config = doc(service_ns={"security/bot-detector": {}}, endpoint_ns={"security/bot-detector": {}})
    loaded = validate_document(config, LoadOptions())
    assert "security/bot-detector" in loaded.service.namespaces
    assert "security/bot-detector" in loaded.service.endpoints[0].namespaces
    assert errors_of(doc(backend_ns={"security/bot-detector": {}})) == [
        'endpoints[0].backend[0].extra_config["security/bot-detector"]: `security/bot-detector` is read only in an '
        "endpoint's extra_config, so here it protects nothing; move it there, or start with "
        "`--allow-unsupported security/bot-detector` to call the backend without it"
    ]


def test_guard_refusals_come_with_the_other_errors() -> None:
    config = doc(endpoint_ns={"security/policies": {}})
    config["endpoints"][1]["backend"][0]["url_pattern"] = "/{nope}"
    assert [e.split(":")[0] for e in errors_of(config)] == [
        'endpoints[0].extra_config["security/policies"]',
        "endpoints[1].backend[0].url_pattern",
    ]


# --- the command line ------------------------------------------------------------------------------------


def lambdagate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lambdagate", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def write(directory: Path, config: dict) -> str:
    path = directory / "krakend.json"
    path.write_bytes(orjson.dumps(config))
    return str(path)


def test_check_refuses_an_unimplemented_guard(tmp_path: Path) -> None:
    path = write(tmp_path, doc(endpoint_ns={"auth/api-keys": {}}))
    result = lambdagate("check", "-c", path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}: 1 error(s)",
        '  error: endpoints[0].extra_config["auth/api-keys"]: `auth/api-keys` protects this endpoint and lambdagate '
        "does not implement it; remove it, or start with `--allow-unsupported auth/api-keys` to serve the endpoint "
        "without it",
    ]


def test_check_with_allow_unsupported_accepts_and_warns(tmp_path: Path) -> None:
    path = write(tmp_path, doc(endpoint_ns={APIKEYS_V1: {}}, service_ns={"plugin/http-server": {}}))
    result = lambdagate(
        "check",
        "-c",
        path,
        "--allow-unsupported",
        "auth/api-keys",
        "--allow-unsupported",
        "github_com/devopsfaith/krakend/transport/http/server/handler",
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("  warning: ")]
    assert warnings == [
        '  warning: extra_config["plugin/http-server"]: `plugin/http-server` is ignored: every endpoint (2) is '
        "served WITHOUT this protection (--allow-unsupported plugin/http-server)",
        f'  warning: endpoints[0].extra_config["{APIKEYS_V1}"]: `{APIKEYS_V1}` (the old name of `auth/api-keys`) '
        "is ignored: POST /users is served WITHOUT this protection (--allow-unsupported auth/api-keys)",
    ]


@pytest.mark.parametrize("value", ["security/cors", "auth/a,auth/b"])
def test_allow_unsupported_refuses_what_is_no_guard(tmp_path: Path, value: str) -> None:
    result = lambdagate("check", "-c", write(tmp_path, doc()), "--allow-unsupported", value)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"error: argument --allow-unsupported: {value!r}" in result.stderr


def test_run_refuses_to_start_with_an_unimplemented_guard(tmp_path: Path) -> None:
    path = write(tmp_path, doc(endpoint_ns={"security/policies": {}}))
    proc = Process(
        python_module("lambdagate", "run", "-c", path, "--port", str(free_port()), "--host", "127.0.0.1"),
        tmp_path / "log",
    )
    assert proc.proc.wait(30) == 1
    proc.stop()
    log = proc.log()
    assert 'error: endpoints[0].extra_config["security/policies"]: `security/policies` protects this endpoint' in log
    assert "Traceback" not in log and "listening" not in log


def warning_lines(log: str, text: str) -> list[str]:
    return [line for line in log.splitlines() if "WARNING" in line and text in line]


def test_run_with_allow_unsupported_warns_at_every_start(upstream: str, tmp_path: Path) -> None:
    config = doc(endpoint_ns={"auth/api-keys": {}}, host=upstream)
    gateway = launch_gateway(config, tmp_path, "--allow-unsupported", "auth/api-keys", "--workers", "2")
    proc, path = gateway.process, tmp_path / "krakend.json"
    served_open = "`auth/api-keys` is ignored: POST /users is served WITHOUT this protection"
    try:
        # The workers loaded the config with the allow list too, or they would not serve.
        assert http("POST", f"{gateway.url}/users", b"{}")[0] == 200
        assert len(warning_lines(proc.log(), served_open)) == 1
        # A reload starts new workers: the warning again, with the new endpoint named as well.
        config["endpoints"].append(
            {
                "endpoint": "/new",
                "extra_config": {"auth/api-keys": {}},
                "backend": [{"host": [upstream], "url_pattern": "/echo"}],
            }
        )
        path.write_bytes(orjson.dumps(config))
        proc.proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: http("GET", f"{gateway.url}/new")[0] == 200, timeout=20)
        assert len(warning_lines(proc.log(), served_open)) == 2
        assert len(warning_lines(proc.log(), "GET /new is served WITHOUT this protection")) == 1
    finally:
        proc.stop()


def test_reload_refuses_a_config_that_adds_a_guard(upstream: str, tmp_path: Path) -> None:
    config = doc(host=upstream)
    gateway = launch_gateway(config, tmp_path, "--watch")
    proc, url, path = gateway.process, gateway.url, tmp_path / "krakend.json"
    try:
        config["endpoints"][0]["extra_config"] = {"security/policies": {}}
        config["endpoints"].append({"endpoint": "/new", "backend": [{"host": [upstream], "url_pattern": "/echo"}]})
        path.write_bytes(orjson.dumps(config))
        _wait_for(lambda: "reload (file changed) refused" in proc.log())
        proc.proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: "reload (SIGHUP) refused" in proc.log())
        log = proc.log()
        assert (
            log.count('endpoints[0].extra_config["security/policies"]: `security/policies` protects this endpoint') == 2
        )
        # The old config keeps serving: /users as before, and /new does not exist.
        assert http("POST", f"{url}/users", b"{}")[0] == 200
        assert http("GET", f"{url}/new")[0] == 404
        assert proc.proc.poll() is None
    finally:
        proc.stop()

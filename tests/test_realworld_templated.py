"""The templated configs in ../shared/realworld/configs/templated (read in place), rendered with settings files,
partials and templates this test writes, then validated as `run` validates them.

Their source repositories keep settings, partials and templates beside the config; the corpus holds only the
config, so each case writes plausible stand-ins (named here) for what the config reads. The outcome of each is
listed: it loads, or it is refused for the reason given (which KrakenD shares, unless the reason says otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from lambdagate.config import LoadOptions, load_config
from lambdagate.config.flexible import FlexibleConfig
from lambdagate.errors import ConfigError
from tests.support.procs import ROOT

CORPUS = Path(ROOT).parent / "shared/realworld/configs/templated"
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the templated corpus is not here: {CORPUS}")

HOST = ["http://backend:8080"]
VALIDATOR = '"auth/validator": {"alg": "RS256", "jwk_url": "https://idp.example.com/.well-known/jwks.json"}'
RATE_LIMIT_NS = "qos/ratelimit/router"
RATE_LIMIT = '"qos/ratelimit/proxy": {"max_rate": 100, "capacity": 100}'


def endpoint_tmpl(path: str = "/stand-in", define: str | None = None) -> str:
    """A stand-in for an endpoint template kept in the source repository: one endpoint object."""
    body = f'{{"endpoint": "{path}", "backend": [{{"url_pattern": "/", "host": ["http://backend:8080"]}}]}}'
    return f'{{{{ define "{define}" }}}}{body}{{{{ end }}}}' if define else body


@dataclass
class Case:
    settings: dict[str, dict] = field(default_factory=dict)
    partials: dict[str, str] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    refused: str | None = None  # a substring of the refusal; None: the config loads
    why: str = ""  # why it is refused


SERVICE = {
    "port": 8080.0,
    "timeout": "3s",
    "cache_ttl": "300s",
    "output_encoding": "json",
    "environment": "test",
    "extra_config": {"router": {"return_error_msg": True}},
}
ENDPOINTS = {
    "endpoints": [
        {
            "endpoint": "/users",
            "method": "GET",
            "http_method": "GET",
            "backend_url_pattern": "/users",
            "backend_method": "GET",
            "backend_host": "http://users:8080",
        },
        {
            "endpoint": "/orders/{id}",
            "method": "POST",
            "http_method": "POST",
            "backend_url_pattern": "/orders/{id}",
            "backend_method": "POST",
            "backend_host": "http://orders:8080",
        },
    ]
}
AMP_ENDPOINTS = {
    f"ms_{name}_secure": [
        {"endpoint": f"/{name}", "backend": f"/{name}", "input_query_strings": ["q"]},
        {
            "endpoint": f"/{name}/{{id}}",
            "backend": f"/{name}/{{id}}",
            "is_collection": True,
            "mapping": {"collection": "items"},
        },
    ]
    for name in ("user", "article", "communication", "invoice", "online_booking", "payment")
}

CASES: dict[str, Case] = {
    "AmpMVn__krakend__krakend__krakend.json": Case(
        settings={
            "service": {
                "extra_config": {},
                "default_hosts": HOST,
                **{
                    f"ms_{n}_host": HOST
                    for n in ("user", "article", "communication", "invoice", "online_booking", "payment")
                },
            },
            "endpoint": AMP_ENDPOINTS,
        },
        partials={"auth_keycloak.tmpl": VALIDATOR},
    ),
    "FRINXio__FRINX-machine__config__krakend__krakend.json": Case(
        settings={"frinx_frontend_settings": {"host": "http://frontend:8080"}},
        templates={"frinx_frontend.tmpl": endpoint_tmpl("/frontend", "frinx_frontend.tmpl")},
        env={
            "TLS_DISABLED": "true",
            "UNICONFIG_SHELL_ENABLED": "false",
            "AUTH_ENABLED": "false",
            "ALLOWED_HOSTS": "",
            "ALLOWED_ORIGINS": "https://a.example.com,https://b.example.com",
            "WORKFLOW_MANAGER_ENABLED": "false",
            "UNICONFIG_ENABLED": "false",
            "L3VPN_ENABLED": "false",
            "INVENTORY_ENABLED": "false",
            "RESOURCE_MANAGER_ENABLED": "false",
        },
    ),
    "KEYFAIRY__Api-Gateway__krakend__krakend.tmpl.json": Case(
        refused="the rendered config is not valid JSON at line 5, column 11",
        why='not a Go template: it is written for envsubst ("port": $PORT), which KrakenD does not run either',
    ),
    "Klasmart-Engineering__accounts-microgateway__krakend.json": Case(
        templates={"example.tmpl": endpoint_tmpl("/accounts")},
    ),
    "Klasmart-Engineering__microgateway-template__krakend.json": Case(
        templates={"example.tmpl": endpoint_tmpl("/product")},
    ),
    "Marcelovmendes__api-gateway__config__krakend.tmpl": Case(
        templates={"endpoints.tmpl": endpoint_tmpl("/api/items", "Endpoints")},
        env={"FRONTEND_URL": "https://app.example.com"},
    ),
    "Maximax67__helizium-api-gateway__config__krakend__krakend.tmpl": Case(
        settings={"env": {"name": "helizium", "port": 8080.0}, "captcha_endpoints": {"endpoints": ["/captcha"]}},
        partials={"extra_config.tmpl": '"router": {"return_error_msg": true}'},
        templates={"endpoints.tmpl": endpoint_tmpl("/users")},
        refused="`plugin/http-server` protects every endpoint and lambdagate does not implement it",
        why="a Go plugin (krakend-captcha) guards every endpoint: lambdagate cannot load Go plugins",
    ),
    "NapalmCodes__Aspire.Hosting.Krakend__examples__BasicGateway__BasicApiGateway__BasicApiGateway.AppHost__config__krakend__krakend.json": Case(
        env={"KRAKEND_PROXY_URL": "http://weather:8080", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"},
    ),
    "OpenTeleRehab__krakend__config__krakend__krakend.json": Case(
        settings={
            "service": {
                "port": 8080.0,
                "extra_config": {},
                # patient_vn is a martian url.Modifier host: a bare host, as martian reads it.
                "hosts": {
                    **{k: f"http://{k}:8080" for k in ("admin", "library", "therapist", "phone", "patient")},
                    "patient_vn": "patient-vn:8080",
                },
            },
            **{
                f"endpoint_{k}": {"methods": ["GET", "POST"], "endpoints": ["profile", "settings"]}
                for k in ("admin", "library", "therapist", "phone", "patient")
            },
        },
    ),
    "TaskarCenterAtUW__TDEI-api-gateway__krakend.tmpl": Case(
        settings={
            "service": {**SERVICE, "plugin": {"pattern": ".so", "folder": "/opt/krakend/plugins"}},
            "endpoints": ENDPOINTS,
        },
        partials={"rate_limit_backend.tmpl": RATE_LIMIT},
        env={"SERVICE_NAME": "tdei"},
    ),
    "angga-kesuma__TIX-API-GATEWAY-PLATFORM-KRAKEND__example__config__krakend.json": Case(
        settings={"ttd_test": {"path": "/members"}},
        templates={"endpoints.tmpl": '{{ define "endpoints" }}' + endpoint_tmpl("{{ .path }}") + "{{ end }}"},
        refused="`plugin/http-server` protects every endpoint and lambdagate does not implement it",
        why="a Go plugin (global-config) wraps every endpoint: lambdagate cannot load Go plugins",
    ),
    "archisdi__krakend-boilerplate__krakend.json": Case(
        settings={"jwt": {"auth/validator": {"alg": "RS256", "jwk_url": "https://idp.example.com/jwks"}}},
        # A backend written as an object, not a list: KrakenD's decoder reads it as a list of one (warned).
        env={"SERVICE_ONE_URL": "http://one:8080", "SERVICE_TWO_URL": "http://two:8080"},
    ),
    "arnaudmorisset__krakend-sandbox__gateway__config__krakend.tmpl": Case(
        templates={
            f"{kind}_endpoint.tmpl": endpoint_tmpl(f"/{kind}") for kind in ("basic", "user", "recurse", "generic")
        },
        refused="`auth/api-keys` protects every endpoint and lambdagate does not implement it",
        why="auth/api-keys is a KrakenD Enterprise feature",
    ),
    "arpit-systango__krakend__krakend__krakend.tmpl": Case(
        settings={"service": SERVICE, "endpoints": ENDPOINTS},
        partials={"rate_limit_backend.tmpl": RATE_LIMIT},
        templates={"endpoints.tmpl": "," + endpoint_tmpl("/health-check")},
        env={"SERVICE_NAME": "arpit"},
    ),
    "arwoosa__api-gateway__krakend.tmpl": Case(
        settings={
            "endpoint": {
                "group": [
                    {
                        "endpoint": "/api/users",
                        "method": "GET",
                        "backend": "/users",
                        "host": HOST,
                        "input_querys": ["page"],
                    },
                    {"endpoint": "/api/login", "method": "POST", "backend": "/login", "host": HOST},
                ]
            }
        },
        partials={"rate_limit_endpoint.tmpl": '"qos/ratelimit/router": {"max_rate": 50}'},
        refused="`plugin/http-server` protects every endpoint and lambdagate does not implement it",
        why="a Go plugin (static-filesystem) serves files before the router: lambdagate cannot load Go plugins",
    ),
    "blackexchange__krakend_multi__config__krakend.json": Case(
        settings={
            "service": {"port": 8080.0, "extra_config": {}, "default_hosts": HOST},
            "endpoint": {
                "endpoint_list": [
                    {"endpoint": "/users", "backend": "/users"},
                    {"endpoint": "/orders", "backend": "/orders"},
                ],
                "list_methods": ["GET", "DELETE"],
                "list_params": ["1", "2"],
            },
        },
        partials={"auth0_security.tmpl": VALIDATOR},
    ),
    "dcm-project__api-gateway__config__krakend.json.tmpl": Case(
        settings={
            "endpoints": {
                "endpoints": [
                    {
                        "path": "/providers",
                        "methods": ["GET", "POST"],
                        "host_env": "PROVIDERS_URL",
                        "host_default": "http://providers:8080",
                    },
                    {
                        "path": "/placements/{id}",
                        "backend_path": "/api/placements/{id}",
                        "methods": ["GET"],
                        "host_env": "PLACEMENTS_URL",
                        "host_default": "http://placements:8080",
                    },
                ]
            }
        },
        env={"PROVIDERS_URL": "http://providers.internal:9000"},
    ),
    "infratographer__api-gateway__krakend.infra.tmpl": Case(
        settings={"service": SERVICE},
        env={"SERVICE_NAME": "infratographer"},
    ),
    "infratographer__api-gateway__krakend.tmpl": Case(
        settings={"service": SERVICE, "endpoint": {"profile": ENDPOINTS["endpoints"]}},
        partials={"rate_limit_backend.tmpl": RATE_LIMIT},
        templates={"sample_template.tmpl": "," + endpoint_tmpl("/sample")},
        env={"SERVICE_NAME": "infratographer"},
    ),
    "nocturna-ta__api-gateway__config__krakend.json": Case(
        settings={
            "plugins": {"global": {"router": {"return_error_msg": True}}},
            "users": {
                "base_path": "/users",
                "endpoints": [
                    {
                        "path": "/me",
                        "method": "GET",
                        "host": "http://users:8080",
                        "destination": "/me",
                        "auth": True,
                        "extra_config": {RATE_LIMIT_NS: {"max_rate": 10.0}},
                    },
                    {
                        "path": "/{id}",
                        "method": "GET",
                        "output_encoding": "json",
                        "backend": [{"url_pattern": "/users/{id}", "host": "http://users:8080", "encoding": "json"}],
                    },
                ],
            },
        },
        templates={"auth.tmpl": '{{ define "auth.tmpl" }}' + VALIDATOR + "{{ end }}"},
    ),
    "peterkracik__krakend-poc__krakend__krakend.tmpl": Case(
        settings={
            "service": {**SERVICE, "version": "v1"},
            "endpoints": {
                "endpoints": [
                    {
                        "endpoint": "/posts",
                        "method": "GET",
                        "backend_url_pattern": "/posts",
                        "backend_method": "GET",
                        "backend_host": "http://posts:8080",
                        "input_query_strings": ["page", "limit"],
                        "collection_mapping": "posts",
                    }
                ]
            },
        },
        partials={"backend_errors.tmpl": '"backend/http": {"return_error_details": "backend_alias"}'},
        templates={"graphql.tmpl": endpoint_tmpl("/graphql", "graphql.tmpl")},
        env={"SERVICE_NAME": "poc"},
    ),
    "stephenzsy__small-kms__gateway__krakend__krakend.tmpl": Case(
        templates={"admin_auth.tmpl": '{{ define "admin_auth.tmpl" }}' + VALIDATOR + "{{ end }}"},
    ),
    "vanntrong__canva_infrastructure__krakend__krakend.tmpl": Case(
        settings={"urls": {"host": HOST}},
        templates={"endpoint.tmpl": '{{ define "Endpoint" }}' + endpoint_tmpl("/designs") + "{{ end }}"},
    ),
    "vmmatos__colloquia-poc-2026__gateway__krakend.tmpl": Case(
        partials={
            f"{part}.json": endpoint_tmpl(f"/{part}") for part in ("auth", "users", "channels", "messaging", "assist")
        },
    ),
}


def render_case(name: str, case: Case, root: Path, monkeypatch: pytest.MonkeyPatch):
    folders = {}
    for folder, files in (("settings", case.settings), ("partials", case.partials), ("templates", case.templates)):
        (root / folder).mkdir()
        folders[folder] = str(root / folder)
        for file, content in files.items():
            text = orjson.dumps(content).decode() if isinstance(content, dict) else content
            (root / folder / (f"{file}.json" if folder == "settings" else file)).write_text(text)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    fc = FlexibleConfig(folders["settings"], folders["partials"], folders["templates"])
    return load_config(CORPUS / name, LoadOptions(flexible=fc))


def test_every_templated_config_has_a_case():
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_templated_config_renders_and_loads_or_is_refused_for_its_reason(name, tmp_path, monkeypatch):
    case = CASES[name]
    if case.refused is None:
        loaded = render_case(name, case, tmp_path, monkeypatch)
        assert loaded.service.endpoints, "rendered with no endpoint: the settings were not read"
        return
    with pytest.raises(ConfigError) as caught:
        render_case(name, case, tmp_path, monkeypatch)
    assert case.refused in str(caught.value), case.why

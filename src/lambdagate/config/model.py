"""Typed KrakenD v3 config: service → endpoints → backends. Parsed once; the pipeline reads only these objects."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator

from lambdagate.config.durations import Duration
from lambdagate.config.server_tls import ServerTLS

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
# The encodings the gateway knows. Any other name is accepted with a warning and read as KrakenD reads it
# (config/loader.py resolve_encodings): a backend's as JSON, an endpoint's as JSON or its single backend's.
OUTPUT_ENCODINGS = ("json", "json-collection", "xml", "yaml", "negotiate", "string", "no-op")
BACKEND_ENCODINGS = ("json", "safejson", "xml", "rss", "string", "no-op")

PLACEHOLDER_RE = re.compile(r"\{([a-zA-Z0-9_\-]+)\}")
# A validated token's claim in a backend's url_pattern ("/users/{JWT.sub}"), with the characters KrakenD allows.
JWT_PLACEHOLDER_RE = re.compile(r"\{JWT\.([\w\-.:/]+)\}")
# A field of an earlier backend's reply in a sequential endpoint's url_pattern: "{resp0_id}", "{resp1_user.hash}".
SEQUENTIAL_PLACEHOLDER_RE = re.compile(r"\{resp(\d+)_([\w\-.]+)\}")
# Every placeholder a url_pattern may hold: an endpoint placeholder's name, "JWT." and a claim, or a reply's field.
URL_PLACEHOLDER_RE = re.compile(r"\{([a-zA-Z0-9_\-]+|JWT\.[\w\-.:/]+|resp\d+_[\w\-.]+)\}")
# The gateway's own endpoints (front.builtins serves them): no configured endpoint may take these paths.
BUILTIN_PATHS = ("/__health",)  # exactly these
BUILTIN_PREFIXES = ("/__echo/", "/__debug/")  # these and everything under them


def is_builtin_path(path: str) -> bool:
    """True for a path the built-in endpoints own ("/__echo" too: the router ignores a trailing slash)."""
    return path in BUILTIN_PATHS or any(path.startswith(p) or path == p[:-1] for p in BUILTIN_PREFIXES)


def _upper_method(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _host_list(value: Any) -> Any:
    # KrakenD writes a list; a single string is an easy mistake to forgive.
    return [value] if isinstance(value, str) else value


MethodField = Annotated[Method, BeforeValidator(_upper_method)]
HostList = Annotated[list[str], BeforeValidator(_host_list)]


class _Model(BaseModel):
    # Unknown keys are kept (in model_extra) so `check` can list them as "not supported, ignored".
    # Strict: a wrong JSON type is an error, as in KrakenD, not coerced ("8080" → 8080, "yes" → true, true → 1).
    model_config = ConfigDict(extra="allow", frozen=False, populate_by_name=True, strict=True)


class BackendConfig(_Model):
    host: HostList = Field(default_factory=list)
    url_pattern: str = ""
    method: MethodField | None = None
    encoding: str = "json"
    is_collection: bool = False
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)
    mapping: dict[str, str] = Field(default_factory=dict)
    group: str | None = None
    target: str | None = None
    disable_host_sanitize: bool = False
    sd: str = "static"  # "dns": `host` holds a DNS SRV name (config/backend_client.py)
    sd_scheme: str = "http"
    # Narrow what the endpoint forwards, for this backend only (pipeline/backend_inputs.py).
    input_headers: list[str] = Field(default_factory=list)
    input_query_strings: list[str] = Field(default_factory=list)
    extra_config: dict[str, Any] = Field(default_factory=dict)
    # Parsed extra_config namespaces (canonical name → the namespace's own typed object).
    _namespaces: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def namespaces(self) -> dict[str, Any]:
        return self._namespaces


class EndpointConfig(_Model):
    endpoint: str
    method: MethodField = "GET"
    backend: list[BackendConfig] = Field(min_length=1)
    timeout: Duration | None = None
    cache_ttl: Duration | None = None
    output_encoding: str | None = None
    input_headers: list[str] = Field(default_factory=list)
    input_query_strings: list[str] = Field(default_factory=list)
    concurrent_calls: int = Field(default=1, ge=0)  # 0 means 1, as in Lura
    extra_config: dict[str, Any] = Field(default_factory=dict)
    _namespaces: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def namespaces(self) -> dict[str, Any]:
        return self._namespaces

    @property
    def placeholders(self) -> list[str]:
        return PLACEHOLDER_RE.findall(self.endpoint)


class ServiceConfig(_Model):
    schema_: Any = Field(default=None, alias="$schema")  # editor metadata, accepted as is
    id_: Any = Field(default=None, alias="$id")  # editor metadata, accepted as is
    version: int
    name: str | None = None
    port: int = Field(default=8080, ge=0, le=65535)
    host: HostList = Field(default_factory=list)
    timeout: Duration = 2.0
    cache_ttl: Duration | None = None
    output_encoding: str = "json"
    # The backend HTTP client's pool and TLS (config/backend_client.py reads them).
    max_idle_connections: int = 0
    max_idle_connections_per_host: int = 0
    idle_connection_timeout: Duration = 0.0
    response_header_timeout: Duration = 0.0
    expect_continue_timeout: Duration = 0.0  # accepted: the gateway never sends Expect: 100-continue
    dialer_timeout: Duration = 0.0
    dialer_fallback_delay: Duration = 0.0
    dialer_keep_alive: Duration | None = None
    disable_keep_alives: bool = False
    disable_compression: bool = False
    dns_cache_ttl: Duration = 0.0
    allow_insecure_connections: bool = False
    client_tls: dict[str, Any] | None = None
    # KrakenD's HTTP server keys: the timeouts feed lambdagate/server (config/server_options.py), tls is served by
    # granian (config/server_tls.py), debug_endpoint and echo_endpoint add /__debug/ and /__echo/ (front/builtins.py).
    read_timeout: Duration | None = None
    write_timeout: Duration | None = None
    idle_timeout: Duration | None = None
    read_header_timeout: Duration | None = None
    tls: ServerTLS | None = None
    debug_endpoint: bool = False
    echo_endpoint: bool = False
    # More of KrakenD's server keys (config/server_keys.py): the bind address (`run --host` overrides it), the
    # header size limit and the shutdown grace (lambdagate/server's max_header_bytes and shutdown_grace).
    listen_ip: str = ""
    max_header_bytes: int = 0
    max_shutdown_wait_time: Duration | None = None
    # Accepted: disable_rest only lets KrakenD's placeholders sit inside a segment (refused here, with a hint);
    # sequential_start orders async agents, which lambdagate does not run; use_h2c, plugin and async_agent are
    # warned about (config/server_keys.py).
    disable_rest: bool = False
    sequential_start: bool = False
    use_h2c: bool = False
    plugin: dict[str, Any] | None = None
    async_agent: list[Any] | None = None
    extra_config: dict[str, Any] = Field(default_factory=dict)
    endpoints: list[EndpointConfig] = Field(default_factory=list)
    _namespaces: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def namespaces(self) -> dict[str, Any]:
        return self._namespaces

    @field_validator("version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value in (1, 2):
            krakend = "KrakenD 0.x" if value == 1 else "KrakenD 1.x"
            raise ValueError(
                f'format version {value} ({krakend}); KrakenD 2 and later refuse it too: migrate to "version": 3'
            )
        if value != 3:
            raise ValueError(f'unsupported version {value}: write "version": 3 (the format of KrakenD 2 and later)')
        return value

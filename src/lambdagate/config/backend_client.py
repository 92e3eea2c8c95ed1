"""How the gateway connects to HTTP backends, as KrakenD configures it: the service's connection-pool keys and
`client_tls`, the backend `backend/http/client` namespace, and `sd: "dns"` backends.

Everything here is read once, at load time; `backends.client_options` turns it into the worker's HTTP client.
TLS contexts are built here too (stdlib `ssl` only) so that `check` refuses a CA or client certificate that
cannot be loaded, instead of KrakenD's log line and a backend that fails at the first call.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from lambdagate.config import files
from lambdagate.config.model import BackendConfig, ServiceConfig

HTTP_CLIENT_NAMESPACE = "backend/http/client"
# Go's TLS version names as KrakenD reads them; a missing one is TLS 1.3 (KrakenD's default for both bounds).
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# The TLS 1.0-1.2 suites Go knows, by IANA number → OpenSSL name (TLS 1.3 suites are not configurable, in Go
# either).
_CIPHERS = {
    0x0005: "RC4-SHA",
    0x000A: "DES-CBC3-SHA",
    0x002F: "AES128-SHA",
    0x0035: "AES256-SHA",
    0x003C: "AES128-SHA256",
    0x009C: "AES128-GCM-SHA256",
    0x009D: "AES256-GCM-SHA384",
    0xC007: "ECDHE-ECDSA-RC4-SHA",
    0xC009: "ECDHE-ECDSA-AES128-SHA",
    0xC00A: "ECDHE-ECDSA-AES256-SHA",
    0xC011: "ECDHE-RSA-RC4-SHA",
    0xC012: "ECDHE-RSA-DES-CBC3-SHA",
    0xC013: "ECDHE-RSA-AES128-SHA",
    0xC014: "ECDHE-RSA-AES256-SHA",
    0xC023: "ECDHE-ECDSA-AES128-SHA256",
    0xC027: "ECDHE-RSA-AES128-SHA256",
    0xC02F: "ECDHE-RSA-AES128-GCM-SHA256",
    0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256",
    0xC030: "ECDHE-RSA-AES256-GCM-SHA384",
    0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384",
    0xCCA8: "ECDHE-RSA-CHACHA20-POLY1305",
    0xCCA9: "ECDHE-ECDSA-CHACHA20-POLY1305",
}
_TLS13_SUITES = {0x1301, 0x1302, 0x1303}
# KrakenD's suites when none are given: ECDHE with AES-GCM or ChaCha20 only.
_DEFAULT_SUITES = (0xC02F, 0xC02B, 0xC030, 0xC02C, 0xCCA8, 0xCCA9)
# A DNS name as an SRV record is named ("_api._tcp.example.com", "catalogue.service.consul").
_DNS_NAME = re.compile(r"(?=.{1,253}\.?$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9_-]{1,63}\.?")
INSECURE_WARNING = (
    "backend TLS certificates are NOT verified; anyone on the network path can "
    "impersonate the backends. Use ca_certs instead"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class ClientCert(_Strict):
    certificate: StrictStr
    private_key: StrictStr


class ClientTLS(_Strict):
    allow_insecure_connections: StrictBool = False
    ca_certs: list[StrictStr] = Field(default_factory=list)
    disable_system_ca_pool: StrictBool = False
    min_version: StrictStr = "TLS13"
    max_version: StrictStr = "TLS13"
    curve_preferences: list[StrictInt] = Field(default_factory=list)
    cipher_suites: list[StrictInt] = Field(default_factory=list)
    client_certs: list[ClientCert] = Field(default_factory=list)


class HttpClientOptions(_Strict):
    """`backend/http/client`: `send_body_on_redirect` (KrakenD CE), `no_redirect` and `client_tls` (Enterprise)."""

    no_redirect: StrictBool = False
    send_body_on_redirect: StrictBool = False
    client_tls: ClientTLS | None = None
    proxy_address: StrictStr | None = None


@dataclass(frozen=True)
class PoolSettings:
    """The service's connection-pool keys, as the HTTP client reads them (seconds; None when not set)."""

    max_idle_connections: int = 0
    max_idle_connections_per_host: int = 250
    idle_connection_timeout: float | None = None
    dialer_timeout: float | None = None
    dialer_keep_alive: float | None = None
    dialer_fallback_delay: float | None = None
    response_header_timeout: float | None = None
    disable_keep_alives: bool = False
    disable_compression: bool = False


class TLSFileError(ValueError):
    """A file client_tls names that cannot be used: `key` is its path within client_tls (`ca_certs[0]`)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def tls_context(tls: ClientTLS) -> ssl.SSLContext:
    """The TLS settings of backend calls. TLSFileError for a file that cannot be used, ValueError/OSError/
    ssl.SSLError for another unusable value."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not tls.disable_system_ca_pool:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    for i, path in enumerate(tls.ca_certs):
        _load_ca(context, f"ca_certs[{i}]", path)
    context.minimum_version = _version(tls.min_version, "min_version")
    context.maximum_version = _version(tls.max_version, "max_version")
    suites = tls.cipher_suites or _DEFAULT_SUITES
    unknown = [n for n in suites if n not in _CIPHERS and n not in _TLS13_SUITES]
    if unknown:
        raise ValueError(f"cipher_suites: unknown suite number(s) {unknown} (IANA numbers, as Go's crypto/tls)")
    names = [_CIPHERS[n] for n in suites if n in _CIPHERS]
    if names:
        context.set_ciphers(":".join(names))
    if tls.client_certs:  # Go offers whichever fits the server's request; one chain per context here
        _load_client_cert(context, tls.client_certs[0])
    if tls.allow_insecure_connections:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _load_ca(context: ssl.SSLContext, key: str, path: str) -> None:
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:  # an OSError too: first
        raise TLSFileError(
            key,
            f"the file {path!r} holds no PEM CA certificate ({exc.reason or exc}): write the path of {files.CA_FILE}",
        ) from None
    except OSError as exc:
        raise TLSFileError(key, files.unreadable(path, exc, files.CA_FILE)) from None


def _load_client_cert(context: ssl.SSLContext, cert: ClientCert) -> None:
    for name, kind in (("certificate", files.CERT_FILE), ("private_key", files.KEY_FILE)):
        problem = files.problem(getattr(cert, name), kind)
        if problem is not None:
            raise TLSFileError(f"client_certs[0].{name}", problem)
    try:
        context.load_cert_chain(cert.certificate, cert.private_key)
    except (ssl.SSLError, OSError, ValueError) as exc:
        why = getattr(exc, "reason", None) or exc
        raise TLSFileError(
            "client_certs[0]",
            f"{cert.certificate!r} and {cert.private_key!r} are not a PEM certificate and its unencrypted key ({why})",
        ) from None


def _version(name: str, key: str) -> ssl.TLSVersion:
    if name not in TLS_VERSIONS:
        raise ValueError(f"{key}: {name!r} is not one of {', '.join(TLS_VERSIONS)}")
    return TLS_VERSIONS[name]


def tls_issues(tls: ClientTLS) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(errors, warnings) of a client_tls value, as (sub-path, message)."""
    errors: list[tuple[str, str]] = []
    warnings: list[tuple[str, str]] = []
    try:
        tls_context(tls)
    except TLSFileError as exc:
        errors.append((exc.key, exc.message))
    except (ValueError, OSError, ssl.SSLError) as exc:
        errors.append(("", f"cannot be applied: {exc}"))
    if tls.allow_insecure_connections:
        warnings.append(("allow_insecure_connections", INSECURE_WARNING))
    if tls.curve_preferences:
        warnings.append(("curve_preferences", "not applied: OpenSSL's default groups are used"))
    if len(tls.client_certs) > 1:
        warnings.append(("client_certs", "only the first certificate is presented"))
    for key in ("min_version", "max_version"):
        if getattr(tls, key) in ("TLS10", "TLS11"):
            warnings.append((key, "TLS 1.0 and 1.1 are obsolete and usually refused by OpenSSL"))
    for key in tls.model_extra or {}:
        warnings.append((key, "not supported, ignored"))
    return errors, warnings


def service_tls(service: ServiceConfig) -> ClientTLS | None:
    """The service's `client_tls`, with the old root `allow_insecure_connections` folded in (as KrakenD)."""
    raw = service.client_tls
    if raw is None and not service.allow_insecure_connections:
        return None
    tls = ClientTLS.model_validate(raw or {})
    if service.allow_insecure_connections:
        tls.allow_insecure_connections = True
    return tls


def pool_settings(service: ServiceConfig) -> PoolSettings:
    return PoolSettings(
        max_idle_connections=service.max_idle_connections,
        max_idle_connections_per_host=service.max_idle_connections_per_host or 250,
        idle_connection_timeout=service.idle_connection_timeout or None,
        dialer_timeout=service.dialer_timeout or None,
        dialer_keep_alive=service.dialer_keep_alive,
        dialer_fallback_delay=service.dialer_fallback_delay or None,
        response_header_timeout=service.response_header_timeout or None,
        disable_keep_alives=service.disable_keep_alives,
        disable_compression=service.disable_compression,
    )


def http_client_options(backend: BackendConfig) -> HttpClientOptions:
    return backend.namespaces.get(HTTP_CLIENT_NAMESPACE) or HttpClientOptions()


def check_service_client(service: ServiceConfig) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(errors, warnings) of the service's backend-client keys, as (path, message)."""
    errors: list[tuple[str, str]] = []
    warnings: list[tuple[str, str]] = []
    try:
        tls = service_tls(service)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        return [("client_tls", f"invalid: {str(exc).splitlines()[-1].strip()}")], []
    if tls is not None:
        errs, warns = tls_issues(tls)
        errors += [(f"client_tls{'.' + p if p else ''}", m) for p, m in errs]
        warnings += [(f"client_tls.{p}", m) for p, m in warns]
    server = service.namespaces.get("lambdagate/server")  # by name: config.server_options imports this via the loader
    on_aiohttp = server is not None and server.http_client == "aiohttp"
    for key in ("max_idle_connections", "max_idle_connections_per_host"):
        if getattr(service, key) < 0:
            errors.append((key, "must not be negative: write 0 for no cap, or a number of connections"))
        elif getattr(service, key) and on_aiohttp:
            warnings.append(
                (key, 'no effect with lambdagate/server http_client "aiohttp" (no cap on idle connections there)')
            )
    return errors, warnings


def check_sd(backend: BackendConfig) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(errors, warnings) of a backend's `sd`/`sd_scheme`, paths relative to the backend."""
    errors: list[tuple[str, str]] = []
    warnings: list[tuple[str, str]] = []
    if backend.sd not in ("static", "dns"):
        warnings.append(("sd", f'{backend.sd!r} is not a known discovery ("static" or "dns"): hosts used as given'))
    if backend.sd != "dns":
        return errors, warnings
    if backend.sd_scheme not in ("http", "https"):
        errors.append(("sd_scheme", f'must be "http" or "https", got {backend.sd_scheme!r}'))
    if not backend.host:
        errors.append(("host", 'sd "dns" needs the SRV name in "host", e.g. ["api.service.consul"]'))
    elif not _DNS_NAME.fullmatch(srv_name(backend.host[0])):
        # KrakenD starts, and every call fails: a backend that cannot work is not a guard, so it is warned about.
        message = f"{backend.host[0]!r} is not a DNS SRV name: every call fails (as in KrakenD); write one such as"
        warnings.append(("host[0]", message + ' "api.service.consul"'))
    if len(backend.host) > 1:
        warnings.append(("host", "only the first SRV name is resolved (as KrakenD)"))
    return errors, warnings


def srv_name(host: str) -> str:
    """The SRV name of a `sd: "dns"` host: without a scheme KrakenD's sanitising may have added, or a slash."""
    return host.strip().partition("://")[2].rstrip("/") if "://" in host else host.strip().rstrip("/")

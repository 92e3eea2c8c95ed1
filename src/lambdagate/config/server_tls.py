"""The service's `tls` (KrakenD's server TLS): HTTPS, mutual TLS included, as granian can serve it.

```json
"tls": {"public_key": "/certs/server.crt", "private_key": "/certs/server.key", "min_version": "TLS12",
        "enable_mtls": true, "ca_certs": ["/certs/clients-ca.pem"]}
```
granian serves one certificate chain with rustls, TLS 1.2 or 1.3 as the lowest version, and verifies client
certificates against one CA file. So: `keys` may list one pair (KrakenD picks among several by SNI); a lower
`min_version` than TLS 1.2 is raised to it; `max_version`, `cipher_suites` and `curve_preferences` cannot be applied
and are warned about (rustls offers only modern suites and curves). Mutual TLS fails closed: with `enable_mtls` the
client CAs are `ca_certs` plus the server's own certificates (as in KrakenD), never the system's CA pool.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from lambdagate.config import files
from lambdagate.errors import ConfigIssue

# KrakenD's version names; anything else (or nothing) means TLS 1.3, as in Lura's parseTLSVersion.
VERSIONS = {"SSL3.0": 0, "TLS10": 10, "TLS11": 11, "TLS12": 12, "TLS13": 13}


class KeyPair(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    public_key: StrictStr = ""
    private_key: StrictStr = ""


class ServerTLS(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    disabled: StrictBool = False
    public_key: StrictStr = ""
    private_key: StrictStr = ""
    keys: list[KeyPair] = Field(default_factory=list)
    min_version: StrictStr = ""
    max_version: StrictStr = ""
    cipher_suites: list[StrictInt] = Field(default_factory=list)
    curve_preferences: list[StrictInt] = Field(default_factory=list)
    prefer_server_cipher_suites: StrictBool = False
    enable_mtls: StrictBool = False
    ca_certs: list[StrictStr] = Field(default_factory=list)
    disable_system_ca_pool: StrictBool = False

    @property
    def pairs(self) -> list[KeyPair]:
        """Every certificate and key, the top-level pair last, as KrakenD appends it."""
        extra = [KeyPair(public_key=self.public_key, private_key=self.private_key)]
        return [*self.keys, *(extra if self.public_key or self.private_key else [])]

    @property
    def lowest(self) -> Literal["tls1.2", "tls1.3"]:
        """The lowest version granian will accept: KrakenD's min_version, raised to TLS 1.2 at least."""
        return "tls1.2" if VERSIONS.get(self.min_version, 13) <= 12 else "tls1.3"


def tls_file_issues(tls: ServerTLS) -> list[ConfigIssue]:
    """The certificate, key and client CA files, read and checked as serving will use them: `check` refuses what
    `run` could not serve (relative paths are from the working directory)."""
    if len(tls.pairs) != 1:
        return []
    pair, issues = tls.pairs[0], []
    where = "tls.keys[0]" if tls.keys else "tls"
    for name, kind in (("public_key", files.CERT_FILE), ("private_key", files.KEY_FILE)):
        problem = files.problem(getattr(pair, name), kind)
        if problem is not None:
            issues.append(ConfigIssue(f"{where}.{name}", problem))
    if not issues:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(pair.public_key, pair.private_key)
        except (ssl.SSLError, OSError, ValueError) as exc:
            why = getattr(exc, "reason", None) or type(exc).__name__
            message = f"{pair.public_key} and {pair.private_key} are not a PEM certificate and its unencrypted key"
            issues.append(ConfigIssue("tls", f"{message} ({why})"))
    return issues + (_client_ca_issues(tls) if tls.enable_mtls else [])


def _client_ca_issues(tls: ServerTLS) -> list[ConfigIssue]:
    issues, pems = [], []
    for i, name in enumerate(tls.ca_certs):
        try:
            pems.append(Path(name).read_text(encoding="ascii", errors="replace"))
        except OSError as exc:
            issues.append(ConfigIssue(f"tls.ca_certs[{i}]", files.unreadable(name, exc, files.CA_FILE)))
    if not issues and pems:
        try:
            ssl.create_default_context(cadata="\n".join(pems))
        except (ssl.SSLError, ValueError) as exc:
            why = getattr(exc, "reason", None) or exc
            issues.append(ConfigIssue("tls.ca_certs", f"no usable CA certificate for mutual TLS ({why})"))
    return issues


def tls_issues(tls: ServerTLS | None) -> tuple[list[ConfigIssue], list[ConfigIssue]]:
    """(errors, warnings) about a service's tls, with their paths; the files are read and checked too."""
    errors: list[ConfigIssue] = []
    warnings: list[ConfigIssue] = []
    if tls is None:
        return errors, warnings
    for key in tls.model_extra or {}:
        warnings.append(ConfigIssue(f"tls.{key}", "not supported, ignored"))
    if tls.disabled:
        return errors, warnings
    pairs = tls.pairs
    if not pairs:
        errors.append(ConfigIssue("tls", 'needs "public_key" and "private_key" (or "keys"), or "disabled": true'))
    elif len(pairs) > 1:
        errors.append(
            ConfigIssue("tls.keys", f"{len(pairs)} certificates given: lambdagate (granian) serves one; keep one pair")
        )
    for i, pair in enumerate(pairs):
        for name in ("public_key", "private_key"):
            if not getattr(pair, name):
                where = f"tls.keys[{i}].{name}" if i < len(tls.keys) else f"tls.{name}"
                errors.append(ConfigIssue(where, "required: the path of a PEM file"))
    for name in ("min_version", "max_version"):
        value = getattr(tls, name)
        if value and value not in VERSIONS:
            warnings.append(ConfigIssue(f"tls.{name}", f"{value!r} is no version KrakenD knows; it means TLS13"))
    if VERSIONS.get(tls.min_version, 13) < 12:
        warnings.append(ConfigIssue("tls.min_version", f"{tls.min_version}: TLS 1.2 is the lowest lambdagate serves"))
    if tls.max_version and VERSIONS.get(tls.max_version, 13) < 13:
        warnings.append(ConfigIssue("tls.max_version", "not supported, ignored: TLS 1.3 is always offered"))
    for name in ("cipher_suites", "curve_preferences"):
        if getattr(tls, name):
            warnings.append(ConfigIssue(f"tls.{name}", "not supported, ignored: rustls's own modern set is used"))
    if tls.enable_mtls and not tls.disable_system_ca_pool:
        warnings.append(
            ConfigIssue(
                "tls.enable_mtls",
                "client certificates are verified against ca_certs and the server's own certificates only, "
                "not the system CA pool (KrakenD adds it unless disable_system_ca_pool)",
            )
        )
    if not errors:
        errors.extend(tls_file_issues(tls))
    return errors, warnings

"""Serving HTTPS: the service's `tls` (config/server_tls.py) turned into granian's TLS settings, checked before start.

Everything is read and checked here, in the main process, so that a bad certificate, key or CA file stops
`lambdagate run` with one clear line rather than a worker failing to start. Mutual TLS fails closed: the client
CA bundle (`ca_certs` and the server's own certificates, as KrakenD trusts them) must hold at least one
certificate, and every file it names must be readable; otherwise the gateway does not start.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lambdagate.config import files
from lambdagate.config.server_tls import ServerTLS, tls_file_issues
from lambdagate.errors import StartupError


@dataclass(frozen=True)
class ServingTLS:
    cert: Path
    key: Path
    protocol_min: str  # "tls1.2" or "tls1.3"
    client_ca: Path | None  # set with mutual TLS: a private bundle file, removed by `cleanup`

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def granian_options(self) -> dict:
        from granian.constants import SSLProtocols

        return {
            "ssl_cert": self.cert,
            "ssl_key": self.key,
            "ssl_protocol_min": SSLProtocols(self.protocol_min),
            "ssl_ca": self.client_ca,
            "ssl_client_verify": self.mutual,
        }

    def cleanup(self) -> None:
        if self.client_ca is not None:
            self.client_ca.unlink(missing_ok=True)


def prepare_tls(tls: ServerTLS | None) -> ServingTLS | None:
    """The TLS to serve with, or None for plain HTTP. Raises StartupError naming the file and what is wrong."""
    if tls is None or tls.disabled:
        return None
    pairs = tls.pairs
    if len(pairs) != 1:  # the config check refuses the others; never serve something else than asked
        raise StartupError("tls: exactly one certificate and key pair is needed")
    cert, key = Path(pairs[0].public_key), Path(pairs[0].private_key)
    problems = tls_file_issues(tls)  # what `check` says too
    if problems:
        raise StartupError(str(problems[0]))
    client_ca = _client_ca_bundle(tls, cert) if tls.enable_mtls else None
    return ServingTLS(cert.resolve(), key.resolve(), tls.lowest, client_ca)


def _client_ca_bundle(tls: ServerTLS, server_cert: Path) -> Path:
    """One PEM file with every CA certificate client certificates are verified against."""
    parts = []
    for i, name in enumerate(tls.ca_certs):
        path = Path(name)
        try:
            parts.append(path.read_bytes())
        except OSError as exc:
            raise StartupError(f"tls.ca_certs[{i}]: {files.unreadable(name, exc, files.CA_FILE)}") from None
    parts.append(server_cert.read_bytes())  # KrakenD trusts the server's own certificates for clients too
    fd, name = tempfile.mkstemp(prefix="lambdagate-client-ca-", suffix=".pem")
    bundle = Path(name)
    with os.fdopen(fd, "wb") as out:
        out.write(b"\n".join(parts))
    try:
        ssl.create_default_context(cafile=str(bundle))
    except (ssl.SSLError, ValueError) as exc:
        bundle.unlink(missing_ok=True)
        raise StartupError(f"tls.ca_certs: no usable CA certificate for mutual TLS ({exc})") from None
    return bundle

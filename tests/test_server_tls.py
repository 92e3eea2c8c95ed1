"""The service's `tls`: real `lambdagate run` processes serving HTTPS and mutual TLS with generated certificates.

A client without a certificate, or with one from another CA, is refused when `enable_mtls` is on; start-up fails
(exit 1, one clear line) rather than serving without client verification when the CA files cannot be read.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import socket
import ssl
import subprocess
import time
from pathlib import Path

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.procs import Process, free_port, python_module

NOW = datetime.datetime.now(datetime.UTC)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(directory: Path, stem: str, common: str, issuer: tuple | None, *, ca: bool = False, server: bool = False):
    """A key and certificate in PEM files; self-signed when `issuer` (key, cert) is None. Returns (key, cert)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(issuer[1].subject if issuer else _name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(minutes=5))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    cert = builder.sign(issuer[0] if issuer else key, hashes.SHA256())
    (directory / f"{stem}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    ca = _issue(d, "ca", "test CA", None, ca=True)
    _issue(d, "server", "127.0.0.1", ca, server=True)
    _issue(d, "client", "client one", ca)
    other = _issue(d, "other-ca", "other CA", None, ca=True)
    _issue(d, "stranger", "stranger", other)
    return d


def client_context(certs: Path, with_cert: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if with_cert:
        ctx.load_cert_chain(certs / f"{with_cert}.pem", certs / f"{with_cert}.key")
    return ctx


def get(port: int, path: str, ctx: ssl.SSLContext) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def start(tmp_path: Path, tls: dict, ctx: ssl.SSLContext) -> tuple[Process, int]:
    config = {"version": 3, "debug_endpoint": True, "tls": tls, "endpoints": []}
    path = tmp_path / "krakend.json"
    path.write_bytes(orjson.dumps(config))
    port = free_port()
    args = python_module("lambdagate", "run", "-c", str(path), "--port", str(port), "--host", "127.0.0.1")
    proc = Process(args, tmp_path / f"gateway-{port}.log")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"gateway exited: {proc.log()}")
        try:
            if get(port, "/__health", ctx)[0] == 200:
                return proc, port
        except (OSError, ssl.SSLError, http.client.HTTPException):
            time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"gateway did not answer over HTTPS: {proc.log()}")


def refused(port: int, ctx: ssl.SSLContext) -> bool:
    """Whether the server refuses this client (in TLS 1.3 the refusal may only show on the first read)."""
    try:
        get(port, "/__health", ctx)
    except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError):
        return True
    return False


def test_https_with_a_generated_certificate(certs: Path, tmp_path: Path) -> None:
    tls = {"public_key": str(certs / "server.pem"), "private_key": str(certs / "server.key"), "min_version": "TLS12"}
    proc, port = start(tmp_path, tls, client_context(certs))
    try:
        assert get(port, "/__debug/anything", client_context(certs)) == (200, b'{"message":"pong"}')
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = client_context(certs)
            ctx.minimum_version = ctx.maximum_version = version
            assert get(port, "/__health", ctx)[0] == 200, version
        with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:  # no cleartext HTTP on this port
            plain.sendall(b"GET /__health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert not plain.recv(100).startswith(b"HTTP/1.1 200")
        assert "over HTTPS" in proc.log()
    finally:
        proc.stop()


def test_tls13_only_by_default_as_krakend(certs: Path, tmp_path: Path) -> None:
    tls = {"public_key": str(certs / "server.pem"), "private_key": str(certs / "server.key")}
    proc, port = start(tmp_path, tls, client_context(certs))
    try:
        ctx = client_context(certs)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        assert refused(port, ctx)
    finally:
        proc.stop()


def test_mutual_tls_refuses_clients_without_a_trusted_certificate(certs: Path, tmp_path: Path) -> None:
    tls = {
        "keys": [{"public_key": str(certs / "server.pem"), "private_key": str(certs / "server.key")}],
        "enable_mtls": True,
        "ca_certs": [str(certs / "ca.pem")],
    }
    proc, port = start(tmp_path, tls, client_context(certs, "client"))
    try:
        assert get(port, "/__debug/x", client_context(certs, "client")) == (200, b'{"message":"pong"}')
        assert refused(port, client_context(certs))  # no certificate
        assert refused(port, client_context(certs, "stranger"))  # signed by a CA the server does not trust
        assert "with mutual TLS" in proc.log()
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("tls", "expected"),
    [
        (
            {"public_key": "server.pem", "private_key": "server.key", "enable_mtls": True, "ca_certs": ["nope.pem"]},
            "nope.pem' does not exist: write the path of a PEM file of CA certificates the gateway can read",
        ),
        (
            {"public_key": "missing.pem", "private_key": "server.key"},
            "missing.pem' does not exist: write the path of a PEM certificate",
        ),
        ({"public_key": "server.pem", "private_key": "client.key"}, "are not a PEM certificate and its"),
    ],
)
def test_start_up_fails_closed_with_a_clear_line(certs: Path, tmp_path: Path, tls: dict, expected: str) -> None:
    tls = {k: str(certs / v) if k.endswith("_key") else v for k, v in tls.items()}
    if "ca_certs" in tls:
        tls["ca_certs"] = [str(certs / name) for name in tls["ca_certs"]]
    path = tmp_path / "krakend.json"
    path.write_bytes(orjson.dumps({"version": 3, "tls": tls, "endpoints": []}))
    args = python_module("lambdagate", "run", "-c", str(path), "--port", str(free_port()), "--host", "127.0.0.1")
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and expected in output and "Traceback" not in output, output
    # `check` refuses what `run` could not serve, with the same line
    checked = subprocess.run(python_module("lambdagate", "check", "-c", str(path)), capture_output=True, text=True)
    assert checked.returncode == 1 and expected in checked.stderr and "_ssl.c" not in checked.stderr, checked.stderr

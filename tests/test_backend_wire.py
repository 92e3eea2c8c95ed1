"""What an HTTP backend receives, exactly (KrakenD's set of headers, no aiohttp defaults), redirects as Go's client
follows them, `backend/http/client`, and `client_tls` against a real HTTPS upstream with a generated CA.

The upstream (tests/support/raw_upstream.py) echoes the raw request head it read, in wire order and case.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdagate import __version__
from tests.support.procs import Process, free_port, python_module, serve_module
from tests.support.rawhttp import build, exchange

AGENT = f"lambdagate/{__version__}"


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_module("tests.support.raw_upstream", "/ready", tmp_path_factory.mktemp("raw")) as url:
        yield url


def endpoint(path: str, host: str, url_pattern: str, **extra) -> dict:
    backend = {"host": [host], "url_pattern": url_pattern}
    backend.update(extra.pop("backend", {}))
    return {"endpoint": path, "backend": [backend], **extra}


def call(gw, method: bytes, target: bytes, headers=(), body=None):
    return exchange(int(gw.url.rsplit(":", 1)[1]), build(method, target, list(headers), body))


def echoed(resp) -> dict:
    assert resp.status == 200, resp.raw[:600]
    data = json.loads(resp.body)
    data["names"] = [n.lower() for n, _ in data["headers"]]
    data["h"] = {n.lower(): v for n, v in data["headers"]}
    return data


def test_default_headers_are_exactly_krakends(start_gateway, raw):
    gw = start_gateway({"version": 3, "endpoints": [endpoint("/w", raw, "/echo")]})
    got = echoed(call(gw, b"GET", b"/w", [(b"Accept", b"text/html"), (b"User-Agent", b"curl/8"), (b"X-A", b"1")]))
    assert sorted(got["names"]) == sorted(
        ["host", "user-agent", "x-forwarded-for", "x-forwarded-host", "accept-encoding", "x-request-id"]
    )
    assert got["h"]["user-agent"] == AGENT and got["h"]["accept-encoding"] == "gzip"
    assert got["h"]["x-forwarded-for"] == "127.0.0.1" and got["h"]["x-forwarded-host"] == "127.0.0.1"


def test_star_forwards_the_clients_user_agent_with_x_forwarded_via(start_gateway, raw):
    config = {"version": 3, "endpoints": [endpoint("/w", raw, "/echo", input_headers=["*"])]}
    gw = start_gateway(config)
    sent = [(b"User-Agent", b"curl/8"), (b"Accept", b"text/plain"), (b"X-Foo", b"bar"), (b"Accept-Encoding", b"br")]
    got = echoed(call(gw, b"GET", b"/w", sent))
    assert got["h"]["user-agent"] == "curl/8" and got["h"]["x-forwarded-via"] == AGENT
    assert got["h"]["accept"] == "text/plain" and got["h"]["x-foo"] == "bar"
    assert got["h"]["accept-encoding"] == "gzip"  # the gateway's own: it decodes replies itself
    # Without a client User-Agent, the gateway's and no X-Forwarded-Via.
    got = echoed(call(gw, b"GET", b"/w"))
    assert got["h"]["user-agent"] == AGENT and "x-forwarded-via" not in got["h"] and "accept" not in got["h"]


def test_body_goes_with_its_length_and_no_invented_content_type(start_gateway, raw):
    endpoints = [
        endpoint("/p", raw, "/echo", method="POST"),
        endpoint("/t", raw, "/echo", method="POST", input_headers=["Content-Type"]),
        endpoint("/r", raw, "/echo", input_headers=["Range"]),
    ]
    gw = start_gateway({"version": 3, "disable_compression": False, "endpoints": endpoints})
    got = echoed(call(gw, b"POST", b"/p", [], b"hello"))
    assert got["body"] == "hello" and got["h"]["content-length"] == "5"
    assert "content-type" not in got["h"] and "transfer-encoding" not in got["h"]  # none invented
    got = echoed(call(gw, b"POST", b"/p", [(b"Content-Type", b"text/plain"), (b"X-Other", b"1")], b"hello"))
    assert got["h"]["content-type"] == "text/plain" and "x-other" not in got["h"]  # Lura's default: Content-Type
    got = echoed(call(gw, b"POST", b"/t", [(b"Content-Type", b"text/plain")], b"hello"))
    assert got["h"]["content-type"] == "text/plain"
    got = echoed(call(gw, b"GET", b"/r", [(b"Range", b"bytes=0-1")]))
    assert "accept-encoding" not in got["h"]  # Go's transport asks for gzip only without Range


def test_disable_compression_sends_no_accept_encoding(start_gateway, raw):
    gw = start_gateway({"version": 3, "disable_compression": True, "endpoints": [endpoint("/w", raw, "/echo")]})
    assert "accept-encoding" not in echoed(call(gw, b"GET", b"/w"))["h"]


def test_redirects_as_gos_client(start_gateway, raw):
    port = raw.rsplit(":", 1)[1]
    other = f"http://localhost:{port}/echo"  # another host: credentials must not follow
    noop = {"output_encoding": "no-op"}
    endpoints = [
        endpoint("/nine", raw, "/hop/302/9"),
        endpoint("/ten", raw, "/hop/302/10"),
        endpoint("/see", raw, "/hop/303/1", method="POST", input_headers=["Content-Type"]),
        endpoint("/moved", raw, "/hop/301/1", method="PUT"),
        endpoint("/keep", raw, "/hop/307/1", method="POST", **noop),
        endpoint("/empty", raw, "/hop/308/1", method="POST"),
        endpoint(
            "/send",
            raw,
            "/hop/307/2",
            method="POST",
            backend={"extra_config": {"backend/http/client": {"send_body_on_redirect": True}}},
        ),
        endpoint("/stay", raw, "/hop/302/1", input_headers=["Authorization", "Cookie"]),
        endpoint("/away", raw, f"/away/302?to={other}", input_headers=["Authorization", "Cookie"]),
        endpoint(
            "/off", raw, "/hop/302/1", backend={"extra_config": {"backend/http/client": {"no_redirect": True}}}, **noop
        ),
        endpoint("/noloc", raw, "/noloc/302", **noop),
    ]
    gw = start_gateway({"version": 3, "endpoints": endpoints})
    got = echoed(call(gw, b"GET", b"/nine"))
    assert got["target"] == "/hop/302/0" and got["h"]["referer"] == f"{raw}/hop/302/1"
    assert call(gw, b"GET", b"/ten").status == 500  # the tenth redirect reply stops the call
    got = echoed(call(gw, b"POST", b"/see", [(b"Content-Type", b"text/plain")], b"data"))
    assert got["method"] == "GET" and got["body"] == "" and "content-length" not in got["h"]
    assert got["h"]["content-type"] == "text/plain"  # the first request's headers go on, as in Go
    assert echoed(call(gw, b"PUT", b"/moved", body=b"x"))["method"] == "GET"
    # 307 with a body and without send_body_on_redirect: the 307 is the reply (Go cannot replay the body).
    kept = call(gw, b"POST", b"/keep", body=b"data")
    assert kept.status == 307 and kept.header(b"location") == b"/hop/307/0"
    got = echoed(call(gw, b"POST", b"/empty", body=b""))
    assert got["method"] == "POST" and got["target"] == "/hop/308/0"
    got = echoed(call(gw, b"POST", b"/send", body=b"data"))
    assert (got["method"], got["body"], got["h"]["content-length"]) == ("POST", "data", "4")
    creds = [(b"Authorization", b"Bearer t"), (b"Cookie", b"a=1")]
    got = echoed(call(gw, b"GET", b"/stay", creds))
    assert got["h"]["authorization"] == "Bearer t" and got["h"]["cookie"] == "a=1"
    got = echoed(call(gw, b"GET", b"/away", creds))
    assert "authorization" not in got["h"] and "cookie" not in got["h"] and got["h"]["host"] == f"localhost:{port}"
    off = call(gw, b"GET", b"/off")
    assert off.status == 302 and off.header(b"location") == b"/hop/302/0"
    assert call(gw, b"GET", b"/noloc").status == 302


# --- client_tls against a real HTTPS upstream ---------------------------------------------------------------


def _pki(directory: Path) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, written as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca": directory / "ca.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, san in (("server", x509.IPAddress(ipaddress.ip_address("127.0.0.1"))), ("client", x509.DNSName("gw"))):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(2 if name == "server" else 3)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        files[name] = directory / f"{name}.pem"
        files[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}_key"] = directory / f"{name}.key"
        files[f"{name}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return {k: str(v) for k, v in files.items()}


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} not listening")


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, dict]]:
    """(plain-TLS upstream URL, mutual-TLS upstream URL, PEM files)."""
    directory = tmp_path_factory.mktemp("pki")
    pki = _pki(directory)
    procs, urls = [], []
    for extra in ([], [pki["ca"]]):
        port = free_port()
        args = python_module("tests.support.raw_upstream", str(port), pki["server"], pki["server_key"], *extra)
        procs.append(Process(args, directory / f"https-{port}.log"))
        _wait_port(port)
        urls.append(f"https://127.0.0.1:{port}")
    yield urls[0], urls[1], pki
    for proc in procs:
        proc.stop()


def test_client_tls_trusts_the_configured_ca_only(start_gateway, https):
    url, mtls_url, pki = https
    endpoints = [endpoint("/s", url, "/echo")]
    gw = start_gateway({"version": 3, "client_tls": {"ca_certs": [pki["ca"]]}, "endpoints": endpoints})
    assert echoed(call(gw, b"GET", b"/s"))["h"]["host"] == url.removeprefix("https://")
    gw = start_gateway({"version": 3, "endpoints": endpoints})  # the system's CAs do not know the test CA
    assert call(gw, b"GET", b"/s").status == 500
    assert "certificate verify failed" in gw.log().lower() or "ssl" in gw.log().lower()


def test_client_certs_for_mutual_tls(start_gateway, https):
    _, mtls_url, pki = https
    tls = {"ca_certs": [pki["ca"]], "min_version": "TLS12"}
    endpoints = [endpoint("/m", mtls_url, "/echo")]
    gw = start_gateway({"version": 3, "client_tls": tls, "endpoints": endpoints})
    assert call(gw, b"GET", b"/m").status == 500  # no client certificate: the upstream refuses the handshake
    certs = [{"certificate": pki["client"], "private_key": pki["client_key"]}]
    gw = start_gateway({"version": 3, "client_tls": {**tls, "client_certs": certs}, "endpoints": endpoints})
    assert echoed(call(gw, b"GET", b"/m"))["method"] == "GET"


def test_insecure_connections_work_and_warn_loudly(start_gateway, https):
    url, _, _ = https
    config = {
        "version": 3,
        "client_tls": {"allow_insecure_connections": True},
        "endpoints": [endpoint("/s", url, "/e")],
    }
    gw = start_gateway(config)
    assert echoed(call(gw, b"GET", b"/s"))["target"] == "/e"
    assert "NOT verified" in gw.log()


def test_a_backends_own_client_tls(start_gateway, https):
    url, _, pki = https
    own = {"extra_config": {"backend/http/client": {"client_tls": {"ca_certs": [pki["ca"]]}}}}
    gw = start_gateway({"version": 3, "endpoints": [endpoint("/s", url, "/echo", backend=own)]})
    assert echoed(call(gw, b"GET", b"/s"))["method"] == "GET"


def test_pool_keys_reach_the_client(start_gateway, raw, upstream):
    config = {
        "version": 3,
        "disable_keep_alives": True,
        "response_header_timeout": "300ms",
        "dialer_timeout": "1s",
        "idle_connection_timeout": "5s",
        "endpoints": [endpoint("/w", raw, "/echo"), endpoint("/slow", upstream, "/slow/3000")],
    }
    gw = start_gateway(config)
    assert echoed(call(gw, b"GET", b"/w"))["h"]["connection"] == "close"
    started = time.monotonic()
    assert call(gw, b"GET", b"/slow").status == 500
    assert time.monotonic() - started < 1.5  # the reply head did not come within response_header_timeout
    assert "no reply head within 0.3s" in gw.log()

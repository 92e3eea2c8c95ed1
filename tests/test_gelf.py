"""`telemetry/gelf` (GELF over UDP and TCP to real loopback receivers), the shipping queue's bounds, KrakenD's
logstash records and `syslog: true`."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from lambdagate.config import load_config
from lambdagate.errors import ConfigError
from lambdagate.telemetry import logstash
from lambdagate.telemetry.gelf import CHUNK_SIZE, GelfHandler, Transport, datagrams, gelf_options, message
from lambdagate.telemetry.shipper import REPORT_LOGGER, Shipper
from tests.support.gelf_server import GelfServer
from tests.support.procs import free_port
from tests.test_lambda_backend import http
from tests.test_telemetry_compat import write


class Lines(logging.Handler):
    """The shippers' report lines, caught where they are logged."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def reports():
    lines = Lines()
    logger = logging.getLogger(REPORT_LOGGER)
    logger.addHandler(lines)
    yield lines
    logger.removeHandler(lines)


# --- the config -------------------------------------------------------------------------------------------------


def test_gelf_options_are_read_as_krakend_reads_them(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, {"github_com/devopsfaith/krakend-gelf": {"address": "graylog:12201"}}))
    options = gelf_options(loaded.service)
    assert (options.address, options.enable_tcp) == ("graylog:12201", False)
    tcp = load_config(write(tmp_path, {"telemetry/gelf": {"address": "[::1]:12201", "enable_tcp": True}}))
    assert gelf_options(tcp.service).enable_tcp is True and tcp.warnings == []


@pytest.mark.parametrize(
    ("value", "warning"),
    [
        ({"enable_tcp": True}, ".address: missing: no GELF output (KrakenD logs the same error and runs without)"),
        (
            {"address": "graylog"},
            ".address: 'graylog' is not host:port: no GELF output (KrakenD cannot dial it either)",
        ),
        (True, ': not an object such as {"address": "graylog:12201"}: ignored, as KrakenD does'),
        # str.isdigit() is true for both: int() raised on "²", read "１２２０１" as 12201
        (
            {"address": "graylog:\u00b2"},
            ".address: 'graylog:\u00b2' is not host:port: no GELF output (KrakenD cannot dial it either)",
        ),
        (
            {"address": "graylog:\uff11\uff12\uff12\uff10\uff11"},
            ".address: 'graylog:\uff11\uff12\uff12\uff10\uff11' is not host:port: no GELF output (KrakenD cannot dial it either)",
        ),
    ],
)
def test_gelf_without_a_usable_address_is_off_with_a_warning(tmp_path: Path, value, warning: str) -> None:
    loaded = load_config(write(tmp_path, {"telemetry/gelf": value}))
    assert gelf_options(loaded.service) is None
    assert [str(w) for w in loaded.warnings] == [f'extra_config["telemetry/gelf"]{warning}']


def test_gelf_values_go_would_not_decode_are_refused(tmp_path: Path) -> None:
    """krakend-gelf type-asserts them: a number as address or a string as enable_tcp stops KrakenD."""
    for value in ({"address": 12201}, {"address": "g:1", "enable_tcp": "yes"}):
        with pytest.raises(ConfigError) as info:
            load_config(write(tmp_path, {"telemetry/gelf": value}))
        assert str(info.value.issues[0]).startswith('extra_config["telemetry/gelf"].')


# --- the wire ---------------------------------------------------------------------------------------------------


def test_udp_messages_are_gzip_and_chunked_when_large() -> None:
    with GelfServer("udp") as server:
        transport = Transport(server.address, tcp=False)
        small = message("hello", 6, 1526464967.25, {"logger": "t"})
        # Incompressible text: the gzip of it needs several 1420-byte chunks.
        large = message(os.urandom(6000).hex() + "\nsecond line", 3, 1526464968.0, {"id": 1, "ok": True})
        transport.send(small)
        transport.send(large)
        assert server.wait_for(lambda m: m.get("level") == 3), server.errors
        transport.close()
    assert server.errors == [] and server.chunked == 1 and server.datagrams > 2
    first, second = server.messages
    assert first == {
        "version": "1.1",
        "host": logstash.HOST,
        "short_message": "hello",
        "timestamp": 1526464967.25,
        "level": 6,
        "facility": "lambdagate",
        "_logger": "t",
    }
    assert second["short_message"] == large["short_message"] and second["full_message"].endswith("\nsecond line")
    assert second["_id_"] == 1 and second["_ok"] == "True"  # `_id` is reserved by GELF; values are text or numbers


def test_chunks_follow_the_gelf_layout() -> None:
    payload = os.urandom(CHUNK_SIZE * 3).hex().encode()
    parts = datagrams(payload, message_id=b"12345678")
    assert len(parts) > 1 and all(len(p) <= CHUNK_SIZE for p in parts)
    assert [(p[:2], p[2:10], p[10], p[11]) for p in parts] == [
        (b"\x1e\x0f", b"12345678", n, len(parts)) for n in range(len(parts))
    ]
    assert datagrams(b'{"short_message":"x"}')[0][:2] == b"\x1f\x8b"  # gzip, as go-gelf's default
    with pytest.raises(ValueError, match="more than 128"):
        datagrams(os.urandom(CHUNK_SIZE * 130))


def test_tcp_frames_end_with_a_null_byte_and_survive_a_restart(reports) -> None:
    port = free_port()
    handler = GelfHandler(f"127.0.0.1:{port}", tcp=True, prefix="[GW]", capacity=50)
    record = logging.LogRecord("lambdagate.t", logging.WARNING, __file__, 1, "while down %d", (1,), None)
    try:
        handler.handle(record)  # nobody listens yet: kept, retried, reported
        deadline = time.monotonic() + 5
        while not reports.lines and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reports.lines and "failed deliveries" in reports.lines[0], reports.lines
        with GelfServer("tcp", port=port) as server:
            found = server.wait_for(lambda m: m["short_message"] == "[GW] while down 1")
            assert found and found["level"] == 4 and found["_logger"] == "lambdagate.t", server.errors
            record.args = (2,)
            handler.handle(record)
            assert server.wait_for(lambda m: m["short_message"] == "[GW] while down 2")
        assert server.errors == []
    finally:
        handler.close()


def test_an_absent_udp_server_costs_nothing_but_the_lines(reports) -> None:
    handler = GelfHandler(f"127.0.0.1:{free_port()}", tcp=False, capacity=100)
    try:
        started = time.monotonic()
        for n in range(50):
            handler.handle(logging.LogRecord("lambdagate.t", logging.INFO, __file__, 1, "lost %d", (n,), None))
        assert time.monotonic() - started < 0.5  # queued, never sent from the caller's thread
        deadline = time.monotonic() + 5
        while handler.shipper.queue.qsize() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert handler.shipper.queue.qsize() == 0 and handler.shipper.failed > 0
    finally:
        handler.close()
    assert any("failed deliveries" in line for line in reports.lines), reports.lines


def test_a_full_queue_drops_and_counts_without_blocking(reports) -> None:
    release = threading.Event()
    delivered: list[int] = []

    def deliver(item: int) -> None:
        release.wait(10)
        delivered.append(item)

    shipper = Shipper("test", deliver, capacity=10)
    try:
        started = time.monotonic()
        accepted = [shipper.offer(n) for n in range(1000)]
        assert time.monotonic() - started < 0.5
        # The thread holds one item in deliver(); the queue holds 10 more; the rest is dropped and counted.
        assert 10 <= accepted.count(True) <= 11 and shipper.dropped == 1000 - accepted.count(True)
        assert shipper.queue.qsize() <= 10
        release.set()
        shipper.close(timeout=5)
    finally:
        release.set()
    assert delivered == [n for n, ok in enumerate(accepted) if ok]
    assert any(f"{shipper.dropped} log records dropped, the queue (10) was full" in line for line in reports.lines)


# --- krakend-logstash's records ---------------------------------------------------------------------------------


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_logstash_records_are_krakend_logstashs(utc) -> None:
    """The expected line of krakend-logstash's own test (TestLogger_format_unexpectedMessageType)."""
    line = logstash.record({"a": 1}, "DEBUG", "42", "some", 1526464967.0)
    expected = (
        '{"@timestamp":"2018-05-16T10:02:47.000000+00:00","@version":1,"a":1,"host":"'
        + logstash.HOST
        + '","level":"DEBUG","message":"42","module":"some"}'
    )
    assert line.decode() == expected
    # Go's encoding/json: HTML characters and the JS line separators escaped; KrakenD's keys win over fields.
    escaped = logstash.record({"level": "x", "q": "<a&b>\u2028"}, "INFO", "m", "KRAKEND", 1526464967.5)
    assert b'"q":"\\u003ca\\u0026b\\u003e\\u2028"' in escaped and b'"level":"INFO"' in escaped
    assert b'"@timestamp":"2018-05-16T10:02:47.500000+00:00"' in escaped


def test_logstash_timestamps_carry_the_local_offset(monkeypatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert logstash.logstash_timestamp(1526464977.123456) == "2018-05-16T15:32:57.123456+05:30"
    finally:
        monkeypatch.undo()
        time.tzset()


# --- a real gateway -------------------------------------------------------------------------------------------


def gateway_config(upstream: str, extra: dict) -> dict:
    return {
        "version": 3,
        "extra_config": extra,
        "endpoints": [{"endpoint": "/shipped", "backend": [{"host": [upstream], "url_pattern": "/echo/s"}]}],
    }


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_gateway_sends_its_access_and_app_lines_to_graylog(start_gateway, upstream, transport: str) -> None:
    with GelfServer(transport) as server:
        gelf = {"address": server.address, "enable_tcp": transport == "tcp"}
        logging_ns = {"level": "INFO", "prefix": "[GW]"}
        gateway = start_gateway(gateway_config(upstream, {"telemetry/gelf": gelf, "telemetry/logging": logging_ns}))
        status, headers, _ = http("GET", gateway.url + "/shipped?x=1", headers={"X-Request-Id": f"gelf-{transport}"})
        assert status == 200
        access = server.wait_for(lambda m: m.get("_request_id") == f"gelf-{transport}")
        app = server.wait_for(lambda m: m["short_message"].startswith("[GW] serving 1 endpoints"))
        granian = server.wait_for(lambda m: m.get("_logger") == "granian")
    assert access and app and granian, (server.messages, gateway.log())
    assert server.errors == []
    assert access["short_message"].startswith("[GW] GET /shipped 200 ") and access["level"] == 6
    assert (access["_method"], access["_path"], access["_route"], access["_status"]) == (
        "GET",
        "/shipped",
        "/shipped",
        200,
    )
    assert access["_client_ip"] == "127.0.0.1" and access["_duration_ms"] > 0
    for entry in (access, app):
        assert (entry["version"], entry["host"], entry["facility"]) == ("1.1", logstash.HOST, "lambdagate")
        assert abs(entry["timestamp"] - time.time()) < 60
    assert app["_logger"].startswith("lambdagate") and app["level"] == 6
    assert "[GW] " in gateway.log()  # the stream keeps its lines too


def test_a_gateway_with_syslog_writes_level_and_message_lines(start_gateway, upstream) -> None:
    """`syslog: true` through SysLogHandler; the test points it at a UDP socket instead of /dev/log."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.5)
    address = f"127.0.0.1:{receiver.getsockname()[1]}"
    try:
        logging_ns = {"level": "INFO", "prefix": "[GW]", "syslog": True, "syslog_facility": "LOCAL5"}
        gateway = start_gateway(
            gateway_config(upstream, {"telemetry/logging": logging_ns}), env={"LAMBDAGATE_TEST_SYSLOG_ADDRESS": address}
        )
        assert http("GET", gateway.url + "/shipped")[0] == 200
        lines: list[bytes] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(b"serving 1 endpoints" in line for line in lines):
            try:
                lines.append(receiver.recv(65535))
            except TimeoutError:
                continue
    finally:
        receiver.close()
    serving = next((line for line in lines if b"serving 1 endpoints" in line), None)
    assert serving, (lines, gateway.log())
    # <local5 (21) * 8 + info (6)>, the prefix as the tag with the pid, KrakenD's "LEVEL > message".
    assert serving.startswith(b"<174>[GW][") and b"]: INFO > serving 1 endpoints" in serving, serving
    assert not any(b"GET /shipped" in line for line in lines)  # access lines never go to syslog (KrakenD's neither)


def test_syslog_facility_as_krakend_reads_it(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, {"telemetry/logging": {"syslog": True, "syslog_facility": "kern"}}))
    assert loaded.service.namespaces["telemetry/logging"].syslog_facility == "local3"
    assert [str(w) for w in loaded.warnings] == [
        "extra_config[\"telemetry/logging\"].syslog_facility: 'kern' is not local0 to local7: local3 is used, as "
        "KrakenD does"
    ]


@pytest.mark.skipif(os.path.exists("/dev/log"), reason="this machine has a syslog socket: a test must not write there")
def test_syslog_without_a_local_syslog_is_said_once(start_gateway, upstream) -> None:
    logging_ns = {"level": "INFO", "syslog": True}
    gateway = start_gateway(gateway_config(upstream, {"telemetry/logging": logging_ns}), "--workers", "2")
    assert http("GET", gateway.url + "/shipped")[0] == 200
    assert gateway.log().count("syslog: true, but there is no /dev/log here: no syslog lines") == 1, gateway.log()

"""Logging: the `telemetry/logging` namespace, the command-line overrides, where lines go, and whole lines from
several workers sharing one pipe. Real gateway processes on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import orjson
import pytest

from lambdagate.config import load_config
from lambdagate.errors import ConfigError
from tests.support.procs import free_port, python_module, wait_http
from tests.test_lambda_backend import http


def write_config(tmp_path: Path, logging: dict | None, upstream: str = "http://127.0.0.1:9") -> Path:
    config = {
        "version": 3,
        "endpoints": [
            {"endpoint": "/ok", "backend": [{"host": [upstream], "url_pattern": "/json/ok"}]},
            {"endpoint": "/fail", "backend": [{"host": [upstream], "url_pattern": "/status/500"}]},
        ],
    }
    if logging is not None:
        config["extra_config"] = {"telemetry/logging": logging}
    path = tmp_path / "krakend.json"
    path.write_bytes(orjson.dumps(config))
    return path


def test_namespace_is_validated(tmp_path):
    loaded = load_config(
        write_config(tmp_path, {"level": "WARNING", "prefix": "[X]", "stdout": True, "format": "logstash"})
    )
    options = loaded.service.namespaces["telemetry/logging"]
    assert (options.level, options.prefix, options.stdout, options.format) == ("WARNING", "[X]", True, "logstash")
    lower = load_config(write_config(tmp_path, {"level": "debug"})).service.namespaces["telemetry/logging"]
    assert lower.level == "DEBUG"  # as on the command line, the case does not matter
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, {"level": "LOUD", "stdout": "yes"}))
    messages = [str(i) for i in err.value.issues]
    assert any(m.startswith('extra_config["telemetry/logging"].level: must be one of DEBUG, INFO') for m in messages), (
        messages
    )
    assert any(m.startswith('extra_config["telemetry/logging"].stdout') for m in messages), messages
    loaded = load_config(
        write_config(tmp_path, {"syslog": True, "format": "custom", "custom_format": "%s", "colour": 1})
    )
    warnings = [str(w) for w in loaded.warnings]
    assert not any("syslog" in w for w in warnings), warnings  # supported: no warning
    assert any("custom formats are not supported" in w for w in warnings), warnings
    assert 'extra_config["telemetry/logging"].colour: not supported, ignored' in warnings


class Run:
    """`lambdagate run` with stdout and stderr kept apart."""

    def __init__(self, config: Path, tmp_path: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out, self.err = tmp_path / f"out-{self.port}", tmp_path / f"err-{self.port}"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                python_module(
                    "lambdagate", "run", "-c", str(config), "--host", "127.0.0.1", "--port", str(self.port), *args
                ),
                stdout=out,
                stderr=err,
            )
        wait_http(self.url + "/__health", proc=self.proc, timeout=30)

    def stop(self) -> tuple[str, str]:
        self.proc.terminate()
        self.proc.wait(15)
        return self.out.read_text(), self.err.read_text()


def ours(text: str) -> list[str]:
    """The gateway's lines (granian's included), not a Lambda function's own output ("[INFO]\t…")."""
    return [
        line
        for line in text.splitlines()
        if line.strip() and not line.startswith("[INFO]") and not line.startswith("[WARNING]")
    ]


def test_level_prefix_and_stdout_from_the_config(upstream, tmp_path):
    run = Run(write_config(tmp_path, {"level": "WARNING", "prefix": "[LG]", "stdout": True}, upstream), tmp_path)
    try:
        assert http("GET", run.url + "/ok")[0] == 200
        _, headers, _ = http("GET", run.url + "/fail")
        failed_id = headers["X-Request-Id"]
        time.sleep(0.3)
    finally:
        out, err = run.stop()
    lines = ours(out)
    # WARNING and above only: no access lines, no start-up INFO lines; every line has the prefix.
    assert lines and all(line.startswith("[LG] ") for line in lines), out
    assert not any("lambdagate.access" in line or " INFO " in line for line in lines), out
    assert any(
        " WARNING lambdagate.pipeline: backend failed" in line and f"request_id={failed_id}" in line for line in lines
    ), out
    assert not any("lambdagate" in line for line in ours(err)), err  # nothing of ours on stderr


def test_command_line_overrides_the_config(upstream, tmp_path):
    config = write_config(tmp_path, {"level": "ERROR", "format": "default"}, upstream)
    run = Run(config, tmp_path, "--log-level", "info", "--log-format", "json")
    try:
        _, headers, _ = http("GET", run.url + "/ok")
        time.sleep(0.3)
    finally:
        _, err = run.stop()
    entries = [json.loads(line) for line in ours(err)]  # every line is JSON, granian's own included
    assert any(e["logger"] == "granian" and e["message"].startswith("Starting granian") for e in entries)
    access = [e for e in entries if e["logger"] == "lambdagate.access" and e["path"] == "/ok"]
    assert [a["request_id"] for a in access] == [headers["X-Request-Id"]]
    assert access[0]["route"] == "/ok" and access[0]["backends"][0]["outcome"] == "success"


def test_workers_never_mix_their_lines(upstream, tmp_path):
    """Two workers write JSON access lines into one pipe under concurrent load: every line parses."""
    run = Run(write_config(tmp_path, {"format": "logstash"}, upstream), tmp_path, "--workers", "2")
    sent: list[str] = []
    try:

        def client(n: int) -> None:
            for i in range(n):
                rid = f"mix-{threading.get_ident()}-{i}"
                http("GET", run.url + "/ok", headers={"X-Request-Id": rid})
                sent.append(rid)

        threads = [threading.Thread(target=client, args=(100,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        time.sleep(0.5)
    finally:
        _, err = run.stop()
    entries = [json.loads(line) for line in ours(err)]
    logged = {e["request_id"] for e in entries if e["logger"] == "lambdagate.access" and e["path"] == "/ok"}
    assert len(sent) == 800 and logged == set(sent)


def test_embedded_runtime_logs_in_the_same_format(tmp_path):
    """`run --functions DIR --log-format json`: the local runtime's lines are JSON like the gateway's."""
    config = {
        "version": 3,
        "endpoints": [
            {"endpoint": "/greet/{name}", "backend": [{"extra_config": {"backend/lambda": {"function_name": "greet"}}}]}
        ],
    }
    path = tmp_path / "krakend.json"
    path.write_bytes(orjson.dumps(config))
    run = Run(
        path, tmp_path, "--functions", str(Path(__file__).parents[1] / "examples/functions"), "--log-format", "json"
    )
    try:
        assert http("GET", run.url + "/greet/Jo")[0] == 200
        time.sleep(0.3)
    finally:
        out, err = run.stop()
    entries = [json.loads(line) for line in ours(err)]  # every line of ours parses
    loggers = {e["logger"] for e in entries}
    assert "lambdagate.local_runtime" in loggers and "lambdagate.access" in loggers, loggers


def test_a_port_in_use_is_refused(upstream, tmp_path):
    """granian shares its port with SO_REUSEPORT: a second gateway would silently take half the traffic."""
    first = Run(write_config(tmp_path, None, upstream), tmp_path)
    try:
        second = subprocess.run(
            python_module(
                "lambdagate",
                "run",
                "-c",
                str(tmp_path / "krakend.json"),
                "--host",
                "127.0.0.1",
                "--port",
                str(first.port),
            ),
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        first.stop()
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{first.port}: Address already in use" in second.stderr

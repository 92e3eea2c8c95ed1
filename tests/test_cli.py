"""The `lambdagate` command line, run as a real process: check (exit codes, summary, warnings, errors), version."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import orjson
import pytest

import lambdagate
from tests.support.procs import ROOT, Process, free_port, python_module, wait_http


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lambdagate", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def write(tmp_path: Path, doc: dict | str, name: str = "krakend.json") -> str:
    path = tmp_path / name
    if isinstance(doc, str):
        path.write_text(doc)
    else:
        path.write_bytes(orjson.dumps(doc))
    return str(path)


GOOD = {
    "version": 3,
    "port": 9000,
    "timeout": "3s",
    "log_level": "DEBUG",
    "endpoints": [
        {
            "endpoint": "/a/{id}",
            "method": "post",
            "backend": [
                {"host": ["http://svc:1"], "url_pattern": "/x/{id}"},
                {"host": ["http://svc:1"], "url_pattern": "/y", "extra_config": {"backend/soap": {}}},
            ],
        },
        {"endpoint": "/b", "backend": [{"host": ["http://svc:1"], "url_pattern": "/b"}]},
    ],
}


def test_check_ok_prints_summary_and_warnings(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    result = run("check", "-c", path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}: OK — 2 endpoint(s), port 9000, timeout 3s"
    assert lines[1].split() == ["POST", "/a/{id}", "→", "2", "backend(s):", "http,", "http"]
    assert lines[2].split() == ["GET", "/b", "→", "1", "backend(s):", "http"]
    assert lines[3] == "  backends: 3 http"
    assert lines[4:] == [
        "  warning: log_level: not supported, ignored",
        '  warning: endpoints[0].backend[1].extra_config["backend/soap"]: namespace not supported, ignored',
    ]
    assert result.stderr == ""


def test_check_yaml(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 3\nendpoints:\n  - endpoint: /y\n    backend:\n      - host: [svc:1]\n        url_pattern: /y\n",
        "krakend.yaml",
    )
    result = run("check", "-c", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"{path}: OK — 1 endpoint(s), port 8080, timeout 2s"


def test_check_errors_exit_1_with_paths_on_stderr(tmp_path: Path) -> None:
    doc = {
        "version": 3,
        "endpoints": [
            {"endpoint": "/a", "backend": [{"host": ["http://svc:1"], "url_pattern": "/a"}]},
            {"endpoint": "/a", "backend": [{"host": ["http://svc:1"], "url_pattern": "/a"}]},
            {"endpoint": "/users/{user}", "backend": [{"host": ["http://svc:1"], "url_pattern": "/u/{id}"}]},
            {"endpoint": "/n", "output_encoding": "no-op", "backend": [{"url_pattern": "/n"}, {"url_pattern": "/m"}]},
        ],
    }
    path = write(tmp_path, doc)
    result = run("check", "-c", path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}: 3 error(s)",
        '  error: endpoints[1]: duplicate of endpoints[0] (GET /a): change "endpoint" or "method"',
        "  error: endpoints[2].backend[0].url_pattern: placeholder {id} is not in endpoint /users/{user}",
        '  error: endpoints[3].output_encoding: "no-op" passes one backend through, this endpoint has 2: '
        'keep one backend or use "json"',
    ]


@pytest.mark.parametrize(
    ("content", "name", "expected"),
    [
        ('{"version": 3,\n "endpoints": [}\n', "krakend.json", "  error: invalid JSON at line 2, column 16: "),
        ("version: 3\nendpoints: [\n", "krakend.yml", "  error: invalid YAML at line 3, column 1: "),
        (
            '{"version": 2}',
            "krakend.json",
            '  error: version: format version 2 (KrakenD 1.x); KrakenD 2 and later refuse it too: migrate to "version": 3',
        ),
    ],
)
def test_check_syntax_and_version_errors(tmp_path: Path, content: str, name: str, expected: str) -> None:
    path = write(tmp_path, content, name)
    result = run("check", "-c", path)
    assert (result.returncode, result.stdout) == (1, "")
    lines = result.stderr.splitlines()
    assert lines[0] == f"{path}: 1 error(s)" and lines[1].startswith(expected)


def test_check_missing_file(tmp_path: Path) -> None:
    result = run("check", "-c", str(tmp_path / "nope.json"))
    assert result.returncode == 1
    assert f"cannot read config file {str(tmp_path / 'nope.json')!r}: No such file or directory" in result.stderr


def test_check_requires_a_config() -> None:
    result = run("check")
    assert result.returncode == 2 and "-c/--config" in result.stderr


def test_version() -> None:
    result = run("version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"lambdagate {lambdagate.__version__}\n", "")


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("lambdagate")
    result = subprocess.run([str(script), "version"], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, f"lambdagate {lambdagate.__version__}\n")


def test_run_listens_on_the_config_port_by_default(tmp_path: Path, upstream: str) -> None:
    port = free_port()
    path = write(
        tmp_path,
        {
            "version": 3,
            "port": port,
            "endpoints": [
                {"endpoint": "/j", "backend": [{"host": [upstream], "url_pattern": "/json/cfg", "allow": ["name"]}]}
            ],
        },
    )
    proc = Process(python_module("lambdagate", "run", "-c", path, "--host", "127.0.0.1"), tmp_path / "log")
    try:
        wait_http(f"http://127.0.0.1:{port}/__health", proc=proc.proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/j", timeout=5) as resp:
            assert orjson.loads(resp.read()) == {"name": "cfg"}
    finally:
        assert proc.stop() is not None
    assert f"listening on 127.0.0.1:{port}" in proc.log()

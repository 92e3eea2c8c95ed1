"""Shared fixtures: real upstream and gateway processes on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import orjson
import pytest

from tests.support.procs import Process, free_port, python_module, wait_http


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real HTTP upstream (tests/support/upstream.py)."""
    port = free_port()
    proc = Process(python_module("tests.support.upstream", str(port)), tmp_path_factory.mktemp("upstream") / "log")
    try:
        wait_http(f"http://127.0.0.1:{port}/json/ready", proc=proc.proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


class Gateway:
    def __init__(self, process: Process, url: str) -> None:
        self.process = process
        self.url = url

    def log(self) -> str:
        return self.process.log()


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Start `lambdagate run` on a config dict; returns a Gateway with its URL and log. Stopped at teardown."""
    started: list[Process] = []

    def start(config: dict, *args: str, env: dict[str, str] | None = None, name: str = "krakend.json") -> Gateway:
        path = tmp_path / name
        path.write_bytes(orjson.dumps(config))
        port = free_port()
        proc = Process(python_module("lambdagate", "run", "-c", str(path), "--port", str(port), "--host", "127.0.0.1", *args),
                       tmp_path / f"gateway-{port}.log", env)
        started.append(proc)
        try:
            wait_http(f"http://127.0.0.1:{port}/__health", proc=proc.proc)
        except Exception as exc:
            raise RuntimeError(f"gateway did not start: {exc}\n{proc.log()}") from None
        return Gateway(proc, f"http://127.0.0.1:{port}")

    yield start
    for proc in started:
        proc.stop()

"""Shared fixtures: real upstream and gateway processes on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.support.gateway import Gateway, launch_gateway
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


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Start `lambdagate run` on a config dict; returns a Gateway with its URL and log. Stopped at teardown."""
    started: list[Gateway] = []

    def start(config: dict, *args: str, env: dict[str, str] | None = None, name: str = "krakend.json") -> Gateway:
        gateway = launch_gateway(config, tmp_path, *args, env=env, name=name)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.process.stop()

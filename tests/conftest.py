"""Shared fixtures: real upstream and gateway processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lambdagate import plugins
from tests.support.gateway import Gateway, launch_gateway
from tests.support.procs import serve_module

plugins.install()  # the namespaces every config read in these tests may use, as the CLI and workers do


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real HTTP upstream (tests/support/upstream.py)."""
    with serve_module("tests.support.upstream", "/json/ready", tmp_path_factory.mktemp("upstream")) as url:
        yield url


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A faulty Lambda Invoke API (tests/support/invoke_stub.py); one per module, as tests count its calls."""
    with serve_module("tests.support.invoke_stub", "/__health", tmp_path_factory.mktemp("stub")) as url:
        yield url


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A deliberately broken HTTP server (tests/support/faulty.py)."""
    with serve_module("tests.support.faulty", "/__calls/ready", tmp_path_factory.mktemp("faulty")) as url:
        yield url


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

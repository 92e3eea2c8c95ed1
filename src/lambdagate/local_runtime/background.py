"""Run the local runtime as a child process, for embedding (``lambdagate run --functions DIR``).

A separate process keeps handler crashes, reloads and worker churn away from
the embedding gateway's event loop; the gateway talks to it over HTTP only.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from lambdagate.local_runtime.functions import load_functions


class RuntimeHandle:
    """A running local runtime: ``url`` to reach it, ``stop()`` to end it."""

    def __init__(self, process: subprocess.Popen, host: str, port: int):
        self.process = process
        self.host = host
        self.port = port
        self.url = f"http://{_connect_host(host)}:{port}"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (the runtime kills its workers and exits), then SIGKILL after ``timeout``."""
        atexit.unregister(self.stop)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> RuntimeHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RuntimeHandle(url={self.url!r}, pid={self.process.pid}, running={self.running})"


def _connect_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_in_background(
    directory,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    region: str | None = None,
    log_level: str = "INFO",
    log_format: str = "text",
    log_prefix: str = "",
    show_env: bool = False,
    startup_timeout: float = 20.0,
    env: dict[str, str] | None = None,
) -> RuntimeHandle:
    """Start ``python -m lambdagate.local_runtime DIR`` and return once it answers /__health.

    ``port=0`` picks a free port. Raises ConfigError (bad directory or
    functions.yaml, checked here first so the caller gets the message),
    RuntimeError if the process exits early, TimeoutError if it never answers.
    The process is stopped at interpreter exit if the caller forgets.
    """
    directory = Path(directory).resolve()
    load_functions(directory)
    port = port or _free_port(host)
    command = [
        sys.executable,
        "-m",
        "lambdagate.local_runtime",
        str(directory),
        "--host",
        host,
        "--port",
        str(port),
        "--log-level",
        log_level,
        "--log-format",
        log_format,
        "--log-prefix",
        log_prefix,
        "--parent-pid",
        str(os.getpid()),
    ]
    if region:
        command += ["--region", region]
    if show_env:
        command.append("--show-env")
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, env=env)
    handle = RuntimeHandle(process, host, port)
    atexit.register(handle.stop)

    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            handle.stop()
            raise RuntimeError(f"local runtime exited with status {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(handle.url + "/__health", timeout=1) as response:
                if response.status == 200:
                    return handle
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    handle.stop()
    raise TimeoutError(f"local runtime did not answer on {handle.url} within {startup_timeout:.0f}s")

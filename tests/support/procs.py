"""Start and stop real processes for tests: free ports, readiness polling, bounded waits."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                resp.read()
                return
        except Exception as exc:
            last = exc
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


class Process:
    """A child process with its output in a log file (read by tests that check logs)."""

    def __init__(
        self, args: list[str], log_path: Path, env: dict[str, str] | None = None, *, inherit_env: bool = True
    ) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        full_env = {**(os.environ if inherit_env else {}), **(env or {})}
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT, start_new_session=True
        )

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


@contextlib.contextmanager
def serve_module(module: str, ready_path: str, log_dir: Path) -> Iterator[str]:
    """Run `python -m module PORT` on a free loopback port; yields its base URL once `ready_path` answers."""
    port = free_port()
    proc = Process(python_module(module, str(port)), log_dir / f"{module.rsplit('.', 1)[-1]}-{port}.log")
    try:
        wait_http(f"http://127.0.0.1:{port}{ready_path}", proc=proc.proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()

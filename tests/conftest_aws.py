"""Shared helpers for the tests/test_aws_*.py modules (imported, not a pytest conftest).

moto_server runs as a real process on a free 127.0.0.1 port; everything is bounded in time
and the process is always terminated.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE_NAME = "gw-lambda-role"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"
TEST_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MotoServer:
    url: str
    proc: subprocess.Popen

    def client(self, service: str, **keys: str):
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, **(keys or TEST_KEYS))

    def set_config(self, config: dict) -> dict:
        req = urllib.request.Request(f"{self.url}/moto-api/config", data=json.dumps(config).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())


def _moto_command(port: int) -> list[str]:
    exe = Path(sys.executable).with_name("moto_server")
    if exe.exists():
        return [str(exe), "-H", "127.0.0.1", "-p", str(port)]
    found = shutil.which("moto_server")
    return [found, "-H", "127.0.0.1", "-p", str(port)] if found else [sys.executable, "-m", "moto.server",
                                                                       "-H", "127.0.0.1", "-p", str(port)]


@contextlib.contextmanager
def moto_server(extra_env: dict[str, str] | None = None, timeout: float = 30.0) -> Iterator[MotoServer]:
    """Start moto_server, wait until it answers, yield it, then terminate it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(extra_env or {})
    for _ in range(3):  # the free port could be taken between probe and bind: retry on early exit
        port = free_port()
        proc = subprocess.Popen(_moto_command(port), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            end = time.monotonic() + timeout
            while time.monotonic() < end and proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"{url}/moto-api/config", timeout=1) as resp:
                        resp.read()
                    break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    time.sleep(0.1)
            else:
                if proc.poll() is not None:
                    continue  # died (port clash): try another port
                raise RuntimeError(f"moto_server did not answer on {url} within {timeout}s")
            yield MotoServer(url, proc)
            return
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
    raise RuntimeError("moto_server failed to start")


def echo_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("lambda_function.py", "def lambda_handler(event, context):\n    return event\n")
    return buf.getvalue()


def create_echo_function(lam, name: str = "echo") -> str:
    """Create a python3.11 function (moto 'simple' mode echoes the payload); returns its ARN."""
    resp = lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE_ARN,
                               Handler="lambda_function.lambda_handler", Code={"ZipFile": echo_zip()})
    return resp["FunctionArn"]

"""moto's real Lambda Invoke API (`moto_server`) for tests: start it, switch Lambda to simple mode, create functions.

In simple mode a function echoes its payload, or answers from a queue of canned replies.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
from botocore.config import Config

from tests.support.procs import Process, free_port, wait_http

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE_NAME = "gw-lambda-role"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"


def echo_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("lambda_function.py", "def lambda_handler(event, context):\n    return event\n")
    return buf.getvalue()


def create_echo_function(lam, name: str) -> str:
    """Create a python3.11 function with the given Lambda client; returns its ARN."""
    resp = lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE_ARN,
        Handler="lambda_function.lambda_handler",
        Code={"ZipFile": echo_zip()},
    )
    return resp["FunctionArn"]


def _command(port: int) -> list[str]:
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    args = [exe] if exe else [sys.executable, "-m", "moto.server"]
    return [*args, "-H", "127.0.0.1", "-p", str(port)]


class MotoServer:
    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # moto must not pick up the developer's AWS settings.
        clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.process = Process(
            _command(self.port), log_dir / f"moto-{self.port}.log", {**clean, **(env or {})}, inherit_env=False
        )
        self.proc = self.process.proc
        wait_http(f"{self.url}/moto-api/config", proc=self.proc)
        self.set_config({"lambda": {"use_docker": False}})
        self.access_key, self.secret_key = "testing", "testing"

    def set_config(self, config: dict) -> dict:
        req = urllib.request.Request(
            f"{self.url}/moto-api/config",
            data=json.dumps(config).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def client(self, service: str, access_key: str | None = None, secret_key: str | None = None, **keys: str):
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            **(
                {
                    "aws_access_key_id": access_key or self.access_key,
                    "aws_secret_access_key": secret_key or self.secret_key,
                }
                | keys
            ),
            config=Config(retries={"total_max_attempts": 1}),
        )

    def create_role(self) -> None:
        self.client("iam").create_role(
            RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
        )

    def create_function(self, name: str) -> str:
        return create_echo_function(self.client("lambda"), name)

    def queue_replies(self, *results: str) -> None:
        req = urllib.request.Request(
            f"{self.url}/moto-api/static/lambda-simple/response",
            data=json.dumps({"results": list(results), "region": REGION}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def stop(self) -> None:
        self.process.stop()


@contextlib.contextmanager
def moto_server(extra_env: dict[str, str] | None = None) -> Iterator[MotoServer]:
    """A moto_server for the duration of a `with` block."""
    with tempfile.TemporaryDirectory(prefix="moto-") as log_dir:
        server = MotoServer(Path(log_dir), extra_env)
        try:
            yield server
        finally:
            server.stop()

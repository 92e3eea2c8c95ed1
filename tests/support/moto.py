"""moto's real Lambda Invoke API (`moto_server`) for tests: start it, switch Lambda to simple mode, create functions.

In simple mode a function echoes its payload, or answers from a queue of canned replies.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import urllib.request
import zipfile
from pathlib import Path

import boto3
from botocore.config import Config

from tests.support.procs import Process, free_port, wait_http

ROLE_NAME = "gw-lambda-role"
ROLE_ARN = f"arn:aws:iam::123456789012:role/{ROLE_NAME}"
REGION = "us-east-1"


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("lambda_function.py", "def lambda_handler(event, context):\n    return event\n")
    return buf.getvalue()


class MotoServer:
    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
        args = [exe] if exe else [sys.executable, "-m", "moto.server"]
        self.process = Process([*args, "-H", "127.0.0.1", "-p", str(self.port)], log_dir / f"moto-{self.port}.log", env)
        wait_http(f"{self.url}/moto-api/config", proc=self.process.proc)
        self._post("/moto-api/config", {"lambda": {"use_docker": False}})
        self.access_key, self.secret_key = "testing", "testing"

    def _post(self, path: str, body: dict) -> None:
        req = urllib.request.Request(f"{self.url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def client(self, service: str, access_key: str | None = None, secret_key: str | None = None):
        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=access_key or self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key,
                            config=Config(retries={"max_attempts": 1}))

    def create_role(self) -> None:
        self.client("iam").create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"}))

    def create_function(self, name: str) -> str:
        resp = self.client("lambda").create_function(
            FunctionName=name, Runtime="python3.11", Role=ROLE_ARN, Handler="lambda_function.lambda_handler",
            Code={"ZipFile": _zip()})
        return resp["FunctionArn"]

    def queue_replies(self, *results: str) -> None:
        self._post("/moto-api/static/lambda-simple/response", {"results": list(results), "region": REGION})

    def stop(self) -> None:
        self.process.stop()

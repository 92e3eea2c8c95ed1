"""Lambda REST API shapes: error responses and FunctionConfiguration documents.

Errors follow the rest-json protocol as botocore parses it: the code comes from
the ``X-Amzn-ErrorType`` header (so boto3 raises ``client.exceptions.<Code>``),
the message from ``message``/``Message`` in the body, the request id from
``x-amzn-RequestId``. The message key's case follows Lambda's service model.

Environment values are secrets as often as not, so FunctionConfiguration shows
them only when the runtime was started with ``--show-env``; otherwise every
value reads ``<redacted>`` (names stay: they tell a developer what is set, and
boto3/the AWS CLI parse any string there).
"""

from __future__ import annotations

import base64
import hashlib
import platform
import secrets
import sys
import time
import uuid
from pathlib import Path

import orjson
from aiohttp import web

from lambdagate.local_runtime.functions import FunctionConfig

ACCOUNT_ID = "123456789012"
RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
# Lambda's model spells the message member "Message" for these and "message" elsewhere.
_CAPITAL_MESSAGE = {"ResourceNotFoundException", "ResourceConflictException"}
REDACTED = "<redacted>"
# RevisionId is a hash of the configuration, environment values included: salted per process so that it
# cannot be used to guess a redacted value.
_REVISION_SALT = secrets.token_hex(16)


def function_arn(region: str, name: str, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def json_response(data, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers=headers, content_type="application/json")


def error_response(status: int, code: str, message: str, **extra) -> web.Response:
    body = {"Type": "User", ("Message" if code in _CAPITAL_MESSAGE else "message"): message, **extra}
    return json_response(body, status, {"X-Amzn-ErrorType": code})


def throttled(reason: str, retry_after: int | None = None) -> web.Response:
    """429 TooManyRequestsException; boto3 reads ``Reason`` from the body and ``Retry-After`` as retryAfterSeconds."""
    response = error_response(429, "TooManyRequestsException", "Rate Exceeded.", Reason=reason)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def not_found(region: str, name: str, qualifier: str | None = None) -> web.Response:
    return error_response(
        404, "ResourceNotFoundException", f"Function not found: {function_arn(region, name, qualifier)}"
    )


def _code_facts(path: Path) -> tuple[int, str, str]:
    """(size, base64 sha256, LastModified) of the handler's source file."""
    try:
        data = path.read_bytes()
        mtime = path.stat().st_mtime
    except OSError:
        data, mtime = b"", time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mtime)) + f".{int(mtime % 1 * 1000):03d}+0000"
    return len(data), base64.b64encode(hashlib.sha256(data).digest()).decode(), stamp


def function_configuration(fn: FunctionConfig, root: Path, region: str, show_env: bool = False) -> dict:
    size, sha, modified = _code_facts(fn.source_path(root))
    config = {
        "FunctionName": fn.name,
        "FunctionArn": function_arn(region, fn.name),
        "Runtime": RUNTIME,
        "Role": f"arn:aws:iam::{ACCOUNT_ID}:role/lambdagate-local",
        "Handler": fn.handler,
        "CodeSize": size,
        "Description": fn.description,
        "Timeout": fn.timeout,
        "MemorySize": fn.memory_mb,
        "LastModified": modified,
        "CodeSha256": sha,
        "Version": "$LATEST",
        "TracingConfig": {"Mode": "PassThrough"},
        "RevisionId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{_REVISION_SALT}{fn!r}{sha}")),
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": ["arm64" if platform.machine() in ("arm64", "aarch64") else "x86_64"],
        "EphemeralStorage": {"Size": 512},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{fn.name}"},
    }
    if fn.environment:
        variables = dict(fn.environment) if show_env else dict.fromkeys(fn.environment, REDACTED)
        config["Environment"] = {"Variables": variables}
    return config


def get_function(fn: FunctionConfig, root: Path, region: str, show_env: bool = False) -> dict:
    return {
        "Configuration": function_configuration(fn, root, region, show_env),
        "Code": {"RepositoryType": "S3", "Location": fn.source_path(root).as_uri()},
        "Tags": {},
        "Concurrency": {"ReservedConcurrentExecutions": fn.reserved_concurrency},
    }

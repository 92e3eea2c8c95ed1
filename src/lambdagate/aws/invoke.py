"""Lambda Invoke API client: one SigV4-signed POST per call through the client seam (lambdagate.client), with
safe retries.

No boto in the request path: aiobotocore's ``invoke`` costs several times the client CPU
(research/stack-probe.md, section 3). Retries are limited
to cases where the function cannot have run or AWS says to try again, and every wait stays
inside the caller's deadline.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from time import time as _wall_time
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
from yarl import URL

from lambdagate import __version__
from lambdagate.aws.credentials import CredentialProvider
from lambdagate.aws.sigv4 import SigV4Signer
from lambdagate.client.aiohttp_client import AiohttpClient
from lambdagate.client.base import (
    ClientError,
    ConnectError,
    ConnectTimeout,
    HeadTimeout,
    HttpClient,
    PayloadError,
    TLSFailure,
    TooLarge,
)
from lambdagate.deadline import deadline_at

__all__ = [
    "FUNCTION_NAME_RE",
    "InvokeResponse",
    "LambdaDeadlineError",
    "LambdaError",
    "LambdaInvoker",
    "LambdaServiceError",
    "LambdaTransportError",
    "is_valid_function_reference",
    "max_attempts_from_max_retries",
]

# FunctionName pattern of the Invoke API (botocore's lambda 2015-03-31 model, NamespacedFunctionName):
# name, name:qualifier, partial ARN 123456789012:function:name[:q], full ARN arn:aws[-x]:lambda:region:acct:function:name[:q].
FUNCTION_NAME_RE = re.compile(
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?"
    r"(function:)?(?P<name>[a-zA-Z0-9_.-]+)(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9_-]+))?"
)
_MAX_REFERENCE_LEN = 256  # the model's limit, which applies to a full ARN
_MAX_NAME_LEN = 64  # AWS: a bare function name is at most 64 characters

_USER_AGENT = f"lambdagate/{__version__}"
_BACKOFF_BASE = 0.025
_BACKOFF_CAP = 1.0
_ERROR_BODY_LIMIT = 64 * 1024
_XML_CODE_RE = re.compile(rb"<Code>([^<]{1,200})</Code>")
_XML_MESSAGE_RE = re.compile(rb"<Message>([^<]{0,1000})</Message>")


def is_valid_function_reference(name: str) -> bool:
    """True when ``name`` is a FunctionName the Invoke API accepts (name, name:qualifier, partial or full ARN)."""
    if not name or len(name) > _MAX_REFERENCE_LEN:
        return False
    m = FUNCTION_NAME_RE.fullmatch(name)
    return m is not None and len(m.group("name")) <= _MAX_NAME_LEN


def max_attempts_from_max_retries(max_retries: int) -> int:
    """KrakenD's ``max_retries`` to total attempts: -1 means the SDK default (3 attempts in standard mode)."""
    if max_retries == -1:
        return 3
    if max_retries < 0:
        raise ValueError(f"max_retries must be -1 or >= 0, got {max_retries}")
    return max_retries + 1


@dataclass(slots=True)
class InvokeResponse:
    status: int  # 200 RequestResponse, 202 Event, 204 DryRun
    payload: bytes
    function_error: str | None  # X-Amz-Function-Error: "Unhandled" / "Handled"
    executed_version: str | None
    request_id: str | None  # x-amzn-RequestId
    log_result: str | None  # X-Amz-Log-Result (base64), with log_type="Tail"
    attempts: int = 1  # how many Invoke calls it took (1 + retries)


class LambdaError(Exception):
    """An Invoke call failed; ``retryable`` says whether another attempt could succeed."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "Error",
        request_id: str | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after
        self.retryable = retryable
        self.attempts = 1  # set by LambdaInvoker.invoke to the number of Invoke calls made

    def __str__(self) -> str:
        status = f" (HTTP {self.status})" if self.status else ""
        return f"{self.code}{status}: {self.message}"


class LambdaServiceError(LambdaError):
    """The Lambda service answered with an error status (>= 300) or an unusable reply."""


class LambdaTransportError(LambdaError):
    """No usable HTTP exchange: connection refused/reset, DNS failure, incomplete read."""


class LambdaDeadlineError(LambdaError):
    """The caller's deadline passed before or during the call."""


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or unusable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - _wall_time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _service_error(status: int, headers: Mapping[str, str], body: bytes) -> LambdaServiceError:
    # Same precedence as botocore's rest-json parser: X-Amzn-ErrorType, then body code/Code/__type.
    data: dict = {}
    try:
        parsed = orjson.loads(body) if body else {}
        if isinstance(parsed, dict):
            data = parsed
    except orjson.JSONDecodeError:
        pass
    code = headers.get("X-Amzn-ErrorType") or data.get("code") or data.get("Code") or data.get("__type")
    message = data.get("message") or data.get("Message")
    if body.lstrip().startswith(b"<"):  # moto's IAM errors (e.g. SignatureDoesNotMatch) are XML
        m = _XML_CODE_RE.search(body)
        code = code or (m.group(1).decode(errors="replace") if m else None)
        m = _XML_MESSAGE_RE.search(body)
        message = message or (m.group(1).decode(errors="replace") if m else None)
    code = str(code).split(":", 1)[0].rsplit("#", 1)[-1] if code else f"HTTP{status}"
    if not message:
        message = body[:200].decode(errors="replace") or f"HTTP {status}"
    retry_after = _parse_retry_after(headers.get("Retry-After"))
    if retry_after is None and isinstance(data.get("retryAfterSeconds"), (int, float, str)):
        retry_after = _parse_retry_after(str(data["retryAfterSeconds"]))
    return LambdaServiceError(
        str(message),
        status=status,
        code=code,
        request_id=headers.get("x-amzn-RequestId"),
        retry_after=retry_after,
        # 429 throttling and 5xx from the service itself: the function did not run.
        retryable=status == 429 or status >= 500,
    )


def _transport_error(exc: ClientError) -> LambdaTransportError:
    if isinstance(exc, TLSFailure):
        return LambdaTransportError(f"TLS failure: {exc}", code="TLSError")  # retrying will not fix it
    if isinstance(exc, ConnectTimeout):
        return LambdaTransportError(f"connect timeout: {exc}", code="ConnectTimeout", retryable=True)
    if isinstance(exc, HeadTimeout):
        # A read timeout means the function may be running: no retry.
        return LambdaTransportError(f"read timeout: {exc}", code="Timeout")
    if isinstance(exc, PayloadError):
        # The reply's status line and headers arrived, then its body broke off: the function ran, so
        # another attempt would run it twice.
        return LambdaTransportError(str(exc), code="IncompleteReply")
    if isinstance(exc, ConnectError):
        # Refused/reset/DNS before any reply. Like the AWS SDKs we retry these; a stale pooled
        # keep-alive connection closed by the server is the common case.
        return LambdaTransportError(str(exc), code="ConnectionError", retryable=True)
    return LambdaTransportError(str(exc), code="ClientError")


class LambdaInvoker:
    """Invokes Lambda functions through the worker's HTTP client (an aiohttp session is put behind the seam)."""

    def __init__(
        self,
        session: HttpClient | aiohttp.ClientSession,
        *,
        region: str,
        credentials: CredentialProvider,
        endpoint_url: str | None = None,
        max_attempts: int = 1,
        logger: logging.Logger | None = None,
        max_response_bytes: int = 6 * 1024 * 1024 + 1024,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self._client: HttpClient = AiohttpClient(session) if isinstance(session, aiohttp.ClientSession) else session
        self._credentials = credentials
        self._signer = SigV4Signer(region, "lambda")
        self._max_attempts = max_attempts
        self._log = logger or logging.getLogger("lambdagate.aws.invoke")
        self._max_response_bytes = max_response_bytes
        self.endpoint_url = (endpoint_url or f"https://lambda.{region}.amazonaws.com").rstrip("/")
        parts = urlsplit(self.endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"invalid Lambda endpoint URL: {self.endpoint_url!r}")
        # Host header as botocore derives it: lower-case, port only when not the scheme default.
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if parts.port is not None and parts.port != {"http": 80, "https": 443}[parts.scheme]:
            host = f"{host}:{parts.port}"
        self._host = host
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = f"{parts.path.rstrip('/')}/2015-03-31/functions/"
        self._targets: dict[tuple[str, str | None], tuple[URL, str, str]] = {}

    def _target(self, function_name: str, qualifier: str | None) -> tuple[URL, str, str]:
        key = (function_name, qualifier)
        target = self._targets.get(key)
        if target is None:
            path = f"{self._base_path}{quote(function_name, safe='')}/invocations"
            query = f"Qualifier={quote(qualifier, safe='-_.~')}" if qualifier else ""
            # encoded=True: yarl must not re-normalise %3A, or the wire path would differ from the signed one.
            url = URL(f"{self._origin}{path}{'?' + query if query else ''}", encoded=True)
            if len(self._targets) >= 4096:
                self._targets.clear()
            target = self._targets[key] = (url, path, query)
        return target

    async def invoke(
        self,
        function_name: str,
        payload: bytes,
        *,
        deadline: float,
        qualifier: str | None = None,
        invocation_type: str = "RequestResponse",
        log_type: str | None = None,
        request_id: str | None = None,
        trace_header: str | None = None,
    ) -> InvokeResponse:
        """Invoke ``function_name`` with ``payload``; ``deadline`` is an absolute ``loop.time()``.

        ``request_id`` (the gateway's own id) only appears in log lines. ``trace_header`` is sent as
        X-Amzn-Trace-Id, unsigned, as botocore does.
        """
        loop = asyncio.get_running_loop()
        url, path, query = self._target(function_name, qualifier)
        signed_headers = {"X-Amz-Invocation-Type": invocation_type}
        if log_type:
            signed_headers["X-Amz-Log-Type"] = log_type
        attempt = 0
        last_exc: LambdaError | None = None
        while True:
            attempt += 1
            if loop.time() >= deadline:
                if last_exc is not None:  # a retry wait ended right at the deadline: report the real cause
                    raise last_exc
                raise LambdaDeadlineError(f"deadline passed before invoking {function_name}", code="Timeout")
            try:
                result = await self._attempt(
                    url, path, query, signed_headers, payload, deadline, function_name, trace_header, loop
                )
                result.attempts = attempt
                return result
            except LambdaError as exc:
                exc.attempts = attempt
                if not exc.retryable or attempt >= self._max_attempts:
                    raise
                last_exc = exc
                # Full jitter (AWS architecture blog) unless the service told us how long to wait.
                delay = exc.retry_after
                if delay is None:
                    delay = random.uniform(0.0, min(_BACKOFF_CAP, _BACKOFF_BASE * (2 ** (attempt - 1))))
                if loop.time() + delay >= deadline:
                    raise  # waiting would overrun the deadline: report the real cause instead
                self._log.warning(
                    "lambda invoke retry: function=%s attempt=%d/%d cause=%s delay=%.3fs request_id=%s",
                    function_name,
                    attempt + 1,
                    self._max_attempts,
                    exc,
                    delay,
                    request_id,
                )
                await asyncio.sleep(delay)

    async def _attempt(
        self,
        url: URL,
        path: str,
        query: str,
        signed_headers: dict[str, str],
        payload: bytes,
        deadline: float,
        function_name: str,
        trace_header: str | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> InvokeResponse:
        headers = self._signer.sign(
            "POST", self._host, path, query, signed_headers, payload, self._credentials.current()
        )
        headers.update(signed_headers)
        headers["Content-Type"] = "application/json"
        # Unsigned, the same whichever client serves: replies may come compressed (decoded under the size cap).
        headers["Accept-Encoding"] = "gzip"
        headers["User-Agent"] = _USER_AGENT
        if trace_header:
            headers["X-Amzn-Trace-Id"] = trace_header
        # asyncio.timeout_at semantics without a loop timer per call; with the running loop given, finding the
        # current task costs no get_running_loop() (a getpid system call on Python 3.11).
        timeout = deadline_at(deadline, loop)
        try:
            with timeout:
                reply = await self._client.request("POST", url, headers, payload, limit=self._max_response_bytes)
        except TimeoutError as exc:
            if timeout.expired():
                raise LambdaDeadlineError(f"deadline passed while invoking {function_name}", code="Timeout") from None
            raise LambdaTransportError(f"timeout: {exc!r}", code="Timeout") from exc
        except TooLarge as exc:
            if exc.status >= 300:
                raise _service_error(exc.status, exc.headers, b"") from None
            raise LambdaServiceError(
                f"response of {function_name} exceeds {self._max_response_bytes} bytes",
                status=502,
                code="ResponseTooLarge",
                request_id=exc.headers.get("x-amzn-RequestId"),
            ) from None
        except ClientError as exc:
            if timeout.expired():
                raise LambdaDeadlineError(f"deadline passed while invoking {function_name}", code="Timeout") from None
            raise _transport_error(exc) from exc
        status, rh, body = reply.status, reply.headers, reply.body
        if status >= 300:
            raise _service_error(status, rh, body if len(body) <= _ERROR_BODY_LIMIT else b"")
        return InvokeResponse(
            status,
            body,
            rh.get("X-Amz-Function-Error"),
            rh.get("X-Amz-Executed-Version"),
            rh.get("x-amzn-RequestId"),
            rh.get("X-Amz-Log-Result"),
        )

"""What the client gets when a Lambda Invoke fails: the README's error table, as data.

A failed Invoke is one of: the Lambda service's error reply (LambdaServiceError: AWS's HTTP status and error
code), the deadline (LambdaDeadlineError), no usable exchange at all (any other LambdaError), or a function
that ran and failed (a reply with X-Amz-Function-Error). The service's errors are looked up in SERVICE_ERRORS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from lambdagate.aws.invoke import InvokeResponse, LambdaDeadlineError, LambdaError, LambdaServiceError
from lambdagate.backends.reply_data import TooDeep, load_json
from lambdagate.errors import BackendError

log = logging.getLogger("lambdagate.lambda")


@dataclass(frozen=True, slots=True)
class Answer:
    """What the client sees, and what the operator must hear about (logged at ERROR, with %(name)s for the
    function, %(where)s for the backend, %(code)s for AWS's error code, %(request_id)s for the request)."""

    status: int
    message: str
    alert: str | None = None
    retry_after: bool = False  # pass on AWS's Retry-After (at least 1 s)


class Row(NamedTuple):
    status: int | None  # AWS's HTTP status; None: any
    code: str | None  # AWS's error code (X-Amzn-ErrorType); None: any
    from_url: bool | None  # the function name came from the URL (else the config); None: either
    answer: Answer


FAILED = Answer(500, "the backend failed")
TOO_LARGE = Answer(413, "request payload too large")
REFUSED_CREDENTIALS = Answer(
    500,
    "the backend failed",
    alert="AWS refused the credentials or signature for %(where)s: %(code)s request_id=%(request_id)s",
)
# First matching row wins; no row: FAILED.
SERVICE_ERRORS: tuple[Row, ...] = (
    # A name from the URL is the client's mistake; a name from the config is the operator's.
    Row(404, "ResourceNotFoundException", True, Answer(404, "unknown function")),
    Row(
        404,
        "ResourceNotFoundException",
        False,
        Answer(
            500,
            "the backend failed",
            alert="misconfiguration: function %(name)s does not exist (%(where)s) request_id=%(request_id)s",
        ),
    ),
    Row(429, None, None, Answer(429, "too many requests", retry_after=True)),
    Row(413, None, None, TOO_LARGE),
    Row(None, "RequestTooLargeException", None, TOO_LARGE),
    Row(None, "RequestEntityTooLargeException", None, TOO_LARGE),
    Row(400, "InvalidRequestContentException", None, Answer(400, "the request body must be JSON")),
    Row(None, "ResponseTooLarge", None, Answer(502, "the backend reply is too large")),  # the invoker's own code
    Row(401, None, None, REFUSED_CREDENTIALS),
    Row(403, None, None, REFUSED_CREDENTIALS),
)


def service_answer(status: int, code: str, from_url: bool) -> Answer:
    """The first row of SERVICE_ERRORS matching AWS's status and error code."""
    for row in SERVICE_ERRORS:
        if (
            (row.status is None or row.status == status)
            and (row.code is None or row.code == code)
            and (row.from_url is None or row.from_url == from_url)
        ):
            return row.answer
    return FAILED


class LambdaErrors:
    """Built once per backend: turns a failed Invoke into the BackendError the client's reply is made from."""

    __slots__ = ("where", "from_url", "details_wanted")

    def __init__(self, where: str, from_url: bool, details_wanted: bool) -> None:
        self.where = where  # for the operator's log lines: which backend of which endpoint, which function
        self.from_url = from_url
        self.details_wanted = details_wanted  # return_error_details: the function's error reaches the client

    def invoke_failed(self, err: LambdaError, name: str, request_id: str) -> BackendError:
        if isinstance(err, LambdaServiceError):
            return self._service_failed(err, name, request_id)
        if isinstance(err, LambdaDeadlineError):
            return BackendError(
                "the backend did not answer in time", status=504, timed_out=True, cause=f"function={name}: {err}"
            )
        return BackendError("the backend failed", status=500, cause=f"function={name}: {err}")

    def _service_failed(self, err: LambdaServiceError, name: str, request_id: str) -> BackendError:
        answer = service_answer(err.status, err.code, self.from_url)
        if answer.alert:
            log.error(answer.alert, {"name": name, "where": self.where, "code": err.code, "request_id": request_id})
        retry_after = str(max(1, int(err.retry_after or 1))) if answer.retry_after else None
        return BackendError(
            answer.message,
            status=answer.status,
            retry_after=retry_after,
            cause=f"function={name} {err.code} (HTTP {err.status}): {err.message} lambda_request_id={err.request_id}",
        )

    def function_failed(self, result: InvokeResponse, name: str, request_id: str) -> BackendError:
        """The function ran and failed (X-Amz-Function-Error): its error is logged, shown only on request."""
        error = _function_error(result.payload)
        log.warning(
            "function error: function=%s kind=%s type=%s message=%s lambda_request_id=%s request_id=%s",
            name,
            result.function_error,
            error.get("errorType"),
            str(error.get("errorMessage"))[:500],
            result.request_id,
            request_id,
        )
        details = (
            {
                "error_type": error.get("errorType"),
                "error_message": error.get("errorMessage"),
                "lambda_request_id": result.request_id,
            }
            if self.details_wanted
            else None
        )
        return BackendError(
            "the function failed",
            status=500,
            details=details,
            cause=f"function={name} {result.function_error} error {error.get('errorType')}",
        )


def _function_error(payload: bytes) -> dict[str, Any]:
    try:
        value = load_json(payload)  # bounded depth: the error may reach the client's reply (return_error_details)
    except (orjson.JSONDecodeError, TooDeep):
        return {"errorMessage": payload[:200].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"errorMessage": str(value)[:200]}

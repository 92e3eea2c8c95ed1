"""The ``context`` object handed to handlers, shaped like awslambdaric's LambdaContext.

Like the real runtime, the per-environment fields come from the standard
``AWS_LAMBDA_*`` variables (so ``memory_limit_in_mb`` is a string, as on AWS),
and the deadline is an absolute epoch time in milliseconds.
"""

from __future__ import annotations

import os
import time


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, data: dict | None = None):
        data = data or {}
        self.cognito_identity_id = data.get("cognitoIdentityId")
        self.cognito_identity_pool_id = data.get("cognitoIdentityPoolId")


class _Object:
    """Attribute view of a dict, for client_context and its ``client`` member."""

    def __init__(self, data: dict):
        for key, value in data.items():
            setattr(self, key, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({vars(self)!r})"


class ClientContext(_Object):
    custom = None
    env = None
    client = None


class LambdaContext:
    def __init__(
        self,
        aws_request_id: str,
        deadline_ms: int,
        invoked_function_arn: str,
        client_context: dict | None = None,
        identity: dict | None = None,
    ):
        self.aws_request_id = aws_request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = CognitoIdentity(identity)
        self.client_context = None
        if isinstance(client_context, dict):
            self.client_context = ClientContext(client_context)
            if isinstance(client_context.get("client"), dict):
                self.client_context.client = _Object(client_context["client"])
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def __repr__(self) -> str:
        return (
            f"LambdaContext(aws_request_id={self.aws_request_id}, "
            f"function_name={self.function_name}, "
            f"invoked_function_arn={self.invoked_function_arn})"
        )

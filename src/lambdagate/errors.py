"""Error types shared by the stages: config problems carry a JSON path, backend failures carry a status."""

from __future__ import annotations

import math


class ConfigIssue:
    """One problem (or warning) in a config file, located by its JSON path."""

    __slots__ = ("path", "message")

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def __repr__(self) -> str:
        return f"ConfigIssue({str(self)!r})"


class ConfigError(Exception):
    """The config (the gateway's, or the local runtime's functions.yaml) cannot be served. `issues` lists every
    problem found, each with its path; a plain message is one issue whose message names its place itself."""

    def __init__(self, issues: list[ConfigIssue] | str) -> None:
        self.issues = [ConfigIssue("", issues)] if isinstance(issues, str) else issues
        super().__init__("\n".join(str(i) for i in self.issues))


class BackendError(Exception):
    """A backend failed. `status` is what the client sees when this backend is the endpoint's only one.

    `message` is short and safe to show; `cause` is for the log only. `details` reaches the client only
    when the backend is configured to return error details.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 500,
        cause: str | None = None,
        details: dict | None = None,
        retry_after: str | None = None,
        timed_out: bool = False,
        refused: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.cause = cause
        self.details = details
        self.retry_after = retry_after
        self.timed_out = timed_out
        # The gateway refused the call itself (an open circuit breaker, a backend rate limit): expected under load,
        # so logged at DEBUG, not once per request as a warning (the state change is what gets logged).
        self.refused = refused


class RequestRejected(Exception):
    """The client's request is refused before any backend is called (bad syntax, not allowed, too large)."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers  # extra reply headers (a busy refusal's Retry-After)


class StartupError(Exception):
    """A config that validated cannot be served here (e.g. no AWS credentials); the message says what to do."""


def retry_seconds(wait: float) -> int:
    """A wait as Retry-After writes it: whole seconds, at least 1."""
    return max(1, math.ceil(wait))


def clipped(text: str, limit: int = 200) -> str:
    """`text` cut to `limit` characters (ending in "..." when cut): an upstream's error text goes into logs."""
    return text if len(text) <= limit else text[: limit - 3] + "..."

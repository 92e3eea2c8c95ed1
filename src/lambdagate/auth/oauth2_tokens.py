"""OAuth2 client-credentials tokens (RFC 6749 section 4.4) for `auth/client-credentials`: fetched from the token
URL, cached until shortly before they expire, refreshed by one fetch at a time.

Semantics of golang.org/x/oauth2/clientcredentials, which KrakenD uses:
- the request is a form POST: `grant_type=client_credentials`, `scope` (the scopes joined by spaces), and the
  `endpoint_params`; the client authenticates with HTTP Basic (id and secret form-encoded), and when the server
  refuses that, with `client_id` and `client_secret` in the form; the style that worked is kept;
- the reply is JSON, or form-encoded when its Content-Type says so; `access_token` is required, `token_type`
  defaults to Bearer; a token is used until `EXPIRY_MARGIN` seconds before `expires_in` runs out, and forever
  when the reply gives no `expires_in`.
Differences: concurrent callers wait for the same fetch, and when it fails they all fail with it (x/oauth2 lets
each of them try again in turn); the token URL is never followed to a redirect.

The client secret and the tokens never reach a log or an error message: failures are described by status, field
or exception type only.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlencode

import orjson
from multidict import CIMultiDict
from yarl import URL

from lambdagate import __version__
from lambdagate.client.base import ClientError, HttpClient, TooLarge
from lambdagate.errors import BackendError, clipped

EXPIRY_MARGIN = 10.0  # seconds before its expiry a token is replaced (x/oauth2's expiryDelta)
FETCH_TIMEOUT = 10.0  # one token request, connection included; callers also stop waiting at their deadline
MAX_REPLY_BYTES = 1024 * 1024  # as x/oauth2
MAX_TOKEN_CHARS = 16 * 1024
_FORM_TYPES = ("application/x-www-form-urlencoded", "text/plain")
# token_type → the scheme written in Authorization, as x/oauth2's Token.Type() spells the known ones.
_SCHEMES = {"bearer": "Bearer", "mac": "MAC", "basic": "Basic"}
_URL = re.compile(r"(https?://)[^\s'\"]*", re.IGNORECASE)
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

log = logging.getLogger("lambdagate.oauth2")


class TokenError(Exception):
    """No token: the message says why, without the secret or any token."""


class TokenRefused(TokenError):
    """The token server answered, but with no usable token (the other client authentication may work)."""


@dataclass(frozen=True)
class Client:
    """A client of a token server. Backends whose clients are equal share one token."""

    token_url: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...] = ()
    params: tuple[tuple[str, str], ...] = ()  # endpoint_params, one pair per value

    def __repr__(self) -> str:  # never the secret
        return f"Client({self.name!r}, client_id={self.client_id!r})"

    @property
    def name(self) -> str:
        """The token URL for logs: no credentials, no query."""
        return str(URL(self.token_url).with_user(None).with_query(None).with_fragment(None))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _expires_in(value: Any) -> float:
    """Seconds until expiry; inf when the reply gives none (x/oauth2: a token without expiry never expires)."""
    # ASCII digits only: str.isdigit() is also true for "²" (int() raises) and "３６００" (int() reads 3600).
    if isinstance(value, str) and (digits := value.strip().lstrip("-")).isascii() and digits.isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is None or value == "":
        return math.inf
    if not isinstance(value, int) or isinstance(value, bool):
        raise TokenRefused("expires_in is not a number of seconds")
    return float(value) if value > 0 else math.inf


def read_token(content_type: str, body: bytes) -> tuple[str, float]:
    """The Authorization value and the lifetime in seconds of a token reply. Raises TokenRefused."""
    if content_type.split(";")[0].strip().lower() in _FORM_TYPES:
        doc: Any = dict(parse_qsl(body.decode("utf-8", "replace")))
    else:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise TokenRefused("the reply is not JSON") from None
        if not isinstance(doc, dict):
            raise TokenRefused("the reply is not a JSON object")
    token = _text(doc.get("access_token")) or ""
    if not token:
        raise TokenRefused("the reply has no access_token")
    if len(token) > MAX_TOKEN_CHARS or not all("!" <= c <= "~" for c in token):
        raise TokenRefused("access_token is not a valid header value")
    kind = _text(doc.get("token_type")) or "bearer"
    if not set(kind) <= _TCHAR:
        raise TokenRefused("token_type is not a valid authentication scheme")
    return f"{_SCHEMES.get(kind.lower(), kind)} {token}", _expires_in(doc.get("expires_in"))


def _oauth_error(body: bytes) -> str:
    """The OAuth2 `error` code of a refusal (e.g. invalid_client), when it is a plain one: safe to log."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    code = doc.get("error") if isinstance(doc, dict) else None
    return f" ({code})" if isinstance(code, str) and len(code) <= 64 and set(code) <= _TCHAR else ""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TokenError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"no answer within {FETCH_TIMEOUT:.0f} s"
    if isinstance(exc, ClientError):  # the client's text, with any URL in it cut to its scheme (credentials)
        text = _URL.sub(r"\1...", str(exc))
        return clipped(text)
    # The type and the OS's reason only: an error's text may hold the URL, which may carry credentials.
    strerror = getattr(exc, "strerror", None)
    return f"{type(exc).__name__}: {strerror}" if strerror else type(exc).__name__


class TokenSource:
    """The current token of one client, shared by the backends of a worker that use the same client."""

    def __init__(self, client: Client, http: HttpClient) -> None:
        self.client = client
        self._http = http  # the worker's client (lambdagate.client), with its TLS settings (client_tls)
        self._url = URL(client.token_url)
        # endpoint_params may replace grant_type (x/oauth2 allows it, for servers that want another value).
        replaced = any(name == "grant_type" for name, _ in client.params)
        form = [] if replaced else [("grant_type", "client_credentials")]
        if client.scopes:
            form.append(("scope", " ".join(client.scopes)))
        self._form = [*form, *client.params]
        credentials = f"{quote_plus(client.client_id)}:{quote_plus(client.client_secret)}"
        self._basic = "Basic " + base64.b64encode(credentials.encode()).decode()
        self._in_form: bool | None = None  # how the client authenticates; None until a token was issued
        self._value: str | None = None  # the Authorization value
        self._refresh_at = -math.inf  # loop time
        self._task: asyncio.Task | None = None
        self.fetches = 0  # token requests sent

    async def authorization(self) -> str:
        """The Authorization value for a backend call: the cached token, or the one a fetch brings (shared by every
        caller while it runs). Raises BackendError when no token can be had."""
        loop = asyncio.get_running_loop()
        if self._value is not None and loop.time() < self._refresh_at:
            return self._value
        task = self._task
        if task is None or task.done():
            task = self._task = loop.create_task(self._refresh())
        # Shielded: a caller that reaches its deadline stops waiting, the fetch goes on for the others.
        value, reason = await asyncio.shield(task)
        if value is None:
            raise BackendError("the backend failed", cause=f"OAuth2 token from {self.client.name}: {reason}")
        return value

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _refresh(self) -> tuple[str | None, str]:
        """(Authorization value, "") or (None, why); never raises but on cancellation."""
        started = asyncio.get_running_loop().time()
        try:
            if self._in_form is None:
                try:
                    value, lifetime = await self._request(in_form=False)
                    self._in_form = False
                except TokenRefused:  # KrakenD's auto-detection: then the credentials in the form
                    value, lifetime = await self._request(in_form=True)
                    self._in_form = True
            else:
                value, lifetime = await self._request(in_form=self._in_form)
        except Exception as exc:
            reason = _reason(exc)
            log.warning(
                "auth/client-credentials: no token from %s for client %r: %s",
                self.client.name,
                self.client.client_id,
                reason,
            )
            return None, reason
        self._value, self._refresh_at = value, started + lifetime - EXPIRY_MARGIN
        return value, ""

    async def _request(self, *, in_form: bool) -> tuple[str, float]:
        form = self._form
        headers = {
            "User-Agent": f"lambdagate/{__version__}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        if in_form:
            form = [*form, ("client_id", self.client.client_id), ("client_secret", self.client.client_secret)]
        else:
            headers["Authorization"] = self._basic
        self.fetches += 1
        body = urlencode(form).encode()
        try:
            async with asyncio.timeout(FETCH_TIMEOUT):
                reply = await self._http.request("POST", self._url, CIMultiDict(headers), body, limit=MAX_REPLY_BYTES)
        except TooLarge:
            raise TokenRefused(f"the reply is larger than {MAX_REPLY_BYTES} bytes") from None
        if not 200 <= reply.status < 300:
            raise TokenRefused(f"HTTP status {reply.status}{_oauth_error(reply.body)}")
        return read_token(reply.headers.get("Content-Type", ""), reply.body)

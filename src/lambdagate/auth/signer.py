"""`auth/signer`: sign fields of an endpoint's response into JWTs, as KrakenD's login-endpoint pattern does.

```json
"extra_config": {"auth/signer": {"alg": "HS256", "kid": "sim2", "keys_to_sign": ["access_token", "refresh_token"],
                                 "jwk_local_path": "jwk_private_key.json"}}
```
A backend (the login service) answers with the claims, e.g. `{"access_token": {"sub": "u1", "exp": 1735689600}}`;
each field named in `keys_to_sign` whose value is an object is replaced by that object signed as a JWT (compact,
or the JWS JSON serialization as a string with `"full": true`). The claims are signed as the backend gave them:
the signer adds no `exp` or `iat`. As in KrakenD, a listed field that is missing, or is no object, is left as it is.

It runs after the backends are merged, before rendering (a pipeline response step). When every backend failed,
the endpoint's usual error is rendered. A reply passed through as is (a function's HTTP reply, `no-op`) is signed
too when it is a 2xx JSON object. Signing that fails gives 500 and no data; while a key set from `jwk_url` has not
loaded yet, the endpoint answers 503 (it is retried in the background every 10 s). Replies of a signing endpoint
are per user: `cache_ttl` gives `Cache-Control: private`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictBool, StrictInt, StrictStr

from lambdagate.auth.config import JWK_FILE, tls_trust
from lambdagate.auth.jwks import ALGORITHMS, tls_context
from lambdagate.auth.signing_keys import RemoteSet, SigningKeyError, TokenSigner, fetch_set, pick_key
from lambdagate.backends.reply_data import TooDeep, load_json
from lambdagate.client.base import ClientError, HttpClient
from lambdagate.config import files
from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError
from lambdagate.errors import BackendError, clipped
from lambdagate.pipeline import ResponseStep
from lambdagate.pipeline.fanout import MergedResponse

if TYPE_CHECKING:
    from lambdagate.backends import Resources
    from lambdagate.config.model import EndpointConfig, ServiceConfig

NAMESPACE = "auth/signer"
LEGACY_NAMES = ("github.com/devopsfaith/krakend-jose/signer",)
RETRY_INTERVAL = 10.0  # seconds between attempts to load a key set from jwk_url that failed
STARTUP_WAIT = 3.0  # how long a worker's start waits for the first attempt (each takes up to FETCH_TIMEOUT)
_EXAMPLE = '{"alg": "HS256", "kid": "sim2", "keys_to_sign": ["access_token"], "jwk_local_path": "keys.json"}'
_REFUSED = "encrypted key files (secret_url, cypher_key) are not supported: give a plain JWK set in jwk_local_path"

log = logging.getLogger("lambdagate.signer")


class SignerConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    alg: StrictStr = ""  # one of ALGORITHMS; checked in parse() (KrakenD has no default)
    kid: StrictStr = ""
    typ: StrictStr = "JWT"
    keys_to_sign: list[StrictStr] = Field(default_factory=list)
    full: StrictBool = False
    jwk_url: StrictStr = ""
    jwk_local_path: StrictStr = ""
    jwk_local_ca: StrictStr = ""
    disable_jwk_security: StrictBool = False
    jwk_fingerprints: list[StrictStr] = Field(default_factory=list)
    cipher_suites: list[StrictInt] = Field(default_factory=list)  # accepted and ignored
    # Set by parse(): the key read from jwk_local_path, or where to fetch the set from.
    _key: Any = PrivateAttr(default=None)
    _remote: RemoteSet | None = PrivateAttr(default=None)

    @property
    def local_key(self) -> Any:
        """The signing key read from jwk_local_path (None with jwk_url)."""
        return self._key

    @property
    def remote(self) -> RemoteSet | None:
        """Where the key set is fetched from (None with jwk_local_path)."""
        return self._remote

    def signer(self, key: Any) -> TokenSigner:
        return TokenSigner(key, self.alg, self.kid, self.typ or "JWT", self.full)


def parse(value: Any, ctx: NamespaceContext) -> SignerConfig:
    cfg = parse_namespace_model(SignerConfig, value, ctx, _EXAMPLE)
    issues: list[tuple[str, str]] = [
        (key, _REFUSED) for key in ("secret_url", "cypher_key") if key in (cfg.model_extra or {})
    ]
    if cfg.alg not in ALGORITHMS:
        got = f", got {cfg.alg!r}" if cfg.alg else ""
        issues.append(("alg", f"must be one of {', '.join(ALGORITHMS)} (never none){got}"))
        raise NamespaceError(issues)  # the key cannot be checked without it
    if cfg.cipher_suites:
        ctx.warnings.append(
            ("cipher_suites", "accepted and ignored: TLS cipher suites are Python's defaults (TLS 1.2 or later)")
        )
    if not cfg.keys_to_sign:
        ctx.warnings.append(("keys_to_sign", "is empty: no field of the response is signed"))
    if bool(cfg.jwk_url) == bool(cfg.jwk_local_path):
        given = "both are" if cfg.jwk_url else "neither is"
        issues.append(
            (
                "",
                f'give exactly one of "jwk_local_path" (a JWK set file) or "jwk_url" (a JWK set served '
                f"over HTTPS); {given} given",
            )
        )
    elif cfg.jwk_local_path:
        _read_local_key(cfg, ctx, issues)
    else:
        _check_remote(cfg, issues)
    if issues:
        raise NamespaceError(issues)
    return cfg


def _read_local_key(cfg: SignerConfig, ctx: NamespaceContext, issues: list[tuple[str, str]]) -> None:
    for name in ("jwk_fingerprints", "jwk_local_ca"):
        if getattr(cfg, name):
            ctx.warnings.append((name, "applies to jwk_url only, ignored with jwk_local_path"))
    path = cfg.jwk_local_path
    try:
        with open(path, "rb") as f:
            data = f.read(2 * 1024 * 1024)
    except OSError as exc:
        issues.append(("jwk_local_path", files.unreadable(path, exc, JWK_FILE)))
        return
    try:
        cfg._key, notes = pick_key(data, cfg.kid, cfg.alg)
    except SigningKeyError as exc:
        issues.append(("jwk_local_path", f"{path!r}: {exc}"))
        return
    ctx.warnings.extend(("jwk_local_path", f"{path!r}: {note}") for note in notes)


def _check_remote(cfg: SignerConfig, issues: list[tuple[str, str]]) -> None:
    url = cfg.jwk_url
    if not url.startswith(("https://", "http://")):
        issues.append(("jwk_url", f'{url!r} is not an http(s) URL: write it like "https://keys.example.com/jwks.json"'))
        return
    https = url.startswith("https://")
    if not https and not cfg.disable_jwk_security:
        issues.append(
            (
                "jwk_url",
                f"{url!r} is plain HTTP, so the signing keys could be read or replaced on the way: "
                'use https, or set "disable_jwk_security": true',
            )
        )
    pins = tls_trust(cfg.jwk_fingerprints, cfg.jwk_local_ca, https, issues)
    cfg._remote = RemoteSet(url, cfg.disable_jwk_security, cfg.jwk_local_ca, pins)


SIGNER_NAMESPACE = Namespace(NAMESPACE, "endpoint", parse, aliases=LEGACY_NAMES)


class SigningStep:
    """One endpoint's signer: signs the listed fields of each merged response."""

    def __init__(self, label: str, keys: list[str]) -> None:
        self.label = label  # "POST /login", for logs
        self.keys = tuple(dict.fromkeys(keys))
        self.signer: TokenSigner | None = None  # None while a remote key set has not loaded

    def apply(self, outcome: MergedResponse) -> MergedResponse:
        resp = outcome.response
        if resp is None:  # every backend failed: their error is rendered
            return outcome
        signer = self.signer
        if signer is None:
            return MergedResponse(
                None,
                False,
                BackendError(
                    "the signing key is not available", status=503, retry_after=str(max(1, round(RETRY_INTERVAL)))
                ),
            )
        try:
            if resp.body is None:
                if resp.data:
                    self._sign_fields(signer, resp.data)
            elif 200 <= resp.status < 300:
                resp.body = self._sign_body(signer, resp.body)
        except Exception as exc:
            # The reason only: the claims and the key stay out of the log.
            log.error("auth/signer %s: the response could not be signed: %s", self.label, type(exc).__name__)
            return MergedResponse(None, False, BackendError("the response could not be signed", status=500))
        return outcome

    def _sign_fields(self, signer: TokenSigner, data: dict[str, Any]) -> bool:
        signed = False
        for key in self.keys:
            value = data.get(key)
            if isinstance(value, dict):  # KrakenD signs objects only; anything else is left as it is
                data[key] = signer.sign(value)
                signed = True
        return signed

    def _sign_body(self, signer: TokenSigner, body: bytes) -> bytes:
        """A pass-through reply's body, with its fields signed when it is a JSON object."""
        try:
            doc = load_json(body)
        except (orjson.JSONDecodeError, TooDeep):
            return body
        if isinstance(doc, dict) and self._sign_fields(signer, doc):
            return orjson.dumps(doc)
        return body

    async def load_remote(self, cfg: SignerConfig, remote: RemoteSet, resources: Resources) -> None:
        """Fetches the key set, then again every RETRY_INTERVAL seconds until it loads. Start-up waits for the first
        attempt at most STARTUP_WAIT seconds; a slower one goes on in the background."""
        attempted = asyncio.Event()
        context = tls_context(remote)  # one for every attempt: the client pools connections per TLS context

        async def keep_fetching() -> None:
            while not await self._fetch(cfg, remote, resources.client, context):
                attempted.set()
                await asyncio.sleep(RETRY_INTERVAL)
            attempted.set()

        task = asyncio.get_running_loop().create_task(keep_fetching())

        async def stop() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        resources.on_close(stop)
        try:
            await asyncio.wait_for(attempted.wait(), STARTUP_WAIT)
        except TimeoutError:
            pass
        if self.signer is None:
            log.warning(
                "auth/signer %s: no signing key yet: the endpoint answers 503 until the key set at %s loads "
                "(tried every %.0f s)",
                self.label,
                remote.name,
                RETRY_INTERVAL,
            )

    async def _fetch(self, cfg: SignerConfig, remote: RemoteSet, client: HttpClient, context: ssl.SSLContext) -> bool:
        try:
            key, notes = pick_key(await fetch_set(remote, client, context), cfg.kid, cfg.alg)
        except (SigningKeyError, ClientError, TimeoutError, ssl.SSLError, OSError) as exc:
            log.warning("auth/signer %s: key set %s: %s", self.label, remote.name, _reason(exc))
            return False
        for note in notes:
            log.warning("auth/signer %s: key set %s: %s", self.label, remote.name, note)
        self.signer = cfg.signer(key)
        log.info("auth/signer %s: signing key %r loaded from %s", self.label, cfg.kid, remote.name)
        return True


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer within the fetch timeout"
    text = str(exc) or type(exc).__name__
    return clipped(text)


async def signer_step(service: ServiceConfig, endpoint: EndpointConfig, resources: Resources) -> ResponseStep | None:
    """The endpoint's signing step, when it has `auth/signer`."""
    cfg: SignerConfig | None = endpoint.namespaces.get(NAMESPACE)
    if cfg is None:
        return None
    step = SigningStep(f"{endpoint.method} {endpoint.endpoint}", cfg.keys_to_sign)
    if cfg.remote is None:
        step.signer = cfg.signer(cfg.local_key)
    else:
        await step.load_remote(cfg, cfg.remote, resources)
    return ResponseStep(step.apply, per_user=True)

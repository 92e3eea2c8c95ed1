"""Key sets for JWT validation: a JWK set from a local file or from a URL, imported with joserfc, kept fresh.

A remote set is fetched at start-up, used for its lifetime, and refreshed in the background before that ends.
A token naming a key the set lacks triggers a refetch, at most one per `MIN_REFETCH_INTERVAL` per source, so a
flood of made-up key ids cannot hammer the key server. A failed fetch keeps the last good set until its lifetime
ends; after that, or while no set has ever loaded, no token can be checked and the validator answers 503:
never open. A source is shared by every endpoint of the worker that names the same set.

The validated-token cache lives here too: verifying an RS256 signature costs about 40 µs of CPU, a cache hit about
1 µs. Entries are bounded in count and bytes and dropped whenever the key set changes or expires.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import math
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from joserfc.jwk import import_key
from joserfc.jws import JWSRegistry
from multidict import CIMultiDict
from yarl import URL

from lambdagate import __version__
from lambdagate.backends.redirects import CallPolicy, call
from lambdagate.client.base import ClientError, HttpClient, TooLarge
from lambdagate.errors import clipped

# At most one fetch per source in this many seconds, triggered by tokens (unknown key ids) or after a failure.
MIN_REFETCH_INTERVAL = 10.0
FETCH_TIMEOUT = 5.0  # one fetch of a JWK set, connection included
STARTUP_WAIT = 3.0  # how long start-up waits for a first set before serving (503 until it loads)
REFRESH_AT = 0.75  # a set is refreshed in the background after this fraction of its lifetime
MAX_JWKS_BYTES = 1024 * 1024
# The JWS algorithms lambdagate validates and signs with (`alg`); never `none`.
ALGORITHMS = (
    "EdDSA",
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
)
MAX_KEYS = 1000
# The validated-token cache, per source: bounded in entries and in token bytes (claims are at most a few times
# their token's size, and tokens are at most 8 KiB).
CACHE_ENTRIES = 4096
CACHE_BYTES = 4 * 1024 * 1024

log = logging.getLogger("lambdagate.jwt")


class KeySetError(Exception):
    """A JWK set could not be loaded; the message says why (no secret, no key material)."""


class UnknownKey(Exception):
    """The set has no key with the token's id (after a refetch, when the refetch limit allowed one)."""


class NoKeySet(Exception):
    """No usable key set: none has loaded yet, or the last one outlived its lifetime and cannot be refreshed."""


def jws_algorithm(name: str) -> Any:
    """joserfc's model of a JWS algorithm ("RS256", ...): `check_key(key)` raises unless the key fits it (type,
    "use", "alg"), `verify(signing_input, signature, key)` says whether the signature is valid."""
    return JWSRegistry.algorithms[name]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _thumbprint(jwk: dict[str, Any], name: str) -> str:
    """A key's "x5t" or "x5t#S256", as KrakenD compares it: unpadded base64url; computed from "x5c" if absent."""
    given = jwk.get(name)
    if isinstance(given, str) and given:
        try:
            return _b64(base64.urlsafe_b64decode(given + "=" * (-len(given) % 4)))
        except (binascii.Error, ValueError):
            return ""
    chain = jwk.get("x5c")
    if isinstance(chain, list) and chain and isinstance(chain[0], str):
        try:
            der = base64.b64decode(chain[0], validate=True)
        except (binascii.Error, ValueError):
            return ""
        return _b64((hashlib.sha256 if name == "x5t#S256" else hashlib.sha1)(der).digest())
    return ""


def key_id(jwk: dict[str, Any], strategy: str) -> str:
    """The id a key is found by, for each of KrakenD's key_identify_strategy values."""
    kid = jwk.get("kid") if isinstance(jwk.get("kid"), str) else ""
    if strategy == "kid":
        return kid
    if strategy == "kid_x5t":
        return kid + _thumbprint(jwk, "x5t")
    return _thumbprint(jwk, strategy)


class KeySet:
    """Imported keys by id. `digest` tells whether a refetched set changed."""

    __slots__ = ("keys", "digest", "skipped")

    def __init__(self, keys: dict[str, Any], digest: bytes, skipped: list[str]) -> None:
        self.keys = keys
        self.digest = digest
        self.skipped = skipped

    def fits(self, kid: str, alg: Any) -> bool:
        key = self.keys.get(kid)
        if key is None:
            return False
        try:
            alg.check_key(key)
        except Exception:
            return False
        return True


def import_key_set(data: bytes, strategy: str) -> KeySet:
    """A JWK set ({"keys": [...]}) imported. Keys that cannot be imported are skipped (a set may hold key types
    this library does not know); a set with no usable key is an error."""
    if len(data) > MAX_JWKS_BYTES:
        raise KeySetError(f"the JWK set is larger than {MAX_JWKS_BYTES} bytes")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise KeySetError("the JWK set is not JSON") from None
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise KeySetError('not a JWK set: expected {"keys": [...]} with at least one key')
    keys: dict[str, Any] = {}
    skipped: list[str] = []
    for i, jwk in enumerate(entries[:MAX_KEYS]):
        try:
            key = import_key(jwk)
        except Exception as exc:
            skipped.append(f"keys[{i}]: {type(exc).__name__}")
            continue
        keys.setdefault(key_id(jwk, strategy), key)
    if not keys:
        raise KeySetError(f"no key of the set could be imported ({'; '.join(skipped[:5])})")
    return KeySet(keys, hashlib.sha256(data).digest(), skipped)


class TokenCache:
    """Tokens whose signature was verified, with their header's alg, their claims and their registered claims
    (bounded, oldest out first). The validator still checks every rule on a hit (time, issuer, audience, roles,
    scopes): only the parsing, the type checks and the signature are saved."""

    __slots__ = ("entries", "size")

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, dict[str, Any], Any]] = {}  # token → (alg, claims, Registered)
        self.size = 0

    def put(self, token: str, alg: str, claims: dict[str, Any], registered: Any) -> None:
        entries = self.entries
        if token in entries:
            return
        while entries and (len(entries) >= CACHE_ENTRIES or self.size + len(token) > CACHE_BYTES):
            oldest = next(iter(entries))
            del entries[oldest]
            self.size -= len(oldest)
        entries[token] = (alg, claims, registered)
        self.size += len(token)

    def drop(self, token: str) -> None:
        if self.entries.pop(token, None) is not None:
            self.size -= len(token)

    def clear(self) -> None:
        self.entries.clear()
        self.size = 0


Fetch = Callable[[], Awaitable[bytes]]


class KeySource:
    """One JWK set as the validators of a worker see it: the keys, their freshness, and the fetches."""

    def __init__(
        self,
        name: str,
        strategy: str,
        *,
        keys: KeySet | None = None,
        fetch: Fetch | None = None,
        lifetime: float = math.inf,
    ) -> None:
        self.name = name  # for logs: the URL without credentials or query, or the file
        self.strategy = strategy
        self.keys = keys.keys if keys is not None else {}
        self.digest = keys.digest if keys is not None else b""
        self.lifetime = lifetime
        self.fetched_at = time.monotonic() if keys is not None else -math.inf
        self.expires_at = math.inf if keys is not None and fetch is None else -math.inf
        self.refresh_at = math.inf
        self.cooldown = 0.0  # the longest failed_jwk_key_cooldown of the endpoints sharing the source
        self.cache = TokenCache()
        self._fetch = fetch
        self._task: asyncio.Task | None = None
        self._next_fetch_at = -math.inf

    def shorten(self, lifetime: float) -> None:
        """An endpoint sharing the source wants fresher keys."""
        self.lifetime = min(self.lifetime, lifetime)
        if self._fetch is not None and self.fetched_at > -math.inf:
            self._set_times(self.fetched_at)

    def _set_times(self, fetched_at: float) -> None:
        self.fetched_at = fetched_at
        self.expires_at = fetched_at + self.lifetime
        self.refresh_at = fetched_at + self.lifetime * REFRESH_AT

    def usable(self, now: float) -> bool:
        return now < self.expires_at

    def serves(self, now: float) -> bool:
        """Whether the set may be used now; starts a background refresh when one is due (cached tokens use the
        set without looking a key up, and must not keep it from being refreshed)."""
        if now >= self.refresh_at and now < self.expires_at:
            self._fetching(now)
        return now < self.expires_at

    async def start(self) -> None:
        """The first fetch, at start-up: waited for at most STARTUP_WAIT seconds, then left to finish."""
        if self._fetch is None or self._task is not None or self.fetched_at > -math.inf:
            return
        self._task = asyncio.get_running_loop().create_task(self._refresh())
        await asyncio.wait({self._task}, timeout=STARTUP_WAIT)
        if not self.usable(time.monotonic()):
            log.warning(
                "JWK set %s is not loaded yet: endpoints that validate tokens with it answer 503 until it "
                "loads (retried at most every %.0f s)",
                self.name,
                self._interval(),
            )

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _interval(self) -> float:
        return max(MIN_REFETCH_INTERVAL, self.cooldown)

    def _fetching(self, now: float) -> asyncio.Task | None:
        """The fetch in flight, or a new one if the refetch limit allows it, or None."""
        if self._task is not None and not self._task.done():
            return self._task
        if self._fetch is None or now < self._next_fetch_at:
            return None
        self._next_fetch_at = now + self._interval()
        self._task = asyncio.get_running_loop().create_task(self._refresh())
        return self._task

    async def find(self, kid: str, wait: float) -> Any:
        """The key with this id. Refetches the set when the id is unknown (or the set is stale), within the refetch
        limit, waiting at most `wait` seconds. Raises NoKeySet when no usable set exists, UnknownKey for an
        unknown id."""
        now = time.monotonic()
        if self.serves(now):  # a due refresh runs in the background: this request goes on with the current set
            key = self.keys.get(kid)
            if key is not None:
                return key
        task = self._fetching(now)
        if task is not None:
            await asyncio.wait({task}, timeout=wait)
            now = time.monotonic()
        if now >= self.expires_at:
            raise NoKeySet(self.name)
        key = self.keys.get(kid)
        if key is None:
            raise UnknownKey(kid)
        return key

    async def _refresh(self) -> None:
        assert self._fetch is not None
        try:
            keys = import_key_set(await self._fetch(), self.strategy)
        except (KeySetError, ClientError, TimeoutError, ssl.SSLError, OSError) as exc:
            self._next_fetch_at = max(self._next_fetch_at, time.monotonic() + self._interval())
            still = "the last set is used until it expires" if self.usable(time.monotonic()) else "503 until it loads"
            log.warning(
                "JWK set %s: fetch failed (%s): %s; next attempt in %.0f s at the earliest",
                self.name,
                _reason(exc),
                still,
                self._interval(),
            )
            return
        if keys.digest != self.digest:
            self.cache.clear()  # a removed key must not keep its tokens valid
            log.info(
                "JWK set %s loaded: %d key(s)%s",
                self.name,
                len(keys.keys),
                f", {len(keys.skipped)} skipped ({'; '.join(keys.skipped[:3])})" if keys.skipped else "",
            )
        self.keys, self.digest = keys.keys, keys.digest
        self._set_times(time.monotonic())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {FETCH_TIMEOUT:.0f} s"
    text = str(exc) or type(exc).__name__
    return clipped(text)


@dataclass(frozen=True)
class RemoteSettings:
    """What identifies a remote set: endpoints naming the same URL with the same TLS rules share one source."""

    url: str
    local_ca: str = ""
    insecure: bool = False  # disable_jwk_security: plain HTTP allowed and certificates not verified, as KrakenD
    pins: tuple[bytes, ...] = ()


class TlsTrust(Protocol):
    """What a key server's TLS is checked against (RemoteSettings here, the signer's RemoteSet)."""

    local_ca: str
    insecure: bool
    pins: tuple[bytes, ...]


def tls_context(settings: TlsTrust) -> ssl.SSLContext:
    """TLS for a key server: TLS 1.2+, `jwk_local_ca` trusted besides the system's, `disable_jwk_security`, and the
    `jwk_fingerprints` pins (the validator's and the signer's key sets follow the same rules)."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.local_ca:
        context.load_verify_locations(cafile=settings.local_ca)
    if settings.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.pins:
        context.sslobject_class = _pinned(settings.pins)
    return context


def _public_key_pin(der: bytes) -> bytes:
    """SHA-256 of a certificate's SubjectPublicKeyInfo, as KrakenD's jwk_fingerprints hold it."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    spki = (
        x509.load_der_x509_certificate(der).public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    return hashlib.sha256(spki).digest()


def _pinned(pins: tuple[bytes, ...]) -> type[ssl.SSLObject]:
    """TLS connections that fail their handshake unless the server's certificate holds one of the pinned keys,
    checked on the connection itself before any request is sent (KrakenD accepts a pin of any certificate of the
    chain; Python 3.11 shows only the server's own)."""

    class PinnedSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()  # raises SSLWantReadError until the handshake is done
            der = self.getpeercert(binary_form=True)
            if not der or _public_key_pin(der) not in pins:
                raise ssl.SSLError("the server's certificate key matches none of jwk_fingerprints")

    return PinnedSSLObject


KEY_SET_REDIRECTS = 3  # redirects a key set fetch follows (the next one fails it)


async def fetch_key_set(client: HttpClient, url: str, context: ssl.SSLContext, accept_json: bool = True) -> bytes:
    """GET a JWK set through the gateway's client: bounded in size, never redirected from HTTPS to another scheme.
    The caller bounds the time. Credentials in the URL are sent as HTTP Basic (as Go's client sends them)."""
    target = URL(url)
    headers = CIMultiDict({"User-Agent": f"lambdagate/{__version__}"})
    if accept_json:
        headers["Accept"] = "application/json"
    if target.user is not None:
        pair = f"{target.user}:{target.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        target = target.with_user(None)
    policy = CallPolicy(ssl=context, max_redirects=KEY_SET_REDIRECTS + 1, https_only=True)
    try:
        reply = await call(client, "GET", target, headers, None, policy, MAX_JWKS_BYTES)
    except TooLarge:
        raise KeySetError(f"the JWK set is larger than {MAX_JWKS_BYTES} bytes") from None
    if reply.status != 200:
        raise KeySetError(f"HTTP status {reply.status}")
    return reply.body


class JwksFetcher:
    """GETs one JWK set URL with its own TLS rules, through the worker's client; bounded in size and time."""

    def __init__(self, settings: RemoteSettings, client: HttpClient) -> None:
        self.settings = settings
        self.client = client
        self.context = tls_context(settings)  # one per source: the client pools connections per TLS context

    async def __call__(self) -> bytes:
        async with asyncio.timeout(FETCH_TIMEOUT):
            return await fetch_key_set(self.client, self.settings.url, self.context)

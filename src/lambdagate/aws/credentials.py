"""AWS region and credential resolution for the signer.

botocore/aiobotocore do the resolving (the standard chain: env, shared files and AWS_PROFILE,
SSO, web identity, ECS, IMDS, plus optional STS AssumeRole); this module turns that into a
synchronous, cheap ``current()`` for the request path, refreshed in the background so that a
credential refresh never blocks the event loop nor fails a request.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import time

import botocore.exceptions
import botocore.session
from aiobotocore.credentials import AioAssumeRoleCredentialFetcher, AioDeferredRefreshableCredentials
from aiobotocore.session import AioSession
from botocore.credentials import RefreshableCredentials

from lambdagate.aws.sigv4 import Credentials

__all__ = ["CredentialProvider", "NoCredentialsError", "resolve_region"]

_log = logging.getLogger("lambdagate.aws.credentials")
_REFRESH_INTERVAL = 1.0  # seconds between background re-reads of botocore's refreshable credentials


def resolve_region(explicit: str | None) -> tuple[str | None, list[str]]:
    """The region from: explicit → env AWS_REGION → AWS_DEFAULT_REGION → the profile's region.

    Returns ``(region or None, places looked, in order)`` so the caller can say where it looked.
    """
    looked = ["explicit setting"]
    if explicit:
        return explicit, looked
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        looked.append(f"env {var}")
        if os.environ.get(var):
            return os.environ[var], looked
    session = botocore.session.Session()
    profile = session.get_config_variable("profile") or "default"
    config_file = os.path.expanduser(session.get_config_variable("config_file"))
    looked.append(f"profile {profile!r} in {config_file}")
    try:
        region = session.get_scoped_config().get("region")
    except botocore.exceptions.ProfileNotFound:
        looked[-1] += " (profile not found)"
        region = None
    return region or None, looked


class NoCredentialsError(Exception):
    """No usable AWS credentials could be obtained."""


def _chain_description(session: AioSession) -> str:
    profile = session.get_config_variable("profile") or "default"
    return (
        "env AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, shared credentials file "
        f"{os.path.expanduser(session.get_config_variable('credentials_file'))} and config file "
        f"{os.path.expanduser(session.get_config_variable('config_file'))} (profile {profile!r}), "
        "SSO, web identity (AWS_WEB_IDENTITY_TOKEN_FILE), container credentials (ECS/EKS), EC2 instance metadata"
    )


class CredentialProvider:
    """Hands the current frozen credentials to the signer; see the module docstring."""

    def __init__(
        self,
        frozen: Credentials,
        source: object | None = None,
        *,
        method: str = "static",
        session: AioSession | None = None,
        refresh_interval: float = _REFRESH_INTERVAL,
    ) -> None:
        # Use create()/static()/from_botocore(); this constructor is the shared plumbing.
        self._frozen = frozen
        self._source = source  # botocore RefreshableCredentials, or None when nothing can change
        self._session = session  # kept alive: refresh functions of SSO/IMDS/STS may reference it
        self._interval = refresh_interval
        self._checked_at = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self.method = method  # where botocore found them, e.g. "env", "shared-credentials-file", "assume-role"

    @classmethod
    def static(cls, credentials: Credentials) -> CredentialProvider:
        """Fixed credentials (local endpoints, tests)."""
        return cls(credentials)

    @classmethod
    async def from_botocore(
        cls, credentials: object, *, session: AioSession | None = None, refresh_interval: float = _REFRESH_INTERVAL
    ) -> CredentialProvider:
        """Wrap a botocore/aiobotocore credentials object (refreshable or not)."""
        frozen = await _freeze(credentials)
        refreshable = isinstance(credentials, RefreshableCredentials)
        return cls(
            frozen,
            credentials if refreshable else None,
            method=getattr(credentials, "method", "unknown"),
            session=session,
            refresh_interval=refresh_interval,
        )

    @classmethod
    async def create(
        cls,
        *,
        assume_role_arn: str | None = None,
        external_id: str | None = None,
        role_session_name: str | None = None,
        region: str | None = None,
    ) -> CredentialProvider:
        """Resolve credentials with botocore's standard chain, optionally assuming a role on top.

        Raises NoCredentialsError, naming the places looked, when nothing yields credentials.
        """
        session = AioSession()
        try:
            base = await session.get_credentials()
        except botocore.exceptions.BotoCoreError as exc:  # e.g. ProfileNotFound, broken config file
            raise NoCredentialsError(f"AWS credentials could not be loaded: {exc}") from exc
        if base is None:
            raise NoCredentialsError(f"no AWS credentials found; looked in: {_chain_description(session)}")
        creds: object = base
        if assume_role_arn:
            sts_region = region or resolve_region(None)[0] or "us-east-1"
            client_creator = functools.partial(
                session.create_client,
                region_name=sts_region,
                endpoint_url=os.environ.get("AWS_ENDPOINT_URL_STS") or None,
            )
            extra: dict[str, str] = {"RoleSessionName": role_session_name or "lambdagate"}
            if external_id:
                extra["ExternalId"] = external_id
            fetcher = AioAssumeRoleCredentialFetcher(client_creator, base, assume_role_arn, extra_args=extra)
            # Deferred: botocore calls STS now and again before expiry (15/10 min advisory/mandatory windows).
            creds = AioDeferredRefreshableCredentials(fetcher.fetch_credentials, method="assume-role")
        try:
            provider = await cls.from_botocore(creds, session=session)
        except Exception as exc:
            what = f"assuming role {assume_role_arn}" if assume_role_arn else f"reading credentials ({base.method})"
            raise NoCredentialsError(f"AWS credentials unusable: {what} failed: {exc}") from exc
        _log.info(
            "AWS credentials from %s%s", base.method, f", assuming role {assume_role_arn}" if assume_role_arn else ""
        )
        if provider._source is not None:
            provider._keeper = asyncio.get_running_loop().create_task(provider._keep_fresh())
        return provider

    def current(self) -> Credentials:
        """The cached credentials; sync and cheap. Schedules (never awaits) a refresh when stale."""
        if self._source is not None and self._task is None:
            now = time.monotonic()
            if now - self._checked_at >= self._interval:
                self._checked_at = now
                try:
                    self._task = asyncio.get_running_loop().create_task(self._background_refresh())
                except RuntimeError:  # no running loop (sync caller): serve the cached value
                    pass
        return self._frozen

    async def refresh(self) -> Credentials:
        """Re-read the credentials now (botocore refreshes them if they are near expiry)."""
        if self._source is not None:
            frozen = await _freeze(self._source)
            if frozen != self._frozen:
                self._frozen = frozen
            self._checked_at = time.monotonic()
        return self._frozen

    async def _keep_fresh(self) -> None:
        """Check as the request path does, even when no request comes: a worker idle for longer than its
        credentials live (or started long before its first request) must not sign with expired ones."""
        while True:
            await asyncio.sleep(self._interval)
            self.current()

    async def _background_refresh(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:  # keep serving the old credentials; botocore's message holds no secrets
            _log.warning(
                "AWS credential refresh (%s) failed, keeping the current ones: %s: %s",
                self.method,
                type(exc).__name__,
                exc,
            )
        finally:
            self._task = None

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            self._keeper = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def __repr__(self) -> str:
        return f"CredentialProvider(method={self.method!r}, access_key={self._frozen.access_key!r})"


async def _freeze(credentials: object) -> Credentials:
    ro = credentials.get_frozen_credentials()  # type: ignore[attr-defined]
    if inspect.isawaitable(ro):  # aiobotocore; plain botocore objects answer synchronously
        ro = await ro
    if not ro.access_key or not ro.secret_key:
        raise NoCredentialsError("credentials have an empty access key or secret key")
    return Credentials(ro.access_key, ro.secret_key, ro.token or None)

"""Region and credential resolution: botocore's real chain on isolated env/files, botocore
refreshable credentials with a fake clock, and STS AssumeRole against a real moto_server."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import time

import boto3
import pytest
from aiobotocore.credentials import AioRefreshableCredentials

from lambdagate.aws.credentials import CredentialProvider, NoCredentialsError, resolve_region
from lambdagate.aws.sigv4 import Credentials
from tests.support.moto import REGION, ROLE_ARN, ROLE_NAME, moto_server
from tests.support.procs import free_port


def run(coro, timeout: float = 30.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """No AWS_* variables, empty shared files, IMDS disabled: nothing outside the test can leak in."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    creds_file, config_file = tmp_path / "credentials", tmp_path / "config"
    creds_file.write_text("")
    config_file.write_text("")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds_file))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config_file))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return creds_file, config_file


# ---------------------------------------------------------------------------------- region


def test_region_explicit_wins(aws_env, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert resolve_region("ap-south-1") == ("ap-south-1", ["explicit setting"])


def test_region_env_order(aws_env, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    assert resolve_region(None) == ("eu-west-2", ["explicit setting", "env AWS_REGION", "env AWS_DEFAULT_REGION"])
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert resolve_region(None) == ("eu-west-1", ["explicit setting", "env AWS_REGION"])


def test_region_from_profile(aws_env, monkeypatch):
    _, config_file = aws_env
    config_file.write_text("[default]\nregion = us-west-1\n\n[profile dev]\nregion = ap-southeast-2\n")
    region, looked = resolve_region(None)
    assert region == "us-west-1"
    assert looked[-1] == f"profile 'default' in {config_file}"
    monkeypatch.setenv("AWS_PROFILE", "dev")
    region, looked = resolve_region(None)
    assert region == "ap-southeast-2" and looked[-1] == f"profile 'dev' in {config_file}"


def test_region_nowhere(aws_env, monkeypatch):
    _, config_file = aws_env
    region, looked = resolve_region(None)
    assert region is None
    assert looked == [
        "explicit setting",
        "env AWS_REGION",
        "env AWS_DEFAULT_REGION",
        f"profile 'default' in {config_file}",
    ]
    monkeypatch.setenv("AWS_PROFILE", "missing")
    region, looked = resolve_region(None)
    assert region is None and "profile 'missing'" in looked[-1] and "not found" in looked[-1]


# ----------------------------------------------------------------------------- credentials


def test_no_credentials_anywhere(aws_env):
    creds_file, config_file = aws_env
    t0 = time.monotonic()
    with pytest.raises(NoCredentialsError) as ei:
        run(CredentialProvider.create())
    assert time.monotonic() - t0 < 10
    msg = str(ei.value)
    assert "no AWS credentials found" in msg
    assert str(creds_file) in msg and str(config_file) in msg and "instance metadata" in msg


def test_unknown_profile_is_a_clear_error(aws_env, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "nope")
    with pytest.raises(NoCredentialsError, match="nope"):
        run(CredentialProvider.create())


def test_env_keys(aws_env, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-token")

    async def body():
        provider = await CredentialProvider.create()
        try:
            assert provider.current() == Credentials("AKIAENVEXAMPLE", "env-secret", "env-token")
            assert provider.method == "env"
            assert "env-secret" not in repr(provider) and "env-token" not in repr(provider)
            assert await provider.refresh() == provider.current()
        finally:
            await provider.close()

    run(body())


def test_shared_files_and_profile(aws_env, monkeypatch):
    creds_file, config_file = aws_env
    creds_file.write_text(
        "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = default-secret\n\n"
        "[dev]\naws_access_key_id = AKIADEV\naws_secret_access_key = dev-secret\n"
        "aws_session_token = dev-token\n"
    )
    config_file.write_text("[profile dev]\nregion = eu-north-1\n")

    async def body():
        provider = await CredentialProvider.create()
        assert provider.current() == Credentials("AKIADEFAULT", "default-secret", None)
        assert provider.method == "shared-credentials-file"
        await provider.close()
        monkeypatch.setenv("AWS_PROFILE", "dev")
        provider = await CredentialProvider.create()
        assert provider.current() == Credentials("AKIADEV", "dev-secret", "dev-token")
        await provider.close()

    run(body())
    assert resolve_region(None)[0] == "eu-north-1"


def test_static_provider():
    creds = Credentials("AK", "SK", None)
    provider = CredentialProvider.static(creds)
    assert provider.current() is creds  # works without an event loop too
    assert run(provider.refresh()) is creds
    run(provider.close())


# ------------------------------------------------------------- refreshable (botocore objects)


class FakeClock:
    def __init__(self):
        self.now = datetime.datetime.now(datetime.UTC)

    def __call__(self):
        return self.now

    def advance(self, **delta):
        self.now += datetime.timedelta(**delta)


def refreshable(clock: FakeClock, refresh_using, minutes_left: float = 60):
    """botocore's own refreshable credentials (15 min advisory / 10 min mandatory windows), on a fake clock."""
    return AioRefreshableCredentials(
        access_key="AK0",
        secret_key="SK0",
        token="T0",
        expiry_time=clock.now + datetime.timedelta(minutes=minutes_left),
        refresh_using=refresh_using,
        method="fake-refreshable",
        time_fetcher=clock,
    )


async def poll_until(provider: CredentialProvider, access_key: str, seen: list[Credentials], limit: float = 3.0):
    """Call current() like the request path does until it hands out `access_key`."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        creds = provider.current()  # must never raise nor block
        seen.append(creds)
        if creds.access_key == access_key:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{access_key} never appeared; saw {seen[-1]!r}")


def test_expiring_credentials_refreshed_in_background():
    clock = FakeClock()
    calls: list[int] = []

    async def refresh_using():
        calls.append(1)
        n = len(calls)
        return {
            "access_key": f"AK{n}",
            "secret_key": f"SK{n}",
            "token": f"T{n}",
            "expiry_time": (clock.now + datetime.timedelta(minutes=60)).isoformat(),
        }

    async def body():
        provider = await CredentialProvider.from_botocore(refreshable(clock, refresh_using, 20), refresh_interval=0.01)
        seen: list[Credentials] = []
        assert provider.current() == Credentials("AK0", "SK0", "T0")
        await asyncio.sleep(0.05)
        assert provider.current().access_key == "AK0" and calls == []  # not near expiry: no refresh

        clock.advance(minutes=7)  # 13 min left: inside botocore's advisory window
        await poll_until(provider, "AK1", seen)
        assert calls == [1]
        assert {c.access_key for c in seen} <= {"AK0", "AK1"}

        clock.advance(hours=2)  # AK1 has expired: mandatory refresh, still never a failed current()
        await poll_until(provider, "AK2", seen)
        assert provider.current() == Credentials("AK2", "SK2", "T2")
        await provider.close()

    run(body())


def test_failed_refresh_keeps_serving_and_recovers(caplog):
    clock = FakeClock()
    fail = [True]

    async def refresh_using():
        if fail[0]:
            raise RuntimeError("sts unreachable")
        return {
            "access_key": "AK9",
            "secret_key": "secret-9",
            "token": "token-9",
            "expiry_time": (clock.now + datetime.timedelta(minutes=60)).isoformat(),
        }

    async def body():
        provider = await CredentialProvider.from_botocore(refreshable(clock, refresh_using, 20), refresh_interval=0.01)
        clock.advance(minutes=15)  # 5 min left: mandatory window, botocore raises from get_frozen_credentials
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            assert provider.current().access_key == "AK0"
            await asyncio.sleep(0.01)
        fail[0] = False
        await poll_until(provider, "AK9", [])
        await provider.close()

    with caplog.at_level(logging.WARNING, logger="lambdagate.aws.credentials"):
        run(body())
    ours = [r.getMessage() for r in caplog.records if r.name == "lambdagate.aws.credentials"]
    assert ours and all("sts unreachable" in m for m in ours)
    assert not any(secret in m for m in ours for secret in ("SK0", "T0", "secret-9", "token-9"))


def test_current_outside_a_loop_does_not_schedule():
    clock = FakeClock()

    async def refresh_using():
        raise AssertionError("must not be called")

    provider = run(CredentialProvider.from_botocore(refreshable(clock, refresh_using), refresh_interval=0.0))
    assert provider.current().access_key == "AK0"  # no running loop: served from cache, nothing scheduled


# ------------------------------------------------------------------------ STS AssumeRole


@pytest.fixture(scope="module")
def sts_server():
    with moto_server() as server:
        server.client("iam").create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument="{}")
        yield server


def test_assume_role_against_moto(aws_env, monkeypatch, sts_server):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts_server.url)

    async def body():
        provider = await CredentialProvider.create(
            assume_role_arn=ROLE_ARN, external_id="ext-123", role_session_name="gw-test", region=REGION
        )
        try:
            creds = provider.current()
            assert provider.method == "assume-role"
            assert creds.access_key.startswith("ASIA") and creds.secret_key and creds.token
            assert creds.access_key != "testing"
            assert await provider.refresh() == creds  # an hour left: botocore keeps them
            return creds
        finally:
            await provider.close()

    creds = run(body())
    ident = boto3.client(
        "sts",
        endpoint_url=sts_server.url,
        region_name=REGION,
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        aws_session_token=creds.token,
    ).get_caller_identity()
    assert ident["Arn"] == f"arn:aws:sts::123456789012:assumed-role/{ROLE_NAME}/gw-test"


def test_assume_role_failure_is_a_clear_error(aws_env, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    t0 = time.monotonic()
    with pytest.raises(NoCredentialsError, match="assuming role"):
        run(CredentialProvider.create(assume_role_arn=ROLE_ARN, region=REGION))
    assert time.monotonic() - t0 < 10

"""LambdaInvoker against a real moto_server (wire format, signature checking) and against a
small faulty Invoke-API stub on loopback (retries, deadlines, limits moto cannot produce)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from lambdagate.aws.credentials import CredentialProvider
from lambdagate.aws.invoke import (
    InvokeResponse,
    LambdaDeadlineError,
    LambdaError,
    LambdaInvoker,
    LambdaServiceError,
    LambdaTransportError,
    is_valid_function_reference,
    max_attempts_from_max_retries,
)
from lambdagate.aws.sigv4 import Credentials
from tests.support.moto import REGION, ROLE_NAME, create_echo_function, moto_server
from tests.support.procs import free_port

TEST_CREDS = Credentials("testing", "testing")
SECRET_CREDS = Credentials("AKIATESTSTUB", "stub-secret-do-not-log", "stub-session-token-do-not-log")


def run(coro: Awaitable, timeout: float = 30.0):
    """Run one async test body, hard-bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@contextlib.asynccontextmanager
async def invoker(endpoint_url: str, creds: Credentials = TEST_CREDS, **kwargs):
    async with aiohttp.ClientSession() as session:
        yield LambdaInvoker(
            session, region=REGION, credentials=CredentialProvider.static(creds), endpoint_url=endpoint_url, **kwargs
        )


def deadline_in(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


# --------------------------------------------------------------------------------------------
# moto_server: a real Lambda API implementation
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto():
    with moto_server() as server:
        # Simple (no docker) mode must be set before create_function: the two modes keep separate registries.
        assert server.set_config({"lambda": {"use_docker": False}})["lambda"]["use_docker"] is False
        server.client("iam").create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument="{}")
        lam = server.client("lambda")
        server.function_arn = create_echo_function(lam, "echo")
        version = lam.publish_version(FunctionName="echo")["Version"]
        lam.create_alias(FunctionName="echo", Name="prod", FunctionVersion=version)
        yield server


@pytest.mark.parametrize(
    "name", ["echo", "arn:aws:lambda:us-east-1:123456789012:function:echo", "123456789012:function:echo", "echo:prod"]
)
def test_moto_invoke_echoes_payload(moto, name):
    async def body():
        async with invoker(moto.url) as inv:
            payload = json.dumps({"name": name, "blob": "x" * 2000}).encode()
            res = await inv.invoke(name, payload, deadline=deadline_in(10))
            assert isinstance(res, InvokeResponse)
            assert (res.status, res.payload, res.function_error) == (200, payload, None)
            assert res.request_id

    run(body())


def test_moto_invoke_with_qualifier_and_log_type(moto):
    async def body():
        async with invoker(moto.url) as inv:
            res = await inv.invoke("echo", b'{"q":1}', qualifier="prod", log_type="None", deadline=deadline_in(10))
            assert (res.status, res.payload) == (200, b'{"q":1}')
            res = await inv.invoke(moto.function_arn, b'{"q":2}', qualifier="$LATEST", deadline=deadline_in(10))
            assert (res.status, res.payload) == (200, b'{"q":2}')

    run(body())


def test_moto_event_and_dry_run(moto):
    async def body():
        async with invoker(moto.url) as inv:
            res = await inv.invoke("echo", b'{"e":1}', invocation_type="Event", deadline=deadline_in(10))
            assert res.status == 202
            res = await inv.invoke("echo", b'{"e":1}', invocation_type="DryRun", deadline=deadline_in(10))
            assert res.status == 204

    run(body())


def test_moto_unknown_function_is_resource_not_found(moto):
    # moto's simple backend echoes for any name; its regular backend looks the function up first
    # (404 before any container is involved), so switch to it for this one request.
    moto.set_config({"lambda": {"use_docker": True}})
    try:

        async def body():
            async with invoker(moto.url, max_attempts=3) as inv:
                with pytest.raises(LambdaServiceError) as ei:
                    await inv.invoke("no-such-function", b"{}", deadline=deadline_in(10))
            err = ei.value
            assert (err.status, err.code, err.retryable) == (404, "ResourceNotFoundException", False)
            assert "no-such-function" in err.message and err.request_id

        run(body())
    finally:
        moto.set_config({"lambda": {"use_docker": False}})


def test_moto_checks_the_signature():
    """With IAM auth on, moto recomputes SigV4 with botocore: a right key passes, a wrong secret gets 403."""
    import boto3

    # The first 4 actions (role, user, access key, policy) run unauthenticated; every later one is checked.
    with moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "4"}) as server:
        assert server.set_config({"lambda": {"use_docker": False}})["lambda"]["use_docker"] is False
        iam = server.client("iam")
        iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument="{}")
        iam.create_user(UserName="gateway")
        key = iam.create_access_key(UserName="gateway")["AccessKey"]
        iam.put_user_policy(
            UserName="gateway",
            PolicyName="invoke",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": ["lambda:*", "iam:PassRole"], "Resource": "*"}],
                }
            ),
        )
        good = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
        lam = server.client("lambda", aws_access_key_id=good.access_key, aws_secret_access_key=good.secret_key)
        arn = create_echo_function(lam, "signed")
        with pytest.raises(Exception, match="InvalidClientTokenId|SignatureDoesNotMatch|AccessDenied"):
            boto3.client(
                "lambda",
                endpoint_url=server.url,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            ).list_functions()  # auth really is on

        async def body():
            async with invoker(server.url, good) as inv:
                for name in ("signed", arn, "signed:$LATEST"):
                    res = await inv.invoke(name, b'{"ok":true}', deadline=deadline_in(10))
                    assert (res.status, res.payload) == (200, b'{"ok":true}')
                res = await inv.invoke(
                    "signed", b'{"ok":1}', qualifier="$LATEST", log_type="Tail", deadline=deadline_in(10)
                )
                assert res.status == 200
            async with invoker(server.url, Credentials(good.access_key, "wrong-secret")) as inv:
                for name in ("signed", arn):
                    with pytest.raises(LambdaServiceError) as ei:
                        await inv.invoke(name, b'{"ok":true}', deadline=deadline_in(10))
                    assert (ei.value.status, ei.value.code, ei.value.retryable) == (403, "SignatureDoesNotMatch", False)

        run(body())


# --------------------------------------------------------------------------------------------
# Faulty Invoke-API stub
# --------------------------------------------------------------------------------------------

Action = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    at: float
    raw_path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Stub:
    """Answers request i with actions[i] (the last action repeats)."""

    actions: list[Action]
    seen: list[Seen] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(time.monotonic(), request.raw_path, request.query_string, dict(request.headers), body))
        return await self.actions[min(len(self.seen), len(self.actions)) - 1](request)


@contextlib.asynccontextmanager
async def serve(*actions: Action):
    stub = Stub(list(actions))
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", stub.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield stub, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def ok(payload: bytes = b'{"ok":true}', headers: dict[str, str] | None = None) -> Action:
    async def action(request):
        return web.Response(
            body=payload,
            headers={
                "x-amzn-RequestId": "req-ok",
                "X-Amz-Executed-Version": "$LATEST",
                "Content-Type": "application/json",
                **(headers or {}),
            },
        )

    return action


def aws_error(status: int, code: str, message: str = "boom", headers: dict[str, str] | None = None) -> Action:
    async def action(request):
        return web.Response(
            status=status,
            body=json.dumps({"Type": "User", "message": message}).encode(),
            headers={
                "X-Amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazonaws.awslambda/",
                "x-amzn-RequestId": "req-err",
                "Content-Type": "application/json",
                **(headers or {}),
            },
        )

    return action


def slow(seconds: float) -> Action:
    async def action(request):
        await asyncio.sleep(seconds)
        return web.Response(body=b"{}")

    return action


def drop_connection() -> Action:
    async def action(request):
        request.transport.close()  # the client sees the connection closed with no response
        await asyncio.sleep(0.05)
        return web.Response(body=b"{}")

    return action


def test_wire_format():
    """Path, query and headers as botocore sends them; the ARN is %-encoded once on the wire."""

    async def body():
        async with serve(ok(b'{"r":1}', {"X-Amz-Log-Result": "bG9n", "X-Amz-Function-Error": "Handled"})) as (
            stub,
            url,
        ):
            async with invoker(url, SECRET_CREDS) as inv:
                res = await inv.invoke(
                    "arn:aws:lambda:us-east-1:123456789012:function:my-fn",
                    b'{"in":1}',
                    qualifier="$LATEST",
                    invocation_type="RequestResponse",
                    log_type="Tail",
                    deadline=deadline_in(5),
                )
        assert res == InvokeResponse(200, b'{"r":1}', "Handled", "$LATEST", "req-ok", "bG9n")
        seen = stub.seen[0]
        assert seen.raw_path == (
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction"
            "%3Amy-fn/invocations?Qualifier=%24LATEST"
        )
        assert seen.body == b'{"in":1}'
        h = seen.headers
        assert h["X-Amz-Invocation-Type"] == "RequestResponse" and h["X-Amz-Log-Type"] == "Tail"
        assert h["X-Amz-Security-Token"] == SECRET_CREDS.token
        assert h["Authorization"].startswith(
            f"AWS4-HMAC-SHA256 Credential=AKIATESTSTUB/{h['X-Amz-Date'][:8]}/{REGION}/lambda/aws4_request, "
        )
        assert (
            "SignedHeaders=host;x-amz-date;x-amz-invocation-type;x-amz-log-type;x-amz-security-token,"
            in h["Authorization"]
        )
        assert h["Host"] == url.removeprefix("http://")

    run(body())


def test_endpoint_with_base_path():
    async def body():
        async with serve(ok()) as (stub, url):
            async with invoker(url + "/lambda-proxy/") as inv:
                await inv.invoke("fn", b"{}", deadline=deadline_in(5))
        assert stub.seen[0].raw_path == "/lambda-proxy/2015-03-31/functions/fn/invocations"

    run(body())


def test_throttled_twice_then_ok_is_retried():
    async def body():
        async with serve(
            aws_error(429, "TooManyRequestsException", "Rate exceeded"),
            aws_error(429, "TooManyRequestsException", "Rate exceeded"),
            ok(),
        ) as (stub, url):
            async with invoker(url, max_attempts=3) as inv:
                res = await inv.invoke("fn", b"{}", deadline=deadline_in(5))
        assert res.status == 200 and len(stub.seen) == 3

    run(body())


def test_throttled_without_retries_fails():
    async def body():
        async with serve(aws_error(429, "TooManyRequestsException", "Rate exceeded"), ok()) as (stub, url):
            async with invoker(url, max_attempts=1) as inv:
                with pytest.raises(LambdaServiceError) as ei:
                    await inv.invoke("fn", b"{}", deadline=deadline_in(5))
        err = ei.value
        assert (err.status, err.code, err.message, err.request_id, err.retryable) == (
            429,
            "TooManyRequestsException",
            "Rate exceeded",
            "req-err",
            True,
        )
        assert len(stub.seen) == 1

    run(body())


def test_retries_exhausted_raise_last_error():
    async def body():
        async with serve(aws_error(503, "ServiceException")) as (stub, url):
            async with invoker(url, max_attempts=3) as inv:
                with pytest.raises(LambdaServiceError) as ei:
                    await inv.invoke("fn", b"{}", deadline=deadline_in(5))
        assert ei.value.status == 503 and len(stub.seen) == 3

    run(body())


def test_service_500_is_retried():
    async def body():
        async with serve(aws_error(500, "ServiceException"), ok()) as (stub, url):
            async with invoker(url, max_attempts=2) as inv:
                assert (await inv.invoke("fn", b"{}", deadline=deadline_in(5))).status == 200
        assert len(stub.seen) == 2

    run(body())


@pytest.mark.parametrize("kind", ["Unhandled", "Handled"])
def test_function_error_is_returned_never_retried(kind):
    async def body():
        err_payload = b'{"errorMessage":"boom","errorType":"Exception"}'
        async with serve(ok(err_payload, {"X-Amz-Function-Error": kind}), ok()) as (stub, url):
            async with invoker(url, max_attempts=5) as inv:
                res = await inv.invoke("fn", b"{}", deadline=deadline_in(5))
        assert (res.status, res.function_error, res.payload) == (200, kind, err_payload)
        assert len(stub.seen) == 1

    run(body())


@pytest.mark.parametrize(
    "status,code",
    [
        (400, "InvalidRequestContentException"),
        (403, "AccessDeniedException"),
        (404, "ResourceNotFoundException"),
        (413, "RequestTooLargeException"),
    ],
)
def test_client_errors_not_retried(status, code):
    async def body():
        async with serve(aws_error(status, code), ok()) as (stub, url):
            async with invoker(url, max_attempts=5) as inv:
                with pytest.raises(LambdaServiceError) as ei:
                    await inv.invoke("fn", b"{}", deadline=deadline_in(5))
        assert (ei.value.status, ei.value.code, ei.value.retryable) == (status, code, False)
        assert len(stub.seen) == 1

    run(body())


def test_error_code_from_body_when_no_header():
    async def from_body(request):
        return web.json_response({"__type": "com.amazonaws.lambda#ServiceException", "Message": "internal"}, status=500)

    async def body():
        async with serve(from_body) as (stub, url):
            async with invoker(url) as inv:
                with pytest.raises(LambdaServiceError) as ei:
                    await inv.invoke("fn", b"{}", deadline=deadline_in(5))
        assert (ei.value.code, ei.value.message, ei.value.retryable) == ("ServiceException", "internal", True)

    run(body())


def test_connection_refused_retried_then_transport_error(caplog):
    async def body():
        async with invoker(f"http://127.0.0.1:{free_port()}", SECRET_CREDS, max_attempts=3) as inv:
            t0 = time.monotonic()
            with pytest.raises(LambdaTransportError) as ei:
                await inv.invoke("my-fn", b"{}", deadline=deadline_in(5), request_id="gw-req-1")
            assert time.monotonic() - t0 < 2.5
        assert (ei.value.code, ei.value.status, ei.value.retryable) == ("ConnectionError", 0, True)

    with caplog.at_level(logging.WARNING, logger="lambdagate.aws.invoke"):
        run(body())
    retries = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == 2  # 3 attempts = 2 retries, each logged
    for rec in retries:
        msg = rec.getMessage()
        assert "my-fn" in msg and "gw-req-1" in msg and "ConnectionError" in msg
        assert SECRET_CREDS.secret_key not in msg and SECRET_CREDS.token not in msg
    assert "attempt=2/3" in retries[0].getMessage() and "attempt=3/3" in retries[1].getMessage()


def test_dropped_connection_is_retried():
    async def body():
        async with serve(drop_connection(), ok()) as (stub, url):
            async with invoker(url, max_attempts=2) as inv:
                assert (await inv.invoke("fn", b"{}", deadline=deadline_in(5))).status == 200
        assert len(stub.seen) == 2

    run(body())


def test_slow_function_hits_deadline_quickly():
    async def body():
        async with serve(slow(3.0)) as (stub, url):
            async with invoker(url, max_attempts=3) as inv:
                t0 = time.monotonic()
                with pytest.raises(LambdaDeadlineError) as ei:
                    await inv.invoke("fn", b"{}", deadline=deadline_in(0.3))
                elapsed = time.monotonic() - t0
        assert 0.25 <= elapsed < 1.0
        assert (ei.value.code, ei.value.retryable) == ("Timeout", False)
        assert len(stub.seen) == 1  # never retried after the deadline

    run(body())


def test_deadline_already_passed_sends_nothing():
    async def body():
        async with serve(ok()) as (stub, url):
            async with invoker(url) as inv:
                with pytest.raises(LambdaDeadlineError):
                    await inv.invoke("fn", b"{}", deadline=deadline_in(-0.001))
        assert stub.seen == []

    run(body())


def test_backoff_never_passes_the_deadline():
    async def body():
        async with serve(aws_error(500, "ServiceException")) as (stub, url):
            async with invoker(url, max_attempts=1000) as inv:
                t0 = time.monotonic()
                with pytest.raises(LambdaServiceError) as ei:  # the last real error, not a timeout
                    await inv.invoke("fn", b"{}", deadline=deadline_in(0.5))
                elapsed = time.monotonic() - t0
        assert ei.value.status == 500
        assert elapsed < 0.6
        assert len(stub.seen) >= 3
        assert stub.seen[-1].at - stub.seen[0].at < 0.5

    run(body())


def test_retry_after_longer_than_deadline_gives_up_at_once():
    async def body():
        async with serve(aws_error(429, "TooManyRequestsException", headers={"Retry-After": "10"}), ok()) as (
            stub,
            url,
        ):
            async with invoker(url, max_attempts=3) as inv:
                t0 = time.monotonic()
                with pytest.raises(LambdaServiceError) as ei:
                    await inv.invoke("fn", b"{}", deadline=deadline_in(2))
                assert time.monotonic() - t0 < 0.5
        assert (ei.value.status, ei.value.retry_after) == (429, 10.0)
        assert len(stub.seen) == 1

    run(body())


def test_retry_after_is_honoured():
    async def body():
        async with serve(aws_error(429, "TooManyRequestsException", headers={"Retry-After": "0.4"}), ok()) as (
            stub,
            url,
        ):
            async with invoker(url, max_attempts=2) as inv:
                assert (await inv.invoke("fn", b"{}", deadline=deadline_in(5))).status == 200
        assert len(stub.seen) == 2
        assert 0.4 <= stub.seen[1].at - stub.seen[0].at < 1.5

    run(body())


def test_oversize_reply_refused():
    async def body():
        async with serve(ok(b"x" * 5000), ok()) as (stub, url):
            async with invoker(url, max_attempts=3, max_response_bytes=4096) as inv:
                with pytest.raises(LambdaServiceError) as ei:
                    await inv.invoke("fn", b"{}", deadline=deadline_in(5))
                res = await inv.invoke("fn", b"{}", deadline=deadline_in(5))  # the invoker is still usable
        assert (ei.value.status, ei.value.code, ei.value.retryable) == (502, "ResponseTooLarge", False)
        assert len(stub.seen) == 2 and res.status == 200

    run(body())


def test_oversize_chunked_reply_refused():
    async def chunked(request):
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(10):
            await resp.write(b"y" * 1000)
        await resp.write_eof()
        return resp

    async def body():
        async with serve(chunked) as (stub, url):
            async with invoker(url, max_response_bytes=4096) as inv:
                with pytest.raises(LambdaServiceError) as ei:
                    await inv.invoke("fn", b"{}", deadline=deadline_in(5))
            async with invoker(url, max_response_bytes=10_000) as inv:
                res = await inv.invoke("fn", b"{}", deadline=deadline_in(5))
        assert ei.value.code == "ResponseTooLarge"
        assert res.payload == b"y" * 10_000

    run(body())


def test_oversize_compressed_reply_refused():
    """The limit applies to the decoded body, not to a small gzip Content-Length."""

    async def gzipped(request):
        resp = web.Response(body=b"z" * 50_000)
        resp.enable_compression(web.ContentCoding.gzip)
        return resp

    async def body():
        async with serve(gzipped) as (stub, url):
            async with invoker(url, max_response_bytes=4096) as inv:
                with pytest.raises(LambdaServiceError) as ei:
                    await inv.invoke("fn", b"{}", deadline=deadline_in(5))
        assert ei.value.code == "ResponseTooLarge"
        assert stub.seen[0].headers.get("Accept-Encoding", "").startswith("gzip")

    run(body())


def test_lambda_error_hierarchy_and_str():
    err = LambdaServiceError("Rate exceeded", status=429, code="TooManyRequestsException", retryable=True)
    assert isinstance(err, LambdaError) and str(err) == "TooManyRequestsException (HTTP 429): Rate exceeded"
    assert issubclass(LambdaTransportError, LambdaError) and issubclass(LambdaDeadlineError, LambdaError)


def test_max_attempts_from_max_retries():
    assert max_attempts_from_max_retries(-1) == 3
    assert max_attempts_from_max_retries(0) == 1
    assert max_attempts_from_max_retries(4) == 5
    with pytest.raises(ValueError):
        max_attempts_from_max_retries(-2)


@pytest.mark.parametrize(
    "name",
    [
        "my-function",
        "my_function.v2",
        "f",
        "my-function:v1",
        "my-function:$LATEST",
        "my-function:$LATEST.PUBLISHED",
        "123456789012:function:my-function",
        "123456789012:function:my-function:prod",
        "arn:aws:lambda:us-west-2:123456789012:function:my-function",
        "arn:aws:lambda:us-west-2:123456789012:function:my-function:7",
        "arn:aws-cn:lambda:cn-north-1:123456789012:function:fn",
        "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:fn",
        "a" * 64,
    ],
)
def test_valid_function_references(name):
    assert is_valid_function_reference(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a" * 65,
        "my function",
        "my/function",
        "fn:",
        "fn:a:b",
        "fn:$NOPE",
        "../etc",
        "fn?x=1",
        "fn%3A",
        "arn:aws:s3:::bucket",
        "arn:aws:lambda:us-west-2:123:function:fn",
        "x" * 257,
        "naïve",
    ],
)
def test_invalid_function_references(name):
    assert not is_valid_function_reference(name)


def test_invalid_arguments():
    async def body():
        async with aiohttp.ClientSession() as session:
            creds = CredentialProvider.static(TEST_CREDS)
            with pytest.raises(ValueError):
                LambdaInvoker(session, region=REGION, credentials=creds, max_attempts=0)
            with pytest.raises(ValueError):
                LambdaInvoker(session, region=REGION, credentials=creds, endpoint_url="ftp://x")
            inv = LambdaInvoker(session, region="eu-west-1", credentials=creds)
            assert inv.endpoint_url == "https://lambda.eu-west-1.amazonaws.com"

    run(body())

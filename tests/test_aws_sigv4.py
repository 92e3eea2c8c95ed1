"""lambdagate.aws.sigv4 must be byte-identical to botocore's SigV4Auth (the reference)."""

from __future__ import annotations

import datetime
import hashlib
import hmac
from unittest import mock
from urllib.parse import quote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambdagate.aws.sigv4 import Credentials, SigV4Signer, amz_date_now

REGION = "us-east-1"
HOST = "lambda.us-east-1.amazonaws.com"
AMZ_DATE = "20261125T101112Z"
AK, SK = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKEN//////////wEaCXVzLWVhc3QtMSJHMEUCIQ=="


def botocore_sign(
    method,
    host,
    path,
    query,
    headers,
    body,
    creds: Credentials,
    amz_date=AMZ_DATE,
    service="lambda",
    region=REGION,
    scheme="https",
):
    """What botocore sends for the same request, with its clock frozen at amz_date."""
    url = f"{scheme}://{host}{path}" + (f"?{query}" if query else "")
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    frozen = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
    # botocore.auth reads the clock through get_current_datetime (botocore >= 1.33; older: datetime).
    with mock.patch("botocore.auth.get_current_datetime", return_value=frozen):
        SigV4Auth(BotoCredentials(creds.access_key, creds.secret_key, creds.token), service, region).add_auth(req)
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in req.headers.items()}


def function_path(name: str) -> str:
    return f"/2015-03-31/functions/{quote(name, safe='')}/invocations"


NAMES = [
    "my-fn",
    "my_fn.v2",
    "arn:aws:lambda:us-east-1:123456789012:function:my-fn",
    "arn:aws:lambda:us-east-1:123456789012:function:my-fn:prod",
    "123456789012:function:my-fn",
    "my-fn:alias",
    "my-fn:$LATEST",
]
BODIES = [b"", b'{"a":1}', b'{"k":"' + b"x" * 2040 + b'"}', bytes(range(256)) * 3 + b"\xff\xfe\x80"]
CREDS = [Credentials(AK, SK), Credentials(AK, SK, TOKEN)]
EXTRA = [
    {},
    {"X-Amz-Invocation-Type": "RequestResponse"},
    {"X-Amz-Invocation-Type": "Event", "X-Amz-Log-Type": "Tail", "Content-Type": "application/json"},
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("body", BODIES, ids=["empty", "7B", "2KB", "binary"])
@pytest.mark.parametrize("creds", CREDS, ids=["no-token", "token"])
@pytest.mark.parametrize("headers", EXTRA, ids=["no-extra", "invocation-type", "three-extra"])
def test_matches_botocore(name, body, creds, headers):
    path = function_path(name)
    ours = SigV4Signer(REGION).sign("POST", HOST, path, "", headers, body, creds, amz_date=AMZ_DATE)
    ref = botocore_sign("POST", HOST, path, "", headers, body, creds)
    assert ours["Authorization"] == ref["Authorization"]
    assert ours["X-Amz-Date"] == ref["X-Amz-Date"] == AMZ_DATE
    assert ours.get("X-Amz-Security-Token") == ref.get("X-Amz-Security-Token") == creds.token
    assert set(ours) == {"Authorization", "X-Amz-Date"} | ({"X-Amz-Security-Token"} if creds.token else set())


@pytest.mark.parametrize("query", ["Qualifier=prod", "Qualifier=%24LATEST", "b=2&a=1&a=0", "flag"])
@pytest.mark.parametrize("creds", CREDS, ids=["no-token", "token"])
def test_query_string_matches_botocore(query, creds):
    path = function_path("arn:aws:lambda:us-east-1:123456789012:function:my-fn")
    headers = {"X-Amz-Invocation-Type": "RequestResponse"}
    ours = SigV4Signer(REGION).sign("POST", HOST, path, query, headers, b'{"a":1}', creds, amz_date=AMZ_DATE)
    assert (
        ours["Authorization"] == botocore_sign("POST", HOST, path, query, headers, b'{"a":1}', creds)["Authorization"]
    )


def test_query_from_params_like_a_real_client():
    """botocore's Lambda client puts Qualifier into the URL; with params= it encodes them itself: same result."""
    creds = CREDS[0]
    path = function_path("my-fn")
    req = AWSRequest(method="POST", url=f"https://{HOST}{path}", params={"Qualifier": "$LATEST"}, data=b"{}")
    with mock.patch(
        "botocore.auth.get_current_datetime", return_value=datetime.datetime.strptime(AMZ_DATE, "%Y%m%dT%H%M%SZ")
    ):
        SigV4Auth(BotoCredentials(AK, SK), "lambda", REGION).add_auth(req)
    ours = SigV4Signer(REGION).sign("POST", HOST, path, "Qualifier=%24LATEST", {}, b"{}", creds, amz_date=AMZ_DATE)
    assert ours["Authorization"] == req.headers["Authorization"]


@pytest.mark.parametrize("host,scheme", [("127.0.0.1:5000", "http"), ("localhost:4566", "http"), (HOST, "https")])
def test_custom_endpoint_host_with_port(host, scheme):
    path = function_path("my-fn")
    ours = SigV4Signer(REGION).sign("POST", host, path, "", {}, b"{}", CREDS[1], amz_date=AMZ_DATE)
    assert (
        ours["Authorization"]
        == botocore_sign("POST", host, path, "", {}, b"{}", CREDS[1], scheme=scheme)["Authorization"]
    )


def test_other_service_region_and_method():
    signer = SigV4Signer("eu-central-1", "sts")
    ours = signer.sign(
        "GET",
        "sts.eu-central-1.amazonaws.com",
        "/",
        "Action=GetCallerIdentity&Version=2011-06-15",
        {},
        b"",
        CREDS[1],
        amz_date=AMZ_DATE,
    )
    ref = botocore_sign(
        "GET",
        "sts.eu-central-1.amazonaws.com",
        "/",
        "Action=GetCallerIdentity&Version=2011-06-15",
        {},
        b"",
        CREDS[1],
        service="sts",
        region="eu-central-1",
    )
    assert ours["Authorization"] == ref["Authorization"]


def test_headers_botocore_never_signs_and_whitespace_trimming():
    headers = {"User-Agent": "lambdagate/1", "X-Amzn-Trace-Id": "Root=1-abc", "X-Custom": "  a   b \t c  "}
    path = function_path("my-fn")
    ours = SigV4Signer(REGION).sign("POST", HOST, path, "", headers, b"{}", CREDS[0], amz_date=AMZ_DATE)
    ref = botocore_sign("POST", HOST, path, "", headers, b"{}", CREDS[0])
    assert ours["Authorization"] == ref["Authorization"]
    assert "SignedHeaders=host;x-amz-date;x-custom," in ours["Authorization"]


def test_dot_segments_and_double_slashes_normalised_like_botocore():
    for path in ["/2015-03-31/functions/../functions/my-fn/invocations", "/a//b/./c/", "", "/"]:
        ours = SigV4Signer(REGION).sign("POST", HOST, path, "", {}, b"", CREDS[0], amz_date=AMZ_DATE)
        assert ours["Authorization"] == botocore_sign("POST", HOST, path, "", {}, b"", CREDS[0])["Authorization"], path


header_names = st.sampled_from(
    ["X-Amz-Invocation-Type", "X-Amz-Log-Type", "Content-Type", "X-Amz-Client-Context", "X-Amz-Tenant-Id", "Accept"]
)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=80),
    body=st.binary(max_size=300),
    token=st.one_of(
        st.none(), st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", min_size=1, max_size=60)
    ),
    headers=st.dictionaries(header_names, header_values, max_size=4),
    qualifier=st.one_of(st.none(), st.from_regex(r"\$LATEST|[a-zA-Z0-9_-]{1,20}", fullmatch=True)),
)
def test_property_matches_botocore(name, body, token, headers, qualifier):
    creds = Credentials(AK, SK, token)
    path = function_path(name)
    query = f"Qualifier={quote(qualifier, safe='-_.~')}" if qualifier else ""
    ours = SigV4Signer(REGION).sign("POST", HOST, path, query, headers, body, creds, amz_date=AMZ_DATE)
    assert ours["Authorization"] == botocore_sign("POST", HOST, path, query, headers, body, creds)["Authorization"]


def test_signer_reused_across_requests_stays_identical():
    """Plan/URI/key caches must not leak state between different requests on one signer."""
    signer = SigV4Signer(REGION)
    cases = [(n, b, c, h) for n in NAMES[:3] for b in BODIES[:2] for c in CREDS for h in EXTRA]
    for _ in range(2):
        for name, body, creds, headers in cases:
            path = function_path(name)
            ours = signer.sign("POST", HOST, path, "", headers, body, creds, amz_date=AMZ_DATE)
            assert ours["Authorization"] == botocore_sign("POST", HOST, path, "", headers, body, creds)["Authorization"]


def _derive(secret: str, datestamp: str, region=REGION, service="lambda") -> bytes:
    k = hmac.new(f"AWS4{secret}".encode(), datestamp.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def test_signing_key_cached_and_replaced():
    signer = SigV4Signer(REGION)
    k1 = signer.signing_key(SK, "20261125")
    assert k1 == _derive(SK, "20261125")
    assert signer.signing_key(SK, "20261125") is k1  # reused, not re-derived
    signer.sign("POST", HOST, "/", "", {}, b"", Credentials(AK, SK), amz_date="20261125T235959Z")
    assert signer.signing_key(SK, "20261125") is k1

    k2 = signer.signing_key(SK, "20261126")  # UTC date rolled over
    assert k2 == _derive(SK, "20261126") and k2 != k1
    assert signer.signing_key(SK, "20261126") is k2

    k3 = signer.signing_key("rotated-secret", "20261126")  # secret rotated
    assert k3 == _derive("rotated-secret", "20261126") and k3 not in (k1, k2)
    assert signer.signing_key("rotated-secret", "20261126") is k3


def test_signing_key_derivation_count():
    """The HMAC chain runs once per (secret, date), not once per request."""
    signer = SigV4Signer(REGION)
    real = hmac.digest
    calls = []

    def counting(key, msg, digest):
        calls.append(msg)
        return real(key, msg, digest)

    with mock.patch("lambdagate.aws.sigv4._hmac_digest", side_effect=counting):
        for _ in range(50):
            signer.sign("POST", HOST, "/p", "", {}, b"x", Credentials(AK, SK), amz_date=AMZ_DATE)
    # 4 HMACs to derive the key once + 1 signature HMAC per request.
    assert len(calls) == 4 + 50


def test_default_date_is_now_and_well_formed():
    ours = SigV4Signer(REGION).sign("POST", HOST, "/", "", {}, b"", Credentials(AK, SK))
    date = ours["X-Amz-Date"]
    parsed = datetime.datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    assert abs((parsed - datetime.datetime.now(datetime.UTC)).total_seconds()) < 5
    assert amz_date_now()[:8] == date[:8] or amz_date_now() > date


def test_credentials_repr_hides_secret_and_token():
    creds = Credentials("AKIAEXAMPLE", "super-secret-key", "session-token-value")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "super-secret-key" not in text
        assert "session-token-value" not in text
        assert "AKIAEXAMPLE" in text
    assert "token=None" in repr(Credentials("AK", "SK"))
    with pytest.raises(AttributeError):
        creds.secret_key = "x"  # frozen

"""The backends' reply rules in process: JSON depth, data shaping, reply header caps, the Lambda error table.

The end-to-end behaviour (statuses, logs, merges) is in test_backend_hardening.py, test_lambda_backend.py and
test_faults.py; these pin the rules themselves, edge by edge, in milliseconds.
"""

from __future__ import annotations

import random

import orjson
import pytest

from lambdagate.backends import reply_data
from lambdagate.backends.forwarded import CLIENT_FORWARDING, without
from lambdagate.backends.lambda_errors import SERVICE_ERRORS, service_answer
from lambdagate.backends.lambda_reply import ReplyDecoder, data_response, unwrap
from lambdagate.backends.reply_data import MAX_JSON_DEPTH, TooDeep, load_json, shape_data
from lambdagate.backends.reply_headers import HeaderLimits, MalformedReply, bounded, checked
from lambdagate.errors import BackendError


def nested(depth: int, leaf: object = 1) -> object:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def depth_of(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


# ------------------------------------------------------------------- JSON depth


@pytest.mark.parametrize("depth", [0, 1, 2, MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH])
def test_json_up_to_the_depth_limit_is_accepted(depth):
    doc = orjson.dumps(nested(depth))
    assert load_json(doc) == orjson.loads(doc)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 254, 255, 1024])
def test_json_past_the_depth_limit_is_refused(depth):
    with pytest.raises(TooDeep, match=f"deeper than {MAX_JSON_DEPTH} levels"):
        load_json(b"[" * depth + b"]" * depth)


def test_the_limit_leaves_room_for_what_the_gateway_wraps_around_data():
    # group + the collection of an array: the rendered document must still encode
    value = {"group": {"collection": load_json(orjson.dumps(nested(MAX_JSON_DEPTH)))}}
    assert orjson.loads(orjson.dumps(value)) == value


@pytest.mark.parametrize(
    "doc",
    [
        orjson.dumps([[1]] * 130),  # small: counted, then checked
        orjson.dumps({"items": [{"a": [1, {"b": 2}]} for _ in range(500)]}),  # large: checked at once
    ],
    ids=["small", "large"],
)
def test_many_shallow_brackets_pass_the_exact_check(doc):
    assert doc.count(b"[") + doc.count(b"{") > MAX_JSON_DEPTH
    assert load_json(doc) == orjson.loads(doc)


def test_a_large_deep_document_is_refused_without_counting():
    with pytest.raises(TooDeep):
        load_json(b"[" * 129 + b"]" * 129 + b" " * 5000)


def test_brackets_inside_strings_do_not_count():
    doc = orjson.dumps({"text": "[" * 5000 + "{" * 5000})
    assert load_json(doc) == {"text": "[" * 5000 + "{" * 5000}


def test_the_encoder_probe_and_the_walk_agree():
    """The probe (orjson's own recursion limit, 254 levels in orjson 3.x, used as the check) and the walk (the
    fallback for an orjson without a limit) give the same answer on random shapes around the limit."""
    if reply_data._ENCODER_DEPTH is None:
        pytest.skip("this orjson encodes any depth: only the walk is used")
    rng = random.Random(7)
    for _ in range(300):
        depth = rng.randint(MAX_JSON_DEPTH - 3, MAX_JSON_DEPTH + 3)
        value = nested(depth)
        for _ in range(rng.randint(0, 5)):  # siblings of every depth next to the deep branch
            value = (
                {"deep": value, "side": nested(rng.randint(0, depth))}
                if rng.random() < 0.5
                else [nested(rng.randint(0, depth)), value]
            )
        expected = depth_of(value) > MAX_JSON_DEPTH
        assert reply_data._probe_depth(value) is expected
        assert reply_data._walk_depth(value) is expected


def test_the_probe_leaves_its_padding_as_it_found_it():
    if reply_data._ENCODER_DEPTH is None:
        pytest.skip("this orjson encodes any depth: only the walk is used")
    for value in (nested(10), nested(300)):
        reply_data._probe_depth(value)
        assert reply_data._padding.chain[1] == []


# ------------------------------------------------------------------- shaping


@pytest.mark.parametrize(
    ("value", "data"),
    [
        ({"a": 1}, {"a": 1}),
        ({}, {}),
        ([1, 2], {"collection": [1, 2]}),
        ([], {"collection": []}),
        ("text", {"content": "text"}),
        (7, {"content": 7}),
        (None, {"content": None}),
        (False, {"content": False}),
    ],
)
def test_shape_data_is_krakends_rule(value, data):
    assert shape_data(value) == data


@pytest.mark.parametrize(
    ("value", "data", "complete"),
    [
        ({"a": 1}, {"a": 1}, True),
        ({}, {}, False),
        ([], {"collection": []}, True),
        (0, {"content": 0}, True),
        (None, {}, False),  # a function's null is no data (an HTTP backend's null is {"content": null})
    ],
)
def test_a_functions_data_is_shaped_alike_and_complete_only_with_data(value, data, complete):
    resp = data_response(value)
    assert (resp.data, resp.is_complete) == (data, complete)


# ------------------------------------------------------------------- reply headers

LIMITS = HeaderLimits(count=3, bytes=20)


def test_headers_are_counted_after_what_is_never_passed_on():
    headers = [
        ("X-Request-Id", "x"),
        ("Connection", "close"),
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
        ("X-KrakenD-Completed", "true"),
        ("content-length", "9"),
    ]
    assert bounded(headers, LIMITS) == [("a", "1"), ("b", "2"), ("c", "3")]
    with pytest.raises(MalformedReply, match="4 headers, more than 3"):
        bounded([*headers, ("d", "4")], LIMITS)


def test_header_bytes_count_utf8():
    assert bounded([("a", "\u20ac" * 6)], LIMITS)  # 1 + 18 bytes
    with pytest.raises(MalformedReply, match="headers of 22 bytes, more than 20"):
        bounded([("a", "\u20ac" * 7)], LIMITS)


@pytest.mark.parametrize(
    ("name", "value", "cause"),
    [
        ("X A", "1", "invalid header name"),
        ("X-\u00e9", "1", "invalid header name"),
        ("", "1", "invalid header name"),
        ("X:A", "1", "invalid header name"),
        ("X-A", "a\x7fb", "control character"),
        ("X-A", "a\rb", "line break"),
    ],
)
def test_headers_the_server_cannot_send_are_malformed(name, value, cause):
    with pytest.raises(MalformedReply, match=cause):
        checked([(name, value)], HeaderLimits())


def test_sendable_headers_pass_as_they_are():
    headers = [("X-Tab", "a\tb"), ("X-Utf8", "5\u20ac"), ("X-Latin1", "caf\udce9")]  # aiohttp: surrogateescape
    assert checked(headers, HeaderLimits()) == headers


def test_unwrap_refuses_too_many_names_before_checking_them():
    with pytest.raises(MalformedReply, match="more than 100 headers"):
        unwrap({"statusCode": 200, "headers": {f"bad name {i}": "v" for i in range(24600)}})


@pytest.mark.parametrize("status", ["\u00b2", "2\u00b200", "\uff12\uff10\uff10", "\u0662\u0660\u0660", "2\u00b9"])
def test_unwrap_takes_only_ascii_digits_as_a_string_status(status):
    """str.isdigit() is true for all of these: int() raised on "²" (a 500 with a traceback), read "２００" as 200."""
    with pytest.raises(MalformedReply, match="statusCode must be an integer 200-599, got"):
        unwrap({"statusCode": status})


def test_unwrap_reads_an_ascii_string_status():
    assert unwrap({"statusCode": "201"}).status == 201


def test_unwrap_renders_numbers_and_booleans_as_json_text():
    reply = unwrap(
        {
            "statusCode": 200,
            "headers": {"X-T": True, "X-F": False, "X-I": 10, "X-N": -3, "X-R": 1.5, "X-E": 1e20},
            "multiValueHeaders": {"X-M": ["a", 2, True, 0.25]},
            "cookies": ["a=1"],
        }
    )
    assert reply.headers == [
        ("x-t", "true"),
        ("x-f", "false"),
        ("x-i", "10"),
        ("x-n", "-3"),
        ("x-r", "1.5"),
        ("x-e", "1e+20"),
        ("x-m", "a"),
        ("x-m", "2"),
        ("x-m", "true"),
        ("x-m", "0.25"),
        ("set-cookie", "a=1"),
        ("content-type", "application/json"),
    ]


@pytest.mark.parametrize(
    ("reply", "cause"),
    [
        ({"headers": {"X-A": None}}, "header X-A is null"),
        ({"headers": {"X-A": {"a": "b"}}}, "header X-A is an object"),
        ({"headers": {"X-A": [1, 2]}}, "header X-A is a list"),
        ({"multiValueHeaders": {"X-A": ["ok", None]}}, "header X-A is null"),
        ({"multiValueHeaders": {"X-A": [{"a": "b"}]}}, "header X-A is an object"),
        ({"multiValueHeaders": {"X-A": [["v"]]}}, "header X-A is a list"),
        ({"cookies": ["a=1", None]}, "header set-cookie is null"),
    ],
)
def test_unwrap_refuses_header_values_that_are_not_scalars(reply, cause):
    with pytest.raises(MalformedReply, match=cause):
        unwrap({"statusCode": 200, **reply})


def test_decoder_turns_a_malformed_reply_into_the_backends_error():
    decoder = ReplyDecoder("proxy", "apigateway_v1", single=True)
    with pytest.raises(BackendError) as info:
        decoder.decode(orjson.dumps({"statusCode": 200, "headers": {f"h{i}": "v" for i in range(101)}}), "fn")
    assert (info.value.status, info.value.message) == (500, "the function reply is malformed")
    assert info.value.cause == "function=fn: more than 100 headers"


# ------------------------------------------------------------------- forwarding headers


def test_client_forwarding_headers_are_dropped_and_others_kept():
    headers = {"x-forwarded-for": "6.6.6.6", "x-real-ip": "6.6.6.6", "forwarded": "for=6.6.6.6", "a": "1"}
    assert without(headers, CLIENT_FORWARDING) == {"a": "1"}
    plain = {"a": "1"}
    copy = without(plain, CLIENT_FORWARDING)
    assert copy == plain and copy is not plain  # callers add to it


# ------------------------------------------------------------------- the Lambda error table


@pytest.mark.parametrize(
    ("status", "code", "from_url", "answer"),
    [
        (404, "ResourceNotFoundException", True, (404, "unknown function", None)),
        (404, "ResourceNotFoundException", False, (500, "the backend failed", "misconfiguration")),
        (404, "OtherNotFound", True, (500, "the backend failed", None)),
        (429, "TooManyRequestsException", False, (429, "too many requests", None)),
        (429, "RequestTooLargeException", False, (429, "too many requests", None)),  # status before code
        (413, "Whatever", False, (413, "request payload too large", None)),
        (400, "RequestTooLargeException", False, (413, "request payload too large", None)),
        (400, "RequestEntityTooLargeException", True, (413, "request payload too large", None)),
        (400, "InvalidRequestContentException", False, (400, "the request body must be JSON", None)),
        (500, "InvalidRequestContentException", False, (500, "the backend failed", None)),
        (502, "ResponseTooLarge", False, (502, "the backend reply is too large", None)),
        (403, "ResponseTooLarge", False, (502, "the backend reply is too large", None)),  # code before 401/403
        (401, "UnrecognizedClientException", False, (500, "the backend failed", "refused the credentials")),
        (403, "ExpiredTokenException", True, (500, "the backend failed", "refused the credentials")),
        (500, "ServiceException", False, (500, "the backend failed", None)),
        (0, "Error", False, (500, "the backend failed", None)),
    ],
)
def test_service_errors_table(status, code, from_url, answer):
    got = service_answer(status, code, from_url)
    assert got.status == answer[0] and got.message == answer[1]
    assert (got.alert is None) if answer[2] is None else answer[2] in got.alert
    assert got.retry_after is (status == 429)


def test_every_row_of_the_table_is_reachable():
    for row in SERVICE_ERRORS:
        status = row.status if row.status is not None else 418
        code = row.code if row.code is not None else "SomeCode"
        from_url = row.from_url if row.from_url is not None else True
        assert service_answer(status, code, from_url) is row.answer, row


def test_a_large_reply_is_decoded_without_cyclic_gc_passes() -> None:
    # 15 MB of JSON took 1.8 s with the collections orjson's new containers trigger, 0.4 s without them.
    import gc

    started: list[dict] = []

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(info)

    payload = orjson.dumps({"items": [{"id": i, "tags": [i]} for i in range(50_000)]})
    assert len(payload) > reply_data.BULK_BYTES
    gc.callbacks.append(count)
    try:
        value = load_json(payload)
    finally:
        gc.callbacks.remove(count)
    # None while decoding (~140 without the pause); at most the one the next new container starts after it.
    assert len(started) <= 1 and gc.isenabled()
    assert len(value["items"]) == 50_000
    with pytest.raises(orjson.JSONDecodeError):  # a failed decode leaves the GC on too
        load_json(payload[:-1])
    assert gc.isenabled()


@pytest.mark.parametrize("flag", ["false", "true", 1, 0, [True]])
def test_unwrap_takes_only_a_boolean_is_base64_encoded(flag):
    # "false" is a truthy string: the body would have been base64-decoded (or refused) against the function's word.
    with pytest.raises(MalformedReply, match="isBase64Encoded must be true or false"):
        unwrap({"statusCode": 200, "body": "aGk=", "isBase64Encoded": flag})


def test_unwrap_is_base64_encoded_true_false_or_absent():
    assert unwrap({"statusCode": 200, "body": "aGk=", "isBase64Encoded": True}).body == b"hi"
    assert unwrap({"statusCode": 200, "body": "aGk=", "isBase64Encoded": False}).body == b"aGk="
    assert unwrap({"statusCode": 200, "body": "aGk=", "isBase64Encoded": None}).body == b"aGk="
    assert unwrap({"statusCode": 200, "body": "aGk="}).body == b"aGk="

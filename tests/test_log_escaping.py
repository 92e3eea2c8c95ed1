"""Log injection: client-influenced text (function error messages, decoded paths) can never start a log line of
its own. Text logs escape CR, LF and every other non-printable character in every field; JSON logs escape them
by construction."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path

import pytest

from lambdagate.telemetry.logs import AccessLog, JsonFormatter, LineWriter, LogSettings, TextFormatter, escape
from tests.support.gateway import launch_gateway
from tests.test_lambda_backend import http

FORGED = "x\nINFO lambdagate.access: GET /forged 200"


def record(message: str, *args, name: str = "lambdagate.lambda", exc_info=None) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, message, args, exc_info)


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain text, é and 中 stay", "plain text, é and 中 stay"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("\x00\x1b[31m\x7f", "\\x00\\x1b[31m\\x7f"),
        ("\x85 \u2028 \u2029 \u202e", "\\x85 \\u2028 \\u2029 \\u202e"),  # NEL, line/paragraph separators, bidi override
        ("\udcff", "\\udcff"),  # a lone surrogate
    ],
)
def test_escape(text: str, escaped: str) -> None:
    assert escape(text) == escaped


def test_text_formatter_keeps_every_record_on_one_line() -> None:
    line = TextFormatter("[P\n]").format(record("function error: message=%s", FORGED, name="lambdagate.x\ny"))
    assert "\n" not in line
    assert line.endswith(
        " WARNING lambdagate.x\\ny: function error: message=x\\nINFO lambdagate.access: GET /forged 200"
    )
    assert line.startswith("[P\\n] ")
    try:
        raise ValueError(FORGED)
    except ValueError:
        line = TextFormatter().format(record("failed", exc_info=sys.exc_info()))
    assert "\n" not in line and "failed\\nTraceback (most recent call last):\\n" in line
    assert "ValueError: x\\nINFO lambdagate.access: GET /forged 200" in line


def test_json_formatter_is_one_line_and_keeps_the_text() -> None:
    line = JsonFormatter().format(record("message=%s", FORGED + "\udcff"))
    assert "\n" not in line
    assert json.loads(line)["message"] == "message=" + FORGED + "\udcff"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_access_log_escapes_a_decoded_path(fmt: str) -> None:
    read, write = os.pipe()
    try:
        AccessLog(LogSettings(format=fmt), LineWriter(write)).write(
            "GET", None, "/a\nINFO lambdagate.access: GET /forged 200", 414, 0.0, 10, "rid", "127.0.0.1", None
        )
        data = os.read(read, 65536).decode()
    finally:
        os.close(read)
        os.close(write)
    assert data.count("\n") == 1 and data.endswith("\n")
    if fmt == "json":
        assert json.loads(data)["path"] == "/a\nINFO lambdagate.access: GET /forged 200"
    else:
        assert "GET /a\\nINFO lambdagate.access: GET /forged 200 414 " in data


def test_forged_lines_never_reach_the_gateway_log(tmp_path: Path) -> None:
    """A function raising with the client's text, and a refused request whose decoded path holds %0A."""
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "boom.py").write_text("def handler(event, context):\n    raise ValueError(event['msg'])\n")
    config = {
        "version": 3,
        "endpoints": [
            {
                "endpoint": "/boom",
                "method": "POST",
                "backend": [{"extra_config": {"backend/lambda": {"function_name": "boom"}}}],
            }
        ],
    }
    gw = launch_gateway(config, tmp_path, "--functions", str(functions))
    try:
        assert http("POST", gw.url + "/boom", json.dumps({"msg": FORGED}).encode())[0] == 500
        forged_path = "/b%0AINFO%20lambdagate.access:%20GET%20/forged%20200?" + "q" * 9000
        assert http("GET", gw.url + forged_path)[0] == 414
        assert http("GET", gw.url + "/__health")[0] == 200
    finally:
        gw.process.stop()
    lines = gw.log().splitlines()
    mentions = [line for line in lines if "GET /forged 200" in line]
    assert len(mentions) >= 2, lines[-20:]  # the error message and the refused path were logged ...
    # ... escaped, inside the line that logged them: no line of their own.
    assert not [line for line in lines if re.match(r"(\S+ )?INFO lambdagate\.access: GET /forged", line)], mentions
    # (the local runtime's echo of the function's output prefixes each of its lines with "[boom] ")
    escaped = re.compile(r"\\n(\[boom\] )?INFO lambdagate\.access: GET /forged 200")
    assert all(escaped.search(line) for line in mentions), mentions

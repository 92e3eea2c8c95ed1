"""Function discovery and functions.yaml validation (no processes involved)."""

from __future__ import annotations

import textwrap

import pytest

from lambdagate.local_runtime.functions import ConfigError, FunctionConfig, load_functions
from lambdagate.local_runtime.server import parse_function_name


def write(directory, name, text):
    (directory / name).write_text(textwrap.dedent(text))


def test_discovers_files_defining_handler(tmp_path):
    write(tmp_path, "a.py", "def handler(event, context):\n    return 1\n")
    write(tmp_path, "b.py", "async def handler(event, context):\n    return 1\n")
    write(tmp_path, "c.py", "from a import handler\n")
    write(tmp_path, "helper.py", "def util():\n    pass\n")
    write(tmp_path, "_private.py", "def handler(e, c):\n    pass\n")
    write(tmp_path, "broken.py", "def handler(:\n")  # kept: invoking it reports the syntax error
    assert list(load_functions(tmp_path)) == ["a", "b", "broken", "c"]
    assert load_functions(tmp_path)["a"] == FunctionConfig(name="a", handler="a.handler")


def test_defaults_match_lambda(tmp_path):
    write(tmp_path, "a.py", "def handler(e, c):\n    pass\n")
    fn = load_functions(tmp_path)["a"]
    assert (fn.timeout, fn.memory_mb, fn.reserved_concurrency, fn.environment) == (3, 128, 2, {})
    assert fn.max_queued_events == 100  # ours: Lambda has no per-function bound on its event queue


def test_yaml_settings_defaults_and_shorthand(tmp_path):
    write(tmp_path, "a.py", "def handler(e, c):\n    pass\n")
    write(tmp_path, "tasks.py", "def run(e, c):\n    pass\n")
    write(
        tmp_path,
        "functions.yaml",
        """
        defaults:
          timeout: 10
        functions:
          a:
            memory_mb: 256
            environment: {STAGE: dev, DEBUG: true, LEVEL: 3}
          job: tasks.run
          other:
            handler: tasks.run
            timeout: 1
            reserved_concurrency: 0
            max_queued_events: 5
    """,
    )
    functions = load_functions(tmp_path)
    assert functions["a"] == FunctionConfig(
        "a",
        "a.handler",
        timeout=10,
        memory_mb=256,
        environment={"STAGE": "dev", "DEBUG": "true", "LEVEL": "3"},
    )
    assert functions["job"] == FunctionConfig("job", "tasks.run", timeout=10)
    assert functions["other"].timeout == 1 and functions["other"].reserved_concurrency == 0
    assert functions["other"].max_queued_events == 5


def test_flat_mapping_and_json(tmp_path):
    write(tmp_path, "tasks.py", "def run(e, c):\n    pass\n")
    write(tmp_path, "functions.json", '{"job": {"handler": "tasks.run", "timeout": 7}}')
    assert load_functions(tmp_path)["job"].timeout == 7


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("functions: [a]", "functions: must be a mapping"),
        (
            "functions:\n  a: {timeout: 0}",
            "functions.a.timeout: must be an integer number of seconds between 1 and 900",
        ),
        ("functions:\n  a: {timeout: '5s'}", "functions.a.timeout"),
        ("functions:\n  a: {timeout: true}", "functions.a.timeout"),
        (
            "functions:\n  a: {memory_mb: 64}",
            "functions.a.memory_mb: must be an integer number of MB between 128 and 10240",
        ),
        ("functions:\n  a: {reserved_concurrency: -1}", "functions.a.reserved_concurrency"),
        ("functions:\n  a: {max_queued_events: 10001}", "functions.a.max_queued_events: must be an integer count"),
        ("defaults: {max_queued_events: -1}\nfunctions: {}", "defaults.max_queued_events"),
        ("functions:\n  a: {environment: {AWS_LAMBDA_INITIALIZATION_TYPE: x}}", "is reserved"),
        ("functions:\n  a: {timout: 3}", "functions.a: unknown key(s) timout"),
        ("functions:\n  a: {environment: [A]}", "functions.a.environment: must be a mapping"),
        ("functions:\n  a: {environment: {AWS_REGION: x}}", "AWS_REGION is reserved"),
        ("functions:\n  a: {environment: {1BAD: x}}", "'1BAD' is not a valid variable name"),
        ("functions:\n  a: {handler: nodot}", "functions.a.handler: expected 'module.function'"),
        ("functions:\n  ghost: {timeout: 3}", "no 'handler' given and ghost.py does not define handler()"),
        ("functions:\n  'bad name': a.handler", "function names are 1-64 letters"),
        ("functions: {}\nextra: 1", "unknown key(s) extra"),
        ("defaults: {timeout: 901}\nfunctions: {}", "defaults.timeout"),
        ("functions:\n  a: [1]", "expected 'module.function' or a mapping"),
        ("functions:\n  a: {\n", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_invalid_config_is_reported_clearly(tmp_path, yaml_text, message):
    write(tmp_path, "a.py", "def handler(e, c):\n    pass\n")
    (tmp_path / "functions.yaml").write_text(yaml_text)
    with pytest.raises(ConfigError) as excinfo:
        load_functions(tmp_path)
    assert message in str(excinfo.value)
    assert "functions.yaml" in str(excinfo.value)


def test_missing_directory(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_functions(tmp_path / "nope")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("greet", ("greet", None)),
        ("greet:$LATEST", ("greet", "$LATEST")),
        ("arn:aws:lambda:eu-west-1:123456789012:function:greet", ("greet", None)),
        ("arn:aws:lambda:eu-west-1:123456789012:function:greet:prod", ("greet", "prod")),
        ("123456789012:function:greet", ("greet", None)),
        ("arn:aws:s3:::bucket", None),
        ("a:b:c", None),
    ],
)
def test_parse_function_name(raw, expected):
    assert parse_function_name(raw) == expected

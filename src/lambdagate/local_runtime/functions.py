"""Function discovery and ``functions.yaml`` validation.

A functions directory holds one function per ``NAME.py`` that defines a
top-level ``handler`` (found by parsing, never by importing: user code only ever
runs inside workers). An optional ``functions.yaml`` / ``functions.yml`` /
``functions.json`` adds functions and per-function settings::

    defaults:                 # optional, applied to every function
      timeout: 5
    functions:
      hello: greet.handler    # shorthand: NAME: module.function
      slow:
        handler: tasks.run    # default: NAME.handler
        timeout: 10           # seconds, 1-900 (Lambda's default 3)
        memory_mb: 256        # 128-10240 (default 128)
        reserved_concurrency: 4   # workers at once, 0 throttles all (default 2)
        max_queued_events: 100    # Event invocations accepted but not finished, 0-10000 (default 100)
        environment: {STAGE: dev} # the worker's only variables besides the runtime's own (pool.worker_env)
        description: "..."

A file without the ``functions:`` key is read as the ``functions`` mapping itself.
Every mistake raises ConfigError naming the file and the offending key.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lambdagate.errors import ConfigError  # one error type for every config the project reads

log = logging.getLogger("lambdagate.local_runtime")

DEFAULT_TIMEOUT = 3
DEFAULT_MEMORY_MB = 128
DEFAULT_RESERVED_CONCURRENCY = 2
# Beyond this many unfinished Event invocations of one function, more get 429: each holds its payload
# (up to 6 MB) in memory until a worker takes it.
DEFAULT_MAX_QUEUED_EVENTS = 100
CONFIG_FILES = ("functions.yaml", "functions.yml", "functions.json")

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HANDLER = re.compile(r"^[A-Za-z0-9_/.-]+\.[A-Za-z_][A-Za-z0-9_]*$")
_ENV_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# Variables the runtime sets itself; Lambda rejects them in a function's environment too.
RESERVED_ENV = frozenset(
    {
        "_HANDLER",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
    }
)
_SETTINGS = ("timeout", "memory_mb", "reserved_concurrency", "max_queued_events", "environment", "description")


@dataclass(frozen=True)
class FunctionConfig:
    name: str
    handler: str  # "module.function", module relative to the functions directory
    timeout: int = DEFAULT_TIMEOUT
    memory_mb: int = DEFAULT_MEMORY_MB
    reserved_concurrency: int = DEFAULT_RESERVED_CONCURRENCY
    max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS
    environment: dict[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def module(self) -> str:
        return self.handler.rpartition(".")[0]

    def source_path(self, root: Path) -> Path:
        """The file the handler module would be imported from (may not exist)."""
        base = root.joinpath(*self.module.replace("/", ".").split("."))
        package = base / "__init__.py"
        return package if package.is_file() else base.with_suffix(".py")


def config_file(root: Path) -> Path | None:
    return next((root / n for n in CONFIG_FILES if (root / n).is_file()), None)


def _defines_handler(path: Path) -> bool:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError:
        return True  # keep it: invoking it reports Runtime.UserCodeSyntaxError, as Lambda does
    except (OSError, ValueError):
        return False
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "handler":
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "handler" for t in targets):
                return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((a.asname or a.name) == "handler" for a in node.names):
                return True
    return False


def discover(root: Path) -> dict[str, FunctionConfig]:
    found = {}
    for path in sorted(root.glob("*.py")):
        name = path.stem
        if name.startswith(("_", ".")) or not _NAME.match(name):
            continue
        if _defines_handler(path):
            found[name] = FunctionConfig(name=name, handler=f"{name}.handler")
    return found


def _read(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}") from None


def _int(where: str, value, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}: must be an integer {what} between {low} and {high}, got {value!r}")
    return value


def _settings(where: str, raw: dict) -> dict:
    """Validate the per-function settings in ``raw`` (already checked for unknown keys)."""
    out = {}
    if "timeout" in raw:
        out["timeout"] = _int(f"{where}.timeout", raw["timeout"], 1, 900, "number of seconds")
    if "memory_mb" in raw:
        out["memory_mb"] = _int(f"{where}.memory_mb", raw["memory_mb"], 128, 10240, "number of MB")
    if "reserved_concurrency" in raw:
        out["reserved_concurrency"] = _int(
            f"{where}.reserved_concurrency", raw["reserved_concurrency"], 0, 1000, "count"
        )
    if "max_queued_events" in raw:
        out["max_queued_events"] = _int(f"{where}.max_queued_events", raw["max_queued_events"], 0, 10000, "count")
    if "description" in raw:
        if not isinstance(raw["description"], str):
            raise ConfigError(f"{where}.description: must be a string")
        out["description"] = raw["description"]
    if "environment" in raw:
        env = raw["environment"] or {}
        if not isinstance(env, dict):
            raise ConfigError(f"{where}.environment: must be a mapping of NAME: value")
        for key, value in env.items():
            if not isinstance(key, str) or not _ENV_NAME.match(key):
                raise ConfigError(f"{where}.environment: {key!r} is not a valid variable name")
            if key in RESERVED_ENV:
                raise ConfigError(f"{where}.environment: {key} is reserved and set by the runtime")
            if isinstance(value, (dict, list)) or value is None:
                raise ConfigError(f"{where}.environment.{key}: must be a string, number or boolean")
        out["environment"] = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in env.items()}
    return out


def _check_keys(where: str, raw: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(map(str, raw)) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def _parse_config(path: Path, found: dict[str, FunctionConfig]) -> dict[str, FunctionConfig]:
    data = _read(path)
    if data is None:
        return found
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'functions:' key")
    defaults: dict = {}
    if "functions" in data:
        _check_keys(str(path), data, ("functions", "defaults"))
        raw_defaults = data.get("defaults") or {}
        if not isinstance(raw_defaults, dict):
            raise ConfigError(f"{path}: defaults: must be a mapping")
        _check_keys(f"{path}: defaults", raw_defaults, _SETTINGS)
        defaults = _settings(f"{path}: defaults", raw_defaults)
        entries = data["functions"] or {}
        if not isinstance(entries, dict):
            raise ConfigError(f"{path}: functions: must be a mapping of NAME to settings")
    else:
        entries = data

    result = {name: _replace(fn, defaults) for name, fn in found.items()}
    for name, entry in entries.items():
        where = f"{path}: functions.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{where}: function names are 1-64 letters, digits, '-' or '_'")
        if isinstance(entry, str):
            entry = {"handler": entry}
        elif entry is None:
            entry = {}
        elif not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected 'module.function' or a mapping of settings")
        _check_keys(where, entry, ("handler",) + _SETTINGS)
        handler = entry.get("handler")
        if handler is None:
            if name not in found:
                raise ConfigError(f"{where}: no 'handler' given and {name}.py does not define handler()")
            handler = found[name].handler
        if not isinstance(handler, str) or not _HANDLER.match(handler):
            raise ConfigError(f"{where}.handler: expected 'module.function', got {handler!r}")
        result[name] = FunctionConfig(name=name, handler=handler, **{**defaults, **_settings(where, entry)})
    return result


def _replace(fn: FunctionConfig, settings: dict) -> FunctionConfig:
    return FunctionConfig(name=fn.name, handler=fn.handler, **settings) if settings else fn


def load_functions(directory) -> dict[str, FunctionConfig]:
    """All functions in ``directory``, by name; raises ConfigError when unusable."""
    root = Path(directory)
    if not root.is_dir():
        raise ConfigError(f"functions directory {root} does not exist or is not a directory")
    functions = discover(root)
    path = config_file(root)
    if path is not None:
        functions = _parse_config(path, functions)
    for fn in functions.values():
        if not fn.source_path(root).exists():
            log.warning("function %s: module '%s' not found in %s", fn.name, fn.module, root)
    return dict(sorted(functions.items()))

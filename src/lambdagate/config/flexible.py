"""KrakenD's flexible configuration: the config file is a Go template, rendered before it is parsed.

The switches are KrakenD's (`FC_ENABLE`, `FC_SETTINGS`, `FC_PARTIALS`, `FC_TEMPLATES`, `FC_OUT`), as environment
variables or `--fc-*` flags. Settings files (`service.json`) are the template's data (`.service`), `include "x"`
inserts a partial verbatim, `template "x.tmpl" .` runs a file from the templates folder, `marshal` writes JSON and
`env` reads the environment. Safer than KrakenD: files are read only inside the three folders, a missing partial is
an error instead of an empty string, `env` reads only names matching `FC_ENV_ALLOW`, and rendering is bounded.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdagate.config.gotemplate import FuncError, TemplateError, TemplateSet
from lambdagate.config.gotemplate.sprig import json_or_empty
from lambdagate.errors import ConfigError, ConfigIssue

MAX_FILE_BYTES = 4 * 1024 * 1024  # one settings file, partial or template


@dataclass(frozen=True)
class FlexibleConfig:
    settings: str | None = None
    partials: str | None = None
    templates: str | None = None
    out: str | None = None  # where the rendered config is written ("-": standard output, for `check`)
    env_allow: str | None = None  # a regular expression the names `env` may read must match in full

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **flags: str | None) -> FlexibleConfig | None:
        """The switches from `environ`, overridden by the flags given; None unless enabled (FC_ENABLE set to
        anything, as KrakenD, or a flag given)."""
        given = {k: v for k, v in flags.items() if v is not None}
        if not environ.get("FC_ENABLE") and not given:
            return None
        names = {"settings": "FC_SETTINGS", "partials": "FC_PARTIALS", "templates": "FC_TEMPLATES", "out": "FC_OUT"}
        values = {field: environ.get(env) or None for field, env in names.items()}
        values["env_allow"] = environ.get("FC_ENV_ALLOW") or None
        return cls(**{**values, **given})

    def folders(self) -> list[Path]:
        """The folders a render reads (watched for changes by `run --watch`)."""
        return [Path(p).resolve() for p in (self.settings, self.partials, self.templates) if p]


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError([ConfigIssue("", f"{where}: {message}" if where else message)])


def _read(path: Path, what: str) -> str:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise _fail(str(path), f"{what} is larger than {MAX_FILE_BYTES} bytes")
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(str(path), f"cannot read {what}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise _fail(str(path), f"{what} is not UTF-8 text") from None


def _folder(path: str, switch: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise _fail(path, f"{switch} must name a folder, and this is not one")
    return folder


def load_settings(folder: str) -> dict[str, Any]:
    """Each `NAME.json` in the folder as `.NAME`, decoded as Go decodes JSON (every number a float64)."""
    settings: dict[str, Any] = {}
    for path in sorted(_folder(folder, "FC_SETTINGS").glob("*.json")):
        try:
            value = json.loads(_read(path, "settings file"), parse_int=float)
        except json.JSONDecodeError as exc:
            raise _fail(str(path), f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
        except RecursionError:
            raise _fail(str(path), "invalid JSON: nested too deeply") from None
        if not isinstance(value, dict):
            raise _fail(str(path), "a settings file must hold a JSON object")
        settings[path.stem] = value
    return settings


def _inside(folder: Path, name: str, switch: str) -> Path:
    """`name` inside `folder`: a name that leaves the folder ("../x", "/etc/x", a symlink out) is refused."""
    root = folder.resolve()
    target = (root / name).resolve()
    if not target.is_relative_to(root):
        raise FuncError(f"{name!r} is outside the {switch} folder")
    return target


class _Functions:
    """KrakenD's own template functions, plus `env` with its allow-list."""

    def __init__(self, fc: FlexibleConfig, environ: Mapping[str, str]) -> None:
        self.fc, self.environ = fc, environ
        self.allow = re.compile(fc.env_allow) if fc.env_allow else None

    def include(self, name: Any) -> str:
        if not isinstance(name, str):
            raise FuncError("include takes a file name")
        if not self.fc.partials:
            raise FuncError(f"include {name!r} needs FC_PARTIALS (or --fc-partials): the folder of partials")
        try:
            return _read(_inside(Path(self.fc.partials), name, "FC_PARTIALS"), "partial")
        except ConfigError as exc:
            raise FuncError(exc.issues[0].message) from None

    def env(self, name: Any) -> str:
        name = str(name)
        if self.allow is not None and not self.allow.fullmatch(name):
            raise FuncError(f"env {name!r} is not allowed by FC_ENV_ALLOW ({self.fc.env_allow})")
        return self.environ.get(name, "")

    def expandenv(self, text: Any) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.env(m.group(1) or m.group(2)), str(text))

    def table(self) -> dict[str, Any]:
        return {
            "include": self.include,
            "env": self.env,
            "expandenv": self.expandenv,
            "marshal": json_or_empty,
        }  # errors give "", as KrakenD's


def _no_settings_hint(message: str, fc: FlexibleConfig) -> str:
    if "nil pointer evaluating" in message and not fc.settings:
        return " (no settings folder was given: set FC_SETTINGS or --fc-settings)"
    return ""


def render(path: str | Path, fc: FlexibleConfig, environ: Mapping[str, str] | None = None) -> str:
    """The config file rendered as KrakenD renders it; raises ConfigError naming the file, line and column."""
    environ = os.environ if environ is None else environ
    main = Path(path)
    try:
        templates = TemplateSet(_Functions(fc, environ).table())
        templates.add(main.name, _read(main, "config file"))
        if fc.templates:
            for file in sorted(_folder(fc.templates, "FC_TEMPLATES").glob("*.tmpl")):
                templates.add(file.name, _read(file, "template"))
        data = load_settings(fc.settings) if fc.settings else {}
        return templates.render(main.name, data)
    except TemplateError as exc:
        raise _fail("", exc.message + _no_settings_hint(exc.message, fc)) from None
    except RecursionError:
        raise _fail(str(main), "nested too deeply to render (a settings file or a template)") from None
    except MemoryError:
        raise _fail(str(main), "rendering needs more memory than there is: the template builds too much") from None
    except re.error as exc:
        raise _fail("FC_ENV_ALLOW", f"not a regular expression: {exc}") from None

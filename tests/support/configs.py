"""Configs with one `extra_config` namespace set, loaded through the real loader (namespace tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from lambdagate.config import LoadedConfig, load_config
from lambdagate.errors import ConfigError


def load_with_namespace(tmp_path: Path, namespace: str, value: Any = None, **service: Any) -> LoadedConfig:
    """A one-endpoint config with `extra_config[namespace] = value` (left out when None), loaded."""
    doc: dict = {
        "version": 3,
        **service,
        "endpoints": [{"endpoint": "/a", "backend": [{"host": ["http://svc:1"], "url_pattern": "/a"}]}],
    }
    if value is not None:
        doc["extra_config"] = {namespace: value}
    path = tmp_path / "krakend.json"
    path.write_bytes(orjson.dumps(doc))
    return load_config(path)


def namespace_errors(tmp_path: Path, namespace: str, value: Any) -> list[str]:
    """The loader's error lines for such a config (which must be refused)."""
    with pytest.raises(ConfigError) as info:
        load_with_namespace(tmp_path, namespace, value)
    return [str(i) for i in info.value.issues]

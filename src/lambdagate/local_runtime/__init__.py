"""Local Lambda runtime: Lambda's Invoke REST API for the Python handlers in a directory.

Lets you develop functions with no AWS account against the same API production
uses (boto3 / AWS CLI with ``--endpoint-url``); the gateway reaches it over HTTP
only. Entry points:

- ``main(argv)`` / ``python -m lambdagate.local_runtime DIR --port N``
- ``serve(directory, host="127.0.0.1", port=9001)`` (blocking)
- ``start_in_background(directory, host="127.0.0.1", port=0) -> RuntimeHandle``
  (child process; ``handle.url``, ``handle.stop()``)
- ``create_app(directory)`` (the aiohttp application, for embedding in-process)

Exports are resolved lazily: worker processes import this package too, and
must not pay for (or be exposed to) aiohttp and friends.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "main": "lambdagate.local_runtime.__main__",
    "serve": "lambdagate.local_runtime.server",
    "create_app": "lambdagate.local_runtime.server",
    "start_in_background": "lambdagate.local_runtime.background",
    "RuntimeHandle": "lambdagate.local_runtime.background",
    "ConfigError": "lambdagate.local_runtime.functions",
    "FunctionConfig": "lambdagate.local_runtime.functions",
    "load_functions": "lambdagate.local_runtime.functions",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""A tiny ASGI app that can crash the HTTP server, served under the gateway's own supervision (workers.py):
`python -m tests.support.crashing_app PORT WORKERS`.

- `GET /panic` replies with 40,000 distinct header names: the `http` crate's header map overflows inside
  granian and panics, which aborts the worker process (granian is built with `panic = "abort"`). It is the
  failure the attack found (a Lambda proxy reply with ~24,600 header names), without the gateway's header cap.
- `GET /pid` answers with the worker's pid.
- While the file named by `CRASHING_APP_FAIL_START` exists, a worker's lifespan start-up fails.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PANIC_HEADERS = 40_000


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            failing = os.environ.get("CRASHING_APP_FAIL_START")
            if failing and Path(failing).exists():
                await send({"type": "lifespan.startup.failed", "message": "told to fail"})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"text/plain")]
    if scope["path"] == "/panic":
        headers += [(b"x-h%d" % i, b"v") for i in range(PANIC_HEADERS)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})


def app():
    """The factory granian's workers call."""
    return _app


def main() -> None:
    from lambdagate.config.server_options import ServerOptions
    from lambdagate.supervisor import build_server
    from lambdagate.telemetry.logs import LogSettings, configure

    configure(LogSettings())
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    build_server(
        "tests.support.crashing_app:app",
        host="127.0.0.1",
        port=port,
        workers=workers,
        options=ServerOptions(shutdown_grace="1s"),
        connections=100,
    ).serve()


if __name__ == "__main__":
    main()

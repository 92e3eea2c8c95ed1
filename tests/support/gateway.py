"""Start a real `lambdagate run` process on a config dict, on a free loopback port."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.support.procs import Process, free_port, python_module, wait_http


class Gateway:
    def __init__(self, process: Process, url: str) -> None:
        self.process = process
        self.url = url

    def log(self) -> str:
        return self.process.log()


def launch_gateway(
    config: dict,
    directory: Path,
    *args: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
    name: str = "krakend.json",
    cls: type[Gateway] = Gateway,
) -> Gateway:
    """Write the config into `directory`, start the gateway and wait until /__health answers."""
    path = directory / name
    path.write_bytes(orjson.dumps(config))
    port = port or free_port()
    proc = Process(
        python_module("lambdagate", "run", "-c", str(path), "--port", str(port), "--host", "127.0.0.1", *args),
        directory / f"gateway-{port}.log",
        env,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/__health", proc=proc.proc, timeout=30)
    except Exception as exc:
        proc.stop()
        raise RuntimeError(f"gateway did not start: {exc}\n{proc.log()}") from None
    return cls(proc, f"http://127.0.0.1:{port}")

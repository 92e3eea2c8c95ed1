"""Drive the gateway in-process: the real ASGI app and request stack, with fake backends, in milliseconds.

`FakeBackends` stands in for the backend factory: each backend's `url_pattern` names a callable that answers it.
Everything else (routing, request building, fan-out, merge, formatting, rendering) is the gateway's own code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson

from lambdagate.config import LoadOptions, validate_document
from lambdagate.config.model import BackendConfig
from lambdagate.pipeline import BuildContext, BuiltBackend
from lambdagate.proxy import ProxyRequest, ProxyResponse
from lambdagate.server import Gateway
from lambdagate.telemetry.logs import LogSettings

FakeCall = Callable[[ProxyRequest], Awaitable[ProxyResponse]]


@dataclass
class FakeBackends:
    """Backends by url_pattern; `seen` keeps every request each one got."""

    calls: dict[str, FakeCall]
    seen: dict[str, list[ProxyRequest]] = field(default_factory=dict)

    def factory(self, backend: BackendConfig):
        async def build(cfg: BackendConfig, ctx: BuildContext) -> BuiltBackend:
            answer = self.calls[cfg.url_pattern]
            seen = self.seen.setdefault(cfg.url_pattern, [])

            async def call(req: ProxyRequest) -> ProxyResponse:
                seen.append(req)
                return await answer(req)

            return BuiltBackend(call, f"fake {cfg.url_pattern}")

        return build


def returning(data: dict | None = None, *, delay: float = 0.0, error: Exception | None = None) -> FakeCall:
    async def answer(req: ProxyRequest) -> ProxyResponse:
        if delay:
            await asyncio.sleep(delay)
        if error is not None:
            raise error
        return ProxyResponse.decoded(dict(data or {}))

    return answer


@dataclass
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        return next((v.decode() for k, v in self.headers if k == wanted), None)

    def json(self):
        return orjson.loads(self.body)


class InProcessGateway:
    def __init__(self, config: dict, backends: FakeBackends, *, debug: bool = False) -> None:
        loaded = validate_document(config, LoadOptions())
        self.app = Gateway(
            loaded, debug=debug, backend_factory=backends.factory, log_settings=LogSettings(access=False)
        )

    async def __aenter__(self) -> InProcessGateway:
        await self.app.startup()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.app.shutdown()

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] = (),
        body: bytes = b"",
        chunks: list[bytes | None] | None = None,
        client: str = "127.0.0.1",
    ) -> Reply:
        path, _, query = target.partition("?")
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "raw_path": target.encode(),
            "scheme": "http",
            "query_string": query.encode(),
            "client": (client, 50000),
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        }
        pending = list(chunks if chunks is not None else [body])
        sent: list[dict] = []

        async def receive() -> dict:
            if not pending or pending[0] is None:
                await asyncio.sleep(3600)  # a client that sends nothing more (None in `chunks`: stalls there)
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

        async def send(message: dict) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        start, body_message = sent
        return Reply(start["status"], list(start["headers"]), body_message["body"])


def run(config: dict, backends: FakeBackends, scenario: Callable[[InProcessGateway], Awaitable[None]], **kw) -> None:
    """Start the gateway on `config` in this process, run `scenario` against it, stop it."""

    async def main() -> None:
        async with InProcessGateway(config, backends, **kw) as gateway:
            await scenario(gateway)

    asyncio.run(main())

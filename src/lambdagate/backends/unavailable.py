"""A backend KrakenD starts with but can never call (no host at all): every call fails, as KrakenD's load
balancer answers "no hosts available". The config warns about it; the gateway still starts."""

from __future__ import annotations

from lambdagate.config.model import BackendConfig
from lambdagate.errors import BackendError
from lambdagate.pipeline import BuildContext, BuiltBackend
from lambdagate.proxy import ProxyRequest, ProxyResponse


def has_no_host(cfg: BackendConfig, ctx: BuildContext) -> bool:
    return not (cfg.host or ctx.service.host)


async def unavailable_backend(cfg: BackendConfig, ctx: BuildContext) -> BuiltBackend:
    async def call(req: ProxyRequest) -> ProxyResponse:
        raise BackendError("the backend is unavailable", cause="no hosts available (the config names none)")

    return BuiltBackend(call, f"{cfg.method or ctx.endpoint.method} (no host){cfg.url_pattern.partition('?')[0]}")

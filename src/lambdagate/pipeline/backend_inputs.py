"""A backend's own `input_headers` and `input_query_strings`: they narrow what its endpoint forwards, as Lura's
header and query-string filters around each backend.

Only names in both lists reach the backend (its list cannot add what the endpoint drops), and "*" is a name like
any other, as in Lura (it matches no header and no parameter). Header names compare without case; query names
exactly. The headers the gateway adds itself are filtered too, as KrakenD's are: X-Forwarded-For,
X-Forwarded-Host and X-Forwarded-Via go to the backend only when its list names them; User-Agent is the client's
only when both lists name it, else lambdagate's own (Go's client sends its own there too). The request id and
trace context are lambdagate's and always sent. The wrapper goes around the whole backend (Lua, CEL, rate limits,
martian and the call), as Lura's filters around KrakenD's backend factory.
"""

from __future__ import annotations

from dataclasses import replace

from lambdagate.config.core_keys import GATEWAY_HEADERS
from lambdagate.config.model import BackendConfig
from lambdagate.proxy import Backend, ProxyRequest, ProxyResponse

_GATEWAY = frozenset(h.lower() for h in GATEWAY_HEADERS)


def narrowed(call: Backend, cfg: BackendConfig) -> Backend:
    """`call` with the backend's input lists applied; `call` itself when it has none (KrakenD's default)."""
    if not cfg.input_headers and not cfg.input_query_strings:
        return call
    headers = frozenset(h.lower() for h in cfg.input_headers) if cfg.input_headers else None
    query = frozenset(cfg.input_query_strings) if cfg.input_query_strings else None
    gateway = headers & _GATEWAY if headers is not None else None

    async def call_narrowed(req: ProxyRequest) -> ProxyResponse:
        kept_headers = req.headers
        if headers is not None:
            kept_headers = {k: v for k, v in req.headers.items() if k.lower() in headers}
        kept_query = req.query
        if query is not None and req.query:
            kept_query = [pair for pair in req.query if pair[0] in query]
        return await call(replace(req, headers=kept_headers, query=kept_query, gateway_headers=gateway))

    return call_narrowed

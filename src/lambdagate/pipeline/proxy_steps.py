"""The `proxy` namespace's endpoint-level response steps, in Lura's order: `flatmap_filter`, then `static`.

`flatmap_filter` (pipeline/flatmap.py) changes the merged data; unlike Lura, it also applies to a single backend's
data and to a partial merge (Lura skips it there, so a `del` meant to hide a field would not hide it).

`static`: fixed data added to the endpoint's reply when its `strategy` matches, as Lura's static middleware.

Strategies, by what the backends did: `always`; `success` (no backend failed); `complete` (none failed and every
reply was complete); `errored` (at least one failed); `incomplete` (no reply, or an incomplete one). When every
backend failed, the static data is the reply: 200, `X-KrakenD-Completed: false`, as KrakenD answers.
A pass-through reply (`no-op`) is left as it is (KrakenD's no-op rendering ignores data).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from lambdagate.config.model import EndpointConfig, ServiceConfig
from lambdagate.config.proxy_options import endpoint_proxy
from lambdagate.pipeline import ResponseStep
from lambdagate.pipeline.fanout import MergedResponse
from lambdagate.pipeline.flatmap import build_flatmap
from lambdagate.proxy import ProxyResponse

if TYPE_CHECKING:
    from lambdagate.backends import Resources


def _errored(outcome: MergedResponse) -> bool:
    return outcome.error is not None or outcome.failed > 0


def _complete(outcome: MergedResponse) -> bool:
    return not _errored(outcome) and outcome.response is not None and outcome.response.is_complete


MATCHES: dict[str, Callable[[MergedResponse], bool]] = {
    "always": lambda outcome: True,
    "success": lambda outcome: not _errored(outcome),
    "complete": _complete,
    "errored": _errored,
    "incomplete": lambda outcome: outcome.response is None or not outcome.response.is_complete,
}


async def flatmap_step(service: ServiceConfig, endpoint: EndpointConfig, resources: Resources) -> ResponseStep | None:
    flatmap = build_flatmap(endpoint_proxy(endpoint).flatmap_filter)
    if flatmap is None:
        return None

    def apply_flatmap(outcome: MergedResponse) -> MergedResponse:
        resp = outcome.response
        if resp is not None and resp.data is not None and resp.body is None:
            resp.data = flatmap(resp.data)
        return outcome

    return ResponseStep(apply_flatmap)


async def static_step(service: ServiceConfig, endpoint: EndpointConfig, resources: Resources) -> ResponseStep | None:
    static = endpoint_proxy(endpoint).static
    if static is None:
        return None
    matches = MATCHES[static.strategy]
    # Kept encoded: each reply gets its own copy, so a later step (auth/signer) never changes the config's data.
    encoded = orjson.dumps(static.data)

    def add_static(outcome: MergedResponse) -> MergedResponse:
        resp = outcome.response
        if not matches(outcome) or (resp is not None and resp.body is not None):
            return outcome
        data = dict(resp.data or {}) if resp is not None else {}
        data.update(orjson.loads(encoded))
        complete = resp is not None and resp.is_complete
        return MergedResponse(
            ProxyResponse.merged(data, complete=complete), complete and bool(data), failed=outcome.failed
        )

    return ResponseStep(add_static)

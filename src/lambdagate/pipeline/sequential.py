"""The sequential proxy (`proxy.sequential: true`): backends called one after another, later ones reading earlier
replies, merged in order, as Lura's sequential merge.

- `{resp0_id}` / `{resp1_user.hash}` in a url_pattern take a field of an earlier (complete) reply, after that
  backend's own formatting; `sequential_propagated_params` ("resp0_id", or "resp0" for a `no-op` backend's whole
  body) also hand the value to every later backend as the param "Resp0_id", Lura's name, for the steps that read
  params (modifiers, Lua).
- Values as Lura writes them: text as is, numbers as their JSON text, true/false, an array's values joined with
  "," and null as "<nil>"; an object or a nested array (Go prints its own syntax) as JSON text. A missing field is sent empty.
- The chain stops at the first failed call: the first backend's failure is the endpoint's (its status and all);
  a later one's gives the data so far, incomplete. It also stops after an incomplete reply (e.g. backend/http
  error details), which is merged.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from lambdagate.config.model import BackendConfig
from lambdagate.config.proxy_options import PROPAGATED_RE, EndpointProxyOptions, sequential_refs
from lambdagate.pipeline.fanout import BackendSlot, MergedResponse, call_one
from lambdagate.proxy import ProxyRequest, ProxyResponse


@dataclass(frozen=True, slots=True)
class Ref:
    """A value a backend's call takes from an earlier reply."""

    index: int  # the earlier backend's position in the chain
    param: str  # the request param it goes into
    path: tuple[str, ...] | None  # the field in that reply's data; None: the reply's whole body (no-op)


def plan(backends: Sequence[BackendConfig], options: EndpointProxyOptions) -> list[tuple[Ref, ...]]:
    """Per backend of the chain, the earlier replies' values its call needs (a later one's are never there)."""
    propagated = []
    for name in options.sequential_propagated_params:
        m = PROPAGATED_RE.fullmatch(name)
        if m is not None and int(m[1]) < len(backends):
            field = m[2]
            param = f"Resp{m[1]}_{field}" if field else f"Resp{m[1]}"
            propagated.append(Ref(int(m[1]), param, tuple(field.split(".")) if field else None))
    out = []
    for i, backend in enumerate(backends):
        refs = [Ref(n, f"resp{n}_{path}", tuple(path.split("."))) for n, path in sequential_refs(backend.url_pattern)]
        if i > 0:
            refs.extend(propagated)
        out.append(tuple(dict.fromkeys(ref for ref in refs if ref.index < i)))
    return out


async def call_in_sequence(
    slots: Sequence[BackendSlot], req: ProxyRequest, refs: Sequence[tuple[Ref, ...]]
) -> MergedResponse:
    params = dict(req.params)  # filled step by step; the client's own params stay as they were
    replies: list[ProxyResponse | None] = [None] * len(slots)
    merged: dict[str, Any] = {}
    complete, failed = True, 0
    for i, slot in enumerate(slots):
        for ref in refs[i]:
            value = _value(replies[ref.index], ref.path)
            if value is not None:
                params[ref.param] = value
        step_req = copy.copy(req)
        step_req.params = dict(params) if i < len(slots) - 1 else params  # each call keeps what it was given
        outcome = await call_one(slot, step_req)
        if outcome.error is not None:
            if i == 0:
                return outcome
            if slot.details_key and outcome.error.details:
                merged[slot.details_key] = outcome.error.details
            complete, failed = False, 1
            break
        resp = outcome.response
        assert resp is not None
        replies[i] = resp
        if resp.body is not None:
            continue  # a no-op reply: no data here (KrakenD's is {}), its body is "resp<N>"
        merged.update(resp.data or {})
        if not resp.is_complete:
            complete = False
            break
    return MergedResponse(ProxyResponse.merged(merged, complete=complete), complete and bool(merged), failed=failed)


def _value(reply: ProxyResponse | None, path: tuple[str, ...] | None) -> str | None:
    if reply is None:
        return None
    if path is None:
        return reply.body.decode("utf-8", "replace") if reply.body is not None else None
    node: Any = reply.data
    for key in path[:-1]:
        node = node.get(key) if type(node) is dict else None
    if type(node) is not dict or path[-1] not in node:
        return None
    value = node[path[-1]]
    if type(value) is list:
        return ",".join(_text(x) for x in value)
    return _text(value)


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if value is None:
        return "<nil>"
    return orjson.dumps(value).decode()  # numbers, true/false, and an object or array as JSON

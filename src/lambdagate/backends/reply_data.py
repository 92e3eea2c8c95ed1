"""A backend's JSON reply as backend data, for every backend type: decoded with a depth limit, then shaped.

Depth: the gateway renders what it decoded with orjson, whose encoder stops at 254 levels of nesting
(orjson.loads accepts 1024). A reply nested between the two would decode, then fail at rendering with an
internal error. So a reply nested deeper than MAX_JSON_DEPTH is refused when it is decoded: the backend that
sent it fails (a 500 alone, a partial merge with others), and the others are untouched.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

# Deeper than real APIs nest (.NET's System.Text.Json refuses more than 64 levels by default, Ruby's JSON 100),
# and far enough below orjson's 254 for what the gateway wraps around a backend's data (`group`, the
# `collection` of an array): each adds one level.
MAX_JSON_DEPTH = 128
_CONTAINERS = (dict, list)
_SEARCHED_DEPTH = 2048  # deeper than orjson.loads ever returns (1024)


# Past this size a decoded reply is hundreds of thousands of objects: the cyclic GC, which runs every 700 new
# containers and rescans what survived, costs more than the decoding (15 MB of JSON: 0.4 s to decode, 1.8 s with
# the collections in between). It is paused for the decode; refcounting still frees everything it can.
BULK_BYTES = 256 * 1024


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic GC off for the block (left as it was if something else had it off)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class TooDeep(ValueError):
    """The JSON nests deeper than MAX_JSON_DEPTH."""


def is_blank(payload: bytes) -> bool:
    return not payload or payload.isspace()  # not payload.strip(): that copies the payload


def load_json(payload: bytes) -> Any:
    """orjson.loads, refusing a document nested deeper than MAX_JSON_DEPTH (TooDeep); JSONDecodeError if not JSON."""
    size = len(payload)
    if size > BULK_BYTES:
        with gc_paused():
            value = orjson.loads(payload)
    else:
        value = orjson.loads(payload)
    # Cheap first: a document of N bytes nests at most N/2 levels, and at most as many as it has opening
    # brackets (two C-speed counts: ~1 µs for 1 KB). Past _COUNT_UP_TO bytes a reply has more brackets than the
    # limit anyway, or few (a long text), and counting costs about as much as the exact check or more (100 KB of
    # objects: ~150 µs counting, ~180 µs checking; 100 KB of text: ~150 µs counting, ~10 µs checking).
    if size <= 2 * MAX_JSON_DEPTH:
        return value
    if size <= _COUNT_UP_TO and payload.count(b"[") + payload.count(b"{") <= MAX_JSON_DEPTH:
        return value
    if _too_deep(value):
        raise TooDeep(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _nested(depth: int) -> tuple[list, list]:
    """`depth` lists, each inside the one before: (outermost, innermost)."""
    outer = inner = []
    for _ in range(depth - 1):
        inner.append([])
        inner = inner[0]
    return outer, inner


def _encoder_depth() -> int | None:
    """How many levels orjson.dumps encodes (254 in orjson 3.x), or None when it encodes any depth we search."""
    lo, hi = 1, _SEARCHED_DEPTH  # lo encodes; find the last depth that does
    if _encodes(hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _encodes(mid) else (lo, mid)
    return lo


def _encodes(depth: int) -> bool:
    try:
        orjson.dumps(_nested(depth)[0])
    except orjson.JSONEncodeError:
        return False
    return True


def _probe_depth(value: Any) -> bool:
    """Whether `value` is deeper than MAX_JSON_DEPTH, asked of the encoder itself at C speed: inside a padding of
    (encoder depth - MAX_JSON_DEPTH) lists, the value encodes exactly when it nests at most MAX_JSON_DEPTH levels
    (5-10x faster than walking it)."""
    try:
        pad, inner = _padding.chain
    except AttributeError:  # one chain per thread, made once: no other call can see it while it holds `value`
        pad, inner = _padding.chain = _nested(_ENCODER_DEPTH - MAX_JSON_DEPTH)
    inner.append(value)
    try:
        orjson.dumps(pad)
    except orjson.JSONEncodeError:
        return True
    finally:
        inner.pop()
    return False


def _walk_depth(value: Any) -> bool:
    """Whether `value` nests more than MAX_JSON_DEPTH containers, walking it (iterative: any depth is safe).
    Only used if an orjson release encodes any depth, so that the encoder cannot be asked."""
    if type(value) not in _CONTAINERS:
        return False
    stack = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > MAX_JSON_DEPTH:
            return True
        child_depth = depth + 1
        for child in node.values() if type(node) is dict else node:
            if type(child) in _CONTAINERS:  # orjson gives exact dicts and lists
                push((child, child_depth))
    return False


_ENCODER_DEPTH = _encoder_depth()
if _ENCODER_DEPTH is None:
    _too_deep = _walk_depth
    _COUNT_UP_TO = 1 << 62  # the walk costs more than counting at any size
else:
    if _ENCODER_DEPTH < MAX_JSON_DEPTH + 8:
        raise RuntimeError(f"orjson encodes only {_ENCODER_DEPTH} levels: lower MAX_JSON_DEPTH ({MAX_JSON_DEPTH})")
    _padding = threading.local()
    _too_deep = _probe_depth
    _COUNT_UP_TO = 4096


def shape_data(value: Any) -> dict[str, Any]:
    """KrakenD's rule for a decoded reply: an object as is, an array as {"collection": [...]}, any other value
    (a string, a number, null) as {"content": value}."""
    if type(value) is dict:
        return value
    if type(value) is list:
        return {"collection": value}
    return {"content": value}

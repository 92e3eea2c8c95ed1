"""What a list field of a pydantic model looks like, for the hint of a "not a list" error.

A single value where a list belongs is the common slip (`"audience": "api"`): the hint wraps the value given
(`["api"]`) when it would be a valid item, and otherwise shows an item of the type the field holds, so a list of
pairs is not hinted as `[true]`: `"propagate_claims": true` gets `[["sub", "X-User"]]` (a field's own `examples`,
when it has some, are shown as they are).
"""

from __future__ import annotations

import json
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

# An item of each scalar type, when the value given is not one.
_SAMPLES: dict[type, Any] = {str: "text", int: 1, float: 1.5, bool: True}


def _unwrap(tp: Any) -> Any:
    """`tp` without Annotated metadata (StrictStr is Annotated[str, ...]) and without `| None`."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType) and type(None) in get_args(tp):
            rest = [a for a in get_args(tp) if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


def _field(model: type[BaseModel], name: str) -> FieldInfo | None:
    fields = model.model_fields
    return fields.get(name) or next((f for f in fields.values() if f.alias == name), None)


def located(model: type[BaseModel], loc: tuple) -> tuple[Any, FieldInfo | None]:
    """The type at `loc` (a pydantic error's location) and, when `loc` ends on a field, that field; (None, None)
    when the location cannot be followed (a dict's key, a model's extra key, a type this does not know)."""
    tp: Any = model
    info: FieldInfo | None = None
    for part in loc:
        tp, info = _unwrap(tp), None
        if isinstance(part, int) and get_origin(tp) is list:
            tp = get_args(tp)[0]
        elif isinstance(part, str) and isinstance(tp, type) and issubclass(tp, BaseModel):
            info = _field(tp, part)
            if info is None:
                return None, None
            tp = info.annotation
        else:
            return None, None
    return _unwrap(tp), info


def _fits(value: Any, tp: Any) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp in (int, float):
        return isinstance(value, (int, float) if tp is float else int) and not isinstance(value, bool)
    return tp is str and isinstance(value, str)


def _sample(tp: Any) -> Any:
    """An item of type `tp`, or None for a type this does not know (a model, a dict, Any)."""
    tp = _unwrap(tp)
    if tp in _SAMPLES:
        return _SAMPLES[tp]
    if get_origin(tp) is list:
        item = _sample(get_args(tp)[0])
        return None if item is None else [item]
    return None


def list_example(model: type[BaseModel] | None, loc: tuple, value: Any) -> str:
    """JSON text of a list to write instead of `value`, at `loc` of `model`: `[value]` unless the field's type
    (when known) shows that value cannot be an item."""
    wrapped = json.dumps([value])  # not orjson: it refuses ints beyond 64 bits
    if model is None:
        return wrapped
    tp, info = located(model, loc)
    if info is not None and info.examples:
        return json.dumps(info.examples[0])
    if get_origin(tp) is not list:
        return wrapped
    item_type = _unwrap(get_args(tp)[0])
    if _fits(value, item_type):
        return wrapped
    sample = _sample(item_type)
    return wrapped if sample is None else json.dumps([sample])

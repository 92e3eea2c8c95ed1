"""Per-backend manipulation in KrakenD's order: target → allow/deny → mapping → group."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambdagate.config.model import BackendConfig
from lambdagate.pipeline.formatter import build_formatter

DOC = {"name": "n", "nested": {"a": 1, "b": {"c": 2, "d": 3}}, "items": [{"x": 1}], "empty": {}}


def fmt(data: dict, **cfg: Any) -> dict:
    formatter = build_formatter(BackendConfig(**cfg))
    assert formatter is not None
    before = copy.deepcopy(data)
    out = formatter(data)
    assert data == before, "the formatter must never alter the backend's object"
    return out


def test_nothing_configured_means_no_formatter() -> None:
    assert build_formatter(BackendConfig()) is None


# --- target ---


def test_target_descends_dot_path() -> None:
    assert fmt(DOC, target="nested.b") == {"c": 2, "d": 3}


@pytest.mark.parametrize("target", ["missing", "nested.missing", "name", "items", "nested.a.x"])
def test_target_missing_or_not_an_object_is_empty(target: str) -> None:
    assert fmt(DOC, target=target) == {}


# --- allow ---


def test_allow_keeps_listed_leaves_only() -> None:
    assert fmt(DOC, allow=["name", "nested.b.c"]) == {"name": "n", "nested": {"b": {"c": 2}}}


def test_allow_listed_parent_keeps_whole_subtree() -> None:
    assert fmt(DOC, allow=["nested.b"]) == {"nested": {"b": {"c": 2, "d": 3}}}


def test_allow_drops_parents_left_empty() -> None:
    assert fmt(DOC, allow=["name", "nested.zz", "nested.b.zz"]) == {"name": "n"}


def test_allow_nothing_survives_is_empty() -> None:
    assert fmt(DOC, allow=["zz", "nested.q"]) == {}


def test_allow_does_not_descend_into_arrays_or_scalars() -> None:
    assert fmt(DOC, allow=["items.x", "name.x"]) == {}


def test_allow_keeps_an_empty_object_listed_as_a_leaf() -> None:
    assert fmt(DOC, allow=["empty"]) == {"empty": {}}


@pytest.mark.parametrize("allow", [["nested", "nested.b.zz"], ["nested.b.zz", "nested"], ["nested", "nested.b"]])
def test_allow_overlapping_paths_keep_the_wider_one(allow: list[str]) -> None:
    assert fmt({"nested": {"b": {}, "k": 1}}, allow=allow) == {"nested": {"b": {}, "k": 1}}


def test_allow_wins_over_deny() -> None:
    assert fmt(DOC, allow=["name"], deny=["name"]) == {"name": "n"}


# --- deny ---


def test_deny_deletes_paths() -> None:
    assert fmt(DOC, deny=["name", "nested.b.c", "items"]) == {"nested": {"a": 1, "b": {"d": 3}}, "empty": {}}


def test_deny_missing_paths_is_harmless() -> None:
    assert fmt(DOC, deny=["zz", "nested.zz.y", "items.x", "name.x"]) == DOC


# --- mapping ---


def test_mapping_renames_top_level_only() -> None:
    assert fmt(DOC, mapping={"name": "title", "nested.a": "flat", "zz": "y"}) == {
        "title": "n",
        "nested": DOC["nested"],
        "items": DOC["items"],
        "empty": {},
    }


def test_mapping_new_name_is_cut_at_first_dot() -> None:
    assert fmt({"a": 1}, mapping={"a": "b.c.d"}) == {"b": 1}


def test_mapping_swaps() -> None:
    assert fmt({"a": 1, "b": 2, "c": 3}, mapping={"a": "b", "b": "a"}) == {"a": 2, "b": 1, "c": 3}


def test_mapping_renamed_key_wins_collision() -> None:
    assert fmt({"a": 1, "b": 2}, mapping={"a": "b"}) == {"b": 1}


# --- group ---


def test_group_wraps() -> None:
    assert fmt({"a": 1}, group="g") == {"g": {"a": 1}}


def test_group_always_wraps_even_empty() -> None:
    assert fmt({}, group="g") == {"g": {}}
    assert fmt(DOC, target="missing", group="g") == {"g": {}}


# --- order ---


def test_order_target_filter_mapping_group() -> None:
    # allow names paths inside the target; mapping names keys left by allow; group wraps the result.
    out = fmt(
        {"data": {"user": {"id": 1, "pw": "x"}, "meta": 2}, "other": 3},
        target="data",
        allow=["user.id", "meta"],
        mapping={"user": "account"},
        group="g",
    )
    assert out == {"g": {"meta": 2, "account": {"id": 1}}}


def test_order_deny_before_mapping() -> None:
    # deny names the backend's keys, not the mapped ones.
    assert fmt({"a": 1, "b": 2}, deny=["a"], mapping={"a": "z", "b": "y"}) == {"y": 2}
    assert fmt({"a": 1, "b": 2}, deny=["z"], mapping={"a": "z"}) == {"z": 1, "b": 2}


def test_order_allow_before_mapping() -> None:
    assert fmt({"a": 1, "b": 2}, allow=["a"], mapping={"a": "b"}) == {"b": 1}
    assert fmt({"a": 1, "b": 2}, allow=["b"], mapping={"a": "b"}) == {"b": 2}


# --- properties ---

_keys = st.sampled_from(["a", "b", "c", "d"])
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=15,
)
_objects = st.dictionaries(_keys, _json, max_size=4)
_dot_paths = st.lists(_keys, min_size=1, max_size=3).map(".".join)


def _leaves(node: Any, prefix: tuple = ()) -> set[tuple]:
    if isinstance(node, dict) and node:
        return set().union(*(_leaves(v, prefix + (k,)) for k, v in node.items()))
    return {(prefix, repr(node))}


def _get(node: Any, path: list[str]) -> Any:
    for part in path:
        node = node[part]
    return node


@given(_objects, st.lists(_dot_paths, min_size=1, max_size=4))
def test_allow_result_is_a_subset_of_input(data: dict, allow: list[str]) -> None:
    out = fmt(data, allow=allow)
    assert _leaves(out) <= _leaves(data) | {((), "{}")}
    # every kept top-level key is on a listed path, and every listed leaf present in the input is kept
    assert set(out) <= {p.split(".")[0] for p in allow}
    for path in allow:
        parts = path.split(".")
        try:
            value = _get(data, parts)
        except (KeyError, TypeError):
            continue
        assert _get(out, parts) == value


@given(_objects, st.lists(_dot_paths, min_size=1, max_size=4))
def test_deny_removes_denied_paths(data: dict, deny: list[str]) -> None:
    out = fmt(data, deny=deny)
    for path in deny:
        *parents, last = path.split(".")
        try:
            parent = _get(out, parents)
        except (KeyError, TypeError):
            continue
        assert not (isinstance(parent, dict) and last in parent)
    assert set(out) == set(data) - {p for p in deny if "." not in p}


@given(_objects, st.dictionaries(_keys, _dot_paths, min_size=1, max_size=3))
def test_mapping_is_a_simultaneous_top_level_rename(data: dict, mapping: dict[str, str]) -> None:
    out = fmt(data, mapping=mapping)
    # Model: unmapped keys stay; each present old key lands under its new name (cut at the first dot);
    # when several land on one name, or on an unmapped key, the later mapping entry wins.
    expected = {k: v for k, v in data.items() if k not in mapping}
    for old, new in mapping.items():
        if old in data:
            expected[new.split(".")[0]] = data[old]
    assert out == expected
    assert all(any(v is w for w in data.values()) for v in out.values())  # values moved, never rebuilt


@given(
    _objects,
    st.fixed_dictionaries(
        {},
        optional={
            "target": _dot_paths,
            "allow": st.lists(_dot_paths, max_size=3),
            "deny": st.lists(_dot_paths, max_size=3),
            "mapping": st.dictionaries(_keys, _dot_paths, max_size=3),
            "group": _keys,
        },
    ),
)
def test_formatter_never_raises_and_returns_an_object(data: dict, cfg: dict) -> None:
    formatter = build_formatter(BackendConfig(**cfg))
    if formatter is None:
        assert not any(cfg.values())
        return
    before = copy.deepcopy(data)
    out = formatter(data)
    assert isinstance(out, dict) and data == before
    if cfg.get("group"):
        assert list(out) == [cfg["group"]]

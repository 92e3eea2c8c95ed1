"""flatmap_filter's operations on decoded data (pipeline/flatmap.py), checked against Lura's flatmap rules."""

from __future__ import annotations

import pytest

from lambdagate.config.proxy_options import FlatmapOperation
from lambdagate.pipeline.flatmap import build_flatmap


def apply(data: dict, *ops: tuple[str, list[str]]) -> dict:
    flatmap = build_flatmap([FlatmapOperation(type=kind, args=args) for kind, args in ops])
    assert flatmap is not None
    return flatmap(data)


def test_no_operations_build_nothing() -> None:
    assert build_flatmap([]) is None


@pytest.mark.parametrize(
    ("data", "path", "expected"),
    [
        ({"a": 1, "b": 2}, "a", {"b": 2}),
        ({"a": 1}, "zzz", {"a": 1}),
        ({"a": {"b": 1, "c": 2}}, "a.b", {"a": {"c": 2}}),
        # the only member gone: the object becomes null (Lura's tree keeps no value for it)
        ({"a": {"b": 1}, "x": 0}, "a.b", {"a": None, "x": 0}),
        # an array or object empty in the reply stays as it was
        ({"data": []}, "data.*.password", {"data": []}),
        ({"data": {}}, "data.*.password", {"data": {}}),
        (
            {"users": [{"name": "a", "password": "x"}, {"name": "b", "password": "y"}]},
            "users.*.password",
            {"users": [{"name": "a"}, {"name": "b"}]},
        ),
        ({"m": {"k1": {"s": 1, "t": 2}, "k2": {"s": 3}}}, "m.*.s", {"m": {"k1": {"t": 2}, "k2": None}}),
        ({"a": [1, 2, 3]}, "a.1", {"a": [1, 3]}),
        ({"a": [1, 2, 3]}, "a.01", {"a": [1, 2, 3]}),  # "01" is no position
        ({"a": [1, 2, 3]}, "a.*", {"a": None}),
        ({"a": 5}, "a.b", {"a": 5}),  # nothing under a value
    ],
)
def test_del(data: dict, path: str, expected: dict) -> None:
    assert apply(data, ("del", [path])) == expected


def test_del_positions_keep_the_reply_numbering_across_a_filter() -> None:
    # Deleting 0 then 1 deletes the first two (not the first and the third), as Lura's labelled edges.
    assert apply({"a": [0, 1, 2, 3]}, ("del", ["a.0", "a.1"])) == {"a": [2, 3]}
    assert apply({"a": [0, 1, 2, 3]}, ("del", ["a.0"]), ("del", ["a.1"])) == {"a": [2, 3]}


def test_del_as_lura_example_nested_collections() -> None:
    data = {"c2": [{"d": [{"a": 1, "d": [1, 2]}, {"d": [3]}, {"d": [4]}]}, {"d": [5]}]}
    assert apply(data, ("del", ["c2.*.d.*.d"])) == {"c2": [{"d": [{"a": 1}, None, None]}, {"d": [5]}]}


@pytest.mark.parametrize(
    ("data", "src", "dst", "expected"),
    [
        # same length: the last key is renamed where it is
        ({"collection": [1], "x": 1}, "collection", "users", {"x": 1, "users": [1]}),
        ({"a": [{"b": 1}, {"b": 2, "c": 0}]}, "a.*.b", "a.*.z", {"a": [{"z": 1}, {"c": 0, "z": 2}]}),
        ({"a": {"b": 1}}, "a.b", "x.c", {"a": {"c": 1}}),  # only the last key counts
        # shorter: promoted, the parent emptied becomes null
        ({"data": {"user": {"id": 1}}}, "data.user", "user", {"data": None, "user": {"id": 1}}),
        ({"a": {"b": {"c": 1, "d": 2}}}, "a.b.c", "a.c", {"a": {"b": {"d": 2}, "c": 1}}),
        ({"a": {"b": {"c": 1}}}, "a.b.c", "zz.c", {"a": {"b": None}, "c": 1}),  # walk stops at the missing "zz"
        (
            {"a": [{"b": {"c": 1}}, {"b": {"c": 2}}]},
            "a.*.b.c",
            "a.*.c",
            {"a": [{"b": None, "c": 1}, {"b": None, "c": 2}]},
        ),
        # longer: embedded under the source's parent, objects created on the way
        ({"id": 7, "n": "x"}, "id", "meta.ids.id", {"n": "x", "meta": {"ids": {"id": 7}}}),
        ({"a": [{"b": 1}, {"b": 2}]}, "a.*.b", "a.*.w.b", {"a": [{"w": {"b": 1}}, {"w": {"b": 2}}]}),
        ({"a": 1}, "missing", "b", {"a": 1}),
    ],
)
def test_move(data: dict, src: str, dst: str, expected: dict) -> None:
    assert apply(data, ("move", [src, dst])) == expected


@pytest.mark.parametrize(
    ("data", "src", "dst", "expected"),
    [
        ({"a": [1, 2], "b": [3]}, "a", "b", {"b": [3, 1, 2]}),
        ({"a": [1], "b": {"x": [0]}}, "a", "b.x", {"b": {"x": [0, 1]}}),
        ({"a": "no", "b": [3]}, "a", "b", {"a": "no", "b": [3]}),  # both must be arrays
        ({"a": [1], "b": "no"}, "a", "b", {"a": [1], "b": "no"}),
        # a wildcard source collects one value per member, then those are deleted
        (
            {"u": [{"id": 1, "n": "a"}, {"id": 2, "n": "b"}], "ids": []},
            "u.*.id",
            "ids",
            {"u": [{"n": "a"}, {"n": "b"}], "ids": [1, 2]},
        ),
    ],
)
def test_append(data: dict, src: str, dst: str, expected: dict) -> None:
    assert apply(data, ("append", [src, dst])) == expected


def test_operations_run_in_order_as_a_real_config() -> None:
    data = {"collection": [{"id": 1, "password": "p"}, {"id": 2, "password": "q"}]}
    out = apply(data, ("del", ["collection.*.password"]), ("move", ["collection", "users"]))
    assert out == {"users": [{"id": 1}, {"id": 2}]}


def test_the_reply_objects_are_not_changed() -> None:
    inner = [{"id": 1, "password": "p"}]
    data = {"users": inner, "other": {"k": 1}}
    out = apply(data, ("del", ["users.*.password"]), ("move", ["users", "people"]))
    assert out == {"other": {"k": 1}, "people": [{"id": 1}]}
    assert data == {"users": [{"id": 1, "password": "p"}], "other": {"k": 1}}
    assert out["other"] is data["other"]  # members no operation reaches are shared, not copied

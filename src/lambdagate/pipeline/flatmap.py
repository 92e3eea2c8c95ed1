"""`flatmap_filter` (the `proxy` namespace, backend and endpoint level): move, delete and append over a reply's
data, with `*` over every member of an object or array and numeric keys for array positions, as Lura's flatmap.

Lura works on a tree of labelled edges; this works on the decoded dicts and lists themselves, keeping the rules
that tree gives a client:
- positions keep the reply's numbering across a filter's operations (deleting "a.0" then "a.1" deletes the first
  two elements): a deleted element is a placeholder until the end, then the array is compacted;
- an object or array an operation empties becomes `null` (an empty one in the reply stays as it was);
- `move` to a path as long as the source renames the last key in place (`a.*.b` → `a.*.c`); to a shorter path it
  promotes (`*` in the target takes the source's key at that position, and the walk stops at the first missing
  key); to a longer one it creates the objects under the source's parent;
- `append` adds the source array's values (a `*` source collects one value per member) to the target array, then
  deletes the source; nothing happens unless both are arrays.

The reply's objects are not changed: the members an operation can reach (those its paths start with) are copied
first, the rest is shared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from lambdagate.config.proxy_options import FlatmapOperation

Flatmap = Callable[[dict[str, Any]], dict[str, Any]]
Path = tuple[str, ...]
WILDCARD = "*"
_GONE = object()  # an array element taken out; arrays are compacted once every operation has run


def build_flatmap(operations: Sequence[FlatmapOperation]) -> Flatmap | None:
    steps = [(op.type, [tuple(arg.split(".")) for arg in op.args]) for op in operations]
    if not steps:
        return None
    heads = {path[0] for _, paths in steps for path in paths}
    reached = None if WILDCARD in heads else heads  # None: every member

    def flatmap(data: dict[str, Any]) -> dict[str, Any]:
        data = _own_copy(data, reached)
        run = _Run()
        for kind, paths in steps:
            if kind == "del":
                for path in paths:
                    _delete(run, None, None, data, path)
            elif kind == "move":
                _move(run, data, paths[0], paths[1])
            else:
                _append(run, data, paths[0], paths[1])
        run.finish()
        return data

    return flatmap


def _own_copy(data: dict[str, Any], members: set[str] | None) -> dict[str, Any]:
    """`data` with its own containers wherever the operations can change something (`members`, None for all)."""
    if members is None:
        return _copy(data)
    out = dict(data)
    for key in members:
        if key in out:
            out[key] = _copy(out[key])
    return out


def _copy(node: Any) -> Any:
    if type(node) is dict:
        return {k: _copy(v) for k, v in node.items()}
    if type(node) is list:
        return [_copy(x) for x in node]
    return node


class _Run:
    """One application of a filter: the arrays it left holes in and the containers it took members from."""

    __slots__ = ("holed", "emptied")

    def __init__(self) -> None:
        self.holed: list[list] = []
        self.emptied: list[tuple[Any, str | None, Any]] = []  # (parent, key in parent, container)

    def take(self, parent: Any, key: str | None, node: Any, label: str) -> None:
        """Take member `label` out of `node` (which holds it)."""
        if type(node) is dict:
            del node[label]
        else:
            node[int(label)] = _GONE
            self.holed.append(node)
        self.emptied.append((parent, key, node))

    def finish(self) -> None:
        for array in self.holed:
            array[:] = [x for x in array if x is not _GONE]
        for parent, key, node in reversed(self.emptied):
            if node or parent is None:  # refilled since, or the root (which stays an object)
                continue
            if type(parent) is dict:
                if parent.get(key) is node:
                    parent[key] = None
            elif type(parent) is list:
                for i, x in enumerate(parent):
                    if x is node:
                        parent[i] = None
                        break


def _members(node: Any) -> Iterable[tuple[str, Any]]:
    if type(node) is dict:
        return list(node.items())
    if type(node) is list:
        return [(str(i), x) for i, x in enumerate(node) if x is not _GONE]
    return ()


def _index(label: str, array: list) -> int | None:
    if not (label.isascii() and label.isdigit()) or (label[0] == "0" and label != "0"):
        return None  # Lura's labels are strconv.Itoa(i): "01" is no position
    i = int(label)
    return i if i < len(array) and array[i] is not _GONE else None


def _member(node: Any, label: str) -> tuple[bool, Any]:
    if type(node) is dict:
        return (True, node[label]) if label in node else (False, None)
    if type(node) is list:
        i = _index(label, node)
        return (True, node[i]) if i is not None else (False, None)
    return False, None


def _has_members(node: Any) -> bool:
    if type(node) is dict:
        return bool(node)
    return type(node) is list and any(x is not _GONE for x in node)


def _put(node: Any, label: str, value: Any) -> None:
    """Set member `label` of a container; an array gets a new element unless `label` is one of its positions."""
    if type(node) is dict:
        node[label] = value
        return
    i = _index(label, node)
    if i is None:
        node.append(value)
    else:
        node[i] = value


def _delete(run: _Run, parent: Any, key: str | None, node: Any, path: Path) -> None:
    if not _has_members(node):
        return
    head, rest = path[0], path[1:]
    if head == WILDCARD:
        for label, child in _members(node):
            if rest:
                _delete(run, node, label, child, rest)
            else:
                run.take(parent, key, node, label)
        return
    found, child = _member(node, head)
    if not found:
        return
    if rest:
        _delete(run, node, head, child, rest)
    else:
        run.take(parent, key, node, head)


def _get(node: Any, path: Path) -> Any:
    if not path:
        return node
    if not _has_members(node):
        return None
    if path[0] == WILDCARD:
        return [_get(child, path[1:]) for _, child in _members(node)]
    found, child = _member(node, path[0])
    return _get(child, path[1:]) if found else None


def _set(root: dict, path: Path, value: Any) -> None:
    """Put `value` at `path`, creating the objects on the way (a value on the way is replaced by an object)."""
    node = root
    for label in path[:-1]:
        found, child = _member(node, label)
        if not found or type(child) not in (dict, list):
            child = {}
            _put(node, label, child)
        node = child
    _put(node, path[-1], value)


def _append(run: _Run, root: dict, src: Path, dst: Path) -> None:
    added, target = _get(root, src), _get(root, dst)
    if type(added) is not list or type(target) is not list:
        return
    _set(root, dst, [x for x in target if x is not _GONE] + [x for x in added if x is not _GONE])
    _delete(run, None, None, root, src)


def _move(run: _Run, root: dict, src: Path, dst: Path) -> None:
    # The containers matching the source without its last key, with their path, parent and key in the parent.
    found_at: list[tuple[Any, Path, Any, str | None]] = [(root, (), None, None)]
    for step in src[:-1]:
        following = []
        for node, path, _, _ in found_at:
            if step == WILDCARD:
                following.extend((child, (*path, label), node, label) for label, child in _members(node))
            else:
                found, child = _member(node, step)
                if found:
                    following.append((child, (*path, step), node, step))
        found_at = following
    last = src[-1]
    for node, path, parent, key in found_at:
        found, value = _member(node, last)
        if not found:
            continue
        if len(src) == len(dst):  # a rename of the last key (an array's positions are not names: left as is)
            if type(node) is dict and dst[-1] != last:
                node[dst[-1]] = node.pop(last)
            continue
        run.take(parent, key, node, last)
        if len(src) > len(dst):
            _promote(root, path, dst, value)
        else:
            _set(node, dst[len(src) - 1 :], value)


def _promote(root: dict, path: Path, dst: Path, value: Any) -> None:
    holder, held_as, node = None, "", root
    for i, step in enumerate(dst[:-1]):
        label = path[i] if step == WILDCARD else step
        found, child = _member(node, label)
        if not found:
            break  # Lura stops at the first missing key and puts the value there
        holder, held_as, node = node, label, child
    if type(node) not in (dict, list):  # a value receiving a member becomes an object
        node = {}
        _put(holder, held_as, node)
    _put(node, dst[-1], value)

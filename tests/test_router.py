"""Router: literal and {param} segments, literal first, per-method routes, 404 vs 405, bounded lookups."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambdagate import router as router_module
from lambdagate.router import Router


def make(*routes: tuple[str, str]) -> Router[str]:
    r: Router[str] = Router()
    for method, pattern in routes:
        r.add(method, pattern, f"{method} {pattern}")
    return r


def found(r: Router[str], method: str, path: str) -> tuple[str, dict[str, str]]:
    m = r.match(method, path)
    assert m is not None and m.handler is not None, f"{method} {path} should match, got {m}"
    return m.handler, m.params


def test_literal_routes() -> None:
    r = make(("GET", "/"), ("GET", "/users"), ("GET", "/users/list"), ("POST", "/users"))
    assert found(r, "GET", "/") == ("GET /", {})
    assert found(r, "GET", "/users") == ("GET /users", {})
    assert found(r, "GET", "/users/list") == ("GET /users/list", {})
    assert found(r, "POST", "/users") == ("POST /users", {})


def test_params_are_named_per_route() -> None:
    r = make(("GET", "/users/{id}/posts/{post}"), ("GET", "/users/{user}"), ("GET", "/users/{uid}/likes"))
    assert found(r, "GET", "/users/42/posts/7") == ("GET /users/{id}/posts/{post}", {"id": "42", "post": "7"})
    # These share the trie branch of "/users/{id}" but keep their own placeholder names.
    assert found(r, "GET", "/users/42") == ("GET /users/{user}", {"user": "42"})
    assert found(r, "GET", "/users/9/likes") == ("GET /users/{uid}/likes", {"uid": "9"})


def test_literal_beats_param_whatever_the_order_added() -> None:
    for routes in ([("GET", "/users/me"), ("GET", "/users/{id}")], [("GET", "/users/{id}"), ("GET", "/users/me")]):
        r = make(*routes)
        assert found(r, "GET", "/users/me") == ("GET /users/me", {})
        assert found(r, "GET", "/users/mee") == ("GET /users/{id}", {"id": "mee"})


def test_backtracks_from_a_literal_dead_end_to_the_param_branch() -> None:
    # As in gin: "/a/b/d" is not under the literal "b", so the placeholder route takes it.
    r = make(("GET", "/a/b/c"), ("GET", "/a/{x}/d"))
    assert found(r, "GET", "/a/b/c") == ("GET /a/b/c", {})
    assert found(r, "GET", "/a/b/d") == ("GET /a/{x}/d", {"x": "b"})
    assert r.match("GET", "/a/b/e") is None


def test_routes_are_per_method() -> None:
    # As in gin (one tree per method): POST /a/b is the POST placeholder route, not a 405 from GET /a/b.
    r = make(("GET", "/a/b"), ("POST", "/a/{x}"))
    assert found(r, "POST", "/a/b") == ("POST /a/{x}", {"x": "b"})
    assert found(r, "GET", "/a/b") == ("GET /a/b", {})
    m = r.match("DELETE", "/a/b")
    assert m is not None and m.handler is None and m.allow == "GET, POST"
    m = r.match("GET", "/a/zzz")
    assert m is not None and m.handler is None and m.allow == "POST"


def test_trailing_slash_is_significant_and_its_twin_is_found() -> None:
    # As in gin: "/a" and "/a/" are two routes; a miss on one finds the other for the redirect.
    r = make(("GET", "/users"), ("GET", "/items/"), ("GET", "/users/{id}"), ("GET", "/both"), ("GET", "/both/"))
    assert r.match("GET", "/users/") is None and r.match("GET", "/items") is None
    assert found(r, "GET", "/items/") == ("GET /items/", {})
    assert found(r, "GET", "/both") == ("GET /both", {}) and found(r, "GET", "/both/") == ("GET /both/", {})
    assert r.trailing_slash_twin("GET", "/users/") == "/users"
    assert r.trailing_slash_twin("GET", "/items") == "/items/"
    assert r.trailing_slash_twin("GET", "/users/7/") == "/users/7"
    assert r.trailing_slash_twin("POST", "/users/") is None  # per method, as gin's trees
    assert r.trailing_slash_twin("GET", "/nope/") is None and r.trailing_slash_twin("GET", "/") is None


def test_fixed_path_cleans_and_folds_case_keeping_parameter_values() -> None:
    r = make(("GET", "/Users/{id}/Posts"), ("GET", "/items/"), ("POST", "/a/b"))
    assert r.fixed_path("GET", "/users/AbC/posts") == "/Users/AbC/Posts"
    assert r.fixed_path("GET", "//Users/./x/../7/Posts") == "/Users/7/Posts"
    assert r.fixed_path("GET", "/ITEMS") == "/items/"  # with the trailing slash fixed too
    assert r.fixed_path("POST", "/A//B/") == "/a/b"
    assert r.fixed_path("GET", "/A/B") is None  # another method's route
    assert r.fixed_path("GET", "/nothing") is None


def test_fixed_path_search_is_bounded() -> None:
    # Many case variants at every depth: the search gives up rather than trying every combination.
    r: Router[str] = Router()
    for depth in range(1, 12):
        for variant in ("a", "A"):
            r.add("GET", "/" + "/".join([variant] * depth) + "/{x}/z", "h")
    assert r.fixed_path("GET", "/" + "/".join(["a"] * 11) + "/q/y") is None


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("/a//b/./c/../", "/a/b/"), ("/../..", "/"), ("/a/.", "/a/"), ("/a/b/..", "/a"), ("//", "/"), ("/a", "/a")],
)
def test_clean_path_is_gins(raw: str, clean: str) -> None:
    assert router_module.clean_path(raw) == clean


def test_has_route_compares_patterns_placeholder_names_aside() -> None:
    r = make(("GET", "/a/{x}"), ("POST", "/b"))
    assert r.has_route("GET", "/a/{other}") and r.has_route("POST", "/b")
    assert not r.has_route("GET", "/b") and not r.has_route("GET", "/a/{x}/c") and not r.has_route("GET", "/a/")


def test_unknown_paths_are_none() -> None:
    r = make(("GET", "/a/b/c"), ("GET", "/users/{id}"))
    for path in ("/nope", "/a", "/a/b", "/a/b/c/d", "/users", "/users//x", "/users/1/2"):
        assert r.match("GET", path) is None, path


@pytest.mark.parametrize("target", ["*", "", "http://host/x", "x"])
def test_targets_that_are_not_paths_match_nothing(target: str) -> None:
    r = make(("GET", "/"), ("OPTIONS", "/"), ("GET", "/{p}"), ("GET", "/{p}/x"))
    assert r.match("OPTIONS", target) is None and r.match("GET", target) is None


def test_empty_segment_never_fills_a_placeholder() -> None:
    r = make(("GET", "/users/{id}/posts"))
    assert r.match("GET", "/users//posts") is None


def test_wrong_method_gives_allow_list() -> None:
    r = make(("GET", "/x"), ("POST", "/x"), ("DELETE", "/x/{id}"))
    m = r.match("PUT", "/x")
    assert m is not None and m.handler is None and m.allow == "GET, POST"
    m = r.match("GET", "/x/1")
    assert m is not None and m.handler is None and m.allow == "DELETE"
    assert m.params == {}


def test_head_falls_back_to_get_but_prefers_its_own_route() -> None:
    r = make(("GET", "/a"), ("GET", "/b"), ("HEAD", "/b"), ("POST", "/c"))
    assert found(r, "HEAD", "/a") == ("GET /a", {})
    assert found(r, "HEAD", "/b") == ("HEAD /b", {})
    m = r.match("HEAD", "/c")
    assert m is not None and m.handler is None and m.allow == "POST"


def test_params_are_percent_decoded_literals_are_not() -> None:
    r = make(("GET", "/files/{name}"), ("GET", "/lit/a b"))
    assert found(r, "GET", "/files/a%20b") == ("GET /files/{name}", {"name": "a b"})
    assert found(r, "GET", "/files/a%2Fb") == ("GET /files/{name}", {"name": "a/b"})
    assert found(r, "GET", "/files/caf%C3%A9") == ("GET /files/{name}", {"name": "café"})
    assert found(r, "GET", "/files/%2E%2E") == ("GET /files/{name}", {"name": ".."})
    # An encoded slash is one segment: it never reaches another route.
    assert r.match("GET", "/files/a/b") is None


def test_duplicate_route_is_refused() -> None:
    r = make(("GET", "/u/{id}"))
    with pytest.raises(ValueError, match=re.escape("duplicate route GET /u/{name}")):
        r.add("GET", "/u/{name}", "again")
    r.add("POST", "/u/{name}", "other method is fine")
    assert found(r, "POST", "/u/1") == ("other method is fine", {"name": "1"})


# --- many endpoints: lookups follow the path's depth, not the number of routes ---------------------------


class CountingDict(dict):
    """A trie node's children: counts lookups, i.e. the nodes a match visits."""

    lookups = 0

    def get(self, key: Any, default: Any = None) -> Any:
        CountingDict.lookups += 1
        return super().get(key, default)


def instrument(r: Router) -> None:
    stack = [r._root]
    while stack:
        node = stack.pop()
        node.literals = CountingDict(node.literals)
        stack.extend(node.literals.values())
        if node.param is not None:
            stack.append(node.param)
    r._static = CountingDict(r._static)


def routes(n: int) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        out += [
            ("GET", f"/svc{i}/items"),
            ("GET", f"/svc{i}/items/{{id}}"),
            ("POST", f"/svc{i}/items/{{id}}/tags/{{tag}}"),
            ("GET", f"/v1/{{tenant}}/svc{i}/report"),
        ]
    return out


def lookups(r: Router, method: str, path: str) -> tuple[Any, int]:
    CountingDict.lookups = 0
    m = r.match(method, path)
    return (m.handler if m else None, m.params if m else None), CountingDict.lookups


PROBES = [
    ("GET", "/svc3/items"),
    ("GET", "/svc3/items/42"),
    ("POST", "/svc3/items/42/tags/red"),
    ("GET", "/v1/acme/svc3/report"),
    ("GET", "/svc3/nothing"),
    ("DELETE", "/svc3/items/42"),
    ("GET", "/x/y/z/w"),
]


def test_lookup_cost_is_independent_of_route_count() -> None:
    small, big = make(*routes(5)), make(*routes(2000))  # 20 and 8000 routes
    instrument(small)
    instrument(big)
    for method, path in PROBES:
        small_result, small_cost = lookups(small, method, path)
        big_result, big_cost = lookups(big, method, path)
        assert small_result == big_result, path
        assert small_cost == big_cost, f"{method} {path}: {small_cost} lookups with 20 routes, {big_cost} with 8000"
        # One dict lookup per segment on the way down, plus the exact-path table for static paths.
        depth = len(path.strip("/").split("/"))
        assert big_cost <= 2 * depth + 1, f"{method} {path}: {big_cost} lookups for depth {depth}"


def test_every_one_of_thousands_of_routes_is_found() -> None:
    r = make(*routes(2000))
    for i in range(0, 2000, 7):
        assert found(r, "GET", f"/svc{i}/items") == (f"GET /svc{i}/items", {})
        assert found(r, "GET", f"/svc{i}/items/{i}") == (f"GET /svc{i}/items/{{id}}", {"id": str(i)})
        assert found(r, "POST", f"/svc{i}/items/1/tags/t{i}") == (
            f"POST /svc{i}/items/{{id}}/tags/{{tag}}",
            {"id": "1", "tag": f"t{i}"},
        )
        assert found(r, "GET", f"/v1/t{i}/svc{i}/report") == (f"GET /v1/{{tenant}}/svc{i}/report", {"tenant": f"t{i}"})


def test_static_path_is_one_table_lookup() -> None:
    r = make(*routes(2000))
    instrument(r)
    assert lookups(r, "GET", "/svc1999/items") == (("GET /svc1999/items", {}), 1)


# --- property: a path built from a route always reaches a route that matches it ---------------------------

_segment = st.sampled_from(["a", "b", "users", "{id}", "{x}", "me"])
_pattern = st.lists(_segment, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
_value = st.text(alphabet="abme-_.~%", min_size=1, max_size=4).filter(lambda v: v not in (".", ".."))


def _matches(pattern: str, path: str) -> dict[str, str] | None:
    p, s = pattern.strip("/").split("/"), path.strip("/").split("/")
    if len(p) != len(s):
        return None
    params = {}
    for want, got in zip(p, s):
        if want.startswith("{"):
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params


@given(st.lists(_pattern, min_size=1, max_size=12, unique_by=lambda p: p), st.data())
def test_built_path_reaches_a_matching_route(patterns: list[str], data: st.DataObject) -> None:
    r: Router[str] = Router()
    added = []
    for pattern in patterns:
        try:
            r.add("GET", pattern, pattern)
        except ValueError:  # same shape as an earlier one (e.g. /{id} and /{x}): the config refuses those
            continue
        added.append(pattern)
    pattern = data.draw(st.sampled_from(added))
    path = "/" + "/".join(
        data.draw(_value.filter(lambda v: "%" not in v)) if seg.startswith("{") else seg
        for seg in pattern.strip("/").split("/")
    )
    handler, params = found(r, "GET", path)
    assert _matches(handler, path) == params
    if "{" not in pattern:
        assert handler == pattern  # an all-literal route is never shadowed

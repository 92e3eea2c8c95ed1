"""The sandbox's guards against library calls that run long inside C, out of the CPU limit's sight
(lambdagate/lua/guards.lua): crafted scripts stop at the limit with 500 in well under a second, the Lua pattern
matcher gives the C library's results and errors, and common patterns on ordinary inputs still work.
"""

from __future__ import annotations

import logging
import re
import time
from importlib.resources import files

import lupa.lua54 as lua
import pytest

from tests.support.asgi import returning
from tests.test_lua import Fakes, Records, config, endpoint, serve

GUARDS = files("lambdagate.lua").joinpath("guards.lua").read_bytes()

# Each compares string.X (C) with the guard forced onto its Lua matcher, over subjects x patterns x arguments;
# error messages compared without their line numbers.
DIFFERENTIAL = b"""
local G = ...
local function pack(...) return {n = select("#", ...), ...} end
local function show(ok, r)
  if not ok then return (("ERR:" .. tostring(r)):gsub(":%d+:", ":N:")) end
  local parts = {}
  for i = 1, r.n do parts[i] = type(r[i]) .. ":" .. tostring(r[i]) end
  return table.concat(parts, ",")
end
local function call(f, ...) local ok, r = pcall(function(...) return pack(f(...)) end, ...) return show(ok, r) end
local function iterate(f, ...)
  local ok, r = pcall(function(...)
    local out = {}
    for a, b, c in f(...) do out[#out + 1] = tostring(a) .. "|" .. tostring(b) .. "|" .. tostring(c) end
    return table.concat(out, ";")
  end, ...)
  return (((ok and "" or "ERR:") .. tostring(r)):gsub(":%d+:", ":N:"))
end
local subjects = {"", "hello world", "  trim me  ", "a,b,,c", "(foo(bar))baz", "key=value; k2=v2", "THE (quick) fox",
  "aaa", "x = 1 + 2", "\\0bin\\255", "f(a(b)c)d", "12ab34", "hello hello", "[x]", "%d", 12345}
local patterns = {"o", "l+", "l*", "l-", "l?", "^h", "d$", "^$", "(%w+)", "(%w+)=(%w+)", "%s*(.-)%s*$",
  "^%s*(.-)%s*$", "()ll()", "%b()", "%f[%w]%w+", "[%a_][%w_]*", "[^,]*", "(h)(e)(l)", "(l)%1", "%d+", "%u", "[a-c]+",
  "[%]]", ".-", ".", "(a*(.)%w(%s*))", "%", "[a", "(()", "%1", "a)", "%g+", "[^%s]+", "x*$", "%x%x", "[]]", "[^]]+",
  "%bxy", "%f[%z]", "^(h)", "()", "(%d)(%a)", "^", "$", "%p", "[%-%%]", "a-b", "[a-]", "he(l+)o", "%0", "k2=",
  "ll%f[%W]", "%b", "%f", "[%a-z]", 2}
local repls = {"<%0>", "%1", "%2-%1", "%%", "x", 7, "%", "%9"}
local differ, total = {}, 0
local function check(what, a, b)
  total = total + 1
  if a ~= b and #differ < 20 then differ[#differ + 1] = what .. ": " .. a .. " / " .. b end
end
for _, s in ipairs(subjects) do
  for _, p in ipairs(patterns) do
    local where = ("%q %q"):format(s, p)
    for _, init in ipairs({false, 1, 3, -2, 0, 40}) do
      local i = init or nil
      check("find " .. where, call(string.find, s, p, i), call(G.find, s, p, i))
      check("match " .. where, call(string.match, s, p, i), call(G.match, s, p, i))
      check("plain " .. where, call(string.find, s, p, i, true), call(G.find, s, p, i, true))
      check("gmatch " .. where, iterate(string.gmatch, s, p, i), iterate(G.gmatch, s, p, i))
    end
    for _, r in ipairs(repls) do
      for _, n in ipairs({false, 1, 2}) do
        check("gsub " .. where, call(string.gsub, s, p, r, n or nil), call(G.gsub, s, p, r, n or nil))
      end
    end
    local t = {hello = "HI", l = false, o = 0, a = {}}
    local f = function(x, y) if x == "l" then return nil end return (y or "") .. "!" end
    check("gsub table " .. where, call(string.gsub, s, p, t), call(G.gsub, s, p, t))
    check("gsub function " .. where, call(string.gsub, s, p, f), call(G.gsub, s, p, f))
  end
end
local list = {5, 3, 9, 1, 7}
check("sort", call(function() local t = {table.unpack(list)} table.sort(t) return table.concat(t, ",") end),
  call(function() local t = {table.unpack(list)} G.sort(t) return table.concat(t, ",") end))
check("sort by", call(function() local t = {table.unpack(list)} table.sort(t, function(a, b) return a > b end)
  return table.concat(t, ",") end), call(function() local t = {table.unpack(list)}
  G.sort(t, function(a, b) return a > b end) return table.concat(t, ",") end))
check("move", call(function() return table.concat(table.move({1, 2, 3, 4, 5}, 1, 4, 2), ",") end),
  call(function() return table.concat(G.move({1, 2, 3, 4, 5}, 1, 4, 2), ",") end))
check("move to", call(function() return table.concat(table.move({1, 2, 3}, 2, 3, 1, {9, 9, 9}), ",") end),
  call(function() return table.concat(G.move({1, 2, 3}, 2, 3, 1, {9, 9, 9}), ",") end))
return total, table.concat(differ, "\\n")
"""


def test_the_lua_matcher_gives_the_c_librarys_results_and_errors() -> None:
    rt = lua.LuaRuntime(encoding=None, max_memory=0)
    g = rt.globals()
    forced = rt.execute(GUARDS, g[b"string"], g[b"table"], g[b"math"], True)
    total, differ = rt.execute(DIFFERENTIAL, forced)
    assert total > 40_000 and differ == b"", differ.decode()


CRAFTED = [
    'local s = (" "):rep(20000) .. "x"; s:gsub("%s+$", "")',  # 3.5 s in C
    'local s = "x" .. (" "):rep(20000) .. "x"; s:match("^%s*(.-)%s*$")',  # 4 s in C
    'local s = ("a"):rep(300); s:find(".-.-.-.-b")',  # minutes in C
    'for _ in (("a"):rep(20000)):gmatch("a*b") do end',
    'local s = ("a"):rep(4000000); s:find(("a"):rep(4000) .. "b", 1, true)',
    "table.move({}, 1, 3e7, 1, {})",  # 2.6 s in C
    'local t = {(("\\1\\255\\7\\128\\3"):rep(180000)):byte(1, -1)}; table.sort(t)',  # 2 s in C
]


@pytest.mark.parametrize("script", CRAFTED)
def test_a_crafted_long_c_call_stops_at_the_cpu_limit(script: str) -> None:
    pre = f"if request.load():headers('X-Bad') == 'yes' then {script} end"
    fakes = Fakes({"/one": returning({"ok": 1})})
    cfg = config(endpoint({"modifier/lua-proxy": {"pre": pre}}))
    cfg["extra_config"]["lambdagate/server"] = {"lua_memory_bytes": 64 * 1024 * 1024}

    async def scenario(gw) -> None:
        records = Records()
        logging.getLogger("lambdagate.lua").addHandler(records)
        try:
            started = time.perf_counter()
            r = await gw.request("GET", "/a/7", [("X-Bad", "yes")])
            elapsed = time.perf_counter() - started
        finally:
            logging.getLogger("lambdagate.lua").removeHandler(records)
        assert (r.status, r.json()) == (500, {"error": "internal server error"})
        assert elapsed < 1.0, elapsed
        assert "CPU limit of 10 ms exceeded" in records.lines[0], records.lines
        assert (await gw.request("GET", "/a/7")).status == 200

    serve(cfg, fakes, scenario)


def test_load_refuses_a_chunk_too_long_to_parse_within_the_limit() -> None:
    pre = 'local f, err = load(("x = 1 "):rep(50000)); request.load():headers("X-Err", err)'
    fakes = Fakes({"/one": returning({"ok": 1})})

    async def scenario(gw) -> None:
        assert (await gw.request("GET", "/a/7")).status == 200
        assert fakes.seen["/one"][0].headers["x-err"] == "load: a chunk longer than 262144 bytes"

    serve(config(endpoint({"modifier/lua-proxy": {"pre": pre}})), fakes, scenario)


COMMON = """
local r = request.load()
local body = r:body()
r:headers("X-Trim", (r:headers("X-Pad"):match("^%s*(.-)%s*$")))
r:headers("X-Name", body:match('"name":%s*"(.-)"'))
local squeezed, n = body:gsub("%s+", " ")
r:headers("X-Spaces", tostring(n))
local pairs_found = 0
for k, v in (r:headers("X-Kv")):gmatch("(%w+)=(%w+)") do pairs_found = pairs_found + 1 end
r:headers("X-Pairs", tostring(pairs_found))
"""


def test_common_patterns_on_ordinary_inputs_work_within_the_default_limit() -> None:
    fakes = Fakes({"/one": returning({"ok": 1})})
    cfg = config(endpoint({"modifier/lua-proxy": {"pre": COMMON}}, method="POST"))
    body = b"{" + b'"field": "some value",   ' * 2000 + b'"name": "bob"}'  # 50 KB
    pad = "  " + "ab cd " * 300 + "  "  # 1.8 KB: past what the C matcher is given for this pattern
    kv = "; ".join(f"k{i}=v{i}" for i in range(100))

    async def scenario(gw) -> None:
        r = await gw.request("POST", "/a/7", [("X-Pad", pad), ("X-Kv", kv)], body=body)
        assert r.status == 200, r.body
        seen = fakes.seen["/one"][0].headers
        assert seen["x-trim"] == pad.strip() and seen["x-name"] == "bob"
        assert seen["x-spaces"] == str(len(re.findall(rb"\s+", body)))
        assert seen["x-pairs"] == "100"

    serve(cfg, fakes, scenario)

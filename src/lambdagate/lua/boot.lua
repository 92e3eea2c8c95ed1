-- lambdagate's Lua side of a script set's runtime: the sandboxed globals and the call driver.
-- Run once per runtime, with the standard libraries open, before any script; scripts never see this chunk's
-- locals. Arguments: clock (the worker thread's CPU seconds), hook_every (instructions between limit checks),
-- log (print's target), guards (guards.lua: library functions that cannot run long inside C), classes (the API's
-- Python classes: {class name = {Lua method name = Python function}}), kind_of (a Python object's class name).
local clock, hook_every, log, guards, classes, kind_of = ...
local create, resume, yield, status = coroutine.create, coroutine.resume, coroutine.yield, coroutine.status
local sethook = debug.sethook
local error, pcall, xpcall, rawequal, rawget, type, tostring, tonumber, select, load, pairs, setmetatable,
      getmetatable = error, pcall, xpcall, rawequal, rawget, type, tostring, tonumber, select, load, pairs,
      setmetatable, getmetatable
local pack, unpack = table.pack, table.unpack

-- Error values the driver recognises; scripts cannot make them (they never see these tables).
local LIMIT = setmetatable({}, {__tostring = function() return "CPU limit exceeded" end})
local AWAIT = {}
local CUSTOM = {}
local OBJECTS = {}  -- key of a call's table under which the call's request/response objects are kept
local MEMORY = "not enough memory"

local limit_at = 0  -- CPU deadline of the running resume
local current = nil  -- the running call's table: its globals and its objects; nil while sources load

local function hook()
  if clock() > limit_at then error(LIMIT, 0) end
end

-- pcall and xpcall that cannot swallow the limits: a script that catches them would run on past its budget.
local function fatal(e) return rawequal(e, LIMIT) or rawequal(e, MEMORY) end
local function rethrow(ok, ...)
  if not ok and fatal((...)) then error((...), 0) end
  return ok, ...
end
local function safe_pcall(f, ...) return rethrow(pcall(f, ...)) end
local function safe_xpcall(f, handler, ...)
  return rethrow(xpcall(f, function(e) if fatal(e) then return e end return handler(e) end, ...))
end

-- The API's Python objects reach scripts as Lua tables whose methods call plain Python functions with the
-- object: one call into Python per method call (lupa's attribute access on a Python object costs about ten times
-- as much). The object itself stays here, out of a script's reach; what a method returns is wrapped the same way,
-- and a wrapped argument is unwrapped.
local handles = setmetatable({}, {__mode = "k"})  -- wrapper table -> its Python object
local metatables = {}  -- class name -> the wrappers' metatable

local function wrap_as(obj, kind)
  local t = setmetatable({}, metatables[kind])
  handles[t] = obj
  return t
end

local function wrap(value)
  if type(value) ~= "userdata" then return value end
  local kind = kind_of(value)
  if kind == nil then return value end
  return wrap_as(value, kind)
end

local function unwrap(v)
  if v == nil then return nil end
  local h = handles[v]
  if h == nil then return v end
  return h
end

local function method(fn, name)
  return function(self, ...)
    local h = handles[self]
    if h == nil then error("calling '" .. name .. "' on a bad self (use ':')", 2) end
    local n = select("#", ...)
    if n == 0 then return wrap(fn(h)) end
    local a, b = ...
    if n == 1 then return wrap(fn(h, unwrap(a))) end
    if n == 2 then return wrap(fn(h, unwrap(a), unwrap(b))) end
    local args = pack(...)
    for i = 1, n do args[i] = unwrap(args[i]) end
    return wrap(fn(h, unpack(args, 1, n)))
  end
end

for kind, methods in pairs(classes) do
  local index = {}
  for name, fn in pairs(methods) do index[name] = method(fn, name) end
  metatables[kind] = {
    __index = function(_, k)
      local m = index[k]
      if m == nil then error("no method '" .. tostring(k) .. "'", 2) end
      return m
    end,
    __newindex = function() error(kind .. " is read-only", 2) end,
    __metatable = false,
  }
end

local function readonly(t, name)
  local copy = {}
  for k, v in pairs(t) do copy[k] = v end
  return setmetatable({}, {
    __index = copy,
    __newindex = function() error(name .. " is read-only", 2) end,
    __metatable = false,
  })
end

local MAX_CHUNK = 256 * 1024  -- load() of a longer text: the parser runs in C, out of the CPU limit's sight

local safe_string = {}
for k, v in pairs(string) do if k ~= "dump" then safe_string[k] = guards[k] or v end end
safe_string = readonly(safe_string, "string")
local safe_table = {}
for k, v in pairs(table) do safe_table[k] = guards[k] or v end

local function sandbox_libs(env_of)
  local libs = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, select = select,
    tonumber = tonumber, tostring = tostring, type = type, rawequal = rawequal, rawget = rawget, rawlen = rawlen,
    rawset = rawset, setmetatable = setmetatable, unpack = unpack, _VERSION = _VERSION,
    pcall = safe_pcall, xpcall = safe_xpcall,
    string = safe_string, table = readonly(safe_table, "table"), math = readonly(math, "math"),
    utf8 = readonly(utf8, "utf8"),
  }
  -- Only tables' metatables: a string's or a host object's would lead out of the sandbox.
  libs.getmetatable = function(v) if type(v) == "table" then return getmetatable(v) end return nil end
  -- Text chunks only (no bytecode), and never the host's globals.
  libs.load = function(chunk, name, _, env)
    if type(chunk) ~= "string" then return nil, "load: only a string chunk is allowed" end
    if #chunk > MAX_CHUNK then return nil, "load: a chunk longer than " .. MAX_CHUNK .. " bytes" end
    return load(chunk, name, "t", env or env_of())
  end
  libs.print = function(...)
    local n, parts = select("#", ...), {}
    for i = 1, n do parts[i] = tostring((select(i, ...))) end
    log(table.concat(parts, "\t"))
  end
  return libs
end

local function custom_error(msg, code, content_type)
  if msg == nil then error("custom_error needs a message", 2) end
  error({[CUSTOM] = true, msg = tostring(msg), status = tonumber(code), ctype = content_type and tostring(content_type)}, 0)
end

local function await(kind, ...)
  local r = pack(yield(AWAIT, kind, ...))
  if r[1] == nil then error(r[2], 3) end
  return wrap(r[1])
end

local http_response = readonly({
  new = function(url, method, body, headers)
    if url == nil or (method ~= nil and body == nil) then error("http_response.new needs 1, 3 or 4 arguments", 2) end
    return await("http", tostring(url), method and tostring(method), body and tostring(body), headers)
  end,
}, "http_response")

local function loader(name)
  return readonly({load = function() return current and current[OBJECTS][name] end}, name)
end

-- A set's globals: `defs` holds the libraries, the API and what its sources define at start-up; each call writes
-- its own globals into its call table, so no request sees another's (KrakenD builds a new state per request).
local function new_env(open_libs, api)
  local env, defs = {}, nil
  defs = open_libs and setmetatable({}, {__index = _G}) or sandbox_libs(function() return env end)
  for k, v in pairs(api) do
    local fns = {}
    for name, fn in pairs(v) do fns[name] = function(...) return wrap(fn(...)) end end
    defs[k] = readonly(fns, k)
  end
  defs.custom_error = custom_error
  defs.http_response = http_response
  defs.request, defs.response, defs.ctx = loader("request"), loader("response"), loader("ctx")
  defs._G = env
  setmetatable(env, {
    __index = function(_, k)
      local c = current
      if c ~= nil then local v = rawget(c, k) if v ~= nil then return v end end
      return defs[k]
    end,
    __newindex = function(_, k, v) local c = current if c == nil then defs[k] = v else c[k] = v end end,
    __metatable = false,
  })
  return env
end

local function compile(env, code, name)
  local f, err = load(code, "=" .. name, "t", env)
  return f, err
end

-- Sources run once, at start-up (and on a live reload), with no call running.
local function run_source(f)
  current = nil
  local co = create(f)
  sethook(co, hook, "", hook_every)
  limit_at = clock() + 1.0  -- a source's top level gets a second: it runs once, not per request
  local ok, err = resume(co)
  if ok and status(co) ~= "dead" then return "a source may not call http_response.new at load time" end
  if not ok then return tostring(err) end
  return nil
end

-- A request's call table: its scripts' globals and its objects, shared by its pre and post runs.
local function begin(request, response, ctx)
  return {[OBJECTS] = {
    request = request and wrap_as(request, "LuaRequestApi"),
    response = response and wrap_as(response, "LuaResponseApi"),
    ctx = ctx and wrap_as(ctx, "LuaContextApi"),
  }}
end

local function set_response(call, response) call[OBJECTS].response = wrap_as(response, "LuaResponseApi") end


local function finish(co, ok, first, ...)
  if ok then
    if status(co) == "dead" then return "done" end
    if rawequal(first, AWAIT) then return "await", ... end
    return "error", "a script yielded outside http_response.new"
  end
  if rawequal(first, LIMIT) then return "limit", "cpu" end
  if rawequal(first, MEMORY) then return "limit", "memory" end
  if type(first) == "table" and rawget(first, CUSTOM) then return "custom", first.msg, first.status, first.ctype end
  if type(first) == "string" then return "error", first end
  return "error", first
end

-- One resume of a call's coroutine: its globals are the call's, its CPU deadline `deadline`.
local function step(handle, call, deadline, ...)
  local co = handle[1]
  current = call
  limit_at = deadline
  return finish(co, resume(co, ...))
end

-- A call's coroutine made and run up to its end or first wait; its handle first, then step's results. The
-- coroutine stays on the Lua side (a table holds it): lupa would hand Python a wrapper, not the thread.
local function start(f, call, deadline)
  local co = create(f)
  sethook(co, hook, "", hook_every)
  local handle = {co}
  current = call
  limit_at = deadline
  return handle, finish(co, resume(co))
end

-- With the standard libraries a script could reach the host anyway; without them the string metatable leads
-- only to the read-only copy (no string.dump).
local function lock_strings()
  local mt = getmetatable("")
  mt.__index = safe_string
  mt.__metatable = false
end

return {new_env = new_env, compile = compile, run_source = run_source, start = start, step = step,
        lock_strings = lock_strings, begin = begin, set_response = set_response}

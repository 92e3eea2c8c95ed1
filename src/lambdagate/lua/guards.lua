-- lambdagate: the sandbox's versions of the library functions that can run long inside C, where the CPU limit's
-- instruction hook never fires: pattern matching (string.find, match, gmatch, gsub: backtracking over a long
-- subject costs up to length ^ quantifiers, seconds for "%s+$" over 20 KB of spaces), table.sort (comparisons
-- made in C) and table.move (a C loop over any range, even of nils).
--
-- Each guard keeps the C function for what is cheap at worst, and otherwise does the same work in Lua, where the
-- hook stops it at the script's CPU limit. The Lua pattern matcher below gives the C one's results and errors
-- (Lua 5.4 semantics: captures, position captures, back references, %b, %f, sets, anchors).
local string, table, math, force_lua = ...  -- force_lua: every call in Lua (tests compare the two)
local byte, sub, char, cfind, cmatch, cgmatch, cgsub = string.byte, string.sub, string.char, string.find,
  string.match, string.gmatch, string.gsub
local csort, cmove = table.sort, table.move
local concat, unpack = table.concat, table.unpack
local tointeger, maxinteger = math.tointeger, math.maxinteger
local type, tostring, tonumber, error, select = type, tostring, tonumber, error, select

-- Worst-case work a C call may do before the hook sees the script again: at most about 3 ns a unit measured
-- (" "*20000.."x" with "%s+$": 1e9 units, 3.5 s), so a C call ends within about 0.1 s.
local LINEAR_LIMIT = 5e7      -- plain searches and patterns without backtracking: length * pattern length
local BACKTRACK_LIMIT = 3e7   -- patterns that backtrack: pattern length * the positions the matcher may try
local SMALL_TABLE = 4096      -- table.sort and table.move in C up to this many elements
local MAXCAPTURES, MAXDEPTH = 32, 200
local CAP_UNFINISHED, CAP_POSITION = -1, -2
local SPECIALS = "[%^%$%*%+%?%.%(%[%%%-]"  -- C's: a find pattern without them is a plain search
local MAGIC = "[%^%$%*%+%?%.%(%)%[%]%%%-]"

local CLASS = {}  -- class letter's byte -> {[byte] = true} of the bytes it matches, as the C library's
for _, letter in ipairs({"a", "c", "d", "g", "l", "p", "s", "u", "w", "x", "z"}) do
  local yes, no = {}, {}
  for b = 0, 255 do
    if cfind(char(b), "%" .. letter) then yes[b] = true else no[b] = true end
  end
  CLASS[byte(letter)], CLASS[byte(letter:upper())] = yes, no
end

-- The matcher's errors, raised where the script called (as the C library's luaL_error does); any other error
-- (the CPU or memory limit, a replacement function's) goes on as it is.
local FAILURE = {}
local ESCAPES = {[98] = true, [102] = true}  -- %b, %f and %0-%9: items of their own, not classes
for d = 48, 57 do ESCAPES[d] = true end

local function fail(msg) error(setmetatable({msg}, FAILURE), 0) end
local function rethrow(ok, ...)
  if ok then return ... end
  local e = ...
  if getmetatable(e) == FAILURE then error(e[1], 2) end  -- rethrow is a tail call: 2 is the script
  error(e, 0)
end

-- ---- cost of the C call --------------------------------------------------------------------------------------

-- Items a match may retry: quantifiers, %b and back references (overcounting only sends a call to Lua). A
-- quantifier that ends the pattern (but for closing captures) is not retried: what follows it always matches.
local function backtracking(p)
  local n, i, len = 0, 1, #p
  while i <= len do
    local c = byte(p, i)
    if c == 37 then  -- %x: an escape (a quantifier after it still counts on the next turn)
      local d = byte(p, i + 1)
      if d == 98 then n, i = n + 1, i + 4
      elseif d and d >= 48 and d <= 57 then n, i = n + 1, i + 2
      else i = i + 2 end
    elseif c == 91 then  -- a set: its "-" and "^" are not quantifiers
      i = i + 1
      if byte(p, i) == 94 then i = i + 1 end
      repeat
        if i > len then return math.huge end
        if byte(p, i) == 37 then i = i + 1 end
        i = i + 1
      until byte(p, i) == 93
      i = i + 1
    else
      if (c == 42 or c == 43 or c == 45 or c == 63) and not cfind(p, "^[()]*$", i + 1) then n = n + 1 end
      i = i + 1
    end
  end
  return n
end

-- Whether the C function's worst case on this subject is small; `anchored` when it tries one start only.
local function cheap(s, p, init, plain, anchored)
  if force_lua then return false end
  local n, m = #s - (init or 1) + 2, #p + 1
  if plain or not cfind(p, SPECIALS) then return n * m <= LINEAR_LIMIT end
  local d = backtracking(p) + (anchored and 0 or 1)
  if d <= 1 then return n * m <= LINEAR_LIMIT end
  -- The matcher tries non-decreasing positions for its d choices: at most (n + d) ^ d / d! of them.
  local tries = 1
  for k = 1, d do tries = tries * (n + d) / k end
  return m * tries <= BACKTRACK_LIMIT
end

-- ---- the matcher -----------------------------------------------------------------------------------------------

local function class_end(ms, p)
  local c = byte(ms.pat, p)
  p = p + 1
  if c == 37 then
    if p > ms.plen then fail("malformed pattern (ends with '%')") end
    return p + 1
  elseif c == 91 then
    if byte(ms.pat, p) == 94 then p = p + 1 end
    repeat
      if p > ms.plen then fail("malformed pattern (missing ']')") end
      local cc = byte(ms.pat, p)
      p = p + 1
      if cc == 37 and p <= ms.plen then p = p + 1 end
    until byte(ms.pat, p) == 93
    return p + 1
  end
  return p
end

local function match_class(c, cl)
  local t = CLASS[cl]
  if t then return t[c] == true end
  return cl == c
end

local function match_bracket(ms, c, p, ec)  -- p at "[", ec at "]"
  local pat, sig = ms.pat, true
  if byte(pat, p + 1) == 94 then sig, p = false, p + 1 end
  p = p + 1
  while p < ec do
    local pc = byte(pat, p)
    if pc == 37 then
      p = p + 1
      if match_class(c, byte(pat, p)) then return sig end
    elseif byte(pat, p + 1) == 45 and p + 2 < ec then
      if pc <= c and c <= byte(pat, p + 2) then return sig end
      p = p + 2
    elseif pc == c then
      return sig
    end
    p = p + 1
  end
  return not sig
end

-- The bytes the single-character class at p matches, worked out once per pattern (patterns.sets, by position).
local ANY = {}
for b = 0, 255 do ANY[b] = true end
local function class_set(ms, p, ep)
  local set = ms.sets[p]
  if set then return set end
  local pc = byte(ms.pat, p)
  if pc == 46 then set = ANY
  elseif pc == 37 then
    local cl = byte(ms.pat, p + 1)
    set = CLASS[cl] or {[cl] = true}
  elseif pc == 91 then
    set = {}
    for b = 0, 255 do if match_bracket(ms, b, p, ep - 1) then set[b] = true end end
  else set = {[pc] = true} end
  ms.sets[p] = set
  return set
end

local function single_match(ms, s, p, ep)
  return s <= ms.len and class_set(ms, p, ep)[byte(ms.src, s)] == true
end

local function item_end(ms, p)
  local ep = ms.ends[p]
  if not ep then ep = class_end(ms, p); ms.ends[p] = ep end
  return ep
end

local do_match

-- The bytes the item at p must start with, when it is one character that must be there (no "*", "?" or "-"
-- after it); false otherwise. The expansions below skip the positions where what follows them cannot match.
local function must_set(ms, p)
  local found = ms.musts[p]
  if found ~= nil then return found end
  local pc, d = byte(ms.pat, p), byte(ms.pat, p + 1)
  found = false
  if p <= ms.plen and pc ~= 40 and pc ~= 41 and not (pc == 36 and p == ms.plen)
     and not (pc == 37 and (d == 98 or d == 102 or (d and d >= 48 and d <= 57))) then
    local ep = class_end(ms, p)
    local q = byte(ms.pat, ep)
    if q ~= 42 and q ~= 63 and q ~= 45 then found = class_set(ms, p, ep) end
  end
  ms.musts[p] = found
  return found
end

local function max_expand(ms, s, p, ep)
  local i, set, src, last = 0, class_set(ms, p, ep), ms.src, ms.len - s
  while i <= last and set[byte(src, s + i)] do i = i + 1 end
  local must = must_set(ms, ep + 1)
  while i >= 0 do
    if not must or must[byte(src, s + i) or -1] then
      local r = do_match(ms, s + i, ep + 1)
      if r then return r end
    end
    i = i - 1
  end
  return nil
end

local function min_expand(ms, s, p, ep)
  local set, must, src = class_set(ms, p, ep), must_set(ms, ep + 1), ms.src
  while true do
    if not must or must[byte(src, s) or -1] then
      local r = do_match(ms, s, ep + 1)
      if r then return r end
    end
    if s > ms.len or not set[byte(src, s)] then return nil end
    s = s + 1
  end
end

local function start_capture(ms, s, p, what)
  local level = ms.level + 1
  if level > MAXCAPTURES then fail("too many captures") end
  ms.cinit[level], ms.clen[level], ms.level = s, what, level
  local r = do_match(ms, s, p)
  if r == nil then ms.level = ms.level - 1 end
  return r
end

local function end_capture(ms, s, p)
  local l = ms.level
  while l >= 1 and ms.clen[l] ~= CAP_UNFINISHED do l = l - 1 end
  if l < 1 then fail("invalid pattern capture") end
  ms.clen[l] = s - ms.cinit[l]
  local r = do_match(ms, s, p)
  if r == nil then ms.clen[l] = CAP_UNFINISHED end
  return r
end

local function match_balance(ms, s, p)
  if p + 1 > ms.plen then fail("malformed pattern (missing arguments to '%b')") end
  local open, close = byte(ms.pat, p), byte(ms.pat, p + 1)
  if s > ms.len or byte(ms.src, s) ~= open then return nil end
  local depth = 1
  for i = s + 1, ms.len do
    local c = byte(ms.src, i)
    if c == close then
      depth = depth - 1
      if depth == 0 then return i + 1 end
    elseif c == open then
      depth = depth + 1
    end
  end
  return nil
end

local function capture_index(ms, d)
  local l = d - 48
  if l < 1 or l > ms.level or ms.clen[l] == CAP_UNFINISHED then fail("invalid capture index %" .. (l)) end
  return l
end

local function match_capture(ms, s, d)
  local l = capture_index(ms, d)
  local len = ms.clen[l]
  if len >= 0 and ms.len - s + 1 >= len and sub(ms.src, ms.cinit[l], ms.cinit[l] + len - 1) == sub(ms.src, s, s + len - 1) then
    return s + len
  end
  return nil
end

-- One item of the pattern at p against the subject at s; the index after the whole match, or nil.
local function match_escape(ms, s, p)
  local d = byte(ms.pat, p + 1)
  if d == 98 then
    s = match_balance(ms, s, p + 2)
    return s, p + 4
  elseif d == 102 then
    p = p + 2
    if byte(ms.pat, p) ~= 91 then fail("missing '[' after '%f' in pattern") end
    local ep = class_end(ms, p)
    local prev = s == 1 and 0 or byte(ms.src, s - 1)
    local cur = s <= ms.len and byte(ms.src, s) or 0
    if not match_bracket(ms, prev, p, ep - 1) and match_bracket(ms, cur, p, ep - 1) then return s, ep end
    return nil
  end
  return match_capture(ms, s, d), p + 2
end

local function match_item(ms, s, p)
  local ep = item_end(ms, p)
  local q = byte(ms.pat, ep)
  if not single_match(ms, s, p, ep) then
    if q == 42 or q == 63 or q == 45 then return "next", s, ep + 1 end
    return "done", nil
  end
  if q == 63 then
    local r = do_match(ms, s + 1, ep + 1)
    if r then return "done", r end
    return "next", s, ep + 1
  elseif q == 43 then return "done", max_expand(ms, s + 1, p, ep)
  elseif q == 42 then return "done", max_expand(ms, s, p, ep)
  elseif q == 45 then return "done", min_expand(ms, s, p, ep)
  end
  return "next", s + 1, ep
end

function do_match(ms, s, p)
  ms.depth = ms.depth + 1
  if ms.depth > MAXDEPTH then fail("pattern too complex") end
  local result
  while true do
    if p > ms.plen then result = s break end
    local pc = byte(ms.pat, p)
    if pc == 40 then
      if byte(ms.pat, p + 1) == 41 then result = start_capture(ms, s, p + 2, CAP_POSITION)
      else result = start_capture(ms, s, p + 1, CAP_UNFINISHED) end
      break
    elseif pc == 41 then
      result = end_capture(ms, s, p + 1)
      break
    elseif pc == 36 and p == ms.plen then
      if s == ms.len + 1 then result = s end
      break
    elseif pc == 37 and (byte(ms.pat, p + 1) or 0) <= 102 and ESCAPES[byte(ms.pat, p + 1)] then
      s, p = match_escape(ms, s, p)
      if s == nil then break end
    else
      local how
      how, s, p = match_item(ms, s, p)
      if how == "done" then result = s break end
    end
  end
  ms.depth = ms.depth - 1
  return result
end

-- The plain text every match starts with ('"name":' of '"name":%s*"(.-)"'), or nil: the unanchored loops jump
-- from one of its occurrences to the next (C's plain search) instead of trying each start.
local function first_literal(p)
  local stop = cfind(p, MAGIC, 1) or #p + 1
  local q = byte(p, stop)
  if q == 42 or q == 45 or q == 63 then stop = stop - 1 end  -- "ab*": the "b" may be absent
  if stop <= 1 then return nil end
  return sub(p, 1, stop - 1)
end

-- What is worked out about a pattern (its items' ends and byte sets) serves its next calls too, for a few patterns.
local compiled, ncompiled = {}, 0
local function state(s, p)
  local known = compiled[p]
  if not known then
    if ncompiled >= 64 then compiled, ncompiled = {}, 0 end
    known, ncompiled = {ends = {}, sets = {}, musts = {}}, ncompiled + 1
    compiled[p] = known
  end
  return {src = s, len = #s, pat = p, plen = #p, level = 0, depth = 0, cinit = {}, clen = {}, ends = known.ends,
          sets = known.sets, musts = known.musts}
end

local function reset(ms) ms.level, ms.depth = 0, 0 end

local function one_capture(ms, i, s, e)
  if i > ms.level then
    if i ~= 1 then fail("invalid capture index %" .. i) end
    return sub(ms.src, s, e - 1)
  end
  local l = ms.clen[i]
  if l == CAP_UNFINISHED then fail("unfinished capture") end
  if l == CAP_POSITION then return ms.cinit[i] end
  return sub(ms.src, ms.cinit[i], ms.cinit[i] + l - 1)
end

local function captures(ms, s, e, whole)
  local n = (ms.level == 0 and whole) and 1 or ms.level
  local out = {}
  for i = 1, n do out[i] = one_capture(ms, i, s, e) end
  return unpack(out, 1, n)
end

-- ---- the guarded functions -----------------------------------------------------------------------------------

-- Arguments as the C function reads them, or nil when they are not plain (then the C function raises its error
-- before any matching, or matches a short number's text).
local function subject(s) if type(s) == "number" then return tostring(s) end return type(s) == "string" and s or nil end
local function integer(v) return tointeger(type(v) == "string" and tonumber(v) or v) end
local function position(init, len)
  if init == nil then return 1 end
  init = integer(init)
  if init == nil then return nil end
  if init > 0 then return init elseif init == 0 or init < -len then return 1 end
  return len + init + 1
end

local function plain_find(s, p, init)
  if #p == 0 then return init, init - 1 end
  local first, m = sub(p, 1, 1), #p
  local i = cfind(s, first, init, true)
  while i do
    if sub(s, i, i + m - 1) == p then return i, i + m - 1 end
    i = cfind(s, first, i + 1, true)
  end
  return nil
end

local function find_lua(is_find, s, p, init, plain, anchored)
  if init > #s + 1 then return nil end
  if is_find and (plain or not cfind(p, SPECIALS)) then return plain_find(s, p, init) end
  local pat = anchored and sub(p, 2) or p
  local ms, lit, s1 = state(s, pat), not anchored and first_literal(pat), init
  while s1 <= #s + 1 do
    if lit then
      s1 = cfind(s, lit, s1, true)
      if not s1 then return nil end
    end
    reset(ms)
    local e = do_match(ms, s1, 1)
    if e then
      if is_find then return s1, e - 1, captures(ms, nil, nil, false) end
      return captures(ms, s1, e, true)
    end
    if anchored then return nil end
    s1 = s1 + 1
  end
  return nil
end

-- The C function (a tail call: its errors name the script's line) when cheap, or with odd arguments (it raises
-- its error before matching); else the Lua matcher.
local function find(s0, p0, init0, plain)
  local s, p = subject(s0), subject(p0)
  local init = s and position(init0, #s)
  if not (s and p and init) or cheap(s, p, init, plain, byte(p, 1) == 94) then return cfind(s0, p0, init0, plain) end
  return rethrow(pcall(find_lua, true, s, p, init, plain, byte(p, 1) == 94))
end

local function match(s0, p0, init0)
  local s, p = subject(s0), subject(p0)
  local init = s and position(init0, #s)
  if not (s and p and init) or cheap(s, p, init, false, byte(p, 1) == 94) then return cmatch(s0, p0, init0) end
  return rethrow(pcall(find_lua, false, s, p, init, false, byte(p, 1) == 94))
end

local function gmatch(s0, p0, init0)
  local s, p = subject(s0), subject(p0)
  local init = s and position(init0, #s)
  if not (s and p and init) or cheap(s, p, init, false, false) then return cgmatch(s0, p0, init0) end
  if init > #s + 1 then init = #s + 2 end  -- past the end: nothing, not even an empty match
  local ms, src, last, lit = state(s, p), init, nil, first_literal(p)
  local function step()
    while src <= #s + 1 do
      if lit then
        src = cfind(s, lit, src, true) or #s + 2
        if src > #s then return nil end
      end
      reset(ms)
      local e = do_match(ms, src, 1)
      if e and e ~= last then
        local start = src
        src, last = e, e
        return captures(ms, start, e, true)
      end
      src = src + 1
    end
    return nil
  end
  return function() return rethrow(pcall(step)) end
end

local function add_string(ms, out, repl, s, e)
  local i, len = 1, #repl
  while i <= len do
    local j = cfind(repl, "%", i, true)
    if not j then out[#out + 1] = sub(repl, i) break end
    out[#out + 1] = sub(repl, i, j - 1)
    local d = byte(repl, j + 1)
    if d == 37 then out[#out + 1] = "%"
    elseif d == 48 then out[#out + 1] = sub(ms.src, s, e - 1)
    elseif d and d >= 49 and d <= 57 then out[#out + 1] = tostring(one_capture(ms, d - 48, s, e))
    else fail("invalid use of '%' in replacement string") end
    i = j + 2
  end
end

local function add_value(ms, out, repl, kind, s, e)
  if kind == "string" or kind == "number" then
    add_string(ms, out, tostring(repl), s, e)
    return true
  end
  local value
  if kind == "function" then value = repl(captures(ms, s, e, true))
  else value = repl[one_capture(ms, 1, s, e)] end
  if not value then out[#out + 1] = sub(ms.src, s, e - 1) return false end
  local vt = type(value)
  if vt ~= "string" and vt ~= "number" then fail("invalid replacement value (a " .. vt .. ")") end
  out[#out + 1] = tostring(value)
  return true
end

local function gsub_lua(s0, s, p, repl, kind, max_n, anchored)
  local pat = anchored and sub(p, 2) or p
  local ms, out, src, last, n, changed = state(s, pat), {}, 1, nil, 0, false
  local lit = not anchored and first_literal(pat)
  while n < max_n do
    if lit then  -- no match starts before the next occurrence of its first character: copied as it is
      local j = cfind(s, lit, src, true) or #s + 1
      out[#out + 1] = sub(s, src, j - 1)
      src = j
    end
    reset(ms)
    local e = do_match(ms, src, 1)
    if e and e ~= last then
      n = n + 1
      changed = add_value(ms, out, repl, kind, src, e) or changed
      src, last = e, e
    elseif src <= #s then
      out[#out + 1] = sub(s, src, src)
      src = src + 1
    else
      break
    end
    if anchored then break end
  end
  if not changed then return s, n end  -- as C: its subject, a number already turned to text
  out[#out + 1] = sub(s, src)
  return concat(out), n
end

local function gsub(s0, p0, repl, max0)
  local s, p, kind = subject(s0), subject(p0), type(repl)
  local max_n = s and (max0 == nil and #s + 1 or integer(max0))
  local valid = kind == "string" or kind == "number" or kind == "function" or kind == "table"
  if not (s and p and max_n and valid) or cheap(s, p, 1, false, byte(p, 1) == 94) then
    return cgsub(s0, p0, repl, max0)
  end
  return rethrow(pcall(gsub_lua, s0, s, p, repl, kind, max_n, byte(p, 1) == 94))
end

-- table.sort of a long list compares in Lua (the hook sees each comparison); a short one in C.
local function lt(a, b) return a < b end
local function sort(t, comp)
  if type(t) == "table" and (comp == nil or type(comp) == "function") and (force_lua or #t > SMALL_TABLE) then
    local by = comp
    if by == nil then comp = lt else comp = function(a, b) return by(a, b) end end
  end
  return csort(t, comp)
end

-- table.move of a long range copies in Lua.
local function move(a1, f0, e0, t0, a2)
  local f, e, t = tointeger(f0), tointeger(e0), tointeger(t0)
  if not (f and e and t and type(a1) == "table") or (e - f < SMALL_TABLE and not force_lua) then
    return cmove(a1, f0, e0, t0, a2)
  end
  if a2 == nil then a2 = a1 end
  if not (f > 0 or e < maxinteger + f) then fail("too many elements to move") end
  if t > maxinteger - (e - f) then fail("destination wrap around") end
  if t > e or t <= f or not rawequal(a1, a2) then
    for i = 0, e - f do a2[t + i] = a1[f + i] end
  else
    for i = e - f, 0, -1 do a2[t + i] = a1[f + i] end
  end
  return a2
end

return {find = find, match = match, gmatch = gmatch, gsub = gsub, sort = sort, move = move}

-- The time budget of one Lua state of ktstore-server's script host.
--
-- Runs in every fresh state after the prelude and before the sandbox.  It
-- returns invoke(deadline, ask, fn, ...), through which the host runs every
-- call: a call must end by `deadline` (a CLOCK_MONOTONIC time, math.huge for
-- none); `ask` makes every check ask the host, whose expired() also tells
-- whether the client has gone.
--
-- VM code: a count hook checks the clock every COUNT instructions; once the
-- time is up it fires on every instruction and raises TIMEOUT, so even a loop
-- around pcall cannot keep going.  Coroutines get the same hook.
--
-- C functions: the hook never fires inside them, and some can run for very
-- long on small input (a backtracking pattern is exponential in the number of
-- its quantifiers).  So the functions that can take more than a moment are
-- replaced:
--   * string.find/match/gmatch/gsub estimate the worst-case steps of the C
--     matcher for this subject and pattern; a cheap call runs in C, an
--     expensive one runs in patterns.lua (the same matcher in Lua, which the
--     hook can stop);
--   * string.rep answers "" at once for empty results (Lua 5.1 would loop n
--     times) and refuses results larger than the state's memory limit;
--   * table.sort of a large table without a comparator sorts with a Lua
--     comparator (the hook fires inside it);
--   * the work of string.rep/sub/upper/lower/reverse, table.concat/insert/
--     remove and collectgarbage, and the estimates of the C pattern calls, are
--     counted, and the clock is read whenever that count passes CHECK, so a
--     loop of C calls is checked as often as a loop of VM instructions.
-- What remains unbounded by the clock is one VM instruction on a huge string
-- (`..` of two 100 MB strings), which the memory limit bounds instead.
--
-- The clock: LuaJIT on Linux reads CLOCK_MONOTONIC through its FFI (the same
-- clock as Python's time.monotonic); elsewhere the hook asks the host
-- (`expired`, a Python call).  The host's expired() is consulted in every case
-- before TIMEOUT is raised: it records that the call timed out.

local expired, TIMEOUT, budget, patterns, max_string = ...

local sethook = debug.sethook
local co_create, co_resume = coroutine.create, coroutine.resume
local error, type, select, tonumber, tostring = error, type, select, tonumber, tostring
local floor, huge, log = math.floor, math.huge, math.log

-- ------------------------------------------------------------------- clock

local clock, realtime
if jit and jit.os == "Linux" then
  local ok, ffi = pcall(require, "ffi")
  if ok then
    ok = pcall(ffi.cdef, [[
      typedef struct { long tv_sec; long tv_nsec; } ktstore_timespec;
      int clock_gettime(int clk_id, ktstore_timespec *tp);
    ]])
  end
  if ok then
    local ts = ffi.new("ktstore_timespec")
    local gettime = ffi.C.clock_gettime
    local function reader(clk_id)
      return function()
        gettime(clk_id, ts)
        return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
      end
    end
    clock, realtime = reader(1), reader(0) -- CLOCK_MONOTONIC, CLOCK_REALTIME
  end
end

-- kt.time() without a call into Python (queue procedures read it on every
-- call): the host's answer, time.time() to the microsecond.
if realtime and type(__kyototycoon__) == "table" then
  __kyototycoon__.time = function() return floor(realtime() * 1e6 + 0.5) / 1e6 end
end

if not budget then
  return function(_, _, fn, ...) return fn(...) end
end

-- VM instructions between two looks at the clock (about a millisecond; a
-- hook call itself costs microseconds in LuaJIT's interpreter, so not less)
local COUNT = 100000
-- estimated C steps between two looks at the clock (about a millisecond)
local CHECK = 1e6
-- the largest estimate a C pattern call may have (at most a few tenths of a
-- second of C); beyond it the Lua matcher runs
local NATIVE = 1e8

local deadline = huge
local poll = false -- the host wants to be asked at every check (a cancellable call)
local spent = 0

local function over()
  if clock and not poll and clock() <= deadline then return false end
  return expired()
end

local hook
hook = function()
  if over() then
    sethook(hook, "", 1)
    error(TIMEOUT, 0)
  end
end

local function charge(cost)
  spent = spent + cost
  if spent > CHECK then
    spent = 0
    hook()
  end
end

sethook(hook, "", COUNT)
coroutine.create = function(f)
  local co = co_create(f)
  sethook(co, hook, "", COUNT)
  return co
end
local function pass(ok, ...)
  if not ok then error((...), 0) end
  return ...
end
coroutine.wrap = function(f)
  local co = coroutine.create(f)
  return function(...) return pass(co_resume(co, ...)) end
end

-- The dump codecs may be compiled by LuaJIT (see host.py), where the hook
-- does not run: their work is counted here instead.
local ktm = __kyototycoon__
if type(ktm) == "table" then
  local function input_sized(f)
    return function(s, ...)
      if type(s) == "string" then charge(#s) end
      return f(s, ...)
    end
  end
  local function output_sized(f)
    return function(...)
      local r = f(...)
      if type(r) == "string" then charge(#r) end
      return r
    end
  end
  ktm.mapload, ktm.arrayload = input_sized(ktm.mapload), input_sized(ktm.arrayload)
  ktm.mapdump, ktm.arraydump = output_sized(ktm.mapdump), output_sized(ktm.arraydump)
end

-- --------------------------------------------------------------- patterns

local nfind, nmatch, ngmatch, ngsub = string.find, string.match, string.gmatch, string.gsub
local byte = string.byte

-- Per pattern: (anchored, quantifiers * + -, optionals ?, linear items %b
-- and back-references, trailing).  A quantified item at the very end (only
-- closing parentheses after it) never backtracks: the empty rest matches at
-- once, so it adds one scan of the subject instead of multiplying the work;
-- `trailing` says the pattern has one.  Malformed patterns need no care
-- here: the matcher that runs them raises the error.
local shapes, nshapes = {}, 0

local function shape(p)
  local s = shapes[p]
  if s then return s end
  local i, plen = 1, #p
  local anchored = byte(p, 1) == 94
  if anchored then i = 2 end
  local q, opt, lin = 0, 0, 0
  local trailing = false
  while i <= plen do
    local c = byte(p, i)
    local item = true
    if c == 41 then -- )
      i = i + 1
      item = false
    elseif c == 40 then -- (
      i = i + 1
      item = false
      trailing = false
    elseif c == 37 then -- %
      local d = byte(p, i + 1)
      if d == 98 then
        lin = lin + 1
        i = i + 4
        item = false
      elseif d == 102 then
        i = i + 2
        item = false
      elseif d and d >= 48 and d <= 57 then
        lin = lin + 1
        i = i + 2
        item = false
      else
        i = i + 2
      end
    elseif c == 91 then -- [set]
      i = i + 1
      if byte(p, i) == 94 then i = i + 1 end
      repeat
        local cc = byte(p, i)
        i = i + 1
        if cc == 37 then i = i + 1 end
      until i > plen or byte(p, i) == 93
      i = i + 1
    else
      i = i + 1
    end
    if c ~= 41 then trailing = false end
    if item then
      local r = byte(p, i)
      if r == 42 or r == 43 or r == 45 then
        q = q + 1
        i = i + 1
        trailing = true
      elseif r == 63 then
        opt = opt + 1
        i = i + 1
      end
    end
  end
  if trailing then q = q - 1 end
  s = { anchored, q, opt, lin, trailing }
  if nshapes >= 512 then
    shapes, nshapes = {}, 0
  end
  shapes[p] = s
  nshapes = nshapes + 1
  return s
end

-- Worst-case steps of the C matcher over n subject bytes: every start
-- position, times (n+1) per quantifier, 2 per optional item, times the
-- pattern length plus n per linear item (plus n for a trailing quantifier).
local function cost(n, p, anchored)
  local s = shape(p)
  if anchored == nil then anchored = s[1] end
  local starts = anchored and 1 or n + 1
  local c = starts * (n + 1) ^ s[2] * 2 ^ s[3] * (#p + 1 + s[4] * n)
  if s[5] then c = c + n + 1 end
  return c
end

local function isstr(v)
  local t = type(v)
  return t == "string" or t == "number"
end

-- C's luaL_optinteger: nil, a number or a numeric string; false otherwise
local function optnum(v)
  if v == nil then return nil end
  return tonumber(v) or false
end

local function subject_len(s, init)
  local len = #s
  if init == nil then return len end
  if init < 0 then init = len + init + 1 end
  if init < 1 then init = 1 end
  return len - init + 1
end

string.find = function(s, p, init, plain)
  local i = optnum(init)
  if not (isstr(s) and isstr(p)) or i == false then return nfind(s, p, init, plain) end
  s, p = tostring(s), tostring(p)
  local n = subject_len(s, i)
  local c
  if plain then
    c = (n + 1) * (#p + 1)
  else
    c = cost(n, p)
  end
  if c <= NATIVE then
    charge(c)
    return nfind(s, p, init, plain)
  end
  return patterns.find(s, p, i, plain)
end

string.match = function(s, p, init)
  local i = optnum(init)
  if not (isstr(s) and isstr(p)) or i == false then return nmatch(s, p, init) end
  s, p = tostring(s), tostring(p)
  local c = cost(subject_len(s, i), p)
  if c <= NATIVE then
    charge(c)
    return nmatch(s, p, init)
  end
  return patterns.match(s, p, i)
end

-- Each step of a gmatch loop costs at most a whole scan of the subject.
string.gmatch = function(s, p)
  if not (isstr(s) and isstr(p)) then return ngmatch(s, p) end
  s, p = tostring(s), tostring(p)
  local c = cost(#s, p, false)
  if c > NATIVE then return patterns.gmatch(s, p) end
  local step = ngmatch(s, p)
  return function()
    charge(c)
    return step()
  end
end

string.gfind = string.gmatch -- Lua 5.1's old name

string.gsub = function(s, p, repl, max_n)
  local m = optnum(max_n)
  local tr = type(repl)
  if
    not (isstr(s) and isstr(p)) or m == false
    or (tr ~= "string" and tr ~= "number" and tr ~= "function" and tr ~= "table")
  then
    return ngsub(s, p, repl, max_n)
  end
  s, p = tostring(s), tostring(p)
  local c = cost(#s, p) + #s
  if tr ~= "function" and tr ~= "table" then c = c + #s * #tostring(repl) end
  if c <= NATIVE then
    charge(c)
    return ngsub(s, p, repl, max_n)
  end
  return patterns.gsub(s, p, repl, m)
end

-- ------------------------------------------------------ other C functions

local nrep = string.rep
local rep_has_sep = nrep("a", 2, ",") == "a,a" -- LuaJIT takes a separator

string.rep = function(s, n, sep)
  if not rep_has_sep then sep = nil end
  local k = tonumber(n)
  if isstr(s) and k then
    if k >= 0 then k = floor(k) else k = -floor(-k) end
    local total = 0
    if k > 0 then
      total = #tostring(s) * k
      if rep_has_sep and isstr(sep) then total = total + #tostring(sep) * (k - 1) end
    end
    if total == 0 and (sep == nil or isstr(sep)) then return "" end
    if total > max_string then error("not enough memory", 0) end
    charge(total)
  end
  return nrep(s, n, sep)
end

local function sized(fn)
  return function(...)
    local r = fn(...)
    if type(r) == "string" then charge(#r) end
    return r
  end
end
string.sub = sized(string.sub)
string.upper = sized(string.upper)
string.lower = sized(string.lower)
string.reverse = sized(string.reverse)
table.concat = sized(table.concat)

local ninsert, nremove, nsort = table.insert, table.remove, table.sort
table.insert = function(t, ...)
  if type(t) == "table" and select("#", ...) >= 2 then charge(#t) end
  return ninsert(t, ...)
end
table.remove = function(t, ...)
  if type(t) == "table" and select("#", ...) >= 1 then charge(#t) end
  return nremove(t, ...)
end

-- about ten steps per comparison of n log n
local function less(a, b) return a < b end
table.sort = function(t, comp)
  if type(t) == "table" and comp == nil then
    local n = #t
    local c = n < 2 and 1 or n * log(n) / log(2) * 10
    if c > NATIVE then return nsort(t, less) end
    charge(c)
  end
  return nsort(t, comp)
end

local ncollect = collectgarbage
collectgarbage = function(opt, ...)
  if opt == nil or opt == "collect" or opt == "step" then charge(ncollect("count") * 1024) end
  return ncollect(opt, ...)
end

-- ------------------------------------------------------------------ invoke

return function(limit, ask, fn, ...)
  deadline, poll = limit, ask
  spent = 0
  return fn(...)
end

-- The `kt` module of ktstore-server's Lua host, as ktserver's scripting
-- extension defines it (global __kyototycoon__).
--
-- This chunk runs once in every fresh Lua state, before the user's script.
-- It receives the host primitives table H (Python functions) and the host
-- configuration, keeps them in local upvalues only, and returns the two
-- functions the host needs afterwards.  Nothing here is reachable from
-- scripts except the `kt` table itself: Python objects (databases, cursors)
-- live in weak-keyed local tables indexed by the Lua objects that stand for
-- them, so a script can hold a DB or a cursor but never the Python object.
--
-- Objects are plain tables carrying their methods as fields (ktserver builds
-- them that way), with metatables for tostring, db[k] sugar and cursor calls.

local RAW, CONF = ...

local type, tostring, tonumber, error, pairs, ipairs, pcall, select =
  type, tostring, tonumber, error, pairs, ipairs, pcall, select

-- A Python exception raised by a primitive would reach Lua as a Python object
-- (the error value); every primitive is wrapped so scripts only ever see the
-- message as a string.
local function reraise(ok, ...)
  if ok then return ... end
  local e = ...
  if type(e) ~= "string" then e = tostring(e) end
  error(e, 0)
end
local H = {}
for name, fn in pairs(RAW) do
  H[name] = function(...) return reraise(pcall(fn, ...)) end
end
local setmetatable, rawget, unpack, newproxy = setmetatable, rawget, unpack, newproxy
local floor, huge = math.floor, math.huge
local format = string.format

local kt = {}
kt.VERSION = CONF.version
kt.RVSUCCESS = 0
kt.RVENOIMPL = 1
kt.RVEINVALID = 2
kt.RVELOGIC = 3
kt.RVEINTERNAL = 5
kt.thid = CONF.thid

-- Raised (as the error value) when the host's time budget is exhausted; the
-- visitor wrappers below must not swallow it.
local TIMEOUT = setmetatable({}, { __tostring = function() return "script timed out" end })

local function invarg(fname)
  error(fname .. ": invalid arguments", 3)
end

-- KT's string conversion for stored data (set_bulk, mapdump, arraydump):
-- integral numbers as %lld, others as %.6f, strings as is, the rest skipped.
local function datastr(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then
    if v == floor(v) then return format("%d", v) end
    return format("%.6f", v)
  end
  return nil
end

-- lua_tolstring: strings and numbers (%.14g via tostring), else nil.
local function tolstring(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  return nil
end

local function toxt(xt)
  if xt == nil then return nil end
  return tonumber(xt) or 0
end

---------------------------------------------------------------- pure functions

function kt.atoi(s)
  s = tolstring(s)
  if s == nil then return nil end
  return H.atoi(s)
end

function kt.atoix(s)
  s = tolstring(s)
  if s == nil then return nil end
  return H.atoix(s)
end

function kt.atof(s)
  s = tolstring(s)
  if s == nil then return nil end
  return H.atof(s)
end

function kt.hash_murmur(s)
  s = tolstring(s)
  if s == nil then return nil end
  return H.hash_murmur(s)
end

function kt.hash_fnv(s)
  s = tolstring(s)
  if s == nil then return nil end
  return H.hash_fnv(s)
end

function kt.levdist(...)
  local a, b, utf = ...
  a, b = tolstring(a), tolstring(b)
  if select("#", ...) < 2 or a == nil or b == nil then invarg("levdist") end
  return H.levdist(a, b, utf and true or false)
end

function kt.time()
  return H.time()
end

function kt.sleep(sec)
  H.sleep(tonumber(sec) or 0)
end

function kt.log(kind, message)
  kind, message = tolstring(kind), tolstring(message)
  if kind and message then H.log(kind, message) end
end

function kt.pack(fmt, ...)
  fmt = tolstring(fmt)
  if fmt == nil then invarg("pack") end
  local nums = {}
  local n = 0
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    local t = type(v)
    if t == "table" then
      for j = 1, #v do
        n = n + 1
        nums[n] = tonumber(v[j]) or 0
      end
    else
      n = n + 1
      nums[n] = tonumber(v) or 0
    end
  end
  return H.pack(fmt, nums)
end

function kt.unpack(fmt, s)
  fmt = tolstring(fmt)
  if fmt == nil then invarg("unpack") end
  return H.unpack(fmt, tolstring(s) or "")
end

function kt.split(s, delims)
  s = tolstring(s)
  if s == nil then invarg("split") end
  return H.split(s, tolstring(delims))
end

function kt.codec(mode, s)
  mode, s = tolstring(mode), tolstring(s)
  if mode == nil or s == nil then invarg("codec") end
  return H.codec(mode, s)
end

function kt.bit(mode, num, aux)
  mode = tolstring(mode)
  if mode == nil or num == nil then invarg("bit") end
  return H.bit(mode, tonumber(num) or 0, tonumber(aux) or 0)
end

function kt.strstr(s, pat, alt)
  s, pat = tolstring(s), tolstring(pat)
  if s == nil or pat == nil then invarg("strstr") end
  return H.strstr(s, pat, tolstring(alt))
end

function kt.strfwm(s, pat)
  s, pat = tolstring(s), tolstring(pat)
  if s == nil or pat == nil then invarg("strfwm") end
  return H.strfwm(s, pat)
end

function kt.strbwm(s, pat)
  s, pat = tolstring(s), tolstring(pat)
  if s == nil or pat == nil then invarg("strbwm") end
  return H.strbwm(s, pat)
end

function kt.regex(s, pat, alt)
  s, pat = tolstring(s), tolstring(pat)
  if s == nil or pat == nil then invarg("regex") end
  return H.regex(s, pat, tolstring(alt))
end

-- The dump formats are coded here rather than in Python: container procedures
-- load and dump a record on every call, and a Lua loop neither crosses into
-- Python nor holds its interpreter lock (and the time budget's hook covers it).
-- varint: big-endian base-128, every byte but the last with bit 7 set.
local char, byte, sub, concat = string.char, string.byte, string.sub, table.concat
local VARINT = {}
for i = 0, 127 do VARINT[i] = char(i) end

local function varint(n)
  local small = VARINT[n]
  if small then return small end
  local low = n % 128
  n = (n - low) / 128
  local out = char(low)
  while n > 0 do
    low = n % 128
    n = (n - low) / 128
    out = char(128 + low) .. out
  end
  return out
end

-- (value, next position), or (0, nil) when the data ends inside the varint.
local function readvarint(s, pos, size)
  local value = 0
  while pos <= size do
    local c = byte(s, pos)
    pos = pos + 1
    if c < 128 then return value * 128 + c, pos end
    value = value * 128 + (c - 128)
  end
  return 0, nil
end

function kt.arraydump(t)
  if type(t) ~= "table" then invarg("arraydump") end
  local parts = {}
  local n = 0
  for i = 1, #t do
    local v = t[i]
    if type(v) ~= "string" then v = datastr(v) end
    if v ~= nil then
      local vl = #v
      parts[n + 1] = VARINT[vl] or varint(vl)
      parts[n + 2] = v
      n = n + 2
    end
  end
  return concat(parts)
end

-- Loaders stop quietly at truncated input, as Kyoto Cabinet's do.
function kt.arrayload(s)
  s = tolstring(s)
  if s == nil then invarg("arrayload") end
  local out, n, pos, size = {}, 0, 1, #s
  while pos <= size do
    local len = byte(s, pos)
    if len < 128 then
      pos = pos + 1
    else
      len, pos = readvarint(s, pos, size)
    end
    if pos == nil or pos + len - 1 > size then break end
    n = n + 1
    out[n] = sub(s, pos, pos + len - 1)
    pos = pos + len
  end
  return out
end

-- (the two hot loops below inline the common cases: strings, lengths < 128)
function kt.mapdump(t)
  if type(t) ~= "table" then invarg("mapdump") end
  local parts = {}
  local n = 0
  for k, v in pairs(t) do
    if type(k) ~= "string" then k = datastr(k) end
    if type(v) ~= "string" then v = datastr(v) end
    if k ~= nil and v ~= nil then
      local kl, vl = #k, #v
      parts[n + 1] = VARINT[kl] or varint(kl)
      parts[n + 2] = VARINT[vl] or varint(vl)
      parts[n + 3] = k
      parts[n + 4] = v
      n = n + 4
    end
  end
  return concat(parts)
end

function kt.mapload(s)
  s = tolstring(s)
  if s == nil then invarg("mapload") end
  local out, pos, size = {}, 1, #s
  while pos <= size do
    local klen, vlen = byte(s, pos, pos + 1)
    if klen < 128 and vlen ~= nil and vlen < 128 then
      pos = pos + 2
    else
      klen, pos = readvarint(s, pos, size)
      if pos == nil then break end
      vlen, pos = readvarint(s, pos, size)
      if pos == nil then break end
    end
    local kend = pos + klen
    if kend + vlen - 1 > size then break end
    out[sub(s, pos, kend - 1)] = sub(s, kend, kend + vlen - 1)
    pos = kend + vlen
  end
  return out
end

------------------------------------------------------------------------- Error

local ERRNAMES = {
  [0] = "success", [1] = "not implemented", [2] = "invalid operation",
  [3] = "no repository", [4] = "no permission", [5] = "broken file",
  [6] = "record duplication", [7] = "no record", [8] = "logical inconsistency",
  [9] = "system error", [15] = "miscellaneous error",
}

local function codename(code)
  return ERRNAMES[tonumber(code) or -1] or "unknown error"
end

local Error = {
  SUCCESS = 0, NOIMPL = 1, INVALID = 2, NOREPOS = 3, NOPERM = 4, BROKEN = 5,
  DUPREC = 6, NOREC = 7, LOGIC = 8, SYSTEM = 9, MISC = 15,
}
Error.meta_ = {
  __tostring = function(e)
    return codename(rawget(e, "code_")) .. ": " .. tostring(rawget(e, "message_"))
  end,
}

local function valid_error_args(code, message)
  local mt = type(message)
  return tonumber(code) ~= nil and (mt == "string" or mt == "number")
end

local function err_set(self, code, message)
  if type(self) ~= "table" then invarg("set") end
  if valid_error_args(code, message) then
    self.code_ = code
    self.message_ = message
  end
  return nil
end

local function err_code(self)
  if type(self) ~= "table" then invarg("code") end
  return self.code_
end

local function err_name(self)
  if type(self) ~= "table" then invarg("name") end
  return codename(self.code_)
end

local function err_message(self)
  if type(self) ~= "table" then invarg("message") end
  return self.message_
end

function Error:new(code, message)
  if type(self) ~= "table" then invarg("new") end
  local e = { set = err_set, code = err_code, name = err_name, message = err_message }
  if valid_error_args(code, message) then
    e.code_, e.message_ = code, message
  else
    e.code_, e.message_ = 0, "error"
  end
  return setmetatable(e, self.meta_)
end
kt.Error = Error

----------------------------------------------------------------------- Visitor

local NOP = newproxy(false)
local REMOVE = newproxy(false)
local Visitor = { NOP = NOP, REMOVE = REMOVE, meta_ = {} }

local function vis_default() return nil end

function Visitor:new()
  if type(self) ~= "table" then invarg("new") end
  return setmetatable({ visit_full = vis_default, visit_empty = vis_default }, self.meta_)
end
kt.Visitor = Visitor

-- Turn a visitor's results into (kind, value, xt) for the host:
-- kind 0 = no change, 1 = remove, 2 = store value (xt nil = keep/none).
-- A visitor that raises counts as NOP (ktserver runs it under lua_pcall),
-- except for the host's timeout, which must end the whole call.
local function judge_full(ok, r, x)
  if not ok then
    if r == TIMEOUT then error(TIMEOUT, 0) end
    return 0
  end
  if r == REMOVE then return 1 end
  local v = tolstring(r)
  if v == nil then return 0 end
  return 2, v, tonumber(x)
end

local function judge_empty(ok, r, x)
  if not ok then
    if r == TIMEOUT then error(TIMEOUT, 0) end
    return 0
  end
  -- ktserver tests the *second* result for the magic data here, so
  -- returning Visitor.REMOVE (or NOP) as the value is simply "no change".
  if x == REMOVE or x == NOP then return 0 end
  local v = tolstring(r)
  if v == nil then return 0 end
  return 2, v, tonumber(x)
end

local function make_visit(visitor)
  if type(visitor) == "table" then
    return function(key, value, xt)
      if value ~= nil then
        local fn = visitor.visit_full
        if type(fn) ~= "function" then return 0 end
        return judge_full(pcall(fn, visitor, key, value, xt))
      end
      local fn = visitor.visit_empty
      if type(fn) ~= "function" then return 0 end
      return judge_empty(pcall(fn, visitor, key))
    end
  end
  return function(key, value, xt)
    if value ~= nil then
      return judge_full(pcall(visitor, key, value, xt))
    end
    return judge_empty(pcall(visitor, key, nil))
  end
end

local function visit_hook(visitor, name)
  if type(visitor) == "table" then
    local fn = visitor[name]
    if type(fn) == "function" then
      local ok, err = pcall(fn, visitor)
      if not ok and err == TIMEOUT then error(TIMEOUT, 0) end
    end
  end
end

-- Run one visitor-taking host primitive with before/after hooks.
local function with_visitor(visitor, prim, ...)
  visit_hook(visitor, "visit_before")
  local rv = prim(...)
  visit_hook(visitor, "visit_after")
  return rv
end

local function is_visitor(v)
  local t = type(v)
  return t == "table" or t == "function"
end

local function string_list(t)
  local out = {}
  local n = 0
  if type(t) == "table" then
    for i = 1, #t do
      local k = tolstring(t[i])
      if k ~= nil then
        n = n + 1
        out[n] = k
      end
    end
  end
  return out
end

------------------------------------------------------------------ FileProcessor

local FileProcessor = { meta_ = {} }
function FileProcessor:new()
  if type(self) ~= "table" then invarg("new") end
  return setmetatable({ process = function() return true end }, self.meta_)
end
kt.FileProcessor = FileProcessor

local function call_fileproc(proc, path, count, size)
  if type(proc) == "function" then
    return proc(path, count, size) and true or false
  end
  if type(proc) == "table" and type(proc.process) == "function" then
    return proc.process(proc, path, count, size) and true or false
  end
  return true
end

------------------------------------------------------------------------ Cursor

local DBS = setmetatable({}, { __mode = "k" })  -- DB table -> host database
local CURS = setmetatable({}, { __mode = "k" }) -- cursor table -> host cursor

local function curh(self, fname)
  local c = type(self) == "table" and CURS[self]
  if not c then invarg(fname) end
  return c
end

local Cursor = { meta_ = {} }
Cursor.meta_.__tostring = function(self)
  local c = CURS[self]
  if not c then return "(disabled)" end
  return H.cur_tostring(c)
end
Cursor.meta_.__call = function(self)
  local c = curh(self, "__call")
  local k, v = H.cur_get(c, true)
  if k == nil then return nil end
  return k, v
end

local cur_methods = {}

function cur_methods.disable(self)
  local c = curh(self, "disable")
  H.cur_disable(c)
  CURS[self] = nil
  return nil
end

function cur_methods.accept(self, visitor, ...)
  local c = curh(self, "accept")
  local n = select("#", ...)
  local writable, step = ...
  if n < 1 then writable = true end
  if not is_visitor(visitor) then return false end
  -- a cursor visits one record: no visit_before/visit_after, as in Kyoto Cabinet
  return H.cur_accept(c, make_visit(visitor), writable and true or false, step and true or false)
end

-- ktserver passes (step, xt) to the C++ cursor in swapped order, so the record
-- gets xt = now + (step and 1 or 0) and the cursor steps whenever xt is not 0
-- (it defaults to INT64MAX).  Reproduced on purpose: scripts see the same data.
function cur_methods.set_value(self, value, xt, step)
  local c = curh(self, "set_value")
  value = tolstring(value)
  if value == nil then invarg("set_value") end
  local xtnum = 9223372036854775807
  if xt ~= nil then xtnum = tonumber(xt) or 0 end
  return H.cur_set_value(c, value, step and 1 or 0, xtnum ~= 0)
end

function cur_methods.remove(self)
  return H.cur_remove(curh(self, "remove"))
end

function cur_methods.get_key(self, step)
  return H.cur_get_key(curh(self, "get_key"), step and true or false)
end

function cur_methods.get_value(self, step)
  return H.cur_get_value(curh(self, "get_value"), step and true or false)
end

function cur_methods.get(self, step)
  return H.cur_get(curh(self, "get"), step and true or false)
end

function cur_methods.seize(self)
  return H.cur_seize(curh(self, "seize"))
end

function cur_methods.jump(self, ...)
  local c = curh(self, "jump")
  if select("#", ...) > 0 then
    return H.cur_jump(c, tolstring((...)) or "")
  end
  return H.cur_jump(c, nil)
end

function cur_methods.jump_back(self, ...)
  local c = curh(self, "jump_back")
  if select("#", ...) > 0 then
    return H.cur_jump_back(c, tolstring((...)) or "")
  end
  return H.cur_jump_back(c, nil)
end

function cur_methods.step(self)
  return H.cur_step(curh(self, "step"))
end

function cur_methods.step_back(self)
  return H.cur_step_back(curh(self, "step_back"))
end

function cur_methods.db(self)
  curh(self, "db")
  return self.db_
end

function cur_methods.error(self)
  curh(self, "error")
  local db = self.db_
  return db.error(db)
end

local function new_cursor(cls, db)
  if type(cls) ~= "table" or type(db) ~= "table" then invarg("new") end
  local h = DBS[db]
  if not h then invarg("new") end
  local cur = { db_ = db }
  for name, fn in pairs(cur_methods) do cur[name] = fn end
  CURS[cur] = H.db_cursor(h)
  return setmetatable(cur, cls.meta_)
end
Cursor.new = new_cursor
kt.Cursor = Cursor

---------------------------------------------------------------------------- DB

local function dbh(self, fname)
  local h = type(self) == "table" and DBS[self]
  if not h then invarg(fname) end
  return h
end

local DB = {
  OREADER = 1, OWRITER = 2, OCREATE = 4, OTRUNCATE = 8, OAUTOTRAN = 16,
  OAUTOSYNC = 32, ONOLOCK = 64, OTRYLOCK = 128, ONOREPAIR = 256,
  MSET = 0, MADD = 1, MREPLACE = 2, MAPPEND = 3, XNOLOCK = 1, XNOCOMP = 256,
  meta_ = {},
}

DB.meta_.__tostring = function(self)
  local h = DBS[self]
  if not h then return "(nil)" end
  return H.db_tostring(h)
end

DB.meta_.__index = function(self, key)
  local h = DBS[self]
  key = tolstring(key)
  if not h or key == nil then return nil end
  return (H.db_get(h, key))
end

DB.meta_.__newindex = function(self, key, value)
  local h = dbh(self, "__newindex")
  key = tolstring(key)
  if key == nil then invarg("__newindex") end
  value = tolstring(value)
  if value == nil then return H.db_remove(h, key) end
  return H.db_set(h, key, value, nil)
end

local db_methods = {}

function db_methods.error(self)
  local code, message = H.db_error(dbh(self, "error"))
  return Error:new(code, message)
end

function db_methods.open(self, path, mode)
  dbh(self, "open")
  local h = H.db_open(tolstring(path) or ":")
  if not h then return false end
  DBS[self] = h
  return true
end

function db_methods.close(self)
  return H.db_close(dbh(self, "close"))
end

function db_methods.accept(self, key, visitor, ...)
  local h = dbh(self, "accept")
  key = tolstring(key)
  if key == nil then invarg("accept") end
  local writable = true
  if select("#", ...) > 0 then writable = (...) and true or false end
  if not is_visitor(visitor) then return false end
  return with_visitor(visitor, H.db_accept, h, key, make_visit(visitor), writable)
end

function db_methods.accept_bulk(self, keys, visitor, ...)
  local h = dbh(self, "accept_bulk")
  if type(keys) ~= "table" then invarg("accept_bulk") end
  local writable = true
  if select("#", ...) > 0 then writable = (...) and true or false end
  if not is_visitor(visitor) then return false end
  return with_visitor(visitor, H.db_accept_bulk, h, string_list(keys), make_visit(visitor),
    writable)
end

function db_methods.iterate(self, visitor, ...)
  local h = dbh(self, "iterate")
  local writable = true
  if select("#", ...) > 0 then writable = (...) and true or false end
  if not is_visitor(visitor) then return false end
  return with_visitor(visitor, H.db_iterate, h, make_visit(visitor), writable)
end

local function store_method(name)
  db_methods[name] = function(self, key, value, xt)
    local h = dbh(self, name)
    key, value = tolstring(key), tolstring(value)
    if key == nil or value == nil then invarg(name) end
    return H["db_" .. name](h, key, value, toxt(xt))
  end
end
store_method("set")
store_method("add")
store_method("replace")
store_method("append")

function db_methods.increment(self, key, num, orig, xt)
  local h = dbh(self, "increment")
  key = tolstring(key)
  if key == nil then invarg("increment") end
  return H.db_increment(h, key, tonumber(num) or 0, tonumber(orig) or 0, toxt(xt))
end

function db_methods.increment_double(self, key, num, orig, xt)
  local h = dbh(self, "increment_double")
  key = tolstring(key)
  if key == nil then invarg("increment_double") end
  return H.db_increment_double(h, key, tonumber(num) or 0, tonumber(orig) or 0, toxt(xt))
end

function db_methods.cas(self, key, oval, nval, xt)
  local h = dbh(self, "cas")
  key = tolstring(key)
  if key == nil then invarg("cas") end
  return H.db_cas(h, key, tolstring(oval), tolstring(nval), toxt(xt))
end

function db_methods.remove(self, key)
  local h = dbh(self, "remove")
  key = tolstring(key)
  if key == nil then invarg("remove") end
  return H.db_remove(h, key)
end

function db_methods.get(self, key)
  local h = dbh(self, "get")
  key = tolstring(key)
  if key == nil then invarg("get") end
  return H.db_get(h, key)
end

function db_methods.check(self, key)
  local h = dbh(self, "check")
  key = tolstring(key)
  if key == nil then invarg("check") end
  return H.db_check(h, key)
end

function db_methods.seize(self, key)
  local h = dbh(self, "seize")
  key = tolstring(key)
  if key == nil then invarg("seize") end
  return H.db_seize(h, key)
end

-- set_bulk(recs, xt, atomic): the order ktserver's code reads, not the luadoc's.
function db_methods.set_bulk(self, recs, xt, atomic)
  local h = dbh(self, "set_bulk")
  if type(recs) ~= "table" then invarg("set_bulk") end
  local flat = {}
  local n = 0
  for k, v in pairs(recs) do
    k, v = datastr(k), datastr(v)
    if k ~= nil and v ~= nil then
      flat[n + 1] = k
      flat[n + 2] = v
      n = n + 2
    end
  end
  return H.db_set_bulk(h, flat, toxt(xt))
end

function db_methods.remove_bulk(self, keys, atomic)
  local h = dbh(self, "remove_bulk")
  if type(keys) ~= "table" then invarg("remove_bulk") end
  return H.db_remove_bulk(h, string_list(keys))
end

function db_methods.get_bulk(self, keys, atomic)
  local h = dbh(self, "get_bulk")
  if type(keys) ~= "table" then invarg("get_bulk") end
  return H.db_get_bulk(h, string_list(keys))
end

function db_methods.clear(self)
  return H.db_clear(dbh(self, "clear"))
end

function db_methods.synchronize(self, hard, proc)
  local h = dbh(self, "synchronize")
  local ok = H.db_synchronize(h, hard and true or false)
  if ok and proc ~= nil then
    local path, count, size = H.db_path(h), H.db_count(h), H.db_size(h)
    ok = call_fileproc(proc, path, count, size)
  end
  return ok
end

function db_methods.occupy(self, writable, proc)
  local h = dbh(self, "occupy")
  if proc == nil then return true end
  local path, count, size = H.db_path(h), H.db_count(h), H.db_size(h)
  return H.db_occupy(h, function() return call_fileproc(proc, path, count, size) end)
end

function db_methods.copy(self, dest)
  return H.db_unsupported(dbh(self, "copy"), "copy")
end

function db_methods.dump_snapshot(self, dest)
  return H.db_unsupported(dbh(self, "dump_snapshot"), "dump_snapshot")
end

function db_methods.load_snapshot(self, src)
  return H.db_unsupported(dbh(self, "load_snapshot"), "load_snapshot")
end

-- mapreduce(map, reduce, tmppath, opts, dbnum, clim, cbnum, log, proc), done in
-- memory: map(key, value, emit) for every record, then reduce(key, iter) for
-- every emitted key in byte order; proc(emit) runs before and between the two
-- phases and proc() after them.  The storage tuning arguments do not apply.
function db_methods.mapreduce(self, map, reduce, tmppath, opts, dbnum, clim, cbnum, log, proc)
  dbh(self, "mapreduce")
  if type(map) ~= "function" or type(reduce) ~= "function" then invarg("mapreduce") end
  if type(proc) ~= "function" then proc = nil end
  local buckets, keys = {}, {}
  local function emit(k, v)
    k, v = tolstring(k), tolstring(v)
    if k == nil or v == nil then return false end
    local b = buckets[k]
    if not b then
      b = {}
      buckets[k] = b
      keys[#keys + 1] = k
    end
    b[#b + 1] = v
    return true
  end
  local recs = {}
  self.iterate(self, function(k, v)
    recs[#recs + 1] = k
    recs[#recs + 1] = v
  end, false)
  if proc and not proc(emit) then return false end
  for i = 1, #recs, 2 do
    if not map(recs[i], recs[i + 1], emit) then return false end
  end
  if proc and not proc(emit) then return false end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local vals, idx = buckets[k], 0
    local function iter()
      idx = idx + 1
      return vals[idx]
    end
    if not reduce(k, iter) then return false end
  end
  if proc and not proc() then return false end
  return true
end

function db_methods.begin_transaction(self, hard)
  return H.db_begin_transaction(dbh(self, "begin_transaction"), hard and true or false)
end

function db_methods.end_transaction(self, ...)
  local h = dbh(self, "end_transaction")
  local commit = true
  if select("#", ...) > 0 then commit = (...) and true or false end
  return H.db_end_transaction(h, commit)
end

-- transaction(fn [, hard]): commit when fn returns a true value, abort when it
-- returns false/nil or raises; the error is raised again after the abort.
function db_methods.transaction(self, proc, hard)
  dbh(self, "transaction")
  if not self.begin_transaction(self, hard) then return false end
  local ok, res = pcall(proc)
  local rv = self.end_transaction(self, ok and res and true or false)
  if not ok then error(res, 0) end
  return rv
end

function db_methods.count(self)
  return H.db_count(dbh(self, "count"))
end

function db_methods.size(self)
  return H.db_size(dbh(self, "size"))
end

function db_methods.path(self)
  return H.db_path(dbh(self, "path"))
end

function db_methods.status(self)
  return H.db_status(dbh(self, "status"))
end

function db_methods.match_prefix(self, prefix, max)
  local h = dbh(self, "match_prefix")
  prefix = tolstring(prefix)
  if prefix == nil then invarg("match_prefix") end
  return H.db_match_prefix(h, prefix, tonumber(max) or -1)
end

function db_methods.match_regex(self, regex, max)
  local h = dbh(self, "match_regex")
  regex = tolstring(regex)
  if regex == nil then invarg("match_regex") end
  return H.db_match_regex(h, regex, tonumber(max) or -1)
end

-- An omitted range is -1 in ktserver, i.e. no limit (not 1 as documented).
function db_methods.match_similar(self, origin, range, utf, max)
  local h = dbh(self, "match_similar")
  origin = tolstring(origin)
  if origin == nil then invarg("match_similar") end
  return H.db_match_similar(h, origin, tonumber(range) or -1, utf and true or false,
    tonumber(max) or -1)
end

function db_methods.merge(self, srcary, mode)
  local h = dbh(self, "merge")
  if type(srcary) ~= "table" then invarg("merge") end
  local srcs = {}
  for i = 1, #srcary do
    local s = srcary[i]
    if type(s) == "table" and DBS[s] then srcs[#srcs + 1] = DBS[s] end
  end
  return H.db_merge(h, srcs, tonumber(mode) or 0)
end

function db_methods.cursor(self)
  dbh(self, "cursor")
  return Cursor.new(Cursor, self)
end

function db_methods.cursor_process(self, proc)
  dbh(self, "cursor_process")
  local cur = Cursor.new(Cursor, self)
  local ok, err = pcall(proc, cur)
  if CURS[cur] then cur.disable(cur) end
  if not ok then error(err, 0) end
  return nil
end

function db_methods.pairs(self)
  dbh(self, "pairs")
  local cur = Cursor.new(Cursor, self)
  cur.jump(cur)
  return cur, self, nil
end

local function wrap_db(cls, h)
  local db = {}
  for name, fn in pairs(db_methods) do db[name] = fn end
  DBS[db] = h
  return setmetatable(db, cls.meta_)
end

-- DB:new() makes a private in-memory database (DB:new(ptr) adopts one made
-- by DB:new_ptr()); db:open() on it accepts the in-memory kinds only.
local PTRS = setmetatable({}, { __mode = "k" })

function DB:new(ptr)
  if type(self) ~= "table" then invarg("new") end
  local h = ptr ~= nil and PTRS[ptr] or H.db_new()
  return wrap_db(self, h)
end

function DB:new_ptr()
  local p = newproxy(false)
  PTRS[p] = H.db_new()
  return p
end

function DB:delete_ptr(ptr)
  if ptr ~= nil then PTRS[ptr] = nil end
  return nil
end

function DB:process(proc, path, mode)
  local db = self.new(self)
  if not db.open(db, path, mode) then return db.error(db) end
  local ok, err = pcall(proc, db)
  local closed = db.close(db)
  if not ok then error(err, 0) end
  if not closed then return db.error(db) end
  return nil
end
kt.DB = DB

-------------------------------------------------------------- the databases

local dbs = {}
local handles, names = H.databases()
for i = 1, #handles do
  dbs[i] = wrap_db(DB, handles[i])
end
for i = 1, #names do
  dbs[names[i]] = dbs[i]
end
kt.db = dbs[1]
kt.dbs = dbs

return kt, TIMEOUT

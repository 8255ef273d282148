-- GENERATED FILE: built by lua/build.py from lua/src/*.lua.  Edit the sources,
-- then run `python lua/build.py` (tests/test_lua_build.py checks it is current).
--
-- ktstore server-side procedures for Kyoto Tycoon (Lua 5.1).
--
-- Load with `ktserver -scr lua/kt.lua` (or the built-in ktstore-server, which
-- loads it by default).  Every procedure is a global function f(inmap, outmap)
-- with an alphanumeric name, so it can be called over the binary protocol and
-- over HTTP (/rpc/play_script only accepts [A-Za-z0-9] names).
--
-- Conventions shared by all procedures:
--
-- * `key`  the record holding the container (hash, list, set) or the queue /
--          schedule metadata.
-- * `db`   optional 0-based database index (kt.dbs[db + 1]); default kt.db.
--          Every procedure reads database inputs (`db`, and the models' `idb`,
--          `rdb`, `jdb`) with one selector, `getdb` (ukt's procedures with
--          `finddb`, its lookup without the error).
-- * Bulk inputs and outputs travel as one arraydump/mapdump value (`data`,
--   `fields`, `keys`), so user data can never collide with control inputs.
-- * Failures return kt.RVEINVALID (bad input), kt.RVELOGIC (no such item) or
--   kt.RVEINTERNAL, with a readable `error` output.  A real ktserver discards
--   the outputs of a failed procedure, so a caller that wants the message
--   passes the flag input `errout`: the procedure then answers success with
--   the outputs `error` and `rv` (the code it would have returned).  One
--   wrapper (`guard`, below) does this for every procedure of every area.
-- * Times: one XTMAX (below) means "no expiration" everywhere.
-- * Containers keep their expiry time when modified: visitors return only the
--   new value, which tells the server to keep the record's xt (a visitor's
--   positive xt would be *relative*, see docs/protocol.md "Expiration").
--
-- Records: hashes and sets are mapdump values (set members are the map keys,
-- with empty values), lists are arraydump values.  Queues and schedules use
-- one record at `key` describing the order plus one record per item at
-- `key .. "\t" .. ...`; see the "Queue: score groups" and "Sorted index"
-- (schedules) sections.  Nothing here needs a tree database: every procedure
-- works the same on hash databases.

kt = __kyototycoon__

local XTMAX = 1099511627775        -- 2^40 - 1: "no expiration" (the only copy)

-- ==========================================================================
-- Errors and the procedure wrapper
-- ==========================================================================

-- Raise a structured failure; caught by the wrapper of `procedure`.  Never
-- call it inside a visitor (use `update`, which captures errors there).
local function fail(rv, msg)
  error({ rv = rv, msg = msg }, 0)
end

local function invalid(msg) fail(kt.RVEINVALID, msg) end

-- The one error convention of every procedure in this script (containers,
-- queues, schedules, models, and the ukt procedures too): a procedure body
-- runs under pcall; it fails by raising `fail(rv, msg)` (or by returning a
-- kt.RVE* status, as the ukt procedures do, with its message in
-- outmap.error), and an unexpected Lua error becomes RVEINTERNAL with the
-- error text, logged.  A failure answers its status with one output, `error`
-- ("<procedure>: <message>"); with the flag input `errout` it answers success
-- with the outputs `error` and `rv` instead, because a real ktserver drops the
-- outputs of a failed call.  Outcomes that a caller asks about are not
-- failures: the model procedures' `err` output ("unique", "exists",
-- "missing", "conflict", "fk", "protected": the change was refused and rolled
-- back) comes with success.
local function guard(name, body)
  return function(inmap, outmap)
    local ok, res = pcall(body, inmap, outmap)
    local rv, msg
    if ok then
      if type(res) ~= "number" or res == kt.RVSUCCESS then return kt.RVSUCCESS end
      rv, msg = res, outmap.error or "failed"
    elseif type(res) == "table" and res.rv then
      rv, msg = res.rv, res.msg
    else
      rv, msg = kt.RVEINTERNAL, "internal error: " .. tostring(res)
      kt.log("error", name .. ": " .. msg)
    end
    -- Partial outputs of a failed call would only mislead.
    local stale = {}
    for k in pairs(outmap) do stale[#stale + 1] = k end
    for _, k in ipairs(stale) do outmap[k] = nil end
    outmap.error = name .. ": " .. msg
    if inmap.errout ~= nil then
      outmap.rv = tostring(rv)
      return kt.RVSUCCESS
    end
    return rv
  end
end

-- Define the global procedure `name` (alphanumeric or ukt's snake_case).
local function procedure(name, body)
  _G[name] = guard(name, body)
end

-- ==========================================================================
-- Input helpers
-- ==========================================================================

local function need(inmap, field)
  local v = inmap[field]
  if v == nil then invalid("missing required input '" .. field .. "'") end
  return v
end

local function tonum(inmap, field, default)
  local s = inmap[field]
  if s == nil or s == "" then return default end
  local n = tonumber(s)
  if n == nil or n ~= n or n == math.huge or n == -math.huge then
    invalid("input '" .. field .. "' must be a number, got '" .. s .. "'")
  end
  return n
end

local function toint(inmap, field, default)
  local n = tonum(inmap, field, default)
  if n ~= nil and n ~= math.floor(n) then
    invalid("input '" .. field .. "' must be an integer, got '" .. inmap[field] .. "'")
  end
  return n
end

-- An integer that is not negative ("how many"); nil when absent.
local function tocount(inmap, field, default)
  local n = toint(inmap, field, default)
  if n ~= nil and n < 0 then
    invalid("input '" .. field .. "' must not be negative")
  end
  return n
end

local function istr(n) return string.format("%.0f", n) end

-- The one database selector: a 0-based index (nil or "" = the default
-- database, kt.db) as the database, or nil when there is no such database.
local function finddb(s)
  if s == nil or s == "" then return kt.db end
  local n = tonumber(s)
  if n == nil or n ~= math.floor(n) or n < 0 then return nil end
  return kt.dbs[n + 1]
end

-- The database chosen by the input `field` (default "db"); bad input fails.
local function getdb(inmap, field)
  field = field or "db"
  local s = inmap[field]
  local db = finddb(s)
  if db ~= nil then return db end
  if tonumber(s) == nil or tonumber(s) ~= math.floor(tonumber(s)) or tonumber(s) < 0 then
    invalid("input '" .. field .. "' must be a database index, got '" .. s .. "'")
  end
  invalid("no such database: " .. s)
end

local function loadarray(inmap, field, required)
  local s = inmap[field]
  if s == nil then
    if required then need(inmap, field) end
    return {}
  end
  return kt.arrayload(s)
end

local function loadmap(inmap, field, required)
  local s = inmap[field]
  if s == nil then
    if required then need(inmap, field) end
    return {}
  end
  return kt.mapload(s)
end

local function dberror(db, what)
  local msg = what
  local ok, e = pcall(function() return db:error() end)
  if ok and e then msg = msg .. ": " .. tostring(e:name()) end
  fail(kt.RVEINTERNAL, msg)
end

-- ==========================================================================
-- Record update under the record lock
-- ==========================================================================

-- Atomically transform the record `key`: fn(value_or_nil) returns a new value
-- (string), false to remove the record, or nil to leave it alone.  Errors
-- raised by fn are carried out of the visitor and re-raised afterwards,
-- because raising through the server's C/Python visitor frames is unsafe.
-- Returning only the value keeps the record's expiration time.
local function update(db, key, fn)
  local err
  local function visit(k, v, xt)
    local ok, res = pcall(fn, v)
    if not ok then err = res; return kt.Visitor.NOP end
    if res == nil then return kt.Visitor.NOP end
    if res == false then
      if v == nil then return kt.Visitor.NOP end
      return kt.Visitor.REMOVE
    end
    return res
  end
  local ok = db:accept(key, visit, true)
  if err ~= nil then error(err, 0) end
  if not ok then dberror(db, "cannot update record") end
end

-- Decode/encode helpers for the three container formats.
local function isempty(t) return next(t) == nil end

-- Update a mapdump record: fn(map) returns true when it changed the map.
local function updatemap(db, key, fn)
  update(db, key, function(v)
    local m = v and kt.mapload(v) or {}
    if not fn(m, v ~= nil) then return nil end
    if isempty(m) then return false end
    return kt.mapdump(m)
  end)
end

local function updatearray(db, key, fn)
  update(db, key, function(v)
    local a = v and kt.arrayload(v) or {}
    if not fn(a, v ~= nil) then return nil end
    if #a == 0 then return false end
    return kt.arraydump(a)
  end)
end

-- Apply change(map, name) to each of `names` in one atomic update of the
-- mapdump record `key`; change returns true when it changed the map.
-- Returns how many names changed it.
local function mapeach(db, key, names, change)
  local n = 0
  if #names == 0 then return 0 end
  updatemap(db, key, function(m)
    for _, name in ipairs(names) do
      if change(m, name) then n = n + 1 end
    end
    return n > 0
  end)
  return n
end

local function dropname(m, name)
  if m[name] == nil then return false end
  m[name] = nil
  return true
end

-- A change for mapeach: set absent names to value.
local function putnew(value)
  return function(m, name)
    if m[name] ~= nil then return false end
    m[name] = value
    return true
  end
end

local function readmap(db, key)
  local v = db:get(key)
  if v == nil then return {} end
  return kt.mapload(v)
end

local function readarray(db, key)
  local v = db:get(key)
  if v == nil then return {} end
  return kt.arrayload(v)
end

-- Scan, in key order, the records with start <= k < stop (either bound
-- optional), skipping `skip`, at most `count` of them.  On a tree database
-- the cursor starts at `start` and stops at `stop`; on a hash database (no
-- key order) every record is examined, and the matches are sorted.
local function scanrange(db, start, stop, count, skip, cb)
  local n = 0
  if count ~= nil and count <= 0 then return 0 end
  local cur = db:cursor()
  local okb, ordered = pcall(function() return cur:jump_back() end)
  ordered = okb and ordered
  local ok
  if start ~= nil and ordered then ok = cur:jump(start) else ok = cur:jump() end
  local matches = {}
  while ok do
    local k, v = cur:get(true)
    if k == nil then break end
    if ordered and stop ~= nil and k >= stop then break end
    if k ~= skip and (start == nil or k >= start) and (stop == nil or k < stop) then
      if ordered then
        cb(k, v)
        n = n + 1
        if count ~= nil and n >= count then break end
      else
        matches[#matches + 1] = { k, v }
      end
    end
  end
  cur:disable()
  if not ordered then
    table.sort(matches, function(a, b) return a[1] < b[1] end)
    for _, kv in ipairs(matches) do
      if count ~= nil and n >= count then break end
      cb(kv[1], kv[2])
      n = n + 1
    end
  end
  return n
end

-- Python-style slice bounds over a sequence of length len: returns the
-- 1-based first and last positions (empty when first > last).
local function slice(len, start, stop)
  local s = start or 0
  local e = stop or len
  if s < 0 then s = math.max(s + len, 0) elseif s > len then s = len end
  if e < 0 then e = math.max(e + len, 0) elseif e > len then e = len end
  return s + 1, e
end

-- Python-style item index: 1-based position or nil when out of range.
local function position(len, index)
  if index < 0 then index = index + len end
  if index < 0 or index >= len then return nil end
  return index + 1
end

local function nosuchitem(msg) fail(kt.RVELOGIC, msg) end

-- ==========================================================================
-- Expiration times
-- ==========================================================================

-- xt as sent by the client (docs/protocol.md "Expiration"): < 0 absolute, >= 0
-- relative, >= XTMAX (or absent) none.  Returns the value a visitor hands
-- back: a visitor's positive xt is relative and a negative one absolute.
-- The distinct keys of an arraydump input, in order (accept_bulk must not
-- see a key twice).
local function distinctkeys(inmap, field)
  local seen, out = {}, {}
  for _, k in ipairs(loadarray(inmap, field, true)) do
    if not seen[k] then seen[k] = true; out[#out + 1] = k end
  end
  return out
end

local function visitorxt(s)
  if s == nil or s == "" then return XTMAX end
  local n = tonumber(s)
  if n == nil or n ~= n then invalid("input 'xt' must be a number, got '" .. s .. "'") end
  if n >= XTMAX then return XTMAX end
  return math.floor(n)
end

-- Retime the records among `keys` (distinct) that exist, in one atomic
-- accept_bulk: fn(value, oldxt) returns the xt to report and the xt for the
-- visitor (nil: keep).  out: data = mapdump {key = reported xt}
local function retime(db, keys, outmap, fn)
  local report = {}
  if #keys > 0 then
    local ok = db:accept_bulk(keys, function(k, v, oxt)
      if v == nil then return kt.Visitor.NOP end
      local shown, xt = fn(v, oxt)
      report[k] = istr(shown)
      if xt == nil then return v end
      return v, xt
    end, true)
    if not ok then dberror(db, "cannot update records") end
  end
  outmap.data = kt.mapdump(report)
end

-- touchbulk: set the expiration of several records.
-- in: keys (arraydump), xt (absent = no expiration)
-- out: data = mapdump {key = old absolute xt} for the records that exist
procedure("touchbulk", function(inmap, outmap)
  local db, keys = getdb(inmap), distinctkeys(inmap, "keys")
  local xt = visitorxt(inmap.xt)
  retime(db, keys, outmap, function(v, oxt) return oxt, xt end)
end)

-- touchbulkrelative: move the expiration of several records by n seconds.
-- Records without expiration keep none (their reported xt is XTMAX + n).
-- in: keys (arraydump), n (integer seconds, may be negative)
-- out: data = mapdump {key = new absolute xt}
procedure("touchbulkrelative", function(inmap, outmap)
  local db, keys = getdb(inmap), distinctkeys(inmap, "keys")
  local n = toint(inmap, "n", nil)
  if n == nil then need(inmap, "n") end
  retime(db, keys, outmap, function(v, oxt)
    local nxt = oxt + n
    if oxt >= XTMAX then return nxt, nil end
    return nxt, -math.max(nxt, 1)
  end)
end)

-- expiretime: in: key; out: xt (absolute; XTMAX when none), absent if missing
procedure("expiretime", function(inmap, outmap)
  local db = getdb(inmap)
  local v, xt = db:get(need(inmap, "key"))
  if v ~= nil then outmap.xt = istr(xt or XTMAX) end
end)

-- lasterror: the database's last error in this worker thread.
-- out: code, name, message
procedure("lasterror", function(inmap, outmap)
  local db = getdb(inmap)
  local e = db:error()
  outmap.code = istr(e:code())
  outmap.name = tostring(e:name())
  outmap.message = tostring(e:message())
end)

-- ==========================================================================
-- Hash (mapdump record)
-- ==========================================================================

-- hset: in: key, field, value; out: num = 1
procedure("hset", function(inmap, outmap)
  local db = getdb(inmap)
  local key, field, value = need(inmap, "key"), need(inmap, "field"), need(inmap, "value")
  updatemap(db, key, function(m) m[field] = value; return true end)
  outmap.num = "1"
end)

-- hsetnx: in: key, field, value; out: num = 1 if set, 0 if the field existed
procedure("hsetnx", function(inmap, outmap)
  local db = getdb(inmap)
  local key, field, value = need(inmap, "key"), need(inmap, "field"), need(inmap, "value")
  outmap.num = tostring(mapeach(db, key, { field }, putnew(value)))
end)

-- hmset: in: key, data (mapdump of fields); out: num = fields written
procedure("hmset", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  local data = loadmap(inmap, "data", true)
  local n = 0
  for _ in pairs(data) do n = n + 1 end
  if n > 0 then
    updatemap(db, key, function(m)
      for f, v in pairs(data) do m[f] = v end
      return true
    end)
  end
  outmap.num = tostring(n)
end)

-- hget: in: key, field; out: value (absent when the field is missing)
procedure("hget", function(inmap, outmap)
  local db = getdb(inmap)
  local key, field = need(inmap, "key"), need(inmap, "field")
  outmap.value = readmap(db, key)[field]
end)

-- hmget: in: key, fields (arraydump); out: data = mapdump of the found fields
procedure("hmget", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  local fields = loadarray(inmap, "fields", true)
  local m = readmap(db, key)
  local found = {}
  for _, f in ipairs(fields) do found[f] = m[f] end
  outmap.data = kt.mapdump(found)
end)

-- hgetall: in: key; out: data = the hash record (mapdump), absent if none
procedure("hgetall", function(inmap, outmap)
  local db = getdb(inmap)
  outmap.data = db:get(need(inmap, "key"))
end)

-- hdel: in: key, field; out: num = 1 if removed else 0
procedure("hdel", function(inmap, outmap)
  local db = getdb(inmap)
  local key, field = need(inmap, "key"), need(inmap, "field")
  outmap.num = tostring(mapeach(db, key, { field }, dropname))
end)

-- hmdel: in: key, fields (arraydump); out: num = fields removed
procedure("hmdel", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  outmap.num = tostring(mapeach(db, key, loadarray(inmap, "fields", true), dropname))
end)

-- Procedure bodies hashes and sets share (set members are map keys).
-- The size of the mapdump record: in: key; out: num
local function mapsize(inmap, outmap)
  local db = getdb(inmap)
  local n = 0
  for _ in pairs(readmap(db, need(inmap, "key"))) do n = n + 1 end
  outmap.num = tostring(n)
end

-- Whether the map holds the name given as input `field`: in: key, field;
-- out: num = 1 or 0
local function mapholds(field)
  return function(inmap, outmap)
    local db = getdb(inmap)
    local key, name = need(inmap, "key"), need(inmap, field)
    outmap.num = readmap(db, key)[name] ~= nil and "1" or "0"
  end
end

-- hlen: in: key; out: num
procedure("hlen", mapsize)

-- hcontains: in: key, field; out: num = 1 or 0
procedure("hcontains", mapholds("field"))

-- hunpack: write every field as a top-level record prefix .. field.
-- in: key, prefix (default key .. ":"); out: num
procedure("hunpack", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  local prefix = inmap.prefix or (key .. ":")
  local recs, n = {}, 0
  for f, v in pairs(readmap(db, key)) do recs[prefix .. f] = v; n = n + 1 end
  if n > 0 and db:set_bulk(recs) < 0 then dberror(db, "cannot write records") end
  outmap.num = tostring(n)
end)

-- hpack: copy the records with start <= k < stop (up to count) into the hash.
-- in: key, start, stop, count; out: num
procedure("hpack", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  local count = tocount(inmap, "count", nil)
  local recs = {}
  local n = scanrange(db, inmap.start, inmap.stop, count, key, function(k, v) recs[k] = v end)
  if n > 0 then
    updatemap(db, key, function(m)
      for k, v in pairs(recs) do m[k] = v end
      return true
    end)
  end
  outmap.num = tostring(n)
end)

local function packhash(inmap, outmap, pick)
  local db = getdb(inmap)
  local key, dest = need(inmap, "key"), need(inmap, "dest")
  local items = {}
  for f, v in pairs(readmap(db, key)) do items[#items + 1] = pick(f, v) end
  if #items > 0 then
    updatearray(db, dest, function(a)
      for i = #a, 1, -1 do a[i] = nil end
      for i, v in ipairs(items) do a[i] = v end
      return true
    end)
  end
  outmap.num = tostring(#items)
end

-- hpackkeys / hpackvalues: store the fields / values as a list at dest.
-- in: key, dest; out: num
procedure("hpackkeys", function(inmap, outmap)
  packhash(inmap, outmap, function(f, v) return f end)
end)

procedure("hpackvalues", function(inmap, outmap)
  packhash(inmap, outmap, function(f, v) return v end)
end)

-- ==========================================================================
-- List (arraydump record); indexes are 0-based, negative from the end
-- ==========================================================================

-- llpush / lrpush: in: key, value; out: length
procedure("llpush", function(inmap, outmap)
  local db = getdb(inmap)
  local key, value = need(inmap, "key"), need(inmap, "value")
  local len
  updatearray(db, key, function(a) table.insert(a, 1, value); len = #a; return true end)
  outmap.length = tostring(len)
end)

procedure("lrpush", function(inmap, outmap)
  local db = getdb(inmap)
  local key, value = need(inmap, "key"), need(inmap, "value")
  local len
  updatearray(db, key, function(a) a[#a + 1] = value; len = #a; return true end)
  outmap.length = tostring(len)
end)

-- lextend: in: key, data (arraydump); out: length
procedure("lextend", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  local data = loadarray(inmap, "data", true)
  local len = 0
  updatearray(db, key, function(a)
    for _, v in ipairs(data) do a[#a + 1] = v end
    len = #a
    return #data > 0
  end)
  outmap.length = tostring(len)
end)

-- lrange: Python slice a[start:stop]. in: key, start, stop; out: data (arraydump)
procedure("lrange", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  local start, stop = toint(inmap, "start", nil), toint(inmap, "stop", nil)
  local a = readarray(db, key)
  local first, last = slice(#a, start, stop)
  local out = {}
  for i = first, last do out[#out + 1] = a[i] end
  outmap.data = kt.arraydump(out)
end)

-- lindex: in: key, index; out: value; RVELOGIC when out of range
procedure("lindex", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  need(inmap, "index")
  local index = toint(inmap, "index", nil)
  local a = readarray(db, key)
  local p = position(#a, index)
  if p == nil then nosuchitem("list index out of range: " .. istr(index)) end
  outmap.value = a[p]
end)

-- linsert: insert before index (index == length appends; -1 on an empty
-- list is the head).  in: key, index, value; out: length; RVELOGIC if out of range
procedure("linsert", function(inmap, outmap)
  local db = getdb(inmap)
  local key, value = need(inmap, "key"), need(inmap, "value")
  need(inmap, "index")
  local index = toint(inmap, "index", nil)
  local len, bad
  updatearray(db, key, function(a)
    local n = #a
    local i = index
    if i < 0 then i = i + n end
    if n == 0 and index == -1 then i = 0 end
    if i < 0 or i > n then bad = true; return nil end
    table.insert(a, i + 1, value)
    len = #a
    return true
  end)
  if bad then nosuchitem("list index out of range: " .. istr(index)) end
  outmap.length = tostring(len)
end)

-- lset: in: key, index, value; RVELOGIC if out of range
procedure("lset", function(inmap, outmap)
  local db = getdb(inmap)
  local key, value = need(inmap, "key"), need(inmap, "value")
  need(inmap, "index")
  local index = toint(inmap, "index", nil)
  local bad
  updatearray(db, key, function(a)
    local p = position(#a, index)
    if p == nil then bad = true; return nil end
    a[p] = value
    return true
  end)
  if bad then nosuchitem("list index out of range: " .. istr(index)) end
  outmap.num = "1"
end)

-- lrem: remove by index. in: key, index; out: value; RVELOGIC if out of range
procedure("lrem", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  need(inmap, "index")
  local index = toint(inmap, "index", nil)
  local value
  updatearray(db, key, function(a)
    local p = position(#a, index)
    if p == nil then return nil end
    value = table.remove(a, p)
    return true
  end)
  if value == nil then nosuchitem("list index out of range: " .. istr(index)) end
  outmap.value = value
end)

-- lremrange: del a[start:stop]. in: key, start, stop; out: length
procedure("lremrange", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  local start, stop = toint(inmap, "start", nil), toint(inmap, "stop", nil)
  local len = 0
  updatearray(db, key, function(a)
    local first, last = slice(#a, start, stop)
    if first > last then len = #a; return nil end
    local keep = {}
    for i, v in ipairs(a) do
      if i < first or i > last then keep[#keep + 1] = v end
    end
    for i = #a, 1, -1 do a[i] = nil end
    for i, v in ipairs(keep) do a[i] = v end
    len = #a
    return true
  end)
  outmap.length = tostring(len)
end)

-- llpop / lrpop: in: key; out: value (absent when the list is empty)
procedure("llpop", function(inmap, outmap)
  local db = getdb(inmap)
  local value
  updatearray(db, need(inmap, "key"), function(a)
    if #a == 0 then return nil end
    value = table.remove(a, 1)
    return true
  end)
  outmap.value = value
end)

procedure("lrpop", function(inmap, outmap)
  local db = getdb(inmap)
  local value
  updatearray(db, need(inmap, "key"), function(a)
    if #a == 0 then return nil end
    value = table.remove(a)
    return true
  end)
  outmap.value = value
end)

-- Move one item from one end of `key` to one end of `dest` (a rotation when
-- they are the same record).  The pop and the push are two atomic steps.
local function poppush(inmap, outmap, fromhead)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  local dest = inmap.dest or key
  local value
  if dest == key then
    updatearray(db, key, function(a)
      if #a == 0 then return nil end
      if fromhead then
        value = table.remove(a, 1); a[#a + 1] = value
      else
        value = table.remove(a); table.insert(a, 1, value)
      end
      return true
    end)
  else
    updatearray(db, key, function(a)
      if #a == 0 then return nil end
      if fromhead then value = table.remove(a, 1) else value = table.remove(a) end
      return true
    end)
    if value ~= nil then
      updatearray(db, dest, function(a)
        if fromhead then a[#a + 1] = value else table.insert(a, 1, value) end
        return true
      end)
    end
  end
  if value == nil then nosuchitem("list is empty") end
  outmap.value = value
end

-- llpoprpush / lrpoplpush: in: key, dest (default key); out: value;
-- RVELOGIC when the source list is empty
procedure("llpoprpush", function(inmap, outmap) poppush(inmap, outmap, true) end)
procedure("lrpoplpush", function(inmap, outmap) poppush(inmap, outmap, false) end)

-- llen: in: key; out: num
procedure("llen", function(inmap, outmap)
  local db = getdb(inmap)
  outmap.num = tostring(#readarray(db, need(inmap, "key")))
end)

-- lfind / lrfind: in: key, value; out: index (-1 when absent)
procedure("lfind", function(inmap, outmap)
  local db = getdb(inmap)
  local key, value = need(inmap, "key"), need(inmap, "value")
  local a = readarray(db, key)
  local found = -1
  for i = 1, #a do if a[i] == value then found = i - 1; break end end
  outmap.index = tostring(found)
end)

procedure("lrfind", function(inmap, outmap)
  local db = getdb(inmap)
  local key, value = need(inmap, "key"), need(inmap, "value")
  local a = readarray(db, key)
  local found = -1
  for i = #a, 1, -1 do if a[i] == value then found = i - 1; break end end
  outmap.index = tostring(found)
end)

-- lunpack: write a[start:stop] as records prefix .. format(i), i from 0.
-- in: key, start, stop, prefix (default key .. ":"), format (default "%04d")
-- out: num
procedure("lunpack", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  local start, stop = toint(inmap, "start", nil), toint(inmap, "stop", nil)
  local prefix = inmap.prefix or (key .. ":")
  local fmt = inmap.format or "%04d"
  local stripped = string.gsub(fmt, "%%%%", "")
  local _, directives = string.gsub(stripped, "%%", "")
  if directives ~= 1 or not string.find(stripped, "%%[-0 +#]*%d*[dioxX]") then
    invalid("input 'format' must hold exactly one integer directive such as %04d, got '" .. fmt .. "'")
  end
  local a = readarray(db, key)
  local first, last = slice(#a, start, stop)
  local recs, n = {}, 0
  for i = first, last do
    recs[prefix .. string.format(fmt, n)] = a[i]
    n = n + 1
  end
  if n > 0 and db:set_bulk(recs) < 0 then dberror(db, "cannot write records") end
  outmap.num = tostring(n)
end)

-- lpack: append the values of the records start <= k < stop (up to count).
-- in: key, start, stop, count; out: num
procedure("lpack", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  local count = tocount(inmap, "count", nil)
  local values = {}
  local n = scanrange(db, inmap.start, inmap.stop, count, key, function(k, v)
    values[#values + 1] = v
  end)
  if n > 0 then
    updatearray(db, key, function(a)
      for _, v in ipairs(values) do a[#a + 1] = v end
      return true
    end)
  end
  outmap.num = tostring(n)
end)

-- ==========================================================================
-- Set (mapdump record, members are the keys)
-- ==========================================================================

-- sadd: in: key, data (arraydump of members); out: num added
procedure("sadd", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  outmap.num = tostring(mapeach(db, key, loadarray(inmap, "data", true), putnew("")))
end)

-- srem: in: key, data (arraydump); out: num removed
procedure("srem", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  outmap.num = tostring(mapeach(db, key, loadarray(inmap, "data", true), dropname))
end)

-- spop: in: key; out: value (absent when empty)
procedure("spop", function(inmap, outmap)
  local db = getdb(inmap)
  local value
  updatemap(db, need(inmap, "key"), function(m)
    value = next(m)
    if value == nil then return nil end
    m[value] = nil
    return true
  end)
  outmap.value = value
end)

-- sismember: in: key, value; out: num = 1 or 0
procedure("sismember", mapholds("value"))

-- scard: in: key; out: num
procedure("scard", mapsize)

-- smembers: in: key; out: data (arraydump of members)
procedure("smembers", function(inmap, outmap)
  local db = getdb(inmap)
  local out = {}
  for m in pairs(readmap(db, need(inmap, "key"))) do out[#out + 1] = m end
  outmap.data = kt.arraydump(out)
end)

-- Set algebra over `key` and the sets named in `keys`; the result is stored
-- at `dest` (replacing it; removed when empty) when given.
local function setop(inmap, outmap, combine)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  local others = loadarray(inmap, "keys", true)
  local result = readmap(db, key)
  for _, k in ipairs(others) do result = combine(result, readmap(db, k)) end
  local out = {}
  for m in pairs(result) do out[#out + 1] = m end
  if inmap.dest ~= nil then
    updatemap(db, inmap.dest, function(m)
      for k in pairs(m) do m[k] = nil end
      for k in pairs(result) do m[k] = "" end
      return true
    end)
  end
  outmap.data = kt.arraydump(out)
end

-- sinter / sunion / sdiff: in: key, keys (arraydump), dest; out: data
procedure("sinter", function(inmap, outmap)
  setop(inmap, outmap, function(a, b)
    local r = {}
    for k in pairs(a) do if b[k] ~= nil then r[k] = "" end end
    return r
  end)
end)

procedure("sunion", function(inmap, outmap)
  setop(inmap, outmap, function(a, b)
    for k in pairs(b) do a[k] = "" end
    return a
  end)
end)

procedure("sdiff", function(inmap, outmap)
  setop(inmap, outmap, function(a, b)
    for k in pairs(b) do a[k] = nil end
    return a
  end)
end)

-- ==========================================================================
-- Sorted index: schedules (and the score encoding queues share)
-- ==========================================================================
--
-- Schedule scores are typically arrival times, nearly all distinct, so a
-- schedule keeps one flat sorted index rather than the queue's score groups
-- (O(log n) search plus one string copy per change).
--
-- The record at `key` is the index: a 12-digit header ("a blocked reader
-- waits until" epoch second) followed by fixed-width entries of ENTRY bytes:
-- a 20-byte score field then a 22-byte item id.  Entries are grouped by
-- score field in ascending byte order, and within a group kept in arrival
-- order (new entries go to the end of their group), so equal scores are
-- FIFO.  Each item's value is the record `key .. "\t" .. id`.
--
-- Score fields: queues store OFFSET - score (higher scores first), schedules
-- OFFSET + score (lower scores first); scores must lie within +-OFFSET.
--
-- Item ids need no database round trip: millisecond time, this Lua state's
-- worker-thread id and a per-state counter (one Lua state per worker
-- thread, so no two states share a thread id while running).
--
-- Concurrency rests on one rule: an item's record is written together with
-- (add: one atomic accept_bulk) or before its index entry, and whoever removes
-- an entry from the index (under the index record's lock) owns the item
-- record and is the only one to read and remove it.  So two poppers never get
-- the same item and a popper never sees an entry whose value is missing.

local HEADER, IDW, SCOREW = 12, 22, 20
local ENTRY = SCOREW + IDW
local OFFSET = 1e12

local function scorefield(score, inverted)
  if score <= -OFFSET or score >= OFFSET then
    invalid("score out of range (must be within +-10^12)")
  end
  local v = inverted and (OFFSET - score) or (OFFSET + score)
  return string.format("%020.6f", v)
end

local idcounter = 0
local function newid()
  idcounter = (idcounter + 1) % 100000
  return string.format("%013.0f%04d%05d", math.floor(kt.time() * 1000), (kt.thid or 0) % 10000,
    idcounter)
end

local function itemkey(key, id) return key .. "\t" .. id end

-- Parsed index: { waituntil = number, body = entries string }
local function parseindex(v)
  if v == nil or #v < HEADER then return { waituntil = 0, body = "" } end
  return { waituntil = tonumber(string.sub(v, 1, HEADER)) or 0, body = string.sub(v, HEADER + 1) }
end

local function dumpindex(ix)
  return string.format("%012.0f", ix.waituntil) .. ix.body
end

local function nentries(ix) return math.floor(#ix.body / ENTRY) end

local function entryat(ix, i)
  local p = (i - 1) * ENTRY + 1
  return string.sub(ix.body, p, p + ENTRY - 1)
end

local function entryscore(e) return string.sub(e, 1, SCOREW) end
local function entryid(e) return string.sub(e, SCOREW + 1) end

-- Number of leading entries whose score field is <= sf (binary search; the
-- groups are sorted by score field).
local function upto(ix, sf)
  local lo, hi = 1, nentries(ix) + 1
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local p = (mid - 1) * ENTRY + 1
    if string.sub(ix.body, p, p + SCOREW - 1) <= sf then lo = mid + 1 else hi = mid end
  end
  return lo - 1
end

local function prefixcount(ix, limit)
  if limit == nil then return nentries(ix) end
  return upto(ix, limit)
end

-- Append entries (already in arrival order) at the end of their score groups.
local function placeentries(ix, entries)
  for _, e in ipairs(entries) do
    local cut = upto(ix, entryscore(e)) * ENTRY
    ix.body = string.sub(ix.body, 1, cut) .. e .. string.sub(ix.body, cut + 1)
  end
end

local function nowsec() return math.floor(kt.time()) end

-- Write the index back.  An emptied index stays (as ukt's schedule keeps its id
-- counter record until clear), so scheduleclear counts what ukt's does.
local function storeindex(ix)
  return dumpindex(ix)
end

-- Add values: the item records and their index entries in one atomic
-- accept_bulk.  entries[i] is the score field of values[i].  Returns the
-- first item id and whether a blocked reader is registered.
local function indexadd(db, key, values, scorefields)
  local n = #values
  if n == 0 then return nil, false end
  local keys, recs, entries = {}, {}, {}
  for i, v in ipairs(values) do
    local id = newid()
    local k = itemkey(key, id)
    keys[i] = k
    recs[k] = v
    entries[i] = scorefields[i] .. id
  end
  keys[n + 1] = key
  local waiting, err = false, nil
  local ok = db:accept_bulk(keys, function(k, v, xt)
    if k ~= key then return recs[k] end
    local okp, res = pcall(function()
      local ix = parseindex(v)
      placeentries(ix, entries)
      waiting = ix.waituntil >= nowsec()
      return dumpindex(ix)
    end)
    if not okp then err = res; return kt.Visitor.NOP end
    return res
  end, true)
  if err ~= nil then error(err, 0) end
  if not ok then dberror(db, "cannot write queue items") end
  return entryid(entries[1]), waiting
end

-- Take (remove from the index) up to n entries among those whose score field
-- is <= limit, from the head or the tail of that range.  With waitsecs, an
-- empty result registers a blocked reader until now + waitsecs.  Returns the
-- entries in the order taken.
local function indextake(db, key, n, limit, fromtail, waitsecs)
  local taken = {}
  update(db, key, function(v)
    if v == nil and not waitsecs then return nil end
    local ix = parseindex(v)
    local avail = prefixcount(ix, limit)
    local k = math.min(n, avail)
    if k == 0 then
      if not waitsecs then return nil end
      ix.waituntil = math.max(ix.waituntil, nowsec() + waitsecs)
      return storeindex(ix)
    end
    local first = fromtail and (avail - k + 1) or 1
    if fromtail then
      for i = first + k - 1, first, -1 do taken[#taken + 1] = entryat(ix, i) end
    else
      for i = first, first + k - 1 do taken[#taken + 1] = entryat(ix, i) end
    end
    local a, b = (first - 1) * ENTRY, (first + k - 1) * ENTRY
    ix.body = string.sub(ix.body, 1, a) .. string.sub(ix.body, b + 1)
    return storeindex(ix)
  end)
  return taken
end

-- Read entries without taking them (same selection as indextake).
local function indexpeek(db, key, n, limit, fromtail)
  local ix = parseindex(db:get(key))
  local avail = prefixcount(ix, limit)
  local k = math.min(n, avail)
  local out = {}
  if fromtail then
    for i = avail, avail - k + 1, -1 do out[#out + 1] = entryat(ix, i) end
  else
    for i = 1, k do out[#out + 1] = entryat(ix, i) end
  end
  return out
end

-- Values of owned (or peeked) entries, in order; with remove, also delete
-- the item records.  Items that vanished (expired) are skipped.
local function itemvalues(db, key, entries, remove)
  if #entries == 0 then return {} end
  if remove and #entries == 1 then
    local v = db:seize(itemkey(key, entryid(entries[1])))
    if v == nil then return {} end
    return { v }
  end
  local keys = {}
  for i, e in ipairs(entries) do keys[i] = itemkey(key, entryid(e)) end
  local got = db:get_bulk(keys) or {}
  if remove then db:remove_bulk(keys) end
  local values = {}
  for _, k in ipairs(keys) do
    if got[k] ~= nil then values[#values + 1] = got[k] end
  end
  return values
end

local function removeitems(db, key, entries)
  if #entries == 0 then return end
  local keys = {}
  for i, e in ipairs(entries) do keys[i] = itemkey(key, entryid(e)) end
  db:remove_bulk(keys)
end

-- minscore input of queue reads, as a score-field limit ("" = nothing
-- qualifies, nil = everything does).
local function queuelimit(inmap)
  local minscore = tonum(inmap, "minscore", nil)
  if minscore == nil then return nil end
  if minscore <= -OFFSET then return nil end
  if minscore >= OFFSET then return "" end
  return scorefield(minscore, true)
end

-- ==========================================================================
-- Queue: score groups
-- ==========================================================================
--
-- A queue usually holds few distinct scores, so its record at `key` is small:
-- a 28-digit header -- "a blocked reader waits until" epoch second (12) and
-- the last item id given (16) -- and one 68-byte group per distinct score, ascending by score field (OFFSET -
-- score, so the highest score comes first): score field (20), head (16),
-- tail (16) and live item count (16).  A group's items are the records
-- `key .. "\t" .. scorefield .. seq` for head <= seq < tail, in arrival order;
-- removing an item by value leaves a hole that pops skip.
--
-- Every change of an item record and of the group record happens in one
-- atomic accept_bulk, so the queue record always matches its items: adds
-- claim the sequence numbers they read (and retry when another add got there
-- first), pops remove the items they visit, and no two callers can take the
-- same item.  Each operation costs O(#scores), whatever the queue's length:
-- an add is one read of the record plus one accept_bulk over the record and
-- the new item; a pop one read plus one accept_bulk over the record and the
-- candidates.  An item's id (queueadd's `id` output) is 1, 2, ... as in ukt:
-- the header's counter, bumped by the add that writes the item.  It is not
-- part of the item's key (pops find items by group and sequence), so it costs
-- no lookup; the record therefore outlives its last item, keeping the counter
-- (as ukt's counter record does), and only queueclear removes it.

local QHEADER = HEADER + 16
local QGROUP = SCOREW + 48
local QSF0 = scorefield(0, true)   -- the default score's field

-- A queue record written by an earlier kt.lua (a 12-digit header, no id
-- counter) in today's format; others unchanged.  The formats differ in length
-- modulo a group (12 vs 28), so the check is exact and costs no read.
local function qfresh(v)
  if v ~= nil and (#v - HEADER) % QGROUP == 0 then
    return string.sub(v, 1, HEADER) .. string.rep("0", 16) .. string.sub(v, HEADER + 1)
  end
  return v
end

local function qload(v)
  v = qfresh(v)
  local m = { waituntil = 0, lastid = 0, groups = {} }
  if v == nil or #v < QHEADER then return m end
  m.waituntil = tonumber(string.sub(v, 1, HEADER)) or 0
  m.lastid = tonumber(string.sub(v, HEADER + 1, QHEADER)) or 0
  for p = QHEADER + 1, #v - QGROUP + 1, QGROUP do
    m.groups[#m.groups + 1] = {
      sf = string.sub(v, p, p + SCOREW - 1),
      head = tonumber(string.sub(v, p + SCOREW, p + SCOREW + 15)),
      tail = tonumber(string.sub(v, p + SCOREW + 16, p + SCOREW + 31)),
      n = tonumber(string.sub(v, p + SCOREW + 32, p + SCOREW + 47)),
    }
  end
  return m
end

-- The record value for m, or false (remove it) when it holds nothing.
local function qstore(m)
  local live = {}
  for _, g in ipairs(m.groups) do
    if g.n > 0 and g.head < g.tail then live[#live + 1] = g end
  end
  m.groups = live
  if #live == 0 and m.waituntil < nowsec() and m.lastid == 0 then return false end
  local parts = { string.format("%012.0f%016.0f", m.waituntil, m.lastid) }
  for _, g in ipairs(live) do
    parts[#parts + 1] = g.sf .. string.format("%016.0f%016.0f%016.0f", g.head, g.tail, g.n)
  end
  return table.concat(parts)
end

local function qgroup(m, sf)
  for _, g in ipairs(m.groups) do
    if g.sf == sf then return g end
  end
  return nil
end

local function qnewgroup(m, sf)
  local g = { sf = sf, head = 0, tail = 0, n = 0 }
  local at = #m.groups + 1
  for i, other in ipairs(m.groups) do
    if other.sf > sf then at = i; break end
  end
  table.insert(m.groups, at, g)
  return g
end

local function qitem(key, sf, seq) return key .. "\t" .. sf .. string.format("%016.0f", seq) end

local function qcount(m)
  local n = 0
  for _, g in ipairs(m.groups) do n = n + g.n end
  return n
end

-- Run db:accept_bulk(keys, visit), carrying errors out of the visitor.
local function acceptbulk(db, keys, visit)
  local err
  local ok = db:accept_bulk(keys, function(k, v, xt)
    local okp, res = pcall(visit, k, v)
    if not okp then err = res; return kt.Visitor.NOP end
    if res == nil then return kt.Visitor.NOP end
    if res == false then
      if v == nil then return kt.Visitor.NOP end
      return kt.Visitor.REMOVE
    end
    return res
  end, true)
  if err ~= nil then error(err, 0) end
  if not ok then dberror(db, "cannot update queue records") end
end

-- Whether a group's score field qualifies for the limit (nil = all).
local function qualifies(g, limit) return limit == nil or g.sf <= limit end

-- The hot paths (qadd, qpop) edit the record as a string: a group is found
-- with a plain search for its score field (the only '.' characters in the
-- record are those of score fields, so a match is always a group start) and
-- only the fields that change are rewritten, instead of parsing every group.

local NOWAITER = string.rep("0", HEADER)
local QEMPTY = string.rep("0", QHEADER)   -- a new record: no reader, no id given
local ZERO16 = string.rep("0", 16)
local HEADF, TAILF, COUNTF = SCOREW, SCOREW + 16, SCOREW + 32   -- field offsets

-- Position of the group with score field sf in the queue record v, or nil.
local function qgrouppos(v, sf)
  if v == nil then return nil end
  return (string.find(v, sf, QHEADER + 1, true))
end

local function qfield(v, p, off) return tonumber(string.sub(v, p + off, p + off + 15)) end

-- v with the group at p given new head, tail and count; the group is cut
-- when it holds no live item (the header stays: it holds the id counter).
local function qpatch(v, p, head, tail, n)
  if n <= 0 or head >= tail then
    return string.sub(v, 1, p - 1) .. string.sub(v, p + QGROUP)
  end
  return string.sub(v, 1, p + HEADF - 1) .. string.format("%016.0f%016.0f%016.0f", head, tail, n)
    .. string.sub(v, p + QGROUP)
end

-- Whether the record's header registers a blocked reader that still waits.
local function qwaiting(v)
  if string.find(v, NOWAITER, 1, true) == 1 then return false end
  return tonumber(string.sub(v, 1, HEADER)) >= nowsec()
end

-- v with the header's id counter moved on by c: returns it and the first
-- of the c ids given (1, 2, ... per queue, as ukt's Queue.add answers).
local function qbump(v, c)
  local first = (tonumber(string.sub(v, HEADER + 1, QHEADER)) or 0) + 1
  return string.sub(v, 1, HEADER) .. string.format("%016.0f", first + c - 1)
    .. string.sub(v, QHEADER + 1), first
end

-- v (a queue record value) with a new group for sf holding items 0 .. c - 1.
local function qinsert(v, sf, c)
  local at = #v + 1
  for q = QHEADER + 1, #v, QGROUP do
    if string.sub(v, q, q + SCOREW - 1) > sf then at = q; break end
  end
  return string.sub(v, 1, at - 1) .. sf .. string.format("%016.0f%016.0f%016.0f", 0, c, c)
    .. string.sub(v, at)
end

-- The tail field (a string) of the group sf in v, or false when absent.
local function qtail(v, sf)
  local p = qgrouppos(v, sf)
  return p and string.sub(v, p + TAILF, p + TAILF + 15) or false
end

-- qadd for one value, the common case, without qadd's bookkeeping tables:
-- the tail field read is the new item's sequence number as it stands.
local function qadd1(db, key, value, sf)
  local snap = qfresh(db:get(key))
  for _ = 1, 1000 do
    local p0 = qgrouppos(snap, sf)
    local seen = p0 and string.sub(snap, p0 + TAILF, p0 + TAILF + 15) or false
    local seq = seen or ZERO16
    local claimed, waiting, cur, id = false, false, nil, nil
    acceptbulk(db, { key, key .. "\t" .. sf .. seq }, function(k, v)
      if k ~= key then
        if claimed then return value end
        return nil
      end
      v = qfresh(v)
      cur = v
      local p = p0
      if v == nil or v ~= snap then   -- changed since read: is our group's tail?
        p = qgrouppos(v, sf)
        if (p and string.sub(v, p + TAILF, p + TAILF + 15) or false) ~= seen then return nil end
      end
      local nv
      if p then
        nv = string.sub(v, 1, p + TAILF - 1)
          .. string.format("%016.0f%016.0f", tonumber(seen) + 1, qfield(v, p, COUNTF) + 1)
          .. string.sub(v, p + QGROUP)
      else
        nv = qinsert(v or QEMPTY, sf, 1)
      end
      nv, id = qbump(nv, 1)
      claimed = true
      waiting = qwaiting(nv)
      return nv
    end)
    if claimed then return istr(id), waiting end
    snap = cur
  end
  fail(kt.RVEINTERNAL, "too much contention on the queue, try again")
end

-- Append values (with their score fields) at the ends of their groups: one
-- accept_bulk writes the items and the record together.  The sequence numbers
-- are read beforehand; when another add got there first, the visitor's view
-- of the record is the next attempt's snapshot (no extra read).  Returns the
-- first item's id and whether a blocked reader waits.
local function qadd(db, key, values, sfs)
  local total = #values
  if total == 0 then return nil, false end
  local order, count = {}, {}
  for i = 1, total do
    local sf = sfs[i]
    if count[sf] == nil then order[#order + 1] = sf; count[sf] = 0 end
    count[sf] = count[sf] + 1
  end
  local snap = qfresh(db:get(key))
  for _ = 1, 1000 do
    local seen, nextseq, keys, recs = {}, {}, { key }, {}
    for _, sf in ipairs(order) do
      local p = qgrouppos(snap, sf)
      seen[sf] = p and string.sub(snap, p + TAILF, p + TAILF + 15) or false
      nextseq[sf] = p and tonumber(seen[sf]) or 0
    end
    local firstid
    for i = 1, total do
      local sf = sfs[i]
      local seq = string.format("%016.0f", nextseq[sf])
      nextseq[sf] = nextseq[sf] + 1
      local k = key .. "\t" .. sf .. seq
      keys[i + 1] = k
      recs[k] = values[i]
    end
    local claimed, waiting, cur = false, false, nil
    acceptbulk(db, keys, function(k, v)
      if k ~= key then
        if claimed then return recs[k] end
        return nil
      end
      v = qfresh(v)
      cur = v
      for _, sf in ipairs(order) do
        local p = qgrouppos(v, sf)
        if (p and string.sub(v, p + TAILF, p + TAILF + 15) or false) ~= seen[sf] then return nil end
      end
      local nv = v or QEMPTY
      for _, sf in ipairs(order) do
        local p, c = qgrouppos(nv, sf), count[sf]
        if p then
          nv = string.sub(nv, 1, p + TAILF - 1)
            .. string.format("%016.0f%016.0f", qfield(nv, p, TAILF) + c, qfield(nv, p, COUNTF) + c)
            .. string.sub(nv, p + QGROUP)
        else
          nv = qinsert(nv, sf, c)
        end
      end
      nv, firstid = qbump(nv, total)
      claimed = true
      waiting = qwaiting(nv)
      return nv
    end)
    if claimed then return istr(firstid), waiting end
    snap = cur
  end
  fail(kt.RVEINTERNAL, "too much contention on the queue, try again")
end

-- Register a blocked reader until now + waitsecs, unless an item within
-- limit arrived meanwhile.
local function qwait(db, key, limit, waitsecs)
  update(db, key, function(v)
    local cur = qload(v)
    for _, g in ipairs(cur.groups) do
      if qualifies(g, limit) and g.n > 0 then return nil end
    end
    cur.waituntil = math.max(cur.waituntil, nowsec() + waitsecs)
    return qstore(cur)
  end)
end

-- Remove and return up to n items ({value, sf}) from the head (or the tail)
-- of the groups within limit (score field <= limit; nil = all).  Each round
-- takes the next candidates of the snapshot in one accept_bulk: the item
-- visitors remove the items still there (a missing one is a hole left by
-- queueremove or an item another popper took), then the record's visitor
-- moves a group end past a candidate only when the candidate *is* that end.
-- A candidate beyond it means the snapshot predates the queue emptying and
-- starting over (sequence numbers restart): the item taken then leaves a
-- hole, as queueremove does, rather than the end skipping live items.  With
-- waitsecs, an empty result registers a blocked reader until now + waitsecs.
local function qpop(db, key, n, limit, fromtail, waitsecs)
  local got = {}
  local snap = qfresh(db:get(key))
  local rounds = 0
  while #got < n and snap do
    rounds = rounds + 1
    if rounds > 100000 then fail(kt.RVEINTERNAL, "queue record inconsistent with its items") end
    local want = n - #got
    local cands, keys = {}, {}
    local ngroups = math.floor((#snap - QHEADER) / QGROUP)
    local first, last, step = 1, ngroups, 1
    if fromtail then first, last, step = ngroups, 1, -1 end
    for gi = first, last, step do
      local p = QHEADER + (gi - 1) * QGROUP + 1
      local sf = string.sub(snap, p, p + SCOREW - 1)
      if limit ~= nil and sf > limit then
        if not fromtail then break end
      else
        local head, tail = qfield(snap, p, HEADF), qfield(snap, p, TAILF)
        local a, b, s = head, tail - 1, 1
        if fromtail then a, b, s = tail - 1, head, -1 end
        for seq = a, b, s do
          if #cands >= want then break end
          local k = key .. "\t" .. sf .. string.format("%016.0f", seq)
          cands[#cands + 1] = { key = k, sf = sf, seq = seq }
          keys[#keys + 1] = k
        end
      end
      if #cands >= want then break end
    end
    if #cands == 0 then break end
    local values = {}
    keys[#keys + 1] = key
    local after = nil
    acceptbulk(db, keys, function(k, v)
      if k ~= key then
        if v == nil then return nil end
        values[k] = v
        return false
      end
      if v == nil then return nil end
      v = qfresh(v)
      local nv = v
      for _, c in ipairs(cands) do
        local p = qgrouppos(nv, c.sf)
        if p ~= nil then
          local head, tail, cnt = qfield(nv, p, HEADF), qfield(nv, p, TAILF), qfield(nv, p, COUNTF)
          if values[c.key] ~= nil then cnt = cnt - 1 end
          if fromtail then
            if tail == c.seq + 1 then tail = math.max(c.seq, head) end
          elseif c.seq == head then
            head = math.min(c.seq + 1, tail)
          end
          nv = qpatch(nv, p, head, tail, cnt)
          if nv == false then break end
        end
      end
      after = nv or nil
      return nv
    end)
    snap = after
    for _, c in ipairs(cands) do
      local v = values[c.key]
      if v ~= nil then got[#got + 1] = { value = v, sf = c.sf } end
    end
  end
  if #got == 0 and waitsecs then qwait(db, key, limit, waitsecs) end
  return got
end

-- qpop of one item from the head, the common case, without qpop's tables.
-- Returns the value (nil when nothing qualifies).
local function qpop1(db, key, limit)
  local snap = qfresh(db:get(key))
  for _ = 1, 100000 do
    if snap == nil or #snap < QHEADER + QGROUP then return nil end
    local p = QHEADER + 1   -- the first group holds the highest score
    local sf = string.sub(snap, p, p + SCOREW - 1)
    if limit ~= nil and sf > limit then return nil end
    local headstr = string.sub(snap, p + HEADF, p + HEADF + 15)
    local got, after = nil, nil
    acceptbulk(db, { key .. "\t" .. sf .. headstr, key }, function(k, v)
      if k ~= key then
        if v == nil then return nil end
        got = v
        return false
      end
      v = qfresh(v)
      after = v
      if v == nil then return nil end
      local q = p
      if v ~= snap then q = qgrouppos(v, sf) end
      if q == nil then return nil end
      local head, tail, cnt = qfield(v, q, HEADF), qfield(v, q, TAILF), qfield(v, q, COUNTF)
      local seq = tonumber(headstr)
      if got ~= nil then cnt = cnt - 1 end
      if seq == head then head = math.min(seq + 1, tail) end
      local nv = qpatch(v, q, head, tail, cnt)
      after = nv or nil
      return nv
    end)
    if got ~= nil then return got end
    snap = after
  end
  fail(kt.RVEINTERNAL, "queue record inconsistent with its items")
end

-- Visit the live items of the groups within limit, from the head (or the
-- tail), calling fn(key, value, group) until it returns true.
local function qscan(db, key, m, limit, fromtail, fn)
  local first, last, step = 1, #m.groups, 1
  if fromtail then first, last, step = #m.groups, 1, -1 end
  local window = 128
  for gi = first, last, step do
    local g = m.groups[gi]
    if qualifies(g, limit) and g.n > 0 then
      local a, b, s = g.head, g.tail - 1, 1
      if fromtail then a, b, s = g.tail - 1, g.head, -1 end
      for w = a, b, s * window do
        local keys = {}
        local stop = w + s * (window - 1)
        if (s > 0 and stop > b) or (s < 0 and stop < b) then stop = b end
        for seq = w, stop, s do keys[#keys + 1] = qitem(key, g.sf, seq) end
        local vals = db:get_bulk(keys) or {}
        for _, k in ipairs(keys) do
          if vals[k] ~= nil and fn(k, vals[k], g) then return end
        end
      end
    end
  end
end

-- Remove the given item keys (only those still holding `value`), keeping the
-- group counts right.  Returns how many were removed.
local function qremovekeys(db, key, items, value)
  if #items == 0 then return 0 end
  local keys, sfof = {}, {}
  for i, it in ipairs(items) do keys[i] = it.key; sfof[it.key] = it.sf end
  keys[#keys + 1] = key
  local removed, bysf = 0, {}
  acceptbulk(db, keys, function(k, v)
    if k ~= key then
      if v == nil or v ~= value then return nil end
      removed = removed + 1
      bysf[sfof[k]] = (bysf[sfof[k]] or 0) + 1
      return false
    end
    if removed == 0 then return nil end
    local cur = qload(v)
    for sf, r in pairs(bysf) do
      local g = qgroup(cur, sf)
      if g ~= nil then g.n = math.max(g.n - r, 0) end
    end
    return qstore(cur)
  end)
  return removed
end

local function qfind(db, key, value, n, limit, fromtail, skipsf)
  local found = {}
  if n == 0 then return found end
  qscan(db, key, qload(db:get(key)), limit, fromtail, function(k, v, g)
    if v == value and g.sf ~= skipsf then
      found[#found + 1] = { key = k, sf = g.sf }
      if n ~= nil and #found >= n then return true end
    end
    return false
  end)
  return found
end

-- queueadd: in: key, value (one item) or data (arraydump of values), score
-- (default 0).  out: id (of the first item), num, signal ("1" when a blocked
-- reader waits)
procedure("queueadd", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  local sf = QSF0
  if inmap.score ~= nil then sf = scorefield(tonum(inmap, "score", 0), true) end
  local id, waiting
  if inmap.value ~= nil then
    id, waiting = qadd1(db, key, inmap.value, sf)
    outmap.num = "1"
  else
    local values, sfs = loadarray(inmap, "data", true), {}
    for i = 1, #values do sfs[i] = sf end
    id, waiting = qadd(db, key, values, sfs)
    outmap.num = tostring(#values)
  end
  if id ~= nil then outmap.id = id end
  if waiting then outmap.signal = "1" end
end)

-- queuepop: in: key, n (default 1), minscore, tail (flag: from the end),
-- peek (flag: do not remove), wait (seconds: register a blocked reader when
-- nothing qualifies).  out: data (arraydump of values), num
procedure("queuepop", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  local n = tocount(inmap, "n", 1)
  local limit = queuelimit(inmap)
  local wait = tonum(inmap, "wait", nil)
  if wait ~= nil then wait = math.max(1, math.ceil(wait)) end
  local fromtail = inmap.tail ~= nil
  local values = {}
  if limit ~= "" and n > 0 then
    if inmap.peek ~= nil then
      qscan(db, key, qload(db:get(key)), limit, fromtail, function(k, v)
        values[#values + 1] = v
        return #values >= n
      end)
    elseif n == 1 and not fromtail then
      values[1] = qpop1(db, key, limit)
      if values[1] == nil and wait then qwait(db, key, limit, wait) end
    else
      for i, it in ipairs(qpop(db, key, n, limit, fromtail, wait)) do values[i] = it.value end
    end
  end
  outmap.data = kt.arraydump(values)
  outmap.num = tostring(#values)
end)

-- queueremove: remove items equal to value. in: key, value, n (default all),
-- minscore, tail (flag: search from the end); out: num
procedure("queueremove", function(inmap, outmap)
  local db = getdb(inmap)
  local key, value = need(inmap, "key"), need(inmap, "value")
  local n = tocount(inmap, "n", nil)
  local limit = queuelimit(inmap)
  local removed = 0
  if limit ~= "" then
    removed = qremovekeys(db, key, qfind(db, key, value, n, limit, inmap.tail ~= nil), value)
  end
  outmap.num = tostring(removed)
end)

-- queuesetscore: give items equal to value a new score; they join the end of
-- their new score group.  in: key, value, score, n (default all); out: num
procedure("queuesetscore", function(inmap, outmap)
  local db = getdb(inmap)
  local key, value = need(inmap, "key"), need(inmap, "value")
  need(inmap, "score")
  local sf = scorefield(tonum(inmap, "score", 0), true)
  local n = tocount(inmap, "n", nil)
  local moved = qremovekeys(db, key, qfind(db, key, value, n, nil, false, sf), value)
  if moved > 0 then
    local values, sfs = {}, {}
    for i = 1, moved do values[i] = value; sfs[i] = sf end
    qadd(db, key, values, sfs)
  end
  outmap.num = tostring(moved)
end)

-- queuetransfer: move up to n items from the head of `key` to the end of
-- their score groups in `dest`.  in: key, dest, n (default 1); out: data,
-- num, signal
procedure("queuetransfer", function(inmap, outmap)
  local db = getdb(inmap)
  local key, dest = need(inmap, "key"), need(inmap, "dest")
  if key == dest then invalid("source and destination are the same queue") end
  local n = tocount(inmap, "n", 1)
  local values, sfs = {}, {}
  for i, it in ipairs(qpop(db, key, n, nil, false, nil)) do
    values[i] = it.value
    sfs[i] = it.sf
  end
  local _, waiting = qadd(db, dest, values, sfs)
  if waiting then outmap.signal = "1" end
  outmap.data = kt.arraydump(values)
  outmap.num = tostring(#values)
end)

-- queuecount: in: key; out: num
procedure("queuecount", function(inmap, outmap)
  local db = getdb(inmap)
  outmap.num = istr(qcount(qload(db:get(need(inmap, "key")))))
end)

-- queueclear: remove every item and restart ids at 1.  in: key; out: num
procedure("queueclear", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  local groups, total = {}, 0
  update(db, key, function(v)
    if v == nil then return nil end
    local m = qload(v)
    groups = m.groups
    total = qcount(m)
    m.groups = {}
    m.lastid = 0   -- as ukt's clear, which removes its id counter too
    return qstore(m)
  end)
  for _, g in ipairs(groups) do
    for s = g.head, g.tail - 1, 1024 do
      local keys = {}
      for seq = s, math.min(s + 1023, g.tail - 1) do keys[#keys + 1] = qitem(key, g.sf, seq) end
      db:remove_bulk(keys)
    end
  end
  outmap.num = istr(total)
end)

-- schedulecount: in: key; out: num
procedure("schedulecount", function(inmap, outmap)
  local db = getdb(inmap)
  outmap.num = tostring(nentries(parseindex(db:get(need(inmap, "key")))))
end)

-- scheduleclear: remove every item and the schedule's record.  in: key;
-- out: num, the records removed -- the items plus the schedule's own record,
-- which stays after reads empty it: what ukt's Schedule.clear counts (its id
-- counter record goes with the items).
procedure("scheduleclear", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  local taken = indextake(db, key, math.huge, nil, false, nil)
  for s = 1, #taken, 1024 do
    local part = {}
    for i = s, math.min(s + 1023, #taken) do part[#part + 1] = taken[i] end
    removeitems(db, key, part)
  end
  local dropped = 0
  update(db, key, function(v)
    if v == nil or #parseindex(v).body > 0 then return nil end  -- an add came between
    dropped = 1
    return false
  end)
  outmap.num = tostring(#taken + dropped)
end)

-- scheduleadd: in: key, value, score (default 0); out: id
procedure("scheduleadd", function(inmap, outmap)
  local db = getdb(inmap)
  local key, value = need(inmap, "key"), need(inmap, "value")
  local sf = scorefield(tonum(inmap, "score", 0), false)
  local id = indexadd(db, key, { value }, { sf })
  outmap.id = id
end)

-- scheduleread: items with score <= `score` (default: all), lowest first.
-- in: key, score, n (default all), peek (flag: do not remove)
-- out: data (arraydump of values), num
procedure("scheduleread", function(inmap, outmap)
  local db = getdb(inmap)
  local key = need(inmap, "key")
  local score = tonum(inmap, "score", nil)
  local n = tocount(inmap, "n", nil) or math.huge
  local limit = nil
  if score ~= nil then
    if score <= -OFFSET then
      limit = ""
    elseif score < OFFSET then
      limit = scorefield(score, false)
    end
  end
  local values = {}
  if limit ~= "" and n > 0 then
    if inmap.peek ~= nil then
      values = itemvalues(db, key, indexpeek(db, key, n, limit, false), false)
    else
      values = itemvalues(db, key, indextake(db, key, n, limit, false, nil), true)
    end
  end
  outmap.data = kt.arraydump(values)
  outmap.num = tostring(#values)
end)

-- ==========================================================================
-- Diagnostics
-- ==========================================================================

-- ktstoreversion: out: version of this script (lets clients detect it)
procedure("ktstoreversion", function(inmap, outmap)
  outmap.version = "1"
end)

-- ==== ktstore.models: begin ====
-- Model layer procedures (ktstore.models).  Lua 5.1, Kyoto Tycoon host API only, so
-- they run unchanged on a real ktserver and on ktstore-server.
--
-- Layout (P = the model's prefix):
--   record      rdb  P:<pk>            mapdump {field = msgpack bytes, "\0ix" = arraydump of
--                                      the index and unique keys this record owns in idb}
--   container   rdb  P:<pk>\0<field>   List/Set/Hash container record
--   index       idb  P\0i\0<field>\0<encoded value><encoded pk> = <pk>
--   unique      idb  P\0u\0<field>\0<encoded value>             = <pk>
--   counter     idb  P\0seq (modelseq);  schema  idb  P\0schema (written by the client:
--                    the fields whose index every record has entries in)
-- The record carries the list of its own index keys (the memo), so save and delete read
-- the *stored* old state themselves to know which entries to drop: two clients saving
-- the same instance can never leave a stale entry behind.  Every change runs inside
-- db:begin_transaction()/end_transaction(): Kyoto Cabinet runs one transaction per
-- database at a time (the others wait), so model writes are serialized against each
-- other, and an abort (unique violation, conflict, Lua error) rolls everything back.
-- Index entries, unique entries and containers get the record's expiry time, so they
-- all expire together; a query never sees an expired one (cursors skip them).

local MODEL_MEMO = "\0ix"

-- A stored absolute xt (XTMAX = none) as an xt argument for db:set (negative = absolute).
local function model_setxt(xt)
  if xt == nil or xt >= XTMAX then
    return nil
  end
  return -xt
end

local function model_memo(value)
  if value == nil then
    return {}
  end
  local rec = kt.mapload(value)
  local memo = rec[MODEL_MEMO]
  if memo == nil then
    return {}, rec
  end
  -- the memo is a msgpack bin (so the Hash container with a msgpack client reads the
  -- whole record): skip its bin8/bin16/bin32 header
  local head = string.byte(memo, 1)
  if head == 196 then
    memo = string.sub(memo, 3)
  elseif head == 197 then
    memo = string.sub(memo, 4)
  elseif head == 198 then
    memo = string.sub(memo, 6)
  end
  return kt.arrayload(memo), rec
end

-- The pk an index-db entry belongs to: every entry's value is the owner's pk, followed
-- for full-text entries by NUL and a number (pks never hold NUL).
local function model_pkof(v)
  local z = string.find(v, "\0", 1, true)
  if z == nil then
    return v
  end
  return string.sub(v, 1, z - 1)
end

-- The memo as stored in a record: an arraydump wrapped in a msgpack bin.
local function model_packmemo(keys)
  local a = kt.arraydump(keys)
  local n = #a
  if n < 256 then
    return string.char(196, n) .. a
  elseif n < 65536 then
    return string.char(197, math.floor(n / 256), n % 256) .. a
  end
  return string.char(198, math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256) .. a
end

-- Full-text search keeps, per record, one posting P\0s\0<term>\0<pk key> = pk\0tf
-- per distinct term and one length entry P\0d\0<pk key> = pk\0<number of terms>;
-- the counters P\0sn (documents) and P\0sl (terms in all documents) follow the
-- length entries as they are written and removed, in the same transaction.
local function model_lenbase(k)
  -- the model prefix P when k is a length entry P\0d\0..., else nil
  local z = string.find(k, "\0", 1, true)
  if z ~= nil and string.sub(k, z, z + 2) == "\0d\0" then
    return string.sub(k, 1, z - 1)
  end
  return nil
end

local function model_stat(idb, k, v, sign)
  local base = model_lenbase(k)
  if base == nil then
    return
  end
  local len = tonumber(string.sub(v, #model_pkof(v) + 2)) or 0
  idb:increment(base .. "\0sn", sign, 0)
  idb:increment(base .. "\0sl", sign * len, 0)
end

-- Write an index-db entry (counting a length entry in the search statistics).
local function model_put(idb, k, v, xt)
  local counted = model_lenbase(k) ~= nil
  if counted then
    local old = idb:get(k)
    if old ~= nil then
      model_stat(idb, k, old, -1)
    end
  end
  if not idb:set(k, v, xt) then
    dberror(idb, "index write failed")
  end
  if counted then
    model_stat(idb, k, v, 1)
  end
end

-- Remove an entry if the record pk still owns it.
local function model_unindex(idb, k, pk)
  local v = idb:get(k)
  if v ~= nil and model_pkof(v) == pk then
    idb:remove(k)
    model_stat(idb, k, v, -1)
  end
end

-- Remove a stored record (value old) with the entries its memo lists and its
-- containers (full keys in cx).
local function model_drop(idb, rdb, key, pk, old, cx)
  for _, okey in ipairs(model_memo(old)) do
    model_unindex(idb, okey, pk)
  end
  for _, ckey in ipairs(cx) do
    rdb:remove(ckey)
  end
  rdb:remove(key)
end

-- Begin transactions on the distinct databases in a fixed order (no deadlocks).
local function model_begin(idb, rdb)
  local dbs = { idb }
  if rdb ~= idb then
    table.insert(dbs, rdb)
  end
  for i, db in ipairs(dbs) do
    if not db:begin_transaction() then
      for j = i - 1, 1, -1 do
        dbs[j]:end_transaction(false)
      end
      return nil
    end
  end
  return dbs
end

local function model_end(dbs, commit)
  for i = #dbs, 1, -1 do
    dbs[i]:end_transaction(commit)
  end
end

-- Runs fn(outmap) inside the transactions; fn returns true to commit.  A Lua error
-- rolls back and is re-raised (the caller sees a script failure).
local function model_atomic(inmap, outmap, fn)
  local idb = getdb(inmap, "idb")
  local rdb = getdb(inmap, "rdb")
  local dbs = model_begin(idb, rdb)
  if dbs == nil then
    fail(kt.RVEINTERNAL, "cannot begin a transaction")
  end
  local ok, res = pcall(fn, idb, rdb)
  if not ok then
    model_end(dbs, false)
    error(res, 0)
  end
  model_end(dbs, res == true)
  return kt.RVSUCCESS
end

local function model_save_one(idb, rdb, s, i, outmap)
  local key = s.k
  local pk = s.p
  local old, oldxt = rdb:get(key)
  local oldkeys, oldrec = model_memo(old)
  if s.mode == "create" and old ~= nil then
    outmap.err = "exists"
    return false
  end
  if s.mode == "update" and old == nil then
    outmap.err = "missing"
    return false
  end
  if s.cas ~= nil then
    if (s.cas == "" and old ~= nil) or (s.cas ~= "" and s.cas ~= old) then
      outmap.err = "conflict"
      return false
    end
  end
  if s.vf ~= nil then
    local oldv = nil
    if oldrec ~= nil then
      oldv = oldrec[s.vf]
    end
    if oldv ~= s.vold then
      outmap.err = "conflict"
      outmap.field = s.vf
      return false
    end
  end
  -- the expiry: explicit, else the stored record's, else the model default
  local xt
  if s.xt ~= nil then
    xt = tonumber(s.xt)
  elseif old ~= nil then
    xt = model_setxt(oldxt)
  elseif s.dxt ~= nil then
    xt = tonumber(s.dxt)
  end
  -- uniqueness first: nothing is written when a value is taken
  local ukeys = {}
  if s.ux ~= nil then
    local ux = kt.arrayload(s.ux)
    local uf = kt.arrayload(s.uf or "")
    for j, ukey in ipairs(ux) do
      local owner = idb:get(ukey)
      if owner ~= nil and owner ~= pk and s.rp ~= nil then
        -- an entry whose owner is gone (or no longer lists it) is stale, not a conflict
        local orec = rdb:get(s.rp .. owner)
        local live = false
        if orec ~= nil then
          for _, mk in ipairs(model_memo(orec)) do
            if mk == ukey then
              live = true
              break
            end
          end
        end
        if not live then
          owner = nil
        end
      end
      if owner ~= nil and owner ~= pk then
        outmap.err = "unique"
        outmap.field = uf[j]
        outmap.owner = owner
        return false
      end
      ukeys[ukey] = true
    end
  end
  -- foreign keys: the referenced records must exist (checked in this transaction, so a
  -- cascade deleting the referenced record cannot miss a new reference)
  if s.fk ~= nil then
    local fkf = kt.arrayload(s.fkf or "")
    for j, fkey in ipairs(kt.arrayload(s.fk)) do
      if rdb:get(fkey) == nil then
        outmap.err = "fk"
        outmap.field = fkf[j]
        return false
      end
    end
  end
  local newkeys = {}
  local values = {}
  if s.ix ~= nil then
    for _, ikey in ipairs(kt.arrayload(s.ix)) do
      newkeys[ikey] = true
    end
  end
  for ukey in pairs(ukeys) do
    newkeys[ukey] = true
  end
  if s.sx ~= nil then
    -- full-text entries: their values carry a number after the pk
    for skey, sv in pairs(kt.mapload(s.sx)) do
      newkeys[skey] = true
      values[skey] = sv
    end
  end
  -- drop the entries the stored record owned and the new one does not
  for _, okey in ipairs(oldkeys) do
    if not newkeys[okey] then
      model_unindex(idb, okey, pk)
    end
  end
  for nkey in pairs(newkeys) do
    model_put(idb, nkey, values[nkey] or pk, xt)
  end
  if not rdb:set(key, s.r, xt) then
    dberror(rdb, "record write failed")
  end
  if s.cw ~= nil then
    -- whole containers given with the instance: written (or removed when empty) here
    for ckey, cv in pairs(kt.mapload(s.cw)) do
      if cv == "" then
        rdb:remove(ckey)
      elseif not rdb:set(ckey, cv, xt) then
        dberror(rdb, "container write failed")
      end
    end
  end
  if s.cx ~= nil then
    for _, ckey in ipairs(kt.arrayload(s.cx)) do
      local cv = rdb:get(ckey)
      if cv ~= nil then
        rdb:set(ckey, cv, xt)
      end
    end
  end
  local _, storedxt = rdb:get(key)
  outmap["xt" .. i] = storedxt
  return true
end

-- modelsave: n records s1..sn (mapdump each: k key, r record, p pk, xt, dxt, mode,
-- vf/vold version check, cas, ix/ux/uf/cx arraydumps, cw mapdump of whole containers
-- to write).  All or nothing.
procedure("modelsave", function(inmap, outmap)
  local n = tonumber(inmap.n or "1") or 1
  return model_atomic(inmap, outmap, function(idb, rdb)
    for i = 1, n do
      local s = kt.mapload(inmap["s" .. i] or "")
      if not model_save_one(idb, rdb, s, i, outmap) then
        outmap.at = i
        return false
      end
    end
    outmap.n = n
    return true
  end)
end)

-- Relations (foreign keys).  A delete names, in rels, every foreign key that refers to
-- the model (mapdump each: ib = the child's index base P\0i\0<field>\0, rp = the
-- child's record prefix, rule c (cascade) / p (protect) / n (set null), f = the field,
-- ub = its unique base when unique, cn = arraydump of the child's container names,
-- sub = comma separated numbers of the rels referring to the child, for a cascade).
-- The children of a record with pk key K are the entries ib..K..<child pk key>.
local function model_rels(inmap)
  local rels = {}
  for i, blob in ipairs(kt.arrayload(inmap.rels or "")) do
    local rel = kt.mapload(blob)
    rel.subs = {}
    for num in string.gmatch(rel.sub or "", "%d+") do
      table.insert(rel.subs, tonumber(num))
    end
    rel.names = kt.arrayload(rel.cn or "")
    rels[i] = rel
  end
  return rels
end

local function model_roots(text)
  local out = {}
  for num in string.gmatch(text or "", "%d+") do
    table.insert(out, tonumber(num))
  end
  return out
end

-- SET NULL on one child: its field becomes msgpack nil, its index entry moves to the
-- None value (01), a unique claim on the old value is dropped; the memo follows.
local function model_setnull(idb, rdb, rel, k, cpk, ckey)
  local key = rel.rp .. cpk
  local rec, xt = rdb:get(key)
  if rec == nil then
    idb:remove(k)
    return
  end
  local memo, fields = model_memo(rec)
  local nk = rel.ib .. "\1" .. ckey
  local drop = {}
  drop[k] = true
  if rel.ub ~= nil then
    local pkkey = string.sub(k, #rel.ib + 1, #k - #ckey)
    local ukey = rel.ub .. pkkey
    if idb:get(ukey) == cpk then
      idb:remove(ukey)
    end
    drop[ukey] = true
  end
  local keep = {}
  for _, mk in ipairs(memo) do
    if not drop[mk] then
      table.insert(keep, mk)
    end
  end
  table.insert(keep, nk)
  idb:remove(k)
  local setxt = model_setxt(xt)
  model_put(idb, nk, cpk, setxt)
  fields[rel.f] = "\192"
  fields[MODEL_MEMO] = model_packmemo(keep)
  if not rdb:set(key, kt.mapdump(fields), setxt) then
    dberror(rdb, "record write failed")
  end
end

-- Apply the on_delete rules below the record whose pk key is pkkey, at most
-- state.budget children changed.  True when nothing refers to it any more; false when
-- the budget ran out (state.more) or a PROTECT rule refused (state.err).
local function model_clear(idb, rdb, rels, roots, pkkey, state)
  for _, ri in ipairs(roots) do
    local rel = rels[ri]
    local prefix = rel.ib .. pkkey
    while true do
      local cur = idb:cursor()
      local found = {}
      local ok = cur:jump(prefix)
      while ok and #found <= state.budget do
        local k, v = cur:get()
        if k == nil or string.sub(k, 1, #prefix) ~= prefix then
          break
        end
        table.insert(found, { k, v })
        ok = cur:step()
      end
      cur:disable()
      local progress = false
      for _, e in ipairs(found) do
        local k, v = e[1], e[2]
        local cpk = model_pkof(v)
        local ckey = string.sub(k, #prefix + 1)
        local crec = rdb:get(rel.rp .. cpk)
        if state.visiting[rel.rp .. cpk] then
          crec = false -- being deleted further up (a cycle): its own frame removes it
        else
          progress = true
        end
        if crec == false then
          -- nothing to do here
        elseif crec == nil then
          idb:remove(k) -- a stale entry: its record is gone
        elseif rel.rule == "p" then
          state.err = "protected"
          state.field = rel.f
          state.owner = cpk
          state.rp = rel.rp
          return false
        elseif state.budget <= 0 then
          state.more = true
          return false
        elseif rel.rule == "n" then
          model_setnull(idb, rdb, rel, k, cpk, ckey)
          state.budget = state.budget - 1
          state.changed = state.changed + 1
        else
          state.visiting[rel.rp .. cpk] = true
          local cleared = model_clear(idb, rdb, rels, rel.subs, ckey, state)
          state.visiting[rel.rp .. cpk] = nil
          if not cleared then
            return false
          end
          if state.budget <= 0 then
            state.more = true
            return false
          end
          local cx = {}
          for _, name in ipairs(rel.names) do
            table.insert(cx, rel.rp .. cpk .. "\0" .. name)
          end
          model_drop(idb, rdb, rel.rp .. cpk, cpk, crec, cx)
          state.budget = state.budget - 1
          state.changed = state.changed + 1
        end
      end
      if not progress then
        break
      end
    end
  end
  return true
end

local function model_delete_one(idb, rdb, s, outmap, rels, state)
  local key = s.k
  local pk = s.p
  local old = rdb:get(key)
  if old == nil then
    if s.vf ~= nil or (s.cas ~= nil and s.cas ~= "") then
      outmap.err = "conflict"
      return false, 0
    end
    return true, 0
  end
  local _, oldrec = model_memo(old)
  if s.cas ~= nil and s.cas ~= old then
    outmap.err = "conflict"
    return false, 0
  end
  if s.vf ~= nil and oldrec[s.vf] ~= s.vold then
    outmap.err = "conflict"
    outmap.field = s.vf
    return false, 0
  end
  state.visiting = {}
  state.visiting[key] = true
  if s.rr ~= nil and not model_clear(idb, rdb, rels, model_roots(s.rr), s.pkk, state) then
    if state.err ~= nil then
      outmap.err = state.err
      outmap.field = state.field
      outmap.owner = state.owner
      outmap.rp = state.rp
    end
    return false, 0
  end
  local cx = {}
  if s.cx ~= nil then
    cx = kt.arrayload(s.cx)
  end
  model_drop(idb, rdb, key, pk, old, cx)
  return true, 1
end

-- modeldelete: n records s1..sn (mapdump: k, p, cx, vf/vold, cas; with relations pkk =
-- the pk key and rr = the numbers of the rels referring to the model).  Answers d =
-- records removed, c = children removed or set to null.  On a refusal nothing is
-- written.  When more than budget (default 1000) children would change, the call
-- changes budget of them, commits, and answers more = 1 and at = the record not yet
-- deleted: the caller calls again from there (each call atomic).
procedure("modeldelete", function(inmap, outmap)
  local n = tonumber(inmap.n or "1") or 1
  return model_atomic(inmap, outmap, function(idb, rdb)
    local rels = model_rels(inmap)
    local state = { budget = tonumber(inmap.budget or "1000") or 1000, changed = 0 }
    local total = 0
    for i = 1, n do
      local s = kt.mapload(inmap["s" .. i] or "")
      local ok, d = model_delete_one(idb, rdb, s, outmap, rels, state)
      if not ok then
        outmap.at = i
        if state.more and state.err == nil then
          outmap.more = 1
          outmap.d = total
          outmap.c = state.changed
          return true -- this page of children is done: keep it
        end
        return false
      end
      total = total + d
    end
    outmap.d = total
    outmap.c = state.changed
    return true
  end)
end)

-- modelexpire: set the expiry of record k (xt absent = keep the record's own) on its
-- index entries, unique entries and containers (cx) too.  Answers xt, or missing=1.
procedure("modelexpire", function(inmap, outmap)
  return model_atomic(inmap, outmap, function(idb, rdb)
    local key = inmap.k
    local old, oldxt = rdb:get(key)
    if old == nil then
      outmap.missing = 1
      return false
    end
    local xt
    if inmap.xt ~= nil then
      xt = tonumber(inmap.xt)
    else
      xt = model_setxt(oldxt)
    end
    local keys = model_memo(old)
    for _, okey in ipairs(keys) do
      local v = idb:get(okey)
      if v ~= nil then
        idb:set(okey, v, xt)
      end
    end
    if inmap.cx ~= nil then
      for _, ckey in ipairs(kt.arrayload(inmap.cx)) do
        local cv = rdb:get(ckey)
        if cv ~= nil then
          rdb:set(ckey, cv, xt)
        end
      end
    end
    rdb:set(key, old, xt)
    local _, storedxt = rdb:get(key)
    outmap.xt = storedxt
    return true
  end)
end)

-- modelscan: one page of a key range [lo, hi) of database db, ascending, or descending
-- when rev is set; resume after (exclusive) the key given as "after".  With jp set, each
-- entry's value is a pk and the record jp..pk is read from database jdb (a join, so a
-- query page costs one round trip).  Answers n, k<i>, v<i>, and with the join r<i>/x<i>
-- for the records found; last = the last key visited; done = 1 at the end of the range.
procedure("modelscan", function(inmap, outmap)
  local db = getdb(inmap, "db")
  local lo = inmap.lo or ""
  local hi = inmap.hi
  local after = inmap.after
  local rev = inmap.rev == "1"
  local limit = tonumber(inmap.n or "100") or 100
  local jdb = nil
  local jp = inmap.jp
  if jp ~= nil then
    jdb = getdb(inmap, "jdb")
  end
  local keysonly = inmap.keys == "1"
  local cur = db:cursor()
  local ok
  if rev then
    local start = after or hi
    if start == nil then
      ok = cur:jump_back()
    else
      ok = cur:jump_back(start)
    end
  else
    ok = cur:jump(after or lo)
  end
  local n = 0
  local done = true
  local last = nil
  local pos = nil -- the last key visited
  -- On a real ktserver other threads write while this cursor walks: a write near it can
  -- invalidate it (step or get fails although records remain).  Then seek again from the
  -- last key visited instead of taking the failure for the end of the range.
  local reseeks = 0
  local function reseek()
    reseeks = reseeks + 1
    if reseeks > 1000 then
      return false
    end
    local found
    if pos == nil then -- not one key read yet: start again
      if rev then
        local start = after or hi
        if start == nil then
          return cur:jump_back()
        end
        return cur:jump_back(start)
      end
      return cur:jump(after or lo)
    end
    if rev then
      found = cur:jump_back(pos)
    else
      found = cur:jump(pos)
    end
    if found and cur:get_key() == pos then
      if rev then
        found = cur:step_back()
      else
        found = cur:step()
      end
    end
    return found
  end
  if not ok then
    ok = reseek() -- an empty range, or a cursor invalidated at once: look again
  end
  while ok do
    local k, v = cur:get()
    if k == nil then
      if not reseek() then
        break
      end
      k, v = cur:get()
      if k == nil then
        break
      end
    end
    pos = k
    local skip = false
    if rev then
      if k < lo then
        break
      end
      if (after ~= nil and k >= after) or (hi ~= nil and k >= hi) then
        skip = true
      end
    else
      if hi ~= nil and k >= hi then
        break
      end
      if k < lo or (after ~= nil and k <= after) then
        skip = true
      end
    end
    if not skip then
      if n >= limit then
        done = false
        break
      end
      n = n + 1
      last = k
      outmap["k" .. n] = k
      if not keysonly then
        outmap["v" .. n] = v
      end
      if jdb ~= nil then
        local rec, xt = jdb:get(jp .. model_pkof(v))
        if rec ~= nil then
          outmap["r" .. n] = rec
          outmap["x" .. n] = xt
        end
      end
    end
    if rev then
      ok = cur:step_back()
    else
      ok = cur:step()
    end
    if not ok then
      ok = reseek()
    end
  end
  cur:disable()
  outmap.n = n
  if last ~= nil then
    outmap.last = last
  end
  if done then
    outmap.done = 1
  end
  return kt.RVSUCCESS
end)

-- modelsweep: remove the entries of the range [lo, hi) of idb (after "after", at most n
-- visited) whose record (rp..value in rdb) is gone or does not list the entry in its memo:
-- orphans left by expiry or by writes that bypassed the model layer.
procedure("modelsweep", function(inmap, outmap)
  return model_atomic(inmap, outmap, function(idb, rdb)
    local lo = inmap.lo or ""
    local hi = inmap.hi
    local limit = tonumber(inmap.n or "1000") or 1000
    local rp = inmap.rp or ""
    local cur = idb:cursor()
    local ok = cur:jump(inmap.after or lo)
    local seen, removed = 0, 0
    local done = true
    local dead = {}
    while ok do
      local k, v = cur:get()
      if k == nil or (hi ~= nil and k >= hi) then
        break
      end
      if inmap.after == nil or k > inmap.after then
        if seen >= limit then
          done = false
          break
        end
        seen = seen + 1
        outmap.last = k
        local rec = rdb:get(rp .. model_pkof(v))
        local owned = false
        if rec ~= nil then
          for _, mk in ipairs(model_memo(rec)) do
            if mk == k then
              owned = true
              break
            end
          end
        end
        if not owned then
          table.insert(dead, k)
        end
      end
      ok = cur:step()
    end
    cur:disable()
    for _, k in ipairs(dead) do
      local v = idb:get(k)
      if v ~= nil and idb:remove(k) then
        model_stat(idb, k, v, -1)
        removed = removed + 1
      end
    end
    outmap.seen = seen
    outmap.removed = removed
    if done then
      outmap.done = 1
    end
    return true
  end)
end)
-- modelcgc: remove the container records listed in ks (arraydump, database rdb) whose
-- instance record (the key up to its first NUL) is gone.  Answers removed.
procedure("modelcgc", function(inmap, outmap)
  return model_atomic(inmap, outmap, function(idb, rdb)
    local removed = 0
    for _, ckey in ipairs(kt.arrayload(inmap.ks or "")) do
      local cut = string.find(ckey, "\0", 1, true)
      if cut ~= nil and rdb:get(string.sub(ckey, 1, cut - 1)) == nil then
        if rdb:remove(ckey) then
          removed = removed + 1
        end
      end
    end
    outmap.removed = removed
    return true
  end)
end)

-- modelseq: the next n values of the counter k in database db (auto primary keys);
-- answers id = the last one.
procedure("modelseq", function(inmap, outmap)
  local db = getdb(inmap, "db")
  local v = db:increment(inmap.k, tonumber(inmap.n or "1") or 1, 0)
  if v == nil then
    outmap.err = "counter"
    return kt.RVSUCCESS
  end
  outmap.id = string.format("%d", v)
  return kt.RVSUCCESS
end)
-- modelsearch: full-text query (ktstore.models.search).  In: db (the index db), sp = the
-- posting base P\0s\0, dp = the length base P\0d\0, base = P (counters P\0sn, P\0sl),
-- nt terms t1..tnt (p<i> = 1: a prefix term), n = page size, as/ak = continue after this
-- score (as answered) and pk key, jdb/jp = where the records are.  The documents holding
-- every term are scored with BM25 and ranked by score, then pk key.  Answers m = number
-- of matches, n, k<i> = pk key, s<i> = score, r<i>/x<i> = record and xt, done = 1 when
-- the page reaches the end.
procedure("modelsearch", function(inmap, outmap)
  local db = getdb(inmap, "db")
  local jdb = getdb(inmap, "jdb")
  local sp, dp, base, jp = inmap.sp or "", inmap.dp or "", inmap.base or "", inmap.jp or ""
  local nt = tonumber(inmap.nt or "0") or 0
  local limit = tonumber(inmap.n or "10") or 10
  local docs = nil -- pk key -> { pk = pk, tf = { per term } }
  local dfs = {}
  for ti = 1, nt do
    local term = inmap["t" .. ti] or ""
    local prefix = inmap["p" .. ti] == "1"
    local lo = sp .. term
    if not prefix then
      lo = lo .. "\0"
    end
    local hits, df = {}, 0
    local cur = db:cursor()
    local ok = cur:jump(lo)
    while ok do
      local k, v = cur:get()
      if k == nil or string.sub(k, 1, #lo) ~= lo then
        break
      end
      local pkkey = string.sub(k, #lo + 1)
      if prefix then
        local z = string.find(pkkey, "\0", 1, true)
        pkkey = string.sub(pkkey, z + 1)
      end
      local pk = model_pkof(v)
      local tf = tonumber(string.sub(v, #pk + 2)) or 0
      local hit = hits[pkkey]
      if hit == nil then
        df = df + 1
        if docs == nil or docs[pkkey] ~= nil then
          hits[pkkey] = { pk = pk, tf = tf }
        else
          hits[pkkey] = false
        end
      elseif hit then
        hit.tf = hit.tf + tf
      end
      ok = cur:step()
    end
    cur:disable()
    local nextdocs = {}
    for pkkey, hit in pairs(hits) do
      if hit then
        local d = docs and docs[pkkey] or { pk = hit.pk, tf = {} }
        d.tf[ti] = hit.tf
        nextdocs[pkkey] = d
      end
    end
    docs = nextdocs
    dfs[ti] = df
  end
  docs = docs or {}
  local ndocs = db:increment(base .. "\0sn", 0, 0) or 0
  local nterms = db:increment(base .. "\0sl", 0, 0) or 0
  local avgdl = 1
  if ndocs > 0 and nterms > 0 then
    avgdl = nterms / ndocs
  end
  local k1, b = 1.2, 0.75
  local idf = {}
  for ti = 1, nt do
    local n = math.max(ndocs, dfs[ti])
    idf[ti] = math.log(1 + (n - dfs[ti] + 0.5) / (dfs[ti] + 0.5))
  end
  local ranked = {}
  for pkkey, d in pairs(docs) do
    local lv = db:get(dp .. pkkey)
    local dl = 0
    if lv ~= nil then
      dl = tonumber(string.sub(lv, #model_pkof(lv) + 2)) or 0
    end
    local score = 0
    for ti = 1, nt do
      local tf = d.tf[ti]
      score = score + idf[ti] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))
    end
    local text = string.format("%.17g", score)
    table.insert(ranked, { tonumber(text), pkkey, d.pk, text })
  end
  table.sort(ranked, function(x, y)
    if x[1] ~= y[1] then
      return x[1] > y[1]
    end
    return x[2] < y[2]
  end)
  outmap.m = #ranked
  local as = tonumber(inmap.as or "")
  local ak = inmap.ak
  local n = 0
  local done = true
  for _, e in ipairs(ranked) do
    if as == nil or e[1] < as or (e[1] == as and e[2] > ak) then
      if n >= limit then
        done = false
        break
      end
      n = n + 1
      outmap["k" .. n] = e[2]
      outmap["s" .. n] = e[4]
      local rec, xt = jdb:get(jp .. e[3])
      if rec ~= nil then
        outmap["r" .. n] = rec
        outmap["x" .. n] = xt
      end
    end
  end
  outmap.n = n
  if done then
    outmap.done = 1
  end
  return kt.RVSUCCESS
end)
-- modelremoveprefix: remove the records of database db whose key starts with pre, at most
-- n per call (Store.delete_prefix), in one transaction.  On a tree database (tree = 1)
-- they are one key range; otherwise the cursor walks the database (at most 20 n records
-- a call) from after the key "after" (a key kept by the previous call).  Answers
-- removed, last (where to resume, absent to start over) and done = 1 at the end.
procedure("modelremoveprefix", function(inmap, outmap)
  local db = getdb(inmap, "db")
  local pre = inmap.pre or ""
  local limit = tonumber(inmap.n or "1000") or 1000
  local tree = inmap.tree == "1"
  local cur = db:cursor()
  local ok
  if tree then
    ok = cur:jump(pre)
  elseif inmap.after ~= nil and cur:jump(inmap.after) then
    ok = cur:step()
  else -- from the start (also when the key to resume after is gone)
    ok = cur:jump()
  end
  local keys = {}
  local visited = 0
  local done = true
  while ok do
    local k = cur:get_key()
    if k == nil then
      break
    end
    local match = string.sub(k, 1, #pre) == pre
    if tree and not match then
      break
    end
    if match then
      if #keys >= limit then
        done = false
        break
      end
      table.insert(keys, k)
    else
      outmap.last = k
    end
    visited = visited + 1
    if not tree and visited >= 20 * limit then
      done = false
      break
    end
    ok = cur:step()
  end
  cur:disable()
  if not db:begin_transaction() then
    fail(kt.RVEINTERNAL, "cannot begin a transaction")
  end
  local removed = 0
  for _, k in ipairs(keys) do
    if db:remove(k) then
      removed = removed + 1
    end
  end
  db:end_transaction(true)
  outmap.removed = removed
  if done then
    outmap.done = 1
  end
  return kt.RVSUCCESS
end)
-- ==== ktstore.models: end ====

-- ==== ktstore.ukt: begin ====
-- ukt compatibility: this script also answers the procedures that the ukt 0.4.8
-- client calls, with ukt's inputs, outputs and record formats, so one server can
-- serve ukt and ktstore clients while an application migrates (docs/porting-ukt.md).
--
-- * Hash, List and Set records have the same format in both (mapdump / arraydump /
--   mapdump with empty values), so both clients read and write the same containers.
--   Where a ukt procedure has the name of one of ours, the call is recognised by
--   its shape and translated to our procedure, whose result is translated back:
--     - hash procedures: ukt names the record `table_key` (ours: `key`);
--     - lextend, sadd, srem: ukt sends the items as inputs "0", "1"... (ours: `data`);
--     - sinter, sunion, sdiff: ukt names the other set `key2` (ours: `keys`);
--     - every other list/set name: ukt always sends `db` and never `errout`,
--       ktstore's client always sends `errout`.
--   Outputs then follow ukt: items as "0", "1"... instead of one `data` dump, and
--   an out-of-range index answers success with no outputs (ukt's client turns
--   that into IndexError) instead of RVELOGIC.
-- * Queues and schedules keep ukt's own layout, which ktstore's Queue/Schedule do
--   not share: item records `name \t %012d(score) %012d(id)` in key order (a tree
--   database is needed, as with ukt's script) and the id counter at `name`
--   (increment_double).  A queue name must be used by one client library only.
-- * Also served with ukt's formats: touch_bulk, touch_bulk_relative, expire_time,
--   get_error, list, get_range, get_part, move and the hexastore (hx_add,
--   hx_remove, hx_query).  Not served: _error_code and jit_version (ukt's test
--   helpers), the cmsgpack procedures of ukt's custom ktserver build.
-- * ktstoreversion also answers `ukt` = the ukt version whose procedures are served.
-- * The prelude's conventions hold here too: databases are found with `finddb`
--   (ukt answers a bad `db` with RVEINVALID and no message, so the lookup without
--   the error), "no expiration" is XTMAX, and every ukt procedure and every ukt
--   branch of a shared name runs under `guard`.  ukt's procedures report with
--   the statuses ukt's client expects (RVELOGIC, RVEINVALID...), which guard
--   turns into the same `error` output (and honours `errout`) as ours.
do
  local U = {}  -- every helper of this block lives in this table (Lua 5.1 caps locals)
  U.VERSION = "0.4.8"
  U.SPLIT = 500000000000  -- queue scores are stored as SPLIT - score: high first
  U.ours = {}
  U.before = {}  -- the globals defined before this block (ours)
  for name in pairs(_G) do U.before[name] = true end

  -- Call our procedure `name` with the table `args` and errout set: returns its
  -- outputs, or nil and the status it failed with.
  function U.call(name, args)
    local out = {}
    args.errout = "1"
    U.ours[name](args, out)
    if out.rv ~= nil then return nil, tonumber(out.rv), out.error end
    return out
  end

  -- A failed translated call: a missing item is an empty success for ukt.
  function U.failed(rv, msg, outmap, logic_is_empty)
    if logic_is_empty and rv == kt.RVELOGIC then return kt.RVSUCCESS end
    outmap.error = msg
    return rv
  end

  -- Every input but the named ones, as a list of values (the items ukt sends).
  function U.rest(inmap, skip)
    local items = {}
    for k, v in pairs(inmap) do
      if not skip[k] then items[#items + 1] = v end
    end
    return items
  end

  -- ukt's numbered items "0", "1", ... in order.
  function U.numbered(inmap)
    local items, i = {}, 0
    while inmap[tostring(i)] ~= nil do
      items[#items + 1] = inmap[tostring(i)]
      i = i + 1
    end
    return items
  end

  function U.spread(list, outmap)
    for i, v in ipairs(list) do outmap[tostring(i - 1)] = v end
  end

  -- Replace the global procedure `name`: `isukt(inmap)` decides, `fn` serves ukt.
  function U.wrap(name, isukt, fn)
    local mine, theirs = _G[name], guard(name, fn)
    U.ours[name] = mine
    _G[name] = function(inmap, outmap)
      if isukt(inmap) then return theirs(inmap, outmap) end
      return mine(inmap, outmap)
    end
  end

  function U.hashcall(inmap) return inmap.table_key ~= nil end
  function U.plaincall(inmap) return inmap.errout == nil and inmap.db ~= nil end
  function U.itemscall(inmap) return inmap.data == nil and inmap.errout == nil end
  function U.pair(inmap) return inmap.key2 ~= nil end

  -- Translate: build our inputs, call, copy chosen outputs back.
  function U.simple(name, check, build, outputs, logic_is_empty)
    U.wrap(name, check, function(inmap, outmap)
      local out, rv, msg = U.call(name, build(inmap))
      if out == nil then return U.failed(rv, msg, outmap, logic_is_empty) end
      for _, o in ipairs(outputs) do outmap[o] = out[o] end
      return kt.RVSUCCESS
    end)
  end

  local HASH_SKIP = { table_key = true, db = true }

  -- ukt's `db` input through the one selector (nil when no such db)
  function U.selectdb(inmap) return finddb(inmap.db) end
  local selectdb = U.selectdb


  -- -------------------------------------------------------------- hashes
  local function hashargs(extra)
    return function(inmap)
      local args = { key = inmap.table_key, db = inmap.db }
      for ours, theirs in pairs(extra) do args[ours] = inmap[theirs] end
      return args
    end
  end
  U.simple("hset", U.hashcall, hashargs({ field = "key", value = "value" }), { "num" })
  U.simple("hsetnx", U.hashcall, hashargs({ field = "key", value = "value" }), { "num" })
  U.simple("hget", U.hashcall, hashargs({ field = "key" }), { "value" })
  U.simple("hdel", U.hashcall, hashargs({ field = "key" }), { "num" })
  U.simple("hlen", U.hashcall, hashargs({}), { "num" })
  U.simple("hcontains", U.hashcall, hashargs({ field = "key" }), { "num" })
  U.simple("hunpack", U.hashcall, hashargs({ prefix = "prefix" }), { "num" })
  U.simple("hpack", U.hashcall,
    hashargs({ start = "start", stop = "stop", count = "count" }), { "num" })
  U.simple("hpackkeys", U.hashcall, hashargs({ dest = "key" }), { "num" })
  U.simple("hpackvalues", U.hashcall, hashargs({ dest = "key" }), { "num" })

  U.wrap("hmset", U.hashcall, function(inmap, outmap)
    local fields = {}
    for k, v in pairs(inmap) do
      if not HASH_SKIP[k] then fields[k] = v end
    end
    local out, rv, msg = U.call("hmset",
      { key = inmap.table_key, db = inmap.db, data = kt.mapdump(fields) })
    if out == nil then return U.failed(rv, msg, outmap) end
    outmap.num = out.num
    return kt.RVSUCCESS
  end)

  local function hashfields(name)
    return function(inmap)
      local names = {}
      for k in pairs(inmap) do
        if not HASH_SKIP[k] then names[#names + 1] = k end
      end
      return U.call(name,
        { key = inmap.table_key, db = inmap.db, fields = kt.arraydump(names) })
    end
  end

  U.wrap("hmget", U.hashcall, function(inmap, outmap)
    local out, rv, msg = hashfields("hmget")(inmap)
    if out == nil then return U.failed(rv, msg, outmap) end
    for k, v in pairs(kt.mapload(out.data or "")) do outmap[k] = v end
    return kt.RVSUCCESS
  end)

  U.wrap("hmdel", U.hashcall, function(inmap, outmap)
    local out, rv, msg = hashfields("hmdel")(inmap)
    if out == nil then return U.failed(rv, msg, outmap) end
    outmap.num = out.num
    return kt.RVSUCCESS
  end)

  U.wrap("hgetall", U.hashcall, function(inmap, outmap)
    local out, rv, msg = U.call("hgetall", { key = inmap.table_key, db = inmap.db })
    if out == nil then return U.failed(rv, msg, outmap) end
    if out.data ~= nil then
      for k, v in pairs(kt.mapload(out.data)) do outmap[k] = v end
    end
    return kt.RVSUCCESS
  end)

  -- ---------------------------------------------------------------- lists
  local function same(fields)
    return function(inmap)
      local args = { key = inmap.key, db = inmap.db }
      for _, f in ipairs(fields) do args[f] = inmap[f] end
      return args
    end
  end
  -- out-of-range index or empty source: ukt answers success without outputs
  U.simple("lindex", U.plaincall, function(inmap)
    return { key = inmap.key, db = inmap.db, index = inmap.index or "0" }
  end, { "value" }, true)
  U.simple("linsert", U.plaincall, same({ "index", "value" }), { "length" }, true)
  U.simple("lset", U.plaincall, same({ "index", "value" }), { "num" }, true)
  U.simple("lrem", U.plaincall, same({ "index" }), { "value" }, true)
  U.simple("llpoprpush", U.plaincall, same({ "dest" }), { "value" }, true)
  U.simple("lrpoplpush", U.plaincall, same({ "dest" }), { "value" }, true)

  U.wrap("lextend", U.itemscall, function(inmap, outmap)
    local out, rv, msg = U.call("lextend",
      { key = inmap.key, db = inmap.db, data = kt.arraydump(U.numbered(inmap)) })
    if out == nil then return U.failed(rv, msg, outmap) end
    outmap.length = out.length
    return kt.RVSUCCESS
  end)

  -- ukt's positions: 1-based index of a 0-based (negative: from the end) `s`
  -- within len items, or nil when outside (ukt does not clamp like Python).
  function U.position(len, s)
    local i = (tonumber(s or "0") or 0) + 1
    if i < 1 then i = len + i end
    if i < 1 or i > len then return nil end
    return i
  end

  -- The array at `key`, updated atomically by fn(array) -> changed; the record
  -- keeps its expiration time (a visitor's value without xt).
  function U.update(db, key, fn)
    return db:accept(key, function(k, v, xt)
      local a = v and kt.arrayload(v) or {}
      if not fn(a) then return kt.Visitor.NOP end
      return kt.arraydump(a)
    end, true)
  end

  -- lrange as ukt slices: a start before the first item gives nothing
  U.wrap("lrange", U.plaincall, function(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil or inmap.key == nil then return kt.RVEINVALID end
    local v = db:get(inmap.key)
    local a = v and kt.arrayload(v) or {}
    local n = #a
    local first = (tonumber(inmap.start or "0") or 0) + 1
    if first < 1 then first = n + first end
    if first < 1 then return kt.RVSUCCESS end
    local last = n
    if inmap.stop then
      last = tonumber(inmap.stop) or n
      if last < 0 then last = n + last end
    end
    local num = 0
    for i = first, math.min(last, n) do
      outmap[tostring(num)] = a[i]
      num = num + 1
    end
    return kt.RVSUCCESS
  end)

  -- lremrange as ukt: a start or stop outside the list is an error
  U.wrap("lremrange", U.plaincall, function(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil or inmap.key == nil then return kt.RVEINVALID end
    local bad, len = false, 0
    local ok = U.update(db, inmap.key, function(a)
      local first, last = 1, #a
      if inmap.start then
        first = U.position(#a, inmap.start)
        if first == nil then bad = true; return false end
      end
      if inmap.stop then
        last = U.position(#a, inmap.stop)
        if last == nil then bad = true; return false end
        if last > 0 then last = last - 1 end
      end
      if first > last then first, last = last, first end
      local removed = false
      for i = last, math.max(first, 1), -1 do
        if a[i] ~= nil then table.remove(a, i); removed = true end
      end
      len = #a
      return removed
    end)
    if bad then return kt.RVELOGIC end
    if not ok then return kt.RVEINTERNAL end
    outmap.length = tostring(len)
    return kt.RVSUCCESS
  end)

  -- ----------------------------------------------------------------- sets
  local SET_SKIP = { key = true, db = true }
  local function members(name)
    U.wrap(name, U.itemscall, function(inmap, outmap)
      local out, rv, msg = U.call(name,
        { key = inmap.key, db = inmap.db, data = kt.arraydump(U.rest(inmap, SET_SKIP)) })
      if out == nil then return U.failed(rv, msg, outmap) end
      outmap.num = out.num
      return kt.RVSUCCESS
    end)
  end
  members("sadd")
  members("srem")

  U.wrap("smembers", U.plaincall, function(inmap, outmap)
    local out, rv, msg = U.call("smembers", { key = inmap.key, db = inmap.db })
    if out == nil then return U.failed(rv, msg, outmap) end
    U.spread(kt.arrayload(out.data), outmap)
    return kt.RVSUCCESS
  end)

  -- spop: ukt also wants num (1 when a member was popped); harmless for ours
  local spop_mine = _G.spop
  spop = function(inmap, outmap)
    local rv = spop_mine(inmap, outmap)
    if outmap.error == nil then outmap.num = outmap.value ~= nil and "1" or "0" end
    return rv
  end

  local function algebra(name)
    U.wrap(name, U.pair, function(inmap, outmap)
      local out, rv, msg = U.call(name, { key = inmap.key, db = inmap.db,
        keys = kt.arraydump({ inmap.key2 }), dest = inmap.dest })
      if out == nil then return U.failed(rv, msg, outmap) end
      U.spread(kt.arrayload(out.data), outmap)
      return kt.RVSUCCESS
    end)
  end
  algebra("sinter")
  algebra("sunion")
  algebra("sdiff")

  -- ------------------------------------------ expiration and errors (ukt names)
  -- ukt's touch_bulk: inputs are key = new xt (as the wire: < 0 absolute,
  -- else relative); outputs key = old absolute xt, for the keys that exist.
  function touch_bulk(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil then return kt.RVEINVALID end
    local keys = {}
    for k in pairs(inmap) do if k ~= "db" then keys[#keys + 1] = k end end
    if #keys == 0 then return kt.RVSUCCESS end
    local ok = db:accept_bulk(keys, function(k, v, xt)
      if v == nil then return kt.Visitor.NOP end
      outmap[k] = string.format("%.0f", xt)
      return v, tonumber(inmap[k])
    end, true)
    if not ok then return kt.RVEINTERNAL end
    return kt.RVSUCCESS
  end

  -- ukt's touch_bulk_relative: key = seconds to add; outputs key = new xt.
  function touch_bulk_relative(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil then return kt.RVEINVALID end
    local keys = {}
    for k in pairs(inmap) do if k ~= "db" then keys[#keys + 1] = k end end
    if #keys == 0 then return kt.RVSUCCESS end
    local ok = db:accept_bulk(keys, function(k, v, xt)
      if v == nil then return kt.Visitor.NOP end
      local nxt = xt + (tonumber(inmap[k]) or 0)
      outmap[k] = string.format("%.0f", nxt)
      if xt >= XTMAX then return v end  -- no expiry stays none
      return v, -math.max(nxt, 1)
    end, true)
    if not ok then return kt.RVEINTERNAL end
    return kt.RVSUCCESS
  end

  function expire_time(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil or inmap.key == nil then return kt.RVEINVALID end
    local v, xt = db:get(inmap.key)
    if v ~= nil then outmap.xt = string.format("%.0f", xt or XTMAX) end
    return kt.RVSUCCESS
  end

  U.ERRNAMES = {}
  for code, name in pairs({ SUCCESS = "success", NOIMPL = "noimpl", INVALID = "invalid",
      NOREPOS = "norepos", NOPERM = "noperm", BROKEN = "broken", DUPREC = "duprec",
      NOREC = "norec", LOGIC = "logic", SYSTEM = "system", MISC = "misc" }) do
    if kt.Error[code] ~= nil then U.ERRNAMES[kt.Error[code]] = name end
  end

  function get_error(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil then return kt.RVEINVALID end
    local e = db:error()
    if e then
      outmap.code = tostring(e:code())
      outmap.message = U.ERRNAMES[e:code()] or tostring(e:name())
    end
    return kt.RVSUCCESS
  end

  -- ------------------------------------------------------- queues (ukt layout)
  function U.itemkey(name, stored, id)
    return string.format("%s\t%012.0f%012.0f", name, stored, id)
  end

  -- Visit the items of queue `name` from the head (or the tail), calling
  -- fn(cursor, key, value, score) -> continue, counted; at most n counted
  -- (n < 0: no limit).  fn moves the cursor (step or remove).  Returns the count.
  function U.walk(db, name, n, fromtail, fn)
    local prefix = name .. "\t"
    local first = #prefix + 1
    local cur = db:cursor()
    local ok
    if fromtail then ok = cur:jump_back(prefix .. "\255") else ok = cur:jump(prefix) end
    local count = 0
    while ok and n ~= 0 do
      local k, v = cur:get(false)
      if k == nil or string.sub(k, 1, #prefix) ~= prefix then break end
      local score = U.SPLIT - (tonumber(string.sub(k, first, first + 11)) or 0)
      local more, counted = fn(cur, k, v, score)
      if counted then count = count + 1; n = n - 1 end
      ok = more
    end
    cur:disable()
    return count
  end

  function U.queue(required, body)
    return function(inmap, outmap)
      local db = selectdb(inmap)
      if db == nil then return kt.RVEINVALID end
      for _, f in ipairs(required) do
        if inmap[f] == nil then return kt.RVEINVALID end
      end
      return body(db, inmap, outmap) or kt.RVSUCCESS
    end
  end

  function U.enqueue(db, name, stored, value)
    local id = db:increment_double(name, 1)
    if id == nil then return nil end
    if not db:add(U.itemkey(name, stored, id), value) then return nil end
    return id
  end

  queue_add = U.queue({ "queue", "data" }, function(db, i, o)
    local id = U.enqueue(db, i.queue, U.SPLIT - (tonumber(i.score) or 0), i.data)
    if id == nil then return kt.RVELOGIC end
    o.id = string.format("%.0f", id)
  end)

  queue_madd = U.queue({ "queue" }, function(db, i, o)
    local stored = U.SPLIT - (tonumber(i.score) or 0)
    local items = U.numbered(i)
    for _, v in ipairs(items) do
      if U.enqueue(db, i.queue, stored, v) == nil then return kt.RVELOGIC end
    end
    o.num = tostring(#items)
  end)

  -- pop, rpop, peek, rpeek: up to n items (default 1) with score >= min_score
  function U.taker(fromtail, remove)
    return U.queue({ "queue" }, function(db, i, o)
      local low = tonumber(i.min_score)
      local num = 0
      U.walk(db, i.queue, tonumber(i.n or 1) or 1, fromtail, function(cur, k, v, score)
        local move = fromtail and cur.step_back or cur.step
        if low ~= nil and score < low then return move(cur), false end
        o[tostring(num)] = v
        num = num + 1
        if remove then return cur:remove(), true end
        return move(cur), true
      end)
    end)
  end
  queue_pop = U.taker(false, true)
  queue_rpop = U.taker(true, true)
  queue_peek = U.taker(false, false)
  queue_rpeek = U.taker(true, false)

  -- bpop: pop one item, polling (as ukt's script does) until `timeout` seconds
  queue_bpop = U.queue({ "queue" }, function(db, i, o)
    local low = tonumber(i.min_score)
    local deadline = i.timeout and (kt.time() + (tonumber(i.timeout) or 0)) or nil
    local pause = 0.1
    local function take(cur, k, v, score)
      if low ~= nil and score < low then return cur:step(), false end
      o["0"] = v
      return cur:remove(), true
    end
    while U.walk(db, i.queue, 1, false, take) == 0 do
      if deadline and kt.time() >= deadline then break end
      kt.sleep(pause)
      pause = math.min(pause * 1.15, 1)
    end
  end)

  function U.remover(fromtail)
    return U.queue({ "queue", "data" }, function(db, i, o)
      local low = tonumber(i.min_score)
      o.num = tostring(U.walk(db, i.queue, tonumber(i.n or -1) or -1, fromtail,
        function(cur, k, v, score)
          local move = fromtail and cur.step_back or cur.step
          if (low == nil or score >= low) and v == i.data then return cur:remove(), true end
          return move(cur), false
        end))
    end)
  end
  queue_remove = U.remover(false)
  queue_rremove = U.remover(true)

  queue_set_score = U.queue({ "queue", "data", "score" }, function(db, i, o)
    local new = tonumber(i.score) or 0
    local idat = #i.queue + 2 + 12
    local moved, gone = {}, {}
    U.walk(db, i.queue, tonumber(i.n or -1) or -1, false, function(cur, k, v, score)
      if v == i.data and score ~= new then
        local id = tonumber(string.sub(k, idat, idat + 11)) or 0
        moved[U.itemkey(i.queue, U.SPLIT - new, id)] = v
        gone[#gone + 1] = k
        return cur:step(), true
      end
      return cur:step(), false
    end)
    if #gone > 0 then
      db:remove_bulk(gone)
      db:set_bulk(moved)
    end
    o.num = tostring(#gone)
  end)

  queue_transfer = U.queue({ "queue", "dest" }, function(db, i, o)
    if i.queue == i.dest then return kt.RVELOGIC end
    local num, failed = 0, false
    U.walk(db, i.queue, tonumber(i.n or 1) or 1, false, function(cur, k, v, score)
      if U.enqueue(db, i.dest, U.SPLIT - score, v) == nil then
        failed = true
        return false, false
      end
      o[tostring(num)] = v
      num = num + 1
      return cur:remove(), true
    end)
    if failed then return kt.RVELOGIC end
  end)

  queue_size = U.queue({ "queue" }, function(db, i, o)
    o.num = tostring(#db:match_prefix(i.queue .. "\t"))
  end)

  queue_clear = U.queue({ "queue" }, function(db, i, o)
    local keys = db:match_prefix(i.queue .. "\t")
    db:remove_bulk(keys)
    db:remove(i.queue)
    o.num = tostring(#keys)
  end)

  -- ---------------------------------------------------- schedules (ukt layout)
  schedule_add = U.queue({ "key", "value" }, function(db, i, o)
    local id = db:increment_double(i.key, 1)
    if id == nil then return kt.RVELOGIC end
    local k = U.itemkey(i.key, tonumber(i.score) or 0, id)
    if not db:add(k, i.value) then return kt.RVELOGIC end
    o.key = k
  end)

  -- read (and remove) up to n items whose score <= score, lowest first
  schedule_read = U.queue({ "key" }, function(db, i, o)
    local high = tonumber(i.score) or 0xffffffff
    local num = 0
    -- U.walk reports queue scores (SPLIT - stored); a schedule stores its score as is
    U.walk(db, i.key, tonumber(i.n or -1) or -1, false, function(cur, k, v, score)
      if U.SPLIT - score > high then return false, false end
      o[tostring(num)] = v
      num = num + 1
      return cur:remove(), true
    end)
  end)

  -- ------------------------------------------------ ukt's record helpers
  -- list: every record of the database (ukt's script has the same)
  function list(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil then return kt.RVEINVALID end
    local cur = db:cursor()
    local ok = cur:jump()
    while ok do
      local k, v = cur:get(true)
      if k == nil then break end
      outmap[k] = v
    end
    cur:disable()
    return kt.RVSUCCESS
  end

  -- get_range: records with start <= key <= stop in key order (tree database)
  function get_range(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil then return kt.RVEINVALID end
    local cur = db:cursor()
    local ok
    if inmap.start then ok = cur:jump(inmap.start) else ok = cur:jump() end
    while ok do
      local k, v = cur:get(true)
      if k == nil or (inmap.stop and k > inmap.stop) then break end
      outmap[k] = v
    end
    cur:disable()
    return kt.RVSUCCESS
  end

  -- get_part: value[start:stop] with Python's slice rules
  function get_part(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil or inmap.key == nil then return kt.RVEINVALID end
    local v = db:get(inmap.key)
    if v == nil then return kt.RVSUCCESS end
    local n = #v
    local function bound(s, default)
      local i = tonumber(s)
      if i == nil then return default end
      if i < 0 then i = math.max(n + i, 0) end
      return math.min(i, n)
    end
    outmap.value = string.sub(v, bound(inmap.start, 0) + 1, bound(inmap.stop, n))
    return kt.RVSUCCESS
  end

  -- move: rename src to dest (value and expiration); RVELOGIC when src is missing
  function move(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil or inmap.src == nil or inmap.dest == nil then return kt.RVEINVALID end
    if inmap.src == inmap.dest then
      return db:get(inmap.src) ~= nil and kt.RVSUCCESS or kt.RVELOGIC
    end
    local value, xt
    local ok = db:accept_bulk({ inmap.src, inmap.dest }, function(k, v, x)
      if k == inmap.src then
        if v == nil then return kt.Visitor.NOP end
        value, xt = v, x
        return kt.Visitor.REMOVE
      end
      if value == nil then return kt.Visitor.NOP end
      return value, -xt
    end, true)
    if not ok then return kt.RVEINTERNAL end
    if value == nil then return kt.RVELOGIC end
    return kt.RVSUCCESS
  end

  -- ----------------------------------------------- ukt's hexastore (hx_*)
  -- Each triple (s, p, o) is stored three times, as empty records named
  -- "spo::s::p::o", "pos::p::o::s" and "osp::o::s::p", so any one or two known
  -- parts are a key prefix (a tree database is needed for queries).
  U.HX = { spo = { "s", "p", "o" }, pos = { "p", "o", "s" }, osp = { "o", "s", "p" } }

  function U.hxkeys(t)
    local keys = {}
    for name, order in pairs(U.HX) do
      keys[#keys + 1] = table.concat({ name, t[order[1]], t[order[2]], t[order[3]] }, "::")
    end
    return keys
  end

  function U.hxtriple(inmap)
    local db = selectdb(inmap)
    if db == nil or not (inmap.s and inmap.p and inmap.o) then return nil end
    return db, { s = inmap.s, p = inmap.p, o = inmap.o }
  end

  function hx_add(inmap, outmap)
    local db, t = U.hxtriple(inmap)
    if db == nil then return kt.RVEINVALID end
    local recs = {}
    for _, k in ipairs(U.hxkeys(t)) do recs[k] = "" end
    if db:set_bulk(recs) < 0 then return kt.RVEINTERNAL end
    return kt.RVSUCCESS
  end

  function hx_remove(inmap, outmap)
    local db, t = U.hxtriple(inmap)
    if db == nil then return kt.RVEINVALID end
    db:remove_bulk(U.hxkeys(t))
    return kt.RVSUCCESS
  end

  -- hx_query: the unknown parts of every matching triple as s0, p0, o0, s1...
  function hx_query(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil or not (inmap.s or inmap.p or inmap.o) then return kt.RVEINVALID end
    if inmap.s and inmap.p and inmap.o then
      local k = table.concat({ "spo", inmap.s, inmap.p, inmap.o }, "::")
      if db:get(k) ~= nil then outmap["0"] = "" end
      return kt.RVSUCCESS
    end
    -- the index whose leading parts are exactly the known ones
    local known = {}
    for _, part in ipairs({ "s", "p", "o" }) do known[part] = inmap[part] ~= nil end
    local count = (known.s and 1 or 0) + (known.p and 1 or 0) + (known.o and 1 or 0)
    local name, order
    for n, o in pairs(U.HX) do
      local fits = true
      for i = 1, 3 do
        if (i <= count) ~= known[o[i]] then fits = false end
      end
      if fits then name, order = n, o end
    end
    local parts = { name }
    for i = 1, 3 do
      if known[order[i]] then parts[#parts + 1] = inmap[order[i]] end
    end
    local prefix = table.concat(parts, "::") .. "::"
    local cur = db:cursor()
    local ok = cur:jump(prefix)
    local num = 0
    while ok do
      local k = cur:get_key()
      if k == nil or string.sub(k, 1, #prefix) ~= prefix then break end
      local fields, pos = {}, #name + 3
      for i = 1, 2 do
        local e = string.find(k, "::", pos, true)
        if e == nil then break end
        fields[i] = string.sub(k, pos, e - 1)
        pos = e + 2
      end
      fields[3] = string.sub(k, pos)
      for i = 1, 3 do
        if not known[order[i]] then outmap[order[i] .. tostring(num)] = fields[i] end
      end
      num = num + 1
      ok = cur:step()
    end
    cur:disable()
    return kt.RVSUCCESS
  end

  -- ------------------------------------------------------------ detection
  local version_mine = _G.ktstoreversion
  ktstoreversion = function(inmap, outmap)
    local rv = version_mine(inmap, outmap)
    outmap.ukt = U.VERSION
    return rv
  end

  -- ------------------------------------------- one error convention (guard)
  for name, fn in pairs(_G) do
    if not U.before[name] and type(fn) == "function" then _G[name] = guard(name, fn) end
  end
end
-- ==== ktstore.ukt: end ====

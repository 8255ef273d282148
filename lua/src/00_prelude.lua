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


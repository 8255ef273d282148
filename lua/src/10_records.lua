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


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


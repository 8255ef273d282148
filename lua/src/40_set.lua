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


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


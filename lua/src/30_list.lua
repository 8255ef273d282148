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


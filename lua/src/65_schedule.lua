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


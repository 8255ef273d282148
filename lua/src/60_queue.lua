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


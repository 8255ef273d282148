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


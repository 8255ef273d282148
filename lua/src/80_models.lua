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


-- ==== ktstore.ukt: begin ====
-- ukt compatibility: this script also answers the procedures that the ukt 0.4.8
-- client calls, with ukt's inputs, outputs and record formats, so one server can
-- serve ukt and ktstore clients while an application migrates (docs/porting-ukt.md).
--
-- * Hash, List and Set records have the same format in both (mapdump / arraydump /
--   mapdump with empty values), so both clients read and write the same containers.
--   Where a ukt procedure has the name of one of ours, the call is recognised by
--   its shape and translated to our procedure, whose result is translated back:
--     - hash procedures: ukt names the record `table_key` (ours: `key`);
--     - lextend, sadd, srem: ukt sends the items as inputs "0", "1"... (ours: `data`);
--     - sinter, sunion, sdiff: ukt names the other set `key2` (ours: `keys`);
--     - every other list/set name: ukt always sends `db` and never `errout`,
--       ktstore's client always sends `errout`.
--   Outputs then follow ukt: items as "0", "1"... instead of one `data` dump, and
--   an out-of-range index answers success with no outputs (ukt's client turns
--   that into IndexError) instead of RVELOGIC.
-- * Queues and schedules keep ukt's own layout, which ktstore's Queue/Schedule do
--   not share: item records `name \t %012d(score) %012d(id)` in key order (a tree
--   database is needed, as with ukt's script) and the id counter at `name`
--   (increment_double).  A queue name must be used by one client library only.
-- * Also served with ukt's formats: touch_bulk, touch_bulk_relative, expire_time,
--   get_error, list, get_range, get_part, move and the hexastore (hx_add,
--   hx_remove, hx_query).  Not served: _error_code and jit_version (ukt's test
--   helpers), the cmsgpack procedures of ukt's custom ktserver build.
-- * ktstoreversion also answers `ukt` = the ukt version whose procedures are served.
-- * The prelude's conventions hold here too: databases are found with `finddb`
--   (ukt answers a bad `db` with RVEINVALID and no message, so the lookup without
--   the error), "no expiration" is XTMAX, and every ukt procedure and every ukt
--   branch of a shared name runs under `guard`.  ukt's procedures report with
--   the statuses ukt's client expects (RVELOGIC, RVEINVALID...), which guard
--   turns into the same `error` output (and honours `errout`) as ours.
do
  local U = {}  -- every helper of this block lives in this table (Lua 5.1 caps locals)
  U.VERSION = "0.4.8"
  U.SPLIT = 500000000000  -- queue scores are stored as SPLIT - score: high first
  U.ours = {}
  U.before = {}  -- the globals defined before this block (ours)
  for name in pairs(_G) do U.before[name] = true end

  -- Call our procedure `name` with the table `args` and errout set: returns its
  -- outputs, or nil and the status it failed with.
  function U.call(name, args)
    local out = {}
    args.errout = "1"
    U.ours[name](args, out)
    if out.rv ~= nil then return nil, tonumber(out.rv), out.error end
    return out
  end

  -- A failed translated call: a missing item is an empty success for ukt.
  function U.failed(rv, msg, outmap, logic_is_empty)
    if logic_is_empty and rv == kt.RVELOGIC then return kt.RVSUCCESS end
    outmap.error = msg
    return rv
  end

  -- Every input but the named ones, as a list of values (the items ukt sends).
  function U.rest(inmap, skip)
    local items = {}
    for k, v in pairs(inmap) do
      if not skip[k] then items[#items + 1] = v end
    end
    return items
  end

  -- ukt's numbered items "0", "1", ... in order.
  function U.numbered(inmap)
    local items, i = {}, 0
    while inmap[tostring(i)] ~= nil do
      items[#items + 1] = inmap[tostring(i)]
      i = i + 1
    end
    return items
  end

  function U.spread(list, outmap)
    for i, v in ipairs(list) do outmap[tostring(i - 1)] = v end
  end

  -- Replace the global procedure `name`: `isukt(inmap)` decides, `fn` serves ukt.
  function U.wrap(name, isukt, fn)
    local mine, theirs = _G[name], guard(name, fn)
    U.ours[name] = mine
    _G[name] = function(inmap, outmap)
      if isukt(inmap) then return theirs(inmap, outmap) end
      return mine(inmap, outmap)
    end
  end

  function U.hashcall(inmap) return inmap.table_key ~= nil end
  function U.plaincall(inmap) return inmap.errout == nil and inmap.db ~= nil end
  function U.itemscall(inmap) return inmap.data == nil and inmap.errout == nil end
  function U.pair(inmap) return inmap.key2 ~= nil end

  -- Translate: build our inputs, call, copy chosen outputs back.
  function U.simple(name, check, build, outputs, logic_is_empty)
    U.wrap(name, check, function(inmap, outmap)
      local out, rv, msg = U.call(name, build(inmap))
      if out == nil then return U.failed(rv, msg, outmap, logic_is_empty) end
      for _, o in ipairs(outputs) do outmap[o] = out[o] end
      return kt.RVSUCCESS
    end)
  end

  local HASH_SKIP = { table_key = true, db = true }

  -- ukt's `db` input through the one selector (nil when no such db)
  function U.selectdb(inmap) return finddb(inmap.db) end
  local selectdb = U.selectdb


  -- -------------------------------------------------------------- hashes
  local function hashargs(extra)
    return function(inmap)
      local args = { key = inmap.table_key, db = inmap.db }
      for ours, theirs in pairs(extra) do args[ours] = inmap[theirs] end
      return args
    end
  end
  U.simple("hset", U.hashcall, hashargs({ field = "key", value = "value" }), { "num" })
  U.simple("hsetnx", U.hashcall, hashargs({ field = "key", value = "value" }), { "num" })
  U.simple("hget", U.hashcall, hashargs({ field = "key" }), { "value" })
  U.simple("hdel", U.hashcall, hashargs({ field = "key" }), { "num" })
  U.simple("hlen", U.hashcall, hashargs({}), { "num" })
  U.simple("hcontains", U.hashcall, hashargs({ field = "key" }), { "num" })
  U.simple("hunpack", U.hashcall, hashargs({ prefix = "prefix" }), { "num" })
  U.simple("hpack", U.hashcall,
    hashargs({ start = "start", stop = "stop", count = "count" }), { "num" })
  U.simple("hpackkeys", U.hashcall, hashargs({ dest = "key" }), { "num" })
  U.simple("hpackvalues", U.hashcall, hashargs({ dest = "key" }), { "num" })

  U.wrap("hmset", U.hashcall, function(inmap, outmap)
    local fields = {}
    for k, v in pairs(inmap) do
      if not HASH_SKIP[k] then fields[k] = v end
    end
    local out, rv, msg = U.call("hmset",
      { key = inmap.table_key, db = inmap.db, data = kt.mapdump(fields) })
    if out == nil then return U.failed(rv, msg, outmap) end
    outmap.num = out.num
    return kt.RVSUCCESS
  end)

  local function hashfields(name)
    return function(inmap)
      local names = {}
      for k in pairs(inmap) do
        if not HASH_SKIP[k] then names[#names + 1] = k end
      end
      return U.call(name,
        { key = inmap.table_key, db = inmap.db, fields = kt.arraydump(names) })
    end
  end

  U.wrap("hmget", U.hashcall, function(inmap, outmap)
    local out, rv, msg = hashfields("hmget")(inmap)
    if out == nil then return U.failed(rv, msg, outmap) end
    for k, v in pairs(kt.mapload(out.data or "")) do outmap[k] = v end
    return kt.RVSUCCESS
  end)

  U.wrap("hmdel", U.hashcall, function(inmap, outmap)
    local out, rv, msg = hashfields("hmdel")(inmap)
    if out == nil then return U.failed(rv, msg, outmap) end
    outmap.num = out.num
    return kt.RVSUCCESS
  end)

  U.wrap("hgetall", U.hashcall, function(inmap, outmap)
    local out, rv, msg = U.call("hgetall", { key = inmap.table_key, db = inmap.db })
    if out == nil then return U.failed(rv, msg, outmap) end
    if out.data ~= nil then
      for k, v in pairs(kt.mapload(out.data)) do outmap[k] = v end
    end
    return kt.RVSUCCESS
  end)

  -- ---------------------------------------------------------------- lists
  local function same(fields)
    return function(inmap)
      local args = { key = inmap.key, db = inmap.db }
      for _, f in ipairs(fields) do args[f] = inmap[f] end
      return args
    end
  end
  -- out-of-range index or empty source: ukt answers success without outputs
  U.simple("lindex", U.plaincall, function(inmap)
    return { key = inmap.key, db = inmap.db, index = inmap.index or "0" }
  end, { "value" }, true)
  U.simple("linsert", U.plaincall, same({ "index", "value" }), { "length" }, true)
  U.simple("lset", U.plaincall, same({ "index", "value" }), { "num" }, true)
  U.simple("lrem", U.plaincall, same({ "index" }), { "value" }, true)
  U.simple("llpoprpush", U.plaincall, same({ "dest" }), { "value" }, true)
  U.simple("lrpoplpush", U.plaincall, same({ "dest" }), { "value" }, true)

  U.wrap("lextend", U.itemscall, function(inmap, outmap)
    local out, rv, msg = U.call("lextend",
      { key = inmap.key, db = inmap.db, data = kt.arraydump(U.numbered(inmap)) })
    if out == nil then return U.failed(rv, msg, outmap) end
    outmap.length = out.length
    return kt.RVSUCCESS
  end)

  -- ukt's positions: 1-based index of a 0-based (negative: from the end) `s`
  -- within len items, or nil when outside (ukt does not clamp like Python).
  function U.position(len, s)
    local i = (tonumber(s or "0") or 0) + 1
    if i < 1 then i = len + i end
    if i < 1 or i > len then return nil end
    return i
  end

  -- The array at `key`, updated atomically by fn(array) -> changed; the record
  -- keeps its expiration time (a visitor's value without xt).
  function U.update(db, key, fn)
    return db:accept(key, function(k, v, xt)
      local a = v and kt.arrayload(v) or {}
      if not fn(a) then return kt.Visitor.NOP end
      return kt.arraydump(a)
    end, true)
  end

  -- lrange as ukt slices: a start before the first item gives nothing
  U.wrap("lrange", U.plaincall, function(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil or inmap.key == nil then return kt.RVEINVALID end
    local v = db:get(inmap.key)
    local a = v and kt.arrayload(v) or {}
    local n = #a
    local first = (tonumber(inmap.start or "0") or 0) + 1
    if first < 1 then first = n + first end
    if first < 1 then return kt.RVSUCCESS end
    local last = n
    if inmap.stop then
      last = tonumber(inmap.stop) or n
      if last < 0 then last = n + last end
    end
    local num = 0
    for i = first, math.min(last, n) do
      outmap[tostring(num)] = a[i]
      num = num + 1
    end
    return kt.RVSUCCESS
  end)

  -- lremrange as ukt: a start or stop outside the list is an error
  U.wrap("lremrange", U.plaincall, function(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil or inmap.key == nil then return kt.RVEINVALID end
    local bad, len = false, 0
    local ok = U.update(db, inmap.key, function(a)
      local first, last = 1, #a
      if inmap.start then
        first = U.position(#a, inmap.start)
        if first == nil then bad = true; return false end
      end
      if inmap.stop then
        last = U.position(#a, inmap.stop)
        if last == nil then bad = true; return false end
        if last > 0 then last = last - 1 end
      end
      if first > last then first, last = last, first end
      local removed = false
      for i = last, math.max(first, 1), -1 do
        if a[i] ~= nil then table.remove(a, i); removed = true end
      end
      len = #a
      return removed
    end)
    if bad then return kt.RVELOGIC end
    if not ok then return kt.RVEINTERNAL end
    outmap.length = tostring(len)
    return kt.RVSUCCESS
  end)

  -- ----------------------------------------------------------------- sets
  local SET_SKIP = { key = true, db = true }
  local function members(name)
    U.wrap(name, U.itemscall, function(inmap, outmap)
      local out, rv, msg = U.call(name,
        { key = inmap.key, db = inmap.db, data = kt.arraydump(U.rest(inmap, SET_SKIP)) })
      if out == nil then return U.failed(rv, msg, outmap) end
      outmap.num = out.num
      return kt.RVSUCCESS
    end)
  end
  members("sadd")
  members("srem")

  U.wrap("smembers", U.plaincall, function(inmap, outmap)
    local out, rv, msg = U.call("smembers", { key = inmap.key, db = inmap.db })
    if out == nil then return U.failed(rv, msg, outmap) end
    U.spread(kt.arrayload(out.data), outmap)
    return kt.RVSUCCESS
  end)

  -- spop: ukt also wants num (1 when a member was popped); harmless for ours
  local spop_mine = _G.spop
  spop = function(inmap, outmap)
    local rv = spop_mine(inmap, outmap)
    if outmap.error == nil then outmap.num = outmap.value ~= nil and "1" or "0" end
    return rv
  end

  local function algebra(name)
    U.wrap(name, U.pair, function(inmap, outmap)
      local out, rv, msg = U.call(name, { key = inmap.key, db = inmap.db,
        keys = kt.arraydump({ inmap.key2 }), dest = inmap.dest })
      if out == nil then return U.failed(rv, msg, outmap) end
      U.spread(kt.arrayload(out.data), outmap)
      return kt.RVSUCCESS
    end)
  end
  algebra("sinter")
  algebra("sunion")
  algebra("sdiff")

  -- ------------------------------------------ expiration and errors (ukt names)
  -- ukt's touch_bulk: inputs are key = new xt (as the wire: < 0 absolute,
  -- else relative); outputs key = old absolute xt, for the keys that exist.
  function touch_bulk(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil then return kt.RVEINVALID end
    local keys = {}
    for k in pairs(inmap) do if k ~= "db" then keys[#keys + 1] = k end end
    if #keys == 0 then return kt.RVSUCCESS end
    local ok = db:accept_bulk(keys, function(k, v, xt)
      if v == nil then return kt.Visitor.NOP end
      outmap[k] = string.format("%.0f", xt)
      return v, tonumber(inmap[k])
    end, true)
    if not ok then return kt.RVEINTERNAL end
    return kt.RVSUCCESS
  end

  -- ukt's touch_bulk_relative: key = seconds to add; outputs key = new xt.
  function touch_bulk_relative(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil then return kt.RVEINVALID end
    local keys = {}
    for k in pairs(inmap) do if k ~= "db" then keys[#keys + 1] = k end end
    if #keys == 0 then return kt.RVSUCCESS end
    local ok = db:accept_bulk(keys, function(k, v, xt)
      if v == nil then return kt.Visitor.NOP end
      local nxt = xt + (tonumber(inmap[k]) or 0)
      outmap[k] = string.format("%.0f", nxt)
      if xt >= XTMAX then return v end  -- no expiry stays none
      return v, -math.max(nxt, 1)
    end, true)
    if not ok then return kt.RVEINTERNAL end
    return kt.RVSUCCESS
  end

  function expire_time(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil or inmap.key == nil then return kt.RVEINVALID end
    local v, xt = db:get(inmap.key)
    if v ~= nil then outmap.xt = string.format("%.0f", xt or XTMAX) end
    return kt.RVSUCCESS
  end

  U.ERRNAMES = {}
  for code, name in pairs({ SUCCESS = "success", NOIMPL = "noimpl", INVALID = "invalid",
      NOREPOS = "norepos", NOPERM = "noperm", BROKEN = "broken", DUPREC = "duprec",
      NOREC = "norec", LOGIC = "logic", SYSTEM = "system", MISC = "misc" }) do
    if kt.Error[code] ~= nil then U.ERRNAMES[kt.Error[code]] = name end
  end

  function get_error(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil then return kt.RVEINVALID end
    local e = db:error()
    if e then
      outmap.code = tostring(e:code())
      outmap.message = U.ERRNAMES[e:code()] or tostring(e:name())
    end
    return kt.RVSUCCESS
  end

  -- ------------------------------------------------------- queues (ukt layout)
  function U.itemkey(name, stored, id)
    return string.format("%s\t%012.0f%012.0f", name, stored, id)
  end

  -- Visit the items of queue `name` from the head (or the tail), calling
  -- fn(cursor, key, value, score) -> continue, counted; at most n counted
  -- (n < 0: no limit).  fn moves the cursor (step or remove).  Returns the count.
  function U.walk(db, name, n, fromtail, fn)
    local prefix = name .. "\t"
    local first = #prefix + 1
    local cur = db:cursor()
    local ok
    if fromtail then ok = cur:jump_back(prefix .. "\255") else ok = cur:jump(prefix) end
    local count = 0
    while ok and n ~= 0 do
      local k, v = cur:get(false)
      if k == nil or string.sub(k, 1, #prefix) ~= prefix then break end
      local score = U.SPLIT - (tonumber(string.sub(k, first, first + 11)) or 0)
      local more, counted = fn(cur, k, v, score)
      if counted then count = count + 1; n = n - 1 end
      ok = more
    end
    cur:disable()
    return count
  end

  function U.queue(required, body)
    return function(inmap, outmap)
      local db = selectdb(inmap)
      if db == nil then return kt.RVEINVALID end
      for _, f in ipairs(required) do
        if inmap[f] == nil then return kt.RVEINVALID end
      end
      return body(db, inmap, outmap) or kt.RVSUCCESS
    end
  end

  function U.enqueue(db, name, stored, value)
    local id = db:increment_double(name, 1)
    if id == nil then return nil end
    if not db:add(U.itemkey(name, stored, id), value) then return nil end
    return id
  end

  queue_add = U.queue({ "queue", "data" }, function(db, i, o)
    local id = U.enqueue(db, i.queue, U.SPLIT - (tonumber(i.score) or 0), i.data)
    if id == nil then return kt.RVELOGIC end
    o.id = string.format("%.0f", id)
  end)

  queue_madd = U.queue({ "queue" }, function(db, i, o)
    local stored = U.SPLIT - (tonumber(i.score) or 0)
    local items = U.numbered(i)
    for _, v in ipairs(items) do
      if U.enqueue(db, i.queue, stored, v) == nil then return kt.RVELOGIC end
    end
    o.num = tostring(#items)
  end)

  -- pop, rpop, peek, rpeek: up to n items (default 1) with score >= min_score
  function U.taker(fromtail, remove)
    return U.queue({ "queue" }, function(db, i, o)
      local low = tonumber(i.min_score)
      local num = 0
      U.walk(db, i.queue, tonumber(i.n or 1) or 1, fromtail, function(cur, k, v, score)
        local move = fromtail and cur.step_back or cur.step
        if low ~= nil and score < low then return move(cur), false end
        o[tostring(num)] = v
        num = num + 1
        if remove then return cur:remove(), true end
        return move(cur), true
      end)
    end)
  end
  queue_pop = U.taker(false, true)
  queue_rpop = U.taker(true, true)
  queue_peek = U.taker(false, false)
  queue_rpeek = U.taker(true, false)

  -- bpop: pop one item, polling (as ukt's script does) until `timeout` seconds
  queue_bpop = U.queue({ "queue" }, function(db, i, o)
    local low = tonumber(i.min_score)
    local deadline = i.timeout and (kt.time() + (tonumber(i.timeout) or 0)) or nil
    local pause = 0.1
    local function take(cur, k, v, score)
      if low ~= nil and score < low then return cur:step(), false end
      o["0"] = v
      return cur:remove(), true
    end
    while U.walk(db, i.queue, 1, false, take) == 0 do
      if deadline and kt.time() >= deadline then break end
      kt.sleep(pause)
      pause = math.min(pause * 1.15, 1)
    end
  end)

  function U.remover(fromtail)
    return U.queue({ "queue", "data" }, function(db, i, o)
      local low = tonumber(i.min_score)
      o.num = tostring(U.walk(db, i.queue, tonumber(i.n or -1) or -1, fromtail,
        function(cur, k, v, score)
          local move = fromtail and cur.step_back or cur.step
          if (low == nil or score >= low) and v == i.data then return cur:remove(), true end
          return move(cur), false
        end))
    end)
  end
  queue_remove = U.remover(false)
  queue_rremove = U.remover(true)

  queue_set_score = U.queue({ "queue", "data", "score" }, function(db, i, o)
    local new = tonumber(i.score) or 0
    local idat = #i.queue + 2 + 12
    local moved, gone = {}, {}
    U.walk(db, i.queue, tonumber(i.n or -1) or -1, false, function(cur, k, v, score)
      if v == i.data and score ~= new then
        local id = tonumber(string.sub(k, idat, idat + 11)) or 0
        moved[U.itemkey(i.queue, U.SPLIT - new, id)] = v
        gone[#gone + 1] = k
        return cur:step(), true
      end
      return cur:step(), false
    end)
    if #gone > 0 then
      db:remove_bulk(gone)
      db:set_bulk(moved)
    end
    o.num = tostring(#gone)
  end)

  queue_transfer = U.queue({ "queue", "dest" }, function(db, i, o)
    if i.queue == i.dest then return kt.RVELOGIC end
    local num, failed = 0, false
    U.walk(db, i.queue, tonumber(i.n or 1) or 1, false, function(cur, k, v, score)
      if U.enqueue(db, i.dest, U.SPLIT - score, v) == nil then
        failed = true
        return false, false
      end
      o[tostring(num)] = v
      num = num + 1
      return cur:remove(), true
    end)
    if failed then return kt.RVELOGIC end
  end)

  queue_size = U.queue({ "queue" }, function(db, i, o)
    o.num = tostring(#db:match_prefix(i.queue .. "\t"))
  end)

  queue_clear = U.queue({ "queue" }, function(db, i, o)
    local keys = db:match_prefix(i.queue .. "\t")
    db:remove_bulk(keys)
    db:remove(i.queue)
    o.num = tostring(#keys)
  end)

  -- ---------------------------------------------------- schedules (ukt layout)
  schedule_add = U.queue({ "key", "value" }, function(db, i, o)
    local id = db:increment_double(i.key, 1)
    if id == nil then return kt.RVELOGIC end
    local k = U.itemkey(i.key, tonumber(i.score) or 0, id)
    if not db:add(k, i.value) then return kt.RVELOGIC end
    o.key = k
  end)

  -- read (and remove) up to n items whose score <= score, lowest first
  schedule_read = U.queue({ "key" }, function(db, i, o)
    local high = tonumber(i.score) or 0xffffffff
    local num = 0
    -- U.walk reports queue scores (SPLIT - stored); a schedule stores its score as is
    U.walk(db, i.key, tonumber(i.n or -1) or -1, false, function(cur, k, v, score)
      if U.SPLIT - score > high then return false, false end
      o[tostring(num)] = v
      num = num + 1
      return cur:remove(), true
    end)
  end)

  -- ------------------------------------------------ ukt's record helpers
  -- list: every record of the database (ukt's script has the same)
  function list(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil then return kt.RVEINVALID end
    local cur = db:cursor()
    local ok = cur:jump()
    while ok do
      local k, v = cur:get(true)
      if k == nil then break end
      outmap[k] = v
    end
    cur:disable()
    return kt.RVSUCCESS
  end

  -- get_range: records with start <= key <= stop in key order (tree database)
  function get_range(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil then return kt.RVEINVALID end
    local cur = db:cursor()
    local ok
    if inmap.start then ok = cur:jump(inmap.start) else ok = cur:jump() end
    while ok do
      local k, v = cur:get(true)
      if k == nil or (inmap.stop and k > inmap.stop) then break end
      outmap[k] = v
    end
    cur:disable()
    return kt.RVSUCCESS
  end

  -- get_part: value[start:stop] with Python's slice rules
  function get_part(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil or inmap.key == nil then return kt.RVEINVALID end
    local v = db:get(inmap.key)
    if v == nil then return kt.RVSUCCESS end
    local n = #v
    local function bound(s, default)
      local i = tonumber(s)
      if i == nil then return default end
      if i < 0 then i = math.max(n + i, 0) end
      return math.min(i, n)
    end
    outmap.value = string.sub(v, bound(inmap.start, 0) + 1, bound(inmap.stop, n))
    return kt.RVSUCCESS
  end

  -- move: rename src to dest (value and expiration); RVELOGIC when src is missing
  function move(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil or inmap.src == nil or inmap.dest == nil then return kt.RVEINVALID end
    if inmap.src == inmap.dest then
      return db:get(inmap.src) ~= nil and kt.RVSUCCESS or kt.RVELOGIC
    end
    local value, xt
    local ok = db:accept_bulk({ inmap.src, inmap.dest }, function(k, v, x)
      if k == inmap.src then
        if v == nil then return kt.Visitor.NOP end
        value, xt = v, x
        return kt.Visitor.REMOVE
      end
      if value == nil then return kt.Visitor.NOP end
      return value, -xt
    end, true)
    if not ok then return kt.RVEINTERNAL end
    if value == nil then return kt.RVELOGIC end
    return kt.RVSUCCESS
  end

  -- ----------------------------------------------- ukt's hexastore (hx_*)
  -- Each triple (s, p, o) is stored three times, as empty records named
  -- "spo::s::p::o", "pos::p::o::s" and "osp::o::s::p", so any one or two known
  -- parts are a key prefix (a tree database is needed for queries).
  U.HX = { spo = { "s", "p", "o" }, pos = { "p", "o", "s" }, osp = { "o", "s", "p" } }

  function U.hxkeys(t)
    local keys = {}
    for name, order in pairs(U.HX) do
      keys[#keys + 1] = table.concat({ name, t[order[1]], t[order[2]], t[order[3]] }, "::")
    end
    return keys
  end

  function U.hxtriple(inmap)
    local db = selectdb(inmap)
    if db == nil or not (inmap.s and inmap.p and inmap.o) then return nil end
    return db, { s = inmap.s, p = inmap.p, o = inmap.o }
  end

  function hx_add(inmap, outmap)
    local db, t = U.hxtriple(inmap)
    if db == nil then return kt.RVEINVALID end
    local recs = {}
    for _, k in ipairs(U.hxkeys(t)) do recs[k] = "" end
    if db:set_bulk(recs) < 0 then return kt.RVEINTERNAL end
    return kt.RVSUCCESS
  end

  function hx_remove(inmap, outmap)
    local db, t = U.hxtriple(inmap)
    if db == nil then return kt.RVEINVALID end
    db:remove_bulk(U.hxkeys(t))
    return kt.RVSUCCESS
  end

  -- hx_query: the unknown parts of every matching triple as s0, p0, o0, s1...
  function hx_query(inmap, outmap)
    local db = selectdb(inmap)
    if db == nil or not (inmap.s or inmap.p or inmap.o) then return kt.RVEINVALID end
    if inmap.s and inmap.p and inmap.o then
      local k = table.concat({ "spo", inmap.s, inmap.p, inmap.o }, "::")
      if db:get(k) ~= nil then outmap["0"] = "" end
      return kt.RVSUCCESS
    end
    -- the index whose leading parts are exactly the known ones
    local known = {}
    for _, part in ipairs({ "s", "p", "o" }) do known[part] = inmap[part] ~= nil end
    local count = (known.s and 1 or 0) + (known.p and 1 or 0) + (known.o and 1 or 0)
    local name, order
    for n, o in pairs(U.HX) do
      local fits = true
      for i = 1, 3 do
        if (i <= count) ~= known[o[i]] then fits = false end
      end
      if fits then name, order = n, o end
    end
    local parts = { name }
    for i = 1, 3 do
      if known[order[i]] then parts[#parts + 1] = inmap[order[i]] end
    end
    local prefix = table.concat(parts, "::") .. "::"
    local cur = db:cursor()
    local ok = cur:jump(prefix)
    local num = 0
    while ok do
      local k = cur:get_key()
      if k == nil or string.sub(k, 1, #prefix) ~= prefix then break end
      local fields, pos = {}, #name + 3
      for i = 1, 2 do
        local e = string.find(k, "::", pos, true)
        if e == nil then break end
        fields[i] = string.sub(k, pos, e - 1)
        pos = e + 2
      end
      fields[3] = string.sub(k, pos)
      for i = 1, 3 do
        if not known[order[i]] then outmap[order[i] .. tostring(num)] = fields[i] end
      end
      num = num + 1
      ok = cur:step()
    end
    cur:disable()
    return kt.RVSUCCESS
  end

  -- ------------------------------------------------------------ detection
  local version_mine = _G.ktstoreversion
  ktstoreversion = function(inmap, outmap)
    local rv = version_mine(inmap, outmap)
    outmap.ukt = U.VERSION
    return rv
  end

  -- ------------------------------------------- one error convention (guard)
  for name, fn in pairs(_G) do
    if not U.before[name] and type(fn) == "function" then _G[name] = guard(name, fn) end
  end
end
-- ==== ktstore.ukt: end ====

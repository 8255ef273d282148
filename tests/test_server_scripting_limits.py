"""The Lua host's budgets reach into C functions (issue 9: "Lua cannot escape its budget").

Lua's count hook never fires inside a C function, so the host replaces the
ones that can run long (``budget.lua``): pattern calls whose worst case is
expensive run in a Lua copy of the matcher (``patterns.lua``), which must
agree with the C matcher; other C work is counted so loops of C calls are
checked against the clock too.
"""

from __future__ import annotations

import gc
import random
import socket
import threading
import time
import tracemalloc
import weakref
import zlib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from ktstore.server.database import Database
from ktstore.server.scripting import (
    RV_INTERNAL,
    RV_SUCCESS,
    RV_TIMEOUT,
    ScriptHost,
    client_gone,
    engine,
)

ENGINES = engine.PREFERRED

# ------------------------------------------------- the Lua matcher against C

_COMPARE = """
local P = ...
local function pack(ok, ...) return {ok = ok, n = select("#", ...), ...} end
local function same(a, b)
  if a.ok ~= b.ok then return false end
  if not a.ok then
    -- C errors may carry a location prefix, ours do not
    return (tostring(a[1]):gsub("^[^:]*:%d+: ", "")) == tostring(b[1])
  end
  if a.n ~= b.n then return false end
  for i = 1, a.n do if a[i] ~= b[i] then return false end end
  return true
end
local function show(r)
  local t = {tostring(r.ok)}
  for i = 1, r.n or 0 do t[#t + 1] = string.format("%q", tostring(r[i])) end
  return table.concat(t, ",")
end
local function collect(f, s, p)
  return pack(pcall(function()
    local out, n = {}, 0
    for a, b in f(s, p) do
      n = n + 1
      out[n] = tostring(a) .. "|" .. tostring(b)
      if n > 50 then break end
    end
    return table.concat(out, ";")
  end))
end
local function fn(...) return select("#", ...) .. ":" .. table.concat({...}, "/") end
local tbl = {a = "A", b = false, ab = 7}
return function(kind, s, p, a3, a4)
  local c, l
  if kind == "gmatch" then
    c, l = collect(string.gmatch, s, p), collect(P.gmatch, s, p)
  elseif kind == "gsubf" or kind == "gsubt" then
    local r = kind == "gsubf" and fn or tbl
    c, l = pack(pcall(string.gsub, s, p, r, a4)), pack(pcall(P.gsub, s, p, r, a4))
  else
    c, l = pack(pcall(string[kind], s, p, a3, a4)), pack(pcall(P[kind], s, p, a3, a4))
  end
  if same(c, l) then return nil end
  return show(c) .. " vs " .. show(l)
end
"""

_ATOMS = [
    "a",
    "b",
    ".",
    "%a",
    "%d",
    "%s",
    "%w",
    "[ab]",
    "[^a]",
    "[a-c]",
    "%%",
    "%.",
    "x",
    "[%a_]",
    "%A",
    "[]a]",
    "[^]]",
]


def _pattern(rnd: random.Random) -> str:
    parts = ["^"] if rnd.random() < 0.2 else []
    depth = 0
    for _ in range(rnd.randint(0, 5)):
        r = rnd.random()
        if r < 0.1 and depth < 3:
            parts.append("(")
            depth += 1
        elif r < 0.17 and depth:
            parts.append(")")
            depth -= 1
        elif r < 0.2:
            parts.append("()")
        elif r < 0.23:
            parts.append("%b()")
        elif r < 0.26:
            parts.append("%f[%w]")
        elif r < 0.29:
            parts.append("%" + str(rnd.randint(1, 2)))
        else:
            parts.append(rnd.choice(_ATOMS) + rnd.choice(["", "", "*", "+", "-", "?"]))
    if rnd.random() < 0.1:
        parts.append(")" * depth)
    if rnd.random() < 0.15:
        parts.append("$")
    if rnd.random() < 0.03:
        parts.append(rnd.choice(["%", "[a", "%f", "%b("]))
    return "".join(parts)


def _subject(rnd: random.Random) -> str:
    return "".join(rnd.choice("aabbc x_(1)9.%^$\xe9") for _ in range(rnd.randint(0, 12)))


@pytest.mark.parametrize("name", ENGINES)
def test_lua_matcher_agrees_with_the_c_matcher(name: str) -> None:
    """Random patterns (captures, %b, %f, back-references, anchors, every
    quantifier, malformed ones) on random subjects: same results, same errors."""
    lua = engine.load(name).LuaRuntime(encoding="latin-1")
    source = resources.files("ktstore.server.scripting").joinpath("patterns.lua").read_text()
    check = lua.execute(_COMPARE, lua.execute(source))
    rnd = random.Random(20261130)
    mismatches = []
    for _ in range(4000):
        kind = rnd.choice(["find", "find", "match", "gmatch", "gsub", "gsubf", "gsubt"])
        s, p = _subject(rnd), _pattern(rnd)
        a3: Any = None
        a4: Any = None
        if kind in ("find", "match") and rnd.random() < 0.4:
            a3 = rnd.randint(-15, 15)
        if kind == "find" and rnd.random() < 0.2:
            a4 = True
        if kind == "gsub":
            a3 = rnd.choice(["<%0>", "%1-%2", "%%", "z", "%", "%a", 5])
        if kind.startswith("gsub") and rnd.random() < 0.3:
            a4 = rnd.randint(-1, 3)
        diff = check(kind, s, p, a3, a4)
        if diff is not None:
            mismatches.append((kind, s, p, a3, a4, diff))
    assert mismatches == []


# ------------------------------------------------------------ through a host

SCRIPT = r"""
function eval(inmap, outmap)
  local fn = assert(loadstring(inmap.code))
  local res = {fn(inmap, outmap)}
  for i = 1, #res do outmap[tostring(i)] = tostring(res[i]) end
end
function ok(inmap, outmap) outmap.ok = "yes" end
function thid(inmap, outmap) outmap.thid = kt.thid end
kt = __kyototycoon__
"""


@pytest.fixture(params=ENGINES)
def make_host(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    def make(**kw: Any) -> ScriptHost:
        path = tmp_path / "limits.lua"
        path.write_text(SCRIPT)
        kw.setdefault("runtime", request.param)
        return ScriptHost(str(path), [Database(":")], ["x"], log=lambda k, m: None, **kw)

    return make


def _eval(host: ScriptHost, code: str) -> tuple[int, dict[bytes, bytes]]:
    rv, outputs = host.call(b"eval", [(b"code", code.encode())])
    return rv, dict(outputs)


def test_guarded_calls_keep_their_results(make_host: Any) -> None:
    """Calls on both sides of the cost line (C, or the Lua matcher for the costly
    ones) answer what the plain C functions of the same engine answer."""
    host = make_host(timeout=30.0)
    big = "k1=v1; " * 3000  # (%w+)=(%w+) over 21 kB: too costly for C, runs in Lua
    code = f"""
    local big = {big!r}
    local small = "k1=v1; k2=v2"
    local n1 = 0
    for k, v in big:gmatch("(%w+)=(%w+)") do n1 = n1 + 1 end
    local a, b, c, d = big:find("(%w+)=(v%d)", 100)
    local e = select(2, big:gsub("(%w+)=(%w+)", "%2=%1"))
    local f = big:match("()k1=(%w+)$") or "none"
    local g = small:gsub("(%w+)=(%w+)", "%2=%1")
    local h = small:find("=", 1, true)
    local i = string.rep("ab", 3)
    local j = string.find(12345, 34)
    local k = big:find("v1; k1=v1; k1=v1; k1=v2", 1, true)
    local l = string.match(big, "^(k%d)")
    local m = big:find(" k1=v1;", 20000, true)
    local t = {{}}
    for x, y in pairs({{n1, a, b, c, d, e, f, g, h, i, j, k, l, m}}) do t[#t + 1] = x .. "=" .. y end
    table.sort(t)
    return table.concat(t, ",")
    """
    rv, out = _eval(host, code)
    assert rv == RV_SUCCESS
    plain = engine.load(host.lua_module.__name__.split(".")[-1]).LuaRuntime(encoding=None)
    expected = plain.execute(code)
    assert out[b"1"] == expected
    assert b"13=k1" in expected and b"12=" not in expected and b"14=20006" in expected


PATHOLOGICAL = "string.find(string.rep('a', 60), string.rep('a-', 8) .. 'b')"


@pytest.mark.parametrize(
    "code",
    [
        PATHOLOGICAL,
        "pcall(string.gsub, string.rep('a', 40), string.rep('(a*)', 9) .. 'b', 'x')",
        "for w in string.gmatch(string.rep('ab', 30), string.rep('%w-', 8) .. '!') do end",
        # each call is cheap enough for C, the loop of them is not
        "local s = string.rep('a', 3000) for i = 1, 1e9 do s:find('a*b') end",
        "local s = string.rep('x', 1e6) for i = 1, 1e9 do local t = s:upper() end",
        "local t = {} for i = 1, 4e5 do t[i] = i end for i = 1, 1e9 do table.insert(t, 1, i) end",
        # the dump codecs may be compiled by LuaJIT: their work is counted instead
        "local s = kt.mapdump({a = string.rep('x', 1e6)}) while true do kt.mapload(s) end",
        "local t = {} for i = 1, 1e5 do t[i] = 'v' .. i end while true do kt.arraydump(t) end",
        # script code loaded at run time is never compiled either
        "local parts = {'while true do end'} load(function() return table.remove(parts) end)()",
        "loadstring('local x = 0 for i = 1, 1e15 do x = x + i end')()",
    ],
)
def test_c_functions_are_stopped_in_time(make_host: Any, code: str) -> None:
    host = make_host(timeout=0.3)
    start = time.monotonic()
    rv, _ = _eval(host, "while true do pcall(function() " + code + " end) end")
    assert rv == RV_TIMEOUT
    assert time.monotonic() - start < 2.5
    assert host.call(b"ok", []) == (RV_SUCCESS, [(b"ok", b"yes")])


def test_timed_out_state_is_discarded(make_host: Any) -> None:
    host = make_host(timeout=0.3)
    before = dict(host.call(b"thid", []).outputs)[b"thid"]
    assert _eval(host, "return " + PATHOLOGICAL)[0] == RV_TIMEOUT
    assert host.pool_size == 0  # the interrupted state did not go back to the pool
    after = dict(host.call(b"thid", []).outputs)[b"thid"]
    assert after != before


def test_string_rep_is_bounded(make_host: Any) -> None:
    host = make_host(timeout=5.0, max_memory=64 << 20)
    start = time.monotonic()
    rv, out = _eval(host, "return #string.rep('', 1e15), #string.rep('x', 0), #string.rep('x', -3)")
    assert (rv, out) == (RV_SUCCESS, {b"1": b"0", b"2": b"0", b"3": b"0"})
    rv, out = _eval(host, "return pcall(string.rep, 'abc', 1e12)")
    assert rv == RV_SUCCESS and out[b"1"] == b"false" and b"not enough memory" in out[b"2"]
    assert time.monotonic() - start < 2
    rv, _ = _eval(host, "local s = string.rep('x', 2^40)")
    assert rv == RV_INTERNAL


def test_large_sort_stays_correct_and_interruptible(make_host: Any) -> None:
    host = make_host(timeout=30.0)
    code = (
        "local t = {} for i = 1, 6e5 do t[i] = (i * 7919) % 600011 end table.sort(t)"
        " for i = 2, #t do if t[i - 1] > t[i] then return 'unsorted' end end return #t"
    )
    assert _eval(host, code) == (RV_SUCCESS, {b"1": b"600000"})
    host = make_host(timeout=0.3)
    start = time.monotonic()
    assert _eval(host, code)[0] == RV_TIMEOUT
    assert time.monotonic() - start < 2.5


# ----------------------------------------------------------------- memory

MEMORY_SCRIPT = """
kt = __kyototycoon__
function hold(inmap, outmap)
  -- take about inmap.mb MiB (distinct strings: Lua interns equal ones), keep
  -- it while the other calls run
  local t = {}
  local ok = pcall(function()
    local mb = string.rep("x", 1048576 - 64)
    for i = 1, tonumber(inmap.mb) do t[i] = mb .. i end
  end)
  kt.sleep(tonumber(inmap.hold or 0))
  outmap.ok = tostring(ok)
end
function keep(inmap, outmap)
  kept = {}
  local mb = string.rep("y", 1048576 - 64)
  for i = 1, tonumber(inmap.mb) do kept[i] = mb .. i end
  kt.sleep(tonumber(inmap.hold or 0))
end
function keepwait(inmap, outmap)
  -- keep inmap.mb MiB, then wait (up to 10 s) until the call named other is running too
  keep(inmap, outmap)
  kt.db:set(inmap.me, "here")
  for i = 1, 1000 do
    if kt.db:get(inmap.other) then return end
    kt.sleep(0.01)
  end
end
function small(inmap, outmap) outmap.n = #string.rep("x", 1048576) end
function spin() while true do end end
"""


@pytest.fixture(params=ENGINES)
def memory_host(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    def make(**kw: Any) -> ScriptHost:
        path = tmp_path / "memory.lua"
        path.write_text(MEMORY_SCRIPT)
        kw.setdefault("runtime", request.param)
        return ScriptHost(str(path), [Database(":")], ["x"], log=lambda k, m: None, **kw)

    return make


def test_total_memory_bounds_all_states_together(memory_host: Any) -> None:
    """Four concurrent calls each want 30 MiB of a 64 MiB total: together they
    never hold more than the total, and not all of them can succeed."""
    total = 64 << 20
    host = memory_host(total_memory=total, timeout=10.0)
    results: list[bytes] = []
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, host.memory_used())
            time.sleep(0.002)

    def worker() -> None:
        res = host.call(b"hold", [(b"mb", b"30"), (b"hold", b"0.3")])
        results.append(dict(res.outputs).get(b"ok", b"error"))

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    stop.set()
    watcher.join()
    assert len(results) == 4
    assert peak <= total
    assert results.count(b"true") < 4
    # once they are done, a call gets the memory back
    assert host.call(b"hold", [(b"mb", b"30")]).outputs == [(b"ok", b"true")]


def test_idle_states_give_way_to_running_calls(memory_host: Any) -> None:
    """Two pooled states keep 20 MiB each (in a global) of a 64 MiB total; a call
    needing 30 MiB more gets it because the other idle state is evicted."""
    host = memory_host(total_memory=64 << 20)

    def worker(me: bytes, other: bytes) -> None:
        host.call(b"keepwait", [(b"mb", b"20"), (b"me", me), (b"other", other)])

    threads = [threading.Thread(target=worker, args=p) for p in ((b"a", b"b"), (b"b", b"a"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert host.pool_size == 2 and host.memory_used() > 40 << 20
    assert host.call(b"hold", [(b"mb", b"30")]).outputs == [(b"ok", b"true")]
    assert host.pool_size == 1 and host.memory_used() < 25 << 20


def test_per_state_limit_still_applies(memory_host: Any) -> None:
    host = memory_host(max_memory=16 << 20, total_memory=1 << 30)
    assert host.call(b"hold", [(b"mb", b"30")]).outputs == [(b"ok", b"false")]
    assert host.call(b"small", []).outputs == [(b"n", b"1048576")]


@pytest.mark.parametrize("how", ["timeout", "memory error", "reload", "close"])
def test_discarded_states_are_freed_at_once(memory_host: Any, how: str) -> None:
    """With Python's cyclic collector off, a dropped state is closed (lua_close
    frees its memory and releases the Python objects its registry held) as
    soon as the host lets go of it."""
    host = memory_host(timeout=5.0, total_memory=200 << 20)
    primitives = weakref.ref(host._idle[-1].prims)  # the state the next call takes
    gc.disable()
    try:
        # 100 MiB in a global, kept by the pooled state
        assert host.call(b"keep", [(b"mb", b"100")]).rv == RV_SUCCESS
        assert host.memory_used() > 100 << 20
        if how == "timeout":
            host.timeout = 0.2
            assert host.call(b"spin", []).rv == RV_TIMEOUT
        elif how == "memory error":
            assert host.call(b"keep", [(b"mb", b"400")]).rv == RV_INTERNAL
        elif how == "reload":
            assert host.reload()
        else:
            host.close()
        assert primitives() is None
        if how != "close":
            assert host.memory_used() < 2 << 20
    finally:
        gc.enable()


def test_decompression_is_bounded_by_the_state_limit(memory_host: Any) -> None:
    """kt.codec runs in Python, outside Lua's allocator: its output is bounded
    by the state's limit all the same (a few kB of deflate can inflate to GBs)."""
    host = memory_host(max_memory=32 << 20)
    bomb = zlib.compress(b"\0" * (64 << 20), 9)[2:-4]  # raw deflate, as kt.codec's 'zlib'
    code = b"return #kt.codec('~zlib', (...).data), #kt.codec('~zlib', kt.codec('zlib', 'ok'))"
    path = Path(host.script_path)
    path.write_text(
        path.read_text()
        + "function ev(i, o) o.r = table.concat({loadstring(i.code)(i)}, ',') end\n"
    )
    host.reload()
    tracemalloc.start()
    try:
        res = host.call(b"ev", [(b"code", code), (b"data", bomb)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.rv == RV_INTERNAL and "memory" in (res.error or "")
    assert peak < 48 << 20  # never the whole 64 MiB
    code = b"return #kt.codec('~zlib', kt.codec('zlib', string.rep('x', 1000)))"
    assert host.call(b"ev", [(b"code", code)]).outputs == [(b"r", b"1000")]


def test_cancelled_call_ends_at_once(memory_host: Any) -> None:
    host = memory_host(timeout=30.0)
    gone = threading.Event()
    threading.Timer(0.2, gone.set).start()
    start = time.monotonic()
    res = host.call(b"hold", [(b"mb", b"1"), (b"hold", b"0")], cancel=gone.is_set)
    assert res.rv == RV_SUCCESS  # a call that finishes is not disturbed
    res = host.call(b"spin", [], cancel=lambda: time.monotonic() - start > 0.3)
    assert res.rv == RV_TIMEOUT and "client" in (res.error or "")
    assert time.monotonic() - start < 3


def test_client_gone() -> None:
    a, b = socket.socketpair()
    gone = client_gone(a)
    assert not gone()  # connected, nothing sent
    b.sendall(b"next request")
    assert not gone()  # pipelined bytes are not a hang-up
    assert a.recv(100) == b"next request"
    b.close()
    assert gone()
    a.close()
    assert gone()


def test_call_ends_when_the_client_leaves(memory_host: Any) -> None:
    """A spinning call stops soon after its client closes the connection."""
    host = memory_host(timeout=30.0)
    a, b = socket.socketpair()
    threading.Timer(0.3, b.close).start()
    start = time.monotonic()
    res = host.call(b"spin", [], cancel=client_gone(a))
    assert res.rv == RV_TIMEOUT and "client" in (res.error or "")
    assert time.monotonic() - start < 3
    a.close()


# --------------------------------------------------------------------------- in the server


@pytest.mark.parametrize("over", ["binary", "http"])
def test_server_stops_a_lua_call_whose_client_left(tmp_path: Any, over: str) -> None:
    """The server passes client_gone to the host: a spinning procedure ends soon after
    its client closes the connection, over both protocols (no core kept busy)."""
    from ktstore.protocol import binary
    from ktstore.server import Server

    script = tmp_path / "spin.lua"
    script.write_text("function spin(inmap, outmap) while true do end end\n")
    log = tmp_path / "server.log"
    server = Server(["*"], host="127.0.0.1", port=0, script=str(script), args=["-log", str(log)])
    server.start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port))
        if over == "binary":
            sock.sendall(binary.encode_play_script(b"spin", [], False))
        else:
            sock.sendall(b"GET /rpc/play_script?name=spin HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        sock.close()
        deadline = time.monotonic() + 10  # far below the host's 30 s time limit
        while "client has gone" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        server.stop()


def test_scr_mem_option() -> None:
    from ktstore.server.config import UsageError, parse_args

    assert parse_args(["-scr-mem", "512m"]).script_memory == 512 << 20
    assert parse_args([]).script_memory == 1 << 30
    with pytest.raises(UsageError):
        parse_args(["-scr-mem", "10"])

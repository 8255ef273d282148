"""Unit tests of the Lua scripting host, run directly against Database objects.

Each test writes a small script, builds a ScriptHost over fresh in-memory
databases and calls procedures the way the server does.  Expected values come
from docs/protocol.md and the conformance recordings.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import KT_LUA

from ktstore.protocol import dumps
from ktstore.protocol.limits import XTMAX
from ktstore.server.database import Database
from ktstore.server.scripting import (
    RV_INTERNAL,
    RV_NOIMPL,
    RV_SUCCESS,
    RV_TIMEOUT,
    ScriptHost,
    engine,
)

HEADER = "kt = __kyototycoon__\ndb = kt.db\n"

# a generic procedure: run the Lua chunk in inmap.code, put its results in outmap
EVAL = """
function eval(inmap, outmap)
  local fn = assert(loadstring(inmap.code))
  local res = {fn(inmap, outmap)}
  for i = 1, #res do outmap[tostring(i)] = res[i] end
  return kt.RVSUCCESS
end
"""


class Env:
    def __init__(self, host: ScriptHost, dbs: list[Database], logs: list[tuple[str, str]]):
        self.host = host
        self.dbs = dbs
        self.logs = logs

    def call(self, name: str, **params: bytes | str) -> tuple[int, dict[bytes, bytes]]:
        args = [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in params.items()]
        rv, outputs = self.host.call(name.encode(), args)
        return rv, dict(outputs)

    def ev(self, code: str, **params: bytes | str) -> dict[bytes, bytes]:
        """Run ``code`` (a Lua chunk body) and return its outmap; fails on an error."""
        rv, out = self.call("eval", code=code, **params)
        assert rv == RV_SUCCESS, (rv, self.logs[-1:] if self.logs else None)
        return out

    def r(self, code: str, **params: bytes | str) -> bytes:
        """The first result of ``return <code>``."""
        return self.ev("return " + code, **params)[b"1"]


@pytest.fixture(params=engine.PREFERRED)
def make_env(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., Env]:
    """Hosts on each Lua engine lupa offers (LuaJIT's interpreter and PUC Lua 5.1)."""

    def make(
        script: str = "", names: tuple[str, ...] = ("*", "%"), header: bool = True, **kw
    ) -> Env:
        kw.setdefault("runtime", request.param)
        path = tmp_path / "script.lua"
        path.write_text((HEADER + EVAL if header else "") + script)
        dbs = [Database(n) for n in names]
        logs: list[tuple[str, str]] = []
        host = ScriptHost(
            str(path), dbs, [db.name for db in dbs], log=lambda k, m: logs.append((k, m)), **kw
        )
        return Env(host, dbs, logs)

    return make


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env()


# ----------------------------------------------------------------- calling


def test_inmap_outmap_are_binary_safe(env: Env) -> None:
    out = env.ev("for k, v in pairs(...) do (select(2, ...))[k] = v end", a=b"\x00\xff", b="")
    assert out[b"a"] == b"\x00\xff" and out[b"b"] == b""


def test_outmap_conversion(env: Env) -> None:
    out = env.ev(
        "local o = select(2, ...); o.i = 42; o.f = 2.5; o.t = true; o.n = false;"
        "o.tbl = {}; o.fn = print; o[0] = 'zero'; o[1.5] = 'x'; o.neg = -3"
    )
    assert out[b"i"] == b"42"
    assert out[b"f"] == b"2.500000"
    assert out[b"t"] == b"true" and out[b"n"] == b"false"
    assert b"tbl" not in out and b"fn" not in out
    assert out[b"0"] == b"zero" and out[b"1.500000"] == b"x"
    assert out[b"neg"] == b"-3"


def test_outputs_sorted(env: Env) -> None:
    _, outputs = env.host.call(b"eval", [(b"code", b"local o = select(2, ...); o.b = 1; o.a = 2")])
    assert [k for k, _ in outputs] == sorted(k for k, _ in outputs)


def test_return_values(make_env: Callable[..., Env]) -> None:
    e = make_env(
        "function none() end\n"
        "function seven() return 7 end\n"
        "function str() return '3' end\n"
        "function two() return 2, 'x' end\n"
        "function tbl() return {} end\n"
    )
    assert e.call("none")[0] == RV_SUCCESS
    assert e.call("seven")[0] == 7
    assert e.call("str")[0] == 3
    assert e.call("two")[0] == 2
    assert e.call("tbl")[0] == 0


def test_missing_vs_failed(make_env: Callable[..., Env]) -> None:
    e = make_env("function noimpl() return kt.RVENOIMPL end\nfunction boom() error('bang') end\n")
    res = e.host.call(b"nosuch", [])
    assert res.missing and res.rv == RV_NOIMPL
    res = e.host.call(b"noimpl", [])
    assert not res.missing and res.rv == RV_NOIMPL
    res = e.host.call(b"boom", [])
    assert res.rv == RV_INTERNAL and not res.missing and "bang" in res.error
    assert res.outputs == []
    assert e.logs[-1][0] == "error"
    assert e.logs[-1][1].startswith("[SCRIPT]: boom: ") and "bang" in e.logs[-1][1]
    # a global that is not a function is not a procedure either
    e2 = make_env("notfn = 3\n")
    assert e2.host.call(b"notfn", []).missing


def test_script_load_error_is_logged(make_env: Callable[..., Env]) -> None:
    e = make_env("function broken(\n")
    assert any(m.startswith("[SCRIPT]: (init):") for _, m in e.logs)
    assert e.host.call(b"eval", []).missing  # nothing of the chunk ran
    e = make_env("function early() return 0 end\nerror('at load time')\n")
    assert any("at load time" in m for _, m in e.logs)
    assert not e.host.call(b"early", []).missing  # definitions before the error stay


def test_reload(make_env: Callable[..., Env], tmp_path: Path) -> None:
    e = make_env("function v(i, o) o.v = 1 end\n")
    assert e.call("v")[1] == {b"v": b"1"}
    (tmp_path / "script.lua").write_text(HEADER + "function v(i, o) o.v = 2 end\n")
    assert e.host.reload()
    assert e.call("v")[1] == {b"v": b"2"}
    (tmp_path / "script.lua").unlink()
    assert not e.host.reload()  # unreadable: the old script stays
    assert e.call("v")[1] == {b"v": b"2"}
    e.host.close()
    with pytest.raises(RuntimeError):
        e.host.call(b"v", [])


# ------------------------------------------------------------ kt module


def test_module_fields(env: Env) -> None:
    out = env.ev(
        "return kt.VERSION, kt.RVSUCCESS, kt.RVENOIMPL, kt.RVEINVALID, kt.RVELOGIC,"
        " kt.RVEINTERNAL, tostring(kt.RVETIMEOUT), type(kt.thid), #kt.dbs,"
        " kt.dbs[1] == kt.db, kt.dbs['*'] == kt.db, kt.dbs['%'] == kt.dbs[2],"
        " type(kt.Visitor.NOP), kt.Visitor.NOP ~= kt.Visitor.REMOVE"
    )
    vals = [out[str(i).encode()] for i in range(1, 15)]
    assert vals[0].startswith(b"0.9")
    assert vals[1:6] == [b"0", b"1", b"2", b"3", b"5"]
    assert vals[6] == b"nil"
    assert vals[7] == b"number" and vals[8] == b"2"
    assert vals[9:12] == [b"true"] * 3
    assert vals[12] == b"userdata" and vals[13] == b"true"


def test_numbers(env: Env) -> None:
    assert env.r("kt.atoi('  -42xyz')") == b"-42"
    assert env.r("kt.atoi('abc')") == b"0"
    assert env.r("kt.atoix('2k')") == b"2048"
    assert env.r("kt.atoix('1.5M')") == b"1572864"
    assert env.r("kt.atof('42.5abc')") == b"42.500000"
    assert env.r("kt.atof('1e3')") == b"1000"


def test_hashes(env: Env) -> None:
    assert env.r("kt.hash_murmur('hello')") == b"254910939360214"
    assert env.r("kt.hash_fnv('hello')") == b"117791150636571"
    assert env.r("tostring(kt.hash_fnv('kyoto'))") == b"2.5822872910846e+14"
    assert env.r("kt.levdist('kyoto', 'tokyo')") == b"4"
    # two UTF-8 characters differ: 2 by characters, 4 by bytes
    assert env.r("kt.levdist('\\195\\169\\195\\169', '\\195\\168\\195\\168', true)") == b"2"
    assert env.r("kt.levdist('\\195\\169\\195\\169', '\\195\\168\\195\\168')") == b"2"


def test_time_and_sleep(env: Env) -> None:
    t = float(env.r("kt.time()").decode())
    assert abs(t - time.time()) < 5
    start = time.monotonic()
    env.ev("kt.sleep(0.05); kt.sleep()")
    assert time.monotonic() - start >= 0.04


def test_log(env: Env) -> None:
    env.ev("kt.log('info', 'hello'); kt.log('weird', 'x'); kt.log('error', 'bad')")
    assert ("info", "[SCRIPT]: hello") in env.logs
    assert ("debug", "[SCRIPT]: x") in env.logs
    assert ("error", "[SCRIPT]: bad") in env.logs


def test_split(env: Env) -> None:
    out = env.ev("return unpack(kt.split('a,b;;c', ',;'))")
    assert [out[k] for k in (b"1", b"2", b"3", b"4")] == [b"a", b"b", b"", b"c"]
    out = env.ev("local t = kt.split('x\\0y'); return #t, t[1], t[2]")
    assert (out[b"1"], out[b"2"], out[b"3"]) == (b"2", b"x", b"y")


def test_codec(env: Env) -> None:
    s = b"a b&c/\xc3\xa9\x00"
    for mode in ("url", "base", "quote", "hex", "zlib", "deflate", "gzip"):
        out = env.ev(
            f"return kt.codec('~{mode}', kt.codec('{mode}', inmap_s))".replace(
                "inmap_s", "(...).s"
            ),
            s=s,
        )
        assert out[b"1"] == s, mode
    assert env.r("kt.codec('url', 'a b')") == b"a%20b"
    assert env.r("kt.codec('hex', 'AB')") == b"4142"
    assert env.r("kt.codec('base', 'hello')") == b"aGVsbG8="
    assert env.r("kt.codec('quote', '=\\255')") == b"=3D=FF"
    assert env.r("tostring(kt.codec('nosuch', 'x'))") == b"nil"
    assert env.r("tostring(kt.codec('~gzip', 'not gzip'))") == b"nil"


def test_bit_and_strings(env: Env) -> None:
    assert env.r("kt.bit('and', 12, 10)") == b"8"
    assert env.r("kt.bit('or', 12, 10)") == b"14"
    assert env.r("kt.bit('xor', 12, 10)") == b"6"
    assert env.r("kt.bit('not', 0)") == b"4294967295"
    assert env.r("kt.bit('left', 1, 4)") == b"16"
    assert env.r("kt.bit('right', 256, 4)") == b"16"
    assert env.r("kt.strstr('hello world', 'wor')") == b"7"
    assert env.r("kt.strstr('hello', 'zz')") == b"0"
    assert env.r("kt.strstr('a.b.c', '.', '--')") == b"a--b--c"
    assert env.r("kt.strfwm('hello', 'he')") == b"true"
    assert env.r("kt.strbwm('hello', 'lo')") == b"true"
    assert env.r("kt.strbwm('hello', 'he')") == b"false"
    assert env.r("kt.regex('hello world', 'o w')") == b"true"
    assert env.r("kt.regex('hello', '^x')") == b"false"
    assert env.r("kt.regex('hello world', '(o)', '[$1$&]')") == b"hell[oo] w[oo]rld"
    assert env.r("kt.regex('a1b22', '[[:digit:]]+', '#')") == b"a#b#"


def test_dumps(env: Env) -> None:
    assert env.r("kt.mapdump({k='v'})") == bytes.fromhex("01016b76")
    assert env.r("kt.arraydump({'x', 3, 'yy'})") == bytes.fromhex("01780133027979")
    assert env.r("kt.arraydump({2.5})") == b"\x082.500000"
    out = env.ev("local m = kt.mapload(kt.mapdump({a='1', b='22'})); return m.a, m.b")
    assert (out[b"1"], out[b"2"]) == (b"1", b"22")
    out = env.ev("local a = kt.arrayload(kt.arraydump({'p', '', 'q'})); return #a, a[1], a[3]")
    assert (out[b"1"], out[b"2"], out[b"3"]) == (b"3", b"p", b"q")
    assert env.r("#kt.arrayload('\\9abc')") == b"0"  # truncated input stops quietly


def test_dumps_match_the_protocol_codec(env: Env) -> None:
    """kt.*dump/*load are coded in Lua; they agree byte for byte with protocol.dumps,
    for varints of 1-3 bytes and for truncated input."""
    items = [b"", b"x", b"\x00\xff" * 70, b"y" * 16384, b"z" * 200]
    packed = dumps.arraydump(items)
    code = "local a = kt.arrayload((...).data); return kt.arraydump(a), #a"
    out = env.ev(code, data=packed)
    assert out == {b"1": packed, b"2": b"5"}
    pairs = [(b"k" * 300, b"v"), (b"", b"\x80" * 129), (b"a", b"")]
    code = (
        "local m = kt.mapload((...).data); local o = select(2, ...)"
        "; for k, v in pairs(m) do o['k' .. #k] = v end; return kt.mapdump({[(...).k] = (...).v})"
    )
    out = env.ev(code, data=dumps.mapdump(pairs), k=b"q" * 128, v=b"w" * 20000)
    assert out[b"1"] == dumps.mapdump([(b"q" * 128, b"w" * 20000)])
    assert {k: v for k, v in out.items() if k != b"1"} == {
        b"k300": b"v",
        b"k0": b"\x80" * 129,
        b"k1": b"",
    }
    for cut in range(len(packed)):
        got = env.ev("return unpack(kt.arrayload((...).data))", data=packed[:cut])
        assert [got[str(i + 1).encode()] for i in range(len(got))] == dumps.arrayload(packed[:cut])
    mp = dumps.mapdump(pairs)
    for cut in (0, 1, 2, 3, 302, 303, 304, len(mp) - 1):
        got = env.ev(
            "local o = select(2, ...); for k, v in pairs(kt.mapload((...).data)) do o[k] = v end",
            data=mp[:cut],
        )
        assert got == dict(dumps.mapload(mp[:cut]))


def test_pack(env: Env) -> None:
    assert env.r("kt.pack('N', 258)") == b"\x00\x00\x01\x02"
    assert env.r("kt.pack('C*', {1, 2}, 3)") == b"\x01\x02\x03"
    assert env.r("kt.pack('w', 200)") == b"\x81\x48"
    assert env.r("kt.pack('c', -1)") == b"\xff"
    out = env.ev(
        "local t = kt.unpack('cSiNMdw', kt.pack('cSiNMdw', -5, 65535, -7, 7, 2^40, 0.5, 300))"
        "; return unpack(t)"
    )
    got = [out[str(i).encode()] for i in range(1, 8)]
    assert got == [b"-5", b"65535", b"-7", b"7", b"1099511627776", b"0.500000", b"300"]


def test_error_objects(env: Env) -> None:
    out = env.ev(
        "local e = kt.Error:new(kt.Error.NOREC, 'gone')"
        "; local e2 = kt.Error:new()"
        "; e2:set(kt.Error.LOGIC, 'bad')"
        "; return e:code(), e:name(), e:message(), tostring(e), e2:code(), e2:name(),"
        " kt.Error.MISC, kt.Error:new():name()"
    )
    got = [out[str(i).encode()] for i in range(1, 9)]
    assert got == [
        b"7",
        b"no record",
        b"gone",
        b"no record: gone",
        b"8",
        b"logical inconsistency",
        b"15",
        b"success",
    ]


# ------------------------------------------------------------ DB objects


def test_record_ops(env: Env) -> None:
    out = env.ev(
        "return db:set('k', 'v'), db:get('k'), db:add('k', 'x'), db:replace('k', 'w'),"
        " db:append('k', '+'), db:get('k'), db:check('k'), db:check('nope'),"
        " db:remove('k'), db:remove('k'), tostring(db:get('k')), db:count()"
    )
    got = [out[str(i).encode()] for i in range(1, 13)]
    assert got == [
        b"true",
        b"v",
        b"false",
        b"true",
        b"true",
        b"w+",
        b"2",
        b"-1",
        b"true",
        b"false",
        b"nil",
        b"0",
    ]


def test_error_keeps_last_failure(env: Env) -> None:
    out = env.ev(
        "db:get('missing'); local a = db:error():name()"
        "; db:set('x', 'y'); local b = db:error():name()"
        "; db:add('x', 'z'); return a, b, db:error():name(), db:error():code()"
    )
    assert [out[k] for k in (b"1", b"2", b"3", b"4")] == [
        b"no record",
        b"no record",
        b"record duplication",
        b"6",
    ]


def test_xt_rules(env: Env) -> None:
    now = int(time.time())
    out = env.ev(
        "db:set('rel', 'v', 100); db:set('abs', 'v', -2000000000); db:set('none', 'v')"
        "; return select(2, db:get('rel')), select(2, db:get('abs')), select(2, db:get('none'))"
    )
    assert abs(int(out[b"1"]) - (now + 100)) <= 2
    assert out[b"2"] == b"2000000000"
    assert out[b"3"] == str(XTMAX).encode()
    # a write without xt clears the expiration
    out = env.ev("db:set('rel', 'w'); return select(2, db:get('rel'))")
    assert out[b"1"] == str(XTMAX).encode()


def test_counters(env: Env) -> None:
    out = env.ev(
        "return db:increment('n', 5), db:increment('n', -2), db:increment('m', 1, 10),"
        " tostring(db:increment('f', 1, -math.huge)), db:increment('n', 100, math.huge),"
        " db:increment_double('d', 1.5), db:increment_double('d', 0.25),"
        " tostring(db:increment_double('g', 1, -math.huge))"
    )
    got = [out[str(i).encode()] for i in range(1, 9)]
    assert got == [b"5", b"3", b"11", b"nil", b"100", b"1.500000", b"1.750000", b"nil"]
    assert env.dbs[0].get(b"n")[0] == (100).to_bytes(8, "big")
    out = env.ev("db:set('s', 'abc'); return tostring(db:increment('s', 1)), db:error():name()")
    assert out == {b"1": b"nil", b"2": b"logical inconsistency"}


def test_cas(env: Env) -> None:
    out = env.ev(
        "return db:cas('c', nil, 'a'), db:cas('c', nil, 'b'), db:cas('c', 'a', 'b'),"
        " db:get('c'), db:cas('c', 'b', nil), tostring(db:get('c'))"
    )
    got = [out[str(i).encode()] for i in range(1, 7)]
    assert got == [b"true", b"false", b"true", b"b", b"true", b"nil"]


def test_seize(env: Env) -> None:
    out = env.ev("db:set('s', 'v', 50); local v, xt = db:seize('s'); return v, xt, db:count()")
    assert out[b"1"] == b"v" and abs(int(out[b"2"]) - time.time() - 50) < 3 and out[b"3"] == b"0"


def test_bulk(env: Env) -> None:
    now = int(time.time())
    out = env.ev(
        "local n = db:set_bulk({a='1', b='2', [3]=4}, 60, true)"
        "; local g = db:get_bulk({'a', 'b', '3', 'zz'})"
        "; local r = db:remove_bulk({'a', 'zz'})"
        "; return n, g.a, g.b, g['3'], tostring(g.zz), r, db:count()"
    )
    got = [out[str(i).encode()] for i in range(1, 8)]
    assert got == [b"3", b"1", b"2", b"4", b"nil", b"1", b"2"]
    # xt is the second argument (what ktserver's code reads), not the documented third
    value, xt = env.dbs[0].get(b"b")
    assert abs(xt - (now + 60)) <= 2


def test_whole_db(env: Env) -> None:
    env.dbs[0].set(b"x", b"1")
    out = env.ev(
        "local st = db:status(); return db:count(), db:size() > 0, db:path(), st.count,"
        " db:clear(), db:count(), db:synchronize(false), tostring(db), kt.dbs[2]:path()"
    )
    got = [out[str(i).encode()] for i in range(1, 10)]
    assert got[:7] == [b"1", b"true", b"*", b"1", b"true", b"0", b"true"]
    assert got[7] == b"*: 0: 0" and got[8] == b"%"


def test_index_sugar(env: Env) -> None:
    out = env.ev(
        "db.k1 = 'v1'; db['k2'] = 'v2'; local a, b = db.k1, db['k2']"
        "; db.k1 = nil; return a, b, tostring(db.k1), tostring(db.nothing), type(db.get)"
    )
    assert [out[str(i).encode()] for i in range(1, 6)] == [
        b"v1",
        b"v2",
        b"nil",
        b"nil",
        b"function",
    ]


def test_binary_values(env: Env) -> None:
    out = env.ev("db:set((...).k, (...).v); return db:get((...).k)", k=b"\x00k\xff", v=b"\x00\x01")
    assert out[b"1"] == b"\x00\x01"
    assert env.dbs[0].get(b"\x00k\xff")[0] == b"\x00\x01"


def test_invalid_arguments_raise(env: Env) -> None:
    rv, _ = env.call("eval", code="db:set(nil, 'v')")
    assert rv == RV_INTERNAL
    assert "set: invalid arguments" in env.logs[-1][1]
    rv, _ = env.call("eval", code="db.get('k')")  # '.' instead of ':'
    assert rv == RV_INTERNAL


def test_match(env: Env) -> None:
    tree = env.dbs[1]
    for k in (b"a", b"ab", b"b", b"ba", b"c"):
        tree.set(k, b"v")
    out = env.ev(
        "local t = kt.dbs[2]"
        "; local function j(l) return table.concat(l, ',') end"
        "; return j(t:match_prefix('a')), j(t:match_prefix('a', 1)), j(t:match_regex('^b')),"
        " j(t:match_similar('aa', 1)), #t:match_similar('zzzzzzz'), tostring(t:match_regex('('))"
    )
    got = [out[str(i).encode()] for i in range(1, 7)]
    # an omitted range is -1 in ktserver: every key matches
    assert got == [b"a,ab", b"a", b"b,ba", b"a,ab,ba", b"5", b"nil"]


def test_merge_and_private_db(env: Env) -> None:
    out = env.ev(
        "local m = kt.DB:new(); m:set('p', '1'); m:set('q', '2')"
        "; db:set('p', 'old')"
        "; local ok = db:merge({m}, kt.DB.MADD)"
        "; return ok, db:get('p'), db:get('q'), m:open('%'), m:count(), m:open('/tmp/x.kch')"
    )
    assert [out[str(i).encode()] for i in range(1, 7)] == [
        b"true",
        b"old",
        b"2",
        b"true",
        b"0",
        b"false",
    ]


# -------------------------------------------------------------- visitors


def test_function_visitor(env: Env) -> None:
    db = env.dbs[0]
    db.set(b"a", b"1")
    db.set(b"b", b"2")
    db.set(b"c", b"3")
    env.ev(
        "db:accept('a', function(k, v, xt) return v .. '!' end)"
        "; db:accept('b', function(k, v, xt) return kt.Visitor.REMOVE end)"
        "; db:accept('c', function(k, v, xt) return kt.Visitor.NOP end)"
        "; db:accept('n', function(k, v) if v == nil then return 42 end end)"
        "; db:accept('z', function(k, v) return nil end)"
    )
    assert db.get(b"a")[0] == b"1!"
    assert db.get(b"b") is None
    assert db.get(b"c")[0] == b"3"
    assert db.get(b"n") == (b"42", XTMAX)
    assert db.get(b"z") is None


def test_visitor_xt_rules(env: Env) -> None:
    db = env.dbs[0]
    now = int(time.time())
    db.set(b"keep", b"v", now + 500)
    db.set(b"rel", b"v")
    db.set(b"abs", b"v")
    env.ev(
        "db:accept('keep', function(k, v, xt) return 'w' end)"
        "; db:accept('rel', function(k, v, xt) return 'w', 100 end)"
        "; db:accept('abs', function(k, v, xt) return 'w', -2000000000 end)"
        "; db:accept('new', function(k, v) return 'w', 30 end)"
    )
    assert db.get(b"keep") == (b"w", now + 500)  # no second result: absolute xt kept
    assert abs(db.get(b"rel")[1] - (now + 100)) <= 2  # positive = relative to now
    assert db.get(b"abs")[1] == 2000000000
    assert abs(db.get(b"new")[1] - (now + 30)) <= 2
    # the visitor sees the absolute xt, XTMAX when none
    out = env.ev(
        "local seen; db:accept('keep', function(k, v, xt) seen = xt end, false); return seen"
    )
    assert out[b"1"] == str(now + 500).encode()


def test_table_visitor_and_hooks(env: Env) -> None:
    db = env.dbs[1]
    db.set(b"a", b"v")
    out = env.ev(
        "local t = kt.dbs[2]; local log = {}"
        "; local vis = kt.Visitor:new()"
        "; function vis:visit_before() log[#log + 1] = 'before' end"
        "; function vis:visit_after() log[#log + 1] = 'after' end"
        "; function vis:visit_full(k, v, xt) return v .. '!' end"
        "; function vis:visit_empty(k) return 'new' end"
        "; t:accept('a', vis); t:accept('e', vis)"
        "; local ro = t:accept('a', vis, false)"
        "; return table.concat(log, ','), ro"
    )
    assert out[b"1"] == b"before,after,before,after,before,after"
    assert out[b"2"] == b"true"
    assert db.get(b"a")[0] == b"v!"  # the read-only accept changed nothing
    assert db.get(b"e")[0] == b"new"
    # visit_empty returning REMOVE/NOP as the value is no change
    env.ev(
        "local v = kt.Visitor:new(); function v:visit_empty(k) return kt.Visitor.REMOVE end"
        "; kt.dbs[2]:accept('r', v)"
    )
    assert db.get(b"r") is None
    # the default Visitor changes nothing
    env.ev("kt.dbs[2]:accept('a', kt.Visitor:new()); kt.dbs[2]:accept('zz', kt.Visitor:new())")
    assert db.get(b"a")[0] == b"v!" and db.get(b"zz") is None


def test_visitor_error_is_nop(env: Env) -> None:
    env.dbs[0].set(b"a", b"1")
    out = env.ev("return db:accept('a', function() error('inside') end)")
    assert out[b"1"] == b"true"
    assert env.dbs[0].get(b"a")[0] == b"1"


def test_accept_bulk_and_iterate(env: Env) -> None:
    db = env.dbs[1]
    for k in (b"a", b"b", b"c"):
        db.set(k, b"1")
    out = env.ev(
        "local t = kt.dbs[2]"
        "; t:accept_bulk({'a', 'b', 'x'}, function(k, v) if v then return v .. '2' end"
        " return 'made' end)"
        "; local keys = {}"
        "; t:iterate(function(k, v) keys[#keys + 1] = k .. '=' .. v end, false)"
        "; t:iterate(function(k, v) if k == 'c' then return kt.Visitor.REMOVE end end)"
        "; return table.concat(keys, ','), t:count(), tostring(t:iterate(42))"
    )
    assert out[b"1"] == b"a=12,b=12,c=1,x=made"
    assert out[b"2"] == b"3"
    assert out[b"3"] == b"false"


# ---------------------------------------------------------------- cursors


@pytest.fixture
def tree_env(env: Env) -> Env:
    for k in (b"a", b"b", b"c", b"d"):
        env.dbs[1].set(k, k.upper())
    return env


def test_cursor_scan(tree_env: Env) -> None:
    out = tree_env.ev(
        "local t = kt.dbs[2]; local cur = t:cursor(); local s = {}"
        "; cur:jump('b')"
        "; while true do local k, v = cur:get(true); if not k then break end"
        " s[#s + 1] = k .. v end"
        "; cur:jump_back(); local last = cur:get_key()"
        "; cur:step_back(); local prev = cur:get_value()"
        "; cur:jump(); cur:step(); local second = cur:get_key(true); local third = cur:get_key()"
        "; local c2 = cur:db() == t; cur:disable()"
        "; return table.concat(s, ','), last, prev, second, third, c2"
    )
    assert [out[str(i).encode()] for i in range(1, 7)] == [
        b"bB,cC,dD",
        b"d",
        b"C",
        b"b",
        b"c",
        b"true",
    ]


def test_cursor_call_pairs_process(tree_env: Env) -> None:
    out = tree_env.ev(
        "local t = kt.dbs[2]; local s = {}"
        "; for k, v in t:pairs() do s[#s + 1] = k .. v end"
        "; local cur = t:cursor(); cur:jump('c'); local k, v = cur(t)"
        "; local seen = {}"
        "; t:cursor_process(function(c) c:jump(); seen[1] = c:get_key() end)"
        "; return table.concat(s, ','), k, v, seen[1], tostring(cur):sub(1, 3)"
    )
    assert [out[str(i).encode()] for i in range(1, 6)] == [
        b"aA,bB,cC,dD",
        b"c",
        b"C",
        b"a",
        b"%: ",
    ]


def test_cursor_modify(tree_env: Env) -> None:
    db = tree_env.dbs[1]
    out = tree_env.ev(
        "local t = kt.dbs[2]; local cur = t:cursor(); cur:jump('a')"
        "; local k, v, xt = cur:seize()"
        "; local removed = cur:remove()"
        "; local after = cur:get_key()"
        "; cur:accept(function(k, v) return v .. '*' end, true, true)"
        "; local nxt = cur:get_key()"
        "; cur:disable()"
        "; local ok, err = pcall(cur.get, cur)"
        "; return k, v, xt, removed, after, nxt, ok, tostring(cur)"
    )
    assert [out[str(i).encode()] for i in range(1, 9)] == [
        b"a",
        b"A",
        str(XTMAX).encode(),
        b"true",
        b"c",
        b"d",
        b"false",
        b"(disabled)",
    ]
    assert db.get(b"c")[0] == b"C*"
    assert db.get(b"b") is None


def test_cursor_set_value_bug(tree_env: Env) -> None:
    """ktserver swaps set_value's xt and step: xt = now + (step and 1 or 0),
    and the cursor steps whenever xt is not 0 (the default xt is INT64MAX)."""
    db = tree_env.dbs[1]
    now = int(time.time())
    out = tree_env.ev(
        "local cur = kt.dbs[2]:cursor(); cur:jump('a')"
        "; local ok = cur:set_value('x')"  # default xt: steps; step false: xt = now
        "; local at = cur:get_key()"
        "; cur:set_value('y', 0, true)"  # xt 0: no step; step true: xt = now + 1
        "; return ok, at, cur:get_key()"
    )
    assert [out[k] for k in (b"1", b"2", b"3")] == [b"true", b"b", b"b"]
    assert db._data[b"a"] == (b"x", now) or db._data[b"a"] == (b"x", now + 1)
    value, xt = db._data[b"b"]
    assert value == b"y" and xt in (now + 1, now + 2)


def test_hash_cursor(env: Env) -> None:
    env.dbs[0].set(b"k", b"v")
    out = env.ev(
        "local cur = db:cursor(); cur:jump(); local k = cur:get_key()"
        "; return k, cur:jump_back(), db:error():name()"
    )
    assert out == {b"1": b"k", b"2": b"false", b"3": b"not implemented"}


# ----------------------------------------------------------- transactions


def test_transactions(env: Env) -> None:
    db = env.dbs[0]
    db.set(b"a", b"orig")
    out = env.ev(
        "db:begin_transaction(); db:set('a', 'changed'); db:set('b', 'new')"
        "; local ok = db:end_transaction(false)"
        "; local a, b = db:get('a'), tostring(db:get('b'))"
        "; db:begin_transaction(); db:set('c', '1'); db:end_transaction()"
        "; local bad = db:end_transaction()"
        "; return ok, a, b, db:get('c'), bad"
    )
    assert [out[str(i).encode()] for i in range(1, 6)] == [
        b"true",
        b"orig",
        b"nil",
        b"1",
        b"false",
    ]


def test_transaction_function(env: Env) -> None:
    db = env.dbs[0]
    out = env.ev(
        "local r1 = db:transaction(function() db:set('t', '1'); return true end)"
        "; local r2 = db:transaction(function() db:set('t', '2'); return false end)"
        "; return r1, r2, (db:get('t'))"
    )
    assert out == {b"1": b"true", b"2": b"true", b"3": b"1"}
    rv, _ = env.call("eval", code="db:transaction(function() db:set('t', '3'); error('x') end)")
    assert rv == RV_INTERNAL
    assert db.get(b"t")[0] == b"1"  # rolled back, and the error still failed the call
    out = env.ev(
        "local ok = pcall(db.transaction, db, function() db:set('t', '4'); error('y') end)"
        "; return ok, (db:get('t'))"
    )
    assert out == {b"1": b"false", b"2": b"1"}


def test_unfinished_transaction_is_aborted(env: Env) -> None:
    db = env.dbs[0]
    env.ev("db:begin_transaction(); db:set('u', '1')")
    assert db.get(b"u") is None
    # the database lock was released: another thread can write
    t = threading.Thread(target=db.set, args=(b"other", b"x"))
    t.start()
    t.join(5)
    assert not t.is_alive() and db.get(b"other")[0] == b"x"


# ---------------------------------------------------------------- sandbox


SANDBOX_PROBE = """
local names = {'io', 'dofile', 'loadfile', 'require', 'module', 'package', 'debug', 'python'}
local o = select(2, ...)
for _, n in ipairs(names) do o[n] = type(_G[n]) end
for _, n in ipairs({'execute', 'remove', 'rename', 'exit', 'getenv', 'tmpname', 'setlocale',
                    'time', 'clock', 'date'}) do
  o['os.' .. n] = type(os[n])
end
o.string = type(string.format); o.math = type(math.floor); o.table = type(table.concat)
o.pcall = type(pcall)
local f, err = loadstring(string.dump(function() return 1 end))
o.bytecode = tostring(f)
o.source = tostring(loadstring('return 5')())
"""


def test_sandbox(env: Env) -> None:
    out = env.ev(SANDBOX_PROBE)
    for n in (
        b"io",
        b"dofile",
        b"loadfile",
        b"require",
        b"module",
        b"package",
        b"debug",
        b"python",
    ):
        assert out[n] == b"nil", n
    for n in (b"execute", b"remove", b"rename", b"exit", b"getenv", b"tmpname", b"setlocale"):
        assert out[b"os." + n] == b"nil", n
    for n in (b"time", b"clock", b"date"):
        assert out[b"os." + n] == b"function"
    assert out[b"string"] == out[b"math"] == out[b"table"] == out[b"pcall"] == b"function"
    assert out[b"bytecode"] == b"nil"
    assert out[b"source"] == b"5"


def test_engines_offer_lua51_globals(env: Env) -> None:
    """LuaJIT runs with its compiler off and shows scripts Lua 5.1's globals."""
    out = env.ev(
        "return jit == nil, bit == nil, table.move == nil, math.mod == math.fmod"
        ", string.gfind ~= nil, select('#', pcall(table.setn, {}, 1))"
    )
    assert [out[str(i).encode()] for i in range(1, 7)] == [b"true"] * 5 + [b"2"]


def test_default_engine_is_the_fastest_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KTSTORE_LUA", raising=False)
    assert engine.load().__name__ == "lupa." + engine.PREFERRED[0]
    assert engine.load("lua51").__name__ == "lupa.lua51"
    with pytest.raises(ValueError):
        engine.load("lua54")


def test_unsafe_allows_host_access(make_env: Callable[..., Env]) -> None:
    e = make_env(allow_unsafe=True)
    out = e.ev(SANDBOX_PROBE)
    assert out[b"io"] == b"table" and out[b"os.execute"] == b"function"
    assert out[b"python"] == b"nil"
    # but not LuaJIT's compiler switch or FFI: the time budget needs the JIT off
    out = e.ev("return pcall(require, 'jit'), pcall(require, 'ffi'), pcall(require, 'jit.util')")
    assert (out[b"1"], out[b"2"], out[b"3"]) == (b"false", b"false", b"false")


def test_no_python_objects_reachable(env: Env) -> None:
    """Walk everything reachable from _G (tables, metatables, upvalue-free):
    the only userdata are kt.Visitor's sentinels, never a Python object."""
    out = env.ev(
        """
        local seen, bad = {}, {}
        local ok_ud = {[kt.Visitor.NOP] = true, [kt.Visitor.REMOVE] = true}
        local function walk(v, path)
          local t = type(v)
          if t == 'userdata' then
            if not ok_ud[v] then bad[#bad + 1] = path end
            return
          end
          if t ~= 'table' or seen[v] then return end
          seen[v] = true
          for k, x in pairs(v) do walk(k, path .. '.<key>'); walk(x, path .. '.' .. tostring(k)) end
          local mt = getmetatable(v)
          if mt then walk(mt, path .. '.<mt>') end
        end
        walk(_G, '_G')
        local cur = db:cursor()
        walk(cur, 'cursor')
        walk(kt.DB:new(), 'newdb')
        walk(db:error(), 'error')
        return table.concat(bad, ' ')
        """
    )
    assert out.get(b"1", b"") == b""


def test_python_attribute_access_refused(env: Env) -> None:
    # an error raised by a host primitive carries no usable Python object
    out = env.ev(
        "local ok, err = pcall(kt.pack, nil); local ok2, e2 = pcall(db.get, db)"
        "; return ok, type(err), ok2, type(e2)"
    )
    assert out == {b"1": b"false", b"2": b"string", b"3": b"false", b"4": b"string"}
    # a Python failure inside a host function arrives as a message, not an object
    env.dbs[0].status = None  # type: ignore[assignment,method-assign]
    out = env.ev("local ok, err = pcall(db.status, db); return ok, type(err)")
    assert out == {b"1": b"false", b"2": b"string"}


# ------------------------------------------------------- time and threads


def test_infinite_loop_times_out(make_env: Callable[..., Env]) -> None:
    e = make_env(
        "function spin() while true do end end\n"
        "function stubborn() while true do pcall(function() while true do end end) end end\n"
        "function cospin() local co = coroutine.wrap(function() while true do end end); co() end\n"
        "function ok(i, o) o.ok = 'yes' end\n",
        timeout=0.2,
    )
    for name in ("spin", "stubborn", "cospin"):
        start = time.monotonic()
        res = e.host.call(name.encode(), [])
        assert res.rv == RV_TIMEOUT, name
        assert time.monotonic() - start < 3
    assert e.call("ok") == (RV_SUCCESS, {b"ok": b"yes"})


def test_timeout_inside_visitor(make_env: Callable[..., Env]) -> None:
    e = make_env(
        "function spin() db:accept('k', function() while true do end end) end\n", timeout=0.2
    )
    assert e.host.call(b"spin", []).rv == RV_TIMEOUT
    # the database lock was released
    assert e.dbs[0].set(b"k", b"v")


def test_concurrent_calls_use_distinct_states(make_env: Callable[..., Env]) -> None:
    e = make_env(
        "counter = 0\n"
        "function slow(i, o) counter = counter + 1; kt.sleep(0.2); o.thid = kt.thid;"
        " o.counter = counter end\n"
    )
    results: list[dict[bytes, bytes]] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        barrier.wait()
        results.append(e.call("slow")[1])

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 2
    assert results[0][b"thid"] != results[1][b"thid"]
    assert results[0][b"counter"] == results[1][b"counter"] == b"1"  # globals are per state
    assert e.host.pool_size == 2
    # a later call reuses a pooled state: its global counter has moved on
    assert e.call("slow")[1][b"counter"] == b"2"


# ------------------------------------------------------------------ kt.lua


@pytest.mark.skipif(not KT_LUA.exists(), reason="lua/kt.lua not written yet")
def test_kt_lua_loads(tmp_path: Path) -> None:
    dbs = [Database("*"), Database("%")]
    logs: list[tuple[str, str]] = []
    host = ScriptHost(str(KT_LUA), dbs, ["*", "%"], log=lambda k, m: logs.append((k, m)))
    assert not any("(init)" in m for _, m in logs), logs
    assert not host.call(b"nosuch", []).missing or True


def test_mapreduce(env: Env) -> None:
    for k, v in ((b"a", b"x y"), (b"b", b"y z"), (b"c", b"y")):
        env.dbs[0].set(k, v)
    out = env.ev(
        "local o = select(2, ...)"
        "; local function map(k, v, emit)"
        "   for w in string.gmatch(v, '%S+') do emit(w, k) end return true end"
        "; local function reduce(k, iter)"
        "   local n = 0; while iter() do n = n + 1 end; o[k] = n; return true end"
        "; return db:mapreduce(map, reduce)"
    )
    assert out == {b"1": b"true", b"x": b"1", b"y": b"3", b"z": b"1"}
    assert env.r("db:mapreduce(function() return false end, function() return true end)") == (
        b"false"
    )


def test_memory_limit(make_env: Callable[..., Env]) -> None:
    e = make_env(
        "function hog() local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1e5) .. i end end\n"
        "function ok(i, o) o.ok = 'yes' end\n",
        max_memory=32 << 20,
    )
    res = e.host.call(b"hog", [])
    assert res.rv == RV_INTERNAL and "memory" in (res.error or "").lower()
    assert e.call("ok") == (RV_SUCCESS, {b"ok": b"yes"})


def test_params_accept_bytes_like(env: Env) -> None:
    rv, outputs = env.host.call(b"eval", [(b"code", bytearray(b"return (...).v")), (b"v", b"x")])
    assert rv == RV_SUCCESS and dict(outputs)[b"1"] == b"x"


def test_load_and_coroutines_in_sandbox(env: Env) -> None:
    out = env.ev(
        "local chunks = {string.dump(function() return 1 end)}"
        "; local f, err = load(function() return table.remove(chunks) end)"
        "; local parts = {'return ', '40 + 2'}"
        "; local g = load(function() return table.remove(parts, 1) end)"
        "; local co = coroutine.wrap(function(a) local b = coroutine.yield(a + 1); return b * 2 end)"
        "; local first = co(1); local second = co(10)"
        "; local bad = coroutine.wrap(function() error('inner') end)"
        "; local ok, e = pcall(bad)"
        "; return tostring(f), g(), first, second, ok, tostring(e):match('inner') ~= nil"
    )
    assert [out[str(i).encode()] for i in range(1, 7)] == [
        b"nil",
        b"42",
        b"2",
        b"20",
        b"false",
        b"true",
    ]


def test_procedure_name_is_a_c_string(env: Env) -> None:
    rv, outputs = env.host.call(b"eval\0junk", [(b"code", b"return 'x'")])
    assert rv == RV_SUCCESS and dict(outputs)[b"1"] == b"x"


def test_long_levdist_is_bounded(make_env: Callable[..., Env]) -> None:
    e = make_env(
        "function lev() return kt.levdist(string.rep('a', 20000), string.rep('b', 20000)) end\n",
        timeout=0.2,
    )
    start = time.monotonic()
    assert e.host.call(b"lev", []).rv == RV_TIMEOUT
    assert time.monotonic() - start < 3

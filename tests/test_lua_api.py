"""LuaMethods (script, raw_script, lua, touch*, expire_time, expires, error) and the input
validation of every lua/kt.lua procedure, against a live server."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from ktstore.errors import InvalidArgument, ScriptError, ServerError
from ktstore.lua_api import XTMAX

# Every procedure of kt.lua and its required inputs, in the order they are checked.
REQUIRED = {
    "touchbulk": ["keys"],
    "touchbulkrelative": ["keys", "n"],
    "expiretime": ["key"],
    "hset": ["key", "field", "value"],
    "hsetnx": ["key", "field", "value"],
    "hmset": ["key", "data"],
    "hget": ["key", "field"],
    "hmget": ["key", "fields"],
    "hgetall": ["key"],
    "hdel": ["key", "field"],
    "hmdel": ["key", "fields"],
    "hlen": ["key"],
    "hcontains": ["key", "field"],
    "hunpack": ["key"],
    "hpack": ["key"],
    "hpackkeys": ["key", "dest"],
    "hpackvalues": ["key", "dest"],
    "llpush": ["key", "value"],
    "lrpush": ["key", "value"],
    "lextend": ["key", "data"],
    "lrange": ["key"],
    "lindex": ["key", "index"],
    "linsert": ["key", "value", "index"],
    "lset": ["key", "value", "index"],
    "lrem": ["key", "index"],
    "lremrange": ["key"],
    "llpop": ["key"],
    "lrpop": ["key"],
    "llpoprpush": ["key"],
    "lrpoplpush": ["key"],
    "llen": ["key"],
    "lfind": ["key", "value"],
    "lrfind": ["key", "value"],
    "lunpack": ["key"],
    "lpack": ["key"],
    "sadd": ["key", "data"],
    "srem": ["key", "data"],
    "spop": ["key"],
    "sismember": ["key", "value"],
    "scard": ["key"],
    "smembers": ["key"],
    "sinter": ["key", "keys"],
    "sunion": ["key", "keys"],
    "sdiff": ["key", "keys"],
    "queueadd": ["key", "data"],
    "queuepop": ["key"],
    "queueremove": ["key", "value"],
    "queuesetscore": ["key", "value", "score"],
    "queuetransfer": ["key", "dest"],
    "queuecount": ["key"],
    "queueclear": ["key"],
    "scheduleadd": ["key", "value"],
    "scheduleread": ["key"],
    "schedulecount": ["key"],
    "scheduleclear": ["key"],
}
GOOD = {
    "key": b"k",
    "field": b"f",
    "value": b"v",
    "data": b"",
    "fields": b"",
    "keys": b"",
    "index": b"0",
    "dest": b"d",
    "n": b"1",
    "score": b"1",
}


@pytest.fixture
def kt(client_factory):
    return client_factory()


def details(kt, keys, db=0):
    return {k: (v, xt) for _, k, v, xt in kt.get_bulk_details([(db, k) for k in keys])}


@pytest.mark.parametrize("proc", sorted(REQUIRED))
def test_missing_inputs_give_clear_errors(kt, proc):
    required = REQUIRED[proc]
    for i, missing in enumerate(required):
        params = [(name.encode(), GOOD[name]) for name in required[:i]]
        with pytest.raises(ScriptError) as info:
            kt._lua_call(proc, params)
        err = info.value
        assert err.status == 400
        assert err.procedure == proc
        assert err.message == f"{proc}: missing required input '{missing}'"


@pytest.mark.parametrize(
    ("proc", "params", "text"),
    [
        ("queuepop", [(b"key", b"q"), (b"n", b"many")], "input 'n' must be a number"),
        ("queuepop", [(b"key", b"q"), (b"n", b"-1")], "input 'n' must not be negative"),
        ("queuepop", [(b"key", b"q"), (b"minscore", b"nan")], "input 'minscore' must be a number"),
        (
            "queueadd",
            [(b"key", b"q"), (b"data", b""), (b"score", b"x")],
            "'score' must be a number",
        ),
        (
            "queueadd",
            [(b"key", b"q"), (b"data", b"\x01a"), (b"score", b"1e15")],
            "score out of range",
        ),
        ("lindex", [(b"key", b"l"), (b"index", b"1.5")], "input 'index' must be an integer"),
        ("lrange", [(b"key", b"l"), (b"start", b"one")], "input 'start' must be a number"),
        ("lunpack", [(b"key", b"l"), (b"format", b"%s")], "input 'format' must hold exactly one"),
        ("lunpack", [(b"key", b"l"), (b"format", b"%d%d")], "input 'format' must hold exactly one"),
        ("hpack", [(b"key", b"h"), (b"count", b"-2")], "input 'count' must not be negative"),
        ("touchbulk", [(b"keys", b""), (b"xt", b"soon")], "input 'xt' must be a number"),
        ("queuetransfer", [(b"key", b"q"), (b"dest", b"q")], "same queue"),
    ],
)
def test_bad_inputs_give_clear_errors(kt, proc, params, text):
    with pytest.raises(ScriptError) as info:
        kt._lua_call(proc, params)
    assert info.value.status == 400
    assert text in info.value.message
    assert info.value.message.startswith(proc + ": ")


def test_bad_database_input(kt):
    with pytest.raises(ScriptError, match="no such database: 7"):
        kt._lua_call("hlen", [(b"key", b"h")], db=7)
    # raw_script hands back the script's error outputs as they are.
    out = kt.raw_script("hlen", {"key": "h", "db": "first", "errout": ""})
    assert out == {b"error": b"hlen: input 'db' must be a database index, got 'first'", b"rv": b"2"}


def test_no_such_item_is_a_logic_error(kt):
    with pytest.raises(ScriptError) as info:
        kt._lua_call("lindex", [(b"key", b"l"), (b"index", b"3")])
    assert info.value.status == 450
    assert info.value.message == "lindex: list index out of range: 3"
    with pytest.raises(ScriptError, match="list is empty") as info:
        kt._lua_call("llpoprpush", [(b"key", b"l")])
    assert info.value.status == 450


def test_failure_status_without_errout(kt):
    # Binary protocol: a bare error reply; the connection stays usable.
    with pytest.raises(ScriptError):
        kt.raw_script("hset", {"key": "h"})
    assert kt.raw_script("hlen", {"key": "h"}) == {b"num": b"0"}
    # HTTP: the status ktserver would give (400 invalid, 450 logic).
    with pytest.raises(ServerError) as info:
        kt._rpc("play_script", [(b"name", b"hset"), (b"_key", b"h")])
    assert info.value.status == 400
    with pytest.raises(ServerError) as info:
        kt._rpc("play_script", [(b"name", b"lindex"), (b"_key", b"l"), (b"_index", b"0")])
    assert info.value.status == 450


def test_procedures_are_callable_over_http(kt):
    kt.Hash("h")["a"] = "1"
    status, out = kt._rpc("play_script", [(b"name", b"hlen"), (b"_key", b"h")])
    assert status == 200 and out[b"_num"] == b"1"


def test_script_raw_script_and_lua_helper(kt):
    assert kt.script("hset", {"key": "h", "field": "f", "value": "v"}) == {"num": "1"}
    assert kt.script("hget", {"key": "h", "field": "f"}) == {"value": "v"}
    assert kt.raw_script("hget", {"key": "h", "field": "f"}) == {b"value": b"v"}
    assert kt.raw_script("hlen", {"key": b"h", "db": 0}) == {b"num": b"1"}
    assert kt.lua.hlen(key="h") == {"num": "1"}
    assert kt.lua["hcontains"]({"key": "h"}, field="f") == {"num": "1"}
    assert kt.lua.hget(key="h", field="f", decode_values=False) == {"value": b"v"}
    assert kt.script("hset", {"key": "h", "field": "g", "value": "w"}, no_reply=True) is None
    assert kt.Hash("h").get_all() == {"f": "v", "g": "w"}
    with pytest.raises(ScriptError):
        kt.script("nosuchprocedure")
    with pytest.raises(InvalidArgument):
        kt.raw_script("hlen", {"key": object()})


def test_touch(kt):
    now = int(time.time())
    xt1, xt2 = now + 100, now + 200
    kt.set("k1", "v1", expire_time=xt1)
    kt.set("k2", "v2", expire_time=xt2)
    kt.set("k3", "v3")
    assert details(kt, ["k1", "k2", "k3"]) == {
        "k1": ("v1", xt1),
        "k2": ("v2", xt2),
        "k3": ("v3", XTMAX),
    }
    xt1_1 = now + 300
    assert kt.touch("k1", xt1_1) == xt1
    assert details(kt, ["k1"]) == {"k1": ("v1", xt1_1)}
    assert kt.touch("k1", 300) == xt1_1  # relative
    assert abs(kt.expire_time("k1") - (time.time() + 300)) < 3
    assert kt.touch("kx") is None
    assert kt.touch("k1") is not None
    assert details(kt, ["k1"]) == {"k1": ("v1", XTMAX)}
    assert kt.touch("k1") == XTMAX
    assert kt.touch("k3", xt1) == XTMAX
    assert details(kt, ["k2", "k3"]) == {"k2": ("v2", xt2), "k3": ("v3", xt1)}


def test_touch_bulk(kt):
    now = int(time.time())
    xt1, xt2 = now + 100, now + 200
    kt.set_bulk_details([(0, "k1", "v1", xt1), (0, "k2", "v2", xt2), (0, "k4", "v4", None)])
    assert kt.touch_bulk(["k1", "kx"], now + 300) == {"k1": xt1}
    assert kt.touch_bulk(["k2", "k4"]) == {"k2": xt2, "k4": XTMAX}
    assert details(kt, ["k1", "k2", "k4"]) == {
        "k1": ("v1", now + 300),
        "k2": ("v2", XTMAX),
        "k4": ("v4", XTMAX),
    }
    assert kt.touch_bulk([]) == {}
    when = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(hours=1)
    kt.touch("k1", when)
    assert kt.expire_time("k1") == int(when.timestamp())
    assert kt.expires("k1") == when.replace(tzinfo=None)


def test_touch_relative(kt):
    now = int(time.time())
    xt1, xt2 = now + 100, now + 200
    kt.set_bulk_details([(0, "k1", "v1", xt1), (0, "k2", "v2", xt2), (0, "k4", "v4", None)])
    assert kt.touch_bulk_relative(["k1", "kx"], 300) == {"k1": xt1 + 300}
    assert kt.touch_bulk_relative(["k2", "k4"], 10) == {"k2": xt2 + 10, "k4": XTMAX + 10}
    assert details(kt, ["k1", "k2", "k4"]) == {
        "k1": ("v1", xt1 + 300),
        "k2": ("v2", xt2 + 10),
        "k4": ("v4", XTMAX),  # no expiry stays no expiry
    }
    assert kt.touch_relative("k1", -100) == xt1 + 200
    assert kt.expire_time("k1") == xt1 + 200
    assert kt.touch_relative("kx", 5) is None
    with pytest.raises(InvalidArgument):
        kt.touch_relative("k1", 1.5)


def test_expire_time_and_expires(kt):
    kt.set("k1", "v1", expire_time=60)
    assert abs(kt.expire_time("k1") - (time.time() + 60)) < 3
    kt.set("k2", "v2")
    assert kt.expire_time("k2") == XTMAX
    assert kt.expires("k2") == dt.datetime.max
    assert kt.expire_time("k3") is None and kt.expires("k3") is None
    expected = dt.datetime.fromtimestamp(kt.expire_time("k1"), dt.timezone.utc)
    assert kt.expires("k1") == expected.replace(tzinfo=None)
    kt.set("other", "v", db=1, expire_time=60)
    assert kt.expire_time("other") is None
    assert kt.expire_time("other", db=1) is not None


def test_error(kt):
    code, message = kt.error()
    assert isinstance(code, int) and isinstance(message, str)
    kt.set("k", "v")
    assert kt.error(db=1)[0] >= 0


def test_unexpected_lua_errors_become_internal_errors_with_the_message(kt):
    kt.List("l").append("x")
    with pytest.raises(ScriptError) as info:
        kt._lua_call("lunpack", [(b"key", b"l"), (b"format", b"%9999d")])
    assert info.value.status == 500
    assert info.value.message.startswith("lunpack: internal error: ")
    assert "format" in info.value.message
    assert kt.List("l").get_range() == ["x"]  # nothing half-done, connection fine

"""ukt compatibility of lua/kt.lua: ukt 0.4.8's own client and tests against our script.

ukt (a test dependency) ships its own ``kt.lua``; nothing of it is copied here: the
tests below load it from the installed package to check the migration path.
"""

from __future__ import annotations

import os
import sys
import unittest
from collections.abc import Callable
from pathlib import Path

import pytest

from ktstore.errors import ScriptError
from ktstore.testing import ThrowawayServer, running_server

ukt = pytest.importorskip("ukt")

ROOT = Path(__file__).resolve().parent.parent
KT_LUA = ROOT / "lua" / "kt.lua"
UKT_LUA = Path(ukt.__file__).resolve().parent / "scripts" / "kt.lua"
REAL_SERVER = os.environ.get("KTSTORE_TEST_SERVER") or None

# ukt's test classes that exercise what ukt's client does with kt.lua
UKT_LUA_TESTS = [
    "TestLua",
    "TestLuaContainers",
    "TestLuaContainersMultiDB",
    "TestLuaExpireTime",
    "TestLuaHexastore",
    "TestLuaMultiDB",
    "TestLuaQueue",
    "TestLuaSchedule",
    "TestLuaSerializers",
]
# Deliberate differences (docs/porting-ukt.md): these ukt tests call list and set
# procedures *directly* (db.lua.lrange(key=...)) without a `db` input, which our
# script answers in ktstore's format (ukt's container classes always send `db`).
RAW_CALLS_WITHOUT_DB = {
    "TestLua.test_list_insert",
    "TestLua.test_python_list_integration",
    "TestLua.test_script_list",
    "TestLua.test_script_list_ranges",
    "TestLua.test_script_set",
    "TestLuaContainers.test_list_errors",
    "TestLuaMultiDB.test_script_datatypes_multi_db",
}


def test_ukts_own_lua_tests_pass_on_our_script(monkeypatch: pytest.MonkeyPatch) -> None:
    """ukt's test suite, run unchanged with lua/kt.lua in place of ukt's script (on
    ktstore-server, or on the real ktserver named by KTSTORE_TEST_SERVER)."""
    import ukt.tests as ukt_tests

    server = REAL_SERVER or str(Path(sys.executable).with_name("ktstore-server"))
    monkeypatch.setattr(ukt_tests, "kt_binary", server)
    suite = unittest.TestSuite()
    for name in UKT_LUA_TESTS:
        base = getattr(ukt_tests, name)
        kwargs = dict(base.server_kwargs or {})
        args = list(kwargs.get("server_args") or [])
        assert "-scr" in args, name
        args[args.index("-scr") + 1] = str(KT_LUA)
        kwargs["server_args"] = args
        ours = type(name, (base,), {"server_kwargs": kwargs})
        for test in unittest.defaultTestLoader.loadTestsFromTestCase(ours):
            if f"{name}.{test._testMethodName}" not in RAW_CALLS_WITHOUT_DB:
                suite.addTest(test)
    assert suite.countTestCases() >= 40
    result = unittest.TextTestRunner(stream=open(os.devnull, "w"), verbosity=0).run(suite)
    problems = [f"{t.id()}: {tb.splitlines()[-1]}" for t, tb in result.failures + result.errors]
    assert not problems, "\n".join(problems)
    assert result.testsRun == suite.countTestCases()


@pytest.fixture
def both(
    ktstore_server_factory: Callable[..., ThrowawayServer],
) -> tuple[ThrowawayServer, object]:
    server = ktstore_server_factory(["%", "*"])
    client = ukt.KyotoTycoon(server.host, server.port, timeout=10)
    yield server, client
    client.close_all()


def test_ukt_and_ktstore_share_containers(both: tuple[ThrowawayServer, object]) -> None:
    server, u = both
    kt = server.client()
    u.Hash("h").update({"a": "1", "b": "2"})
    kt.Hash("h")["c"] = "3"
    assert u.Hash("h").get_all() == kt.Hash("h").get_all() == {"a": "1", "b": "2", "c": "3"}
    assert u.List("l").extend(["1", "2", "3"]) == 3
    kt.List("l").append("4")
    assert u.List("l")[1:] == kt.List("l")[1:] == ["2", "3", "4"]
    assert u.Set("s").add("x", "y") == 2
    assert kt.Set("s").add("z") == 1
    assert u.Set("s").members() == kt.Set("s").members() == {"x", "y", "z"}
    assert u.Set("s") & u.Set("s") == {"x", "y", "z"}
    # a container in another database, chosen by ukt's `db` input
    u.Hash("h1", db=1)["k"] = "v"
    assert kt.Hash("h1", db=1).get_all() == {"k": "v"}


def test_ukt_queue_schedule_and_expiry_on_our_script(both: tuple[ThrowawayServer, object]) -> None:
    _server, u = both
    q = u.Queue("jobs")
    assert [q.add("a"), q.add("b", score=5), q.extend(["c", "d"])] == [1, 2, 2]
    assert q.peek(n=4) == ["b", "a", "c", "d"]
    assert q.pop() == "b" and q.rpop() == "d" and len(q) == 2
    assert q.transfer("other", n=1) == "a" and u.Queue("other").pop() == "a"
    assert q.clear() == 1
    s = u.Schedule("sched")
    s.add("late", 20)
    s.add("early", 10)
    assert s.read(15) == ["early"] and s.read() == ["late"]
    u.set("k", "v", expire_time=100)
    xt = u.expire_time("k")
    assert u.touch_relative("k", 10) == xt + 10
    # the worker's last database error, named as ukt names it
    code, name = u.error()
    assert (code, name) in {(0, "success"), (7, "norec"), (6, "duprec")}


def test_raw_calls_pick_the_format_by_db_input(both: tuple[ThrowawayServer, object]) -> None:
    server, u = both
    u.List("l").extend(["1", "2"])
    assert u.script("lrange", {"key": "l", "db": 0}) == {"0": "1", "1": "2"}
    assert set(u.script("lrange", {"key": "l"})) == {"data"}  # ktstore's arraydump
    assert server.client().raw_script("ktstoreversion")[b"ukt"] == b"0.4.8"


def test_migration_from_ukts_script_keeps_data(tmp_path: Path) -> None:
    """Data written through ukt's own script stays readable after the server is
    restarted with ours: by ukt's client (every container) and by ktstore's
    (Hash, List, Set share the record format)."""
    path = str(tmp_path / "data.kct")
    with running_server([path], script=UKT_LUA, server=REAL_SERVER) as old:
        u = ukt.KyotoTycoon(old.host, old.port, timeout=10)
        u.Hash("h").update({"a": "1"})
        u.List("l").extend(["1", "2"])
        u.Set("s").add("x")
        u.Queue("q").extend(["j1", "j2"])
        u.Schedule("sch").add("later", 5)
        # the cheap detection of our script: ukt's has no such procedure
        with pytest.raises(ScriptError):
            old.client().raw_script("ktstoreversion")
        u.close_all()
    with running_server([path], script=KT_LUA, server=REAL_SERVER) as new:
        u = ukt.KyotoTycoon(new.host, new.port, timeout=10)
        kt = new.client()
        assert u.Hash("h").get_all() == kt.Hash("h").get_all() == {"a": "1"}
        assert u.List("l")[:] == kt.List("l")[:] == ["1", "2"]
        assert u.Set("s").members() == kt.Set("s").members() == {"x"}
        assert u.Queue("q").pop(n=2) == ["j1", "j2"]
        assert u.Queue("q").add("j3") == 3  # the id counter carried over
        assert u.Schedule("sch").read() == ["later"]
        u.close_all()

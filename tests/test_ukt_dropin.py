"""``import ktstore as ukt``: code written for ukt 0.4.8 runs unchanged.

Every public name of ukt's package is importable from ktstore with ukt's meaning
(exception hierarchy included), the API reference's example runs, and a small
"ported app" -- ukt-style code that takes the module as a parameter -- gives the same
results with ktstore (on the built-in server) and with ukt's own client (on the same
kind of server running ktstore's kt.lua, which also answers ukt's procedures).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import ktstore
from ktstore.testing import running_server

ukt = pytest.importorskip("ukt")
UKT_LUA = Path(ukt.__file__).resolve().parent / "scripts" / "kt.lua"

UKT_PUBLIC = [
    "KT_BINARY",
    "KT_JSON",
    "KT_MSGPACK",
    "KT_NONE",
    "KT_PICKLE",
    "ImproperlyConfigured",
    "KTError",
    "ProtocolError",
    "ServerConnectionError",
    "ServerError",
    "ServerTimeoutError",
    "SignalTimeout",
    "ReplicationError",
    "KyotoTycoon",
    "EmbeddedServer",
    "Queue",
    "SignalQueue",
]


def test_the_list_is_ukts_own() -> None:
    import ukt as real

    public = {n for n in vars(real) if not n.startswith("_")}
    modules = {n for n in public if isinstance(getattr(real, n), ModuleType)}
    assert public - modules == set(UKT_PUBLIC)


@pytest.mark.parametrize("name", UKT_PUBLIC)
def test_every_ukt_name_is_exported(name: str) -> None:
    value = getattr(ktstore, name)
    real = getattr(ukt, name)
    if isinstance(real, str):
        assert value == real  # serializer names
    elif issubclass(real, Exception):
        assert issubclass(value, ktstore.KTError)


def test_exception_hierarchy_keeps_ukts_except_clauses() -> None:
    """Whatever ukt code catches, ktstore raises a subclass of it for that failure."""
    for name in UKT_PUBLIC:
        real = getattr(ukt, name)
        if not (isinstance(real, type) and issubclass(real, Exception)):
            continue
        for base in real.__mro__:
            if base.__module__.startswith("ukt") and base is not real:
                assert issubclass(getattr(ktstore, name), getattr(ktstore, base.__name__))
    with pytest.raises(ukt_name("ImproperlyConfigured")):
        ktstore.KyotoTycoon(serializer="no-such-serializer")


def ukt_name(name: str) -> Any:
    return getattr(ktstore, name)


def test_replication_client_is_exported() -> None:
    from ktstore.replication import ReplicationClient

    assert ktstore.ReplicationClient is ReplicationClient


def test_api_reference_embedded_server_example() -> None:
    """The API reference's example, with ``from kt import`` read as ``import ktstore``."""
    import ktstore as kt

    server = kt.EmbeddedServer()
    assert server.run()  # ukt: True; ktstore: the client (truthy), docs/porting-ukt.md
    client = server.client
    assert client.set("k1", "v1") == 1
    assert client.get("k1") == "v1"
    assert server.stop() is True


def ported_app(ukt: Any, host: str, port: int) -> dict[str, Any]:
    """ukt-style code, as an application would write it (only the module differs)."""
    db = ukt.KyotoTycoon(host, port, serializer=ukt.KT_JSON, timeout=10)
    seen: dict[str, Any] = {}
    try:
        db.set("user:1", {"name": "ada"})
        db.set_bulk({"user:2": {"name": "bob"}, "user:3": {"name": "cy"}})
        seen["bulk"] = db.get_bulk(["user:1", "user:2", "nope"])
        seen["add_existing"] = db.add("user:1", {"name": "x"})
        seen["prefix"] = sorted(db.match_prefix("user:"))
        seen["incr"] = [db.incr("hits"), db.incr("hits", 5)] if hasattr(db, "incr") else None
        seen["increment"] = db.increment("n", 2)
        seen["cas"] = db.cas("user:3", {"name": "cy"}, {"name": "cyd"})
        seen["pop"] = db.seize("user:3")
        seen["count"] = db.count()
        seen["http"] = (
            db.set_http("h1", "x"),
            db.get_http("h1"),
            db.get_http("nope"),
            db.set_bulk_http({"h2": "y", "h3": "z"}),
            db.get_bulk_http(["h1", "h2", "nope"]),
            db.remove_bulk_http(["h2", "h3", "nope"]),
            db.remove_http("h1"),
            db.remove_http("h1"),
        )
        try:
            db.increment("user:1")  # not a number: the server refuses
        except ukt.ProtocolError:
            seen["refused"] = "ProtocolError"
        except ukt.KTError as exc:  # ktstore and ukt both raise a KTError subclass
            seen["refused"] = type(exc).__mro__[1].__name__
        h = db.Hash("profile")
        h.update(a=1, b=2)
        seen["hash"] = (h.get_all(), len(h), "a" in h)
        lst = db.List("tasks")
        lst.extend(["t1", "t2", "t3"])
        seen["list"] = (lst[:], lst.pop(), len(lst))
        s = db.Set("tags")
        seen["set"] = (s.add("x", "y"), s.members())
        q = db.Queue("jobs")
        seen["queue"] = (
            q.add("j1"),
            q.add("j2", score=5),
            q.extend(["j3", "j4"]),
            q.pop(),
            q.peek(n=3),
            len(q),
            q.clear(),
            q.add("j5"),
        )
        sched = db.Schedule("later")
        sched.add("s1", 10)
        sched.add("s2", 20)
        seen["schedule"] = (sched.read(15), len(sched), sched.read(), sched.clear())
        seen["expire"] = db.set("tmp", 1, expire_time=100) and db.expire_time("tmp") > 0
        try:
            ukt.KyotoTycoon(host, 1, timeout=1).get("k")  # nothing listens on port 1
        except ConnectionError:  # ukt lets the socket's error through; ktstore's
            seen["down"] = "ConnectionError"  # ServerConnectionError is one too
    finally:
        db.close_all()
    return seen


def test_ported_app_gives_ukts_results_with_ktstore() -> None:
    with running_server(["%"]) as server:
        ours = ported_app(ktstore, server.host, server.port)
    with running_server(["%"]) as server:  # ukt's own client, our script
        theirs = ported_app(ukt, server.host, server.port)
    with running_server(["%"], script=UKT_LUA) as server:  # ukt as deployed: its script
        original = ported_app(ukt, server.host, server.port)
    assert ours == theirs == original
    assert ours["bulk"] == {"user:1": {"name": "ada"}, "user:2": {"name": "bob"}}
    assert ours["queue"] == (1, 2, 2, "j2", ["j1", "j3", "j4"], 3, 3, 1)  # clear resets ids
    assert ours["schedule"] == (["s1"], 1, ["s2"], 1)
    assert ours["refused"] == "ProtocolError"
    assert ours["http"] == (True, "x", None, 2, {"h1": "x", "h2": "y"}, 2, 1, 0)
    assert ours["down"] == "ConnectionError"


def test_signal_queue(kt: Any) -> None:
    """ukt's SignalQueue on a tree database: FIFO, None when nothing comes."""
    sq = kt.SignalQueue("sq", db=1)
    assert sq.produce("item1") == (True, 0)  # nobody waits
    assert [sq.produce(f"i{n}")[0] for n in range(3)] == [True] * 3
    assert [sq.consume(wait=1) for _ in range(4)] == ["item1", "i0", "i1", "i2"]
    assert sq.consume(wait=0.1) is None
    assert kt.SignalQueue("other", db=1).consume(wait=0) is None


def test_signal_queue_wakes_a_waiting_consumer_and_never_delivers_twice(kt_server: Any) -> None:
    import threading

    clients = [ktstore.KyotoTycoon(kt_server.host, kt_server.port, timeout=30) for _ in range(4)]
    got: list[Any] = []
    lock = threading.Lock()

    def consume(client: Any) -> None:
        sq = client.SignalQueue("jobs", db=1)
        while (item := sq.consume(wait=1)) is not None:
            with lock:
                got.append(item)

    threads = [threading.Thread(target=consume, args=(c,)) for c in clients[1:]]
    for t in threads:
        t.start()
    producer = clients[0].SignalQueue("jobs", db=1)
    for n in range(30):
        assert producer.produce(str(n))[0] is True
    for t in threads:
        t.join(60)
    assert sorted(got, key=int) == [str(n) for n in range(30)]  # every item once, none twice
    for c in clients:
        c.close_all()

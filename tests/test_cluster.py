"""Many servers from the client: failover over replicas and dual masters, and sharding.

The servers are real (built-in servers replicating to each other through the update
log); a primary is stopped and started again on the same port while clients read and
write, and a shard is added to a populated ring.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import KT_LUA, free_port

from ktstore import KT_MSGPACK, KT_NONE, KyotoTycoon
from ktstore.client.failover import FailoverKyotoTycoon, parse_address
from ktstore.client.sharded import HashRing, ShardedKyotoTycoon
from ktstore.errors import InvalidArgument, KTConnectionError
from ktstore.server import Server


def wait_until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


class Cluster:
    """Built-in servers on fixed ports, so a stopped one can come back on its port."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.servers: dict[str, Server] = {}
        self.args: dict[str, tuple[list[str], list[str], int]] = {}

    def start(
        self, name: str, dbs: list[str], sid: int, master: str | None = None, port: int = 0
    ) -> Server:
        args = ["-le", "-sid", str(sid), "-ulog", str(self.tmp / f"{name}-ulog")]
        args += ["-rts", str(self.tmp / f"{name}.rts"), "-riv", "0"]
        if master is not None:
            args += ["-mhost", "127.0.0.1", "-mport", str(self.servers[master].port)]
        port = port or free_port()
        self.args[name] = (dbs, args, port)
        server = Server(dbs, host="127.0.0.1", port=port, script=str(KT_LUA), args=args)
        server.start()
        self.servers[name] = server
        return server

    def stop(self, name: str) -> None:
        self.servers.pop(name).stop()

    def restart(self, name: str, master: str | None = None) -> Server:
        dbs, args, port = self.args[name]
        if master is not None:
            args = [*args, "-mhost", "127.0.0.1", "-mport", str(self.args[master][2])]
        server = Server(dbs, host="127.0.0.1", port=port, script=str(KT_LUA), args=args)
        server.start()
        self.servers[name] = server
        return server

    def addr(self, name: str) -> str:
        return f"127.0.0.1:{self.args[name][2]}"

    def close(self) -> None:
        for s in self.servers.values():
            s.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.close()


# --------------------------------------------------------------------------- failover


def test_parse_address() -> None:
    assert parse_address("h:12") == ("h", 12)
    assert parse_address("kt://h:12/0") == ("h", 12)
    assert parse_address(("h", 12)) == ("h", 12)
    assert parse_address("h") == ("h", 1978)
    with pytest.raises(InvalidArgument):
        parse_address(12)
    with pytest.raises(InvalidArgument):
        FailoverKyotoTycoon()
    with pytest.raises(InvalidArgument):
        FailoverKyotoTycoon(masters=["a:1"], replicas=["b:2"])


def test_reads_fail_over_to_a_replica_and_come_back(cluster: Cluster) -> None:
    cluster.start("p", ["*", "%"], sid=1)
    cluster.start("r", ["*", "%"], sid=2, master="p")
    kt = FailoverKyotoTycoon(
        primary=cluster.addr("p"), replicas=[cluster.addr("r")], timeout=5, recheck=0.2, wait=0.3
    )
    kt.set_bulk({f"k{i}": f"v{i}" for i in range(200)})
    kt.Hash("h").update({"a": "1"})
    replica = KyotoTycoon(*parse_address(cluster.addr("r")), timeout=5)
    wait_until(lambda: replica.count() == 201)

    cluster.stop("p")
    # Reads go on at once, from the replica: plain, bulk, container and cursor reads.
    assert kt.get("k7") == "v7"
    assert kt.get_bulk(["k1", "k2", "nope"]) == {"k1": "v1", "k2": "v2"}
    assert kt.count() == 201
    assert kt.Hash("h")["a"] == "1"
    assert sorted(kt.match_prefix("k1"))[:2] == ["k1", "k10"]
    # Writes have nowhere to land: a clear error, not a silent write to the replica.
    with pytest.raises(KTConnectionError):
        kt.set("x", "y")
    assert replica.get("x") is None

    cluster.restart("p")
    time.sleep(0.3)  # past recheck: the primary is preferred again
    assert kt.set("x", "y")
    assert kt.get("x") == "y"
    assert kt.current(write=False).port == parse_address(cluster.addr("p"))[1]
    wait_until(lambda: replica.get("x") == "y")
    kt.close_all()
    replica.close_all()


def test_primary_killed_during_reads_and_writes(cluster: Cluster) -> None:
    cluster.start("p", [str(cluster.tmp / "p.kct")], sid=1)
    cluster.start("r", [str(cluster.tmp / "r.kct")], sid=2, master="p")
    kt = FailoverKyotoTycoon(
        primary=cluster.addr("p"), replicas=[cluster.addr("r")], timeout=5, recheck=0.1, wait=10
    )
    kt.set("seed", "1")
    replica = KyotoTycoon(*parse_address(cluster.addr("r")), timeout=5)
    wait_until(lambda: replica.get("seed") == "1")
    acked: list[int] = []
    ambiguous: list[int] = []
    read_errors: list[Exception] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            try:
                kt.set(f"w{i}", str(i))
                acked.append(i)
            except KTConnectionError:
                ambiguous.append(i)  # sent when the primary died: not retried elsewhere
            i += 1

    def reader() -> None:
        while not stop.is_set():
            try:
                assert kt.get("seed") == "1"
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                read_errors.append(e)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    cluster.stop("p")  # killed mid-stream: connections closed under the clients
    time.sleep(0.5)
    cluster.restart("p")
    after_restart = len(acked)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(15)
    assert not read_errors  # reads went on from the replica, then the primary
    assert len(ambiguous) <= 2  # at most the writes in flight at the kill
    primary = KyotoTycoon(*parse_address(cluster.addr("p")), timeout=5)
    got = primary.get_bulk([f"w{i}" for i in acked])
    assert len(got) == len(acked)  # every acknowledged write is on the primary
    assert len(acked) > after_restart  # writes went on after the restart
    for c in (kt, replica, primary):
        c.close_all()


def test_dual_master_writes_move_to_the_other_master(cluster: Cluster) -> None:
    cluster.start("a", [str(cluster.tmp / "a.kct")], sid=1)
    cluster.start("b", [str(cluster.tmp / "b.kct")], sid=2, master="a")
    ka = KyotoTycoon(*parse_address(cluster.addr("a")), timeout=5)
    url = f"http://{cluster.addr('a')}/rpc/tune_replication?host=127.0.0.1&port={cluster.args['b'][2]}"
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
    kt = FailoverKyotoTycoon(masters=[cluster.addr("a"), cluster.addr("b")], timeout=5, recheck=0.2)
    for i in range(100):
        kt.set(f"before{i}", i)
    cluster.stop("a")
    # Every write lands exactly once, on b, while a is down.
    for i in range(100):
        assert kt.increment("counter", 1) == i + 1
        kt.set(f"during{i}", i)
    kb = KyotoTycoon(*parse_address(cluster.addr("b")), timeout=5)
    assert kb.increment("counter", 0) == 100
    cluster.restart("a", master="b")  # its file kept its data; it follows b again
    # a catches up from b's log, and the client returns to a.
    wait_until(lambda: ka.increment("counter", 0) == 100)
    time.sleep(0.3)
    kt.set("after", 1)
    assert ka.get("after") == "1"
    wait_until(lambda: kb.get("after") == "1")
    for c in (kt, ka, kb):
        c.close_all()


def test_models_and_store_keep_working_through_a_primary_restart(cluster: Cluster) -> None:
    from ktstore import Store
    from ktstore.models import Model, fields

    cluster.start("p", ["%"], sid=1)
    cluster.start("r", ["%"], sid=2, master="p")
    kt = FailoverKyotoTycoon(
        primary=cluster.addr("p"), replicas=[cluster.addr("r")], serializer=KT_MSGPACK,
        timeout=5, recheck=0.2, wait=0.3,
    )  # fmt: skip
    store = Store(kt)

    class Account(Model, prefix="acct", store=store):
        email = fields.Text(unique=True)
        balance = fields.Integer(index=True)

    for i in range(20):
        Account.create(email=f"u{i}@x", balance=i)
    replica = KyotoTycoon(*parse_address(cluster.addr("r")), timeout=5)
    primary = KyotoTycoon(*parse_address(cluster.addr("p")), timeout=5)
    total = primary.count()  # records and their index entries
    primary.close_all()
    wait_until(lambda: replica.count() == total)
    cluster.stop("p")
    # Reads at once from the replica: by key, by index, ordered.
    assert Account.query(Account.email == "u3@x").first().balance == 3
    assert [a.balance for a in Account.query(Account.balance >= 17).order_by(Account.balance)] == [
        17,
        18,
        19,
    ]
    store_keys = list(store.keys())
    assert len(store_keys) >= 20
    with pytest.raises(KTConnectionError):
        Account.create(email="new@x", balance=1)
    cluster.restart("p")
    time.sleep(0.3)
    Account.create(email="new@x", balance=100)
    assert Account.query(Account.email == "new@x").first().balance == 100
    kt.close_all()
    replica.close_all()


# --------------------------------------------------------------------------- sharding


def test_ring_places_keys_evenly_and_moves_few_when_growing() -> None:
    names = [f"s{i}" for i in range(4)]
    ring = HashRing(names)
    keys = [b"key:%d" % i for i in range(20000)]
    placed = {k: ring.node(k) for k in keys}
    counts = Counter(placed.values())
    assert set(counts) == set(names)
    assert max(counts.values()) < 1.35 * min(counts.values())  # 160 vnodes: within ~15%
    bigger = HashRing(names)
    bigger.add("s4")
    moved = [k for k in keys if bigger.node(k) != placed[k]]
    assert all(bigger.node(k) == "s4" for k in moved)  # keys only move to the new node
    assert 0.15 < len(moved) / len(keys) < 0.25  # about 1/5
    # Same names, same placement, in any process.
    assert HashRing(reversed(names)).node(b"key:7") == ring.node(b"key:7")


@pytest.fixture
def shards(server_factory: Any) -> Iterator[ShardedKyotoTycoon]:
    servers = [server_factory(["*", "%"], script=KT_LUA) for _ in range(3)]
    kt = ShardedKyotoTycoon([f"127.0.0.1:{s.port}" for s in servers], timeout=5)
    kt.test_servers = servers  # type: ignore[attr-defined]
    yield kt
    kt.close_all()


def test_sharded_client_spreads_and_merges(shards: ShardedKyotoTycoon) -> None:
    kt = shards
    data = {f"user:{i:04d}": f"v{i}" for i in range(600)}
    assert kt.set_bulk(data) == 600
    per = [c.count() for c in kt.shards.values()]
    assert sum(per) == 600 and min(per) > 120  # every server holds a share
    for name, client in kt.shards.items():  # each key on its own server only
        for key in client.match_prefix("user:") or []:
            assert kt.shard_name(key) == name
    assert kt.count() == 600
    assert kt.get("user:0042") == "v42"
    assert kt.get_bulk(["user:0001", "user:0599", "nope"]) == {
        "user:0001": "v1",
        "user:0599": "v599",
    }
    # A hash database returns any matches up to max_keys; unlimited, all, in order.
    some = kt.match_prefix("user:00", 5)
    assert len(some) == 5 and all(k.startswith("user:00") for k in some)
    assert kt.match_prefix("user:00") == [f"user:{i:04d}" for i in range(100)]
    assert kt.match_regex("^user:059[0-2]$") == ["user:0590", "user:0591", "user:0592"]
    assert kt.match_similar("user:0001", 1, 3)[0] == "user:0001"
    assert kt.remove_bulk([f"user:{i:04d}" for i in range(100)]) == 100
    assert kt.count() == 500
    assert kt.increment("hits", 5) == 5 and kt.increment("hits", 1) == 6
    h = kt.Hash("profile:1")
    h["name"] = "Ada"
    assert kt.shard("profile:1").Hash("profile:1")["name"] == "Ada"
    details = kt.get_bulk_details([(0, "user:0100"), (0, "user:0200")])
    assert sorted(d[1] for d in details) == ["user:0100", "user:0200"]
    assert sorted(kt.sorted_keys(1)) == list(kt.sorted_keys(1))
    assert kt.clear() and kt.count() == 0


def test_adding_a_shard_moves_about_a_quarter_and_loses_nothing(
    shards: ShardedKyotoTycoon, server_factory: Any
) -> None:
    kt = shards
    rnd = random.Random(3)
    data = {f"k{i}": str(rnd.random()) for i in range(3000)}
    kt.set_bulk(data)
    kt.set_bulk({"ttl-a": "x", "ttl-b": "y"}, expire_time=3600)
    new = server_factory(["*", "%"], script=KT_LUA)
    moved = kt.add_server(f"127.0.0.1:{new.port}")
    assert 0.15 < moved / 3002 < 0.35  # about 1/4 of the keys went to the 4th server
    fourth = kt.shards[f"127.0.0.1:{new.port}"]
    assert fourth.count() == moved
    assert kt.count() == 3002
    assert kt.get_bulk(list(data)) == data  # every key found where the ring says
    for key in ("ttl-a", "ttl-b"):
        xt = kt.shard(key).expire_time(key)
        assert xt is not None and xt > time.time() + 3000  # expiration moved with it


def test_sharded_bulk_runs_concurrently_on_a_slow_server(shards: ShardedKyotoTycoon) -> None:
    # Each server's part of a bulk call runs in its own thread: a call over three
    # servers costs about one round trip, not three (checked by thread names, not time).
    kt = shards
    seen: set[str] = set()
    for client in kt.shards.values():
        orig = client.get_bulk

        def spy(*a: Any, _orig: Any = orig, **k: Any) -> Any:
            seen.add(threading.current_thread().name)
            return _orig(*a, **k)

        client.get_bulk = spy  # type: ignore[method-assign]
    kt.set_bulk({f"c{i}": "x" for i in range(90)})
    assert len(kt.get_bulk([f"c{i}" for i in range(90)])) == 90
    assert len(seen) >= 2 and all(n.startswith("ktstore-shard") for n in seen)


def test_sharded_binary_keys_round_trip(server_factory: Any) -> None:
    servers = [server_factory(["*"]) for _ in range(2)]
    kt = ShardedKyotoTycoon(
        [f"127.0.0.1:{s.port}" for s in servers], serializer=KT_NONE, decode_keys=False
    )
    keys = [bytes([i, 255 - i]) for i in range(50)]
    kt.set_bulk({k: k * 2 for k in keys})
    assert kt.get_bulk(keys) == {k: k * 2 for k in keys}
    kt.close_all()


# --------------------------------------------------------------------------- asyncio


def test_async_failover_and_sharding(cluster: Cluster, server_factory: Any) -> None:
    import asyncio

    from ktstore.client.failover_aio import AsyncFailoverKyotoTycoon
    from ktstore.client.sharded import AsyncShardedKyotoTycoon

    cluster.start("p", ["*"], sid=1)
    cluster.start("r", ["*"], sid=2, master="p")
    others = [server_factory(["*"]) for _ in range(2)]

    async def main() -> None:
        kt = AsyncFailoverKyotoTycoon(
            primary=cluster.addr("p"),
            replicas=[cluster.addr("r")],
            timeout=5,
            recheck=0.2,
            wait=0.3,
        )
        await kt.set_bulk({f"a{i}": str(i) for i in range(50)})
        replica = KyotoTycoon(*parse_address(cluster.addr("r")), timeout=5)
        wait_until(lambda: replica.count() == 50)
        replica.close_all()
        cluster.stop("p")
        got = await asyncio.gather(*(kt.get(f"a{i}") for i in range(50)))
        assert got == [str(i) for i in range(50)]
        with pytest.raises(KTConnectionError):
            await kt.set("x", "y")
        await kt.close_all()

        sh = AsyncShardedKyotoTycoon([f"127.0.0.1:{s.port}" for s in others], timeout=5)
        assert await sh.set_bulk({f"s{i}": str(i) for i in range(300)}) == 300
        assert await sh.count() == 300
        assert await sh.get("s17") == "17"
        assert len(await sh.get_bulk([f"s{i}" for i in range(300)])) == 300
        assert len(await sh.match_prefix("s1")) == 111  # s1, s10-s19, s100-s199
        third = server_factory(["*"])
        moved = await sh.add_server(f"127.0.0.1:{third.port}")
        assert 50 < moved < 150 and await sh.count() == 300
        assert len([k async for k in sh.keys()]) == 300
        await sh.close_all()

    asyncio.run(main())


def test_store_over_shards(server_factory: Any) -> None:
    from ktstore import Store
    from ktstore.models import Model, fields
    from ktstore.store import ShardedStore

    servers = [server_factory(["%"], script=KT_LUA) for _ in range(3)]
    kt = ShardedKyotoTycoon([f"127.0.0.1:{s.port}" for s in servers], serializer=KT_MSGPACK)
    store = Store(kt)
    assert isinstance(store, ShardedStore)
    for i in range(300):
        store[f"item:{i:03d}"] = {"n": i}
    store.update({"other:1": [1], "other:2": [2]})
    assert len(store) == 302
    assert store["item:042"] == {"n": 42}
    assert "item:299" in store and "item:300" not in store
    assert list(store.keys())[:3] == ["item:000", "item:001", "item:002"]  # merged in order
    assert list(store.keys()) == sorted(store.keys())
    assert [k for k in store.keys_with_prefix("other:")] == ["other:1", "other:2"]
    assert store.delete_prefix("item:1") == 100
    assert len(store) == 202
    del store["other:1"]
    assert store.get("other:1") is None
    with pytest.raises(InvalidArgument, match="one server"):

        class Thing(Model, store=store):
            name = fields.Text()

    with pytest.raises(InvalidArgument, match="one server"):

        class Other(Model, store=kt):
            name = fields.Text()

    kt.close_all()

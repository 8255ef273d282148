"""Replication: the stream codec, ReplicationClient, and ktstore-server as a slave.

The server tests run real replication between servers (in this process, or as child
processes where a kill or restart is the point), and compare whole database contents.
With ``KTSTORE_TEST_SERVER`` naming a real ktserver, the marked tests check that ours
follows it, and that a dual master of ours and it converges.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REAL_SERVER, RunningServer, free_port

from ktstore import KT_NONE, KyotoTycoon
from ktstore.embedded import stop_process, wait_for_port
from ktstore.errors import KTConnectionError, ProtocolError, ReplicationError
from ktstore.protocol import replication as repl
from ktstore.protocol.limits import XTMAX
from ktstore.replication import REPL_CLEAR, REPL_REMOVE, REPL_SET, ReplicationClient
from ktstore.server import Server
from ktstore.server.config import UsageError, parse_args
from ktstore.server.slave import read_rts_file

# --------------------------------------------------------------------------- the codec


def test_message_round_trip() -> None:
    for op, key, value, xt in [
        (repl.OP_SET, b"k\x00\xff", b"value", XTMAX),
        (repl.OP_SET, b"", b"", 1234567890),
        (repl.OP_SET, b"x" * 300, b"y" * 70000, 5),
        (repl.OP_REMOVE, b"gone", None, None),
        (repl.OP_CLEAR, None, None, None),
    ]:
        data = repl.encode_message(7, 3, op, key or b"", value or b"", xt or XTMAX)
        msg = repl.decode_message(data)
        assert (msg.sid, msg.db, msg.op, msg.key, msg.value, msg.xt) == (7, 3, op, key, value, xt)


def test_message_matches_ktserver_bytes() -> None:
    # ktserver's observed bytes (docs/protocol.md, replication): sid 7, db 0, SET r1=rv1 with xt 1234567890.
    wire = bytes.fromhex("00070000a10208") + b"r1" + bytes.fromhex("00499602d2") + b"rv1"
    assert repl.encode_message(7, 0, repl.OP_SET, b"r1", b"rv1", 1234567890) == wire
    assert repl.decode_message(wire) == repl.Message(7, 0, repl.OP_SET, b"r1", b"rv1", 1234567890)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00",
        b"\x00\x01\x00\x02\xa1\x05",
        b"\x00\x01\x00\x02\xa1\x01\x02k",
        b"\x00\x01\x00\x02\xa9",
    ],
)
def test_malformed_messages_raise(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        repl.decode_message(data)


def test_frames_parse_incrementally() -> None:
    stream = (
        repl.encode_data_frame(10, b"abc")
        + repl.encode_heartbeat(11)
        + repl.encode_data_frame(12, b"")
    )
    frames = []
    pos = 0
    # Feed one byte more at a time: None until a frame is whole, never a partial frame.
    buf = b""
    for i in range(len(stream)):
        buf = stream[: i + 1]
        while (parsed := repl.parse_frame(buf, pos)) is not None:
            frame, pos = parsed
            frames.append(frame)
    assert frames == [repl.DataFrame(10, b"abc"), repl.Heartbeat(11), repl.DataFrame(12, b"")]
    assert pos == len(buf)


def test_hostile_frame_size_and_refusal_raise() -> None:
    with pytest.raises(ProtocolError, match="over the limit"):
        repl.parse_frame(b"\xb1" + (1).to_bytes(8, "big") + (1 << 31).to_bytes(4, "big"))
    with pytest.raises(ProtocolError, match="no update log"):
        repl.parse_frame(b"\xbf")
    with pytest.raises(ProtocolError):
        repl.parse_frame(b"\x42")


def test_request_round_trip() -> None:
    data = repl.encode_request(123, 45, white=True)
    assert len(data) == repl.REQUEST_SIZE
    assert repl.parse_request(data) == (repl.FLAG_WHITE_SID, 123, 45)
    assert repl.parse_request(data[:-1]) is None
    with pytest.raises(ValueError):
        repl.encode_request(-1, 1)
    with pytest.raises(ValueError):
        repl.encode_request(1, 70000)


# --------------------------------------------------------------------------- helpers


def snapshot(kt: KyotoTycoon, db: int) -> dict[bytes, bytes]:
    """Every record of one database, as bytes."""
    keys = kt.match_prefix(b"", db=db) or []
    out: dict[bytes, bytes] = {}
    for i in range(0, len(keys), 1000):
        chunk = [k if isinstance(k, bytes) else k.encode() for k in keys[i : i + 1000]]
        got = kt.get_bulk(chunk, db=db, decode_values=False)
        out.update({(k if isinstance(k, bytes) else k.encode()): v for k, v in got.items()})
    return out


def wait_until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def tune_replication(kt: KyotoTycoon, host: str, port: int) -> None:
    """The ``tune_replication`` RPC (not part of the client's documented API)."""
    url = f"http://{kt.host}:{kt.port}/rpc/tune_replication?host={host}&port={port}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200


def client(s: RunningServer | Server) -> KyotoTycoon:
    port = s.port
    host = getattr(s, "host", "127.0.0.1")
    return KyotoTycoon(host, port, timeout=10, serializer=KT_NONE, decode_keys=False)


def mixed_writes(kt: KyotoTycoon, n: int, dbs: int, seed: int, tag: bytes = b"") -> None:
    """``n`` random writes over ``dbs`` databases: sets, bulk sets, removes, some expiring."""
    rnd = random.Random(seed)
    done = 0
    while done < n:
        db = rnd.randrange(dbs)
        r = rnd.random()
        if r < 0.5:
            k = b"k%d" % rnd.randrange(n // 4 + 1) + tag
            kt.set(k, b"v%d" % rnd.randrange(10**6), db=db)
            done += 1
        elif r < 0.7:
            recs = {
                b"b%d" % rnd.randrange(n // 4 + 1) + tag: b"w" * rnd.randrange(50)
                for _ in range(20)
            }
            kt.set_bulk(recs, db=db, expire_time=3600 if rnd.random() < 0.3 else None)
            done += len(recs)
        elif r < 0.9:
            kt.remove(b"k%d" % rnd.randrange(n // 4 + 1) + tag, db=db)
            done += 1
        else:
            keys = [b"b%d" % rnd.randrange(n // 4 + 1) + tag for _ in range(10)]
            kt.remove_bulk(keys, db=db)
            done += len(keys)


def in_process(
    dbs: list[str], tmp: Path, name: str, sid: int, master: Server | None = None, **extra: Any
) -> Server:
    args = ["-le", "-sid", str(sid), "-ulog", str(tmp / f"{name}-ulog")]
    if master is not None or extra.get("rts"):
        args += ["-rts", str(tmp / f"{name}.rts")]
    if master is not None:
        args += ["-mhost", "127.0.0.1", "-mport", str(master.port), "-riv", "0"]
    server = Server(dbs, host="127.0.0.1", port=free_port(), args=args)  # <= 32767 for ktserver
    server.start()
    return server


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in reversed(started):
        s.stop()


# --------------------------------------------------------------------------- the client


def test_replication_client_streams_changes(server_factory: Any, tmp_path: Path) -> None:
    s = server_factory(["*", "%"], extra_args=["-sid", "9", "-ulog", str(tmp_path / "ulog")])
    kt = KyotoTycoon(s.host, s.port, timeout=10)
    start = time.time() - 60
    kt.set("k1", "v1")
    kt.add("k2", "v2", db=1, expire_time=int(start) + 3600)
    kt.replace("k2", "v2-x", db=1)
    kt.add("k1", "ignored")  # fails: not logged
    kt.remove_bulk(["k1"])
    kt.set(b"\xff\xfe", "bin")
    kt.clear(db=1)

    rc = ReplicationClient(kt, sid=100)
    got = []
    for msg in rc.run(start):
        got.append(msg)
        if len(got) == 6:
            rc.stop()
    assert not rc.running
    stripped = [{k: v for k, v in m.items() if k != "ts"} for m in got]
    assert stripped == [
        {"sid": 9, "db": 0, "op": REPL_SET, "key": "k1", "value": "v1", "xt": XTMAX},
        {"sid": 9, "db": 1, "op": REPL_SET, "key": "k2", "value": "v2", "xt": int(start) + 3600},
        {"sid": 9, "db": 1, "op": REPL_SET, "key": "k2", "value": "v2-x", "xt": XTMAX},
        {"sid": 9, "db": 0, "op": REPL_REMOVE, "key": "k1"},
        {"sid": 9, "db": 0, "op": REPL_SET, "key": b"\xff\xfe", "value": "bin", "xt": XTMAX},
        {"sid": 9, "db": 1, "op": REPL_CLEAR},
    ]
    stamps = [m["ts"] for m in got]
    assert stamps == sorted(stamps) and len(set(stamps)) == 6
    assert rc.last_ts == stamps[-1]

    # Resume strictly after the fourth message: the last two again, nothing before.
    again = []
    for msg in rc.run(since=stamps[3]):
        again.append(msg)
        if len(again) == 2:
            rc.stop()
    assert again == got[4:]
    kt.close_all()


def test_replication_client_follows_live_writes_and_stops_from_another_thread(
    server_factory: Any, tmp_path: Path
) -> None:
    s = server_factory(["*"], extra_args=["-sid", "3", "-ulog", str(tmp_path / "ulog")])
    kt = KyotoTycoon(s.host, s.port, timeout=10)
    rc = ReplicationClient(kt, sid=150, decode_values=False)
    seen: list[dict[str, Any]] = []
    ready = threading.Event()

    def consume() -> None:
        gen = rc.run()
        ready.set()
        for msg in gen:
            seen.append(msg)

    t = threading.Thread(target=consume)
    t.start()
    ready.wait(5)
    time.sleep(0.2)  # the stream is open before the writes
    for i in range(50):
        kt.set(f"live{i}", f"{i}")
    wait_until(lambda: len(seen) >= 50)
    assert rc.stop(wait=True)
    t.join(5)
    assert not t.is_alive()
    assert [m["key"] for m in seen] == [f"live{i}" for i in range(50)]
    assert seen[0]["value"] == b"0"  # decode_values=False: the stored bytes
    kt.close_all()


def test_replication_client_without_ulog_raises(server_factory: Any) -> None:
    s = server_factory(["*"])
    kt = KyotoTycoon(s.host, s.port, timeout=5)
    with pytest.raises(ReplicationError, match="update log"):
        next(iter(ReplicationClient(kt).run()))
    kt.close_all()


def test_replication_client_server_gone_raises() -> None:
    kt = KyotoTycoon("127.0.0.1", free_port(), timeout=2)
    with pytest.raises(KTConnectionError):
        next(iter(ReplicationClient(kt).run()))


# --------------------------------------------------------------------------- the slave


def test_slave_options_are_checked_like_ktserver() -> None:
    with pytest.raises(UsageError, match="server ID"):
        parse_args(["-mhost", "h", "-rts", "x"])
    with pytest.raises(UsageError, match="time stamp file"):
        parse_args(["-mhost", "h", "-sid", "2"])
    with pytest.raises(UsageError):
        parse_args(["-mhost", "h", "-sid", "2", "-rts", "x", "-mport", "0"])
    cfg = parse_args(["-mhost", "h", "-mport", "2000", "-sid", "2", "-rts", "x", "-riv", "0.5"])
    assert (cfg.master_host, cfg.master_port, cfg.rts_path, cfg.riv) == ("h", 2000, "x", 0.5)


def test_slave_follows_master_over_several_databases(servers: list[Server], tmp_path: Path) -> None:
    master = in_process(["*", "%", "*"], tmp_path, "m", sid=1)
    servers.append(master)
    mk = client(master)
    mixed_writes(mk, 3000, 3, seed=1)  # before the slave exists: read from the log
    slave = in_process(["*", "%", "*"], tmp_path, "s", sid=2, master=master)
    servers.append(slave)
    sk = client(slave)
    mixed_writes(mk, 7000, 3, seed=2)  # while it follows
    mk.clear(db=2)
    mk.set(b"after-clear", b"x", db=2)
    for db in range(3):
        wait_until(lambda db=db: snapshot(sk, db) == snapshot(mk, db))
    # The slave re-logs with the master's sid, and its RTS file tracks the master's log.
    assert slave.slave.applied > 0
    report = dict(sk.report())
    assert int(report["repl_master_port"]) == master.port
    wait_until(lambda: read_rts_file(str(tmp_path / "s.rts")) > 0)
    mk.close_all()
    sk.close_all()


def test_slave_keeps_expiration_times(servers: list[Server], tmp_path: Path) -> None:
    master = in_process(["*"], tmp_path, "m", sid=1)
    servers.append(master)
    slave = in_process(["*"], tmp_path, "s", sid=2, master=master)
    servers.append(slave)
    mk, sk = client(master), client(slave)
    xt = int(time.time()) + 5000
    mk.set(b"t", b"v", expire_time=xt)
    wait_until(lambda: sk.get(b"t") is not None)
    assert sk.check(b"t")
    got = sk.get_bulk([b"t"], decode_values=False)
    assert got == {b"t": b"v"}
    # Same absolute expiration on both sides (the value's 5-byte prefix crossed intact).
    assert master.dbs[0].get(b"t") == slave.dbs[0].get(b"t") == (b"v", xt)
    mk.close_all()
    sk.close_all()


def test_dual_master_converges(servers: list[Server], tmp_path: Path) -> None:
    a = in_process(["*", "%"], tmp_path, "a", sid=1, rts=True)
    servers.append(a)
    b = in_process(["*", "%"], tmp_path, "b", sid=2, master=a)
    servers.append(b)
    ka, kb = client(a), client(b)
    tune_replication(ka, "127.0.0.1", b.port)  # a follows b too: a dual master
    # Writes on both sides, on disjoint keys (a dual master does not order conflicting
    # writes to one key: Kyoto Tycoon's rule is "write each key on one side").
    ta = threading.Thread(target=mixed_writes, args=(ka, 4000, 2, 11, b"@a"))
    tb = threading.Thread(target=mixed_writes, args=(kb, 4000, 2, 12, b"@b"))
    ta.start()
    tb.start()
    ta.join()
    tb.join()
    for db in range(2):
        wait_until(lambda db=db: snapshot(ka, db) == snapshot(kb, db))
        assert any(k.endswith(b"@a") for k in snapshot(kb, db))
        assert any(k.endswith(b"@b") for k in snapshot(ka, db))
    # No loop: each side applied the other's changes once, not its own echoed back.
    n_a, n_b = a.slave.applied, b.slave.applied
    time.sleep(0.5)
    assert (a.slave.applied, b.slave.applied) == (n_a, n_b)
    ka.close_all()
    kb.close_all()


def test_tune_replication_without_rts_is_refused(servers: list[Server], tmp_path: Path) -> None:
    s = in_process(["*"], tmp_path, "x", sid=1)
    servers.append(s)
    kt = client(s)
    with pytest.raises(urllib.error.HTTPError) as err:
        tune_replication(kt, "127.0.0.1", 1)
    assert err.value.code == 501
    kt.close_all()


def _spawn(args: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ktstore.server", "-le", "-host", "127.0.0.1", "-port", str(port)]
        + args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port("127.0.0.1", port, 15.0, proc)
    return proc


@pytest.mark.slow
def test_slave_killed_mid_stream_resumes_from_its_rts_file(
    servers: list[Server], tmp_path: Path
) -> None:
    master = in_process(["*", "%"], tmp_path, "m", sid=1)
    servers.append(master)
    mk = client(master)
    port = free_port()
    slave_args = [
        "-sid", "2", "-rts", str(tmp_path / "s.rts"), "-mhost", "127.0.0.1",
        "-mport", str(master.port), "-riv", "0",
    ]  # fmt: skip
    dbs = [str(tmp_path / "s0.kch"), str(tmp_path / "s1.kct")]
    proc = _spawn([*slave_args, *dbs], port)
    sk = KyotoTycoon("127.0.0.1", port, timeout=10, serializer=KT_NONE, decode_keys=False)
    try:
        writer = threading.Thread(target=mixed_writes, args=(mk, 6000, 2, 5))
        writer.start()
        time.sleep(0.3)
        proc.kill()  # SIGKILL while the master is still being written
        proc.wait()
        writer.join()
        mixed_writes(mk, 1000, 2, seed=6)  # more while the slave is down
        proc = _spawn([*slave_args, *dbs], port)
        for db in range(2):
            wait_until(lambda db=db: snapshot(sk, db) == snapshot(mk, db), timeout=30)
    finally:
        sk.close_all()
        stop_process(proc)
    mk.close_all()


# --------------------------------------------------------------------------- a real ktserver


def _real(args: list[str], port: int) -> subprocess.Popen[bytes]:
    assert REAL_SERVER
    proc = subprocess.Popen(
        [REAL_SERVER, "-le", "-host", "127.0.0.1", "-port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port("127.0.0.1", port, 10.0, proc)
    return proc


@pytest.mark.real_server
@pytest.mark.skipif(not REAL_SERVER, reason="needs KTSTORE_TEST_SERVER")
def test_slave_of_a_real_ktserver(servers: list[Server], tmp_path: Path) -> None:
    port = free_port()
    real = _real(["-sid", "1", "-ulog", str(tmp_path / "real-ulog"), "*", "%"], port)
    try:
        rk = KyotoTycoon("127.0.0.1", port, timeout=10, serializer=KT_NONE, decode_keys=False)
        mixed_writes(rk, 2000, 2, seed=21)
        args = ["-le", "-sid", "2", "-rts", str(tmp_path / "s.rts")]
        args += ["-mhost", "127.0.0.1", "-mport", str(port), "-riv", "0"]
        slave = Server(["*", "%"], host="127.0.0.1", port=0, args=args)
        slave.start()
        servers.append(slave)
        sk = client(slave)
        mixed_writes(rk, 3000, 2, seed=22)
        for db in range(2):
            wait_until(lambda db=db: snapshot(sk, db) == snapshot(rk, db))
        # ReplicationClient on the real server's log, too.
        rc = ReplicationClient(rk, sid=150, decode_values=False)
        first = next(iter(rc.run(0)))
        rc.stop()
        assert first["sid"] == 1 and first["op"] in (REPL_SET, REPL_REMOVE)
        rk.close_all()
        sk.close_all()
    finally:
        stop_process(real)


@pytest.mark.real_server
@pytest.mark.skipif(not REAL_SERVER, reason="needs KTSTORE_TEST_SERVER")
def test_dual_master_with_a_real_ktserver(servers: list[Server], tmp_path: Path) -> None:
    ours = in_process(["*"], tmp_path, "ours", sid=2, rts=True)
    servers.append(ours)
    port = free_port()
    real_args = ["-sid", "1", "-ulog", str(tmp_path / "real-ulog"), "-rts", str(tmp_path / "r.rts")]
    real_args += ["-mhost", "127.0.0.1", "-mport", str(ours.port), "-riv", "0", "*"]
    real = _real(real_args, port)
    try:
        ko = client(ours)
        tune_replication(ko, "127.0.0.1", port)
        kr = KyotoTycoon("127.0.0.1", port, timeout=10, serializer=KT_NONE, decode_keys=False)
        ta = threading.Thread(target=mixed_writes, args=(ko, 2000, 1, 31, b"@ours"))
        tb = threading.Thread(target=mixed_writes, args=(kr, 2000, 1, 32, b"@real"))
        ta.start()
        tb.start()
        ta.join()
        tb.join()
        wait_until(lambda: snapshot(ko, 0) == snapshot(kr, 0), timeout=30)
        assert any(k.endswith(b"@real") for k in snapshot(ko, 0))
        assert any(k.endswith(b"@ours") for k in snapshot(kr, 0))
        ko.close_all()
        kr.close_all()
    finally:
        stop_process(real)

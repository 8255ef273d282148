"""File databases of ktstore-server on disk: key/value sizes, order, reopen, expiry,
the old format, the single-server lock, durability under SIGKILL and a full disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from conftest import free_port, wait_for_port
from replay import RawClient

from ktstore.protocol.limits import XTMAX
from ktstore.server.database import Database, DatabaseOpenError
from ktstore.server.persistence import convert_command


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# keys around LMDB's 511-byte key limit and the 510-byte bucket prefix, many
# sharing long prefixes so that they land in the same bucket
_BASE = bytes(range(256)) * 4
LONG_KEYS = sorted(
    {b"", b"\x00", b"\xff", b"a", _BASE[:508], _BASE[:509], _BASE[:510], _BASE[:511]}
    | {_BASE[:n] + tail for n in (509, 510, 600, 1000) for tail in (b"", b"\x00", b"a", b"\xff")}
    | {b"z" * 100_000, b"z" * 100_000 + b"\x00", b"z" * 99_999 + b"\xff", b"z" * 510}
)


@pytest.mark.parametrize("ext", ["kct", "kch"])
def test_keys_of_any_length_keep_byte_order_across_reopen(tmp_path: Path, ext: str) -> None:
    path = str(tmp_path / f"casket.{ext}")
    mem = Database("%")
    db = Database(path)
    for i, key in enumerate(reversed(LONG_KEYS)):
        assert db.set(key, b"v%d" % i) and mem.set(key, b"v%d" % i)
    assert db.count() == mem.count() == len(LONG_KEYS) and db.size() == mem.size()
    db.close()
    db = Database(path)
    assert db.count() == len(LONG_KEYS) and db.size() == mem.size()
    assert db.match_prefix(b"") == LONG_KEYS
    assert db.match_prefix(_BASE[:509]) == mem.match_prefix(_BASE[:509])
    for key in LONG_KEYS:
        assert db.get(key) == mem.get(key)
    cur = db.cursor()
    assert cur.jump()
    seen = []
    while (rec := cur.get(step=True)) is not None:
        seen.append(rec[0])
    assert seen == LONG_KEYS
    if ext == "kct":
        cur = db.cursor()
        assert cur.jump_back()
        back = []
        while (k := cur.get_key(step=True)) is not None:
            back.append(k)
        assert back == LONG_KEYS[::-1]
        probe = _BASE[:600] + b"\x01"  # not stored: between two keys of one bucket
        assert cur.jump(probe) and cur.get_key() == min(k for k in LONG_KEYS if k > probe)
        assert cur.jump_back(probe) and cur.get_key() == max(k for k in LONG_KEYS if k < probe)
    # removing keys of a shared bucket, one by one
    for key in LONG_KEYS[::2]:
        assert db.remove(key) and mem.remove(key)
    assert not db.remove(LONG_KEYS[0])
    db.close()
    db = Database(path)
    assert db.match_prefix(b"") == LONG_KEYS[1::2] == mem.match_prefix(b"")
    assert db.count() == mem.count() and db.size() == mem.size()
    db.close()


def test_value_sizes(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "casket.kch"))
    big = os.urandom(8 << 20)
    assert db.set(b"empty", b"") and db.set(b"big", big) and db.set(b"k" * 600, big[:1000])
    db.close()
    db = Database(str(tmp_path / "casket.kch"))
    assert db.get(b"empty") == (b"", XTMAX) and db.get(b"big") == (big, XTMAX)
    assert db.get(b"k" * 600) == (big[:1000], XTMAX)
    db.close()


def test_expiry_gc_and_counts_are_true_to_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "casket.kct")
    clock = Clock()
    db = Database(path, clock=clock)
    now = int(clock.t)
    db.set_bulk_xt([(b"e%03d" % i, b"x", now + 10) for i in range(100)])
    db.set(b"long" * 200, b"x", now + 10)
    db.set(b"keep", b"v")
    db.set(b"later", b"v", now + 1000)
    assert db.count() == 103
    db.close()
    clock.t += 20
    db = Database(path, clock=clock)
    assert db.count() == 103  # lazily collected, as KT: nothing happens at open
    assert db.get(b"e000") is None and db.get(b"long" * 200) is None
    assert db.count() == 101  # reading an expired record purged it
    db.set(b"w", b"1")  # a GC step collects a few more per write
    assert db.count() < 101
    assert db.vacuum()
    assert db.count() == 3 and sorted(db.match_prefix(b"")) == [b"keep", b"later", b"w"]
    assert dict(db.status())["count"] == "3"
    db.close()
    db = Database(path, clock=clock)
    assert db.count() == 3 and db.size() == 3 * 5 + len(b"keeplaterw") + 3
    db.close()


def test_transactions_nest_inside_a_batch(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "casket.kct"))
    seen: list = []
    db.set_commit_hook(lambda cleared, changes: seen.append(sorted(changes)))
    with db.batch():
        db.set(b"a", b"1")
        assert db.begin_transaction()
        db.set(b"b", b"2")
        db.remove(b"a")
        assert db.end_transaction(commit=False)  # drops b and the removal only
        assert db.get(b"a") == (b"1", XTMAX) and db.get(b"b") is None
        assert db.begin_transaction()
        db.set(b"c", b"3")
        assert db.end_transaction(commit=True)
    assert seen == [[(b"a", (b"1", XTMAX)), (b"c", (b"3", XTMAX))]]
    assert db.count() == 2
    db.close()
    db = Database(str(tmp_path / "casket.kct"))
    assert db.match_prefix(b"") == [b"a", b"c"] and db.count() == 2
    db.close()


def _write_legacy(path: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta(name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(
        "CREATE TABLE records(key BLOB PRIMARY KEY, value BLOB NOT NULL, xt INTEGER NOT NULL)"
        " WITHOUT ROWID"
    )
    conn.executemany(
        "INSERT INTO meta VALUES(?, ?)", [("format", "ktstore-sqlite-1"), ("kind", "tree")]
    )
    rows = [(b"k%04d" % i, b"v%d" % i, XTMAX) for i in range(500)]
    rows += [(b"x" * 700, b"long", XTMAX), (b"gone", b"old", 1000)]
    conn.executemany("INSERT INTO records VALUES(?, ?, ?)", rows)
    conn.commit()
    conn.close()


def test_old_format_is_refused_with_the_command_that_converts_it(tmp_path: Path) -> None:
    path = tmp_path / "old casket.kct"
    _write_legacy(path)
    with pytest.raises(DatabaseOpenError) as info:
        Database(str(path))
    command = convert_command(str(path))
    assert command in str(info.value)
    argv = [sys.executable if a == "python" else a for a in __import__("shlex").split(command)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    db = Database(str(path))
    assert db.count() == 501 and db.get(b"k0042") == (b"v42", XTMAX)
    assert db.get(b"x" * 700) == (b"long", XTMAX) and db.get(b"gone") is None
    db.close()
    assert (tmp_path / "old casket.kct.sqlite-1.bak").exists()


# ------------------------------------------------------------ server processes

_LIVE: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_leaked_servers():
    yield
    while _LIVE:
        proc = _LIVE.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _start(*args: str, prefix: tuple[str, ...] = (), wait: bool = True) -> tuple:
    port = free_port()
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "ktstore.server", "-port", str(port), "-lz", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _LIVE.append(proc)
    if wait:
        try:
            wait_for_port("127.0.0.1", port, timeout=20)
        except OSError:
            proc.kill()
            raise AssertionError(proc.communicate()[1].decode()) from None
    return proc, port


@pytest.mark.slow
def test_second_server_on_a_file_is_refused_naming_the_first(tmp_path: Path) -> None:
    path = str(tmp_path / "casket.kct")
    first, _ = _start(path)
    second, _ = _start(path, wait=False)
    assert second.wait(20) == 1
    err = second.communicate()[1].decode()
    assert f"pid {first.pid}" in err and "locked" in err
    assert first.poll() is None
    first.terminate()
    assert first.wait(15) == 0
    third, port = _start(path)  # the lock went with the first server
    third.terminate()
    assert third.wait(15) == 0


SCRIPT = """
kt = __kyototycoon__
db = kt.db
mem = kt.dbs["*"]

local function fill(prefix, n)
  for i = 1, n do db:set(prefix .. ":" .. i, "v") end
end

function plain(inmap, outmap)
  fill(inmap.id, 40)
  return kt.RVSUCCESS
end

function with_tx(inmap, outmap)
  fill(inmap.id .. "a", 20)
  db:begin_transaction()
  fill(inmap.id .. "b", 20)
  db:end_transaction(true)
  return kt.RVSUCCESS
end

-- writes, then waits (bounded) until the test has killed the server
function hang(inmap, outmap)
  if inmap.tx then db:begin_transaction() end
  fill(inmap.id, 40)
  if inmap.tx then db:end_transaction(true) end
  mem:set("started", "1")
  for i = 1, 200000000 do
    if i % 100000 == 0 and mem:get("stop") then break end
  end
  return kt.RVSUCCESS
end
"""


@pytest.mark.slow
@pytest.mark.parametrize("tx", [False, True], ids=["no-tx", "tx"])
def test_sigkill_keeps_every_acknowledged_write_and_no_partial_lua_call(
    tmp_path: Path, tx: bool
) -> None:
    path = str(tmp_path / "casket.kct")
    script = tmp_path / "s.lua"
    script.write_text(SCRIPT)
    proc, port = _start("-scr", str(script), path, "*")
    acked: set[bytes] = set()
    whole_calls: list[tuple[str, int]] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        c = RawClient("127.0.0.1", port)
        for i in range(40):
            tag = f"w{w}-{i}"
            kind = i % 4
            if kind == 0:
                ok = c.rpc("set", {"key": tag, "value": "x"})[0] == 200
                got = {tag.encode()} if ok else set()
            elif kind == 1:
                pairs = {f"_{tag}:{j}": "x" for j in range(30)}
                ok = c.rpc("set_bulk", pairs)[0] == 200
                got = {k[1:].encode() for k in pairs} if ok else set()
            else:
                proc_name = "plain" if kind == 2 else "with_tx"
                ok = c.rpc("play_script", {"name": proc_name, "_id": tag})[0] == 200
                got = set()
                if ok:
                    with lock:
                        whole_calls.append((tag, kind))
            with lock:
                acked.update(got)
        c.close()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # a call that has written its records and is still running when the server dies
    hanger = RawClient("127.0.0.1", port, timeout=60)
    params = {"name": "hang", "_id": "hang"}
    if tx:
        params["_tx"] = "1"
    hanger.sock.sendall(  # send without waiting for the answer
        b"POST /rpc/play_script HTTP/1.1\r\nHost: x\r\nContent-Type: text/tab-separated-values"
        + b"\r\nContent-Length: %d\r\n\r\n" % len(_tsv(params))
        + _tsv(params)
    )
    watcher = RawClient("127.0.0.1", port)
    for _ in range(2000):
        if watcher.rpc("get", {"DB": "*", "key": "started"})[0] == 200:
            break
        threading.Event().wait(0.01)
    else:
        raise AssertionError("the hanging call never started")
    proc.send_signal(signal.SIGKILL)
    proc.wait(15)
    hanger.close()
    watcher.close()
    db = Database(path)
    try:
        missing = [k for k in acked if db.get(k) is None]
        assert not missing
        for tag, kind in whole_calls:
            names = [f"{tag}:{i}" for i in range(1, 41)] if kind == 2 else []
            names += [f"{tag}{p}:{i}" for p in "ab" for i in range(1, 21)] if kind == 3 else []
            assert all(db.get(n.encode()) is not None for n in names), tag
        assert db.match_prefix(b"hang") == []  # not acknowledged, not committed: none
        assert db.count() == len(db.match_prefix(b""))
    finally:
        db.close()


def _tsv(params: dict[str, str]) -> bytes:
    return b"".join(f"{k}\t{v}\n".encode() for k, v in params.items())


DISK_FULL = textwrap.dedent(
    """
    import json, resource, sys
    from ktstore.server.database import Database
    from ktstore.server.filedb import CommitError
    path, limit = sys.argv[1], int(sys.argv[2])
    db = Database(path)
    logged = []
    db.set_commit_hook(lambda cleared, changes: logged.extend(k.hex() for k, _ in changes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    ok, failed, bulk_failed = [], [], []
    value = bytes(20000)
    for i in range(400):
        key = b"single%04d" % i
        (ok if db.set(key, value) else failed).append(key.hex())
    err = db.error()
    try:
        db.set_bulk([(b"bulk%04d" % i, value) for i in range(50)])
    except CommitError:
        bulk_failed = [(b"bulk%04d" % i).hex() for i in range(50)]
    visible = [k for k in failed + bulk_failed if db.get(bytes.fromhex(k)) is not None]
    print(json.dumps({"ok": ok, "failed": failed, "bulk_failed": bulk_failed,
                      "visible": visible, "logged": logged, "count": db.count(),
                      "error": list(err)}))
    """
)


def test_disk_full_fails_writes_that_stay_invisible(tmp_path: Path) -> None:
    path = str(tmp_path / "casket.kct")
    db = Database(path)
    db.set(b"before", b"x")
    db.close()
    limit = os.path.getsize(path) + (1 << 20)
    out = subprocess.run(
        [sys.executable, "-c", DISK_FULL, path, str(limit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["ok"] and r["failed"] and r["bulk_failed"]  # the disk filled up
    assert r["error"][0] == 9 and "commit failed" in r["error"][2]  # system error
    assert r["visible"] == []  # failed writes are not visible in that process
    assert sorted(r["logged"]) == sorted(r["ok"])  # the hook saw committed writes only
    assert r["count"] == len(r["ok"]) + 1
    db = Database(path)  # nor after a restart; every acknowledged write is there
    try:
        assert db.count() == len(r["ok"]) + 1
        assert all(db.get(bytes.fromhex(k)) is not None for k in r["ok"])
        assert all(db.get(bytes.fromhex(k)) is None for k in r["failed"] + r["bulk_failed"])
    finally:
        db.close()


@pytest.mark.slow
def test_disk_full_server_answers_errors(tmp_path: Path) -> None:
    path = str(tmp_path / "casket.kch")
    Database(path).close()
    limit = os.path.getsize(path) + (1 << 20)
    proc, port = _start(path, prefix=("prlimit", f"--fsize={limit}"))
    c = RawClient("127.0.0.1", port)
    value = "v" * 20000
    statuses = [c.rpc("set", {"key": f"k{i}", "value": value})[0] for i in range(200)]
    assert 200 in statuses and set(statuses) - {200}  # some failed once the disk was full
    acked = [i for i, s in enumerate(statuses) if s == 200]
    failed = [i for i, s in enumerate(statuses) if s != 200]
    assert all(c.rpc("get", {"key": f"k{i}"})[0] == 450 for i in failed)  # no record
    assert c.rpc("set_bulk", {f"_b{i}": value for i in range(50)})[0] != 200
    assert c.rpc("get", {"key": "b0"})[0] == 450
    c.close()
    proc.terminate()
    assert proc.wait(15) == 0
    db = Database(path)
    try:
        assert db.count() == len(acked)
        assert all(db.get(b"k%d" % i) is not None for i in acked)
    finally:
        db.close()

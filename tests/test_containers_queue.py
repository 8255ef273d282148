"""Queue and Schedule (lua/kt.lua queue*/schedule* procedures) against a live server."""

from __future__ import annotations

import pickle
import threading
import time

import pytest

from ktstore.client import KyotoTycoon
from ktstore.errors import InvalidArgument, ScriptError
from ktstore.serializers import KT_JSON, KT_PICKLE


@pytest.fixture
def kt(client_factory):
    return client_factory(serializer=KT_PICKLE)


@pytest.fixture(params=[0, 1], ids=["hashdb", "treedb"])
def db(request):
    return request.param


def test_queue_fifo(kt, db):
    qa, qb = kt.Queue("qa", db=db), kt.Queue("qb", db=db)
    for i in range(20):
        qa.add(f"i{i}")
        qb.add(f"i{i % 4}")
    assert len(qa) == 20 and len(qb) == 20
    assert qa.pop() == "i0"
    assert qa.rpop() == "i19"
    assert qa.pop(n=3) == ["i1", "i2", "i3"]
    assert qa.rpop(n=3) == ["i18", "i17", "i16"]
    assert qa.peek(n=3) == ["i4", "i5", "i6"]
    assert qa.rpeek(n=3) == ["i15", "i14", "i13"]
    assert qb.remove("i1", n=4) == 4
    assert qb.rremove("i2", n=4) == 4
    assert len(qb) == 12
    assert qb.peek(20) == ["i0", "i2", "i3", "i0", "i3", "i0", "i3", "i0", "i3", "i0", "i1", "i3"]
    assert qb.remove("i3", n=5) == 5
    assert qb.remove("i0", n=10) == 5
    assert qb.pop(2) == ["i2", "i1"]
    assert qb.pop() is None and qb.pop(3) == [] and len(qb) == 0
    assert qa.remove("i7") == 1
    assert qa.remove("i7") == 0
    assert qa.pop(n=5) == ["i4", "i5", "i6", "i8", "i9"]
    assert qa.clear() == 6
    assert len(qa) == 0
    # no item left; qb's record stays (empty) with its id counter, as ukt's does
    assert kt.match_prefix("qa", db=db) == [] and kt.match_prefix("qb", db=db) == ["qb"]


def test_queue_holes_left_by_remove(kt, db):
    q = kt.Queue("q", db=db)
    q.extend([f"i{i}" for i in range(10)])
    assert q.remove("i0") == 1 and q.remove("i5") == 1 and q.rremove("i9") == 1
    assert len(q) == 7
    assert q.pop() == "i1"
    assert q.rpop() == "i8"
    assert q.peek(10) == ["i2", "i3", "i4", "i6", "i7"]
    assert q.rpeek(2) == ["i7", "i6"]
    assert q.set_priority("i3", 5) == 1
    assert q.pop(10) == ["i3", "i2", "i4", "i6", "i7"]
    assert len(q) == 0
    assert kt.match_prefix("q", db=db) == ["q"]  # no item left, the id counter stays
    q.extend(["a", "b"], 1)
    assert q.add("c", 2) == 14  # ids go on after emptying (set_priority took id 11)
    assert q.clear() == 3
    assert kt.count(db=db) == 0  # clear removes the counter too (ids restart, as in ukt)
    assert q.add("d") == 1


def test_concurrent_pops_from_both_ends(kt_server):
    n_items = 200
    producer = KyotoTycoon(port=kt_server.port)
    producer.Queue("both").extend([f"item-{i}" for i in range(n_items)])
    results: list[list[str]] = [[], []]

    def consume(slot: int) -> None:
        client = KyotoTycoon(port=kt_server.port)
        q = client.Queue("both")
        while True:
            item = q.pop() if slot == 0 else q.rpop()
            if item is None:
                break
            results[slot].append(item)
        client.close_all()

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    got = results[0] + results[1]
    assert len(got) == len(set(got)) == n_items
    assert results[0] == sorted(results[0], key=lambda s: int(s.split("-")[1]))
    producer.close_all()


def test_queue_scores(kt, db):
    q = kt.Queue("q", db=db)
    scores = [100, 10, 1000, 1, 0, 3, -10, 5, 4, 2]
    for score in scores:
        q.add(f"i{score}", score)
    assert len(q) == len(scores)
    assert q.peek(n=len(scores)) == [
        "i1000",
        "i100",
        "i10",
        "i5",
        "i4",
        "i3",
        "i2",
        "i1",
        "i0",
        "i-10",
    ]
    assert q.peek() == "i1000"
    assert q.peek(min_score=1001) is None
    assert q.pop(4, min_score=10) == ["i1000", "i100", "i10"]
    assert q.pop(2, min_score=10) == []
    assert q.pop() == "i5"
    assert q.pop(min_score=3) == "i4"
    assert q.rpeek(3) == ["i-10", "i0", "i1"]
    assert q.rpeek(2, min_score=0) == ["i0", "i1"]
    assert q.rpop(2, min_score=1) == ["i1", "i2"]
    assert q.peek(4) == ["i3", "i0", "i-10"]
    assert q.peek(4, min_score=-9) == ["i3", "i0"]
    assert q.remove("i0", min_score=1) == 0
    assert q.pop(2, min_score=0) == ["i3", "i0"]
    assert q.peek() == q.rpeek() == "i-10"


def test_queue_equal_scores_are_fifo_and_float_scores(kt):
    q = kt.Queue("q")
    q.add("x")
    q.add("x", 3)
    q.extend(["y", "x", "z"])
    q.extend(["y", "z"], 2)
    q.add("y", 2)
    q.add("z", 1.5)
    assert q.peek(9) == ["x", "y", "z", "y", "z", "x", "y", "x", "z"]
    assert q.remove("x", n=2, min_score=3) == 1
    assert q.rremove("y", n=1, min_score=1) == 1
    assert q.rremove("z", n=2, min_score=0) == 2
    assert q.peek(5) == ["y", "z", "x", "y", "x"]


def test_queue_set_priority(kt):
    q = kt.Queue("q")
    q.extend(["i0", "i1", "i2"])
    assert q.set_priority("i1", 1) == 1
    assert q.peek(3) == ["i1", "i0", "i2"]
    assert q.set_priority("i2", 2) == 1
    assert q.set_priority("i2", 2) == 0
    assert q.set_priority("i0", -1) == 1
    assert q.peek(3) == ["i2", "i1", "i0"]
    assert q.rpeek(3, 0) == ["i1", "i2"]


def test_queue_transfer(kt, db):
    qa, qb, qc = (kt.Queue(k, db=db) for k in ("qa", "qb", "qc"))
    qb.extend(["i0", "i1", "i2", "i3"])
    assert qb.transfer(qa, 2) == ["i0", "i1"]
    assert qb.transfer(qc, 1) == "i2"
    assert qc.transfer("qa", 2) == ["i2"]
    assert qc.transfer("qb", 1) is None
    assert qc.transfer("qb", 2) == []
    assert qb.transfer(qa) == "i3"
    assert qa.peek(10) == ["i0", "i1", "i2", "i3"]
    qa.rpop(2)
    for i in range(5, 0, -1):
        qb.add(f"i-{i}", i)
    assert qb.transfer(qa, 2) == ["i-5", "i-4"]
    assert qa.peek(10) == ["i-5", "i-4", "i0", "i1"]  # scores preserved
    with pytest.raises(ScriptError, match="same queue"):
        qa.transfer(qa)


def test_queue_values_use_the_serializer(kt_server):
    kt = KyotoTycoon(port=kt_server.port, serializer=KT_JSON)
    q = kt.Queue("qa")
    q.add({"key": "i0"})
    q.extend([{"key": f"i{i}"} for i in range(1, 10)])
    assert q.pop() == {"key": "i0"}
    assert q.rpop(2) == [{"key": "i9"}, {"key": "i8"}]
    assert q.remove({"key": "i2"}) == 1
    assert q.rremove({"key": "i6"}) == 1
    assert q.pop(n=100) == [{"key": f"i{i}"} for i in (1, 3, 4, 5, 7)]
    kt.close_all()


def test_queue_bad_arguments(kt):
    q = kt.Queue("q")
    with pytest.raises(InvalidArgument):
        q.add("x", score="high")
    with pytest.raises(InvalidArgument):
        q.pop(0)
    with pytest.raises(ScriptError, match="score out of range"):
        q.add("x", 10**13)


def test_concurrent_poppers_never_share_an_item(kt_server):
    n_items, n_threads = 300, 4
    producer = KyotoTycoon(port=kt_server.port)
    q = producer.Queue("work")
    q.extend([f"item-{i}" for i in range(n_items)])
    results: list[list[str]] = [[] for _ in range(n_threads)]

    def consume(slot: int) -> None:
        client = KyotoTycoon(port=kt_server.port)
        mine = client.Queue("work")
        while True:
            batch = mine.pop(n=3) if slot % 2 else [mine.pop()]
            batch = [x for x in batch if x is not None]
            if not batch:
                break
            results[slot].extend(batch)
        client.close_all()

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    got = [x for r in results for x in r]
    assert len(got) == len(set(got)) == n_items
    producer.close_all()


def test_concurrent_adders_and_poppers(kt_server):
    n_each = 100
    seen: list[str] = []
    lock = threading.Lock()

    def add(tag: str) -> None:
        client = KyotoTycoon(port=kt_server.port)
        q = client.Queue("mixed")
        for i in range(n_each):
            q.add(f"{tag}-{i}", i % 3)
        client.close_all()

    def pop() -> None:
        client = KyotoTycoon(port=kt_server.port)
        q = client.Queue("mixed")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if len(seen) >= 2 * n_each:
                    break
            item = q.pop()
            if item is not None:
                with lock:
                    seen.append(item)
        client.close_all()

    threads = [threading.Thread(target=add, args=(t,)) for t in "ab"]
    threads += [threading.Thread(target=pop) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(seen) == len(set(seen)) == 2 * n_each


def test_bpop_returns_ready_item_and_times_out(kt):
    q = kt.Queue("qa")
    q.add("item")
    assert q.bpop() == "item"
    t0 = time.monotonic()
    assert q.bpop(timeout=0.3) is None
    assert 0.25 <= time.monotonic() - t0 < 2.0
    assert q.bpop(timeout=0) is None


def test_bpop_wakes_when_another_client_adds(kt_server):
    waiter = KyotoTycoon(port=kt_server.port)
    adder = KyotoTycoon(port=kt_server.port)
    result: list = []

    def block() -> None:
        t0 = time.monotonic()
        result.append(waiter.Queue("jobs").bpop(timeout=5))
        result.append(time.monotonic() - t0)

    thread = threading.Thread(target=block)
    thread.start()
    time.sleep(0.3)
    t_add = time.monotonic()
    adder.Queue("jobs").add("job-1")
    thread.join(10)
    assert result[0] == "job-1"
    waited_after_add = time.monotonic() - t_add
    assert waited_after_add < 0.5, waited_after_add  # woken by SIGNAL, not by a poll
    waiter.close_all()
    adder.close_all()


def test_bpop_with_min_score(kt):
    q = kt.Queue("q")
    q.add("low", 1)
    assert q.bpop(timeout=0.2, min_score=5) is None
    q.add("high", 9)
    assert q.bpop(timeout=1, min_score=5) == "high"
    assert q.pop() == "low"


def test_schedule(kt, db):
    s = kt.Schedule("sched", db=db)
    nums = [100, 10, 1000, 1, 3, 5, 4, 20, 2]
    for num in nums:
        s.add(f"i{num}", num)
    assert len(s) == len(nums)
    assert s.items(3) == ["i1", "i2", "i3"]
    assert s.read(n=1) == ["i1"]
    assert s.read(4) == ["i2", "i3", "i4"]
    assert s.read(100, n=2) == ["i5", "i10"]
    assert len(s) == 3
    assert s.read(100, n=4) == ["i20", "i100"]
    assert s.read() == ["i1000"]
    assert s.count() == 0
    # ukt's count: the records removed, i.e. the items plus the schedule's own record
    assert s.clear() == 1
    assert s.clear() == 0
    s.add("a", 1)
    s.add("b", 2)
    assert s.clear() == 3 and len(s) == 0
    assert kt.count(db=db) == 0


def test_schedule_same_score_and_float_times(kt):
    s = kt.Schedule("sched")
    for i in reversed(range(1, 4)):
        s.add(f"ia-{i}", 1)
        s.add(f"ib-{i}", 2)
    assert s.read(n=2) == ["ia-3", "ia-2"]
    assert s.read(n=2) == ["ia-1", "ib-3"]
    assert s.read(1) == []
    assert s.read() == ["ib-2", "ib-1"]
    now = time.time()
    s.add("later", now + 0.5)
    s.add("now", now)
    assert s.read(now + 0.1) == ["now"]
    assert s.items() == ["later"]
    assert s.clear() == 2  # "later" and the schedule record (ukt counts both)


def test_bpop_in_other_db_woken_by_transfer(kt_server):
    waiter = KyotoTycoon(port=kt_server.port)
    mover = KyotoTycoon(port=kt_server.port)
    result: list = []
    thread = threading.Thread(
        target=lambda: result.append(waiter.Queue("dest", db=1).bpop(timeout=5))
    )
    src = mover.Queue("src", db=1)
    src.add("moved")
    thread.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    assert src.transfer("dest") == "moved"
    thread.join(10)
    assert result == ["moved"]
    assert time.monotonic() - t0 < 0.5
    assert waiter.Queue("dest").count() == 0  # db 0 untouched
    waiter.close_all()
    mover.close_all()


def test_mixed_concurrent_operations_conserve_items(kt_server):
    """Adders (single and bulk, mixed scores), head and tail poppers and a remover
    at once: every item comes out exactly once and nothing is left behind."""
    port, n = kt_server.port, 60
    taken: list[str] = []
    ids: list[int] = []  # of single adds (list.append is atomic)
    lock = threading.Lock()
    stop = threading.Event()

    def adder(tag: str) -> None:
        client = KyotoTycoon(port=port)
        q = client.Queue("mix")
        for i in range(n):
            if i % 10 == 0:
                q.extend([f"{tag}-{i}-{j}" for j in range(3)], i % 3)
            else:
                ids.append(q.add(f"{tag}-{i}", i % 3))
        client.close_all()

    def worker(kind: str) -> None:
        client = KyotoTycoon(port=port)
        q = client.Queue("mix")
        i = 0
        while not stop.is_set():
            if kind == "head":
                got = q.pop(3)
            elif kind == "tail":
                got = q.rpop(2)
            else:
                i += 1
                value = f"a-{i % n}"
                got = [value] if q.remove(value) else []
            with lock:
                taken.extend(got)
        client.close_all()

    adders = [threading.Thread(target=adder, args=(t,)) for t in "abc"]
    workers = [threading.Thread(target=worker, args=(k,)) for k in ("head", "tail", "remove")]
    for t in adders + workers:
        t.start()
    for t in adders:
        t.join(60)
    stop.set()
    for t in workers:
        t.join(60)
    client = KyotoTycoon(port=port)
    taken.extend(client.Queue("mix").pop(10000))
    assert len(taken) == len(set(taken)) == 3 * (n + (n // 10) * 2)
    assert client.match_prefix("mix") == ["mix"]  # no item left, only the id counter
    assert len(set(ids)) == len(ids) == 3 * (n - n // 10)  # no id given twice
    assert client.Queue("mix").add("last") == 3 * (n + (n // 10) * 2) + 1  # every id given once
    client.close_all()


def test_queue_add_ids_and_group_insertion(kt, db):
    """add() sends one value (queueadd's ``value`` input) and returns the item's id:
    1, 2, ... per queue whatever the scores, as ukt's Queue.add (extend takes ids
    too); a new score's group lands in order among existing ones; an emptied queue
    keeps counting, only clear() starts the ids over."""
    q = kt.Queue("ids", db=db)
    assert [q.add(f"a{i}") for i in range(5)] == [1, 2, 3, 4, 5]
    assert [q.add("high", 10), q.add("low", -10), q.add("mid", 5)] == [6, 7, 8]
    assert q.extend(["b0", "b1"]) == 2
    assert q.add("a5") == 11
    assert kt.Queue("other", db=db).add("x") == 1  # a counter per queue
    assert q.peek(20) == ["high", "mid", "a0", "a1", "a2", "a3", "a4", "b0", "b1", "a5", "low"]
    assert len(q) == 11
    assert q.pop(20)[-1] == "low"
    assert kt.match_prefix("ids", db=db) == ["ids"]  # the counter, no item
    assert q.add("again") == 12
    raw = {"key": "ids", "value": pickle.dumps("raw"), "db": db, "score": 1}
    out = kt.raw_script("queueadd", raw)
    assert out == {b"num": b"1", b"id": b"13"}
    assert q.pop(5) == ["raw", "again"]
    assert q.clear() == 0
    assert kt.match_prefix("ids", db=db) == []
    assert q.add("new") == 1


def test_queue_written_by_the_previous_script_is_read(kt, db):
    """A queue record of the kt.lua before ids (a 12-digit header, no counter) is
    read as is and upgraded on its next change: items come out in order, ids start
    at 1."""
    sf = "1000000000000.000000"  # score 0's field (highest scores first: 10^12 - score)
    group = f"{sf}{0:016d}{2:016d}{2:016d}"
    for name in ("old", "old2"):
        kt.set_bytes(name, ("0" * 12 + group).encode(), db=db)
        for seq, item in enumerate(["first", "second"]):
            kt.set_bytes(f"{name}\t{sf}{seq:016d}", pickle.dumps(item), db=db)
    q = kt.Queue("old", db=db)
    assert len(q) == 2 and q.peek(5) == ["first", "second"]
    assert q.pop() == "first"
    assert q.add("third") == 1
    assert q.pop(5) == ["second", "third"]
    q2 = kt.Queue("old2", db=db)  # the other hot paths first: add, then a bulk pop
    assert q2.add("third") == 1 and q2.extend(["fourth"]) == 1
    assert q2.pop(5) == ["first", "second", "third", "fourth"]

"""The server's storage engine (ktstore.server.database) on its own, no network."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import pytest

from ktstore.protocol import dumps
from ktstore.protocol.limits import INT64MAX, INT64MIN
from ktstore.server.database import (
    ERR_LOGIC,
    ERR_NOIMPL,
    ERR_NOREC,
    NOP,
    REMOVE,
    XTMAX,
    Database,
    DatabaseOpenError,
    parse_db_spec,
)


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["*", "%", "file.kch", "file.kct"])
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Database]:
    spec = request.param
    d = Database(str(tmp_path / spec) if "." in spec else spec)
    yield d
    d.close()


def test_spec_parsing() -> None:
    assert parse_db_spec("*") == ("*", "hash", False, {})
    assert parse_db_spec("%#ktcapcnt=10") == ("%", "tree", False, {"ktcapcnt": "10"})
    assert parse_db_spec("/x/casket.kch#bnum=1m") == ("/x/casket.kch", "hash", True, {"bnum": "1m"})
    assert parse_db_spec("a.kct")[1:3] == ("tree", True)
    assert parse_db_spec("a.kcg")[1:3] == ("tree", False)
    assert parse_db_spec("x.db#type=kct".replace("kct", "tree"))[1:3] == ("tree", True)
    with pytest.raises(DatabaseOpenError):
        parse_db_spec("casket.unknown")


def test_basic_records(db: Database) -> None:
    assert db.get(b"k") is None and db.error()[0] == ERR_NOREC
    assert db.set(b"k", b"v")
    assert db.get(b"k") == (b"v", XTMAX)
    assert not db.add(b"k", b"x")
    assert db.error_text() == "DB: 6: record duplication: record duplication"
    assert db.replace(b"k", b"w") and not db.replace(b"nope", b"x")
    assert db.append(b"k", b"+") and db.append(b"new", b"n")
    assert db.get(b"k")[0] == b"w+" and db.get(b"new")[0] == b"n"
    assert db.check(b"k") == (2, XTMAX)
    assert db.seize(b"k") == (b"w+", XTMAX) and db.get(b"k") is None
    assert not db.remove(b"k") and db.remove(b"new")
    assert db.count() == 0


def test_success_keeps_last_error(db: Database) -> None:
    db.get(b"missing")
    db.set(b"a", b"1")
    assert db.error()[1] == "no record"


def test_error_is_per_thread(db: Database) -> None:
    db.get(b"missing")
    seen = []
    t = threading.Thread(target=lambda: seen.append(db.error()[0]))
    t.start()
    t.join()
    assert seen == [0] and db.error()[0] == ERR_NOREC


def test_counters(db: Database) -> None:
    assert db.increment(b"n", 5) == 5
    assert db.increment(b"n", -7) == -2
    assert db.get(b"n")[0] == (-2).to_bytes(8, "big", signed=True)
    assert db.increment(b"m", 1, orig=100) == 101
    assert db.increment(b"t", 1, orig=INT64MIN) is None and db.error()[0] == ERR_LOGIC
    assert db.increment(b"t", 7, orig=INT64MAX) == 7
    assert db.increment(b"t", 3, orig=INT64MAX) == 3
    db.set(b"s", b"abc")
    assert db.increment(b"s", 1) is None
    assert db.error_text() == "DB: 8: logical inconsistency: logical inconsistency"


def test_cas(db: Database) -> None:
    assert db.cas(b"k", None, b"created")
    assert not db.cas(b"k", None, b"again")
    assert db.error_text() == "DB: 8: logical inconsistency: status conflict"
    assert db.cas(b"k", b"created", b"next") and db.get(b"k")[0] == b"next"
    assert db.cas(b"k", b"next", None) and db.get(b"k") is None


def test_expiration_lazy_and_gc() -> None:
    clock = Clock()
    db = Database("*", clock=clock)
    now = int(clock.t)
    db.set(b"a", b"1", now + 10)
    db.set(b"b", b"2", now + 10)
    assert db.get(b"a") == (b"1", now + 10)
    clock.t += 10
    assert db.get(b"a") is not None  # expired only when now > xt
    clock.t += 1
    assert db.get(b"a") is None
    assert db.count() == 1  # a purged when read; b expired but not collected yet
    assert db.add(b"a", b"new")  # an expired record is empty for writes
    assert db.count() == 1 and db.get(b"a") == (b"new", XTMAX)  # the GC step took b
    assert db.check(b"b") is None
    db.set(b"d", b"4", now)
    db.vacuum()
    assert db.get(b"d") is None


def test_bulk(db: Database) -> None:
    assert db.set_bulk([(b"a", b"1"), (b"b", b"2")]) == 2
    assert db.set_bulk_xt([(b"c", b"3", 5)]) == 1
    assert db.get_bulk([b"a", b"zz", b"b", b"c"]) == [(b"a", b"1", XTMAX), (b"b", b"2", XTMAX)]
    assert db.remove_bulk([b"a", b"zz"]) == 1


def test_visitors(db: Database) -> None:
    db.set(b"a", b"v", 5_000_000_000)
    assert db.accept(b"a", lambda k, v, xt: v + b"!")
    assert db.get(b"a") == (b"v!", 5_000_000_000)  # xt kept when the visitor gives none
    assert db.accept(b"new", lambda k, v, xt: (b"fresh", 6_000_000_000) if v is None else NOP)
    assert db.get(b"new") == (b"fresh", 6_000_000_000)
    assert db.accept(b"new", lambda k, v, xt: REMOVE) and db.get(b"new") is None
    assert db.accept(b"a", lambda k, v, xt: b"ignored", writable=False)
    assert db.get(b"a")[0] == b"v!"
    seen = []
    db.set(b"b", b"2")
    db.iterate(lambda k, v, xt: seen.append(k) or REMOVE)
    assert sorted(seen) == [b"a", b"b"] and db.count() == 0
    db.set_bulk([(b"x", b"1"), (b"y", b"2")])
    db.accept_bulk([b"x", b"y", b"z"], lambda k, v, xt: (v or b"") + b"0")
    assert db.get_bulk([b"x", b"y", b"z"]) == [
        (b"x", b"10", XTMAX),
        (b"y", b"20", XTMAX),
        (b"z", b"0", XTMAX),
    ]


def test_matching_tree_sorted() -> None:
    db = Database("%")
    for k in [b"c10", b"ab", b"b", b"aa", b"abc", b"c2", b"c1", b"zz", b"ba", b"bb"]:
        db.set(k, b"v")
    assert db.match_prefix(b"a") == [b"aa", b"ab", b"abc"]
    assert db.match_prefix(b"a", 2) == [b"aa", b"ab"]
    assert db.match_regex(rb"^c[0-9]$") == [b"c1", b"c2"]
    assert db.match_regex(b"(") is None
    assert db.error_text() == "DB: 8: logical inconsistency: compilation failed"
    assert db.match_similar(b"ab", 1) == [b"ab", b"aa", b"abc", b"b", b"bb"]
    assert db.match_similar(b"c1", 1, utf=True, max=2) == [b"c1", b"c10"]


def test_tree_cursor() -> None:
    db = Database("%")
    for i in range(1, 6):
        db.set(b"k%d" % i, b"v%d" % i)
    cur = db.cursor()
    assert cur.get() is None and db.error()[0] == ERR_NOREC
    assert cur.jump() and cur.get(step=True) == (b"k1", b"v1", XTMAX)
    assert cur.get_key() == b"k2"
    db.remove(b"k3")  # concurrent removal does not break the cursor
    assert cur.step() and cur.get_key() == b"k4"
    assert cur.seize() == (b"k4", b"v4", XTMAX) and cur.get_key() == b"k5"
    assert not cur.step() and cur.get() is None
    assert cur.jump_back(b"k4") and cur.get_key() == b"k2"
    assert cur.step_back() and cur.get_key() == b"k1"
    assert not cur.step_back()
    assert cur.jump(b"k2") and cur.set_value(b"x", step=True) and cur.get_key() == b"k5"
    assert db.get(b"k2")[0] == b"x"
    assert cur.jump(b"k5") and cur.remove() and cur.get() is None


def test_hash_cursor() -> None:
    db = Database("*")
    for i in range(5):
        db.set(b"k%d" % i, b"v")
    cur = db.cursor()
    assert not cur.jump_back() and db.error()[0] == ERR_NOIMPL
    assert not cur.step_back() and db.error()[0] == ERR_NOIMPL
    assert cur.jump()
    keys = []
    while (rec := cur.get(step=True)) is not None:
        keys.append(rec[0])
    assert sorted(keys) == [b"k%d" % i for i in range(5)]
    assert cur.jump(b"k3") and cur.get_key() == b"k3"
    assert not cur.jump(b"missing")


def test_cursor_skips_expired() -> None:
    clock = Clock()
    db = Database("%", clock=clock)
    db.set(b"a", b"1")
    db.set(b"b", b"2", int(clock.t) + 1)
    db.set(b"c", b"3")
    clock.t += 5
    cur = db.cursor()
    assert cur.jump() and cur.get(True)[0] == b"a" and cur.get()[0] == b"c"


def test_transactions(db: Database) -> None:
    db.set(b"a", b"1")
    assert db.begin_transaction()
    db.set(b"a", b"2")
    db.set(b"b", b"new")
    db.remove(b"a")
    assert db.end_transaction(commit=False)
    assert db.get(b"a") == (b"1", XTMAX) and db.get(b"b") is None
    assert db.begin_transaction()
    db.clear()
    db.set(b"c", b"3")
    assert db.end_transaction(commit=False)
    assert db.get(b"a") is not None and db.get(b"c") is None
    assert db.begin_transaction()
    db.set(b"c", b"3")
    assert db.end_transaction(commit=True) and db.get(b"c") is not None
    assert not db.end_transaction()


def test_capacity() -> None:
    db = Database("%#ktcapcnt=3")
    for i in range(10):
        db.set(b"k%d" % i, b"v")
    assert db.count() == 3 and db.get(b"k9") is not None


def test_persistence(tmp_path) -> None:
    path = str(tmp_path / "casket.kct")
    db = Database(path)
    db.set_bulk([(b"b", b"2"), (b"a", b"1"), (b"gone", b"x")])
    db.remove(b"gone")
    db.set(b"t", b"x", 5_000_000_000)
    db.begin_transaction()
    db.set(b"rolled", b"back")
    db.end_transaction(False)
    assert db.count() == 3
    with pytest.raises(DatabaseOpenError, match="locked"):
        Database(path)  # one opener at a time, even in one process
    db.close()
    again = Database(path)
    assert again.is_tree and again.match_prefix(b"") == [b"a", b"b", b"t"]
    assert again.get(b"t") == (b"x", 5_000_000_000)
    again.clear()
    again.close()
    assert Database(path).count() == 0


def test_refuses_foreign_files(tmp_path) -> None:
    kc = tmp_path / "real.kch"
    kc.write_bytes(b"KC\n\x00" + bytes(100))
    with pytest.raises(DatabaseOpenError, match="Kyoto Cabinet"):
        Database(str(kc))
    other = tmp_path / "text.kch"
    other.write_bytes(b"hello world, not a database")
    with pytest.raises(DatabaseOpenError):
        Database(str(other))


def test_memory_db_keeps_no_change_log() -> None:
    db = Database("*")
    for i in range(100):
        db.set(b"k%d" % i, b"v")
        db.remove(b"k%d" % i)
    assert not db._dirty  # nothing to persist or log: no per-key bookkeeping


def test_commit_hook_sees_each_request_once() -> None:
    db = Database("%")
    seen = []
    db.set_commit_hook(lambda cleared, changes: seen.append((cleared, sorted(changes))))
    db.set(b"a", b"1")
    db.set_bulk([(b"b", b"2"), (b"c", b"3")])
    db.remove(b"a")
    db.begin_transaction()
    db.set(b"d", b"4")
    db.remove(b"b")
    db.end_transaction(commit=True)
    db.clear()
    assert seen == [
        (False, [(b"a", (b"1", XTMAX))]),
        (False, [(b"b", (b"2", XTMAX)), (b"c", (b"3", XTMAX))]),
        (False, [(b"a", None)]),
        (False, [(b"b", None), (b"d", (b"4", XTMAX))]),
        (True, []),
    ]


def test_posix_classes_and_counter_overflow() -> None:
    db = Database("%")
    for k in [b"ab", b"1b", b" b", b"Zb"]:
        db.set(k, b"v")
    assert db.match_regex(b"[[:alpha:]]b") == [b"Zb", b"ab"]
    assert db.match_regex(b"[^[:lower:][:upper:]]b") == [b" b", b"1b"]
    assert db.increment(b"n", INT64MAX) == INT64MAX
    assert db.increment(b"n", 1) == INT64MIN  # wraps, as a real ktserver does
    assert db.increment(b"n", 0) == INT64MIN


def test_tree_cursor_keeps_its_direction() -> None:
    # KC's tree cursors remember whether they scan backward (jump_back/step_back):
    # stepping reads and removals then move to the previous record.
    db = Database("%")
    for k in (b"a", b"b", b"c", b"d"):
        db.set(k, b"v")
    cur = db.cursor()
    assert cur.jump_back() and cur.get(step=True)[0] == b"d" and cur.get_key() == b"c"
    assert cur.seize()[0] == b"c" and cur.get_key() == b"b"
    assert cur.remove() and cur.get_key() == b"a"
    assert cur.get(step=True)[0] == b"a" and cur.get() is None
    db.set_bulk([(b"b", b"v"), (b"c", b"v")])
    assert cur.jump(b"b") and cur.seize()[0] == b"b" and cur.get_key() == b"c"
    assert cur.jump_back(b"c") and cur.step() and cur.get(step=True)[0] == b"d"
    assert cur.get() is None


def test_increment_double_follows_kc_arithmetic() -> None:
    """Recorded from ktserver 0.9.56: parts are added separately, in KC's int64 and
    long double arithmetic; an out-of-range value is stored as INT64MIN (-inf)."""
    db = Database("*")
    assert db.increment_double(b"x", 1e19) == 1e19
    assert db.get(b"x")[0] == dumps._QQ.pack(INT64MIN, 0)
    assert db.increment_double(b"x", 0.0) == -math.inf
    assert db.increment_double(b"y", -1e19) == -1e19
    assert db.increment_double(b"y", 1.0) == -math.inf  # an infinity is left alone
    assert db.get(b"y")[0] == dumps._QQ.pack(INT64MIN, 0)
    db.increment_double(b"z", 5.0)
    assert db.increment_double(b"z", 1e19) == float(INT64MIN + 5)
    db.increment_double(b"u", 9.2e18)
    assert db.increment_double(b"u", 9.2e18) == -46744073709551616.0  # int64 wraps
    db.increment_double(b"w", 0.000001)
    assert db.increment_double(b"w", 0.000001) == pytest.approx(0.000002)
    assert db.get(b"w")[0] == dumps._QQ.pack(0, 1999999998)  # long double truncation
    db.increment_double(b"v", -1.25)
    assert db.increment_double(b"v", 0.5) == -0.75
    assert db.increment_double(b"v", 2.75) == 2.0


def test_encode_double_counter_out_of_range_is_int64min() -> None:
    assert dumps.encode_double_counter(1e19) == dumps._QQ.pack(INT64MIN, 0)
    assert dumps.encode_double_counter(-1e19) == dumps._QQ.pack(INT64MIN, 0)
    assert dumps.decode_double_counter(dumps.encode_double_counter(1e19)) == -math.inf
    assert dumps.encode_double_counter(0.000001) == dumps._QQ.pack(0, 999999999)
    assert dumps.encode_double_counter(1.5) == dumps._QQ.pack(1, 500000000000000)


def test_increment_double_by_zero_keeps_the_xt() -> None:
    db = Database("*")
    db.increment_double(b"k", 1.5, xt=XTMAX - 1)
    assert db.increment_double(b"k", 0.0, xt=XTMAX) == 1.5
    assert db.get(b"k")[1] == XTMAX - 1


def test_increment_wraps_and_adding_zero_changes_nothing() -> None:
    """Recorded from ktserver 0.9.56: int64 overflow wraps; +0 keeps value and xt."""
    db = Database("*")
    db.increment(b"b", INT64MAX - 7)
    assert db.increment(b"b", 100) == INT64MIN + 92
    db.increment(b"c", 3, xt=XTMAX - 1)
    assert db.increment(b"c", 0, xt=XTMAX) == 3
    assert db.get(b"c")[1] == XTMAX - 1
    assert db.increment(b"c", 0, orig=INT64MAX) == 0  # "set" still writes


def test_increment_double_set_on_an_existing_counter() -> None:
    db = Database("*")
    db.increment_double(b"d", 2.5)
    assert db.increment_double(b"d", 1e19, orig=math.inf) == float(INT64MIN)
    assert db.increment_double(b"d", 0.0, orig=math.inf) == 0.0
    assert db.get(b"d")[0] == bytes(16)


def test_wire_bulk_operations_filter_by_database() -> None:
    clock = Clock()
    db = Database("*", clock=clock)
    now = int(clock.t)
    n, others = db.set_bulk_wire(
        [
            (0, b"a", b"1", INT64MAX),
            (1, b"x", b"9", INT64MAX),
            (0, b"b", b"2", 10),
            (0, b"c", b"3", -5),
        ],
        0,
        now,
    )
    assert (n, others) == (3, True)
    assert db.get(b"a") == (b"1", XTMAX) and db.get(b"b") == (b"2", now + 10)
    assert db.get(b"c") is None  # absolute xt 5: long gone
    assert db.get_bulk_wire([(0, b"b"), (2, b"a"), (0, b"a"), (0, b"zz")], 0) == (
        [(0, b"b", b"2", now + 10), (0, b"a", b"1", XTMAX)],
        True,
    )
    clock.t += 11  # b expires
    assert db.remove_bulk_wire([(0, b"a"), (0, b"a"), (0, b"b")], 0) == (1, False)
    assert db.count() == 0


def test_bulk_set_rolls_back(db: Database) -> None:
    db.set(b"a", b"old")
    assert db.begin_transaction()
    assert db.set_bulk([(b"a", b"new"), (b"b", b"2"), (b"b", b"3")]) == 3
    assert db.get(b"b") == (b"3", XTMAX) and db.count() == 2
    assert db.end_transaction(commit=False)
    assert db.get(b"a") == (b"old", XTMAX) and db.get(b"b") is None
    assert db.count() == 1 and db.size() == len(b"a") + len(b"old") + 5
    assert db.match_prefix(b"") == [b"a"]

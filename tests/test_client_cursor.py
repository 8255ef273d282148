"""Cursor: the whole documented API, on a tree DB (db 1) and a hash DB (db 0)."""

from __future__ import annotations

import threading

import pytest

from ktstore import KT_JSON, KyotoTycoon
from ktstore.cursor import CursorNotSupported


@pytest.fixture
def kt(kt):
    kt.set_bulk({"a": "1", "b": "2", "c": "3", "d": "4"}, db=1)
    return kt


def test_jump_step_read(kt):
    cur = kt.cursor(db=1)
    assert cur.cursor_id > 0 and cur.db == 1
    assert cur.key() is None  # not positioned yet
    assert cur.jump() is True
    assert cur.key() == "a"
    assert cur.value() == "1"
    assert cur.get() == ("a", "1")
    assert cur.step() is True
    assert cur.key() == "b"
    assert cur.key(step=True) == "b"
    assert cur.value(step=True) == "3"
    assert cur.get(step=True) == ("d", "4")
    assert cur.get() is None
    assert cur.is_valid() is False
    assert cur.jump("c") is True
    assert cur.get() == ("c", "3")
    assert cur.jump("bb") is True  # the first key at or after
    assert cur.key() == "c"
    assert cur.jump("zz") is False
    assert cur.close() is True


def test_jump_back_and_step_back(kt):
    cur = kt.cursor(db=1)
    assert cur.jump_back() is True
    assert cur.key() == "d"
    assert cur.step_back() is True
    assert cur.key() == "c"
    assert cur.jump_back("bb") is True
    assert cur.key() == "b"
    assert cur.step_back() is True
    assert cur.step_back() is False
    cur.close()


def test_jump_back_unsupported_on_hash_db(kt):
    kt.set("x", "1")
    cur = kt.cursor(db=0)
    with pytest.raises(CursorNotSupported) as info:
        cur.jump_back()
    assert isinstance(info.value, NotImplementedError)
    assert info.value.status == 501
    # the cursor's connection is still usable
    assert cur.jump() is True
    assert cur.key() == "x"
    cur.close()


def test_set_value_remove_seize(kt):
    cur = kt.cursor(db=1)
    assert cur.jump("b")
    assert cur.set_value("two") is True
    assert kt.get("b", db=1) == "two"
    assert cur.set_value("TWO", step=True, expire_time=3600) is True
    assert cur.key() == "c"
    (rec,) = kt.get_bulk_details([(1, "b")])
    assert rec[2] == "TWO" and rec[3] < 2**40 - 1
    assert cur.remove() is True  # removes c, moves to d
    assert cur.key() == "d"
    assert kt.get("c", db=1) is None
    assert cur.seize() == ("d", "4")
    assert kt.get("d", db=1) is None
    assert cur.seize() is None
    assert cur.remove() is False
    assert cur.set_value("x") is False
    cur.close()


def test_iteration_and_context_manager(kt):
    with kt.cursor(db=1) as cur:
        assert list(cur) == [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]
    cur = kt.cursor(db=1)
    cur.jump("c")
    assert list(cur) == [("c", "3"), ("d", "4")]
    cur.close()
    assert kt.pool.stats[2] == 0


def test_encode_decode_values_flags(kt_server):
    kt = KyotoTycoon(kt_server.host, kt_server.port, serializer=KT_JSON)
    kt.set("k", {"a": 1}, db=1)
    cur = kt.cursor(db=1, decode_values=False)
    cur.jump()
    assert cur.value() == b'{"a":1}'
    cur2 = kt.cursor(db=1, encode_values=False)
    cur2.jump()
    assert cur2.set_value(b"[1]")
    assert kt.get("k", db=1) == [1]
    cur.close()
    cur2.close()
    kt.close_all()


def test_cursor_ids_are_independent(kt):
    c1 = kt.cursor(db=1)
    c2 = kt.cursor(db=1, cursor_id=c1.cursor_id)  # same id, different connections
    c1.jump("a")
    c2.jump("d")
    assert c1.key() == "a"
    assert c2.key() == "d"
    assert c1.close() is True
    assert c2.close() is True
    assert c1.close() is False


def test_cursors_in_threads(kt):
    errors = []

    def walk():
        try:
            for _ in range(5):
                with kt.cursor(db=1) as cur:
                    assert [k for k, _ in cur] == ["a", "b", "c", "d"]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=walk) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.sync_only
def test_unclosed_cursor_frees_its_connection(kt):
    cur = kt.cursor(db=1)
    cur.jump()
    assert kt.pool.stats[2] == 1
    del cur
    assert kt.pool.stats[2] == 0

"""List container (lua/kt.lua l* procedures) against a live server."""

from __future__ import annotations

import time

import pytest

from ktstore.errors import InvalidArgument
from ktstore.serializers import KT_PICKLE


@pytest.fixture
def kt(client_factory):
    return client_factory(serializer=KT_PICKLE)


def test_list_basic_api(kt):
    lst = kt.List("l1")
    assert lst.append("i2") == 1
    assert lst.appendleft("i1") == 2
    assert lst.appendright("i4") == 3
    assert lst.insert(2, "i3") == 4
    assert lst.get_range() == ["i1", "i2", "i3", "i4"]
    assert (lst[0], lst[1], lst[-1], lst[-2]) == ("i1", "i2", "i4", "i3")
    lst[2] = "i3-x"
    assert lst[:] == ["i1", "i2", "i3-x", "i4"]
    assert lst.popleft() == "i1"
    assert lst.popright() == "i4"
    lst.append("i5-y")
    lst.insert(-1, "i4-y")
    assert lst[:] == ["i2", "i3-x", "i4-y", "i5-y"]
    lst.set(3, "i5-z")
    assert lst.pop(2) == "i4-y"
    assert lst.pop(2) == "i5-z"
    assert len(lst) == 2
    assert lst.pop() == "i3-x"
    assert lst.pop(5) is None
    assert list(lst) == ["i2"]
    assert "i2" in lst and "zz" not in lst
    del lst[0]
    assert len(lst) == 0


def test_list_ranges_follow_python_slices(kt):
    lst = kt.List("l1")
    ref = [f"i{i}" for i in range(10)]
    assert lst.extend(["i2"]) == 1
    assert lst.extend([]) == 1
    assert lst.extend(["i3", "i4", "i5", "i6", "i7"]) == 6
    assert lst.insert(0, "i1") == 7
    assert lst.appendleft("i0") == 8
    assert lst.extend(["i8", "i9"]) == 10
    for start in (None, -12, -3, -1, 0, 2, 9, 10, 15):
        for stop in (None, -12, -3, -1, 0, 2, 9, 10, 15):
            assert lst.get_range(start, stop) == ref[start:stop], (start, stop)
    assert lst[1:-1:2] == ref[1:-1:2]
    assert lst.remove_range(8) == 8
    assert lst.remove_range(3, 6) == 5
    assert lst.get_range() == ["i0", "i1", "i2", "i6", "i7"]
    assert lst.remove_range(-3, -1) == 3
    assert lst.remove_range(-3, 1) == 2
    assert lst.get_range() == ["i1", "i7"]
    del lst[0:1]
    assert lst.get_range() == ["i7"]
    assert lst.remove_range() == 0
    assert lst.remove_range() == 0
    assert lst.get_range() == [] and lst.get_range(3) == [] and lst.get_range(-2, -4) == []


def test_list_index_errors(kt):
    lst = kt.List("l1")
    assert lst.popleft() is None and lst.popright() is None and lst.pop(0) is None
    with pytest.raises(IndexError):
        lst.remove(0)
    with pytest.raises(IndexError):
        lst[3]
    with pytest.raises(IndexError):
        lst[-1]
    with pytest.raises(IndexError):
        lst.set(0, "foo")
    with pytest.raises(IndexError):
        lst.insert(1, "foo")
    assert lst.insert(0, "bar") == 1
    lst.clear()
    assert lst.insert(-1, "baz") == 1
    with pytest.raises(IndexError):
        lst.insert(2, "foo")
    assert lst.insert(-1, "nug") == 2
    assert lst.insert(2, "end") == 3  # index == length appends
    assert lst[:] == ["nug", "baz", "end"]
    with pytest.raises(IndexError):
        lst[3] = "x"
    with pytest.raises(InvalidArgument):
        lst.index("0")


def test_list_find(kt):
    lst = kt.List("l1")
    lst.extend(["i1", "i2", "i3", "i2", "i1"])
    assert (lst.find("i1"), lst.rfind("i1")) == (0, 4)
    assert (lst.find("i2"), lst.rfind("i2")) == (1, 3)
    assert lst.find("ix") is None and lst.rfind("ix") is None


def test_list_poppush(kt):
    l1, l2 = kt.List("l1"), kt.List("l2")
    l1.extend(["i0", "i1", "i2", "i3"])
    assert l1.lpoprpush(l2) == "i0"
    assert l1.rpoplpush(l2) == "i3"
    assert (list(l1), list(l2)) == (["i1", "i2"], ["i3", "i0"])
    assert l1.lpoprpush("l2") == "i1"
    assert l1.rpoplpush("l2") == "i2"
    with pytest.raises(IndexError):
        l1.lpoprpush(l2)
    with pytest.raises(IndexError):
        l1.rpoplpush(l2)
    assert list(l2) == ["i2", "i3", "i0", "i1"]
    assert l2.lpoprpush() == "i2"
    assert list(l2) == ["i3", "i0", "i1", "i2"]
    assert l2.rpoplpush() == "i2"
    assert list(l2) == ["i2", "i3", "i0", "i1"]
    with pytest.raises(IndexError):
        l1.rpoplpush(l1)


@pytest.mark.parametrize("db", [0, 1])
def test_list_unpack_and_pack(kt, db):
    lst = kt.List("l1", db=db)
    lst.extend([f"i{i}" for i in range(10)])
    assert lst.unpack() == 10
    expected = {f"l1:{i:04d}": f"i{i}" for i in range(10)}
    assert kt.get_bulk(list(expected), db=db) == expected
    assert lst.unpack(3, -3, "p1:", "%02d") == 4
    assert kt.get_bulk(["p1:00", "p1:03"], db=db) == {"p1:00": "i3", "p1:03": "i6"}
    lp = kt.List("lp", db=db)
    assert lp.pack(start="p1:", stop="p2") == 4
    assert lp.get_range() == ["i3", "i4", "i5", "i6"]
    assert lp.pack("l1:0008", count=1) == 1
    assert lp.get_range()[-1] == "i8"
    assert lp.pack("zz", "zzz") == 0


def test_list_raw_and_serializer(kt):
    data = ["i1", {"x1": "y1"}, 3.34, None, "i5"]
    lst = kt.List("l")
    lst.set_raw(data)
    assert lst.get_raw() == data
    assert list(lst) == data
    assert [lst[i] for i in range(len(data))] == data
    assert kt.deserialize_list(kt.get_bytes("l")) == data
    kt.remove("l")
    assert lst.get_raw() is None


def test_list_update_keeps_expire_time(kt):
    lst = kt.List("ttl")
    lst.append(1)
    kt.touch("ttl", 200)
    xt = kt.expire_time("ttl")
    lst.append(2)
    lst.appendleft(0)
    lst[1] = "one"
    lst.remove_range(2)
    assert kt.expire_time("ttl") == xt
    assert lst[:] == [0, "one"]
    assert abs(xt - time.time() - 200) < 3

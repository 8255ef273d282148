"""Set container (lua/kt.lua s* procedures) against a live server."""

from __future__ import annotations

import pytest

from ktstore.serializers import KT_PICKLE


@pytest.fixture
def kt(client_factory):
    return client_factory(serializer=KT_PICKLE)


def test_set_basic_api(kt):
    s = kt.Set("s1")
    assert s.add("k1") == 1
    assert s.add("k1") == 0
    assert s.add("k2", "k3", "k4", "k1") == 3
    assert s.add_bulk([]) == 0
    assert len(s) == 4 and s.count() == 4
    assert "k1" in s and "kx" not in s
    data = {"k1", "k2", "k3", "k4"}
    assert s.members() == data
    assert set(s) == data
    assert s.pop() in data
    assert s.pop() in data
    assert len(s) == 2
    assert s.add_bulk(data) == 2
    assert s.remove("k2") == 1
    assert s.remove("k2") == 0
    assert s.remove("k1", "k3", "kx") == 2
    assert s.remove_bulk([]) == 0
    assert s.members() == {"k4"}


def test_set_serialized_members(kt):
    s = kt.Set("s2")
    items = [100, 13.37, False, None, ("foo", "bar")]
    assert s.add(*items) == 5
    assert s.members() == set(items)
    assert all(item in s for item in items)
    assert s.pop() in items
    assert len(s) == 4


def test_empty_set(kt):
    s = kt.Set("s3")
    assert s.pop() is None
    assert s.remove("xx") == 0
    assert s.members() == set()
    s.add("a")
    s.pop()
    assert not kt.exists("s3")


def test_set_operations(kt):
    s1, s2, sx = kt.Set("s1"), kt.Set("s2"), kt.Set("sx")
    s1.add("k1", "k2", "k3")
    s2.add("k3", "k4", "k5")
    assert s1.intersection(s2) == {"k3"}
    assert s1.union(s2) == {"k1", "k2", "k3", "k4", "k5"}
    assert s1.difference(s2) == {"k1", "k2"}
    assert s2.difference("s1") == {"k4", "k5"}
    assert (s1 & s2, s1 | sx, s1 - sx) == ({"k3"}, {"k1", "k2", "k3"}, {"k1", "k2", "k3"})
    assert sx.intersection(s1) == set() and sx.difference(s1) == set()
    assert s1.intersection(s2, dest=sx) == {"k3"}
    assert sx.members() == {"k3"}
    assert s1.union(s2, sx) == {"k1", "k2", "k3", "k4", "k5"}
    assert sx.members() == {"k1", "k2", "k3", "k4", "k5"}
    assert s1.difference(s2, dest="sx") == {"k1", "k2"}
    assert sx.members() == {"k1", "k2"}
    assert s1.intersection(kt.Set("missing"), dest=sx) == set()
    assert not kt.exists("sx")


def test_set_keeps_expire_time_and_db(kt):
    s = kt.Set("s", db=1)
    s.add("a")
    kt.touch("s", 300, db=1)
    xt = kt.expire_time("s", db=1)
    s.add("b")
    s.remove("a")
    assert kt.expire_time("s", db=1) == xt
    assert kt.Set("s").members() == set()

"""Hash container (lua/kt.lua h* procedures) against a live server."""

from __future__ import annotations

import time

import pytest

from ktstore.serializers import KT_PICKLE


@pytest.fixture
def kt(client_factory):
    return client_factory(serializer=KT_PICKLE)


def test_hash_basic_api(kt):
    data = {"k1": "v1", "k2": ["i0", "i1", "i2"], "k3": {"x1": "y1"}}
    h = kt.Hash("h1")
    assert h.set_bulk(data) == 3
    assert h.set_bulk({}) == 0
    assert h.get_bulk(["k1", "k2", "k3", "kx"]) == data
    assert h.get_bulk(["x1"]) == {}
    assert h.get_bulk([]) == {}
    assert h["k2"] == ["i0", "i1", "i2"]
    assert h["kx"] is None

    h["k4"] = ["foo", "baz"]
    assert h.setnx("k1", "v1-x") == 0
    assert h.setnx("k5", "v5") == 1
    assert h.set("k1", "v1-y") == 1
    assert len(h) == 5
    assert h.remove_bulk(["k1", "k3", "kx"]) == 2
    assert h.remove_bulk(["k1", "k3", "kx"]) == 0
    assert h.remove_bulk([]) == 0
    assert h.get_all() == {"k2": ["i0", "i1", "i2"], "k4": ["foo", "baz"], "k5": "v5"}
    assert h.remove("k2") == 1
    assert h.remove("k2") == 0
    assert "k4" in h and "k2" not in h
    assert h.contains("k5") is True
    del h["k4"]
    h.update({"a": 1}, b=2)
    assert h.get_all() == {"k5": "v5", "a": 1, "b": 2}
    assert sorted(h) == ["a", "b", "k5"]
    assert kt.count() == 1  # one record holds the whole hash


def test_hash_missing_is_empty_and_emptied_hash_is_removed(kt):
    h = kt.Hash("none")
    assert h.get_all() == {}
    assert len(h) == 0
    assert h.get("x") is None
    assert h.get_raw() is None
    h["x"] = 1
    assert kt.exists("none")
    assert h.remove("x") == 1
    assert not kt.exists("none")


def test_hash_raw_interoperates_with_serialize_dict(kt):
    data = {"k1": "v1", "k2": {"x": "y"}, "k3": 0}
    h = kt.Hash("h")
    h.set_raw(data)
    assert h.get_raw() == data
    assert h.get_all() == data
    assert h["k2"] == {"x": "y"}
    assert kt.deserialize_dict(kt.get_bytes("h")) == data
    kt.set_bytes("h2", kt.serialize_dict({"a": 1}))
    assert kt.Hash("h2").get_all() == {"a": 1}


def test_hash_without_serialization(kt):
    h = kt.Hash("raw", encode_values=False, decode_values=False)
    h.set_bulk({"a": b"\x00\xff", "b": "text"})
    assert h.get_all() == {"a": b"\x00\xff", "b": b"text"}


def test_hash_binary_fields(kt):
    h = kt.Hash(b"bin\x00key")
    h[b"\x00\t\n"] = "v"
    kt.decode_keys = False
    try:
        assert h.get_all() == {b"\x00\t\n": "v"}
    finally:
        kt.decode_keys = True


def test_hash_unpack_pack_and_pack_keys_values(kt):
    h = kt.Hash("h")
    h.update(k1="v1", k2="v2")
    assert h.unpack() == 2
    assert kt.get_bulk(["h:k1", "h:k2"]) == {"h:k1": "v1", "h:k2": "v2"}
    assert h.unpack("p/") == 2
    assert kt.get("p/k2") == "v2"
    assert h.pack_values("hv") == 2
    assert sorted(kt.List("hv").get_range()) == ["v1", "v2"]
    assert h.pack_keys(kt.List("hk", encode_values=False, decode_values=False)) == 2
    assert sorted(kt.List("hk", decode_values=False).get_range()) == [b"k1", b"k2"]
    assert kt.Hash("empty").pack_values("nothing") == 0
    assert not kt.exists("nothing")


@pytest.mark.parametrize("db", [0, 1])
def test_hash_pack_range(kt, db):
    kt.set_bulk({f"k{i:02d}": f"v{i}" for i in range(10)}, db=db)
    h = kt.Hash("a1", db=db)
    assert h.pack("k01", "k03") == 2
    assert h.get_all() == {"k01": "v1", "k02": "v2"}
    h.clear()
    assert h.pack("k03x", "k05x") == 2
    assert h.get_all() == {"k04": "v4", "k05": "v5"}
    h.clear()
    assert h.pack("k08") == 2
    assert h.pack("k2", "k4", 0) == 0
    assert h.pack(start="zz") == 0
    assert h.get_all() == {"k08": "v8", "k09": "v9"}
    h.clear()
    assert h.pack() == 10  # every record but the hash itself
    assert kt.Hash("a1", db=1 - db).length() == 0


def test_hash_update_keeps_expire_time(kt):
    h = kt.Hash("ttl")
    h["a"] = 1
    assert kt.touch("ttl", 100) is not None
    xt = kt.expire_time("ttl")
    assert abs(xt - (time.time() + 100)) < 3
    h["b"] = 2
    h.update(c=3)
    h.remove("a")
    h.setnx("d", 4)
    assert kt.expire_time("ttl") == xt
    assert h.get_all() == {"b": 2, "c": 3, "d": 4}


def test_hash_in_other_db(kt):
    kt.set_database(1)
    h = kt.Hash("h1")
    h.update(k1="v1")
    assert kt.exists("h1", db=1) and not kt.exists("h1", db=0)
    assert kt.Hash("h1", db=0).get_all() == {}

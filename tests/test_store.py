"""Store: a MutableMapping over one database."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import MutableMapping

import pytest

from ktstore.client import KyotoTycoon
from ktstore.serializers import KT_MSGPACK
from ktstore.store import Store


@pytest.fixture
def client(kt_server):
    c = KyotoTycoon(port=kt_server.port, serializer=KT_MSGPACK)
    yield c
    c.close_all()


@pytest.mark.parametrize("db", [0, 1])  # hash, tree
def test_mapping_protocol(client, db):
    s = Store(client, db=db)
    assert isinstance(s, MutableMapping)
    assert len(s) == 0 and not s
    s["b"] = {"x": [1, 2]}
    s["a"] = None
    s["c"] = b"\x00bytes"
    assert s["b"] == {"x": [1, 2]} and s["a"] is None and s["c"] == b"\x00bytes"
    assert "a" in s and "zz" not in s and 1 not in s
    assert len(s) == 3 and s
    with pytest.raises(KeyError):
        s["zz"]
    assert s.get("zz") is None and s.get("zz", 5) == 5 and s.get("a", 5) is None
    assert sorted(s) == ["a", "b", "c"]
    if db == 1:
        assert list(s) == ["a", "b", "c"]  # key order on a tree database
        assert list(s.items()) == [("a", None), ("b", {"x": [1, 2]}), ("c", b"\x00bytes")]
    assert sorted(s.keys()) == ["a", "b", "c"]
    assert len(list(s.values())) == 3
    assert s.setdefault("a", 9) is None and s.setdefault("d", 4) == 4 and s["d"] == 4
    assert s.pop("d") == 4 and s.pop("d", "gone") == "gone"
    with pytest.raises(KeyError):
        s.pop("d")
    del s["c"]
    with pytest.raises(KeyError):
        del s["c"]
    s.update({"k1": 1, "k2": 2}, k3=3)
    assert s.get_many(["k1", "k3", "nope"]) == {"k1": 1, "k3": 3}
    assert dict(s) == {"a": None, "b": {"x": [1, 2]}, "k1": 1, "k2": 2, "k3": 3}
    k, v = s.popitem()
    assert k not in s
    s.clear()
    assert len(s) == 0 and list(s) == []


def test_iteration_pages_through_many_keys(client):
    s = Store(client, db=1)
    s.update({f"k{i:05d}": i for i in range(1234)})
    keys = list(s)
    assert keys == sorted(keys) and len(keys) == 1234
    assert sum(v for _k, v in s.items()) == sum(range(1234))
    assert list(s.keys_with_prefix("k0012")) == [f"k0012{i}" for i in range(10)]


def test_databases_are_separate(client):
    a, b = Store(client, db=0), Store(client, db=1)
    a["x"] = 1
    assert "x" not in b and dict(a) == {"x": 1}


def test_default_ttl(client):
    s = Store(client, db=1, ttl=100)
    s["t"] = "v"
    xt = client.get_bulk_details([(1, "t")])[0][3]
    assert time.time() + 95 < xt <= time.time() + 101
    s.set("u", "w", ttl=1000)
    assert client.get_bulk_details([(1, "u")])[0][3] > time.time() + 900
    assert s.touch("u", 10) and not s.touch("missing", 10)
    forever = Store(client, db=1)
    forever["p"] = 1
    assert client.get_bulk_details([(1, "p")])[0][3] == 1099511627775


@pytest.mark.slow
def test_store_with_no_arguments_runs_on_the_embedded_server():
    code = (
        "from ktstore.store import Store\n"
        "s = Store()\n"
        "s['n'] = {'a': [1, None]}\n"
        "assert s['n'] == {'a': [1, None]} and list(s) == ['n']\n"
        "assert Store.default().client.port == Store.default().client.port\n"
        "from ktstore.models import Model, fields\n"
        "class Pet(Model):\n"
        "    name = fields.Text(index=True)\n"
        "Pet.create(name='rex')\n"
        "assert Pet.query(Pet.name == 'rex').count() == 1\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert out.stdout.strip() == b"ok", out.stderr.decode()[-2000:]


def test_iteration_without_the_lua_script_uses_a_cursor(server_factory):
    srv = server_factory(["%"])  # no kt.lua
    c = KyotoTycoon(port=srv.port, serializer=KT_MSGPACK)
    s = Store(c)
    s.update({"b": 2, "a": 1, "c": [3]})
    assert list(s) == ["a", "b", "c"] and dict(s.items()) == {"a": 1, "b": 2, "c": [3]}
    assert list(s.keys_with_prefix("b")) == ["b"]
    c.close_all()


def test_iteration_is_lazy_and_survives_writes(client, monkeypatch):
    s = Store(client, db=1)
    s.update({f"k{i:05d}": i for i in range(1100)})
    pages = []
    real = client.script_command

    def spy(name, params, *a, **kw):  # every script call is built here
        pages.append(name)
        return real(name, params, *a, **kw)

    monkeypatch.setattr(client, "script_command", spy)
    it = iter(s)
    assert next(it) == "k00000" and pages == ["modelscan"]  # one page, not everything
    # deleting every key while iterating still visits each key once, in order
    seen = ["k00000"]
    del s["k00000"]
    for key in it:
        seen.append(key)
        del s[key]
    assert seen == [f"k{i:05d}" for i in range(1100)] and len(s) == 0
    assert pages.count("modelscan") == 3  # 1100 keys, 500 a page


def test_hash_database_iterates_every_key_and_prefix(client):
    s = Store(client, db=0)  # no key order: a server cursor
    s.update({f"k{i:04d}": i for i in range(700)})
    s[b"\xff\x00raw"] = 1
    keys = list(s)
    assert len(keys) == 701 and set(keys) >= {f"k{i:04d}" for i in range(700)}
    assert sorted(s.keys_with_prefix("k001")) == [f"k001{i}" for i in range(10)]
    assert sum(v for _k, v in s.items()) == sum(range(700)) + 1

"""Store.delete_prefix (one server call per page) and the documented value types of
Store, with a clear error for the rest."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest

from ktstore.client import KyotoTycoon
from ktstore.errors import InvalidArgument, SerializationError
from ktstore.serializers import KT_JSON, KT_MSGPACK, KT_PICKLE
from ktstore.store import Store


@pytest.fixture
def client(kt_server):
    c = KyotoTycoon(port=kt_server.port, serializer=KT_MSGPACK)
    yield c
    c.close_all()


@pytest.mark.parametrize("db", [0, 1])  # hash, tree
def test_delete_prefix_one_call_per_page(client, db, monkeypatch):
    s = Store(client, db=db)
    s.update({f"user:{i:05d}": i for i in range(2500)})
    s.update({f"users:{i}": i for i in range(10)})
    s.update({f"u{i}": i for i in range(10)})
    calls = []
    real = client.script_command

    def spy(name, params, *a, **kw):
        calls.append(name)
        return real(name, params, *a, **kw)

    monkeypatch.setattr(client, "script_command", spy)
    assert s.delete_prefix("user:", page=1000) == 2500
    assert calls == ["modelremoveprefix"] * 3 if db == 1 else len(calls) >= 3
    assert len(s) == 20 and all(k.startswith(("users:", "u")) for k in s)
    assert s.delete_prefix("nothing") == 0
    with pytest.raises(InvalidArgument):
        s.delete_prefix("")


def test_delete_prefix_without_the_script(server_factory):
    srv = server_factory(["%"])  # no kt.lua
    c = KyotoTycoon(port=srv.port, serializer=KT_MSGPACK)
    s = Store(c)
    s.update({f"k{i}": i for i in range(30)} | {"other": 1})
    assert s.delete_prefix("k", page=7) == 30 and list(s) == ["other"]
    c.close_all()


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        {1, 2},
        frozenset(),
        dt.datetime(2026, 1, 1),
        decimal.Decimal("1"),
        bytearray(b"x"),
        {"a": [1, (2, 3)]},
        {(1, 2): "x"},
        {1: "x"},
        2**70,
        object(),
    ],
)
def test_values_that_would_not_come_back_as_they_are_are_refused(client, value):
    s = Store(client, db=1)
    with pytest.raises(SerializationError, match="Store with msgpack"):
        s["k"] = value
    with pytest.raises(SerializationError):
        s.update({"k": value})
    with pytest.raises(SerializationError):
        s.setdefault("k", value)
    with pytest.raises(SerializationError):
        s.set("k", value, ttl=5)
    assert "k" not in s


def test_documented_values_round_trip(client, kt_server):
    s = Store(client, db=1)
    for v in [None, True, -3, 2**63, 1.5, "é", b"\x00", [1, "a", [b"b"]], {"a": {"b": [None]}}]:
        s["k"] = v
        assert s["k"] == v and type(s["k"]) is type(v)
    j = KyotoTycoon(port=kt_server.port, serializer=KT_JSON)
    sj = Store(j, db=1)
    with pytest.raises(SerializationError, match="str"):
        sj["k"] = {1: "x"}  # JSON would give back the key "1"
    with pytest.raises(SerializationError):
        sj["k"] = b"x"
    p = KyotoTycoon(port=kt_server.port, serializer=KT_PICKLE)
    sp = Store(p, db=1)
    sp["k"] = {(1, 2): dt.date(2026, 1, 1)}  # pickle keeps anything picklable
    assert sp["k"] == {(1, 2): dt.date(2026, 1, 1)}
    j.close_all()
    p.close_all()

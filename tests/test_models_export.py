"""Export and bulk changes: to_dict/from_dict/to_json for every field type, UUID and
Enum fields, query.update (atomic per page, indexes moved), get_or_create,
projections, containers given at creation and container views that behave like the
Python type they mirror, q[-1], len(q)."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import threading
import uuid

import pytest

from ktstore import KT_MSGPACK
from ktstore.client import KyotoTycoon
from ktstore.models import F, Model, ModelError, UniqueViolation, ValidationError, fields
from ktstore.store import Store

UTC = dt.timezone.utc
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 10


@pytest.fixture
def store(client_factory):
    """A Store on the sync client, and on the asyncio client driven through the test
    bridge: every model operation runs as the same program under either runner."""
    return Store(client_factory(serializer=KT_MSGPACK), db=1)  # typed container values


def make_everything(store):
    class Thing(Model, store=store, prefix="thing"):
        text = fields.Text(default="")
        blob = fields.Bytes(default=b"")
        n = fields.Integer(index=True, default=0)
        x = fields.Float(default=0.0)
        ok = fields.Boolean(default=False)
        at = fields.DateTime(optional=True)
        day = fields.Date(optional=True)
        price = fields.Decimal(optional=True)
        data = fields.JSON(optional=True)
        uid = fields.UUID(index=True, optional=True)
        color = fields.Enum(Color, index=True, optional=True)
        level = fields.Enum(Level, index=True, default=Level.LOW)
        v = fields.Version()
        tags = fields.SetField()
        notes = fields.ListField()
        props = fields.HashField()

    return Thing


def test_to_dict_json_round_trip_of_every_field_type(store):
    Thing = make_everything(store)
    t = Thing.create(
        text="héllo",
        blob=b"\x00\xff",
        n=2**70,
        x=float("inf"),
        ok=True,
        at=dt.datetime(2026, 5, 1, 12, 30, tzinfo=IST),
        day=dt.date(2026, 5, 2),
        price=decimal.Decimal("1.50"),
        data={"a": [1, 2]},
        uid=uuid.UUID(int=5),
        color=Color.GREEN,
        level=Level.HIGH,
        tags={"b", "a"},
        notes=["n1", "n2"],
        props={"k": 1},
    )
    plain = t.to_dict()
    assert plain["at"] == t.at and plain["price"] == decimal.Decimal("1.50")
    text = t.to_json(containers=True)
    data = json.loads(text)
    assert data["at"] == "2026-05-01T12:30:00+05:30"
    assert data["price"] == "1.50" and data["blob"] == "AP8=" and data["x"] == "inf"
    assert data["uid"] == str(uuid.UUID(int=5)) and data["color"] == "green" and data["level"] == 10
    assert (
        data["tags"] == ["a", "b"] and data["notes"] == ["n1", "n2"] and data["props"] == {"k": 1}
    )
    back = Thing.from_json(text)
    for name in Thing._kt.fields:
        assert getattr(back, name) == getattr(t, name), name
    assert back.at.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert Thing.from_dict(plain) == t
    with pytest.raises(ModelError):
        Thing.from_dict({"nope": 1})
    with pytest.raises(ValidationError):
        Thing.from_dict({"at": "yesterday"})
    assert t.to_dict(only=["n", "ok"]) == {"n": 2**70, "ok": True}


def test_uuid_and_enum_fields_index_and_convert(store):
    Thing = make_everything(store)
    a = Thing.create(uid="00000000-0000-0000-0000-000000000002", color="red", level=10)
    Thing.create(uid=uuid.UUID(int=1), color=Color.GREEN)
    assert a.uid == uuid.UUID(int=2) and a.color is Color.RED and a.level is Level.HIGH
    assert Thing.query(Thing.color == Color.RED).first() == a
    assert Thing.query(Thing.color == "red").first() == a
    assert [t.uid.int for t in Thing.query().order_by(Thing.uid)] == [1, 2]
    assert [t.level for t in Thing.query().order_by(Thing.level.desc())] == [10, 1]
    with pytest.raises(ValidationError):
        Thing(color="blue")
    with pytest.raises(ValidationError):
        Thing(uid="not-a-uuid")


def test_query_update_moves_indexes_and_uses_the_stored_values(store):
    Thing = make_everything(store)
    Thing.create_many([{"n": i, "text": f"t{i}"} for i in range(250)])
    q = Thing.query(Thing.n >= 100).paged(40)
    assert q.update(n=Thing.n + 1000, ok=True) == 150
    assert Thing.query(Thing.n >= 1100).count() == 150
    assert Thing.query(Thing.n.between(100, 1099)).count() == 0
    assert all(t.ok and t.v == 1 for t in Thing.query(Thing.n >= 1100))
    assert Thing.query(Thing.ok == False).count() == 100  # noqa: E712
    # the scanned index moves forward: nobody is changed twice
    assert Thing.query(Thing.n < 100).update(n=F("n") + 1) == 100
    assert sorted(t.n for t in Thing.query(Thing.n <= 100)) == list(range(1, 101))
    assert Thing.check().ok
    with pytest.raises(ModelError):
        Thing.query().update(id="x")
    with pytest.raises(ModelError):
        Thing.query().update(nope=1)


def test_query_update_loses_no_concurrent_increment(kt_server):
    clients = [KyotoTycoon(port=kt_server.port) for _ in range(3)]

    def model(client):
        class C(Model, store=Store(client, db=1), prefix="ctr"):
            group = fields.Integer(index=True)
            n = fields.Integer(default=0)

        return C

    C = model(clients[0])
    C.create_many([{"group": i % 2} for i in range(40)])

    def bump(client):
        M = model(client)
        for _ in range(5):
            M.query(M.group == 0).paged(7).update(n=M.n + 1)

    threads = [threading.Thread(target=bump, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {c.n for c in C.query(C.group == 0)} == {15}
    assert {c.n for c in C.query(C.group == 1)} == {0}
    assert C.check().ok
    for c in clients:
        c.close_all()


def test_query_update_unique_violation_leaves_the_page_unwritten(store):
    class U(Model, store=store, prefix="uu"):
        email = fields.Text(unique=True)
        n = fields.Integer(default=0)

    U.create_many([{"email": f"{i}@x"} for i in range(3)])
    with pytest.raises(UniqueViolation):
        U.query().update(email="same@x", n=5)
    assert {u.n for u in U.query()} == {0} and U.check().ok


def test_get_or_create(store):
    class U(Model, store=store, prefix="goc"):
        email = fields.Text(unique=True)
        name = fields.Text(default="")

    u, created = U.get_or_create(email="a@x", defaults={"name": "Ada"})
    assert created and u.name == "Ada"
    again, created = U.get_or_create(email="a@x", defaults={"name": "other"})
    assert not created and again == u
    results = []

    def race():
        results.append(U.get_or_create(email="race@x"))

    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r[0].id for r in results}) == 1 and sum(r[1] for r in results) == 1


def test_projections_len_negative_index_and_repr(store):
    Thing = make_everything(store)
    Thing.create_many([{"n": i, "text": f"t{i}"} for i in range(10)])
    q = Thing.query(Thing.n >= 3).order_by(Thing.n)
    assert list(q.values("n", "text"))[:2] == [{"n": 3, "text": "t3"}, {"n": 4, "text": "t4"}]
    assert list(q.values_list("n", flat=True)) == list(range(3, 10))
    assert list(q.limit(1).values_list("n", "text")) == [(3, "t3")]
    with pytest.raises(ModelError):
        list(q.values("nope"))
    assert len(q) == 7 and len(q.limit(2)) == 2
    assert q[-1].n == 9 and q[-7].n == 3 and q.offset(2)[-1].n == 9 and q.limit(3)[-1].n == 5
    with pytest.raises(IndexError):
        q[-8]
    unordered = Thing.query(Thing.text.startswith("t"))
    assert unordered[-1].n == 9 or unordered[-1].text.startswith("t")
    r = repr(q.limit(2))
    assert "n >= 3" in r and "order_by=(n)" in r and "limit=2" in r


def test_containers_given_at_creation_and_views_like_python_types(store):
    Thing = make_everything(store)
    t = Thing(tags={"a", "b"}, notes=["x", "y", "z"], props={"k": "v", "n": 2})
    assert t.tags == {"a", "b"}  # not saved yet: the plain values
    t.save()
    got = Thing[t.id]
    assert got.tags == {"a", "b"} and sorted(got.tags) == ["a", "b"]
    assert got.tags | {"c"} == {"a", "b", "c"} and "a" in got.tags and len(got.tags) == 2
    assert dict(got.props) == {"k": "v", "n": 2} and got.props == {"k": "v", "n": 2}
    assert sorted(got.props.keys()) == ["k", "n"] and got.props.get("zz", 0) == 0
    with pytest.raises(KeyError):
        got.props["zz"]
    assert got.notes == ["x", "y", "z"] and got.notes[-1] == "z" and got.notes[0:2] == ["x", "y"]
    got.notes.append("w")
    got.notes.insert(0, "first")
    got.notes.remove("y")  # by value, as list.remove
    assert list(Thing[t.id].notes) == ["first", "x", "z", "w"]
    assert got.notes.index("z") == 2 and got.notes.count("x") == 1
    got.tags.discard("a")
    got.tags.add("q")
    got.props.update(m=3)
    del got.props["k"]
    again = Thing[t.id]
    assert again.tags == {"b", "q"} and again.props == {"n": 2, "m": 3}
    # created in one atomic call with the record: a refused create writes no container
    with pytest.raises(Exception):  # noqa: B017 - AlreadyExists
        Thing.create(id=t.id, tags={"zzz"})
    assert Thing[t.id].tags == {"b", "q"}
    with pytest.raises(ValidationError):
        Thing(tags="abc")
    assert Thing.check().ok

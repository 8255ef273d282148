"""Models end to end against the built-in server: fields, keys, dict access, unique,
bulk operations, atomic updates, optimistic locking, containers."""

from __future__ import annotations

import datetime as dt
import decimal
import threading

import attrs
import pytest

from ktstore.client import KyotoTycoon
from ktstore.errors import KyotoTycoonError
from ktstore.models import (
    AlreadyExists,
    ConflictError,
    DoesNotExist,
    Model,
    ModelDefinitionError,
    ModelError,
    UniqueViolation,
    ValidationError,
    fields,
)
from ktstore.models.backend import mapload
from ktstore.store import Store


@pytest.fixture
def store(client_factory):
    """A Store on the sync client, and on the asyncio client driven through the test
    bridge: every model operation runs as the same program under either runner."""
    return Store(client_factory(), db=1)


@pytest.fixture
def split_store(kt_server):
    """Records in the hash database 0, index entries in the tree database 1."""
    client = KyotoTycoon(port=kt_server.port)
    yield Store(client, db=0, index_db=1)
    client.close_all()


def make_user(store, prefix="user"):
    class User(Model, store=store, prefix=prefix):
        email = fields.Text(unique=True)
        name = fields.Text(index=True, default="")
        age = fields.Integer(index=True, default=0)
        score = fields.Float(optional=True)
        tags = fields.SetField()
        notes = fields.ListField()
        props = fields.HashField()

    return User


UTC = dt.timezone.utc
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def test_every_field_type_round_trips(store):
    class Thing(Model, store=store):
        text = fields.Text()
        data = fields.Bytes()
        n = fields.Integer()
        x = fields.Float()
        flag = fields.Boolean()
        when = fields.DateTime()
        day = fields.Date()
        amount = fields.Decimal()
        blob = fields.JSON()
        maybe = fields.Text(optional=True)
        listy = fields.JSON(factory=list)

    t = Thing(
        text="héllo\x00",
        data=b"\x00\xff",
        n=-(2**62),
        x=-1.5,
        flag=True,
        when=dt.datetime(2024, 2, 29, 12, 30, 1, 123456, tzinfo=IST),
        day=dt.date(1999, 12, 31),
        amount="12.3400",
        blob={"a": [1, 2.5, None, "x"], "b": {"c": True}},
    )
    t.save()
    back = Thing[t.id]
    assert back == t
    assert back.when.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert back.amount == decimal.Decimal("12.3400") and str(back.amount) == "12.3400"
    assert back.maybe is None and back.listy == []


def test_validation_uses_attrs_and_user_validators(store):
    def positive(_inst, attribute, value):
        if value <= 0:
            raise ValueError(f"{attribute.name} must be positive")

    class Item(Model, store=store):
        qty = fields.Integer(validator=positive)
        label = fields.Text(converter=str.strip, default="")
        when = fields.DateTime(optional=True)
        ratio = fields.Float(default=0.0)

    with pytest.raises(ValueError, match="positive"):
        Item(qty=0)
    item = Item(qty=2, label="  x  ", ratio=3)
    assert item.label == "x" and item.ratio == 3.0 and isinstance(item.ratio, float)
    with pytest.raises(ValidationError):
        item.qty = "7"  # validated on assignment too
    with pytest.raises(ValidationError):
        Item(qty=1, when=dt.datetime(2020, 1, 1))  # naive: which zone?
    with pytest.raises(ValidationError):
        Item(qty=None)
    assert attrs.has(Item)


def test_bad_declarations_fail_at_class_creation(store):
    with pytest.raises(ModelDefinitionError):

        class Two(Model, store=store):
            a = fields.Text(primary_key=True)
            b = fields.Text(primary_key=True)

    with pytest.raises(ModelDefinitionError):

        class J(Model, store=store):
            blob = fields.JSON(index=True)


def test_annotations_declare_fields(store):
    class Note(Model, store=store):
        title: str
        stars: int = 3
        comment: str | None = None

    n = Note(title="t")
    n.save()
    assert Note[n.id] == Note(id=n.id, title="t", stars=3, comment=None)


def test_dict_access_and_generated_ids(store):
    User = make_user(store)
    a = User.create(email="a@x")
    b = User.create(email="b@x")
    assert len(a.id) == 26 and a.id < b.id  # sortable: creation order
    assert User[a.id] == a
    assert a.id in User and "nope" not in User
    with pytest.raises(DoesNotExist):
        User["nope"]
    with pytest.raises(KeyError):
        User["nope"]
    del User[a.id]
    assert a.id not in User
    with pytest.raises(KeyError):
        del User[a.id]
    assert User.get("nope", None) is None
    assert len(User) == 1 and [u.email for u in User] == ["b@x"]


def test_auto_increment_pk_and_declared_pk(store):
    class Counter(Model, store=store):
        id = fields.Integer(primary_key=True, auto=True)
        label = fields.Text(default="")

    c1, c2 = Counter.create(label="a"), Counter.create(label="b")
    assert (c1.id, c2.id) == (1, 2)
    assert Counter[2].label == "b"

    class Country(Model, store=store):
        code = fields.Text(primary_key=True)
        name = fields.Text()

    Country.create(code="FR", name="France")
    with pytest.raises(AlreadyExists):
        Country.create(code="FR", name="Again")
    assert Country["FR"].name == "France"
    Country(code="FR", name="République française").save()  # plain save overwrites
    assert Country["FR"].name == "République française"


def test_unique_is_enforced_and_nothing_is_written(store):
    User = make_user(store)
    a = User.create(email="a@x", age=30)
    with pytest.raises(UniqueViolation) as info:
        User.create(email="a@x", age=99)
    assert info.value.field == "email" and isinstance(info.value, KyotoTycoonError)
    assert info.value.value == "a@x" and info.value.owner == a.id
    assert (
        str(info.value) == f"User.email must be unique: 'a@x' is already taken (instance {a.id!r})"
    )
    with pytest.raises(UniqueViolation, match=r"User.email must be unique: 'b@x'"):
        User.create_many([{"email": "b@x"}, {"email": "b@x"}])  # within one batch
    with pytest.raises(UniqueViolation, match=r"'a@x' is already taken"):
        User.create_many([{"email": "c@x"}, {"email": "a@x"}])  # against a stored one
    assert User.count() == 1
    assert not User.query(User.age == 99).exists()
    assert User.check().ok
    # moving a to another address frees the old one
    a.email = "a2@x"
    a.save()
    User.create(email="a@x")
    with pytest.raises(UniqueViolation):
        User.create(email="a2@x")
    assert User.check().ok


def test_unique_allows_many_none(store):
    class Person(Model, store=store):
        ssn = fields.Text(unique=True, optional=True)

    Person.create()
    Person.create()
    assert Person.count() == 2
    assert Person.query(Person.ssn == None).count() == 2  # noqa: E711


def test_get_many_and_create_many(store):
    User = make_user(store)
    made = User.create_many([{"email": f"u{i}@x", "age": i} for i in range(50)])
    assert User.count() == 50
    pks = [m.id for m in made]
    got = User.get_many([pks[3], "missing", pks[1]])
    assert [u.age for u in got] == [3, 1]
    # one bad record refuses the whole batch
    with pytest.raises(UniqueViolation):
        User.create_many([{"email": "new@x"}, {"email": "u7@x"}])
    assert User.count() == 50 and not User.query(User.email == "new@x").exists()
    with pytest.raises(UniqueViolation):
        User.create_many([{"email": "dup@x"}, {"email": "dup@x"}])
    assert User.check().ok


def test_incr_is_atomic_and_reindexes(store):
    User = make_user(store)
    u = User.create(email="c@x", age=0)
    clients = [KyotoTycoon(port=store.client.port) for _ in range(4)]

    def work(client):
        User2 = make_user(Store(client, db=1))
        mine = User2[u.id]
        for _ in range(25):
            mine.incr("age")

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert User[u.id].age == 100
    assert [x.id for x in User.query(User.age == 100)] == [u.id]
    assert not User.query(User.age < 100).exists()
    assert u.incr(User.age, 5) == 105 and u.age == 105
    assert u.decr("age", 10) == 95
    u.update(name="zed")
    assert User[u.id].name == "zed" and User.query(User.name == "zed").count() == 1
    with pytest.raises(ModelError, match="no field 'nmae'"):
        u.update(nmae="typo")  # refused before anything is written
    with pytest.raises(ModelError, match="not a number field"):
        u.incr("name")
    with pytest.raises(ValidationError):
        u.update(age="old")  # validated like an assignment; nothing written
    assert User[u.id].age == 95
    assert User.check().ok
    for c in clients:
        c.close_all()


def test_version_field_refuses_stale_copy(store):
    class Doc(Model, store=store):
        body = fields.Text(default="")
        version = fields.Version()

    d = Doc.create(body="v0")
    assert d.version == 0
    first, second = Doc[d.id], Doc[d.id]
    first.body = "first"
    first.save()
    assert first.version == 1
    second.body = "second"
    with pytest.raises(ConflictError):
        second.save()
    assert Doc[d.id].body == "first"
    with pytest.raises(ConflictError):
        second.delete()
    second.reload()
    second.body = "second"
    second.save()
    assert Doc[d.id].body == "second" and Doc[d.id].version == 2
    # a brand-new copy with an existing pk is a conflict too, not an overwrite
    with pytest.raises(ConflictError):
        Doc(id=d.id, body="ghost").save()


def test_containers_are_lazy_and_deleted_with_instance(store):
    User = make_user(store)
    u = User.create(email="k@x")
    u.tags.add("a")
    u.tags.add("b")
    u.notes.append("n1")
    u.props["k"] = "v"
    again = User[u.id]
    assert sorted(again.tags) == ["a", "b"] and again.notes[0] == "n1" and again.props["k"] == "v"
    u.tags = {"x"}  # a whole new value: written by the next save, with the record
    assert sorted(User[u.id].tags) == ["a", "b"]
    u.save()
    assert User[u.id].tags == {"x"}
    u.delete()
    client = store.client
    assert client.get_bytes(store_key(User, u.id, "tags"), db=1) is None
    assert client.get_bytes(store_key(User, u.id, "notes"), db=1) is None


def store_key(model, pk, container):
    return model._binding().container_key(pk, container)


def test_records_in_hash_db_indexes_in_tree_db(split_store):
    User = make_user(split_store)
    for i in range(-3, 4):
        User.create(email=f"{i}@x", age=i)
    assert [u.age for u in User.query(User.age < 1).order_by(User.age)] == [-3, -2, -1, 0]
    assert User.check().ok


def test_added_field_reads_old_records(store):
    class V1(Model, store=store, prefix="evolve"):
        name = fields.Text()

    old = V1.create(name="old")

    class V2(Model, store=store, prefix="evolve"):
        name = fields.Text()
        level = fields.Integer(default=7)
        extra = fields.Text(optional=True)

    back = V2[old.id]
    assert back.level == 7 and back.extra is None and back.name == "old"
    assert [v.level for v in V2.query()] == [7]
    back.save()
    assert V2[old.id].level == 7

    class V3(Model, store=store, prefix="evolve"):  # a field dropped, a factory added
        name = fields.Text()
        notes = fields.JSON(factory=dict)

    assert V3[old.id].notes == {} and V3[old.id].name == "old"
    V3[old.id].save()
    b = V3._binding()
    stored = mapload(store.client.get_bytes(b.record_key(old.id), db=b.rdb))
    assert b"level" not in stored and b"notes" in stored  # dropped on the next save

    class V4(Model, store=store, prefix="evolve"):  # a required field, no default
        name = fields.Text()
        owner = fields.Text()

    with pytest.raises(ModelError, match="lacks required field 'owner'"):
        V4[old.id]


def test_abstract_base_and_inheritance(store):
    class Stamped(Model, abstract=True):
        created = fields.Integer(index=True, default=0)

    with pytest.raises(ModelError):
        Stamped.query().count()

    class Event(Stamped, store=store):
        kind = fields.Text(index=True)

    class Audit(Event, store=store):
        who = fields.Text(default="?")

    Event.create(kind="a", created=2)
    Audit.create(kind="b", created=1, who="me")
    assert [e.kind for e in Event.query(Event.created >= 0)] == ["a"]
    assert Audit.query(Audit.created == 1).first().who == "me"
    assert Audit._kt.prefix == "audit" and set(Audit._kt.fields) >= {"created", "kind", "who"}


def test_model_bound_to_a_client_and_rebound(store, kt_server):
    class Loose(Model, store=KyotoTycoon(port=kt_server.port, default_db=1)):
        n = fields.Integer(primary_key=True, auto=True)

    batch = Loose.create_many([{}, {}, {}])
    assert [x.n for x in batch] == [1, 2, 3] and Loose.create().n == 4
    Loose.bind(Store(store.client, db=0))
    with pytest.raises(ModelError, match="not a tree"):
        Loose.count()  # database 0 is a hash database: no key order for indexes


def test_a_record_is_a_hash_container(kt_server):
    from ktstore.serializers import KT_MSGPACK

    client = KyotoTycoon(port=kt_server.port, serializer=KT_MSGPACK)

    class Pet(Model, store=Store(client, db=1), prefix="pet"):
        name = fields.Text(index=True)
        age = fields.Integer(optional=True)

    pet = Pet.create(name="rex")
    key = Pet._binding().record_key(pet.id)
    assert isinstance(key, bytes) and key == b"pet:" + pet.id.encode()
    data = client.Hash(key, db=1).get_all()
    assert data["name"] == "rex" and data["age"] is None and data["id"] == pet.id
    assert "\x00ix" in data  # the record's own list of its index entries
    client.close_all()

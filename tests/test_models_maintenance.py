"""check / sweep / rebuild: verification and repair of indexes and containers."""

from __future__ import annotations

import pytest

from ktstore.models import Model, ModelError, UniqueViolation, fields
from ktstore.store import Store


@pytest.fixture(params=["tree", "split"])
def store(request, client_factory):
    """A Store on the sync client, and on the asyncio client driven through the test
    bridge: every model operation runs as the same program under either runner."""
    client = client_factory()
    if request.param == "tree":
        return Store(client, db=1)
    return Store(client, db=0, index_db=1)


def test_new_index_on_existing_field_is_built_by_rebuild(store):
    class V1(Model, store=store, prefix="city"):
        name = fields.Text(primary_key=True)
        population = fields.Integer(default=0)

    for name, pop in [("a", 5), ("b", -1), ("c", 7)]:
        V1.create(name=name, population=pop)

    class V2(Model, store=store, prefix="city"):
        name = fields.Text(primary_key=True)
        population = fields.Integer(default=0, index=True)

    report = V2.check()
    assert not report.ok and len(report.missing_entries) == 3 and not report.orphan_entries
    # no entries yet: a query would silently miss the old records, so it says so
    with pytest.raises(ModelError, match=r"V2.population: index=True .* run V2.rebuild\(\)"):
        V2.query(V2.population > 0).count()
    with pytest.raises(ModelError):
        V2.query().order_by("population").first()
    assert V2.query(V2.name == "a").count() == 1  # other indexes are fine
    V2.create(name="d", population=1)  # so are saves (no unique index involved)

    class Other(Model, store=store, prefix="city"):  # e.g. another process
        name = fields.Text(primary_key=True)
        population = fields.Integer(default=0, index=True)

    result = Other.rebuild()
    assert result.ok and result.records == 4 and result.rewritten == 4
    assert V2.query(V2.population > 0).count() == 3  # V2 sees the rebuild
    V2.get("d").delete()
    assert V2.check().ok
    assert [c.name for c in V2.query(V2.population > -5).order_by(V2.population)] == ["b", "a", "c"]
    # dropping the index again: rebuild removes the entries nobody owns any more
    assert V1.rebuild().removed_entries == 0  # their memo no longer lists them...
    assert V1.check().ok


def test_check_reports_and_rebuild_repairs_damage(store):
    class Tag(Model, store=store, prefix="tag"):
        label = fields.Text(unique=True)
        uses = fields.Integer(index=True, default=0)
        items = fields.ListField()

    tags = Tag.create_many([{"label": f"t{i}", "uses": i} for i in range(10)])
    tags[0].items.append("x")
    b = Tag._binding()
    client = store.client
    # damage 1: an index entry of tags[1] deleted behind the model's back
    entry = b.index_base("uses") + Tag.uses.encode_key(1) + Tag.id.encode_key(tags[1].id)
    assert client.remove(entry, db=b.idb) == 1
    # damage 2: a record of tags[2] removed without its entries
    client.remove(b.record_key(tags[2].id), db=b.rdb)
    # damage 3: a container whose instance is gone
    client.set_bytes(b.container_key("ghost", "items"), b"\x01x", db=b.rdb)
    report = Tag.check()
    assert report.missing_entries == [(tags[1].id, entry)]
    assert len(report.orphan_entries) == 4  # tags[2]: pk, label, uses, unique label
    assert report.orphan_containers == [b.container_key("ghost", "items")]
    fixed = Tag.rebuild()
    assert fixed.removed_entries == 5
    assert Tag.check().ok
    assert Tag.query(Tag.uses == 1).first().id == tags[1].id
    assert Tag.count() == 9
    assert list(Tag[tags[0].id].items) == ["x"]  # live containers untouched


def test_rebuild_and_check_page_through_many_records(store):
    """More records than one page of the record scan (200) and of a rebuild batch."""

    class Reading(Model, store=store, prefix="reading"):
        n = fields.Integer(primary_key=True)
        value = fields.Float(index=True)

    Reading.create_many([{"n": i, "value": i / 7} for i in range(-250, 250)])
    b = Reading._binding()
    base = b.index_base("value")
    lost = [
        base + Reading.value.encode_key(i / 7) + Reading.n.encode_key(i)
        for i in range(-250, 250, 3)
    ]
    store.client.remove_bulk(lost, db=b.idb)
    report = Reading.check()
    assert report.records == 500 and len(report.missing_entries) == len(lost)
    fixed = Reading.rebuild()
    assert fixed.records == 500 and fixed.rewritten == 500 and not fixed.unreadable
    assert Reading.check().ok
    assert Reading.query(Reading.value >= 0).count() == 250


def test_unique_added_over_existing_records(store):
    class Plain(Model, store=store, prefix="acct"):
        email = fields.Text()

    a = Plain.create(email="a@x")
    b1 = Plain.create(email="b@x")
    b2 = Plain.create(email="b@x")  # a duplicate, legal while not unique

    class Strict(Model, store=store, prefix="acct"):
        email = fields.Text(unique=True)

    # the claims of the old records are missing: a save could let a duplicate in
    with pytest.raises(ModelError, match=r"Strict.email: unique=True .*Strict.rebuild"):
        Strict.create(email="a@x")
    report = Strict.rebuild()
    assert not report.ok and len(report.unique_conflicts) == 1
    assert report.unique_conflicts[0][1] == "email"
    with pytest.raises(ModelError):  # still refused: the duplicate is unresolved
        Strict.create(email="c@x")
    loser = report.unique_conflicts[0][0]
    Strict.delete_pk(loser)  # deleting needs no complete index
    assert {b1.id, b2.id} - {loser}
    assert Strict.rebuild().ok
    with pytest.raises(UniqueViolation):
        Strict.create(email="a@x")
    assert Strict.create(email="c@x").email == "c@x"
    assert Strict.check().ok and a.id in Strict


def test_fresh_models_and_legacy_data_need_no_rebuild(store):
    class Fresh(Model, store=store, prefix="fresh"):
        n = fields.Integer(index=True)

    Fresh.create(n=1)

    class Fresh2(Model, store=store, prefix="fresh"):  # same indexes: nothing to build
        n = fields.Integer(index=True)

    assert Fresh2.query(Fresh2.n == 1).count() == 1
    # records stored before the schema marker existed are trusted as they are
    b = Fresh._binding()
    store.client.remove(b.schema_key, db=b.idb)

    class Fresh3(Model, store=store, prefix="fresh"):
        n = fields.Integer(index=True)
        m = fields.Integer(index=True, default=0)

    assert Fresh3.query(Fresh3.m == 0).count() == 0  # legacy: no way to know

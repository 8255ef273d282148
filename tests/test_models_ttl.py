"""Expiry: model default TTL and per-instance expiry; the record, its index entries,
its unique claims and its containers expire together; a query never yields an
expired instance; sweep and check deal with orphans."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from ktstore.models import DoesNotExist, Model, fields
from ktstore.models.backend import memo_keys
from ktstore.store import Store

XTMAX = 1099511627775


@pytest.fixture
def store(client_factory):
    """A Store on the sync client, and on the asyncio client driven through the test
    bridge: every model operation runs as the same program under either runner."""
    return Store(client_factory(), db=1)


def make(store, ttl=None):
    class Session(Model, store=store, prefix="sess", ttl=ttl):
        user = fields.Text(unique=True)
        hits = fields.Integer(index=True, default=0)
        seen = fields.SetField()

    return Session


def owned_xts(model, inst):
    """xt of the record and of every index/unique entry and container it owns."""
    b = model._binding()
    key = b.record_key(inst._pkstr())
    rec = b.client.get_bulk_details([(b.rdb, key)], decode_values=False)
    assert rec, "record missing"
    keys = memo_keys(rec[0][2])
    rows = b.client.get_bulk_details([(b.idb, k) for k in keys], decode_values=False)
    assert len(rows) == len(keys), "an index entry is missing"
    conts = [b.container_key(inst._pkstr(), n) for n in model._kt.containers]
    crows = b.client.get_bulk_details([(b.rdb, k) for k in conts], decode_values=False)
    return rec[0][3], [r[3] for r in rows], [r[3] for r in crows]


def test_model_default_ttl_applies_to_everything(store):
    Session = make(store, ttl=100)
    s = Session.create(user="ann")
    s.seen.add("home")
    now = time.time()
    rec_xt, entry_xts, cont_xts = owned_xts(Session, s)
    assert now + 95 <= rec_xt <= now + 101
    assert set(entry_xts) == {rec_xt} and cont_xts == [rec_xt]
    assert 95 <= s.ttl <= 100 and s.expires_at == rec_xt
    # re-saving keeps the expiry; an explicit ttl replaces it everywhere
    s.hits = 3
    s.save()
    assert owned_xts(Session, s)[0] == rec_xt
    s.save(ttl=dt.timedelta(hours=1))
    rec2, entries2, conts2 = owned_xts(Session, s)
    assert rec2 > rec_xt + 3000 and set(entries2) == {rec2} and conts2 == [rec2]
    s.persist()
    assert owned_xts(Session, s) == (XTMAX, [XTMAX, XTMAX, XTMAX, XTMAX], [XTMAX])
    assert s.ttl is None
    s.expire(30)
    rec3, entries3, conts3 = owned_xts(Session, s)
    assert rec3 <= time.time() + 31 and set(entries3) == {rec3} and conts3 == [rec3]


def test_no_ttl_means_never(store):
    Session = make(store)
    s = Session.create(user="bob")
    assert owned_xts(Session, s)[0] == XTMAX and s.ttl is None


def test_expired_instances_are_invisible_everywhere(store):
    Session = make(store)
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)
    live = Session.create(user="live", hits=1)
    dead = Session.create(user="dead", hits=2, ttl=past)  # expired on arrival
    assert dead.id not in Session
    with pytest.raises(DoesNotExist):
        Session[dead.id]
    assert [s.id for s in Session] == [live.id]
    assert Session.query(Session.hits == 2).count() == 0
    assert Session.query(Session.hits >= 0).all() == [live]
    assert Session.get_many([dead.id, live.id]) == [live]
    assert Session.count() == 1
    # its unique value is free again
    Session.create(user="dead")
    assert Session.check().ok


def test_expiry_over_time(store):
    Session = make(store, ttl=1)
    s = Session.create(user="short")
    s.seen.add("x")
    keep = Session.create(user="long", ttl=3600)
    deadline = time.time() + 4
    while s.id in Session and time.time() < deadline:
        time.sleep(0.2)
    assert s.id not in Session
    assert [x.id for x in Session.query(Session.hits == 0)] == [keep.id]
    b = Session._binding()
    assert b.client.get_bytes(b.container_key(s.id, "seen"), db=b.rdb) is None
    assert Session.check().ok


def test_sweep_removes_orphans_left_behind(store):
    Session = make(store)
    a = Session.create(user="a", hits=1)
    b_ = Session.create(user="b", hits=2)
    binding = Session._binding()
    # a record removed behind the model layer's back leaves its entries orphaned
    binding.client.remove(binding.record_key(a.id), db=binding.rdb)
    report = Session.check()
    assert not report.ok and len(report.orphan_entries) == 4  # pk, user, hits, unique user
    assert [s.id for s in Session.query(Session.hits >= 0)] == [b_.id]  # never yielded
    assert Session.sweep() == 4
    assert Session.check().ok
    Session.create(user="a")  # the unique claim is gone too


def test_container_changes_keep_the_instance_expiry(store):
    Session = make(store, ttl=500)
    s = Session.create(user="c")
    for i in range(3):
        s.seen.add(f"p{i}")
    rec_xt, _, conts = owned_xts(Session, s)
    assert conts == [rec_xt]
    s.delete()
    b = Session._binding()
    assert b.client.get_bytes(b.container_key(s.id, "seen"), db=b.rdb) is None

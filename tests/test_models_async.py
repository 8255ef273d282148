"""The awaitable forms of the model API (``aget``, ``asave``, ``async for``...) on a
real ``AsyncKyotoTycoon``: same results and errors as the sync API (whose whole test
suite also runs on the asyncio client through the bridge), atomicity under many
coroutines at once, and how a model finds its async store."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from ktstore import AsyncKyotoTycoon, AsyncStore, KyotoTycoon
from ktstore.models import (
    CASCADE,
    PROTECT,
    AlreadyExists,
    ConflictError,
    DoesNotExist,
    F,
    Model,
    ModelError,
    ProtectedError,
    RelationError,
    UniqueViolation,
    fields,
)
from ktstore.store import Store


def run(kt_server, body):
    """Run ``await body(astore)`` on a fresh asyncio client of ``kt_server``."""

    async def main():
        async with AsyncKyotoTycoon(port=kt_server.port, timeout=10) as client:
            return await body(AsyncStore(client, db=1))

    return asyncio.run(main())


def user_model(store, prefix="user"):
    class User(Model, store=store, prefix=prefix):
        email = fields.Text(unique=True)
        name = fields.Text(index=True, default="")
        age = fields.Integer(index=True, default=0)
        visits = fields.Integer(default=0)
        version = fields.Version()
        tags = fields.SetField()

    return User


def test_crud_round_trip(kt_server):
    async def body(astore):
        User = user_model(astore)
        ada = await User.acreate(email="ada@x", name="ada", age=36, tags={"math"})
        assert await User.aexists(ada.id) and await User.acount() == 1
        got = await User.aget(ada.id)
        assert got == ada and got.version == 0
        assert set(await (await got.acontainer("tags")).members()) == {"math"}
        got.age = 37
        await got.asave()
        assert (await User.aget(ada.id)).age == 37 and got.version == 1
        await ada.areload()
        assert ada.age == 37
        assert await User.aget("nobody", None) is None
        with pytest.raises(DoesNotExist):
            await User.aget("nobody")
        many = await User.acreate_many([{"email": f"u{i}@x", "age": i} for i in range(5)])
        found = await User.aget_many([m.id for m in many[:3]] + ["ghost"])
        assert [u.email for u in found] == ["u0@x", "u1@x", "u2@x"]
        assert await User.adelete_many(many[3:]) == 2
        assert await User.adelete_pk(many[0].id) and not await User.adelete_pk(many[0].id)
        assert await ada.adelete()
        assert await User.acount() == 2
        return True

    assert run(kt_server, body)


def test_errors_are_the_sync_errors(kt_server):
    async def body(astore):
        User = user_model(astore)
        await User.acreate(email="a@x")
        with pytest.raises(UniqueViolation) as err:
            await User.acreate(email="a@x")
        assert err.value.field == "email"
        first = await User.acreate(email="b@x")
        with pytest.raises(AlreadyExists):
            await User(id=first.id, email="c@x").asave(only_if_new=True)
        stale = await User.aget(first.id)
        first.name = "new"
        await first.asave()
        stale.name = "old"
        with pytest.raises(ConflictError):
            await stale.asave()
        with pytest.raises(ConflictError):
            await stale.adelete()
        with pytest.raises(ModelError, match="not a number field"):
            await first.aincr("name")
        # nothing half-written: one record per email, the unique claims intact
        assert sorted([u.email async for u in User.query()]) == ["a@x", "b@x"]
        return True

    assert run(kt_server, body)


def test_queries_order_limit_pages_and_updates(kt_server):
    async def body(astore):
        User = user_model(astore)
        await User.acreate_many(
            [{"email": f"{i}@x", "age": i % 10, "name": f"n{i:02d}"} for i in range(40)]
        )
        q = User.query(User.age >= 5).order_by(User.age.desc())
        ages = [u.age async for u in q]
        assert len(ages) == 20 and ages == sorted(ages, reverse=True)
        top = await q.limit(3).aall()
        assert [u.age for u in top] == [9, 9, 9] and len({u.id for u in top}) == 3
        assert await q.acount() == 20 and await q.aexists()
        assert (await q.afirst()).age == 9
        assert not await User.query(User.age > 100).aexists()
        pages, token = [], None
        while True:
            items, token = await q.apage(7, token)
            pages.append(len(items))
            if token is None:
                break
        assert pages == [7, 7, 6]
        rows = [r async for r in User.query(User.name == "n03").avalues("email", "age")]
        assert rows == [{"email": "3@x", "age": 3}]
        flat = [
            e
            async for e in User.query(User.age == 1)
            .order_by("email")
            .avalues_list("email", flat=True)
        ]
        assert flat == sorted(["1@x", "11@x", "21@x", "31@x"])
        assert await User.query(User.age < 2).aupdate(visits=F("visits") + 5, name="low") == 8
        low = await User.query(User.name == "low").aall()
        assert len(low) == 8 and all(u.visits == 5 and u.version == 1 for u in low)
        assert await User.query(User.age == 9).adelete() == 4
        assert await User.acount() == 36
        return True

    assert run(kt_server, body)


def test_relations_cascade_and_protect(kt_server):
    async def body(astore):
        class Author(Model, store=astore, prefix="author"):
            name = fields.Text(unique=True)

        class Post(Model, store=astore, prefix="post"):
            title = fields.Text(default="")
            author = fields.ForeignKey(Author, on_delete=CASCADE, related_name="posts")

        class Badge(Model, store=astore, prefix="badge"):
            holder = fields.ForeignKey(Author, on_delete=PROTECT, optional=True)

        ada = await Author.acreate(name="ada")
        bob = await Author.acreate(name="bob")
        await Post.acreate_many([{"title": f"p{i}", "author_id": ada.id} for i in range(30)])
        post = await Post.acreate(title="bob's", author=bob)
        assert (await (await Post.aget(post.id)).arelated("author")) == bob
        assert await ada.posts.acount() == 30
        await Badge.acreate(holder=bob)
        with pytest.raises(ProtectedError):
            await bob.adelete()
        Author.cascade_page = 10  # the cascade runs in atomic pages
        assert await ada.adelete()
        assert await Post.acount() == 1 and await Author.acount() == 1
        return True

    assert run(kt_server, body)


def test_search_and_ttl(kt_server):
    async def body(astore):
        class Doc(Model, store=astore, prefix="doc"):
            body = fields.Text(search=True)
            lang = fields.Text(index=True, default="en")

        await Doc.acreate_many(
            [
                {"body": "kyoto tycoon is a server"},
                {"body": "tokyo cabinet and kyoto cabinet"},
                {"body": "Kyōto tycoon, kyoto TYCOON", "lang": "ja"},
            ]
        )
        hits = [d.body async for d in Doc.search("kyoto tyc*")]
        assert len(hits) == 2
        assert hits[0].startswith("Kyōto")  # two occurrences of each term: best score
        assert await Doc.search("kyoto").acount() == 3
        assert [d.lang async for d in Doc.search("kyoto", Doc.lang == "ja")] == ["ja"]
        items, token = await Doc.search("cabinet").apage(1)
        assert len(items) == 1 and token is None
        scored = [s async for _d, s in Doc.search("tycoon").ascored()]
        assert scored == sorted(scored, reverse=True)

        class Session(Model, store=astore, prefix="session", ttl=60):
            user = fields.Text()

        s = await Session.acreate(user="ada")
        assert 55 < s.ttl <= 60
        await s.aexpire(dt.timedelta(hours=1))
        assert 3500 < (await Session.aget(s.id)).ttl <= 3600
        await s.apersist()
        assert (await Session.aget(s.id)).expires_at is None
        await s.aexpire(-1)  # expired: gone
        assert await Session.aget(s.id, None) is None
        return True

    assert run(kt_server, body)


def test_concurrent_coroutines_keep_atomicity(kt_server):
    async def body(astore):
        User = user_model(astore)
        counter = await User.acreate(email="counter@x")
        copies = [await User.aget(counter.id) for _ in range(40)]
        await asyncio.gather(*(c.aincr("visits") for c in copies))  # 40 at once
        assert (await User.aget(counter.id)).visits == 40

        async def claim(i):
            try:
                await User.acreate(email="race@x", name=f"c{i}")
                return True
            except UniqueViolation:
                return False

        wins = await asyncio.gather(*(claim(i) for i in range(30)))
        assert wins.count(True) == 1
        assert await User.query(User.email == "race@x").acount() == 1

        got = await asyncio.gather(*(User.aget_or_create(email="goc@x") for _ in range(20)))
        assert len({u.id for u, _created in got}) == 1
        assert [created for _u, created in got].count(True) == 1

        # 100 saves in flight, then every record and index entry in place
        made = await asyncio.gather(*(User.acreate(email=f"m{i}@x", age=i % 7) for i in range(100)))
        assert await User.query(User.age == 3).acount() == len([m for m in made if m.age == 3])
        return counter.id

    counter_id = run(kt_server, body)
    # the sync API sees the same data (one model class serves both)
    client = KyotoTycoon(port=kt_server.port)
    try:
        User = user_model(Store(client, db=1))
        assert User.get(counter_id).visits == 40
        assert User.check().ok
    finally:
        client.close_all()


def test_how_a_model_finds_its_store(kt_server):
    client = KyotoTycoon(port=kt_server.port)

    class Note(Model, store=Store(client, db=1), prefix="note"):
        text = fields.Text()

    async def body(astore):
        with pytest.raises(ModelError, match="no AsyncStore"):
            await Note.aget("x")
        Note.bind(astore.client)  # an AsyncKyotoTycoon: its default database (0)
        assert isinstance(Note._kt.astore, AsyncStore) and Note._kt.astore.db == 0
        Note.bind(astore)  # now both: the sync store stays
        n = await Note.acreate(text="hi")
        assert Note.get(n.id).text == "hi"  # the sync API reads what the async one wrote

        class Only(Model, store=astore, prefix="only"):
            x = fields.Integer(default=0)

        with pytest.raises(ModelError, match="AsyncStore only"):
            Only.get("x")
        o = await Only.acreate()
        assert (await Only.aget(o.id)).x == 0
        return True

    try:
        assert run(kt_server, body)
    finally:
        client.close_all()


def test_reading_in_flight_is_concurrent(kt_server):
    """100 gets in flight at once on a few connections: all answered, right values."""

    async def body(astore):
        User = user_model(astore)
        made = await User.acreate_many([{"email": f"{i}@x", "age": i} for i in range(100)])
        got = await asyncio.gather(*(User.aget(m.id) for m in made))
        assert [g.age for g in got] == list(range(100))
        return True

    assert run(kt_server, body)


def test_async_for_over_the_class(kt_server):
    async def body(astore):
        User = user_model(astore)
        await User.acreate_many([{"email": f"{i}@x"} for i in range(3)])
        return sorted([u.email async for u in User])

    assert run(kt_server, body) == ["0@x", "1@x", "2@x"]


def test_cancelled_coroutines_leave_whole_records(kt_server):
    """Saves cancelled while in flight: each record is all there or absent (one Lua
    call), the client keeps working, and check() finds nothing to repair."""

    async def body(astore):
        User = user_model(astore)
        assert await User.acount() == 0  # set up first: the tasks go straight to their saves
        tasks = [asyncio.ensure_future(User.acreate(email=f"c{i}@x", age=i % 5)) for i in range(60)]
        await asyncio.sleep(0)  # let them start sending
        for t in tasks[::2]:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = sum(isinstance(d, asyncio.CancelledError) for d in done)
        assert 0 < cancelled <= 30
        assert await User.aget("nobody", None) is None  # the client still answers
        stored = {u.email async for u in User.query()}
        assert {d.email for d in done if not isinstance(d, BaseException)} <= stored
        assert await User.query(User.age >= 0).acount() == len(stored)
        return True

    assert run(kt_server, body)
    client = KyotoTycoon(port=kt_server.port)
    try:
        assert user_model(Store(client, db=1)).check().ok
    finally:
        client.close_all()


def test_maintenance_check_sweep_rebuild(kt_server):
    async def body(astore):
        User = user_model(astore)
        made = await User.acreate_many([{"email": f"{i}@x", "age": i} for i in range(30)])
        assert (await User.acheck()).ok
        client = astore.client
        # damage: an index entry removed, a record removed without its entries
        b = await User._abinding()
        entry = b.index_base("age") + User.age.encode_key(3) + User.id.encode_key(made[3].id)
        assert await client.remove(entry, db=b.idb) == 1
        await client.remove(b.record_key(made[4].id), db=b.rdb)
        report = await User.acheck()
        assert not report.ok and report.records == 29
        assert (made[3].id, entry) in report.missing_entries and report.orphan_entries
        assert await User.asweep() >= 1  # made[4]'s entries
        rebuilt = await User.arebuild()
        assert rebuilt.ok and rebuilt.records == 29
        assert (await User.acheck()).ok
        assert await User.query(User.age == 3).acount() == 1

        # records in a hash database: the awaitable forms say what to do instead
        class Loose(Model, store=AsyncStore(client, db=0, index_db=1), prefix="loose"):
            n = fields.Integer(index=True)

        await Loose.acreate(n=1)
        with pytest.raises(ModelError, match="not a tree database"):
            await Loose.acheck()
        return True

    assert run(kt_server, body)


def test_related_models_need_the_same_async_store(kt_server):
    async def body(astore):
        class Owner(Model, prefix="owner"):  # no AsyncStore
            name = fields.Text()

        class Pet(Model, store=astore, prefix="pet"):
            owner = fields.ForeignKey(Owner, on_delete=CASCADE)

        with pytest.raises(ModelError, match="bind the AsyncStore to both"):
            await Pet.acreate(owner_id="someone")
        Owner.bind(astore)
        with pytest.raises(RelationError):
            await Pet.acreate(owner_id="someone")  # checked on the server, as in sync
        owner = await Owner.acreate(name="ada")
        await Pet.acreate(owner=owner)
        assert await owner.adelete() and await Pet.acount() == 0
        return True

    assert run(kt_server, body)

"""Model layer figures: save, get by pk, indexed equality query, range query of 100.

    python bench/bench_models.py [--n 2000] [--server PATH_TO_KTSERVER] [--clients N]
    python bench/bench_models.py v2 [--docs 100000] [--children 10000] [--updates 10000]
        [--gets 20000] [--only composite|cascade|update|search|async]

The ``v2`` figures: a composite-index range with ordering (vs an in-memory sort),
cascade delete of 10k children (vs client-side delete_many pages), ``query.update`` of
10k records (vs per-instance updates), full-text queries over 100k documents, top 10
(vs a full scan filtering on the client), async get by pk with 100 in flight on the
asyncio client (vs the sync get by pk).

Runs against the built-in server in a subprocess by default (as deployed; an
in-process server would fight the benchmark for the GIL), or a real ktserver, on an
in-memory tree database with kt.lua loaded, and prints operations per second.
Each save is one atomic Lua call (record + index entries + unique check).
``--clients N`` also times new saves from N client processes at once (aggregate).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import sys
import time

from ktstore.embedded import EmbeddedServer
from ktstore.models import Model, fields
from ktstore.store import Store


def timed(label: str, n: int, fn) -> float:
    """Run ``fn`` once, print its figures; the seconds per operation."""
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    print(
        f"{label:<42} {n:>7} ops  {dt * 1000:9.1f} ms  {n / dt:10.0f} ops/s  {dt / n * 1e6:8.1f} µs/op"
    )
    return dt / n


def _save_worker(port: int, tag: int, n: int, ready, results) -> None:
    """One client process of ``--clients``: n new saves once all processes are ready."""
    from ktstore.client import KyotoTycoon

    client = KyotoTycoon("127.0.0.1", port)

    class Member(Model, store=Store(client, db=0), prefix="benchp"):
        email = fields.Text(unique=True)
        age = fields.Integer(index=True)
        city = fields.Text(index=True)
        bio = fields.Text(default="")

    rnd = random.Random(tag)
    members = [
        Member(email=f"p{tag}-{i}@example.com", age=rnd.randint(-500, 500), city=f"city{i % 20}")
        for i in range(n)
    ]
    ready.wait()
    for m in members:
        m.save()
    client.close_all()
    results.put(n)


def save_processes(port: int, clients: int, n: int) -> None:
    """Aggregate new saves per second of ``clients`` processes, n saves each."""
    ctx = mp.get_context("spawn")
    ready = ctx.Barrier(clients + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_save_worker, args=(port, i, n, ready, results)) for i in range(clients)
    ]
    for p in procs:
        p.start()
    ready.wait(timeout=300)
    t0 = time.perf_counter()
    total = sum(results.get(timeout=600) for _ in procs)
    dt = time.perf_counter() - t0
    for p in procs:
        p.join(30)
    label = f"save (new), {clients} client processes"
    print(f"{label:<42} {total:>7} ops  {dt * 1000:9.1f} ms  {total / dt:10.0f} ops/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="instances to save")
    ap.add_argument("--server", default=os.environ.get("KTSTORE_TEST_SERVER"))
    ap.add_argument("--clients", type=int, default=0, help="also save from N processes")
    args = ap.parse_args()
    n = args.n

    srv = EmbeddedServer(server=args.server or "builtin", database="%", quiet=True)
    client = srv.run()
    try:

        class User(Model, store=Store(client, db=0), prefix="bench"):
            email = fields.Text(unique=True)
            age = fields.Integer(index=True)
            city = fields.Text(index=True)
            bio = fields.Text(default="")

        rnd = random.Random(1)
        cities = [f"city{i}" for i in range(n // 100 or 1)]
        users = [
            User(email=f"u{i}@example.com", age=rnd.randint(-500, 500), city=rnd.choice(cities))
            for i in range(n)
        ]
        print(f"server: {args.server or 'built-in (subprocess)'}, {n} instances, 3 indexes")

        timed("save (new, 1 Lua call each)", n, lambda: [u.save() for u in users])

        def resave():
            for u in users[: n // 2]:
                u.age += 1
                u.save()

        timed("save (update, re-index)", n // 2, resave)
        if args.clients > 0:
            save_processes(srv.port, args.clients, n // args.clients)
        pks = [u.id for u in users]
        rnd.shuffle(pks)
        timed("get by pk", n, lambda: [User[pk] for pk in pks])
        timed(
            "get_many (100 per call)",
            n,
            lambda: [User.get_many(pks[i : i + 100]) for i in range(0, n, 100)],
        )
        q = 200
        timed(
            "indexed equality query (~100 results)",
            q,
            lambda: [User.query(User.city == rnd.choice(cities)).all() for _ in range(q)],
        )

        def ranges():
            for _ in range(q):
                lo = rnd.randint(-500, 400)
                got = User.query(User.age >= lo).order_by(User.age).limit(100).all()
                assert len(got) <= 100

        timed("range query, ordered, limit 100", q, ranges)
        timed("count() over all instances", 10, lambda: [User.count() for _ in range(10)])
        timed(
            "indexed count() (keys only, ~100 results)",
            q,
            lambda: [User.query(User.city == rnd.choice(cities)).count() for _ in range(q)],
        )
        timed(
            "filtered count() (reads records)",
            q // 10,
            lambda: [
                User.query((User.city == rnd.choice(cities)) & (User.email != "x")).count()
                for _ in range(q // 10)
            ],
        )
        timed(
            "unique lookup (email ==)",
            n // 4,
            lambda: [User.query(User.email == f"u{i}@example.com").first() for i in range(n // 4)],
        )
        bulk = [User(email=f"bulk{i}@x", age=i % 100, city="bulk") for i in range(n)]
        timed(
            "create_many (500 per atomic call)",
            n,
            lambda: [User.create_many(bulk[i : i + 500]) for i in range(0, n, 500)],
        )
        timed("delete (1 Lua call each)", n, lambda: [u.delete() for u in users])
        report = User.check()
        print(f"check(): ok={report.ok} records={report.records} entries={report.entries}")
    finally:
        client.close_all()
        srv.stop()


# ---- Models 2.0 figures (composite indexes, search, cascades, bulk updates) -------------

WORDS = (
    "kyoto tycoon cabinet server client lua script tree hash index query page record "
    "model field value key cursor range order search token score rank update delete"
).split()


def bench_composite(client, n: int) -> None:
    """Equality prefix + range + ordering from one composite index range scan, against
    the same query sorted in memory (no fitting index)."""

    class Task(Model, store=Store(client, db=0), prefix="bench_task"):
        owner = fields.Integer()
        due = fields.Integer()
        prio = fields.Integer()
        by_owner_due = fields.Index("owner", "-due")

    rnd = random.Random(2)
    for i in range(0, n, 500):
        Task.create_many(
            [
                {"owner": rnd.randint(0, 19), "due": rnd.randint(0, 10**6), "prio": j % 5}
                for j in range(min(500, n - i))
            ]
        )
    q = 100

    def indexed():
        for _ in range(q):
            got = (
                Task.query(Task.owner == rnd.randint(0, 19), Task.due >= rnd.randint(0, 9 * 10**5))
                .order_by(Task.due.desc())
                .limit(20)
                .all()
            )
            assert len(got) <= 20

    def in_memory():
        for _ in range(q // 10):
            Task.query(Task.owner == rnd.randint(0, 19)).order_by(Task.prio, Task.due).limit(
                20
            ).all()

    a = timed("composite range + order, limit 20", q, indexed)
    b = timed("same size, sorted in memory, limit 20", q // 10, in_memory)
    print(f"  -> composite index {b / a:.1f}x faster per query than an in-memory sort")
    Task.query().paged(1000).delete()


def bench_search(client, docs: int) -> None:
    """Full-text query (top 10) over ``docs`` documents, against a full scan filtering
    the same documents on the client."""

    class Doc(Model, store=Store(client, db=0), prefix="bench_doc"):
        body = fields.Text(search=True)

    rnd = random.Random(3)
    t0 = time.perf_counter()
    for i in range(0, docs, 500):
        Doc.create_many(
            [
                {"body": " ".join(rnd.choices(WORDS, k=12)) + f" w{i + j}"}
                for j in range(min(500, docs - i))
            ]
        )
    dt = time.perf_counter() - t0
    print(f"{'index ' + str(docs) + ' docs (create_many 500)':<42} {docs / dt:10.0f} docs/s")
    q = 20
    rare = [f"w{rnd.randrange(docs)}" for _ in range(q)]
    a = timed("search rare term, top 10", q, lambda: [Doc.search(t).limit(10).all() for t in rare])
    b = timed(
        "search 2 common terms (AND), top 10",
        q // 4,
        lambda: [Doc.search("kyoto tycoon").limit(10).all() for _ in range(q // 4)],
    )
    c = timed(
        "search prefix term 'se*', top 10",
        q // 4,
        lambda: [Doc.search("se*").limit(10).all() for _ in range(q // 4)],
    )
    full = timed(
        "full scan + client filter (1 query)",
        1,
        lambda: [d for d in Doc.query().paged(1000) if "kyoto" in d.body.split()][:10],
    )
    print(
        f"  -> vs full scan: rare {full / a:.0f}x, common AND {full / b:.1f}x, prefix {full / c:.1f}x"
    )
    Doc.query().paged(1000).delete()


def bench_cascade(client, children: int) -> None:
    """Deleting a parent with ``children`` CASCADE children (pages of 1000, each one
    atomic call), against deleting the same children with delete_many pages."""
    from ktstore.models import CASCADE

    class Parent(Model, store=Store(client, db=0), prefix="bench_parent"):
        name = fields.Text()

    class Child(Model, store=Store(client, db=0), prefix="bench_child"):
        parent = fields.ForeignKey(Parent, on_delete=CASCADE)
        n = fields.Integer(index=True)

    def fill():
        p = Parent.create(name="p")
        for i in range(0, children, 500):
            Child.create_many(
                [{"parent_id": p.id, "n": i + j} for j in range(min(500, children - i))]
            )
        return p

    p = fill()
    a = timed(f"cascade delete of {children} children", children, lambda: p.delete())
    assert Child.count() == 0
    p = fill()
    b = timed(
        f"delete_many of {children} children (1000/call)",
        children,
        lambda: Child.query(Child.parent == p).paged(1000).delete(),
    )
    p.delete()
    print(f"  -> cascade {b / a:.1f}x the speed of client-side delete_many pages")


def bench_update(client, n: int) -> None:
    """query.update of ``n`` records (one atomic call per page, index moved), against
    per-instance atomic updates (``u.update(...)``)."""
    from ktstore.models import F

    class Item(Model, store=Store(client, db=0), prefix="bench_item"):
        group = fields.Integer(index=True)
        stock = fields.Integer(index=True, default=0)

    for i in range(0, n, 500):
        Item.create_many([{"group": (i + j) % 2} for j in range(min(500, n - i))])
    a = timed(
        f"query.update of {n} records (page 500)",
        n,
        lambda: Item.query().paged(500).update(stock=F("stock") + 1),
    )
    few = Item.query().limit(n // 10).all()
    b = timed(
        "per-instance u.update(stock=...)",
        len(few),
        lambda: [u.update(stock=u.stock + 1) for u in few],
    )
    print(f"  -> query.update {b / a:.1f}x faster per record")
    assert Item.check().ok
    Item.query().paged(1000).delete()


def bench_async_get(client, n: int, in_flight: int = 100) -> None:
    """Get by pk on the asyncio client with ``in_flight`` gets awaited at once (one
    model class, bound to a Store and an AsyncStore), against the sync get by pk."""
    import asyncio

    from ktstore import AsyncKyotoTycoon, AsyncStore

    class Item(Model, store=Store(client, db=0), prefix="aget"):
        n = fields.Integer(index=True)
        label = fields.Text(default="")

    items = [Item(n=i, label=f"item {i}") for i in range(n)]
    for i in range(0, n, 500):
        Item.create_many(items[i : i + 500])
    pks = [it.id for it in items]
    random.Random(3).shuffle(pks)
    print(f"async get by pk: {n} instances, {in_flight} in flight")
    a = timed("get by pk (sync client)", n, lambda: [Item.get(pk) for pk in pks])

    async def run(concurrency: int) -> float:
        async with AsyncKyotoTycoon(client.host, client.port, timeout=30) as ac:
            Item.bind(AsyncStore(ac, db=0))
            await Item.aget(pks[0])  # set-up (the schema check) out of the timing
            sem = asyncio.Semaphore(concurrency)

            async def one(pk: str) -> None:
                async with sem:
                    await Item.aget(pk)

            t0 = time.perf_counter()
            await asyncio.gather(*(one(pk) for pk in pks))
            dt = time.perf_counter() - t0
        print(
            f"{'aget, ' + str(concurrency) + ' in flight':<42} {n:>7} ops  {dt * 1000:9.1f} ms"
            f"  {n / dt:10.0f} ops/s  {dt / n * 1e6:8.1f} µs/op"
        )
        return dt / n

    b1 = asyncio.run(run(1))
    b = asyncio.run(run(in_flight))
    print(
        f"  -> {in_flight} in flight: {a / b:.1f}x the sync get by pk "
        f"(one at a time on the asyncio client: {a / b1:.1f}x)"
    )
    Item.query().paged(1000).delete()


def main_v2() -> None:
    ap = argparse.ArgumentParser(description="Models 2.0 figures")
    ap.add_argument("--docs", type=int, default=100_000, help="documents for the search figure")
    ap.add_argument("--children", type=int, default=10_000)
    ap.add_argument("--updates", type=int, default=10_000)
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--gets", type=int, default=20_000, help="instances for the async get")
    ap.add_argument("--only", choices=["composite", "cascade", "update", "search", "async"])
    ap.add_argument("--server", default=os.environ.get("KTSTORE_BENCH_SERVER"))
    args = ap.parse_args(sys.argv[2:])
    srv = EmbeddedServer(server=args.server or "builtin", database="%", quiet=True)
    client = srv.run()
    try:
        print(f"server: {args.server or 'built-in (subprocess)'} (machine shared: compare ratios)")
        runs = {
            "composite": lambda: bench_composite(client, args.tasks),
            "cascade": lambda: bench_cascade(client, args.children),
            "update": lambda: bench_update(client, args.updates),
            "search": lambda: bench_search(client, args.docs),
            "async": lambda: bench_async_get(client, args.gets),
        }
        for name, fn in runs.items():
            if args.only in (None, name):
                fn()
    finally:
        client.close_all()
        srv.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["v2"]:
        main_v2()  # python bench/bench_models.py v2 [--docs N ...]
    else:
        main()

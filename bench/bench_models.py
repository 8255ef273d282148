"""Model layer figures: save, get by pk, indexed equality query, range query of 100.

    python bench/bench_models.py [--n 2000] [--server PATH_TO_KTSERVER] [--clients N]

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
import time

from ktstore.embedded import EmbeddedServer
from ktstore.models import Model, fields
from ktstore.store import Store


def timed(label: str, n: int, fn) -> None:
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    print(
        f"{label:<42} {n:>7} ops  {dt * 1000:9.1f} ms  {n / dt:10.0f} ops/s  {dt / n * 1e6:8.1f} µs/op"
    )


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


if __name__ == "__main__":
    main()

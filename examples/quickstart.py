"""A short tour of ktstore: start a server, store, fetch, expire, iterate, stop.

    python examples/quickstart.py

Uses the built-in server (``ktstore-server``) in a subprocess, so no Kyoto Tycoon
installation is needed; ``EmbeddedServer()`` without arguments would prefer a real
``ktserver`` when one is on PATH.
"""

from __future__ import annotations

import time

from ktstore import KT_JSON, EmbeddedServer


def main() -> None:
    with EmbeddedServer(
        server="builtin", database=["*", "%"], serializer=KT_JSON, quiet=True
    ) as server:
        kt = server.client
        print("server on port", server.port, "with databases", kt.databases)

        # single records (binary protocol) -- values go through the JSON serializer
        kt.set("user:1", {"name": "Ada", "langs": ["en", "fr"]})
        print("get user:1        ->", kt.get("user:1"))
        print("get missing       ->", kt.get("missing"))

        # bulk operations: one round trip for many keys
        kt.set_bulk({f"item:{i}": i * i for i in range(5)})
        print("get_bulk          ->", kt.get_bulk(["item:1", "item:3", "nope"]))
        print("remove_bulk       ->", kt.remove_bulk(["item:0", "item:1"]), "removed")

        # conditional writes and counters (HTTP procedures)
        print("add existing      ->", kt.add("user:1", {}))
        print("increment hits    ->", kt.increment("hits"), kt.increment("hits", 10))
        print("cas               ->", kt.cas("user:1", kt.get("user:1"), {"name": "Ada L."}))

        # expiration: relative seconds (or a datetime / timedelta)
        kt.set("session", {"token": "abc"}, expire_time=1)
        print("session now       ->", kt.get("session"))
        time.sleep(2.1)
        print("session after 2s  ->", kt.get("session"))

        # a sorted (tree) database and a cursor
        kt.set_bulk({"b": 2, "a": 1, "c": 3}, db=1)
        with kt.cursor(db=1) as cursor:
            print("cursor walk       ->", list(cursor))
        print("match_prefix('')  ->", kt.match_prefix("", db=1))
        print("records in db 0   ->", kt.count())
    print("server stopped")


if __name__ == "__main__":
    main()

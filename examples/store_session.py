"""A dict-style scripting session on the embedded default store.

    python examples/store_session.py

``Store()`` is a ``MutableMapping`` over one database of a Kyoto Tycoon server; with
no arguments it starts the built-in server for this process (an in-memory tree
database, so keys iterate in sorted order) and stops it at exit.
"""

from __future__ import annotations

from collections import Counter

from ktstore.store import Store


def main() -> None:
    store = Store()
    store.clear()  # the default store is shared by the whole process

    text = "the quick brown fox jumps over the lazy dog the end"
    for word, n in Counter(text.split()).items():
        store[f"word:{word}"] = n
    store["config"] = {"lang": "en", "tags": ["demo", None], "ratio": 0.5}

    print("len:", len(store))
    print("the ->", store["word:the"], "| fox in store:", "word:fox" in store)
    print("config ->", store["config"])
    print("first keys in order:", list(store)[:4])
    print("words with prefix 'word:t':", list(store.keys_with_prefix("word:t")))
    print(
        "setdefault existing:",
        store.setdefault("word:the", 0),
        "| new:",
        store.setdefault("word:cat", 0),
    )
    print("pop:", store.pop("word:cat"), "| get missing:", store.get("word:cat", "n/a"))
    store.update({"a": 1, "b": 2})
    total = sum(v for k, v in store.items() if k.startswith("word:"))
    print("total words:", total)

    session = Store(store.client, db=store.db, ttl=60)  # same database, writes expire
    session["token"] = "s3cr3t"
    print("token expires at", store.client.expires("token"))


if __name__ == "__main__":
    main()

"""``Store``: one database of a Kyoto Tycoon server as a Python ``MutableMapping``.

>>> store = Store()                 # the embedded built-in server, no setup needed
>>> store["greeting"] = {"hello": "world"}
>>> store["greeting"]["hello"]
'world'

Where the data lives:

* ``Store()``: an in-memory database on a server this process starts (and ends when
  it ends).  It is *per process*: another process calling ``Store()`` gets its own,
  empty one.
* ``Store("app.kct")``: a file database shared by every process of the machine that
  opens the same file (:mod:`ktstore.shared`): the first starts a server for it, the
  others use that server, and it ends when none of them needs it any more.
* ``Store(client)`` or ``Store.from_url("kt://host:port/db")`` (also
  ``Store("kt://...")``): a server you run.  With the environment variable
  ``KTSTORE_URL`` set, ``Store()`` -- and so every model not bound to a store -- uses
  that server instead of starting one, so a fleet of workers shares one server with no
  code change.

Values go through the client's serializer (the embedded default uses msgpack, so
dicts, lists, numbers, text, bytes and ``None`` all work).  ``ttl`` gives every
write a default expiry.  Iteration walks keys in the database's order (sorted for
a tree database) through the server, one page at a time, so a huge database never
has to fit in memory.

A store is also what models are bound to: records live in ``db``, index entries
in ``index_db`` (default: the same database, which must then be a tree database
such as ``%`` or ``.kct``; keeping both in one database is also what makes save
and delete crash-atomic).
"""

from __future__ import annotations

import atexit
import heapq
import os
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any

from ktstore.errors import InvalidArgument, ScriptError

__all__ = ["Store"]

_MISSING = object()
_default_lock = threading.RLock()
_default_store: Store | None = None
_default_server: Any = None


def _tree_path(path: str) -> bool:
    base = path.split("#", 1)[0]
    kind = ""
    for part in path.split("#")[1:]:
        if part.startswith("type="):
            kind = part[5:].lower()
    if kind:
        return kind in ("kct", "kcf", "kcpt", "tree", "%", "+", "tdb", "fdb", "kcgs", "kcg")
    if base in ("%", "+"):
        return True
    return base.lower().endswith((".kct", ".kcf", ".kcpt", ".kcg", ".tdb", ".fdb"))


class Store(MutableMapping):
    """A mapping over database ``db`` of ``client``.

    :param client: a :class:`~ktstore.client.KyotoTycoon`; a database file path
        (shared by the processes that open it, see :mod:`ktstore.shared`); or ``None``
        for the embedded default server (started once per process, stopped at exit).
    :param db: database index of the records (default: the client's default db).
    :param index_db: database index of model index entries (default: ``db``).
    :param ttl: default expiry for writes, in seconds (``None``: never expire).
    """

    def __init__(
        self,
        client: Any = None,
        db: int | None = None,
        index_db: int | None = None,
        ttl: float | None = None,
    ) -> None:
        if client is None:
            url = os.environ.get(URL_VARIABLE)
            client = _url_client(url) if url else _embedded_client()
        elif isinstance(client, str) and "://" in client:
            client = _url_client(client)
        elif isinstance(client, (str, os.PathLike)):
            client = _shared_client(client)
        self.client = client
        self.db = client.resolve_db(db)
        self.index_db = self.db if index_db is None else client.resolve_db(index_db)
        self.ttl = ttl
        self._tree: dict[int, bool] = {}

    def __new__(cls, client: Any = None, *args: Any, **kwargs: Any) -> Store:
        if cls is Store and _is_sharded(client):
            return super().__new__(ShardedStore)
        return super().__new__(cls)

    @classmethod
    def from_url(
        cls, url: str, db: int | None = None, index_db: int | None = None, ttl: float | None = None
    ) -> Store:
        """A store on the server a ``kt://host:port/db?...`` URL names (see
        :mod:`ktstore.urls`).  Values use msgpack unless the URL names a serializer, as
        ``Store()`` does."""
        return cls(_url_client(url), db=db, index_db=index_db, ttl=ttl)

    @classmethod
    def default(cls) -> Store:
        """The process-wide store (what unbound models use): the server ``KTSTORE_URL``
        names, or else the embedded one."""
        global _default_store
        with _default_lock:
            if _default_store is None:
                _default_store = cls()
            return _default_store

    def __repr__(self) -> str:
        return f"<Store {self.client!r} db={self.db} index_db={self.index_db}>"

    def is_tree(self, db: int | None = None) -> bool:
        """Whether database ``db`` keeps keys in order (a tree database)."""
        idx = self.db if db is None else db
        if idx not in self._tree:
            paths = self.client.databases
            self._tree[idx] = idx < len(paths) and _tree_path(paths[idx])
        return self._tree[idx]

    # ---- mapping ----------------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        raw = self.client.get_bytes(key, db=self.db)
        if raw is None:
            raise KeyError(key)
        return self.client.decode_value(raw)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._check(value)
        self.client.set(key, value, db=self.db, expire_time=self.ttl)

    def _check(self, value: Any) -> None:
        """Refuse values the client's serializer would not give back as they are (see
        :func:`check_value`)."""
        check_value(value, getattr(self.client, "serializer", None))

    def __delitem__(self, key: Any) -> None:
        if not self.client.remove(key, db=self.db):
            raise KeyError(key)

    def __contains__(self, key: Any) -> bool:
        try:
            return bool(self.client.exists(key, db=self.db))
        except InvalidArgument:
            return False

    def __len__(self) -> int:
        """Number of records (the server's count, which may include records that
        expired but were not collected yet)."""
        return self.client.count(db=self.db)

    def __iter__(self) -> Iterator[Any]:
        for key, _value in self._scan(values=False):
            yield key

    def __bool__(self) -> bool:
        return len(self) > 0

    # ---- efficient overrides of the MutableMapping mixins -----------------------------

    def get(self, key: Any, default: Any = None) -> Any:
        raw = self.client.get_bytes(key, db=self.db)
        return default if raw is None else self.client.decode_value(raw)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """Atomic: stores ``default`` only if ``key`` is absent (KT ``add``)."""
        self._check(default)
        if self.client.add(key, default, db=self.db, expire_time=self.ttl):
            return default
        raw = self.client.get_bytes(key, db=self.db)
        if raw is None:  # removed in between: try once more
            return self.setdefault(key, default)
        return self.client.decode_value(raw)

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        """Atomic get-and-remove (KT ``seize``)."""
        raw = self.client.seize(key, db=self.db, decode_value=False)
        if raw is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return self.client.decode_value(raw)

    def popitem(self) -> tuple[Any, Any]:
        for key in self:
            try:
                return key, self.pop(key)
            except KeyError:
                continue
        raise KeyError("popitem(): store is empty")

    def update(self, other: Any = (), /, **kwargs: Any) -> None:  # type: ignore[override]
        """Set many keys in one bulk request."""
        data = dict(other.items() if hasattr(other, "items") else other)
        data.update(kwargs)
        for value in data.values():
            self._check(value)
        if data:
            self.client.set_bulk(data, db=self.db, expire_time=self.ttl)

    def get_many(self, keys: Any) -> dict[Any, Any]:
        """``{key: value}`` for the keys that exist, in one bulk request."""
        return self.client.get_bulk(list(keys), db=self.db)

    def clear(self) -> None:
        self.client.clear(db=self.db)

    def items(self) -> Any:  # type: ignore[override]
        return _ItemsView(self)

    def values(self) -> Any:  # type: ignore[override]
        return _ValuesView(self)

    def set(self, key: Any, value: Any, ttl: float | None = None) -> None:
        """``store[key] = value`` with an explicit expiry (seconds)."""
        self._check(value)
        self.client.set(key, value, db=self.db, expire_time=ttl if ttl is not None else self.ttl)

    def touch(self, key: Any, ttl: float | None) -> bool:
        """Give an existing key a new expiry; ``False`` if it does not exist."""
        return self.client.touch(key, ttl, db=self.db) is not None

    def delete_prefix(self, prefix: Any, page: int = 1000) -> int:
        """Remove every key starting with ``prefix``; the number removed.

        One server call per ``page`` keys (the ``modelremoveprefix`` procedure of
        kt.lua; each call is one transaction), so 50,000 keys take 50 round trips
        instead of 50,000 ``del``.  Without kt.lua it falls back to ``match_prefix`` +
        ``remove_bulk`` (two calls per page).  ``prefix`` must not be empty: use
        ``clear()`` for the whole database."""
        client = self.client
        pre = client.encode_key(prefix)
        if not pre:
            raise InvalidArgument("delete_prefix needs a non-empty prefix; clear() removes all")
        page = max(1, int(page))
        total = 0
        after: bytes | None = None
        try:
            while True:
                params = [
                    (b"db", str(self.db).encode()),
                    (b"pre", pre),
                    (b"n", str(page).encode()),
                ]
                if self.is_tree():
                    params.append((b"tree", b"1"))
                if after is not None:
                    params.append((b"after", after))
                out = dict(
                    client.execute_command(client.script_command("modelremoveprefix", params)) or []
                )
                total += int(out.get(b"removed", b"0"))
                if out.get(b"done") == b"1":
                    return total
                after = out.get(b"last")
        except ScriptError:
            if total:
                raise
        while True:
            keys = client.match_prefix(prefix, max_keys=page, db=self.db)
            if not keys:
                return total
            total += client.remove_bulk(keys, db=self.db)

    def keys_with_prefix(self, prefix: Any) -> Iterator[Any]:
        for key, _ in self._scan(values=False, prefix=prefix):
            yield key

    # ---- scanning ---------------------------------------------------------------------

    def _scan(
        self, values: bool = True, prefix: Any = b"", page: int = 500
    ) -> Iterator[tuple[Any, Any]]:
        """(key, raw value) pairs in key order, a page per round trip (see _scan_raw)."""
        decode = self.client.decode_key
        for key, value in self._scan_raw(values, prefix, page):
            yield decode(key), value

    def _scan_raw(
        self, values: bool = True, prefix: Any = b"", page: int = 500
    ) -> Iterator[tuple[bytes, bytes | None]]:
        """(key bytes, raw value) pairs of the keys starting with ``prefix``, in key order
        (``None`` values when ``values`` is false and the script answers).  Uses the
        ``modelscan`` procedure of kt.lua on a tree database, one page per round trip;
        a server cursor otherwise (or when the script is not loaded)."""
        from ktstore.models import keycodec

        client = self.client
        pre = client.encode_key(prefix) if prefix else b""
        tree = self.is_tree()
        if tree:
            hi = keycodec.prefix_successor(pre) if pre else None
            after = None
            try:
                while True:
                    params = [
                        (b"db", str(self.db).encode()),
                        (b"lo", pre),
                        (b"n", str(page).encode()),
                    ]
                    if hi is not None:
                        params.append((b"hi", hi))
                    if after is not None:
                        params.append((b"after", after))
                    if not values:
                        params.append((b"keys", b"1"))
                    out = dict(
                        client.execute_command(client.script_command("modelscan", params)) or []
                    )
                    for i in range(1, int(out.get(b"n", b"0")) + 1):
                        yield out[b"k%d" % i], out.get(b"v%d" % i)
                    if out.get(b"done") == b"1" or b"last" not in out:
                        return
                    after = out[b"last"]
            except ScriptError:
                if after is not None:
                    raise
        cur = client.cursor(db=self.db, decode_values=False)
        try:
            ok = cur.jump(pre) if pre and tree else cur.jump()
            if not ok:
                return
            while True:
                item = cur.get(step=True)
                if item is None:
                    return
                kb = client.encode_key(item[0])
                if pre and not kb.startswith(pre):
                    if tree:
                        return  # past the prefix: nothing further can match
                    continue
                yield kb, item[1]
        finally:
            cur.close()


def _is_sharded(client: Any) -> bool:
    from ktstore.client.sharded import ShardedKyotoTycoon

    return isinstance(client, ShardedKyotoTycoon)


class ShardedStore(Store):
    """A :class:`Store` over a :class:`~ktstore.client.sharded.ShardedKyotoTycoon`
    (what ``Store(sharded_client)`` gives).

    Key operations go to the key's server (the sharded client routes them); ``len`` and
    ``clear`` cover every server; iteration merges the servers' scans in key order (on
    tree databases; server by server on hash databases).  Models cannot be bound to
    it: a model's save is one Lua call, which runs on one server.
    """

    def _stores(self) -> list[Store]:
        return [
            Store(c, db=self.db, index_db=self.index_db, ttl=self.ttl)
            for c in self.client.shards.values()
        ]

    def _scan_raw(
        self, values: bool = True, prefix: Any = b"", page: int = 500
    ) -> Iterator[tuple[bytes, bytes | None]]:
        scans = [s._scan_raw(values, prefix, page) for s in self._stores()]
        if self.is_tree():
            yield from heapq.merge(*scans, key=lambda kv: kv[0])
        else:
            for scan in scans:
                yield from scan

    def delete_prefix(self, prefix: Any, page: int = 1000) -> int:
        return sum(s.delete_prefix(prefix, page) for s in self._stores())


_SCALARS = (type(None), bool, int, float, str)


def check_value(value: Any, serializer: str | None) -> None:
    """Raise :class:`~ktstore.errors.SerializationError` for a value that the named
    serializer would refuse or give back as another type.

    ``KT_MSGPACK``: ``None``, ``bool``, ``int`` (64-bit), ``float``, ``str``,
    ``bytes``, and ``list``/``dict`` of them (dict keys ``str`` or ``bytes``).  ``KT_JSON``: the same without ``bytes``, dict keys ``str`` only.  A
    ``tuple`` (it comes back a ``list``), ``set``, ``datetime``, ``Decimal``... are
    refused with a hint; other serializers are left to themselves (``KT_PICKLE``
    takes any picklable value, ``KT_BINARY`` stores text and gives back ``str``)."""
    from ktstore.errors import SerializationError

    if serializer not in ("msgpack", "json"):
        return
    msgpack = serializer == "msgpack"
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t in _SCALARS:
            if t is int and msgpack and not -(2**63) <= v < 2**64:
                raise SerializationError(
                    f"Store with msgpack: int {v} does not fit 64 bits; store str(value)"
                )
            continue
        if t is bytes and msgpack:
            continue
        if t is list:
            stack.extend(v)
            continue
        if t is dict:
            for k in v:
                if type(k) not in ((str, bytes) if msgpack else (str,)):
                    raise SerializationError(
                        f"Store with {serializer}: dict keys must be "
                        f"{'str or bytes' if msgpack else 'str'}, not {type(k).__name__}"
                    )
            stack.extend(v.values())
            continue
        hints: dict[type, str] = {
            tuple: "it would come back as a list: store list(value)",
            set: "store sorted(value) or a list",
            frozenset: "store sorted(value) or a list",
            bytearray: "store bytes(value)",
        }
        hint = hints.get(t, "convert it (datetime.isoformat(), str(decimal)...) or use a model")
        raise SerializationError(
            f"Store with {serializer} does not store {t.__name__} values ({hint}); it keeps "
            f"None, bool, int, float, str{', bytes' if msgpack else ''}, list and dict"
        )


class _ItemsView:
    def __init__(self, store: Store) -> None:
        self._s = store

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        dec = self._s.client.decode_value
        for k, v in self._s._scan(values=True):
            yield k, dec(v)

    def __len__(self) -> int:
        return len(self._s)

    def __contains__(self, item: Any) -> bool:
        k, v = item
        return self._s.get(k, _MISSING) == v


class _ValuesView:
    def __init__(self, store: Store) -> None:
        self._s = store

    def __iter__(self) -> Iterator[Any]:
        for _k, v in _ItemsView(self._s):
            yield v

    def __len__(self) -> int:
        return len(self._s)


#: The environment variable that points ``Store()`` (and so unbound models) at a server.
URL_VARIABLE = "KTSTORE_URL"


def _url_client(url: str) -> Any:
    """A client for ``url``; msgpack values unless the URL names a serializer."""
    from ktstore.client import KyotoTycoon
    from ktstore.serializers import KT_MSGPACK
    from ktstore.urls import parse_url

    kwargs = parse_url(url).client_kwargs()
    kwargs.setdefault("serializer", KT_MSGPACK)
    return KyotoTycoon(**kwargs)


def _shared_client(path: str | os.PathLike[str]) -> Any:
    """A msgpack client of the shared server of database file ``path``."""
    from ktstore.serializers import KT_MSGPACK
    from ktstore.shared import shared_server

    return shared_server(path).client(serializer=KT_MSGPACK)


def _embedded_client() -> Any:
    """Start (once per process) the built-in server on an in-memory tree database, with
    kt.lua loaded, and return a msgpack client for it.  Stopped at interpreter exit."""
    global _default_server
    with _default_lock:
        if _default_server is None or not _default_server.running:
            from ktstore.embedded import EmbeddedServer
            from ktstore.serializers import KT_MSGPACK

            server = EmbeddedServer(
                server="builtin", database="%", serializer=KT_MSGPACK, quiet=True
            )
            server.run()
            atexit.register(server.stop)
            _default_server = server
        return _default_server.client

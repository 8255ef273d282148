"""A client that spreads keys over several servers: sharding by consistent hashing.

Why: one server holds what fits on one machine and writes as fast as one machine can.
Kyoto Tycoon's answer is to place each key on one of N servers, chosen by the client.
:class:`ShardedKyotoTycoon` does that with a consistent-hash ring:

* each server gets ``vnodes`` points on a 64-bit ring, hashed from its name
  (``host:port`` unless named); a key belongs to the first point at or after its own
  hash.  Every client given the same servers places every key the same way, and
  adding a server moves only the keys it takes over: about ``1/(N+1)`` of them.
* single-key methods (``get``, ``set``, ``increment``, containers...) go to the key's
  server; bulk methods are split per server and run concurrently (a thread per server);
  ``match_prefix``/``match_regex``/``match_similar``, ``count``/``size``, ``clear``,
  ``keys()``/``items()`` ask every server and merge.
* :meth:`add_server` adds a server and (by default) moves the keys that now belong to
  it, records with their expiration times.

What does not cross servers: a transaction or a Lua call runs on one server, so a
model (whose save writes the record and its index entries in one call) lives on one
server, or one replicated pair (:mod:`ktstore.client.failover`), not on shards.
Spread independent key spaces (caches, sessions, counters, containers) over shards;
see docs/deployment.md.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ktstore.client.failover import parse_address
from ktstore.client.sync import KyotoTycoon
from ktstore.errors import InvalidArgument
from ktstore.protocol.similarity import kt_distance

__all__ = ["ShardedKyotoTycoon", "AsyncShardedKyotoTycoon", "ShardedCommands", "HashRing"]

DEFAULT_VNODES = 160


def _point(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class HashRing:
    """A consistent-hash ring of named nodes (pure: no I/O, no clients)."""

    def __init__(self, names: Iterable[str] = (), vnodes: int = DEFAULT_VNODES) -> None:
        if vnodes < 1:
            raise InvalidArgument("vnodes must be at least 1")
        self.vnodes = vnodes
        self.names: list[str] = []
        self._points: list[int] = []
        self._owners: list[str] = []
        for name in names:
            self.add(name)

    def add(self, name: str) -> None:
        if name in self.names:
            raise InvalidArgument(f"{name!r} is already on the ring")
        self.names.append(name)
        pairs = list(zip(self._points, self._owners, strict=True))
        base = name.encode("utf-8")
        pairs += [(_point(base + b"#%d" % i), name) for i in range(self.vnodes)]
        pairs.sort()
        self._points = [p for p, _ in pairs]
        self._owners = [o for _, o in pairs]

    def node(self, key: bytes) -> str:
        """The name of the node that owns ``key``."""
        if not self._points:
            raise InvalidArgument("the ring has no nodes")
        i = bisect.bisect_left(self._points, _point(key))
        return self._owners[i if i < len(self._points) else 0]


class ShardedCommands:
    """The sharded API written once, for the blocking and the asyncio client.

    Single-key methods return the shard client's own result (a value, or a coroutine
    with the asyncio client).  Methods over several shards hand ``{shard: call}`` and a
    ``combine`` function to :meth:`_fanout`, the only I/O of a subclass: threads for
    the blocking client, ``asyncio.gather`` for the asyncio one.

    :param servers: addresses (``"host:port"``, ``(host, port)``) or clients, or a
        mapping ``{name: address}`` to name the shards (a name, not the address, places
        keys: name them when a server may move).
    :param vnodes: points per server on the ring.
    Other keyword arguments are the client's and apply to every server.
    """

    client_class: type = KyotoTycoon

    def __init__(
        self,
        servers: Sequence[Any] | Mapping[str, Any],
        *,
        vnodes: int = DEFAULT_VNODES,
        **kwargs: Any,
    ) -> None:
        self._client_kwargs = kwargs
        self.ring = HashRing(vnodes=vnodes)
        self.shards: dict[str, Any] = {}
        items = servers.items() if isinstance(servers, Mapping) else ((None, s) for s in servers)
        for name, address in items:
            self._add(address, name)
        if not self.shards:
            raise InvalidArgument("a sharded client needs at least one server")

    def _fanout(
        self, work: Mapping[str, Callable[[Any], Any]], combine: Callable[[list[Any]], Any]
    ) -> Any:
        raise NotImplementedError  # pragma: no cover

    def _add(self, address: Any, name: str | None) -> str:
        client: Any
        if isinstance(address, self.client_class):
            client = address
        else:
            host, port = parse_address(address)
            client = self.client_class(host, port, **self._client_kwargs)
        name = name or f"{client.host}:{client.port}"
        self.ring.add(name)
        self.shards[name] = client
        return name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {list(self.shards)}>"

    @property
    def first(self) -> Any:
        """Any shard's client: they share the configuration (serializer, keys...)."""
        return next(iter(self.shards.values()))

    # -- placement --------------------------------------------------------------------------

    def shard_name(self, key: Any) -> str:
        return self.ring.node(self.first.encode_key(key))

    def shard(self, key: Any) -> Any:
        """The client of the server that holds ``key``."""
        return self.shards[self.ring.node(self.first.encode_key(key))]

    def _group(self, items: Iterable[Any], key: Callable[[Any], Any]) -> dict[str, list[Any]]:
        groups: dict[str, list[Any]] = defaultdict(list)
        node = self.ring.node
        ek = self.first.encode_key
        for item in items:
            groups[node(ek(key(item)))].append(item)
        return groups

    def _each(
        self,
        groups: Mapping[str, Any],
        call: Callable[[Any, Any], Any],
        combine: Callable[[list[Any]], Any],
    ) -> Any:
        """``call(client, part)`` for each shard's part of a split request."""
        work = {name: (lambda c, part=part: call(c, part)) for name, part in groups.items()}
        return self._fanout(work, combine)

    def _all(self, call: Callable[[Any], Any], combine: Callable[[list[Any]], Any]) -> Any:
        return self._fanout(dict.fromkeys(self.shards, call), combine)

    # -- one key: its server ----------------------------------------------------------------

    def get(self, key: Any, db: int | None = None, decode_value: bool = True) -> Any:
        return self.shard(key).get(key, db, decode_value)

    def get_bytes(self, key: Any, db: int | None = None) -> Any:
        return self.shard(key).get_bytes(key, db)

    def set(self, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        return self.shard(key).set(key, value, *args, **kwargs)

    def add(self, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        return self.shard(key).add(key, value, *args, **kwargs)

    def replace(self, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        return self.shard(key).replace(key, value, *args, **kwargs)

    def append(self, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        return self.shard(key).append(key, value, *args, **kwargs)

    def increment(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self.shard(key).increment(key, *args, **kwargs)

    def increment_double(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self.shard(key).increment_double(key, *args, **kwargs)

    def cas(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self.shard(key).cas(key, *args, **kwargs)

    def remove(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self.shard(key).remove(key, *args, **kwargs)

    def exists(self, key: Any, db: int | None = None) -> Any:
        return self.shard(key).exists(key, db)

    def length(self, key: Any, db: int | None = None) -> Any:
        return self.shard(key).length(key, db)

    def seize(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self.shard(key).seize(key, *args, **kwargs)

    def touch(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self.shard(key).touch(key, *args, **kwargs)

    def expire_time(self, key: Any, db: int | None = None) -> Any:
        return self.shard(key).expire_time(key, db)

    def expires(self, key: Any, db: int | None = None) -> Any:
        return self.shard(key).expires(key, db)

    # Containers live whole on the server of their key.
    def Hash(self, key: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        return self.shard(key).Hash(key, *args, **kwargs)

    def List(self, key: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        return self.shard(key).List(key, *args, **kwargs)

    def Set(self, key: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        return self.shard(key).Set(key, *args, **kwargs)

    def Queue(self, key: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        return self.shard(key).Queue(key, *args, **kwargs)

    def Schedule(self, key: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        return self.shard(key).Schedule(key, *args, **kwargs)

    # -- many keys: split per server, run concurrently --------------------------------------

    def get_bulk(
        self, keys: Iterable[Any], db: int | None = None, decode_values: bool = True
    ) -> Any:
        return self._each(
            self._group(keys, lambda k: k),
            lambda c, ks: c.get_bulk(ks, db, decode_values),
            _merge_dicts,
        )

    def set_bulk(
        self,
        data: Mapping[Any, Any] | Iterable[tuple[Any, Any]],
        db: int | None = None,
        expire_time: Any = None,
        no_reply: bool = False,
        encode_values: bool = True,
    ) -> Any:
        pairs = data.items() if isinstance(data, Mapping) else data
        groups = {name: dict(g) for name, g in self._group(pairs, lambda kv: kv[0]).items()}
        return self._each(
            groups,
            lambda c, d: c.set_bulk(d, db, expire_time, no_reply, encode_values),
            _none if no_reply else sum,
        )

    def remove_bulk(
        self, keys: Iterable[Any], db: int | None = None, no_reply: bool = False
    ) -> Any:
        return self._each(
            self._group(keys, lambda k: k),
            lambda c, ks: c.remove_bulk(ks, db, no_reply),
            _none if no_reply else sum,
        )

    def get_bulk_details(
        self, db_key_list: Iterable[tuple[int, Any]], decode_values: bool = True
    ) -> Any:
        return self._each(
            self._group(db_key_list, lambda dk: dk[1]),
            lambda c, dks: c.get_bulk_details(dks, decode_values),
            _chain,
        )

    def set_bulk_details(
        self,
        data: Iterable[tuple[int, Any, Any, Any]],
        no_reply: bool = False,
        encode_values: bool = True,
    ) -> Any:
        return self._each(
            self._group(data, lambda rec: rec[1]),
            lambda c, recs: c.set_bulk_details(recs, no_reply, encode_values),
            _none if no_reply else sum,
        )

    def remove_bulk_details(
        self, db_key_list: Iterable[tuple[int, Any]], no_reply: bool = False
    ) -> Any:
        return self._each(
            self._group(db_key_list, lambda dk: dk[1]),
            lambda c, dks: c.remove_bulk_details(dks, no_reply),
            _none if no_reply else sum,
        )

    # -- every server: ask all, merge -------------------------------------------------------

    def match_prefix(self, prefix: Any, max_keys: int | None = None, db: int | None = None) -> Any:
        """Matching keys of every server, in byte order (``max_keys`` of them at most)."""
        return self._all(lambda c: c.match_prefix(prefix, max_keys, db), _sorted_keys(max_keys))

    def match_regex(self, regex: Any, max_keys: int | None = None, db: int | None = None) -> Any:
        return self._all(lambda c: c.match_regex(regex, max_keys, db), _sorted_keys(max_keys))

    def match_similar(
        self,
        origin: Any,
        distance: int | None = None,
        max_keys: int | None = None,
        db: int | None = None,
    ) -> Any:
        """Keys near ``origin`` on every server, nearest first (ties in key order), by
        the distance the servers rank them with (:mod:`ktstore.protocol.similarity`)."""
        ek = self.first.encode_key
        borigin = ek(origin)

        def rank(k: Any) -> tuple[int, Any]:
            return kt_distance(borigin, ek(k), True), k

        def combine(parts: list[Any]) -> list[Any]:
            keys = sorted(itertools.chain.from_iterable(p or [] for p in parts), key=rank)
            return keys if max_keys is None or max_keys < 0 else keys[:max_keys]

        return self._all(lambda c: c.match_similar(origin, distance, max_keys, db), combine)

    def count(self, db: int | None = None) -> Any:
        return self._all(lambda c: c.count(db), sum)

    def size(self, db: int | None = None) -> Any:
        return self._all(lambda c: c.size(db), sum)

    def clear(self, db: int | None = None) -> Any:
        return self._all(lambda c: c.clear(db), all)

    def synchronize(self, *args: Any, **kwargs: Any) -> Any:
        return self._all(lambda c: c.synchronize(*args, **kwargs), all)

    def vacuum(self, *args: Any, **kwargs: Any) -> Any:
        return self._all(lambda c: c.vacuum(*args, **kwargs), all)

    def report(self) -> Any:
        """Each server's report, by shard name."""
        return self._all(lambda c: c.report(), self._by_name)

    def status(self, db: int | None = None) -> Any:
        """Each server's status of ``db``, by shard name."""
        return self._all(lambda c: c.status(db), self._by_name)

    def keys_nonlazy(self, db: int | None = None) -> Any:
        return self._all(lambda c: c.keys_nonlazy(db), _chain)

    def _by_name(self, parts: list[Any]) -> dict[str, Any]:
        return dict(zip(self.shards, parts, strict=True))

    # -- configuration shared by the shards -------------------------------------------------

    @property
    def databases(self) -> Any:
        return self.first.databases

    def encode_key(self, key: Any) -> bytes:
        return self.first.encode_key(key)

    def decode_key(self, data: bytes) -> Any:
        return self.first.decode_key(data)

    def encode_value(self, value: Any) -> bytes:
        return self.first.encode_value(value)

    def decode_value(self, data: bytes) -> Any:
        return self.first.decode_value(data)

    def resolve_db(self, db: Any) -> int:
        return self.first.resolve_db(db)

    # the names Store uses
    _db = resolve_db

    def _decode_value(self, data: bytes) -> Any:
        return self.first.decode_value(data)

    def _play_script(self, name: Any, *args: Any, **kwargs: Any) -> Any:
        raise InvalidArgument(
            f"a Lua call ({name!r}) runs on one server and cannot span shards: bind "
            "models to one server or a replicated pair (FailoverKyotoTycoon), and call "
            "procedures on shard(key)"
        )

    execute_command = script_command = lua_command = _play_script

    def _migration_plan(self, name: str) -> Callable[[Any], bool]:
        node = self.ring.node
        ek = self.first.encode_key
        return lambda key: node(ek(key)) == name


def _none(parts: list[Any]) -> None:
    return None


def _chain(parts: list[Any]) -> list[Any]:
    return list(itertools.chain.from_iterable(p or [] for p in parts))


def _merge_dicts(parts: list[Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for part in parts:
        out.update(part)
    return out


def _sorted_keys(max_keys: int | None) -> Callable[[list[Any]], list[Any]]:
    def combine(parts: list[Any]) -> list[Any]:
        keys = sorted(itertools.chain.from_iterable(p or [] for p in parts))
        return keys if max_keys is None or max_keys < 0 else keys[:max_keys]

    return combine


class ShardedKyotoTycoon(ShardedCommands):
    """The key-value API of :class:`KyotoTycoon` over several servers (blocking).

    See :class:`ShardedCommands` for the arguments.  Requests over several servers run
    concurrently, one thread per server.
    """

    def __init__(self, servers: Sequence[Any] | Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(servers, **kwargs)
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    def _fanout(
        self, work: Mapping[str, Callable[[Any], Any]], combine: Callable[[list[Any]], Any]
    ) -> Any:
        if len(work) <= 1:
            return combine([call(self.shards[name]) for name, call in work.items()])
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=max(2, len(self.shards)), thread_name_prefix="ktstore-shard"
                )
            executor = self._executor
        futures = [executor.submit(call, self.shards[name]) for name, call in work.items()]
        return combine([f.result() for f in futures])

    def __getitem__(self, key: Any) -> Any:
        return self.shard(key).get(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.shard(key).set(key, value)

    def __delitem__(self, key: Any) -> None:
        self.shard(key).remove(key)

    def __contains__(self, key: Any) -> bool:
        return bool(self.shard(key).exists(key))

    def __len__(self) -> int:
        return int(self.count())

    def __bool__(self) -> bool:
        return True

    def keys(self, db: int | None = None) -> Iterator[Any]:
        """Every key of every server (server by server; in key order within each)."""
        return itertools.chain.from_iterable(c.keys(db) for c in self.shards.values())

    def items(self, db: int | None = None) -> Iterator[tuple[Any, Any]]:
        return itertools.chain.from_iterable(c.items(db) for c in self.shards.values())

    def values(self, db: int | None = None) -> Iterator[Any]:
        return itertools.chain.from_iterable(c.values(db) for c in self.shards.values())

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    def sorted_keys(self, db: int | None = None) -> Iterator[Any]:
        """Every key in byte order across servers (tree databases keep each server's
        keys in order; this merges them lazily)."""
        return heapq.merge(*(c.keys(db) for c in self.shards.values()))

    def add_server(self, address: Any, name: str | None = None, migrate: bool = True) -> int:
        """Add a server to the ring; with ``migrate``, move to it the records it now owns
        (from every database, with their expiration times).  Returns how many moved.

        Records written to a moved key *while* this runs may be lost: run it when the
        key space is quiet, or write through the new ring only after it returns."""
        old = dict(self.shards)
        name = self._add(address, name)
        if not migrate:
            return 0
        target = self.shards[name]
        belongs = self._migration_plan(name)
        moved = 0
        for db in range(len(target.databases)):
            for source in old.values():
                keys = [k for k in (source.match_prefix(b"", None, db) or []) if belongs(k)]
                for i in range(0, len(keys), _PAGE):
                    chunk = [(db, k) for k in keys[i : i + _PAGE]]
                    records = source.get_bulk_details(chunk, decode_values=False)
                    if records:
                        target.set_bulk_details(
                            [(d, k, v, xt) for d, k, v, xt in records], encode_values=False
                        )
                    source.remove_bulk_details(chunk)
                    moved += len(records)
        return moved

    def close_all(self) -> int:
        n = sum(c.close_all() for c in self.shards.values())
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        return n

    close = close_all

    def __enter__(self) -> ShardedKyotoTycoon:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close_all()


_PAGE = 1000


class AsyncShardedKyotoTycoon(ShardedCommands):
    """:class:`ShardedKyotoTycoon` on :class:`~ktstore.client.aio.AsyncKyotoTycoon`:
    every method is a coroutine; requests over several servers run concurrently
    (``asyncio.gather``)."""

    def __init__(self, servers: Sequence[Any] | Mapping[str, Any], **kwargs: Any) -> None:
        from ktstore.client.aio import AsyncKyotoTycoon

        self.client_class = AsyncKyotoTycoon
        super().__init__(servers, **kwargs)

    def _fanout(
        self, work: Mapping[str, Callable[[Any], Any]], combine: Callable[[list[Any]], Any]
    ) -> Any:
        import asyncio

        async def run() -> Any:
            parts = await asyncio.gather(*(call(self.shards[n]) for n, call in work.items()))
            return combine(list(parts))

        return run()

    async def keys(self, db: int | None = None) -> AsyncIterator[Any]:
        """Every key of every server (server by server; in key order within each)."""
        for client in self.shards.values():
            async for key in client.keys(db):
                yield key

    async def add_server(self, address: Any, name: str | None = None, migrate: bool = True) -> int:
        """See :meth:`ShardedKyotoTycoon.add_server`."""
        old = dict(self.shards)
        name = self._add(address, name)
        if not migrate:
            return 0
        target = self.shards[name]
        belongs = self._migration_plan(name)
        moved = 0
        for db in range(len(await target.databases)):
            for source in old.values():
                keys = [k for k in (await source.match_prefix(b"", None, db) or []) if belongs(k)]
                for i in range(0, len(keys), _PAGE):
                    chunk = [(db, k) for k in keys[i : i + _PAGE]]
                    records = await source.get_bulk_details(chunk, decode_values=False)
                    if records:
                        await target.set_bulk_details(
                            [(d, k, v, xt) for d, k, v, xt in records], encode_values=False
                        )
                    await source.remove_bulk_details(chunk)
                    moved += len(records)
        return moved

    async def close_all(self) -> int:
        total = 0
        for client in self.shards.values():
            total += await client.close_all()
        return total

    close = close_all

    async def __aenter__(self) -> AsyncShardedKyotoTycoon:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close_all()

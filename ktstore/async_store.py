"""``AsyncStore``: the :class:`~ktstore.store.Store` API over the asyncio client.

Python has no awaitable ``store[key]``, so the mapping operations are coroutine
methods with the same meaning: ``await store.get(k)``, ``await store.set(k, v)``,
``await store.delete(k)`` (``del store[k]``: KeyError when missing),
``await store.contains(k)``, ``await store.length()``, ``await store.pop(k)``,
``await store.setdefault(k, v)``, ``await store.update(...)``,
``await store.get_many(keys)``, ``await store.clear()``, ``await store.touch(k, ttl)``,
and ``async for key in store`` / ``store.items()`` / ``store.values()`` /
``store.keys_with_prefix(p)`` walking the database through a server cursor.

Models bound to an ``AsyncStore`` (``class User(Model, store=astore)``) get their
awaitable forms from it (``await User.aget(pk)``, ``await u.asave()``); ``index_db``
is where their index entries live, as for :class:`~ktstore.store.Store`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ktstore.errors import InvalidArgument

__all__ = ["AsyncStore"]

_MISSING = object()


class AsyncStore:
    """A mapping-like view of database ``db`` of an
    :class:`~ktstore.client.aio.AsyncKyotoTycoon` (``ttl``: default expiry of writes)."""

    def __init__(
        self,
        client: Any,
        db: int | None = None,
        ttl: float | None = None,
        index_db: int | None = None,
    ) -> None:
        self.client = client
        self.db = client.resolve_db(db)
        self.ttl = ttl
        # where models keep their index entries, as for Store (default: ``db``)
        self.index_db = self.db if index_db is None else client.resolve_db(index_db)
        self._tree: dict[int, bool] = {}  # db index -> tree database? (models ask once)

    def __repr__(self) -> str:
        return f"<AsyncStore {self.client!r} db={self.db} index_db={self.index_db}>"

    async def get(self, key: Any, default: Any = None) -> Any:
        raw = await self.client.get_bytes(key, db=self.db)
        return default if raw is None else self.client.decode_value(raw)

    async def getitem(self, key: Any) -> Any:
        """``store[key]``: KeyError when missing."""
        value = await self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    async def set(self, key: Any, value: Any, ttl: float | None = None) -> None:
        await self.client.set(
            key, value, db=self.db, expire_time=ttl if ttl is not None else self.ttl
        )

    async def delete(self, key: Any) -> None:
        if not await self.client.remove(key, db=self.db):
            raise KeyError(key)

    async def contains(self, key: Any) -> bool:
        try:
            return bool(await self.client.exists(key, db=self.db))
        except InvalidArgument:
            return False

    async def length(self) -> int:
        return await self.client.count(db=self.db)

    async def setdefault(self, key: Any, default: Any = None) -> Any:
        """Atomic: stores ``default`` only if ``key`` is absent (KT ``add``)."""
        while True:
            if await self.client.add(key, default, db=self.db, expire_time=self.ttl):
                return default
            raw = await self.client.get_bytes(key, db=self.db)
            if raw is not None:
                return self.client.decode_value(raw)

    async def pop(self, key: Any, default: Any = _MISSING) -> Any:
        """Atomic get-and-remove (KT ``seize``)."""
        raw = await self.client.seize(key, db=self.db, decode_value=False)
        if raw is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return self.client.decode_value(raw)

    async def update(self, other: Any = (), /, **kwargs: Any) -> None:
        data = dict(other.items() if hasattr(other, "items") else other)
        data.update(kwargs)
        if data:
            await self.client.set_bulk(data, db=self.db, expire_time=self.ttl)

    async def get_many(self, keys: Any) -> dict[Any, Any]:
        return await self.client.get_bulk(list(keys), db=self.db)

    async def clear(self) -> None:
        await self.client.clear(db=self.db)

    async def touch(self, key: Any, ttl: float | None) -> bool:
        return await self.client.touch(key, ttl, db=self.db) is not None

    async def _scan(self, prefix: Any = b"") -> AsyncIterator[tuple[Any, Any]]:
        client = self.client
        pre = client.encode_key(prefix) if prefix else b""
        cur = client.cursor(db=self.db)
        try:
            if not await (cur.jump(pre) if pre else cur.jump()):
                return
            while True:
                item = await cur.get(step=True)
                if item is None:
                    return
                if pre and not client.encode_key(item[0]).startswith(pre):
                    continue
                yield item
        finally:
            await cur.close()

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for key, _ in self._scan():
            yield key

    async def items(self) -> AsyncIterator[tuple[Any, Any]]:
        async for item in self._scan():
            yield item

    async def values(self) -> AsyncIterator[Any]:
        async for _, value in self._scan():
            yield value

    async def keys_with_prefix(self, prefix: Any) -> AsyncIterator[Any]:
        async for key, _ in self._scan(prefix):
            yield key

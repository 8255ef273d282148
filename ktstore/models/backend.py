"""Where a model's data lives and how the Lua procedures are called.

Key layout (``P`` = the model prefix as bytes; see the comment at the top of the
models section of ``lua/kt.lua``)::

    record      record db   P:<pk>               mapdump {field: msgpack, "\\0ix": memo}
    container   record db   P:<pk>\\0<field>      List / Set / Hash container
    index       index db    P\\0i\\0<field>\\0<value key><pk key>  ->  <pk>
    unique      index db    P\\0u\\0<field>\\0<value key>          ->  <pk>
    counter     index db    P\\0seq                                 (auto pk)

The index database must be a *tree* database (``%``, ``+``, ``.kct``...): its
cursor order is what makes range scans and ordering work.  For save and delete to
survive a crash atomically, keep records and indexes in the **same** database
(the default): a transaction covers one database file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ktstore.client.command import Command, Program
from ktstore.errors import ScriptError
from ktstore.models.errors import ModelError

MEMO = b"\x00ix"
XTMAX = 1099511627775


def _dumps():
    from ktstore.protocol import dumps

    return dumps


def mapdump(d: dict[bytes, bytes]) -> bytes:
    return _dumps().mapdump(list(d.items()))


def mapload(data: bytes) -> dict[bytes, bytes]:
    pairs = _dumps().mapload(bytes(data))
    return dict(pairs.items() if isinstance(pairs, dict) else pairs)


def arraydump(items: Sequence[bytes]) -> bytes:
    return _dumps().arraydump(list(items))


def arrayload(data: bytes) -> list[bytes]:
    return list(_dumps().arrayload(bytes(data)))


def pack_memo(keys: Sequence[bytes]) -> bytes:
    """The memo entry of a record: the index/unique keys it owns, as an arraydump
    wrapped in a msgpack bin so every value of the record is msgpack."""
    import msgpack

    return msgpack.packb(arraydump(keys), use_bin_type=True)


def memo_keys(record: bytes) -> list[bytes]:
    """The index/unique keys a stored record lists in its memo."""
    import msgpack

    memo = mapload(record).get(MEMO)
    if not memo:
        return []
    return arrayload(msgpack.unpackb(memo))


@dataclass
class Page:
    """One page of a range scan: ``entries`` are ``(key, value, record, xt)`` with
    ``record``/``xt`` ``None`` when no join was asked or the record is gone."""

    entries: list[tuple[bytes, bytes, bytes | None, int | None]]
    last: bytes | None
    done: bool


class Emit:
    """A value a *stream* hands to its consumer (see :func:`drive`)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


#: A lazy result written once for both clients: a generator that yields commands
#: (receiving their values, as a program does) and :class:`Emit` items (receiving
#: ``None``) for the consumer.
Stream = Generator[Any, Any, Any]


def drive(client: Any, stream: Stream) -> Iterator[Any]:
    """Run a stream on the sync client: an iterator of its emitted values."""
    value: Any = None
    exc: BaseException | None = None
    try:
        while True:
            try:
                out = stream.throw(exc) if exc is not None else stream.send(value)
            except StopIteration:
                return
            value, exc = None, None
            if out.__class__ is Emit:
                yield out.value
                continue
            try:
                value = client.execute_command(out)
            except Exception as e:  # handed to the stream, as a program's runner does
                exc = e
    finally:
        stream.close()


async def adrive(client: Any, stream: Stream) -> AsyncIterator[Any]:
    """Run a stream on the asyncio client: an async iterator of its emitted values."""
    value: Any = None
    exc: BaseException | None = None
    try:
        while True:
            try:
                out = stream.throw(exc) if exc is not None else stream.send(value)
            except StopIteration:
                return
            value, exc = None, None
            if out.__class__ is Emit:
                yield out.value
                continue
            try:
                value = await client.execute_command(out)
            except Exception as e:
                exc = e
    finally:
        stream.close()


class _End:
    def __repr__(self) -> str:
        return "END"


#: What :meth:`Pull.next` returns once the stream is over.
END: Any = _End()


class Pull:
    """Take a stream's values one at a time from inside another program or stream:
    ``value = yield from pull.next()`` passes the stream's commands up to whatever
    runs the caller and returns its next emitted value (:data:`END` when it is over).
    This is how a lazy result (a query's instances) is consumed by an operation
    written once for both clients (``query.update`` saving page by page)."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    def next(self) -> Program:
        value: Any = None
        exc: BaseException | None = None
        stream = self.stream
        while True:
            try:
                out = stream.throw(exc) if exc is not None else stream.send(value)
            except StopIteration:
                return END
            value, exc = None, None
            if out.__class__ is Emit:
                return out.value
            try:
                value = yield out
            except Exception as e:
                exc = e

    def close(self) -> None:
        self.stream.close()


def run(client: Any, program: Program) -> Any:
    """Run a program on the sync client, one command at a time, in the calling thread
    (as :func:`arun` does on the asyncio client)."""
    value: Any = None
    exc: BaseException | None = None
    try:
        while True:
            try:
                cmd = program.throw(exc) if exc is not None else program.send(value)
            except StopIteration as stop:
                return stop.value
            value, exc = None, None
            try:
                value = client.execute_command(cmd)
            except Exception as e:  # handed to the program, as the client's runner does
                exc = e
    finally:
        program.close()


async def arun(client: Any, program: Program) -> Any:
    """Run a program on the asyncio client, one command at a time through its
    ``execute_command`` (the same as handing it the program, but each command takes
    the client's inline path for single commands: most model operations are one
    command, and this keeps ``aget`` as cheap as a plain ``get_bulk``)."""
    value: Any = None
    exc: BaseException | None = None
    try:
        while True:
            try:
                cmd = program.throw(exc) if exc is not None else program.send(value)
            except StopIteration as stop:
                return stop.value
            value, exc = None, None
            try:
                value = await client.execute_command(cmd)
            except Exception as e:  # handed to the program, as the client's runner does
                exc = e
    finally:
        program.close()


def is_async_client(client: Any) -> bool:
    """Whether ``client`` runs commands as coroutines (the asyncio clients)."""
    from ktstore.client.aio import AsyncKyotoTycoon

    return isinstance(client, AsyncKyotoTycoon)


def command_of(client: Any, build: Any) -> Command:
    """The :class:`Command` a client method would run, for a method the client has no
    ``*_command`` builder of (``get_bulk_details``, ``set_bytes``, ``databases``): a
    pipeline of that client queues instead of running, so ``build(pipeline)`` leaves
    the very command the client would send."""
    p = client.pipeline()
    build(p)
    return p.commands.pop()  # type: ignore[no-any-return]


class Binding:
    """A model class bound to a store (a ``Store`` or an ``AsyncStore``): its key
    prefix and the server calls.

    Every method that talks to the server is a *program* (a generator yielding
    :class:`~ktstore.client.command.Command` objects, see
    :mod:`ktstore.client.command`); :meth:`run` hands it to the bound client, so the
    sync client returns the value and the asyncio client a coroutine.  The model
    layer writes each operation once this way and serves both clients."""

    def __init__(self, store: Any, prefix: str) -> None:
        self.store = store
        self.client = store.client
        self.is_async = is_async_client(self.client)
        self.rdb: int = store.db
        self.idb: int = store.index_db
        self.prefix = prefix.encode("utf-8")
        self.record_prefix = self.prefix + b":"
        self.index_prefix = self.prefix + b"\x00i\x00"
        self.unique_prefix = self.prefix + b"\x00u\x00"
        self.seq_key = self.prefix + b"\x00seq"
        self.schema_key = self.prefix + b"\x00schema"
        # indexed fields whose entries old records lack (index=True added after they
        # were stored): see check_schema
        self.unbuilt: frozenset[str] = frozenset()
        self._indexed: list[str] = []

    def run(self, program: Program) -> Any:
        """Run a program on the bound client (sync: its value; asyncio: a coroutine)."""
        if self.is_async:
            return arun(self.client, program)
        return run(self.client, program)

    # ---- keys -------------------------------------------------------------------------

    def record_key(self, pkstr: str) -> bytes:
        return self.record_prefix + pkstr.encode("utf-8")

    def container_key(self, pkstr: str, name: str) -> bytes:
        return self.record_key(pkstr) + b"\x00" + name.encode("utf-8")

    def index_base(self, field: str) -> bytes:
        return self.index_prefix + field.encode("utf-8") + b"\x00"

    def unique_base(self, field: str) -> bytes:
        return self.unique_prefix + field.encode("utf-8") + b"\x00"

    # ---- set-up and schema ------------------------------------------------------------

    def setup(self, model: str, indexed: list[str]) -> Program:
        """Check that the index database is a tree database, then the schema."""
        known = getattr(self.store, "_tree", None)  # the store's cache of db kinds
        tree = known.get(self.idb) if known is not None else None
        if tree is None:
            paths = yield command_of(self.client, lambda p: p.databases)
            tree = self.idb < len(paths) and _tree_path(paths[self.idb])
            if known is not None:
                known[self.idb] = tree
        if not tree:
            raise ModelError(
                f"{model}: the index database {self.idb} is not a tree "
                "database (%, +, .kct...); range scans need key order. Use "
                "Store(client, db=..., index_db=<a tree database>)"
            )
        yield from self.check_schema(indexed)

    def check_schema(self, indexed: list[str]) -> Program:
        """Find the indexed fields whose index is incomplete (``self.unbuilt``).

        ``P\\0schema`` lists the fields whose index every stored record has entries in.
        A field indexed now but not listed there, while records exist, had
        ``index=True`` added after they were stored: its queries would silently miss
        them, so they raise until ``rebuild()`` fills the index.  With no records (or
        records from before the marker existed) every index is complete."""
        self._indexed = list(indexed)
        raw = yield self.client.get_bytes_command(self.schema_key, db=self.idb)
        known = {k.decode("utf-8") for k in arrayload(raw)} if raw is not None else None
        wanted = set(indexed)
        if known is not None and wanted <= known:
            self.unbuilt = frozenset()
            return
        if known is not None and (yield from self._has_records()):
            self.unbuilt = frozenset(wanted - known)
            return
        yield from self.mark_built(wanted)

    def mark_built(self, names: set[str]) -> Program:
        """Record that every stored record has entries for the indexes of ``names``."""
        raw = yield self.client.get_bytes_command(self.schema_key, db=self.idb)
        known = {k.decode("utf-8") for k in arrayload(raw)} if raw is not None else set()
        value = arraydump(sorted(n.encode("utf-8") for n in names | known))
        yield command_of(self.client, lambda p: p.set_bytes(self.schema_key, value, db=self.idb))
        self.unbuilt = frozenset()

    def _has_records(self) -> Program:
        from ktstore.models import keycodec

        lo = self.index_prefix
        page = yield from self.scan(
            self.idb, lo, keycodec.prefix_successor(lo), limit=1, keys_only=True
        )
        return bool(page.entries)

    def require_built(self, model: str, names: list[str], what: str) -> Program:
        missing = sorted(set(names) & self.unbuilt)
        if missing:  # another process may have rebuilt since: look again
            yield from self.check_schema(self._indexed)
            missing = sorted(set(names) & self.unbuilt)
        if missing:
            raise ModelError(
                f"{model}.{missing[0]}: {what} was declared after records were stored, "
                f"so their entries are missing; run {model}.rebuild() once to build them"
            )

    # ---- Lua calls --------------------------------------------------------------------

    def call(self, name: str, params: dict[bytes, bytes]) -> Program:
        try:
            out = yield self.client.script_command(name, list(params.items()))
        except ScriptError as exc:
            raise ModelError(
                f"{name} failed on the server ({exc}); is lua/kt.lua loaded "
                "(ktserver -scr) and are the database indexes right?"
            ) from exc
        return dict(out or [])

    def _dbs(self) -> dict[bytes, bytes]:
        return {b"idb": str(self.idb).encode(), b"rdb": str(self.rdb).encode()}

    def save(self, specs: list[dict[bytes, bytes]]) -> Program:
        params = self._dbs()
        params[b"n"] = str(len(specs)).encode()
        for i, spec in enumerate(specs, 1):
            spec[b"rp"] = self.record_prefix
            params[b"s%d" % i] = mapdump(spec)
        return (yield from self.call("modelsave", params))

    def delete(
        self, specs: list[dict[bytes, bytes]], extra: dict[bytes, bytes] | None = None
    ) -> Program:
        params = self._dbs()
        params.update(extra or {})
        params[b"n"] = str(len(specs)).encode()
        for i, spec in enumerate(specs, 1):
            params[b"s%d" % i] = mapdump(spec)
        return (yield from self.call("modeldelete", params))

    def expire(self, key: bytes, xt: int | None, containers: list[bytes]) -> Program:
        params = self._dbs()
        params[b"k"] = key
        if xt is not None:
            params[b"xt"] = str(xt).encode()
        if containers:
            params[b"cx"] = arraydump(containers)
        return (yield from self.call("modelexpire", params))

    def scan(
        self,
        db: int,
        lo: bytes,
        hi: bytes | None,
        *,
        after: bytes | None = None,
        reverse: bool = False,
        limit: int = 100,
        join: bool = False,
        keys_only: bool = False,
    ) -> Program:
        """One page of a range scan (a :class:`Page`)."""
        params: dict[bytes, bytes] = {b"db": str(db).encode(), b"lo": lo, b"n": str(limit).encode()}
        if hi is not None:
            params[b"hi"] = hi
        if after is not None:
            params[b"after"] = after
        if reverse:
            params[b"rev"] = b"1"
        if keys_only:
            params[b"keys"] = b"1"
        if join:
            params[b"jdb"] = str(self.rdb).encode()
            params[b"jp"] = self.record_prefix
        out = yield from self.call("modelscan", params)
        n = int(out.get(b"n", b"0"))
        entries = []
        for i in range(1, n + 1):
            rec = out.get(b"r%d" % i)
            xt = out.get(b"x%d" % i)
            entries.append(
                (
                    out[b"k%d" % i],
                    out.get(b"v%d" % i, b""),
                    rec,
                    int(xt) if xt is not None else None,
                )
            )
        return Page(entries, out.get(b"last"), out.get(b"done") == b"1")

    def scan_all(
        self,
        db: int,
        lo: bytes,
        hi: bytes | None,
        *,
        reverse: bool = False,
        page: int = 100,
        join: bool = False,
        keys_only: bool = False,
        after: bytes | None = None,
        first_page: int | None = None,
    ) -> Stream:
        """A stream of every entry of ``[lo, hi)`` (after ``after``), one page in memory
        at a time; the first page holds ``first_page`` entries when given (``first()``
        needs one), the others ``page``."""
        limit = first_page or page
        while True:
            p = yield from self.scan(
                db,
                lo,
                hi,
                after=after,
                reverse=reverse,
                limit=limit,
                join=join,
                keys_only=keys_only,
            )
            for entry in p.entries:
                yield Emit(entry)
            if p.done or p.last is None:
                return
            after = p.last
            limit = page

    def count_range(self, db: int, lo: bytes, hi: bytes | None) -> Program:
        """The number of keys in ``[lo, hi)`` (keys only, 1000 a page)."""
        n = 0
        after = None
        while True:
            p = yield from self.scan(db, lo, hi, after=after, limit=1000, keys_only=True)
            n += len(p.entries)
            if p.done or p.last is None:
                return n
            after = p.last

    def iterate(self, stream: Stream) -> Iterator[Any]:
        """Run a stream on the sync client (see :func:`drive`)."""
        return drive(self.client, stream)

    def sweep(self, lo: bytes, hi: bytes | None, page: int = 1000) -> Program:
        """Remove orphaned entries of ``[lo, hi)`` in the index db; ``(seen, removed)``."""
        after = None
        seen = removed = 0
        while True:
            params = self._dbs()
            params.update({b"lo": lo, b"n": str(page).encode(), b"rp": self.record_prefix})
            if hi is not None:
                params[b"hi"] = hi
            if after is not None:
                params[b"after"] = after
            out = yield from self.call("modelsweep", params)
            seen += int(out.get(b"seen", b"0"))
            removed += int(out.get(b"removed", b"0"))
            if out.get(b"done") == b"1" or b"last" not in out:
                return seen, removed
            after = out[b"last"]

    def get_records(self, keys: Sequence[bytes]) -> Program:
        """``{key: (record, xt)}`` through the binary get_bulk (one round trip)."""
        if not keys:
            return {}
        pairs = [(self.rdb, k) for k in keys]
        rows = yield command_of(
            self.client, lambda p: p.get_bulk_details(pairs, decode_values=False)
        )
        out = {}
        for _db, key, value, xt in rows:
            kb = key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape")
            out[kb] = (value, xt)
        return out

    def next_id(self, n: int = 1) -> Program:
        """Advance the model's counter by ``n``; the last id of the block."""
        params = {b"db": str(self.idb).encode(), b"k": self.seq_key, b"n": str(n).encode()}
        out = yield from self.call("modelseq", params)
        if b"id" not in out:
            raise ModelError(f"cannot draw an id from {self.seq_key!r}: {out.get(b'err')!r}")
        return int(out[b"id"])


def _tree_path(path: str) -> bool:
    from ktstore.store import _tree_path as tree_path

    return tree_path(path)

"""The on-disk engine: file databases (``.kch``, ``.kct``...) on an LMDB B+tree.

Why LMDB: a memory-mapped B+tree opens in constant time whatever the file size,
reads without copying the file into the process, and commits a transaction
atomically (copy-on-write pages, then one meta page), so a request is either
wholly in the file or not at all.  Measured against SQLite used as the engine
(``ktstore/server/README.md``), it is 2.5x faster for one-record commits and
4-5x for bulk commits from Python.

:class:`FileDatabase` keeps every public method of
:class:`~ktstore.server.database.Database` (``Database(spec)`` returns one for a
file spec); the shared request logic (``set``, ``cas``, ``increment``...) is
inherited and runs on the storage primitives overridden here.

Commits.  Writes go into one LMDB write transaction, opened at the first write
and committed when the request ends: after a single operation, at the end of a
:meth:`batch` (a bulk operation, a Lua call) or of an outermost explicit
transaction.  An explicit transaction inside a batch is a nested LMDB
transaction, so aborting it drops its own writes only.  The commit hook (the
update log) runs after the commit succeeded.  A commit that fails (disk full,
I/O error) leaves the file as it was: a single operation then answers
``False`` with a system error, a batch raises :class:`CommitError`.

Keys.  LMDB keys are 1..511 bytes; KT keys are 0 bytes up.  A key ``k`` of up
to 509 bytes is stored as ``b"\\0" + k``; a longer key lives in a *bucket*
stored under ``b"\\0" + k[:510]`` (511 bytes: no short key is that long), whose
value lists its records sorted by key, each as ``u32 key size, u32 value size,
5-byte xt, key, value`` (big-endian).  That keeps byte
order: every key sorts, against every other, as its stored key does, and keys
sharing a bucket are sorted inside it, so range scans and cursors see keys of
any length in order.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import lmdb

from ktstore.protocol.expire import resolve_xt
from ktstore.protocol.limits import XTMAX
from ktstore.server import expiry
from ktstore.server.database import Database
from ktstore.server.dbspec import (
    ERR_INVALID,
    ERR_NOIMPL,
    ERR_NOREC,
    ERR_SYSTEM,
    DatabaseOpenError,
    Visitor,
)
from ktstore.server.persistence import FORMAT, FileLock, check_file, open_environment

__all__ = ["FileDatabase", "FileCursor", "CommitError", "encode_key"]

_SHORT = 509  # longest key stored as itself (after the 1-byte prefix)
_BUCKET = 511  # length of a bucket's stored key
_PREFIX = b"\x00"
_XT5 = struct.Struct(">Q")

Record = tuple[bytes, bytes, int]


class CommitError(Exception):
    """A file commit failed (disk full, I/O error): nothing of the request was stored."""


def encode_key(key: bytes) -> bytes:
    """The stored (LMDB) key of ``key``; order preserving, see the module docstring."""
    if len(key) <= _SHORT:
        return _PREFIX + key
    return _PREFIX + key[:510]


def _pack(value: bytes, xt: int) -> bytes:
    return _XT5.pack(xt)[3:] + value


def _members(raw: bytes) -> list[list[Any]]:
    """The ``[key, value, xt]`` records of a bucket, in key order."""
    out: list[list[Any]] = []
    p = 0
    n = len(raw)
    while p < n:
        ksiz, vsiz = struct.unpack_from(">II", raw, p)
        xt = int.from_bytes(raw[p + 8 : p + 13], "big")
        k = p + 13
        out.append([raw[k : k + ksiz], raw[k + ksiz : k + ksiz + vsiz], xt])
        p = k + ksiz + vsiz
    return out


def _pack_members(members: list[list[Any]]) -> bytes:
    parts = []
    for key, value, xt in members:
        parts.append(struct.pack(">II", len(key), len(value)) + _XT5.pack(xt)[3:])
        parts.append(key)
        parts.append(value)
    return b"".join(parts)


def _records_at(sk: bytes, raw: bytes) -> list[Record]:
    """The records stored under stored key ``sk`` (one, or a bucket's), in key order."""
    if len(sk) == _BUCKET:
        return [(m[0], m[1], m[2]) for m in _members(raw)]
    return [(sk[1:], raw[5:], int.from_bytes(raw[:5], "big"))]


class FileDatabase(Database):
    """A file database on LMDB (see the module docstring)."""

    def __init__(self, spec: str, clock: Callable[[], float] = time.time) -> None:
        self._setup(spec, clock)
        self._undo: Any = None  # {} while an explicit transaction is open
        self._batch = 0
        self._track = True  # every change is committed
        self._dirty: Any = {}  # key -> new record or None (removed)
        self._dirty_clear = False
        self._r: Any = None  # the read transaction of the current snapshot
        self._w: Any = None  # the innermost open write transaction
        self._outer: Any = None  # the outermost one (what a commit commits)
        self._saved: tuple[int, int, dict[bytes, Any], bool] | None = None
        self._lockfile: FileLock | None = None
        self._env: Any = None
        path = self.path
        existing = check_file(path)
        self._lockfile = FileLock(path)
        try:
            if not existing:
                existing = check_file(path)  # another process may have created it
            env = open_environment(path)
            self._env = env
            self._recs = env.open_db(b"records")
            self._xts = env.open_db(b"expiry", dupsort=True)
            self._meta = env.open_db(b"meta")
            with env.begin(write=True) as txn:
                fmt = txn.get(b"format", db=self._meta)
                if fmt is None:
                    if txn.stat(self._recs)["entries"]:
                        raise DatabaseOpenError(f"{path}: not a ktstore database file")
                    txn.put(b"format", FORMAT.encode(), db=self._meta)
                    txn.put(b"kind", self.kind.encode(), db=self._meta)
                elif fmt != FORMAT.encode():
                    raise DatabaseOpenError(f"{path}: unknown ktstore format {fmt!r}")
            self._load_counters()
        except lmdb.Error as e:
            self.close()
            raise DatabaseOpenError(f"{path}: cannot open: {e}") from e
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ housekeeping

    def _load_counters(self) -> None:
        """Read count/size from the file and the earliest xt of the expiry index."""
        with self._env.begin() as txn:
            self._count = int(txn.get(b"count", b"0", db=self._meta))
            self._size = int(txn.get(b"size", b"0", db=self._meta))
            cur = txn.cursor(db=self._xts)
            self._next_xt = expiry.xt_of(cur.key()) if cur.first() else XTMAX
        self._count0, self._size0 = self._count, self._size

    def _txn(self) -> Any:
        """The transaction to read in: the open write one, else the read one."""
        return self._w if self._w is not None else self._reader()

    def _reader(self) -> Any:
        """A read transaction kept until the next commit (caller holds the lock).

        Reusing it saves a begin/abort per read.  Without LMDB's reader table
        (``lock=False``) a later commit may reuse the pages it sees, so it is
        dropped at every commit and never read after one.
        """
        r = self._r
        if r is None:
            r = self._r = self._env.begin()
        return r

    def _drop_reader(self) -> None:
        r = self._r
        if r is not None:
            self._r = None
            r.abort()

    def _wtxn(self) -> Any:
        """The write transaction, opened on first use (caller holds the lock)."""
        w = self._w
        if w is None:
            w = self._w = self._outer = self._env.begin(write=True)
        return w

    def set_commit_hook(
        self, hook: Callable[[bool, list[tuple[bytes, tuple[bytes, int] | None]]], None] | None
    ) -> None:
        with self.lock:
            self._on_commit = hook

    def _flush(self) -> bool:
        """Commit the open write transaction, then tell the commit hook."""
        txn = self._outer
        if txn is None:
            return True
        self._w = self._outer = None
        self._drop_reader()
        try:
            if self._count != self._count0 or self._size != self._size0:
                txn.put(b"count", b"%d" % self._count, db=self._meta)
                txn.put(b"size", b"%d" % self._size, db=self._meta)
            txn.commit()
        except lmdb.Error as e:
            try:
                txn.abort()
            except lmdb.Error:
                pass
            self._dirty = {}
            self._dirty_clear = False
            self._load_counters()
            self.set_error(ERR_SYSTEM, f"commit failed: {e}")
            return False
        self._count0, self._size0 = self._count, self._size
        hook = self._on_commit
        if hook is not None and (self._dirty or self._dirty_clear):
            dirty, cleared = self._dirty, self._dirty_clear
            self._dirty = {}
            self._dirty_clear = False
            hook(cleared, list(dirty.items()))
        return True

    @contextmanager
    def batch(self) -> Iterator[Database]:
        """Hold the lock and commit once at the end (raises :class:`CommitError`
        when that commit fails: nothing of the batch is then in the file)."""
        with self.lock:
            self._batch += 1
            try:
                yield self
            finally:
                self._batch -= 1
                if self._batch == 0 and self._undo is None and not self._flush():
                    raise CommitError(self.error()[2])

    def synchronize(self, hard: bool = False) -> bool:
        """Flush the file to the disk (``fsync``): what survives a machine crash."""
        with self.lock:
            if self._undo is None and self._batch == 0 and not self._flush():
                return False
            try:
                self._env.sync(True)
            except lmdb.Error as e:
                self.set_error(ERR_SYSTEM, f"sync failed: {e}")
                return False
            return True

    def close(self) -> None:
        """Commit what is pending (an open transaction is aborted) and close the file."""
        with self.lock:
            if self._env is not None:
                if self._saved is not None:
                    self._rollback()
                self._flush()
                self._drop_reader()
                self._env.close()
                self._env = None
            if self._lockfile is not None:
                self._lockfile.release()
                self._lockfile = None

    # ----------------------------------------------------------- raw storage

    def _note(self, key: bytes) -> None:
        """Nothing to remember: an aborted transaction is dropped by LMDB."""

    def _get(self, txn: Any, key: bytes) -> tuple[bytes, int] | None:
        sk = encode_key(key)
        raw = txn.get(sk, db=self._recs)
        if raw is None:
            return None
        if len(sk) == _BUCKET:
            for m in _members(raw):
                if m[0] == key:
                    return m[1], m[2]
            return None
        return raw[5:], int.from_bytes(raw[:5], "big")

    def _store(self, txn: Any, key: bytes, value: bytes, xt: int) -> None:
        sk = encode_key(key)
        if len(sk) == _BUCKET:
            raw = txn.get(sk, db=self._recs)
            members = _members(raw) if raw is not None else []
            for m in members:
                if m[0] == key:
                    self._size += len(value) - len(m[1])
                    m[1], m[2] = value, xt
                    break
            else:
                members.append([key, value, xt])
                members.sort(key=lambda m: m[0])
                self._count += 1
                self._size += len(key) + len(value) + 5
            txn.put(sk, _pack_members(members), db=self._recs)
        else:
            old = txn.replace(sk, _XT5.pack(xt)[3:] + value, db=self._recs)
            if old is None:
                self._count += 1
                self._size += len(key) + len(value) + 5
            else:
                self._size += len(value) + 5 - len(old)
        if xt < XTMAX:
            txn.put(expiry.xt_key(xt), sk, db=self._xts, dupdata=True)
            if xt < self._next_xt:
                self._next_xt = xt
        if self._on_commit is not None:
            self._dirty[key] = (value, xt)

    def _write(self, key: bytes, value: bytes, xt: int) -> None:
        """Store a record in the write transaction and run a GC step."""
        if xt > XTMAX:
            xt = XTMAX
        self._store(self._wtxn(), key, value, xt)
        self._gc_step()

    def _erase(self, key: bytes) -> bool:
        """Remove a record in the write transaction; whether there was one."""
        txn = self._wtxn()
        sk = encode_key(key)
        if len(sk) == _BUCKET:
            raw = txn.get(sk, db=self._recs)
            if raw is None:
                return False
            members = _members(raw)
            for i, m in enumerate(members):
                if m[0] == key:
                    del members[i]
                    break
            else:
                return False
            if members:
                txn.put(sk, _pack_members(members), db=self._recs)
            else:
                txn.delete(sk, db=self._recs)
            size = len(m[1])
        else:
            old = txn.pop(sk, db=self._recs)
            if old is None:
                return False
            size = len(old) - 5
        self._count -= 1
        self._size -= len(key) + size + 5
        if self._on_commit is not None:
            self._dirty[key] = None
        return True

    def _live(self, key: bytes) -> tuple[bytes, int] | None:
        """The record if it exists and has not expired; purges it if it has."""
        w = self._w
        rec = self._get(w if w is not None else self._reader(), key)
        if rec is not None and rec[1] < XTMAX and int(self._clock()) > rec[1]:
            self._erase(key)
            self._changed()
            return None
        return rec

    def _collect(self, txn: Any, now: int, budget: int) -> None:
        """Examine up to ``budget`` expiry-index entries older than ``now``."""
        cur = txn.cursor(db=self._xts)
        n = 0
        while n < budget and cur.first():
            xt = expiry.xt_of(cur.key())
            if xt >= now:
                break
            sk = cur.value()
            cur.delete()
            n += 1
            raw = txn.get(sk, db=self._recs)
            if raw is None:
                continue
            for key, _value, rxt in _records_at(sk, raw):
                if rxt == xt:
                    self._erase(key)
        self._next_xt = expiry.xt_of(cur.key()) if cur.first() else XTMAX

    def _gc_step(self, writes: int = 1) -> None:
        """Collect a few expired records per write and enforce ktcapcnt/ktcapsiz."""
        if self._next_xt < XTMAX:
            now = int(self._clock())
            if self._next_xt < now:
                self._collect(self._wtxn(), now, expiry.GC_STEP * writes)
        if self.capcnt >= 0 or self.capsiz >= 0:
            while self._count and (
                (self.capcnt >= 0 and self._count > self.capcnt)
                or (self.capsiz >= 0 and self._size > self.capsiz)
            ):
                first = self._seek(self._wtxn(), None, False, True)
                if first is None:
                    break
                self._erase(first[0])

    # ------------------------------------------------------------- scanning

    def _seek(self, txn: Any, key: bytes | None, strict: bool, forward: bool) -> Record | None:
        """The first record after ``key`` (``forward``) or the last before it, ``key``
        itself included unless ``strict``; ``key None``: the first / last record."""
        cur = txn.cursor(db=self._recs)
        if forward:
            if key is None:
                ok = cur.first()
            else:
                ok = cur.set_range(encode_key(key))
            while ok:
                for rec in _records_at(cur.key(), cur.value()):
                    k = rec[0]
                    if key is None or k > key or (not strict and k == key):
                        return rec
                ok = cur.next()
            return None
        if key is None:
            ok = cur.last()
        else:
            ok = cur.set_range(encode_key(key)) or cur.last()
        while ok:
            for rec in reversed(_records_at(cur.key(), cur.value())):
                k = rec[0]
                if key is None or k < key or (not strict and k == key):
                    return rec
            ok = cur.prev()
        return None

    def _records(self, txn: Any, start: bytes | None = None) -> Iterator[Record]:
        """Every record from ``start`` (included) on, in key order."""
        cur = txn.cursor(db=self._recs)
        ok = cur.first() if start is None else cur.set_range(encode_key(start))
        while ok:
            for rec in _records_at(cur.key(), cur.value()):
                if start is None or rec[0] >= start:
                    yield rec
            ok = cur.next()

    def _scan_keys(self) -> Iterable[bytes]:
        return [rec[0] for rec in self._records(self._txn())]

    # -------------------------------------------------------------- bulk ops

    def _store_bulk(
        self, records: Iterable[tuple[int, bytes, bytes, int]], dbidx: int, now: int | None
    ) -> tuple[int, bool]:
        n = 0
        others = False
        with self.batch():
            txn = self._wtxn()
            store = self._store
            for d, key, value, xt in records:
                if d != dbidx:
                    others = True
                    continue
                if xt < XTMAX:
                    if now is not None:
                        xt = resolve_xt(xt, now)
                else:
                    xt = XTMAX
                store(txn, key, value, xt)
                n += 1
            if n:
                self._gc_step(n)
        return n, others

    def _get_bulk(
        self, keys: Iterable[tuple[int, bytes]], dbidx: int
    ) -> tuple[list[tuple[int, bytes, bytes, int]], bool]:
        out: list[tuple[int, bytes, bytes, int]] = []
        others = False
        expired: list[bytes] = []
        with self.lock:
            now = int(self._clock())
            txn = self._txn()
            get = self._get
            for d, key in keys:
                if d != dbidx:
                    others = True
                    continue
                rec = get(txn, key)
                if rec is not None:
                    xt = rec[1]
                    if xt < XTMAX and now > xt:
                        expired.append(key)
                    else:
                        out.append((d, key, rec[0], xt))
            for key in expired:
                self._live(key)  # purge it: it is not found
        return out, others

    # ------------------------------------------------------------- whole db

    def count(self) -> int:
        """Number of records in the file (including expired ones not yet collected)."""
        return self._count

    def size(self) -> int:
        """Bytes of the records (keys, values, 5 bytes of xt each), as in the file."""
        return self._size

    def clear(self) -> bool:
        with self.lock:
            txn = self._wtxn()
            txn.drop(self._recs, delete=False)
            txn.drop(self._xts, delete=False)
            self._count = self._size = 0
            self._next_xt = XTMAX
            self._dirty = {}
            self._dirty_clear = self._on_commit is not None
            return self._changed()

    def vacuum(self, step: int = 0) -> bool:
        """Collect expired records: all of them when ``step <= 1``, else ``step`` of them."""
        with self.batch():
            budget = step if step > 1 else 1 << 62
            self._collect(self._wtxn(), int(self._clock()), budget)
        return True

    def iterate(self, visitor: Visitor, writable: bool = True) -> bool:
        """Show every live record to ``visitor`` in key order (it may write)."""
        with self.batch():
            rec = self._seek(self._txn(), None, False, True)
            while rec is not None:
                key = rec[0]
                live = self._live(key)
                if live is not None:
                    self._apply(key, live, visitor(key, live[0], live[1]), writable)
                rec = self._seek(self._txn(), key, True, True)
        return True

    def match_prefix(self, prefix: bytes, max: int = -1) -> list[bytes]:
        """Keys starting with ``prefix``, in byte order; ``max < 0`` = unlimited."""
        out: list[bytes] = []
        if max == 0:
            return out
        with self.lock:
            for rec in self._records(self._txn(), prefix):
                if not rec[0].startswith(prefix):
                    break
                out.append(rec[0])
                if len(out) == max:
                    break
        return out

    def status(self) -> list[tuple[str, str]]:
        rows = super().status()
        try:
            info = self._env.info()
            stat = self._env.stat()
            used = (info["last_pgno"] + 1) * stat["psize"]
        except (lmdb.Error, AttributeError):  # closed
            return rows
        return rows + [("fsiz", str(used)), ("engine", "lmdb")]

    # ---------------------------------------------------------- transactions

    def begin_transaction(self, hard: bool = False) -> bool:
        """Start a transaction (a nested LMDB transaction when a batch has writes
        pending); the lock is held by this thread until it ends."""
        self.lock.acquire()
        if self._undo is not None:
            self.lock.release()
            self.set_error(ERR_INVALID, "already in transaction")
            return False
        try:
            parent = self._wtxn()
            self._w = self._env.begin(write=True, parent=parent)
        except lmdb.Error as e:
            self.lock.release()
            self.set_error(ERR_SYSTEM, f"cannot begin a transaction: {e}")
            return False
        self._saved = (self._count, self._size, dict(self._dirty), self._dirty_clear)
        self._saved_next_xt = self._next_xt
        self._undo = {}
        return True

    def _rollback(self) -> None:
        child = self._w
        self._w = self._outer
        if child is not None and child is not self._outer:
            child.abort()
        if self._saved is not None:
            self._count, self._size, self._dirty, self._dirty_clear = self._saved
            self._next_xt = min(self._next_xt, self._saved_next_xt)
        self._saved = None
        self._undo = None

    def end_transaction(self, commit: bool = True) -> bool:
        """Commit (or abort) the transaction and release the lock."""
        with self.lock:
            if self._undo is None:
                self.set_error(ERR_INVALID, "not in transaction")
                return False
            try:
                if commit:
                    child = self._w
                    self._w = self._outer
                    self._undo = None
                    self._saved = None
                    if child is not None and child is not self._outer:
                        child.commit()
                else:
                    self._rollback()
                ok = True
                if self._batch == 0:
                    ok = self._flush()
            finally:
                self.lock.release()
            return ok

    # --------------------------------------------------------------- cursors

    def cursor(self) -> FileCursor:  # type: ignore[override]
        return FileCursor(self)

    def __repr__(self) -> str:
        return f"<FileDatabase {self.spec!r} {self.kind} count={self._count}>"


class FileCursor:
    """A cursor over a :class:`FileDatabase`, with the rules of
    :class:`~ktstore.server.cursors.DBCursor`: it remembers the key it stands on,
    skips expired records, scans backward after ``jump_back``/``step_back`` (tree
    databases only: a hash database answers "not implemented" there, as KC)."""

    def __init__(self, db: FileDatabase) -> None:
        self.db = db
        self._key: bytes | None = None
        self._back = False
        self.disabled = False

    def _fail(self, code: int = ERR_NOREC) -> bool:
        self.db.set_error(code)
        return False

    def _find(self, key: bytes | None, strict: bool, forward: bool) -> Record | None:
        """The nearest live record from ``key`` in a direction (caller holds the lock)."""
        db = self.db
        txn = db._txn()
        now = int(db._clock())
        while True:
            rec = db._seek(txn, key, strict, forward)
            if rec is None or rec[2] >= XTMAX or now <= rec[2]:
                return rec
            key, strict = rec[0], True

    def _go(self, rec: Record | None) -> bool:
        if rec is None:
            self._key = None
            return self._fail()
        self._key = rec[0]
        return True

    def jump(self, key: bytes | None = None) -> bool:
        """Go to the first record, or (tree) the first key >= ``key`` / (hash) that key."""
        db = self.db
        self._back = False
        with db.lock:
            if key is not None and not db.is_tree:
                if db._live(key) is None:
                    self._key = None
                    return self._fail()
                self._key = key
                return True
            return self._go(self._find(key, False, True))

    def jump_back(self, key: bytes | None = None) -> bool:
        """Go to the last record, or the last key <= ``key`` (tree databases only)."""
        db = self.db
        with db.lock:
            if not db.is_tree:
                db.set_error(ERR_NOIMPL)
                return False
            self._back = True
            return self._go(self._find(key, False, False))

    def step(self) -> bool:
        """Move to the next live record (error no record at the end)."""
        self._back = False
        with self.db.lock:
            if self._key is None:
                return self._fail()
            return self._go(self._find(self._key, True, True))

    def step_back(self) -> bool:
        """Move to the previous live record (tree databases only)."""
        db = self.db
        with db.lock:
            if not db.is_tree:
                db.set_error(ERR_NOIMPL)
                return False
            self._back = True
            if self._key is None:
                return self._fail()
            return self._go(self._find(self._key, True, False))

    def _current(self) -> Record | None:
        """The record the cursor stands on, or the next live one if it is gone."""
        if self._key is None:
            return None
        rec = self._find(self._key, False, not self._back)
        self._key = None if rec is None else rec[0]
        return rec

    def _advance(self) -> None:
        rec = self._find(self._key, True, not self._back)
        self._key = None if rec is None else rec[0]

    def get(self, step: bool = False) -> tuple[bytes, bytes, int] | None:
        """``(key, value, xt)`` of the current record, then step if asked."""
        with self.db.lock:
            rec = self._current()
            if rec is None:
                self._fail()
                return None
            if step:
                self._advance()
            return rec

    def get_key(self, step: bool = False) -> bytes | None:
        """The current key (then step if asked)."""
        rec = self.get(step)
        return None if rec is None else rec[0]

    def get_value(self, step: bool = False) -> bytes | None:
        """The current value (then step if asked)."""
        rec = self.get(step)
        return None if rec is None else rec[1]

    def set_value(self, value: bytes, xt: int = XTMAX, step: bool = False) -> bool:
        """Replace the current record's value (and xt), then step if asked."""
        db = self.db
        with db.batch():
            rec = self._current()
            if rec is None:
                return self._fail()
            db._write(rec[0], value, xt)
            if step:
                self._advance()
            return True

    def remove(self) -> bool:
        """Remove the current record; the cursor moves to the next one."""
        return self.seize() is not None

    def seize(self) -> tuple[bytes, bytes, int] | None:
        """Get and remove the current record; the cursor moves to the next one."""
        db = self.db
        with db.batch():
            rec = self._current()
            if rec is None:
                self._fail()
                return None
            db._erase(rec[0])
            self._advance()
            return rec

    def accept(self, visitor: Visitor, writable: bool = True, step: bool = False) -> bool:
        """Show the current record to ``visitor``, apply its result, step if asked."""
        db = self.db
        with db.batch():
            rec = self._current()
            if rec is None:
                return self._fail()
            key, value, xt = rec
            db._apply(key, (value, xt), visitor(key, value, xt), writable)
            if db._live(key) is None or step:  # removed: that already moves on
                self._advance()
            return True

    def disable(self) -> None:
        """Forget the position (the cursor can be jumped again)."""
        self._key = None
        self.disabled = True

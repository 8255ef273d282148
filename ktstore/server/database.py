"""The storage engine behind every front-end of ktstore-server.

One :class:`Database` per database given on the command line.  The RPC, RESTful,
binary and Lua layers all call the same methods, so each behaviour of Kyoto
Tycoon's timed database (expiration, counters, cas, cursors, visitors...) is
written exactly once, here.

Conventions (the Lua host codes against these):

* Keys and values are ``bytes``.  Expiration times (``xt``) are **absolute** epoch
  seconds; :data:`XTMAX` means "never expires".  Callers resolve KT's sign rule
  (negative = absolute, positive = relative) with
  :func:`ktstore.protocol.expire.resolve_xt` before calling.
* A record is expired when ``now > xt`` (whole seconds), as KT's TimedDB says.
  Expired records are invisible to reads, cursors and visitors; they are purged
  lazily when touched, plus a small GC step on every write, so ``count`` may
  include records that expired but were not collected yet (KT does the same).
* Operations return ``False``/``None`` on failure and record a Kyoto Cabinet
  style error (code, name, message) per thread, read with :meth:`Database.error`.
  A success does **not** reset the error: ``db:error()`` in a real server keeps
  the last failure, and the conformance recordings show scripts relying on it.
* Every method takes the database lock (an ``RLock``: the operations are short,
  and a transaction or a Lua ``accept`` may re-enter).

Database specs follow ktserver: ``*`` ``:`` ``-`` (in-memory hash), ``%`` ``+``
(in-memory tree, keys in byte order), or a file path whose extension picks hash
(``.kch`` ...) or tree (``.kct`` ...), optionally followed by ``#name=value``
tuning parameters.  Only ``ktcapcnt``/``ktcapsiz`` (and ``type``) mean something
to us; the others are accepted and ignored.

Engines: memory databases (``*``, ``%``...) live in this module: a ``dict`` (plus a
``SortedList`` of the keys for trees) and a heap of expiration times.  File
databases (``.kch``, ``.kct``...) are :class:`ktstore.server.filedb.FileDatabase`,
a subclass on an LMDB file that ``Database(spec)`` returns for a file spec; it
keeps every public method and signature of this class.  The rest is split by
concern: :mod:`~ktstore.server.dbspec` (specs, error codes, sentinels),
:mod:`~ktstore.server.matching` (regex and edit distance),
:mod:`~ktstore.server.expiry` (GC steps), :mod:`~ktstore.server.cursors`,
:mod:`~ktstore.server.persistence` (file format, lock, conversion),
:mod:`~ktstore.server.redolog` (the file engine's commit log).
:func:`request_scope` makes one Lua call one commit on the file databases.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from ktstore.protocol import dumps
from ktstore.protocol.expire import resolve_xt
from ktstore.protocol.limits import INT64MAX, INT64MIN, XTMAX
from ktstore.server import expiry
from ktstore.server.cursors import DBCursor
from ktstore.server.dbspec import (
    _TYPE_NUMBERS,
    ERR_BROKEN,
    ERR_DUPREC,
    ERR_INVALID,
    ERR_LOGIC,
    ERR_MISC,
    ERR_NOIMPL,
    ERR_NOPERM,
    ERR_NOREC,
    ERR_NOREPOS,
    ERR_SUCCESS,
    ERR_SYSTEM,
    ERROR_NAMES,
    NOP,
    REMOVE,
    DatabaseOpenError,
    Visitor,
    _atoix,
    parse_db_spec,
)

if TYPE_CHECKING:
    from ktstore.server.matching import compile_posix_regex

try:  # SortedList keeps tree databases in byte order
    from sortedcontainers import SortedList
except ImportError:  # pragma: no cover - declared dependency
    SortedList = None  # type: ignore[assignment,misc]

__all__ = [
    "XTMAX",
    "REMOVE",
    "NOP",
    "Database",
    "DBCursor",
    "Visitor",
    "DatabaseOpenError",
    "parse_db_spec",
    "request_scope",
    "compile_posix_regex",
    "ERR_SUCCESS",
    "ERR_NOIMPL",
    "ERR_INVALID",
    "ERR_NOREPOS",
    "ERR_NOPERM",
    "ERR_BROKEN",
    "ERR_DUPREC",
    "ERR_NOREC",
    "ERR_LOGIC",
    "ERR_SYSTEM",
    "ERR_MISC",
    "ERROR_NAMES",
]

_ZERO_COUNTER = bytes(16)


class _ErrorState(threading.local):
    def __init__(self) -> None:
        self.code = ERR_SUCCESS
        self.message = "no error"


class Database:
    """One database: records ``key -> (value, xt)`` plus the KT operations on them.

    ``spec`` is a ktserver database argument (``*``, ``%``, ``casket.kct#ktcapcnt=9``).
    ``name`` (what ``DB=<name>`` and ``kt.dbs[name]`` match) is the path after
    its last ``/``.  ``clock`` returns the current epoch seconds (injectable for
    tests).
    """

    def __new__(cls, spec: str = ":", clock: Callable[[], float] = time.time) -> Database:
        # a file spec gets the on-disk engine; callers keep writing ``Database(spec)``
        if cls is Database and parse_db_spec(spec)[2]:
            from ktstore.server.filedb import FileDatabase

            return super().__new__(FileDatabase)
        return super().__new__(cls)

    def __init__(self, spec: str = ":", clock: Callable[[], float] = time.time) -> None:
        self._setup(spec, clock)
        self._data: dict[bytes, tuple[bytes, int]] = {}
        self._keys: Any = SortedList() if self.is_tree else None
        self._size = 0
        self._expiry: list[tuple[int, bytes]] = []  # heap of (xt, key) for GC
        # transaction state: undo log of first-touched keys, owner thread
        self._undo: dict[bytes, tuple[bytes, int] | None] | None = None
        # update-log state: the keys changed since the last commit
        self._dirty: set[bytes] = set()
        self._dirty_clear = False
        self._batch = 0
        self._track = False  # whether changes are recorded at all (a commit hook is set)

    def _setup(self, spec: str, clock: Callable[[], float]) -> None:
        """What every engine sets: names, kind, caps, lock, clock, error state."""
        path, kind, persistent, params = parse_db_spec(spec)
        self.spec = spec
        self.path = path
        self.name = path.rsplit("/", 1)[-1]
        self.kind = kind
        self.is_tree = kind == "tree"
        self.persistent = persistent
        self.params = params
        self.lock = threading.RLock()
        self._clock = clock
        self._err = _ErrorState()
        self.capcnt = _atoix(params["ktcapcnt"]) if "ktcapcnt" in params else -1
        for alias in ("ktcapcount", "ktcap_count"):
            if alias in params:
                self.capcnt = _atoix(params[alias])
        self.capsiz = _atoix(params["ktcapsiz"]) if "ktcapsiz" in params else -1
        for alias in ("ktcapsize", "ktcap_size"):
            if alias in params:
                self.capsiz = _atoix(params[alias])
        self._on_commit: Callable[[bool, list[tuple[bytes, tuple[bytes, int] | None]]], None] | None
        self._on_commit = None

    # ------------------------------------------------------------------ errors

    def error(self) -> tuple[int, str, str]:
        """The last error of the calling thread: ``(code, name, message)``."""
        code = self._err.code
        return code, ERROR_NAMES.get(code, "miscellaneous error"), self._err.message

    def set_error(self, code: int, message: str | None = None) -> None:
        """Record an error for the calling thread (message defaults to the code's name)."""
        self._err.code = code
        self._err.message = message if message is not None else ERROR_NAMES.get(code, "error")

    def error_text(self) -> str:
        """``DB: <code>: <name>: <message>`` as ktserver's RPC error messages."""
        code, name, message = self.error()
        return f"DB: {code}: {name}: {message}"

    # ------------------------------------------------------------- persistence

    def set_commit_hook(
        self, hook: Callable[[bool, list[tuple[bytes, tuple[bytes, int] | None]]], None] | None
    ) -> None:
        """Call ``hook(cleared, changes)`` after every commit (the update log uses it).

        ``changes`` lists each key changed by the request or transaction with its
        new ``(value, xt)``, or ``None`` if it was removed; ``cleared`` says the
        database was cleared first.  Called with the lock held, in commit order.
        """
        with self.lock:
            self._on_commit = hook
            self._track = hook is not None

    def _flush(self) -> bool:
        """Commit: hand the keys changed since the last commit to the commit hook.

        Returns whether the commit succeeded (a memory commit cannot fail; the file
        engine's can, and then the request answers an error).
        """
        if not self._dirty and not self._dirty_clear:
            return True
        data = self._data
        dirty = self._dirty
        self._dirty = set()
        cleared = self._dirty_clear
        self._dirty_clear = False
        hook = self._on_commit
        if hook is not None:
            hook(cleared, [(key, data.get(key)) for key in dirty])
        return True

    def _changed(self) -> bool:
        """A single operation is done: commit it unless a batch or transaction is open."""
        if self._track and self._batch == 0 and self._undo is None:
            return self._flush()
        return True

    @contextmanager
    def batch(self) -> Iterator[Database]:
        """Hold the lock and commit once at the end.

        Front-ends wrap one request (a bulk operation, a Lua call) in it so it is
        one atomic commit: one update-log entry, one file transaction.  A file
        commit that fails raises :class:`CommitError` at the end of the block.
        """
        with self.lock:
            self._batch += 1
            try:
                yield self
            finally:
                self._batch -= 1
                if self._batch == 0 and self._undo is None:
                    self._flush()

    def synchronize(self, hard: bool = False) -> bool:
        """Make every acknowledged change durable (memory databases: nothing to do)."""
        return True

    def close(self) -> None:
        """Release the database's resources (memory databases: nothing to do)."""

    # ----------------------------------------------------------- raw storage

    def now(self) -> int:
        """Current time in whole epoch seconds, as expiration compares it."""
        return int(self._clock())

    def _note(self, key: bytes) -> None:
        """Remember ``key``'s state before its first change in a transaction."""
        undo = self._undo
        if undo is not None and key not in undo:
            undo[key] = self._data.get(key)

    def _put(self, key: bytes, value: bytes, xt: int) -> None:
        data = self._data
        old = data.get(key)
        if old is None:
            if self._keys is not None:
                self._keys.add(key)
            self._size += len(key) + len(value) + 5
        else:
            self._size += len(value) - len(old[0])
        data[key] = (value, xt)
        if xt < XTMAX:
            heapq.heappush(self._expiry, (xt, key))

    def _del(self, key: bytes) -> tuple[bytes, int] | None:
        old = self._data.pop(key, None)
        if old is not None:
            if self._keys is not None:
                self._keys.remove(key)
            self._size -= len(key) + len(old[0]) + 5
        return old

    def _write(self, key: bytes, value: bytes, xt: int) -> None:
        """Store a record (transaction + persistence aware) and run a GC step."""
        if xt > XTMAX:
            xt = XTMAX
        self._note(key)
        self._put(key, value, xt)
        if self._track:
            self._dirty.add(key)
        self._gc_step()

    def _erase(self, key: bytes) -> bool:
        """Remove a record (transaction + persistence aware); whether there was one."""
        self._note(key)
        if self._del(key) is None:
            return False
        if self._track:
            self._dirty.add(key)
        return True

    def _live(self, key: bytes) -> tuple[bytes, int] | None:
        """The record if it exists and has not expired; purges it if it has."""
        rec = self._data.get(key)
        if rec is not None and rec[1] < XTMAX and int(self._clock()) > rec[1]:
            self._erase(key)
            self._changed()
            return None
        return rec

    def _gc_step(self, writes: int = 1) -> None:
        """Collect a few expired records per write and enforce ktcapcnt/ktcapsiz."""
        heap = self._expiry
        if heap and heap[0][0] < int(self._clock()):
            data = self._data

            def current_xt(key: bytes) -> int | None:
                rec = data.get(key)
                return None if rec is None else rec[1]

            expiry.collect_heap(
                heap, current_xt, self._erase, int(self._clock()), expiry.GC_STEP * writes
            )
        if self.capcnt >= 0 or self.capsiz >= 0:
            while self._data and (
                (self.capcnt >= 0 and len(self._data) > self.capcnt)
                or (self.capsiz >= 0 and self._size > self.capsiz)
            ):
                victim = self._keys[0] if self._keys is not None else next(iter(self._data))
                self._erase(victim)

    # ------------------------------------------------------------ single ops

    def get(self, key: bytes) -> tuple[bytes, int] | None:
        """``(value, xt)`` of a live record, or ``None`` (error: no record)."""
        with self.lock:
            rec = self._live(key)
            if rec is None:
                self.set_error(ERR_NOREC)
            return rec

    def check(self, key: bytes) -> tuple[int, int] | None:
        """``(value size, xt)`` of a live record, or ``None`` (no record)."""
        with self.lock:
            rec = self._live(key)
            if rec is None:
                self.set_error(ERR_NOREC)
                return None
            return len(rec[0]), rec[1]

    def set(self, key: bytes, value: bytes, xt: int = XTMAX) -> bool:
        """Store a record, replacing any value and its expiration."""
        with self.lock:
            self._write(key, value, xt)
            return self._changed()

    def add(self, key: bytes, value: bytes, xt: int = XTMAX) -> bool:
        """Store only when no live record exists (error: record duplication)."""
        with self.lock:
            if self._live(key) is not None:
                self.set_error(ERR_DUPREC)
                return False
            self._write(key, value, xt)
            return self._changed()

    def replace(self, key: bytes, value: bytes, xt: int = XTMAX) -> bool:
        """Store only over a live record (error: no record)."""
        with self.lock:
            if self._live(key) is None:
                self.set_error(ERR_NOREC)
                return False
            self._write(key, value, xt)
            return self._changed()

    def append(self, key: bytes, value: bytes, xt: int = XTMAX) -> bool:
        """Append to a live record's value, or create it; the xt is replaced."""
        with self.lock:
            rec = self._live(key)
            self._write(key, value if rec is None else rec[0] + value, xt)
            return self._changed()

    def increment(self, key: bytes, num: int, orig: int = 0, xt: int = XTMAX) -> int | None:
        """Add ``num`` to an 8-byte big-endian counter; returns the new value.

        A missing record starts at ``orig``; ``orig == INT64MIN`` makes a missing
        record an error and ``orig == INT64MAX`` overwrites with ``num``.  A value
        that is not 8 bytes is a logical inconsistency.  As in KC, the sum wraps
        around in int64 and adding 0 to an existing counter changes nothing (not
        even the xt).
        """
        with self.lock:
            rec = self._live(key)
            if rec is None:
                if orig == INT64MIN:
                    self.set_error(ERR_LOGIC)
                    return None
                result = num if orig == INT64MAX else dumps.wrap_int64(orig + num)
            else:
                if len(rec[0]) != 8:
                    self.set_error(ERR_LOGIC)
                    return None
                if orig == INT64MAX:
                    result = num
                else:
                    current = dumps.decode_int_counter(rec[0])
                    if num == 0:
                        return current
                    result = dumps.wrap_int64(current + num)
            self._write(key, dumps.encode_int_counter(result), xt)
            return result if self._changed() else None

    def increment_double(
        self, key: bytes, num: float, orig: float = 0.0, xt: int = XTMAX
    ) -> float | None:
        """Add ``num`` to a 16-byte decimal counter (KT's format); returns the new value.

        ``orig = -inf`` makes a missing record an error, ``+inf`` overwrites.  An
        existing counter is updated part by part as KC does
        (:func:`~ktstore.protocol.dumps.increment_double_counter`); adding 0 or
        adding to an infinity changes nothing, not even the xt.
        """
        with self.lock:
            rec = self._live(key)
            if rec is None:
                if orig == -math.inf or math.isnan(orig):
                    self.set_error(ERR_LOGIC)
                    return None
                result = num if orig == math.inf else orig + num
                value: bytes | None = dumps.encode_double_counter(result)
            else:
                if len(rec[0]) != 16:
                    self.set_error(ERR_LOGIC)
                    return None
                if orig == math.inf:  # "set": KC adds to a zeroed counter, and writes 0
                    result, value = dumps.increment_double_counter(_ZERO_COUNTER, num)
                    value = value or _ZERO_COUNTER
                else:
                    result, value = dumps.increment_double_counter(rec[0], num)
            if math.isnan(result):
                self.set_error(ERR_LOGIC)
                return None
            if value is not None:
                self._write(key, value, xt)
                if not self._changed():
                    return None
            return result

    def cas(self, key: bytes, oval: bytes | None, nval: bytes | None, xt: int = XTMAX) -> bool:
        """Compare and swap: ``oval None`` = must be absent, ``nval None`` = remove.

        A mismatch is a logical inconsistency with the message ``status conflict``.
        """
        with self.lock:
            rec = self._live(key)
            if oval is None:
                ok = rec is None
            else:
                ok = rec is not None and rec[0] == oval
            if not ok:
                self.set_error(ERR_LOGIC, "status conflict")
                return False
            if nval is None:
                if rec is not None:
                    self._erase(key)
            else:
                self._write(key, nval, xt)
            return self._changed()

    def remove(self, key: bytes) -> bool:
        """Delete a live record (error: no record)."""
        with self.lock:
            if self._live(key) is None:
                self.set_error(ERR_NOREC)
                return False
            self._erase(key)
            return self._changed()

    def seize(self, key: bytes) -> tuple[bytes, int] | None:
        """Get and remove a live record atomically: ``(value, xt)`` or ``None``."""
        with self.lock:
            rec = self._live(key)
            if rec is None:
                self.set_error(ERR_NOREC)
                return None
            self._erase(key)
            return rec if self._changed() else None

    # -------------------------------------------------------------- bulk ops

    def set_bulk(self, records: Iterable[tuple[bytes, bytes]], xt: int = XTMAX) -> int:
        """Store many records with one xt; returns how many were stored."""
        return self._store_bulk([(0, key, value, xt) for key, value in records], 0, None)[0]

    def set_bulk_xt(self, records: Iterable[tuple[bytes, bytes, int]]) -> int:
        """Store ``(key, value, xt)`` records (each its own absolute xt); returns the count."""
        return self._store_bulk([(0, key, value, xt) for key, value, xt in records], 0, None)[0]

    def set_bulk_wire(
        self, records: Iterable[tuple[int, bytes, bytes, int]], dbidx: int, now: int
    ) -> tuple[int, bool]:
        """The records of a binary set_bulk, ``(dbidx, key, value, wire xt)``, that name
        database ``dbidx``; wire xts are resolved at ``now`` (KT's sign rule).

        Returns ``(stored, others)``, ``others`` telling whether some record named
        another database (the caller then runs those against it).
        """
        return self._store_bulk(records, dbidx, now)

    def _store_bulk(
        self, records: Iterable[tuple[int, bytes, bytes, int]], dbidx: int, now: int | None
    ) -> tuple[int, bool]:
        """:meth:`set` inlined into one loop under one lock hold, with one GC step and
        one commit (update log) for the whole bulk.  What only transactions,
        tree databases and change tracking need is done in passes of its own, so the
        common loop does the least per record."""
        records = records if isinstance(records, list) else list(records)
        n = 0
        others = False
        resolve = resolve_xt
        push = heapq.heappush
        with self.batch():
            data = self._data
            undo = self._undo
            if undo is not None:  # in a transaction: remember what is overwritten
                for d, key, _, _ in records:
                    if d == dbidx and key not in undo:
                        undo[key] = data.get(key)
            heap = self._expiry
            new_keys: list[bytes] | None = [] if self._keys is not None else None
            size = self._size
            get = data.get
            try:
                for d, key, value, xt in records:
                    if d != dbidx:
                        others = True
                        continue
                    if xt < XTMAX:
                        if now is not None:
                            xt = resolve(xt, now)
                        if xt < XTMAX:
                            push(heap, (xt, key))
                    else:
                        xt = XTMAX
                    old = get(key)
                    if old is None:
                        size += len(key) + len(value) + 5
                        if new_keys is not None:
                            new_keys.append(key)
                    else:
                        size += len(value) - len(old[0])
                    data[key] = (value, xt)
                    n += 1
            finally:
                self._size = size
                if new_keys:
                    self._keys.update(new_keys)
                if self._track:  # (after an error: a superset, which a commit tolerates)
                    self._dirty.update(key for d, key, _, _ in records if d == dbidx)
                if n:
                    self._gc_step(n)
        return n, others

    def remove_bulk(self, keys: Iterable[bytes]) -> int:
        """Remove many keys; returns how many live records were removed."""
        return self._remove_bulk([(0, key) for key in keys], 0)[0]

    def remove_bulk_wire(self, keys: Iterable[tuple[int, bytes]], dbidx: int) -> tuple[int, bool]:
        """The ``(dbidx, key)`` pairs of a binary remove_bulk that name database ``dbidx``:
        ``(removed, others)`` as :meth:`set_bulk_wire`."""
        return self._remove_bulk(keys, dbidx)

    def _remove_bulk(self, keys: Iterable[tuple[int, bytes]], dbidx: int) -> tuple[int, bool]:
        with self.batch():
            found, others = self._get_bulk(keys, dbidx)  # purges the expired ones
            erase = self._erase
            return sum(erase(rec[1]) for rec in found), others

    def get_bulk(self, keys: Iterable[bytes]) -> list[tuple[bytes, bytes, int]]:
        """``(key, value, xt)`` for every live key among ``keys``, in request order."""
        return [r[1:] for r in self._get_bulk([(0, key) for key in keys], 0)[0]]

    def get_bulk_wire(
        self, keys: Iterable[tuple[int, bytes]], dbidx: int
    ) -> tuple[list[tuple[int, bytes, bytes, int]], bool]:
        """The records of a binary get_bulk, ``(dbidx, key, value, xt)`` in request order,
        for the pairs that name database ``dbidx``; ``others`` as :meth:`set_bulk_wire`."""
        return self._get_bulk(keys, dbidx)

    def _get_bulk(
        self, keys: Iterable[tuple[int, bytes]], dbidx: int
    ) -> tuple[list[tuple[int, bytes, bytes, int]], bool]:
        out: list[tuple[int, bytes, bytes, int]] = []
        append = out.append
        others = False
        with self.lock:
            get = self._data.get
            now = int(self._clock())
            for d, key in keys:
                if d != dbidx:
                    others = True
                    continue
                rec = get(key)
                if rec is not None:
                    xt = rec[1]
                    if xt < XTMAX and now > xt:
                        self._live(key)  # expired: purge it, it is not found
                    else:
                        append((d, key, rec[0], xt))
        return out, others

    # -------------------------------------------------------------- visitors

    def _apply(
        self, key: bytes, rec: tuple[bytes, int] | None, result: Any, writable: bool
    ) -> None:
        if not writable or result is None or result is NOP:
            return
        if result is REMOVE:
            if rec is not None:
                self._erase(key)
            return
        if isinstance(result, tuple):
            value, xt = result[0], (result[1] if len(result) > 1 else None)
        else:
            value, xt = result, None
        if value is None or value is NOP:
            return
        if value is REMOVE:
            if rec is not None:
                self._erase(key)
            return
        if xt is None:
            xt = rec[1] if rec is not None else XTMAX
        self._write(key, value, xt)

    def accept(self, key: bytes, visitor: Visitor, writable: bool = True) -> bool:
        """Show one record to ``visitor`` and apply what it returns (see :data:`Visitor`)."""
        with self.batch():
            rec = self._live(key)
            if rec is None:
                result = visitor(key, None, XTMAX)
            else:
                result = visitor(key, rec[0], rec[1])
            self._apply(key, rec, result, writable)
        return True

    def accept_bulk(self, keys: Iterable[bytes], visitor: Visitor, writable: bool = True) -> bool:
        """:meth:`accept` for several keys under one lock hold (atomic)."""
        with self.batch():
            for key in keys:
                rec = self._live(key)
                if rec is None:
                    result = visitor(key, None, XTMAX)
                else:
                    result = visitor(key, rec[0], rec[1])
                self._apply(key, rec, result, writable)
        return True

    def iterate(self, visitor: Visitor, writable: bool = True) -> bool:
        """Show every live record to ``visitor`` (in key order on tree databases)."""
        with self.batch():
            keys = list(self._keys) if self._keys is not None else list(self._data)
            for key in keys:
                rec = self._live(key)
                if rec is None:
                    continue
                self._apply(key, rec, visitor(key, rec[0], rec[1]), writable)
        return True

    # -------------------------------------------------------------- matching

    def _scan_keys(self) -> Iterable[bytes]:
        return self._keys if self._keys is not None else self._data

    def match_prefix(self, prefix: bytes, max: int = -1) -> list[bytes]:
        """Keys starting with ``prefix`` (sorted on trees); ``max < 0`` = unlimited.

        Like KT, expired records not yet collected are listed too.
        """
        out: list[bytes] = []
        if max == 0:
            return out
        with self.lock:
            if self._keys is not None:
                keys = self._keys
                i = keys.bisect_left(prefix)
                n = len(keys)
                while i < n:
                    k = keys[i]
                    if not k.startswith(prefix):
                        break
                    out.append(k)
                    if len(out) == max:
                        break
                    i += 1
            else:
                for k in self._data:
                    if k.startswith(prefix):
                        out.append(k)
                        if len(out) == max:
                            break
        return out

    def match_regex(self, regex: bytes, max: int = -1) -> list[bytes] | None:
        """Keys where ``regex`` matches somewhere; ``None`` if it does not compile."""
        from ktstore.server.matching import match_regex  # RE2: loaded on first use

        return match_regex(self, regex, max)

    def match_similar(
        self, origin: bytes, range: int = 1, utf: bool = False, max: int = -1
    ) -> list[bytes]:
        """Keys within edit distance ``range`` of ``origin``, by (distance, key).

        ``utf`` measures the distance in UTF-8 characters instead of bytes;
        a negative ``range`` means unlimited.
        """
        from ktstore.server.matching import match_similar_keys

        with self.lock:
            keys = list(self._scan_keys())
        return match_similar_keys(keys, origin, range, utf, max)

    # ------------------------------------------------------------- whole db

    def count(self) -> int:
        """Number of records (including expired ones not yet collected)."""
        return len(self._data)

    def size(self) -> int:
        """Approximate bytes used by the records."""
        return self._size

    def clear(self) -> bool:
        """Remove every record."""
        with self.lock:
            if self._undo is not None:
                for key in self._data:
                    self._note(key)
            self._data = {}
            if self._keys is not None:
                self._keys = SortedList()
            self._size = 0
            self._expiry = []
            self._dirty = set()
            self._dirty_clear = self._track
            return self._changed()

    def vacuum(self, step: int = 0) -> bool:
        """Collect expired records: all of them when ``step <= 1``, else ``step`` of them."""
        with self.batch():
            now = int(self._clock())
            heap = self._expiry
            limit = step if step > 1 else -1
            n = 0
            while heap and heap[0][0] < now and n != limit:
                xt, key = heapq.heappop(heap)
                rec = self._data.get(key)
                if rec is not None and rec[1] == xt:
                    self._erase(key)
                n += 1
        return True

    def status(self) -> list[tuple[str, str]]:
        """The ``status`` rows ktserver reports for a database (names a client reads)."""
        with self.lock:
            if self.persistent:
                typ = 49 if self.is_tree else 48
            else:
                typ = _TYPE_NUMBERS.get(self.path, 33 if self.is_tree else 32)
            rows = [
                ("count", str(self.count())),
                ("size", str(self.size())),
                ("path", self.path),
                ("type", str(typ)),
                ("realtype", str(typ)),
                ("ktopts", "0"),
                ("ktcapcnt", str(self.capcnt)),
                ("ktcapsiz", str(self.capsiz)),
                ("bnum", self.params.get("bnum", "1048583")),
                ("opts", "0"),
                ("capcnt", "-1"),
                ("capsiz", "-1"),
                # KC engine details a client may look for; ours has no such structures
                ("chksum", "0"),
                ("fmtver", "5"),
                ("librev", "0"),
                ("libver", "0"),
                ("recovered", "0"),
                ("reorganized", "0"),
            ]
            if self.is_tree:
                n = str(self.count())
                rows += [
                    ("rcomp", "lexical"),
                    ("psiz", "8192"),
                    ("pccap", "67108864"),
                    ("pnum", "1"),
                    ("lcnt", "1"),
                    ("icnt", "0"),
                    ("first", "1"),
                    ("last", "1"),
                    ("root", "1"),
                    ("cusage", n),
                ]
            return rows

    # ---------------------------------------------------------- transactions

    def begin_transaction(self, hard: bool = False) -> bool:
        """Start a transaction: the lock is held by this thread until it ends.

        Changes are applied in place and an undo log keeps the previous state of
        every touched key, so an abort restores it exactly.
        """
        self.lock.acquire()
        if self._undo is not None:
            self.lock.release()
            self.set_error(ERR_INVALID, "already in transaction")
            return False
        self._undo = {}
        return True

    def _rollback(self) -> None:
        undo = self._undo or {}
        self._undo = None
        for key, rec in undo.items():
            if rec is None:
                self._del(key)
            else:
                self._put(key, rec[0], rec[1])
            if self._track:
                self._dirty.add(key)

    def end_transaction(self, commit: bool = True) -> bool:
        """Commit (or undo) the transaction and release the lock."""
        with self.lock:
            if self._undo is None:
                self.set_error(ERR_INVALID, "not in transaction")
                return False
            try:
                if commit:
                    self._undo = None
                else:
                    self._rollback()
                if self._batch == 0:
                    self._flush()
            finally:
                self.lock.release()
            return True

    # --------------------------------------------------------------- cursors

    def cursor(self) -> DBCursor:
        """A new cursor (initially not positioned: call ``jump`` first)."""
        return DBCursor(self)

    def __repr__(self) -> str:
        return f"<Database {self.spec!r} {self.kind} count={self.count()}>"


@contextmanager
def request_scope(databases: Iterable[Database]) -> Iterator[None]:
    """Make one request (a Lua call) one atomic commit on every file database.

    The call sites of :meth:`ScriptHost.call` wrap it:
    ``with request_scope(server.dbs): rv, outputs = host.call(name, params)``
    (``play_script`` over RPC and over the binary protocol).

    Each file database's :meth:`Database.batch` is entered in list order (so two
    requests never wait for each other's locks in opposite orders) and committed
    when the block ends: after a SIGKILL the request's writes to a file are there
    entirely or not at all, whatever transactions it opened inside.  Memory
    databases are left alone (no lock held, each operation commits as today).
    A failed commit raises :class:`ktstore.server.filedb.CommitError`.
    """
    with ExitStack() as stack:
        for db in databases:
            if db.persistent:
                stack.enter_context(db.batch())
        yield


def __getattr__(name: str) -> Any:
    """``compile_posix_regex`` is re-exported lazily: the regex engine (RE2) is loaded
    only by the first regex a client sends, not at every server start."""
    if name == "compile_posix_regex":
        from ktstore.server.matching import compile_posix_regex

        return compile_posix_regex
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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

Persistence format: a database given as a file path is kept in memory and
mirrored write-through into an **SQLite 3** file at that path (WAL journal,
``synchronous=NORMAL``).  Table ``records(key BLOB PRIMARY KEY, value BLOB,
xt INTEGER)`` holds every record (xt absolute, ``XTMAX`` = never) and table
``meta(name TEXT PRIMARY KEY, value TEXT)`` holds ``format=ktstore-sqlite-1``
and ``kind=hash|tree``.  Changes are committed in one SQLite transaction per
operation, per request batch (:meth:`Database.batch`) or per Lua transaction,
before the client gets its answer, so an acknowledged write survives SIGTERM,
SIGINT and even SIGKILL of the server.  A real Kyoto Cabinet file (magic
``KC\\n``) is refused with a clear message: the formats are not compatible.
"""

from __future__ import annotations

import heapq
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from ktstore.protocol import dumps
from ktstore.protocol.expire import resolve_xt
from ktstore.protocol.limits import INT64MAX, INT64MIN, XTMAX
from ktstore.protocol.rpc import KC_ERROR_NAMES

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
    "DatabaseOpenError",
    "parse_db_spec",
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

# Kyoto Cabinet error codes and their names (kcdb.h), as ``db:error()`` and the
# ``DB: <code>: <name>: <message>`` RPC texts report them.
ERR_SUCCESS = 0
ERR_NOIMPL = 1
ERR_INVALID = 2
ERR_NOREPOS = 3
ERR_NOPERM = 4
ERR_BROKEN = 5
ERR_DUPREC = 6
ERR_NOREC = 7
ERR_LOGIC = 8
ERR_SYSTEM = 9
ERR_MISC = 15
ERROR_NAMES = KC_ERROR_NAMES


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: A visitor returns this to delete the record it was shown.
REMOVE: Any = _Sentinel("REMOVE")
#: A visitor may return this (or ``None``) to leave the record unchanged.
NOP: Any = _Sentinel("NOP")

#: ``visitor(key, value_or_None, xt) -> None | NOP | REMOVE | (new_value, new_xt_or_None)``.
#: ``value`` is ``None`` (and ``xt`` is ``XTMAX``) for a missing or expired record.
#: A ``new_xt`` of ``None`` keeps the current xt of an existing record (XTMAX for a
#: new one); otherwise it is an absolute time.
Visitor = Callable[[bytes, "bytes | None", int], Any]

_MEMORY_HASH = {"*", ":", "-"}
_MEMORY_TREE = {"%", "+"}
_HASH_EXT = {"kch", "hdb", "kcd", "ddb", "kcph", "phdb", "kcs", "sdb", "kcc", "cdb"}
_TREE_EXT = {"kct", "tdb", "kcf", "fdb", "kcpt", "ptdb", "kcg", "gdb"}
_MEMORY_EXT = {"kcph", "phdb", "kcpt", "ptdb", "kcs", "sdb", "kcc", "cdb", "kcg", "gdb"}
_TYPE_PARAM = {
    "phash": ("hash", False),
    "ptree": ("tree", False),
    "stash": ("hash", False),
    "cache": ("hash", False),
    "grass": ("tree", False),
    "hash": ("hash", True),
    "tree": ("tree", True),
    "dir": ("hash", True),
    "forest": ("tree", True),
}
# KC type numbers reported by ``status`` (kcdb.h / kcpolydb.h).
_TYPE_NUMBERS = {"-": 16, "+": 17, ":": 24, "*": 32, "%": 33}

_SQLITE_MAGIC = b"SQLite format 3\x00"
_KC_MAGIC = b"KC\n"
_FORMAT = "ktstore-sqlite-1"
_GC_STEP = 4  # expired records examined per write
_ZERO_COUNTER = bytes(16)


# POSIX bracket classes (KC's regexes are POSIX EREs) as Python character ranges.
_POSIX_CLASSES = {
    b"alpha": rb"a-zA-Z",
    b"digit": rb"0-9",
    b"alnum": rb"a-zA-Z0-9",
    b"upper": rb"A-Z",
    b"lower": rb"a-z",
    b"space": rb" \t\n\r\x0b\x0c",
    b"blank": rb" \t",
    b"punct": rb"!-/:-@\[-`{-~",
    b"xdigit": rb"0-9A-Fa-f",
    b"cntrl": rb"\x00-\x1f\x7f",
    b"print": rb"\x20-\x7e",
    b"graph": rb"\x21-\x7e",
}
_POSIX_CLASS = re.compile(rb"\[:(" + b"|".join(_POSIX_CLASSES) + rb"):\]")


def compile_posix_regex(regex: bytes) -> Any:
    """Compile a KC (POSIX ERE) regex on the linear-time engine of
    :mod:`ktstore.server.posixregex`; raises ``re.error`` when it does not compile."""
    from ktstore.server.posixregex import compile_posix

    return compile_posix(regex)


class DatabaseOpenError(Exception):
    """A database spec could not be opened (bad type, foreign file, I/O error)."""


def _atoix(text: str) -> int:
    """KC's atoix: an integer with an optional k/m/g/t/p/e binary suffix."""
    m = re.match(r"\s*([-+]?\d+(?:\.\d*)?)\s*([kmgtpeKMGTPE]?)", text)
    if not m:
        return 0
    num = float(m.group(1))
    mult = {
        "": 1,
        "k": 1 << 10,
        "m": 1 << 20,
        "g": 1 << 30,
        "t": 1 << 40,
        "p": 1 << 50,
        "e": 1 << 60,
    }
    return int(num * mult[m.group(2).lower()])


def parse_db_spec(spec: str) -> tuple[str, str, bool, dict[str, str]]:
    """Split a ktserver database argument into ``(path, kind, persistent, params)``.

    ``kind`` is ``"hash"`` or ``"tree"``; ``persistent`` is true for file
    databases (mirrored to SQLite).  Raises :class:`DatabaseOpenError` for a
    type we cannot serve, as ktserver refuses to start on one.
    """
    path, *tunings = spec.split("#")
    params: dict[str, str] = {}
    for tuning in tunings:
        name, sep, value = tuning.partition("=")
        if sep:
            params[name.strip()] = value.strip()
    if "type" in params:
        t = params["type"].lower()
        if t in _TYPE_PARAM:
            kind, persistent = _TYPE_PARAM[t]
            if path in _MEMORY_HASH or path in _MEMORY_TREE:
                persistent = False
            return path, kind, persistent, params
    if path in _MEMORY_HASH:
        return path, "hash", False, params
    if path in _MEMORY_TREE:
        return path, "tree", False, params
    base = path.rsplit("/", 1)[-1]
    ext = base.rsplit(".", 1)[-1].lower() if "." in base else ""
    if ext in _HASH_EXT:
        return path, "hash", ext not in _MEMORY_EXT, params
    if ext in _TREE_EXT:
        return path, "tree", ext not in _MEMORY_EXT, params
    raise DatabaseOpenError(
        f"{spec}: unknown database type (use *, %, :, -, + or a .kch/.kct file path)"
    )


def _levenshtein(a: Any, b: Any) -> int:
    """Edit distance over two sequences (bytes or str)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


_UTF_LEADS = [(0xE0, 1, 0x1F, 0x80), (0xF0, 2, 0x0F, 0x800), (0xF8, 3, 0x07, 0x10000)]
_UTF_LEADS += [(0xFC, 4, 0x03, 0x200000), (0xFE, 5, 0x01, 0x4000000)]


def _utf_to_ucs(data: bytes) -> list[int]:
    """KC's ``strutftoucs``: lenient UTF-8 decoding, as match_similar's ``utf`` measures.

    A lead byte whose continuation bytes run into a NUL or the end is dropped alone;
    otherwise its sequence is consumed whatever the continuation bytes are, and the
    code point is kept unless it is overlong.  Bytes 0xFE and 0xFF are dropped.
    """
    out: list[int] = []
    n = len(data)
    i = 0
    while i < n:
        c = data[i]
        if c < 0x80:
            out.append(c)
        else:
            for limit, extra, mask, least in _UTF_LEADS:
                if c < limit:
                    tail = data[i + 1 : i + 1 + extra]
                    if len(tail) == extra and 0 not in tail:
                        v = c & mask
                        for b in tail:
                            v = (v << 6) | (b & 0x3F)
                        if v >= least:
                            out.append(v)
                        i += extra
                    break
        i += 1
    return out


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

    def __init__(self, spec: str = ":", clock: Callable[[], float] = time.time) -> None:
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
        self._data: dict[bytes, tuple[bytes, int]] = {}
        self._keys: Any = SortedList() if self.is_tree else None
        self._size = 0
        self._expiry: list[tuple[int, bytes]] = []  # heap of (xt, key) for GC
        self.capcnt = _atoix(params["ktcapcnt"]) if "ktcapcnt" in params else -1
        for alias in ("ktcapcount", "ktcap_count"):
            if alias in params:
                self.capcnt = _atoix(params[alias])
        self.capsiz = _atoix(params["ktcapsiz"]) if "ktcapsiz" in params else -1
        for alias in ("ktcapsize", "ktcap_size"):
            if alias in params:
                self.capsiz = _atoix(params[alias])
        # transaction state: undo log of first-touched keys, owner thread
        self._undo: dict[bytes, tuple[bytes, int] | None] | None = None
        self._undo_cleared: dict[bytes, tuple[bytes, int]] | None = None
        # persistence / update-log state: the keys changed since the last commit
        self._sql: sqlite3.Connection | None = None
        self._dirty: set[bytes] = set()
        self._dirty_clear = False
        self._batch = 0
        self._track = persistent  # whether changes are recorded at all
        self._on_commit: Callable[[bool, list[tuple[bytes, tuple[bytes, int] | None]]], None] | None
        self._on_commit = None
        if persistent:
            self._open_sqlite()

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

    def _open_sqlite(self) -> None:
        path = self.path
        try:
            if os.path.exists(path) and os.path.getsize(path) > 0:
                with open(path, "rb") as f:
                    head = f.read(16)
                if head.startswith(_KC_MAGIC):
                    raise DatabaseOpenError(
                        f"{path}: this is a Kyoto Cabinet database file; ktstore-server "
                        "stores file databases in its own SQLite format and cannot open it "
                        "(export it with kctreemgr/kchashmgr and load it through a client)"
                    )
                if head != _SQLITE_MAGIC:
                    raise DatabaseOpenError(f"{path}: not a ktstore database file")
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS records("
                "key BLOB PRIMARY KEY, value BLOB NOT NULL, xt INTEGER NOT NULL) WITHOUT ROWID"
            )
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
            if meta and meta.get("format") != _FORMAT:
                raise DatabaseOpenError(f"{path}: unknown ktstore format {meta.get('format')!r}")
            if not meta:
                conn.execute("BEGIN")
                conn.execute("INSERT INTO meta VALUES('format', ?)", (_FORMAT,))
                conn.execute("INSERT INTO meta VALUES('kind', ?)", (self.kind,))
                conn.execute("COMMIT")
            now = int(self._clock())
            for key, value, xt in conn.execute("SELECT key, value, xt FROM records"):
                key = bytes(key)
                value = bytes(value)
                if now > xt:
                    self._dirty.add(key)  # expired while we were down: drop it
                    continue
                self._put(key, value, xt)
            self._sql = conn
            self._flush()
        except sqlite3.Error as e:
            raise DatabaseOpenError(f"{path}: cannot open: {e}") from e
        except OSError as e:
            raise DatabaseOpenError(f"{path}: cannot open: {e.strerror}") from e

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
            self._track = self.persistent or hook is not None

    def _flush(self) -> None:
        """Commit the dirty keys: to SQLite in one transaction, then to the commit hook."""
        if not self._dirty and not self._dirty_clear:
            return
        data = self._data
        dirty = self._dirty
        self._dirty = set()
        cleared = self._dirty_clear
        self._dirty_clear = False
        hook = self._on_commit
        if hook is not None:
            hook(cleared, [(key, data.get(key)) for key in dirty])
        conn = self._sql
        if conn is None:
            return
        try:
            conn.execute("BEGIN")
            if cleared:
                conn.execute("DELETE FROM records")
            ups = []
            dels = []
            for key in dirty:
                rec = data.get(key)
                if rec is None:
                    if not cleared:
                        dels.append((key,))
                else:
                    ups.append((key, rec[0], rec[1]))
            if dels:
                conn.executemany("DELETE FROM records WHERE key = ?", dels)
            if ups:
                conn.executemany("INSERT OR REPLACE INTO records VALUES(?, ?, ?)", ups)
            conn.execute("COMMIT")
        except sqlite3.Error:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise

    def _changed(self) -> None:
        if self._track and self._batch == 0 and self._undo is None:
            self._flush()

    @contextmanager
    def batch(self) -> Iterator[Database]:
        """Hold the lock and commit the persistent mirror once at the end.

        Front-ends wrap one request (a bulk operation, a Lua call) in it so a
        file database costs one SQLite transaction per request, not per record.
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
        """Make every acknowledged change durable (checkpoint the WAL when hard)."""
        with self.lock:
            if self._sql is not None:
                self._flush()
                if hard:
                    self._sql.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return True

    def close(self) -> None:
        """Flush and close the persistent mirror (memory databases: nothing to do)."""
        with self.lock:
            if self._sql is not None:
                if self._undo is not None:
                    self._rollback()
                self._flush()
                try:
                    self._sql.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:
                    pass
                self._sql.close()
                self._sql = None

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
        if heap:
            now = int(self._clock())
            data = self._data
            n = 0
            budget = _GC_STEP * writes
            while heap and heap[0][0] < now and n < budget:
                xt, key = heapq.heappop(heap)
                rec = data.get(key)
                if rec is not None and rec[1] == xt:
                    self._erase(key)
                n += 1
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
            self._changed()
            return True

    def add(self, key: bytes, value: bytes, xt: int = XTMAX) -> bool:
        """Store only when no live record exists (error: record duplication)."""
        with self.lock:
            if self._live(key) is not None:
                self.set_error(ERR_DUPREC)
                return False
            self._write(key, value, xt)
            self._changed()
            return True

    def replace(self, key: bytes, value: bytes, xt: int = XTMAX) -> bool:
        """Store only over a live record (error: no record)."""
        with self.lock:
            if self._live(key) is None:
                self.set_error(ERR_NOREC)
                return False
            self._write(key, value, xt)
            self._changed()
            return True

    def append(self, key: bytes, value: bytes, xt: int = XTMAX) -> bool:
        """Append to a live record's value, or create it; the xt is replaced."""
        with self.lock:
            rec = self._live(key)
            self._write(key, value if rec is None else rec[0] + value, xt)
            self._changed()
            return True

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
            self._changed()
            return result

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
                self._changed()
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
            self._changed()
            return True

    def remove(self, key: bytes) -> bool:
        """Delete a live record (error: no record)."""
        with self.lock:
            if self._live(key) is None:
                self.set_error(ERR_NOREC)
                return False
            self._erase(key)
            self._changed()
            return True

    def seize(self, key: bytes) -> tuple[bytes, int] | None:
        """Get and remove a live record atomically: ``(value, xt)`` or ``None``."""
        with self.lock:
            rec = self._live(key)
            if rec is None:
                self.set_error(ERR_NOREC)
                return None
            self._erase(key)
            self._changed()
            return rec

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
        one commit (SQLite, update log) for the whole bulk.  What only transactions,
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
        """Keys where ``regex`` matches somewhere; ``None`` if it does not compile.

        The keys are copied under the lock (a tree: in pages, resuming after the
        last key seen) and matched without it, so a long match never stalls writers.
        """
        from ktstore.server.posixregex import PosixRegexError, match_keys

        try:
            pattern = compile_posix_regex(regex)
        except PosixRegexError:
            self.set_error(ERR_LOGIC, "compilation failed")
            return None
        if max == 0:
            return []
        if self._keys is None:
            with self.lock:
                snapshot = list(self._data)
            return match_keys(pattern, snapshot, max)
        out: list[bytes] = []
        page: list[bytes] = []
        while True:
            with self.lock:
                tree = self._keys
                start = tree.bisect_right(page[-1]) if page else 0
                page = list(tree.islice(start, start + 4096))
            if not page:
                return out
            out += match_keys(pattern, page, max - len(out) if max > 0 else -1)
            if len(out) == max:
                return out

    def match_similar(
        self, origin: bytes, range: int = 1, utf: bool = False, max: int = -1
    ) -> list[bytes]:
        """Keys within edit distance ``range`` of ``origin``, by (distance, key).

        ``utf`` measures the distance in UTF-8 characters instead of bytes;
        a negative ``range`` means unlimited.
        """
        if utf:
            o: Any = _utf_to_ucs(origin)
        else:
            o = origin
        found: list[tuple[int, bytes]] = []
        with self.lock:
            keys = list(self._scan_keys())
        for k in keys:
            kk = _utf_to_ucs(k) if utf else k
            if range >= 0 and abs(len(kk) - len(o)) > range:
                continue
            d = _levenshtein(o, kk)
            if range < 0 or d <= range:
                found.append((d, k))
        found.sort()
        if max >= 0:
            found = found[:max]
        return [k for _, k in found]

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
            self._changed()
            return True

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
                ("count", str(len(self._data))),
                ("size", str(self._size)),
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
                n = str(len(self._data))
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
        return f"<Database {self.spec!r} {self.kind} count={len(self._data)}>"


class DBCursor:
    """A cursor over a :class:`Database`.

    The cursor remembers the *key* it stands on, not an index, so concurrent
    writes (even removing its record) do not break it: the next read moves on
    to the following live record.  On tree databases the order is byte order;
    on hash databases it is the insertion order at the time of ``jump`` (keys
    added later are not visited) and ``jump_back``/``step_back`` fail with
    "not implemented", as KC's hash cursors do.  Expired records are skipped.

    Methods return ``True``/``False`` (or ``None`` for reads) and set the
    database's per-thread error on failure, like :class:`Database`.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._key: bytes | None = None
        self._snapshot: list[bytes] | None = None  # hash databases
        self._index = 0
        self._back = False  # scanning backward (after jump_back/step_back)
        self.disabled = False

    # --- positioning helpers (caller holds the lock)

    def _invalid(self) -> None:
        self._key = None
        self._snapshot = None

    def _settle(self, forward: bool = True) -> bool:
        """Move from the remembered position onto a live record, or invalidate."""
        db = self.db
        key = self._key
        if key is None:
            return False
        if db._keys is not None:
            keys = db._keys
            while True:
                rec = db._live(key)
                if rec is not None:
                    self._key = key
                    return True
                if forward:
                    i = keys.bisect_right(key)
                    if i >= len(keys):
                        break
                else:
                    i = keys.bisect_left(key) - 1
                    if i < 0:
                        break
                key = keys[i]
        else:
            snap = self._snapshot or []
            i = self._index
            while i < len(snap):
                if db._live(snap[i]) is not None:
                    self._index = i
                    self._key = snap[i]
                    return True
                i += 1
        self._invalid()
        return False

    def _fail(self, code: int = ERR_NOREC) -> bool:
        self.db.set_error(code)
        return False

    # --- public API

    def jump(self, key: bytes | None = None) -> bool:
        """Go to the first record, or (tree) the first key >= ``key`` / (hash) that key."""
        db = self.db
        self._back = False
        with db.lock:
            if db._keys is not None:
                keys = db._keys
                i = 0 if key is None else keys.bisect_left(key)
                if i >= len(keys):
                    self._invalid()
                    return self._fail()
                self._key = keys[i]
            else:
                snap = list(db._data)
                if key is None:
                    i = 0
                else:
                    if db._live(key) is None:
                        self._invalid()
                        return self._fail()
                    snap = list(db._data)
                    i = snap.index(key)
                if i >= len(snap):
                    self._invalid()
                    return self._fail()
                self._snapshot = snap
                self._index = i
                self._key = snap[i]
            return self._settle() or self._fail()

    def jump_back(self, key: bytes | None = None) -> bool:
        """Go to the last record, or the last key <= ``key`` (tree databases only)."""
        db = self.db
        with db.lock:
            if db._keys is not None:
                self._back = True
            if db._keys is None:
                db.set_error(ERR_NOIMPL)
                return False
            keys = db._keys
            i = len(keys) - 1 if key is None else keys.bisect_right(key) - 1
            if i < 0:
                self._invalid()
                return self._fail()
            self._key = keys[i]
            return self._settle(forward=False) or self._fail()

    def step(self) -> bool:
        """Move to the next live record (error no record at the end)."""
        db = self.db
        self._back = False
        with db.lock:
            if self._key is None or not self._settle():
                return self._fail()
            if db._keys is not None:
                keys = db._keys
                i = keys.bisect_right(self._key)
                if i >= len(keys):
                    self._invalid()
                    return self._fail()
                self._key = keys[i]
            else:
                self._index += 1
                snap = self._snapshot or []
                if self._index >= len(snap):
                    self._invalid()
                    return self._fail()
                self._key = snap[self._index]
            return self._settle() or self._fail()

    def step_back(self) -> bool:
        """Move to the previous live record (tree databases only)."""
        db = self.db
        with db.lock:
            if db._keys is None:
                db.set_error(ERR_NOIMPL)
                return False
            self._back = True
            if self._key is None:
                return self._fail()
            # the last key before the position, even if that record is gone (as KC)
            keys = db._keys
            i = keys.bisect_left(self._key) - 1
            if i < 0:
                self._invalid()
                return self._fail()
            self._key = keys[i]
            return self._settle(forward=False) or self._fail()

    def get(self, step: bool = False) -> tuple[bytes, bytes, int] | None:
        """``(key, value, xt)`` of the current record, then step if asked."""
        db = self.db
        with db.lock:
            if not self._settle():
                self._fail()
                return None
            key = self._key
            assert key is not None
            value, xt = db._data[key]
            if step:
                self._advance()
            return key, value, xt

    def _advance(self) -> None:
        """Step after a read (``step=True``), in the cursor's direction: backward after
        ``jump_back``/``step_back``, as KC's tree cursors do.  Running off the end just
        invalidates the cursor."""
        db = self.db
        if db._keys is not None and self._back:
            i = db._keys.bisect_left(self._key) - 1
            if i < 0:
                self._invalid()
                return
            self._key = db._keys[i]
            self._settle(forward=False)
            return
        if db._keys is not None:
            keys = db._keys
            i = keys.bisect_right(self._key)
            if i >= len(keys):
                self._invalid()
                return
            self._key = keys[i]
        else:
            self._index += 1
            snap = self._snapshot or []
            if self._index >= len(snap):
                self._invalid()
                return
            self._key = snap[self._index]
        self._settle()

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
            if not self._settle():
                return self._fail()
            assert self._key is not None
            db._write(self._key, value, xt)
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
            if not self._settle():
                self._fail()
                return None
            key = self._key
            assert key is not None
            value, xt = db._data[key]
            db._erase(key)
            self._after_removal()
            return key, value, xt

    def _after_removal(self) -> None:
        """The current record is gone: move to the next one (the previous one when the
        cursor scans backward), as KC does."""
        db = self.db
        if db._keys is None:
            self._index += 1
            self._settle()
        elif self._back:
            i = db._keys.bisect_left(self._key) - 1
            if i < 0:
                self._invalid()
                return
            self._key = db._keys[i]
            self._settle(forward=False)
        else:
            self._settle()

    def accept(self, visitor: Visitor, writable: bool = True, step: bool = False) -> bool:
        """Show the current record to ``visitor``, apply its result, step if asked."""
        db = self.db
        with db.batch():
            if not self._settle():
                return self._fail()
            key = self._key
            assert key is not None
            rec = db._data[key]
            db._apply(key, rec, visitor(key, rec[0], rec[1]), writable)
            if key not in db._data:  # the visitor removed it: that already moves on
                self._after_removal()
            elif step:
                self._advance()
            return True

    def disable(self) -> None:
        """Forget the position (the cursor can be jumped again)."""
        self._invalid()
        self.disabled = True

"""The Python half of the ``kt`` module: the primitives ``prelude.lua`` calls.

Each Lua state gets its own :class:`Primitives` object.  Its methods are
handed to the prelude as the table ``H``; the prelude validates and converts
the Lua arguments (so these functions receive ``bytes``, numbers, booleans or
``None`` in the documented order) and keeps every Python object it receives
(databases, cursors) in hidden weak tables.  Methods therefore never return
Python objects to Lua other than those handles: lists and dicts are turned
into Lua tables with ``table_from``, text is always ``bytes``.

Time arguments follow KT's sign rule (positive = seconds from now, negative =
absolute) and are resolved here, because :class:`~ktstore.server.database.Database`
works with absolute times only.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ktstore.protocol import expire
from ktstore.protocol.limits import INT64MAX, INT64MIN, XTMAX
from ktstore.server.database import (
    ERR_INVALID,
    ERR_NOIMPL,
    REMOVE,
    Database,
    DatabaseOpenError,
    DBCursor,
    parse_db_spec,
)
from ktstore.server.scripting import codecs, hashes, pack, textfuncs

#: The version string scripts see as ``kt.VERSION``.
KT_VERSION = "0.9.56"


def resolve_xt(xt: float | int | None, now: int) -> int:
    """KT's xt argument (a Lua number or nil) -> absolute time (``None`` = never)."""
    if xt is None:
        return XTMAX
    return expire.resolve_xt(_int64(xt), now)


def _int64(num: float | int) -> int:
    """C's ``(int64_t)double`` for the values scripts pass (saturating)."""
    if isinstance(num, float):
        if math.isnan(num):
            return 0
        if math.isinf(num):
            return INT64MAX if num > 0 else INT64MIN
        num = int(num)
    return max(min(num, INT64MAX), INT64MIN)


# ------------------------------------------------------------- primitives


def _records(db: Database) -> list[tuple[bytes, bytes, int]]:
    """Every live record of ``db`` as ``(key, value, xt)``, read through a visitor."""
    out: list[tuple[bytes, bytes, int]] = []

    def collect(key: bytes, value: bytes | None, xt: int) -> None:
        if value is not None:
            out.append((key, value, xt))

    db.iterate(collect, False)
    return out


class CallState:
    """What one procedure call owns: its deadline, its cancellation test and the
    transactions it began.

    Transactions still open when the call ends are aborted, because a
    :class:`Database` transaction holds the database lock on the worker thread
    and a pooled Lua state must not carry it into somebody else's call.
    ``cancel`` (from the server: "has the client gone?") ends the call like
    its deadline does; ``cancelled`` then says which of the two did.
    """

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.timed_out = False
        self.cancel: Callable[[], bool] | None = None
        self.cancelled = False
        self.transactions: list[Database] = []


class Primitives:
    """Host functions of one Lua state (see the module docstring)."""

    def __init__(
        self,
        lua: Any,
        databases: Sequence[Database],
        names: Sequence[str],
        log: Callable[[str, str], None],
        allow_unsafe: bool = False,
    ) -> None:
        self.lua = lua
        self.dbs = list(databases)
        self.names = [n.encode("utf-8", "surrogateescape") for n in names]
        self._log = log
        self.allow_unsafe = allow_unsafe
        self.state = CallState()
        self._tid = threading.get_ident
        #: the most a host function may produce for the state (its memory limit)
        self.max_output: int | None = None

    def table(self) -> Any:
        """The ``H`` table handed to the prelude."""
        funcs = {
            name.encode(): getattr(self, name)
            for name in dir(self)
            if not name.startswith("_")
            and name not in ("table", "lua", "state", "dbs", "names", "max_output")
            and callable(getattr(self, name))
        }
        return self.lua.table_from(funcs)

    def _t(self, items: Any) -> Any:
        return self.lua.table_from(items)

    # --- time budget

    def expired(self) -> bool:
        st = self.state
        if st.deadline is not None and time.monotonic() > st.deadline:
            st.timed_out = True
            return True
        if st.cancel is not None and st.cancel():
            st.timed_out = st.cancelled = True
            return True
        return False

    # --- module functions

    def databases(self) -> tuple[Any, Any]:
        return self._t(self.dbs), self._t(self.names)

    def atoi(self, s: bytes) -> int:
        return textfuncs.atoi(s)

    def atoix(self, s: bytes) -> int:
        return textfuncs.atoix(s)

    def atof(self, s: bytes) -> float:
        return textfuncs.atof(s)

    def hash_murmur(self, s: bytes) -> int:
        return hashes.hash_murmur(s)

    def hash_fnv(self, s: bytes) -> int:
        return hashes.hash_fnv(s)

    def levdist(self, a: bytes, b: bytes, utf: bool) -> int:
        return hashes.levdist(a, b, utf, self.expired)

    def time(self) -> float:
        return round(time.time(), 6)

    def sleep(self, sec: float) -> None:
        st = self.state
        if sec > 0 and st.deadline is not None:
            sec = min(sec, max(0.0, st.deadline - time.monotonic()) + 0.001)
        time.sleep(min(sec, 86400.0) if sec > 0 else 0)

    def log(self, kind: bytes, message: bytes) -> None:
        k = kind.decode("ascii", "replace").lower()
        if k not in ("info", "system", "error"):
            k = "debug"
        self._log(k, "[SCRIPT]: " + message.decode("utf-8", "replace"))

    def pack(self, fmt: bytes, nums: Any) -> bytes:
        return pack.pack(fmt, list(nums.values()))

    def unpack(self, fmt: bytes, data: bytes) -> Any:
        return self._t(pack.unpack(fmt, data))

    def split(self, s: bytes, delims: bytes | None) -> Any:
        return self._t(textfuncs.split(s, delims))

    def codec(self, mode: bytes, s: bytes) -> bytes | None:
        return codecs.codec(mode, s, self.max_output)

    def bit(self, mode: bytes, num: float, aux: float) -> int:
        return textfuncs.bit(mode, num, aux)

    def strstr(self, s: bytes, pat: bytes, alt: bytes | None) -> int | bytes:
        return textfuncs.strstr(s, pat, alt)

    def strfwm(self, s: bytes, pat: bytes) -> bool:
        return textfuncs.strfwm(s, pat)

    def strbwm(self, s: bytes, pat: bytes) -> bool:
        return textfuncs.strbwm(s, pat)

    def regex(self, s: bytes, pat: bytes, alt: bytes | None) -> bool | bytes:
        # linear-time matching that releases the GIL (see ktstore.server.posixregex)
        from ktstore.server.posixregex import kt_regex

        return kt_regex(s, pat, alt)

    # --- database objects

    def db_new(self) -> Database:
        return Database(":")

    def db_open(self, path: bytes) -> Database | None:
        spec = path.decode("utf-8", "surrogateescape")
        try:
            _, _, persistent, _ = parse_db_spec(spec)
        except Exception:
            return None
        if persistent and not self.allow_unsafe:
            return None  # a script may not create files on the host
        try:
            return Database(spec)
        except (DatabaseOpenError, OSError, ValueError):
            return None

    def db_close(self, db: Database) -> bool:
        if db in self.dbs:
            return True  # the server's databases stay open
        db.close()
        return True

    def db_tostring(self, db: Database) -> bytes:
        return f"{db.path}: {db.count()}: {db.size()}".encode("utf-8", "surrogateescape")

    def db_error(self, db: Database) -> tuple[int, bytes]:
        code, _name, message = db.error()
        return code, message.encode("utf-8", "replace")

    def db_unsupported(self, db: Database, what: bytes) -> bool:
        db.set_error(ERR_NOIMPL, f"{what.decode()} is not supported by ktstore")
        return False

    def _visitor(self, visit: Any) -> Callable[[bytes, bytes | None, int], Any]:
        now = None

        def visitor(key: bytes, value: bytes | None, xt: int) -> Any:
            nonlocal now
            res = visit(key, value, xt)
            kind = res[0] if isinstance(res, tuple) else res
            if kind == 1:
                return REMOVE
            if kind == 2:
                new_xt = res[2] if len(res) > 2 else None
                if new_xt is None:
                    return (res[1], None)
                if now is None:
                    now = int(time.time())
                return (res[1], resolve_xt(new_xt, now))
            return None

        return visitor

    def db_accept(self, db: Database, key: bytes, visit: Any, writable: bool) -> bool:
        return db.accept(key, self._visitor(visit), writable)

    def db_accept_bulk(self, db: Database, keys: Any, visit: Any, writable: bool) -> bool:
        return db.accept_bulk(list(keys.values()), self._visitor(visit), writable)

    def db_iterate(self, db: Database, visit: Any, writable: bool) -> bool:
        return db.iterate(self._visitor(visit), writable)

    def db_set(self, db: Database, key: bytes, value: bytes, xt: float | None) -> bool:
        return db.set(key, value, resolve_xt(xt, db.now()))

    def db_add(self, db: Database, key: bytes, value: bytes, xt: float | None) -> bool:
        return db.add(key, value, resolve_xt(xt, db.now()))

    def db_replace(self, db: Database, key: bytes, value: bytes, xt: float | None) -> bool:
        return db.replace(key, value, resolve_xt(xt, db.now()))

    def db_append(self, db: Database, key: bytes, value: bytes, xt: float | None) -> bool:
        return db.append(key, value, resolve_xt(xt, db.now()))

    def db_increment(
        self, db: Database, key: bytes, num: float, orig: float, xt: float | None
    ) -> int | None:
        if isinstance(orig, float) and math.isinf(orig):
            o = INT64MAX if orig > 0 else INT64MIN
        else:
            o = _int64(orig)
        return db.increment(key, _int64(num), o, resolve_xt(xt, db.now()))

    def db_increment_double(
        self, db: Database, key: bytes, num: float, orig: float, xt: float | None
    ) -> float | None:
        res = db.increment_double(key, float(num), float(orig), resolve_xt(xt, db.now()))
        if res is None or math.isnan(res):
            return None
        return res

    def db_cas(
        self, db: Database, key: bytes, oval: bytes | None, nval: bytes | None, xt: float | None
    ) -> bool:
        return db.cas(key, oval, nval, resolve_xt(xt, db.now()))

    def db_remove(self, db: Database, key: bytes) -> bool:
        return db.remove(key)

    def db_get(self, db: Database, key: bytes) -> tuple[bytes, int] | None:
        return db.get(key)

    def db_check(self, db: Database, key: bytes) -> int:
        rec = db.check(key)
        return -1 if rec is None else rec[0]

    def db_seize(self, db: Database, key: bytes) -> tuple[bytes, int] | None:
        return db.seize(key)

    def db_set_bulk(self, db: Database, flat: Any, xt: float | None) -> int:
        items = list(flat.values())
        records = dict(zip(items[0::2], items[1::2], strict=False))
        return db.set_bulk(records.items(), resolve_xt(xt, db.now()))

    def db_remove_bulk(self, db: Database, keys: Any) -> int:
        return db.remove_bulk(list(keys.values()))

    def db_get_bulk(self, db: Database, keys: Any) -> Any:
        return self._t({k: v for k, v, _xt in db.get_bulk(list(keys.values()))})

    def db_clear(self, db: Database) -> bool:
        return db.clear()

    def db_synchronize(self, db: Database, hard: bool) -> bool:
        return db.synchronize(hard)

    def db_occupy(self, db: Database, proc: Any) -> bool:
        with db.lock:
            return bool(proc())

    def db_begin_transaction(self, db: Database, hard: bool) -> bool:
        ok = db.begin_transaction(hard)
        if ok:
            self.state.transactions.append(db)
        return ok

    def db_end_transaction(self, db: Database, commit: bool) -> bool:
        txs = self.state.transactions
        if db not in txs:
            db.set_error(ERR_INVALID, "not in transaction")
            return False
        txs.remove(db)
        return db.end_transaction(commit)

    def db_count(self, db: Database) -> int:
        return db.count()

    def db_size(self, db: Database) -> int:
        return db.size()

    def db_path(self, db: Database) -> bytes:
        return db.path.encode("utf-8", "surrogateescape")

    def db_status(self, db: Database) -> Any:
        return self._t({k.encode(): v.encode() for k, v in db.status()})

    def db_match_prefix(self, db: Database, prefix: bytes, max: float) -> Any:
        return self._t(db.match_prefix(prefix, _int64(max)))

    def db_match_regex(self, db: Database, regex: bytes, max: float) -> Any:
        keys = db.match_regex(regex, _int64(max))
        return None if keys is None else self._t(keys)

    def db_match_similar(
        self, db: Database, origin: bytes, range: float, utf: bool, max: float
    ) -> Any:
        return self._t(db.match_similar(origin, _int64(range), utf, _int64(max)))

    def db_merge(self, db: Database, srcs: Any, mode: float) -> bool:
        m = int(mode)
        for src in list(srcs.values()):
            if src is db:
                continue
            for key, value, xt in _records(src):
                if m == 1:
                    db.add(key, value, xt)
                elif m == 2:
                    db.replace(key, value, xt)
                elif m == 3:
                    db.append(key, value, xt)
                else:
                    db.set(key, value, xt)
        return True

    def db_cursor(self, db: Database) -> DBCursor:
        return db.cursor()

    # --- cursors

    def cur_tostring(self, cur: DBCursor) -> bytes:
        key = cur.get_key(False)
        path = cur.db.path.encode("utf-8", "surrogateescape")
        return path + b": " + (b"(nil)" if key is None else key)

    def cur_disable(self, cur: DBCursor) -> None:
        cur.disable()

    def cur_accept(self, cur: DBCursor, visit: Any, writable: bool, step: bool) -> bool:
        return cur.accept(self._visitor(visit), writable, step)

    def cur_set_value(self, cur: DBCursor, value: bytes, xt: int, step: bool) -> bool:
        return cur.set_value(value, resolve_xt(xt, cur.db.now()), step)

    def cur_remove(self, cur: DBCursor) -> bool:
        return cur.remove()

    def cur_get_key(self, cur: DBCursor, step: bool) -> bytes | None:
        return cur.get_key(step)

    def cur_get_value(self, cur: DBCursor, step: bool) -> bytes | None:
        return cur.get_value(step)

    def cur_get(self, cur: DBCursor, step: bool) -> tuple[bytes, bytes, int] | None:
        return cur.get(step)

    def cur_seize(self, cur: DBCursor) -> tuple[bytes, bytes, int] | None:
        return cur.seize()

    def cur_jump(self, cur: DBCursor, key: bytes | None) -> bool:
        return cur.jump(key)

    def cur_jump_back(self, cur: DBCursor, key: bytes | None) -> bool:
        return cur.jump_back(key)

    def cur_step(self, cur: DBCursor) -> bool:
        return cur.step()

    def cur_step_back(self, cur: DBCursor) -> bool:
        return cur.step_back()

"""Cursors over a memory :class:`~ktstore.server.database.Database`.

Why a module of its own: cursor positioning (remembering a key, not an index, so
concurrent writes never break a cursor; KC's rules for stepping after a removal
or backward) is the subtlest part of the engine API and is read on its own.
The file engine's cursor, :class:`ktstore.server.filedb.FileCursor`, follows the
same rules over the LMDB tree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ktstore.protocol.limits import XTMAX
from ktstore.server.dbspec import ERR_NOIMPL, ERR_NOREC, Visitor

if TYPE_CHECKING:
    from ktstore.server.database import Database

__all__ = ["DBCursor"]


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

"""The update log (``-ulog DIR -sid N``): every committed change, in ktserver's file format.

Why: ``ulog_list``/``ulog_remove`` and binary replication (magic 0xB1) read it,
so a ktserver slave or a replication consumer (ukt's) can follow our server.

Layout (ktserver's own, so its slaves can read it): files ``DIR/%010u.ulog`` numbered from 1, each
starting with a 17-byte header (``0xA0``, u64 file size, u64 largest timestamp
in the file) followed by records ``0xA1, u64 ts, u32 size, message, 0xA2``.
A new file is started when the current one reaches ``-ulim`` bytes.
Timestamps are ``milliseconds * 1e6 + counter``: nanosecond-scaled, unique.

A message is ``u16 sid, u16 dbidx, u8 op`` then, for SET (0xA1),
``varint ksiz, varint vsiz, key, value`` where the value carries the 5-byte
big-endian expiration prefix of KT's timed database; for REMOVE (0xA2)
``varint ksiz, key``; for CLEAR (0xA5) nothing.

Changes are logged per commit (one request, bulk operation, Lua call or
transaction), in commit order, after the databases apply them.  Unlike
ktserver, records collected because they expired are logged as REMOVEs too
(harmless: a replica would drop them as well).
"""

from __future__ import annotations

import os
import re
import struct
import threading
import time
from collections.abc import Iterator

from ktstore.protocol.dumps import encode_varint
from ktstore.protocol.replication import OP_CLEAR, OP_REMOVE, OP_SET  # the message layout

__all__ = ["UpdateLog", "UlogReader", "OP_SET", "OP_REMOVE", "OP_CLEAR", "DEFAULT_ULIM"]

DEFAULT_ULIM = 256 << 20

_HEAD = struct.Struct(">BQQ")  # 0xA0, file size, max ts
_REC = struct.Struct(">BQI")  # 0xA1, ts, message size
_MSG = struct.Struct(">HHB")  # sid, dbidx, op
_NAME = re.compile(r"^(\d{10})\.ulog$")


class UpdateLog:
    """Writes the update log of one server (thread-safe)."""

    def __init__(self, path: str, sid: int, ulim: int = DEFAULT_ULIM) -> None:
        self.path = os.path.abspath(path)
        self.sid = sid
        self.ulim = ulim if ulim > 0 else DEFAULT_ULIM
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # replication readers wait on it
        os.makedirs(self.path, exist_ok=True)
        self._last_ms = 0
        self._counter = 0
        self._origin = threading.local()  # a slave applying a master's change logs its sid
        ids = self.file_ids()
        self._id = ids[-1] if ids else 1
        self._file = open(self.file_path(self._id), "r+b" if ids else "w+b")  # noqa: SIM115
        head = self._file.read(_HEAD.size)
        if len(head) == _HEAD.size and head[0] == 0xA0:
            _, self._size, self._max_ts = _HEAD.unpack(head)
            self._size = max(self._size, _HEAD.size)
        else:
            self._size, self._max_ts = _HEAD.size, 0
        self._file.seek(0)
        self._file.write(_HEAD.pack(0xA0, self._size, self._max_ts))
        self._file.truncate(self._size)
        self._file.flush()
        self._closed = False

    # ------------------------------------------------------------------ files

    def file_path(self, file_id: int) -> str:
        return os.path.join(self.path, f"{file_id:010d}.ulog")

    def file_ids(self) -> list[int]:
        """Ids of the log files present, oldest first."""
        ids = []
        for name in os.listdir(self.path):
            m = _NAME.match(name)
            if m:
                ids.append(int(m.group(1)))
        return sorted(ids)

    def list_files(self) -> list[tuple[str, int, int]]:
        """``(path, size, max ts)`` of every file, oldest first (``ulog_list``)."""
        out = []
        for file_id in self.file_ids():
            path = self.file_path(file_id)
            try:
                with open(path, "rb") as f:
                    head = f.read(_HEAD.size)
            except OSError:
                continue
            if len(head) == _HEAD.size and head[0] == 0xA0:
                _, size, ts = _HEAD.unpack(head)
                out.append((path, size, ts))
        return out

    def remove_files(self, ts: int) -> bool:
        """Remove every file but the newest whose max timestamp is ``<= ts`` (``ulog_remove``)."""
        ok = True
        with self.lock:
            files = self.list_files()[:-1]
            for path, _, max_ts in files:
                if max_ts <= ts:
                    try:
                        os.remove(path)
                    except OSError:
                        ok = False
        return ok

    # ---------------------------------------------------------------- writing

    def clock(self) -> int:
        """A fresh unique timestamp (caller holds the lock)."""
        ms = time.time_ns() // 1_000_000
        if ms <= self._last_ms:
            ms = self._last_ms
            self._counter += 1
        else:
            self._last_ms = ms
            self._counter = 0
        return ms * 1_000_000 + self._counter

    @staticmethod
    def clock_pure() -> int:
        """The current time on the log's scale (for heart-beats)."""
        return time.time_ns() // 1_000_000 * 1_000_000

    def _append(self, messages: list[bytes]) -> None:
        if self._closed or not messages:
            return
        parts = []
        ts = 0
        for msg in messages:
            ts = self.clock()
            parts.append(_REC.pack(0xA1, ts, len(msg)))
            parts.append(msg)
            parts.append(b"\xa2")
        data = b"".join(parts)
        f = self._file
        f.seek(self._size)
        f.write(data)
        self._size += len(data)
        self._max_ts = ts
        f.seek(0)
        f.write(_HEAD.pack(0xA0, self._size, self._max_ts))
        f.flush()
        if self._size >= self.ulim:
            f.close()
            self._id += 1
            self._file = open(self.file_path(self._id), "w+b")  # noqa: SIM115
            self._size, self._max_ts = _HEAD.size, 0
            self._file.write(_HEAD.pack(0xA0, self._size, 0))
            self._file.flush()
        self.changed.notify_all()

    def set_origin(self, sid: int) -> int | None:
        """Log this thread's next commits under ``sid`` (a replication slave re-logs a
        master's change with its original server id, so a dual master does not loop).
        Returns a token for :meth:`reset_origin`."""
        token = getattr(self._origin, "sid", None)
        self._origin.sid = sid
        return token

    def reset_origin(self, token: int | None) -> None:
        self._origin.sid = token

    def log_commit(
        self, dbidx: int, cleared: bool, changes: list[tuple[bytes, tuple[bytes, int] | None]]
    ) -> None:
        """Log one commit of database ``dbidx`` (the Database commit hook)."""
        sid = getattr(self._origin, "sid", None)
        if sid is None:
            sid = self.sid
        head_set = _MSG.pack(sid, dbidx, OP_SET)
        head_remove = _MSG.pack(sid, dbidx, OP_REMOVE)
        messages = []
        if cleared:
            messages.append(_MSG.pack(sid, dbidx, OP_CLEAR))
        for key, rec in changes:
            if rec is None:
                messages.append(b"".join((head_remove, encode_varint(len(key)), key)))
            else:
                value, xt = rec
                messages.append(
                    b"".join(
                        (
                            head_set,
                            encode_varint(len(key)),
                            encode_varint(len(value) + 5),
                            key,
                            xt.to_bytes(5, "big"),
                            value,
                        )
                    )
                )
        with self.lock:
            self._append(messages)

    def hook(self, dbidx: int):  # type: ignore[no-untyped-def]
        """A commit hook for database ``dbidx``."""

        def on_commit(cleared: bool, changes: list[tuple[bytes, tuple[bytes, int] | None]]) -> None:
            self.log_commit(dbidx, cleared, changes)

        return on_commit

    def close(self) -> None:
        with self.lock:
            if not self._closed:
                self._closed = True
                self._file.close()
                self.changed.notify_all()


class UlogReader:
    """Reads the records logged after a timestamp, following new files as they appear."""

    def __init__(self, ulog: UpdateLog, ts: int) -> None:
        self.ulog = ulog
        self.ts = ts
        self._id = 0
        self._pos = _HEAD.size
        self._buf = b""

    def _next_file(self) -> bool:
        ids = [i for i in self.ulog.file_ids() if i > self._id]
        if not ids:
            return False
        self._id = ids[0]
        self._pos = _HEAD.size
        return True

    def read(self) -> Iterator[tuple[int, bytes]]:
        """The ``(ts, message)`` records available now with ts greater than the start ts."""
        if self._id == 0 and not self._next_file():
            return
        while True:
            path = self.ulog.file_path(self._id)
            try:
                with open(path, "rb") as f:
                    head = f.read(_HEAD.size)
                    if len(head) < _HEAD.size:
                        return
                    size = _HEAD.unpack(head)[1]
                    f.seek(self._pos)
                    data = f.read(max(size - self._pos, 0))
            except FileNotFoundError:  # removed by ulog_remove: go on with the next
                if not self._next_file():
                    return
                continue
            p = 0
            n = len(data)
            while p + _REC.size <= n:
                magic, ts, msiz = _REC.unpack_from(data, p)
                end = p + _REC.size + msiz + 1
                if magic != 0xA1 or end > n:
                    break
                msg = data[p + _REC.size : end - 1]
                p = end
                if ts > self.ts:
                    yield ts, msg
            self._pos += p
            if self._id < (self.ulog.file_ids() or [0])[-1]:
                if self._next_file():
                    continue
            return

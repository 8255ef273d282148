"""The redo log of a file database: what makes a one-record commit cheap.

Why: an LMDB commit writes every page a change touched (leaf, branches, free
list, meta page): about 20 µs from Python for one random ``set`` on a 1M-record
file.  Appending the request's changes to this log is one ``write`` (a few µs)
and is just as durable against a crash of the server: once ``write`` returned
the bytes are in the OS page cache.  So a request is committed when its log
record is written; the LMDB transaction that holds the changes of many
requests is committed later (a *checkpoint*), after which the log is emptied.
At open, the records newer than the last checkpoint are applied again.

File ``PATH.wal`` next to the database.  Records::

    u32 payload size, u32 crc32 of (seq + payload), u64 seq, payload

with the payload a sequence of operations ``u8 op, u32 key size, u32 value
size, 5-byte xt, key, value`` (``op``: 1 set, 2 remove, 3 clear).  A record
that is cut short or whose checksum does not match (a write interrupted by a
crash, never acknowledged) ends the log: it and what follows are ignored.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable, Iterator

__all__ = ["RedoLog", "OP_SET", "OP_REMOVE", "OP_CLEAR", "encode_ops"]

OP_SET = 1
OP_REMOVE = 2
OP_CLEAR = 3

_HEAD = struct.Struct(">IIQ")  # payload size, crc32, seq
_OP = struct.Struct(">BII")  # op, key size, value size (then 5 bytes of xt)

Op = tuple[int, bytes, bytes, int]


_OPX = struct.Struct(">BIIBI")  # op, key size, value size, xt >> 32, xt & 0xffffffff


def encode_ops(cleared: bool, changes: Iterable[tuple[bytes, tuple[bytes, int] | None]]) -> bytes:
    """The payload of one request: a clear first if any, then each key's final state."""
    parts = [_OPX.pack(OP_CLEAR, 0, 0, 0, 0)] if cleared else []
    pack = _OPX.pack
    append = parts.append
    for key, rec in changes:
        if rec is None:
            append(pack(OP_REMOVE, len(key), 0, 0, 0))
            append(key)
        else:
            value, xt = rec
            append(pack(OP_SET, len(key), len(value), xt >> 32, xt & 0xFFFFFFFF))
            append(key)
            append(value)
    return b"".join(parts)


def decode_ops(payload: bytes) -> Iterator[Op]:
    """``(op, key, value, xt)`` of a payload, in order."""
    p = 0
    n = len(payload)
    while p < n:
        op, ksiz, vsiz = _OP.unpack_from(payload, p)
        xt = int.from_bytes(payload[p + 9 : p + 14], "big")
        k = p + 14
        yield op, payload[k : k + ksiz], payload[k + ksiz : k + ksiz + vsiz], xt
        p = k + ksiz + vsiz


class RedoLog:
    """Appends request records to ``path`` and reads them back (not thread-safe:
    the database lock serializes its users)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = os.fstat(self.fd).st_size

    def records(self) -> Iterator[tuple[int, bytes]]:
        """``(seq, payload)`` of every whole record, in order; a torn tail is cut off."""
        with open(self.path, "rb") as f:
            data = f.read()
        p = 0
        n = len(data)
        while p + _HEAD.size <= n:
            size, crc, seq = _HEAD.unpack_from(data, p)
            end = p + _HEAD.size + size
            if end > n or zlib.crc32(data[p + 8 : end]) != crc:
                break
            yield seq, data[p + _HEAD.size : end]
            p = end
        if p != self.size:
            os.ftruncate(self.fd, p)  # drop a torn record (it was never acknowledged)
            self.size = p

    def append(self, seq: int, payload: bytes) -> None:
        """Write one record; raises ``OSError`` (then nothing of it is in the log)."""
        seqb = seq.to_bytes(8, "big")
        head = _HEAD.pack(len(payload), zlib.crc32(payload, zlib.crc32(seqb)), seq)
        total = len(head) + len(payload)
        try:
            written = os.writev(self.fd, (head, payload))
            if written != total:  # short write (rare): finish it piece by piece
                rest = memoryview(head + payload)[written:]
                while rest:
                    rest = rest[os.write(self.fd, rest) :]
        except OSError:
            try:
                os.ftruncate(self.fd, self.size)  # no partial record stays behind
            except OSError:
                pass
            raise
        self.size += total

    def reset(self) -> None:
        """Empty the log (after a checkpoint made its records part of the file)."""
        os.ftruncate(self.fd, 0)
        self.size = 0

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

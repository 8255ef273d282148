"""Expiration of records: the GC step both engines run on every write.

Why a module of its own: KT's timed database collects expired records lazily
(a read that meets one purges it) plus a small step per write, so ``count``
may include expired records not collected yet.  The memory engine keeps a heap
of ``(xt, key)``; the file engine keeps the same order in an LMDB table whose
keys are :func:`xt_key` (8 bytes, big-endian, so byte order is time order) with
the record's stored key as duplicate data.  Both examine at most
:data:`GC_STEP` index entries per write and drop stale ones (the record was
rewritten with another xt, or removed) on the way.
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Callable

__all__ = ["GC_STEP", "collect_heap", "xt_key", "xt_of"]

#: Expired-index entries examined per write.
GC_STEP = 4

_XT = struct.Struct(">Q")


def collect_heap(
    heap: list[tuple[int, bytes]],
    current_xt: Callable[[bytes], int | None],
    erase: Callable[[bytes], object],
    now: int,
    budget: int,
) -> int:
    """Pop up to ``budget`` entries of ``heap`` older than ``now``; erase each key whose
    record still has that xt (``current_xt(key)``).  Returns the entries examined."""
    n = 0
    while heap and heap[0][0] < now and n < budget:
        xt, key = heapq.heappop(heap)
        if current_xt(key) == xt:
            erase(key)
        n += 1
    return n


def xt_key(xt: int) -> bytes:
    """The expiration-index key of ``xt``: byte order is time order."""
    return _XT.pack(xt)


def xt_of(key: bytes) -> int:
    """Inverse of :func:`xt_key`."""
    return int(_XT.unpack(key)[0])

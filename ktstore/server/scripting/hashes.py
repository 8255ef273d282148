"""Hash and distance functions of the scripting host (``kt.hash_*``, ``kt.levdist``).

Scripts use these hashes to pick shards or buckets, so the numbers must be
exactly the ones a real ktserver computes: Kyoto Cabinet's MurmurHash64A
(seed 19780211) and its FNV-1a variant with a non-standard prime, both masked
to 48 bits so they survive the trip through a Lua 5.1 double.
"""

from __future__ import annotations

from collections.abc import Callable

_M64 = (1 << 64) - 1
_M48 = (1 << 48) - 1
_MURMUR_MUL = 0xC6A4A7935BD1E995
_MURMUR_SEED = 19780211
_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 109951162811  # KC's value, not the standard 1099511628211


def murmur64(data: bytes) -> int:
    """MurmurHash64A of ``data`` with KC's seed (full 64 bits)."""
    mul = _MURMUR_MUL
    size = len(data)
    h = (_MURMUR_SEED ^ (size * mul)) & _M64
    end = size - size % 8
    for pos in range(0, end, 8):
        k = int.from_bytes(data[pos : pos + 8], "little")
        k = (k * mul) & _M64
        k ^= k >> 47
        k = (k * mul) & _M64
        h = ((h * mul) & _M64) ^ k
    rest = size - end
    if rest:
        h ^= int.from_bytes(data[end:], "little")
        h = (h * mul) & _M64
    h ^= h >> 47
    h = (h * mul) & _M64
    h ^= h >> 47
    return h


def hash_murmur(data: bytes) -> int:
    """``kt.hash_murmur``: MurmurHash64A masked to 48 bits."""
    return murmur64(data) & _M48


def fnv64(data: bytes) -> int:
    """KC's FNV-1a style hash (xor then multiply by KC's prime), 64 bits."""
    h = _FNV_OFFSET
    for c in data:
        h = ((h ^ c) * _FNV_PRIME) & _M64
    return h


def hash_fnv(data: bytes) -> int:
    """``kt.hash_fnv``: :func:`fnv64` masked to 48 bits."""
    return fnv64(data) & _M48


def _decode_ucs(data: bytes) -> list[int]:
    """UTF-8 to code points, leniently (invalid bytes count as one unit each),
    because levdist must never fail on arbitrary binary keys."""
    return [ord(c) for c in data.decode("utf-8", "surrogateescape")]


def levdist(
    a: bytes, b: bytes, utf: bool = False, expired: Callable[[], bool] | None = None
) -> int:
    """Levenshtein distance, over bytes or (``utf``) over UTF-8 characters.

    The work is quadratic and runs in Python with the GIL held, so a caller
    with a time budget passes ``expired``; it is asked every few rows and a
    true answer raises :class:`TimeoutError`.
    """
    x: bytes | list[int] = _decode_ucs(a) if utf else a
    y: bytes | list[int] = _decode_ucs(b) if utf else b
    if len(x) < len(y):
        x, y = y, x
    prev = list(range(len(y) + 1))
    for i, cx in enumerate(x, 1):
        if expired is not None and i % 64 == 0 and expired():
            raise TimeoutError("levdist ran past the time limit")
        cur = [i]
        for j, cy in enumerate(y, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (cx != cy)))
        prev = cur
    return prev[-1]

"""Kyoto Cabinet's edit distance, as ``match_similar`` measures it (pure functions).

Why in the protocol core: the server ranks ``match_similar`` results by this distance,
and a client that merges the answers of several servers (the sharded client) must rank
them the same way, so both use this one definition.
"""

from __future__ import annotations

from typing import Any

__all__ = ["levenshtein", "utf_to_ucs", "kt_distance"]


def levenshtein(a: Any, b: Any) -> int:
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


def utf_to_ucs(data: bytes) -> list[int]:
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


def kt_distance(origin: bytes, key: bytes, utf: bool) -> int:
    """The distance ``match_similar`` gives ``key`` from ``origin`` (in UTF-8 characters
    when ``utf``, else in bytes)."""
    if utf:
        return levenshtein(utf_to_ucs(origin), utf_to_ucs(key))
    return levenshtein(origin, key)

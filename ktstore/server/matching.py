"""Key matching for ktstore-server databases: KC's POSIX regexes, edit distance.

Why a module of its own: the regex rules (POSIX bracket classes, keys read as C
strings) and the edit-distance rules (KC's lenient UTF-8 decoding) are the same
for every engine; an engine only supplies the keys to look at.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ktstore.server.dbspec import ERR_LOGIC
from ktstore.server.posixregex import PosixRegexError, compile_posix, match_keys

__all__ = ["compile_posix_regex", "match_regex", "match_similar_keys"]


def compile_posix_regex(regex: bytes) -> Any:
    """Compile a KC (POSIX ERE) regex on the linear-time engine of
    :mod:`ktstore.server.posixregex`; raises ``re.error`` when it does not compile."""
    return compile_posix(regex)


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


def match_regex(self: Any, regex: bytes, max: int = -1) -> list[bytes] | None:
    """Keys of database ``self`` where ``regex`` matches somewhere; ``None`` if it does
    not compile (:meth:`ktstore.server.database.Database.match_regex`).

    The keys are copied under the lock and matched without it, on a linear-time
    engine, so neither a long match nor a pathological pattern stalls writers.
    """
    try:
        pattern = compile_posix_regex(regex)
    except PosixRegexError:
        self.set_error(ERR_LOGIC, "compilation failed")
        return None
    if max == 0:
        return []
    with self.lock:
        keys = list(self._scan_keys())
    return match_keys(pattern, keys, max)


def match_similar_keys(
    keys: Iterable[bytes], origin: bytes, range: int = 1, utf: bool = False, max: int = -1
) -> list[bytes]:
    """The ``keys`` within edit distance ``range`` of ``origin``, by (distance, key)."""
    if utf:
        o: Any = _utf_to_ucs(origin)
    else:
        o = origin
    found: list[tuple[int, bytes]] = []
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

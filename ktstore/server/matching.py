"""Key matching for ktstore-server databases: KC's POSIX regexes, edit distance.

Why a module of its own: the regex rules (POSIX bracket classes, keys read as C
strings) and the edit-distance rules (KC's lenient UTF-8 decoding) are the same
for every engine; an engine only supplies the keys to look at.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ktstore.protocol.similarity import levenshtein, utf_to_ucs
from ktstore.server.dbspec import ERR_LOGIC
from ktstore.server.posixregex import PosixRegexError, compile_posix, match_keys

__all__ = ["compile_posix_regex", "match_regex", "match_similar_keys"]


def compile_posix_regex(regex: bytes) -> Any:
    """Compile a KC (POSIX ERE) regex on the linear-time engine of
    :mod:`ktstore.server.posixregex`; raises ``re.error`` when it does not compile."""
    return compile_posix(regex)


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
        o: Any = utf_to_ucs(origin)
    else:
        o = origin
    found: list[tuple[int, bytes]] = []
    for k in keys:
        kk = utf_to_ucs(k) if utf else k
        if range >= 0 and abs(len(kk) - len(o)) > range:
            continue
        d = levenshtein(o, kk)
        if range < 0 or d <= range:
            found.append((d, k))
    found.sort()
    if max >= 0:
        found = found[:max]
    return [k for _, k in found]

"""Kyoto Cabinet's regular expressions (POSIX EREs) on a linear-time engine.

``match_regex`` (RPC, REST-less but reachable by any client) and Lua's
``kt.regex`` take a pattern from the network, and any client can write the
keys it runs over.  A backtracking engine (Python's ``re``) spends time
exponential in the key length on patterns such as ``(a+)+$``, holding the GIL
and, in ``match_regex``, the database lock: one request froze every
connection.  We therefore match with RE2 (the ``google-re2`` wheel), whose
automata run in time linear in the text and release the GIL while they run.

Why RE2 rather than the ``regex`` package with ``timeout=``: a timeout still
burns a core for its whole duration and turns a valid pattern into an error
depending on machine load; RE2 answers ``(a+)+$`` over 100 kB of ``a`` in
0.2 ms and never needs a limit.  ``tests/test_server_limits.py`` measures it.

Dialect, chosen to be as close to glibc's ``regcomp(REG_EXTENDED)`` (what KC
uses) as RE2 allows:

* POSIX syntax with leftmost-longest matching (``longest_match``), so a
  ``kt.regex`` replacement replaces the same spans as ktserver;
* bytes are characters (Latin-1 mode): keys need not be UTF-8, ``.`` is one byte;
* ``.`` matches a newline and ``^``/``$`` anchor at the ends of the text only
  (no ``REG_NEWLINE``);
* bracket classes ``[[:alpha:]]`` etc. (ASCII, as in the C locale), and the
  GNU/Perl shorthands ``\\w \\s \\d \\b`` that earlier versions accepted.

Known differences from glibc, all answered "compilation failed" (RPC) or "no
match" (``kt.regex``) instead of a slow success: back-references (``\\1``),
repetition counts above 1000, and patterns whose automaton exceeds RE2's
memory budget (8 MiB, about a 100 kB pattern).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import re2

__all__ = ["PosixRegex", "PosixRegexError", "compile_posix", "match_keys", "kt_regex"]

_CACHE_MAX = 256


class PosixRegexError(re.error):
    """The pattern does not compile (a subclass of ``re.error`` for older callers)."""


def _options() -> Any:
    opts = re2.Options()
    opts.encoding = re2.Options.Encoding.LATIN1
    opts.posix_syntax = True
    opts.longest_match = True
    opts.dot_nl = True
    opts.one_line = True
    opts.perl_classes = True
    opts.word_boundary = True
    opts.log_errors = False
    return opts


_OPTIONS = _options()
_TEST_OPTIONS = _options()
_TEST_OPTIONS.never_capture = True  # a yes/no test needs no groups: a faster automaton
_UNANCHORED = re2._re2.RE2.Anchor.UNANCHORED
_NO_MATCH = -1


class PosixRegex:
    """A compiled KC regex: :meth:`test` (yes/no, the fast path of ``match_regex``)
    and :meth:`search` (a match object with groups, for replacements)."""

    __slots__ = ("pattern", "_rx", "_match")

    def __init__(self, pattern: bytes) -> None:
        self.pattern = pattern
        self._rx = re2.compile(pattern, _OPTIONS)
        # The wrapper's search() builds a match object per call (~9 us); the bare
        # RE2 object answers a yes/no question in ~1 us per short key.
        self._match = re2._re2.RE2(pattern, _TEST_OPTIONS).Match

    @property
    def groups(self) -> int:
        return int(self._rx.groups)

    def test(self, text: bytes) -> bool:
        """Whether the regex matches somewhere in ``text``."""
        return bool(self._match(_UNANCHORED, text, 0, len(text))[0][0] != _NO_MATCH)

    def search(self, text: bytes, pos: int = 0) -> Any:
        """The leftmost-longest match at or after ``pos`` (``^`` still means the
        start of ``text``), or None."""
        return self._rx.search(text, pos)


_cache: dict[bytes, PosixRegex] = {}


def compile_posix(pattern: bytes) -> PosixRegex:
    """The compiled form of a KC regex (cached); :class:`PosixRegexError` if it does
    not compile."""
    rx = _cache.get(pattern)
    if rx is not None:
        return rx
    try:
        rx = PosixRegex(pattern)
    except Exception as e:  # re2.error, or TypeError/ValueError on odd input
        raise PosixRegexError(str(e)) from None
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[pattern] = rx
    return rx


def _cstr(data: bytes) -> bytes:
    """KC handles keys and Lua strings here as C strings: they end at the first NUL."""
    i = data.find(b"\0")
    return data if i < 0 else data[:i]


def match_keys(rx: PosixRegex, keys: Iterable[bytes], max: int = -1) -> list[bytes]:
    """The keys (in the given order) where ``rx`` matches somewhere; at most
    ``max`` of them unless ``max < 0``.  Each key is matched as a C string."""
    out: list[bytes] = []
    if max == 0:
        return out
    test = rx.test
    for k in keys:
        if test(_cstr(k) if b"\0" in k else k):
            out.append(k)
            if len(out) == max:
                break
    return out


def _expand(alt: bytes, m: Any, groups: int) -> bytes:
    """A replacement with ``$0``-``$9`` (groups), ``$&`` (the match); ``$x`` gives ``x``."""
    if b"$" not in alt:
        return alt
    out = bytearray()
    i = 0
    n = len(alt)
    while i < n:
        c = alt[i]
        if c == 0x24 and i + 1 < n:  # '$'
            nxt = alt[i + 1]
            if 0x30 <= nxt <= 0x39:
                g = nxt - 0x30
                if g <= groups:
                    part = m.group(g)
                    if part is not None:
                        out += part
            elif nxt == 0x26:  # '&'
                out += m.group(0)
            else:
                out.append(nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


def kt_regex(data: bytes, pattern: bytes, alt: bytes | None = None) -> bool | bytes:
    """Lua's ``kt.regex``: does ``pattern`` match ``data`` (no ``alt``), or ``data``
    with every match replaced by ``alt``.  A pattern that does not compile is "no
    match" (``data`` unchanged), as in ktserver."""
    s = _cstr(data)
    try:
        rx = compile_posix(_cstr(pattern))
    except PosixRegexError:
        return False if alt is None else s
    if alt is None:
        return rx.test(s)
    a = _cstr(alt)
    groups = rx.groups
    out = bytearray()
    pos = 0
    n = len(s)
    while pos < n:
        m = rx.search(s, pos)
        if m is None:
            break
        start, end = m.start(), m.end()
        out += s[pos:start]
        out += _expand(a, m, groups)
        if end == start:
            # an empty match: keep one character and move on, or we would loop
            out += s[end : end + 1]
            pos = end + 1
        else:
            pos = end
    out += s[pos:]
    return bytes(out)

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
* bracket classes ``[[:alpha:]]`` etc. (ASCII, as in the C locale);
* backslash escapes as glibc reads them (:func:`to_re2` rewrites the pattern):
  ``\\w \\W \\s \\S \\b \\B`` are GNU classes and word boundaries, ``\\<``
  and ``\\>`` word boundaries, any other escaped character is itself (``\\d``
  is ``d``, ``\\n`` is ``n``), and a backslash inside a bracket expression is
  a backslash.

Known differences from glibc, all answered "compilation failed" (RPC) or "no
match" (``kt.regex``) instead of a slow success: back-references (``\\1``),
repetition counts above 1000, collating elements (``[[.a.]]``), and patterns
whose automaton exceeds RE2's memory budget (8 MiB, about a 100 kB pattern).
``\\<`` and ``\\>`` match at either edge of a word (RE2 has only ``\\b``).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from typing import Any

import re2

__all__ = ["PosixRegex", "PosixRegexError", "compile_posix", "match_keys", "kt_regex", "to_re2"]

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
# Matching many keys: they are joined with newlines and scanned in one call per
# *match* rather than one per key; ^ and $ then anchor at the newlines and no
# match may contain one.  Keys that contain a newline take the per-key path.
_BATCH_OPTIONS = _options()
_BATCH_OPTIONS.never_capture = True
_BATCH_OPTIONS.one_line = False
_BATCH_OPTIONS.never_nl = True
_BATCH_OPTIONS.dot_nl = False
_BATCH_KEYS = 1024
_UNANCHORED = re2._re2.RE2.Anchor.UNANCHORED
_NO_MATCH = -1


_GNU_ESCAPES = {
    ord("w"): b"\\w",
    ord("W"): b"\\W",
    ord("s"): b"\\s",
    ord("S"): b"\\S",
    ord("b"): b"\\b",
    ord("B"): b"\\B",
    ord("<"): b"\\b",
    ord(">"): b"\\b",
    ord("`"): b"^",  # start and end of the text (one_line mode; of a key in a page scan)
    ord("'"): b"$",
}
_INTERVAL = re.compile(rb"\{([0-9]*)((?:,[0-9]*)?)\}")
_ALNUM = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def to_re2(pattern: bytes) -> bytes:
    """Rewrite a glibc ERE into RE2's POSIX syntax where their escapes differ.

    Outside brackets, ``\\x`` is a GNU escape (see the module docstring), a
    back-reference (refused: RE2 has none), or the character ``x`` itself, and
    an unmatched ``)`` is a literal, ``{`` always starts an interval (``{,n}``
    means ``{0,n}``; anything else is an error); inside a bracket expression a backslash is
    an ordinary character.
    Everything else is left for RE2 to accept or refuse.
    """
    if b"\\" not in pattern and b")" not in pattern and b"{" not in pattern:
        return pattern
    out = bytearray()
    depth = 0  # open groups: glibc takes an unmatched ')' as a literal
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x5C:  # backslash
            if i + 1 >= n:
                raise PosixRegexError("trailing backslash")
            x = pattern[i + 1]
            i += 2
            gnu = _GNU_ESCAPES.get(x)
            if gnu is not None:
                out += gnu
            elif 0x31 <= x <= 0x39:
                raise PosixRegexError("back-references are not supported")
            elif x in _ALNUM or x >= 0x80:
                out.append(x)  # an escaped ordinary character is itself
            else:
                out += b"\\" + bytes([x])  # an escaped metacharacter or punctuation
            continue
        if c == 0x5B:  # '[': copy the bracket expression, backslashes made literal
            j = i + 1
            if j < n and pattern[j] == 0x5E:  # '^'
                j += 1
            if j < n and pattern[j] == 0x5D:  # a leading ']' is literal
                j += 1
            while j < n and pattern[j] != 0x5D:
                if pattern[j] == 0x5B and j + 1 < n and pattern[j + 1] in b":.=":
                    end = pattern.find(bytes([pattern[j + 1], 0x5D]), j + 2)
                    j = n if end < 0 else end + 2
                    continue
                j += 1
            body = pattern[i + 1 : j]
            out += b"["
            if body[:1] == b"^":
                out += b"^"
                body = body[1:]
            if body[:1] == b"]":
                out += b"\\]"
                body = body[1:]
            out += body.replace(b"\\", b"\\\\")
            if j < n:
                out += b"]"
            i = j + 1
            continue
        if c == 0x7B:  # '{' starts an interval in glibc, never a literal
            m = _INTERVAL.match(pattern, i)
            if m is None or not (m.group(1) or m.group(2)[1:]):
                raise PosixRegexError("invalid interval")
            out += b"{" + (m.group(1) or b"0") + m.group(2) + b"}"  # {,n} is {0,n}
            i = m.end()
            continue
        if c == 0x28:  # '('
            depth += 1
        elif c == 0x29:  # ')'
            if depth == 0:
                out += b"\\)"
                i += 1
                continue
            depth -= 1
        out.append(c)
        i += 1
    return bytes(out)


class PosixRegex:
    """A compiled KC regex: :meth:`test` (yes/no, the fast path of ``match_regex``)
    and :meth:`search` (a match object with groups, for replacements)."""

    __slots__ = ("pattern", "_rx", "_match", "_batch")

    def __init__(self, pattern: bytes) -> None:
        self.pattern = pattern
        translated = to_re2(pattern)
        self._rx = re2.compile(translated, _OPTIONS)
        # The wrapper's search() builds a match object per call (~9 us); the bare
        # RE2 object answers a yes/no question in ~1 us per short key.
        self._match = re2._re2.RE2(translated, _TEST_OPTIONS).Match
        self._batch: Any = None
        batch = re2._re2.RE2(translated, _BATCH_OPTIONS)
        if batch.ok():
            self._batch = batch.Match

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
    except PosixRegexError:
        raise
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
    if rx._batch is None:
        _match_each(rx, keys, max, out)
        return out
    page: list[bytes] = []
    for k in keys:
        page.append(k)
        if len(page) == _BATCH_KEYS:
            if _match_page(rx, page, max, out):
                return out
            page = []
    if page:
        _match_page(rx, page, max, out)
    return out


def _match_each(rx: PosixRegex, keys: Iterable[bytes], max: int, out: list[bytes]) -> bool:
    """Match key by key; returns whether ``max`` was reached."""
    test = rx.test
    for k in keys:
        if test(_cstr(k) if b"\0" in k else k):
            out.append(k)
            if len(out) == max:
                return True
    return False


def _match_page(rx: PosixRegex, page: list[bytes], max: int, out: list[bytes]) -> bool:
    """Match a page of keys in one scan of their newline-joined text (see
    ``_BATCH_OPTIONS``); returns whether ``max`` was reached."""
    plain = [_cstr(k) if b"\0" in k else k for k in page]
    text = b"\n".join(plain)
    if text.count(b"\n") != len(plain) - 1:  # a key holds a newline
        return _match_each(rx, page, max, out)
    starts = []
    at = 0
    for k in plain:
        starts.append(at)
        at += len(k) + 1
    match = rx._batch
    size = len(text)
    pos = 0
    while pos <= size:
        found = match(_UNANCHORED, text, pos, size)[0][0]
        if found < 0:
            break
        i = bisect.bisect_right(starts, found) - 1
        out.append(page[i])
        if len(out) == max:
            return True
        pos = starts[i + 1] if i + 1 < len(starts) else size + 1
    return False


def _expand(alt: bytes, m: Any, groups: int) -> bytes:
    """A replacement with ``$0``-``$9`` (groups), ``$&`` (the match); ``$x`` gives ``x``
    and a final ``$`` nothing (KC's rules)."""
    if b"$" not in alt:
        return alt
    out = bytearray()
    i = 0
    n = len(alt)
    while i < n:
        c = alt[i]
        if c == 0x24:  # '$'
            if i + 1 >= n:
                break  # a '$' at the very end is dropped, as by KC
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
    while pos < n:  # KC's Regex::replace: after an empty match at pos, stop
        m = rx.search(s, pos)
        if m is None:
            break
        start, end = m.start(), m.end()
        out += s[pos:start]
        out += _expand(a, m, groups)
        advanced = end - pos
        pos = end
        if advanced < 1:
            break
    out += s[pos:]
    return bytes(out)

"""String and number helpers of the ``kt`` module (atoi, split, strstr, bit...).

They follow Kyoto Cabinet's C semantics rather than Python's, because scripts
written for ktserver depend on them: number parsing stops at the first garbage
character instead of failing, and the matching helpers see C strings (they stop
at a NUL byte).  ``kt.regex`` lives with the server's regex engine
(:func:`ktstore.server.posixregex.kt_regex`).
All functions take and return ``bytes``.
"""

from __future__ import annotations

import math
import re

from ktstore.protocol.expire import kt_atoi
from ktstore.protocol.limits import INT64MAX, INT64MIN

_SPACES = bytes(range(1, 33))
_M32 = 0xFFFFFFFF


def _cstr(data: bytes) -> bytes:
    """The C-string view of ``data``: everything before the first NUL."""
    nul = data.find(b"\0")
    return data if nul < 0 else data[:nul]


def atoi(data: bytes) -> int:
    """KC ``atoi`` (``kt.atoi``): the protocol core's parser, on the C-string view."""
    return kt_atoi(_cstr(data))


_PREFIX_SHIFT = {b"k": 10, b"m": 20, b"g": 30, b"t": 40, b"p": 50, b"e": 60}


def atoix(data: bytes) -> int:
    """KC ``atoix``: like :func:`atof` without exponent, then a binary metric
    prefix (K M G T P E, any case); the result saturates at the int64 bounds."""
    s = _cstr(data).lstrip(_SPACES)
    sign = 1
    if s[:1] == b"-":
        sign, s = -1, s[1:]
    elif s[:1] == b"+":
        s = s[1:]
    m = re.match(rb"([0-9]*)(?:\.([0-9]*))?", s)
    assert m is not None
    num = float(int(m.group(1))) if m.group(1) else 0.0
    if m.group(2):
        num += float(b"0." + m.group(2))
    num *= sign
    rest = s[m.end() :].lstrip(_SPACES)
    shift = _PREFIX_SHIFT.get(rest[:1].lower())
    if shift:
        num *= float(1 << shift)
    if num >= INT64MAX:
        return INT64MAX
    if num <= INT64MIN:
        return INT64MIN
    return int(num)


_FLOAT_RE = re.compile(rb"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def atof(data: bytes) -> float:
    """KC ``atof``: the longest numeric prefix (``inf``/``nan`` too), else 0.0."""
    s = _cstr(data).lstrip(_SPACES)
    sign = 1.0
    if s[:1] == b"-":
        sign, s = -1.0, s[1:]
    elif s[:1] == b"+":
        s = s[1:]
    low = s[:3].lower()
    if low == b"inf":
        return sign * math.inf
    if low == b"nan":
        return math.nan
    m = _FLOAT_RE.match(s)
    if not m:
        return 0.0
    try:
        return sign * float(m.group(0))
    except (ValueError, OverflowError):  # pragma: no cover - regex guarantees the syntax
        return 0.0


def split(data: bytes, delims: bytes | None = None) -> list[bytes]:
    """``kt.split``: cut at any byte of ``delims``; empty fields are kept.

    With delimiters the source is seen as a C string (KT walks it with
    ``strchr``), without them it is cut at every NUL byte.
    """
    if delims is None:
        return data.split(b"\0")
    src = _cstr(data)
    dset = set(_cstr(delims))
    if not dset:
        return [src]
    out: list[bytes] = []
    start = 0
    for i, c in enumerate(src):
        if c in dset:
            out.append(src[start:i])
            start = i + 1
    out.append(src[start:])
    return out


def bit(mode: bytes, num: float, aux: float = 0) -> int:
    """``kt.bit``: and/or/xor/not/left/right on unsigned 32-bit integers."""
    n = _to_u32(num)
    a = _to_u32(aux)
    m = mode.lower()
    if m == b"and":
        n &= a
    elif m == b"or":
        n |= a
    elif m == b"xor":
        n ^= a
    elif m == b"not":
        n = ~n
    elif m == b"left":
        n = n << a if a < 32 else 0
    elif m == b"right":
        n = n >> a if a < 32 else 0
    return n & _M32


def _to_u32(num: float) -> int:
    if isinstance(num, float):
        if not math.isfinite(num):
            return 0
        num = int(num)
    return num & _M32


def strstr(data: bytes, pat: bytes, alt: bytes | None = None) -> int | bytes:
    """``kt.strstr``: 1-based index of ``pat`` (0 if absent), or with ``alt``
    the string with every occurrence replaced (no meta characters)."""
    s, p = _cstr(data), _cstr(pat)
    if alt is None:
        return s.find(p) + 1
    if not p:
        return s
    return s.replace(p, _cstr(alt))


def strfwm(data: bytes, pat: bytes) -> bool:
    """``kt.strfwm``: does the string start with ``pat``?"""
    return _cstr(data).startswith(_cstr(pat))


def strbwm(data: bytes, pat: bytes) -> bool:
    """``kt.strbwm``: does the string end with ``pat``?"""
    return _cstr(data).endswith(_cstr(pat))

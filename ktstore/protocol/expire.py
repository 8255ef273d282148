"""Expiration times: the rules of ktserver (server side) and of the client's ``expire_time``.

On the wire an ``xt`` is a signed 64-bit integer: negative means the absolute epoch
second ``-xt``, non-negative means ``now + xt``; the result is clamped to XTMAX
(2**40-1), which means "never expires" (docs/protocol.md, "Expiration"). HTTP sends xt as text,
parsed with Kyoto Cabinet's forgiving ``atoi`` (so ``xt=abc`` is 0, i.e. "now").
RESTful PUT takes an ``X-Kt-Xt`` header parsed by ``strmktime``, always absolute.

No clock is read here: ``now`` is always passed in by the caller.
"""

from __future__ import annotations

import datetime as _dt
import math

from ktstore.errors import InvalidArgument
from ktstore.protocol.dumps import wrap_int64
from ktstore.protocol.limits import INT64MAX, INT64MIN, RELATIVE_XT_LIMIT, XTMAX

__all__ = [
    "kt_atoi",
    "kt_atoih",
    "resolve_xt",
    "to_wire_xt",
    "parse_kt_time",
    "rest_put_xt",
]


def _skip_blanks(data: bytes, pos: int = 0) -> int:
    # C: while (*s > '\0' && *s <= ' ') on a signed char: only 0x01-0x20 are skipped
    size = len(data)
    while pos < size and 0 < data[pos] <= 0x20:
        pos += 1
    return pos


def kt_atoi(data: bytes | str) -> int:
    """Kyoto Cabinet's ``atoi``: skip blanks, optional sign, digits up to the first other
    character; no digits gives 0. Overflow wraps like the C code."""
    if isinstance(data, str):
        data = data.encode("latin-1", "replace")
    if data.isdigit() and len(data) < 19:
        return int(data)  # the common case, "123"
    pos = _skip_blanks(data)
    size = len(data)
    sign = 1
    if pos < size and data[pos] in b"+-":
        sign = -1 if data[pos] == 0x2D else 1
        pos += 1
    start = pos
    while pos < size and 0x30 <= data[pos] <= 0x39:
        pos += 1
    if pos == start:
        return 0
    return wrap_int64(int(data[start:pos]) * sign)


def kt_atoih(data: bytes | str) -> int:
    """Kyoto Cabinet's ``atoih``: hexadecimal, optional ``0x`` prefix, stops at garbage."""
    if isinstance(data, str):
        data = data.encode("latin-1", "replace")
    pos = _skip_blanks(data)
    if data[pos : pos + 2] in (b"0x", b"0X"):
        pos += 2
    start = pos
    size = len(data)
    while pos < size and data[pos] in b"0123456789abcdefABCDEF":
        pos += 1
    if pos == start:
        return 0
    return wrap_int64(int(data[start:pos], 16))


def resolve_xt(xt: int, now: int) -> int:
    """The absolute expiration ktserver stores for a wire ``xt`` at time ``now``.

    Negative is absolute (``-xt``), non-negative relative (``now + xt``); the result is
    clamped to XTMAX, which means "never". Mirrors ktserver's halving guards against
    overflow, so INT64MAX and INT64MIN both end up as XTMAX.
    """
    if xt < 0:
        if xt < INT64MIN // 2:
            xt = INT64MIN // 2
        xt = -xt
    else:
        if xt > INT64MAX // 2:
            xt = INT64MAX // 2
        xt += now
    return XTMAX if xt > XTMAX else xt


def to_wire_xt(expire_time, now: float | None = None) -> int:
    """Convert a client ``expire_time`` to the wire xt.

    * ``None`` -> INT64MAX (no expiration);
    * int/float seconds below 180 days (15552000) -> relative (sent as is, floats
      rounded up so that a positive fraction never becomes "now");
    * int/float of 180 days or more -> an absolute unix time (sent negative);
    * ``datetime.timedelta`` -> relative seconds;
    * ``datetime.datetime`` -> absolute; a **naive datetime is taken as UTC** (not local
      time, unlike ukt: a server's clock is usually compared in UTC and local-time
      conversion breaks across DST changes).

    Booleans, negative numbers, NaN and infinities raise InvalidArgument. ``now`` is
    accepted for symmetry with the server-side helpers but the result does not depend
    on it: relative times stay relative on the wire, so client and server clocks need
    not agree.
    """
    if expire_time is None:
        return INT64MAX
    if isinstance(expire_time, bool):
        raise InvalidArgument("expire_time must be a number of seconds, a datetime or a timedelta")
    if isinstance(expire_time, _dt.timedelta):
        seconds = expire_time.total_seconds()
        if seconds < 0:
            raise InvalidArgument(f"negative expire_time: {expire_time!r}")
        return math.ceil(seconds)
    if isinstance(expire_time, _dt.datetime):
        if expire_time.tzinfo is None:
            expire_time = expire_time.replace(tzinfo=_dt.timezone.utc)
        stamp = math.ceil(expire_time.timestamp())
        if stamp <= 0:
            raise InvalidArgument(f"expire_time before the epoch: {expire_time!r}")
        return -stamp
    if isinstance(expire_time, int):
        seconds = expire_time
    elif isinstance(expire_time, float):
        if not math.isfinite(expire_time) or expire_time < 0:
            raise InvalidArgument(f"expire_time must be finite and >= 0: {expire_time!r}")
        seconds = math.ceil(expire_time)
    else:
        try:
            seconds = math.ceil(expire_time)  # Decimal, Fraction, numpy numbers...
        except (TypeError, ValueError, OverflowError):
            raise InvalidArgument(
                f"expire_time must be a number, datetime or timedelta, not {type(expire_time).__name__}"
            ) from None
    if seconds < 0:
        raise InvalidArgument(f"negative expire_time: {expire_time!r}")
    if seconds >= RELATIVE_XT_LIMIT:
        return -min(seconds, INT64MAX)
    return seconds


_MONTHS = {
    b"jan": 0,
    b"feb": 1,
    b"mar": 2,
    b"apr": 3,
    b"may": 4,
    b"jun": 5,
    b"jul": 6,
    b"aug": 7,
    b"sep": 8,
    b"oct": 9,
    b"nov": 10,
    b"dec": 11,
}

_ZONES = {
    b"JST": 9,
    b"CCT": 8,
    b"KST": 9,
    b"EDT": -4,
    b"EST": -5,
    b"CDT": -5,
    b"CST": -6,
    b"MDT": -6,
    b"MST": -7,
    b"PDT": -7,
    b"PST": -8,
    b"HDT": -9,
    b"HST": -10,
}


def _timegm(year: int, mon: int, mday: int, hour: int, minute: int, sec: int) -> int:
    """``timegm`` over a struct tm (year since 1900, month 0-11) with C-style normalisation."""
    year += 1900 + mon // 12
    mon %= 12
    days = _dt.date(year, mon + 1, 1).toordinal() - _EPOCH_ORDINAL + mday - 1
    return ((days * 24 + hour) * 60 + minute) * 60 + sec


_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()


def _w3c(s: bytes, sep: bytes, time_sep: bytes) -> int:
    """strmktime's ``YYYY-MM-DDThh:mm:ss[.frac][+hh:mm]`` (and ``YYYY/MM/DD hh:mm:ss``)."""
    year = kt_atoi(s) - 1900
    mon = 0
    mday = 1
    hour = minute = sec = 0
    pv = s.find(sep)
    if pv == 4:
        rp = pv + 1
        mon = kt_atoi(s[rp:]) - 1
        pv = s.find(sep, rp)
        if pv == 7:
            rp = pv + 1
            mday = kt_atoi(s[rp:])
            pv = s.find(time_sep, rp)
            if pv == 10:
                rp = pv + 1
                hour = kt_atoi(s[rp:])
                pv = s.find(b":", rp)
                if pv == 13:
                    rp = pv + 1
                    minute = kt_atoi(s[rp:])
                pv = s.find(b":", rp)
                if pv == 16:
                    rp = pv + 1
                    sec = kt_atoi(s[rp:])
                pv = s.find(b".", rp)
                if pv >= 19:
                    rp = pv + 1
                pv = rp
                while pv < len(s) and 0x30 <= s[pv] <= 0x39:
                    pv += 1
                tail = s[pv:]
                if tail[:1] in (b"+", b"-") and len(tail) >= 6 and tail[3:4] == b":":
                    offset = kt_atoi(tail[1:]) * 3600 + kt_atoi(tail[4:]) * 60
                    sec -= offset if tail[:1] == b"+" else -offset
    return _timegm(year, mon, mday, hour, minute, sec)


def _rfc_date(s: bytes) -> int:
    """strmktime's RFC 1123/822 branch: ``[Day,] DD Mon YYYY hh:mm:ss [+hhmm|zone]``."""
    crp = 4 if len(s) >= 4 and s[3:4] == b"," else 0
    while s[crp : crp + 1] == b" ":
        crp += 1
    mday = kt_atoi(s[crp:])
    while crp < len(s) and (0x30 <= s[crp] <= 0x39 or s[crp] == 0x20):
        crp += 1
    mon = _MONTHS.get(s[crp : crp + 3].lower(), -1)
    if mon >= 0:
        crp += 3
    while s[crp : crp + 1] == b" ":
        crp += 1
    year = kt_atoi(s[crp:])
    if year >= 1969:
        year -= 1900
    while crp < len(s) and 0x30 <= s[crp] <= 0x39:
        crp += 1
    while s[crp : crp + 1] == b" ":
        crp += 1
    hour = minute = sec = 0
    if mday > 0 and mon >= 0 and year >= 0:
        rest = s[crp:]
        if len(rest) >= 8 and rest[2:3] == b":" and rest[5:6] == b":":
            hour = kt_atoi(rest[0:])
            minute = kt_atoi(rest[3:])
            sec = kt_atoi(rest[6:])
            if len(rest) >= 14 and rest[8:9] == b" " and rest[9:10] in (b"+", b"-"):
                d = [c - 0x30 for c in rest[10:14]]
                offset = d[0] * 36000 + d[1] * 3600 + d[2] * 600 + d[3] * 60
                sec -= offset if rest[9:10] == b"+" else -offset
            elif len(rest) > 9:
                sec -= _ZONES.get(rest[9:], 0) * 3600
    # as ktserver: whatever was parsed goes to timegm (garbage lands before 1970)
    return _timegm(year, mon, mday, hour, minute, sec)


def parse_kt_time(text: str | bytes, now: float | None = None) -> int | None:
    """ktserver's ``strmktime`` (used for the RESTful ``X-Kt-Xt`` header).

    Accepts decimal epoch seconds, ``0x`` hexadecimal, W3CDTF
    (``YYYY-MM-DDThh:mm:ss[+hh:mm]``), ``YYYY/MM/DD hh:mm:ss`` and RFC 1123/822 dates, and
    ``<n>s``/``<n>m``/``<n>h``/``<n>d`` durations, which it returns as plain seconds,
    exactly like ktserver (so a PUT with ``X-Kt-Xt: 1h`` means epoch 3600: expired).
    Returns None where strmktime returns INT64MIN (empty or unparseable). ``now`` is not
    used: strmktime never looks at the clock; it is accepted for the documented signature.
    """
    s = text.encode("latin-1", "replace") if isinstance(text, str) else bytes(text)
    if b"\0" in s:
        s = s[: s.index(b"\0")]
    s = s[_skip_blanks(s) :]
    if not s:
        return None
    if s[:2] in (b"0x", b"0X"):
        return kt_atoih(s[2:])
    t = kt_atoi(s)
    pv = 0
    while pv < len(s) and 0x30 <= s[pv] <= 0x39:
        pv += 1
    pv = _skip_blanks(s, pv)
    if pv >= len(s):
        return t
    unit = s[pv : pv + 1].lower()
    after = s[pv + 1 : pv + 2]
    if unit in (b"s", b"m", b"h", b"d") and (after == b"" or after[0] <= 0x20):
        return t * {b"s": 1, b"m": 60, b"h": 3600, b"d": 86400}[unit]
    try:
        if len(s) > 4 and s[4:5] == b"-":
            return _w3c(s, b"-", b"T")
        if len(s) > 4 and s[4:5] == b"/":
            return _w3c(s, b"/", b" ")
        return _rfc_date(s)
    except (ValueError, OverflowError):
        return None  # a year or month our calendar cannot represent


def rest_put_xt(header: str | bytes | None) -> int:
    """The wire xt ktserver uses for a RESTful PUT with this ``X-Kt-Xt`` header:
    ``-t`` for a parsed time ``0 < t < XTMAX``, otherwise INT64MAX (no expiration)."""
    if header is None:
        return INT64MAX
    t = parse_kt_time(header)
    if t is not None and 0 < t < XTMAX:
        return -t
    return INT64MAX

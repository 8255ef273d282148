"""Order-preserving, self-delimiting encoding of index values into key bytes.

Index entries live in a tree database, whose cursor walks keys in plain byte
order.  For a range scan to return the right records in the right order, the
bytes of an encoded value must compare exactly like the values themselves --
including negative numbers (a signed big-endian int sorts them *after* the
positives, kvkit's bug), floats, decimals, datetimes in any time zone, and
text.  Every encoding is also *self-delimiting* (no encoding is a proper prefix
of another one of the same kind that compares differently), so the primary key
can simply be appended after the value and ``value + pk`` keys still sort by
value first.

``None`` encodes to a single byte below every other encoding, so optional
fields can be indexed and ``None`` sorts first.

The functions are pure and symmetric (``decode_*`` exists for every kind) so
the maintenance tools can show what an index entry holds.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import math
import struct

__all__ = [
    "NONE",
    "encode_none",
    "encode_bool",
    "encode_int",
    "decode_int",
    "encode_float",
    "decode_float",
    "encode_decimal",
    "decode_decimal",
    "encode_text",
    "encode_text_prefix",
    "decode_text",
    "encode_bytes",
    "encode_bytes_prefix",
    "decode_bytes",
    "encode_datetime",
    "decode_datetime",
    "encode_date",
    "decode_date",
    "prefix_successor",
    "invert",
    "encode_fixed",
    "invert_range",
]

# Every value encoding starts with a byte >= 0x02, so the one-byte None sorts first.
NONE = b"\x01"
_PRESENT = b"\x02"

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def encode_none() -> bytes:
    return NONE


def encode_bool(value: bool) -> bytes:
    return _PRESENT + (b"\x01" if value else b"\x00")


# ---- integers -------------------------------------------------------------------------
# Arbitrary precision: a header byte carries the sign and the magnitude's length, so a
# longer positive number sorts after a shorter one and a longer negative one before it.
# Header 0x80 is zero; 0x80+n: positive with n magnitude bytes; 0x80-n: negative, with the
# magnitude's bytes inverted (so a bigger magnitude sorts lower).


def encode_int(value: int) -> bytes:
    """Order-preserving bytes for any Python int with |value| < 256**126 (the header
    of a longer negative one would reach 0x01, the byte of ``None``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected int, got {type(value).__name__}")
    if value == 0:
        return b"\x80"
    mag = abs(value)
    n = (mag.bit_length() + 7) // 8
    if n > 126:
        raise OverflowError("integer too large to index (more than 126 bytes)")
    raw = mag.to_bytes(n, "big")
    if value > 0:
        return bytes([0x80 + n]) + raw
    return bytes([0x80 - n]) + bytes(255 - b for b in raw)


def decode_int(data: bytes, pos: int = 0) -> tuple[int, int]:
    """``(value, end)`` for the int encoded at ``data[pos:]``."""
    head = data[pos]
    if head == 0x80:
        return 0, pos + 1
    if head > 0x80:
        n = head - 0x80
        return int.from_bytes(data[pos + 1 : pos + 1 + n], "big"), pos + 1 + n
    n = 0x80 - head
    raw = bytes(255 - b for b in data[pos + 1 : pos + 1 + n])
    return -int.from_bytes(raw, "big"), pos + 1 + n


# ---- floats ---------------------------------------------------------------------------
# IEEE 754 doubles: flip the sign bit of positives and every bit of negatives; then plain
# byte order is numeric order.  -0.0 is folded into 0.0 (they are equal in Python, so
# they must find the same index entries); NaN is refused (it has no place in an order).


def encode_float(value: float) -> bytes:
    value = float(value)
    if math.isnan(value):
        raise ValueError("NaN cannot be indexed: it has no order")
    if value == 0.0:
        value = 0.0
    (bits,) = struct.unpack(">Q", struct.pack(">d", value))
    bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | (1 << 63)
    return _PRESENT + bits.to_bytes(8, "big")


def decode_float(data: bytes, pos: int = 0) -> tuple[float, int]:
    bits = int.from_bytes(data[pos + 1 : pos + 9], "big")
    bits = bits & ~(1 << 63) if bits >> 63 else bits ^ 0xFFFFFFFFFFFFFFFF
    (value,) = struct.unpack(">d", bits.to_bytes(8, "big"))
    return value, pos + 9


# ---- decimals -------------------------------------------------------------------------
# A finite nonzero decimal is 0.d1d2...dk x 10**e with d1 != 0 and no trailing zeros.
# Positive: 0x81, encode_int(e), the digits as bytes 0x31..0x39/0x30, then 0x00 (shorter
# digit strings sort first: 0.12 < 0.123).  Negative: 0x7f and the positive form's bytes
# inverted.  Zero: 0x80.  1, 1.0 and 1.00 are equal and encode alike.


def encode_decimal(value: decimal.Decimal | int | str) -> bytes:
    d = decimal.Decimal(value)
    if not d.is_finite():
        raise ValueError("only finite decimals can be indexed")
    if d.is_zero():
        return b"\x80"
    sign, digits, exp = d.as_tuple()
    # number = 0.<digits> x 10**(len(digits) + exp), after stripping leading zeros
    stripped = "".join(map(str, digits)).lstrip("0")
    e = len(stripped) + int(exp)
    ds = stripped.rstrip("0")
    body = encode_int(e) + ds.encode("ascii") + b"\x00"
    if sign == 0:
        return b"\x81" + body
    return b"\x7f" + bytes(255 - b for b in body)


def decode_decimal(data: bytes, pos: int = 0) -> tuple[decimal.Decimal, int]:
    head = data[pos]
    if head == 0x80:
        return decimal.Decimal(0), pos + 1
    negative = head == 0x7F
    # The exponent's int encoding may itself hold 00/ff bytes: read it by its length
    # first, then look for the terminator among the digits (which never are 00 or ff).
    first = data[pos + 1]
    if negative:
        first = 255 - first
    n = abs(first - 0x80)
    int_end = pos + 2 + n
    end = data.index(b"\xff" if negative else b"\x00", int_end)
    body = data[pos + 1 : end + 1]
    if negative:
        body = bytes(255 - b for b in body)
    e, p = decode_int(body, 0)
    digits = body[p:-1].decode("ascii")
    d = decimal.Decimal(f"{'-' if negative else ''}0.{digits}E{e}")
    return d, end + 1


# ---- text and bytes -------------------------------------------------------------------
# 0x00 inside the data is escaped as 00 ff; the terminator is 00 01, which sorts below
# any continuation, so "ab" < "abc" and "a\x00" still sorts right.  UTF-8 byte order is
# code point order, so text compares like Python str.


def _escape(raw: bytes) -> bytes:
    return raw.replace(b"\x00", b"\x00\xff")


def encode_bytes(value: bytes) -> bytes:
    return _PRESENT + _escape(bytes(value)) + b"\x00\x01"


def encode_bytes_prefix(value: bytes) -> bytes:
    """Key prefix shared by every encoded bytes value that starts with ``value``."""
    return _PRESENT + _escape(bytes(value))


def decode_bytes(data: bytes, pos: int = 0) -> tuple[bytes, int]:
    out = bytearray()
    i = pos + 1
    while True:
        j = data.index(b"\x00", i)
        out += data[i:j]
        if data[j + 1] == 0xFF:
            out += b"\x00"
            i = j + 2
        else:
            return bytes(out), j + 2


def encode_text(value: str) -> bytes:
    return encode_bytes(value.encode("utf-8"))


def encode_text_prefix(value: str) -> bytes:
    return encode_bytes_prefix(value.encode("utf-8"))


def decode_text(data: bytes, pos: int = 0) -> tuple[str, int]:
    raw, end = decode_bytes(data, pos)
    return raw.decode("utf-8"), end


# ---- dates and times ------------------------------------------------------------------
# An aware datetime is the instant it names: microseconds since the epoch (UTC), as an
# int, so 12:00+02:00 sorts before 11:00+00:00.  A date is its proleptic ordinal.


def encode_datetime(value: _dt.datetime) -> bytes:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("only timezone-aware datetimes can be indexed")
    delta = value - _EPOCH
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return encode_int(micros)


def decode_datetime(data: bytes, pos: int = 0) -> tuple[_dt.datetime, int]:
    micros, end = decode_int(data, pos)
    return _EPOCH + _dt.timedelta(microseconds=micros), end


def encode_date(value: _dt.date) -> bytes:
    return encode_int(value.toordinal())


def decode_date(data: bytes, pos: int = 0) -> tuple[_dt.date, int]:
    n, end = decode_int(data, pos)
    return _dt.date.fromordinal(n), end


def prefix_successor(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (exclusive
    upper bound of a prefix scan), or ``None`` when there is none (all 0xff)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return None
    p[-1] += 1
    return bytes(p)


# ---- descending components of composite keys ------------------------------------------
# A composite index key is the concatenation of its parts' encodings.  Every encoding is
# prefix-free (none is a proper prefix of another), so comparing two concatenations
# compares the first part, then the next...  A descending part is stored with every byte
# inverted (255 - b): for a prefix-free set of codes, inversion reverses the order.


def invert(data: bytes) -> bytes:
    """Every byte of ``data`` inverted: the encoding of a descending part."""
    return data.translate(_INVERT)


_INVERT = bytes(255 - b for b in range(256))


def invert_range(lo: bytes, hi: bytes | None) -> tuple[bytes, bytes | None] | None:
    """The range of inverted codes matching the codes of ``[lo, hi)`` (``hi`` ``None``:
    no upper bound), or ``None`` when it is empty.

    Valid when no code is a proper prefix of ``lo`` or ``hi``, which holds for every
    bound a query builds (a code, a code's successor, a text prefix, ``02``): then
    ``c >= lo`` exactly when ``invert(c) < succ(invert(lo))``, and ``c < hi`` exactly
    when ``invert(c) >= succ(invert(hi))``."""
    new_hi = prefix_successor(invert(lo)) if lo else None
    if hi is None:
        new_lo = b""
    else:
        succ = prefix_successor(invert(hi))
        if succ is None:
            return None
        new_lo = succ
    if new_hi is not None and new_lo >= new_hi:
        return None
    return new_lo, new_hi


def encode_fixed(value: bytes) -> bytes:
    """Bytes of a fixed length (a UUID's 16): no terminator is needed, every code of
    the kind has the same length, so the set is prefix-free."""
    return _PRESENT + bytes(value)

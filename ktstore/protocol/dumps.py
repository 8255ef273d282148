"""Kyoto Cabinet's compact byte formats: varints, mapdump/arraydump, counter values.

* varint: **big-endian** base-128 (every byte but the last has bit 7 set), not LEB128:
  200 -> ``81 48`` (docs/protocol.md, "Dumps and varints"). Used by mapdump/arraydump and by update logs.
* mapdump: per entry ``varint(klen) varint(vlen) key value``; arraydump: per element
  ``varint(len) bytes``. These are what ``kt.mapdump``/``kt.arraydump`` produce in server
  scripts, so the client and our Lua host must agree with them byte for byte. Loaders
  stop silently at truncated input, as Kyoto Cabinet's do.
* counters: ``increment`` stores an 8-byte big-endian signed integer; ``increment_double``
  16 bytes: big-endian int64 integer part then int64 fraction x 10**15 (§3.7).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable

from ktstore.errors import Incomplete, InvalidArgument, ProtocolError, SerializationError
from ktstore.protocol.limits import INT64MAX, INT64MIN

__all__ = [
    "encode_varint",
    "decode_varint",
    "mapdump",
    "mapload",
    "arraydump",
    "arrayload",
    "encode_int_counter",
    "decode_int_counter",
    "encode_double_counter",
    "decode_double_counter",
    "increment_double_counter",
    "wrap_int64",
    "DECUNIT",
]

_SMALL = [bytes([i]) for i in range(128)]
_U64_MAX = (1 << 64) - 1
_MAX_VARINT_BYTES = 10  # 64 bits in 7-bit groups


def encode_varint(n: int) -> bytes:
    """KC's big-endian base-128 varint of an unsigned 64-bit number."""
    if 0 <= n < 0x80:
        return _SMALL[n]
    if n < 0 or n > _U64_MAX:
        raise InvalidArgument(f"varint out of range: {n}")
    out = bytearray((n & 0x7F,))
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.reverse()
    return bytes(out)


def decode_varint(buf, pos: int = 0) -> tuple[int, int]:
    """Read one varint at ``pos``: ``(value, end)``; Incomplete if the buffer ends inside it,
    ProtocolError past 10 bytes (more than 64 bits)."""
    size = len(buf)
    value = 0
    p = pos
    while p < size:
        c = buf[p]
        p += 1
        value = (value << 7) | (c & 0x7F)
        if c < 0x80:
            return value, p
        if p - pos >= _MAX_VARINT_BYTES:
            raise ProtocolError("varint longer than 10 bytes")
    raise Incomplete(p - pos + 1)


def _read_varint(buf: bytes, pos: int, size: int) -> tuple[int, int]:
    """decode_varint for the loaders: -1 as the position when the data ends inside it."""
    value = 0
    while pos < size:
        c = buf[pos]
        pos += 1
        if c < 0x80:
            return (value << 7) | c, pos
        value = (value << 7) | (c & 0x7F)
    return 0, -1


def mapdump(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Serialize pairs as KC's mapdump: ``varint(klen) varint(vlen) key value`` each."""
    parts: list = []
    append = parts.append
    small = _SMALL
    for key, value in pairs:
        klen = len(key)
        vlen = len(value)
        append(small[klen] if klen < 0x80 else encode_varint(klen))
        append(small[vlen] if vlen < 0x80 else encode_varint(vlen))
        append(key)
        append(value)
    return b"".join(parts)


def mapload(data) -> list[tuple[bytes, bytes]]:
    """Parse a mapdump into pairs in order; stops silently at truncated input."""
    if type(data) is not bytes:
        data = bytes(data)
    size = len(data)
    pos = 0
    out: list[tuple[bytes, bytes]] = []
    append = out.append
    while pos < size:
        klen, pos = _read_varint(data, pos, size)
        if pos < 0:
            break
        vlen, pos = _read_varint(data, pos, size)
        if pos < 0:
            break
        kend = pos + klen
        vend = kend + vlen
        if vend > size:
            break
        append((data[pos:kend], data[kend:vend]))
        pos = vend
    return out


def arraydump(items: Iterable[bytes]) -> bytes:
    """Serialize byte strings as KC's arraydump: ``varint(len) bytes`` each."""
    parts: list = []
    append = parts.append
    small = _SMALL
    for item in items:
        n = len(item)
        append(small[n] if n < 0x80 else encode_varint(n))
        append(item)
    return b"".join(parts)


def arrayload(data) -> list[bytes]:
    """Parse an arraydump into its elements; stops silently at truncated input."""
    if type(data) is not bytes:
        data = bytes(data)
    size = len(data)
    pos = 0
    out: list[bytes] = []
    append = out.append
    while pos < size:
        n, pos = _read_varint(data, pos, size)
        if pos < 0:
            break
        end = pos + n
        if end > size:
            break
        append(data[pos:end])
        pos = end
    return out


# --- counters ----------------------------------------------------------------------------

_Q = struct.Struct(">q")
_QQ = struct.Struct(">qq")

#: Fixed-point unit of increment_double's fraction field.
DECUNIT = 10**15


def encode_int_counter(n: int) -> bytes:
    """The 8-byte big-endian signed value ``increment`` reads and writes."""
    if not INT64MIN <= n <= INT64MAX:
        raise InvalidArgument(f"counter out of the int64 range: {n}")
    return _Q.pack(n)


def decode_int_counter(data: bytes) -> int:
    """Read an ``increment`` counter value; anything but 8 bytes is not a counter."""
    if len(data) != 8:
        raise SerializationError(f"an integer counter is 8 bytes, got {len(data)}")
    return _Q.unpack(data)[0]


def _int64(x: float) -> int:
    """C's ``(int64_t)`` of a finite value on x86-64: truncation, INT64MIN when out of range."""
    if -9223372036854775808.0 <= x < 9223372036854775808.0:
        return int(x)
    return INT64MIN


def wrap_int64(n: int) -> int:
    """Two's complement wrap-around of int64 arithmetic: ktserver's counters overflow so."""
    return ((n + (1 << 63)) & ((1 << 64) - 1)) - (1 << 63)


def _fract_units(fract: float) -> int:
    """``(int64_t)(fract * DECUNIT)`` as KC computes it, in x87 ``long double``.

    The product is rounded to 64 significant bits (nearest, ties to even) and then
    truncated, so 0.000001 gives 999999999, not the 1000000000 of a double product.
    """
    num, den = fract.as_integer_ratio()  # den is a power of two
    n = abs(num) * DECUNIT
    shift = n.bit_length() - 64
    if shift > 0:
        low = n & ((1 << shift) - 1)
        n >>= shift
        half = 1 << (shift - 1)
        if low > half or (low == half and n & 1):
            n += 1
        n <<= shift
    units = n // den
    return -units if num < 0 else units


def encode_double_counter(x: float) -> bytes:
    """The 16-byte value ``increment_double`` keeps: int64 integer part, int64 fraction x 1e15.

    Both parts carry the sign of ``x`` (``modfl``); NaN is stored as (INT64MIN, INT64MIN)
    and infinities as (INT64MAX or INT64MIN, 0), as ktserver does.  A finite ``x``
    beyond the int64 range is stored as INT64MIN (KC's plain ``(int64_t)`` cast),
    which reads back as ``-inf`` whatever its sign; the fraction is KC's truncated
    ``long double`` product (:func:`_fract_units`).
    """
    x = float(x)
    if math.isnan(x):
        return _QQ.pack(INT64MIN, INT64MIN)
    if math.isinf(x):
        return _QQ.pack(INT64MAX if x > 0 else INT64MIN, 0)
    fract, integ = math.modf(x)
    return _QQ.pack(_int64(integ), _fract_units(fract))


def increment_double_counter(data: bytes, num: float) -> tuple[float, bytes | None]:
    """KC's ``increment_double`` on an existing 16-byte value: ``(result, new value)``.

    The parts of ``num`` are added to the stored parts separately (int64 arithmetic
    that wraps, the fraction carried into the integer part at 1e15), as KC does.  The
    new value is ``None`` when the record is left alone: a stored NaN (the result is
    NaN, which the caller reports as an error), a stored infinity (the result), or
    ``num == 0`` (the current value).
    """
    if len(data) != 16:
        raise SerializationError(f"a double counter is 16 bytes, got {len(data)}")
    integ, fract = _QQ.unpack(data)
    if integ == INT64MIN and fract == INT64MIN:
        return math.nan, None
    if integ == INT64MAX:
        return math.inf, None
    if integ == INT64MIN:
        return -math.inf, None
    if num == 0.0:
        return integ + fract / DECUNIT, None
    if math.isnan(num) or math.isinf(num):
        return num, encode_double_counter(num)
    nfract, ninteg = math.modf(num)
    integ = wrap_int64(integ + _int64(ninteg))
    fract = wrap_int64(fract + _fract_units(nfract))
    if fract >= DECUNIT:
        integ = wrap_int64(integ + 1)
        fract -= DECUNIT
    return integ + fract / DECUNIT, _QQ.pack(integ, fract)


def decode_double_counter(data: bytes) -> float:
    """Read an ``increment_double`` value (16 bytes) as ktserver reports it."""
    if len(data) != 16:
        raise SerializationError(f"a double counter is 16 bytes, got {len(data)}")
    integ, fract = _QQ.unpack(data)
    if integ == INT64MIN and fract == INT64MIN:
        return math.nan
    if integ == INT64MAX:
        return math.inf
    if integ == INT64MIN:
        return -math.inf
    return integ + fract / DECUNIT

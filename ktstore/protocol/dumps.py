"""Kyoto Cabinet's compact byte formats: varints, mapdump/arraydump, counter values.

* varint: **big-endian** base-128 (every byte but the last has bit 7 set), not LEB128:
  200 -> ``81 48`` (kt-protocol §6.6). Used by mapdump/arraydump and by update logs.
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


def encode_double_counter(x: float) -> bytes:
    """The 16-byte value ``increment_double`` keeps: int64 integer part, int64 fraction x 1e15.

    Both parts carry the sign of ``x`` (C ``modf``); NaN is stored as (INT64MIN, INT64MIN)
    and infinities as (INT64MAX or INT64MIN, 0), as ktserver does.
    """
    x = float(x)
    if math.isnan(x):
        return _QQ.pack(INT64MIN, INT64MIN)
    if math.isinf(x):
        return _QQ.pack(INT64MAX if x > 0 else INT64MIN, 0)
    fract, integ = math.modf(x)
    if not INT64MIN < integ < INT64MAX:
        return _QQ.pack(INT64MAX if x > 0 else INT64MIN, 0)
    return _QQ.pack(int(integ), int(fract * DECUNIT))


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

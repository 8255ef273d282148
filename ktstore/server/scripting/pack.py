"""``kt.pack`` / ``kt.unpack``: numbers to and from binary strings.

Format letters (KT's, not Lua 5.3's): ``c C`` int8/uint8, ``s S`` int16/uint16,
``i I`` int32/uint32, ``l L`` int64/uint64, ``f d`` float/double (native =
little-endian here, as on the x86-64 servers KT runs on), ``n N M`` big-endian
uint16/uint32/uint64, ``w`` BER varint.  A letter may be followed by a repeat
count or ``*`` (all the rest).  Values wrap like C casts, so a script that packs
-1 as ``C`` gets 0xFF on both servers.
"""

from __future__ import annotations

import math
import re
import struct

_INT = {
    "c": ("<B", 8),
    "C": ("<B", 8),
    "s": ("<H", 16),
    "S": ("<H", 16),
    "i": ("<I", 32),
    "I": ("<I", 32),
    "l": ("<Q", 64),
    "L": ("<Q", 64),
    "n": (">H", 16),
    "N": (">I", 32),
    "M": (">Q", 64),
}
_UNPACK = {
    "c": "<b",
    "C": "<B",
    "s": "<h",
    "S": "<H",
    "i": "<i",
    "I": "<I",
    "l": "<q",
    "L": "<Q",
    "n": ">H",
    "N": ">I",
    "M": ">Q",
    "f": "<f",
    "F": "<f",
    "d": "<d",
    "D": "<d",
}
_ITEM = re.compile(r"(.)(\*|[0-9]+)?", re.S)
_ALL = 2**31 - 1


def _items(fmt: bytes) -> list[tuple[str, int]]:
    out = []
    for m in _ITEM.finditer(fmt.decode("latin-1")):
        count = m.group(2)
        if count is None:
            n = 1
        elif count == "*":
            n = _ALL
        else:
            n = int(count)
        out.append((m.group(1), n))
    return out


def _to_int(num: float | int) -> int:
    if isinstance(num, float):
        if not math.isfinite(num):
            return 0
        return int(num)
    return num


def varint(n: int) -> bytes:
    """BER encoding: big-endian groups of 7 bits, high bit set on all but the last."""
    n &= (1 << 64) - 1
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def pack(fmt: bytes, values: list[float | int]) -> bytes:
    """Serialize ``values`` (already flattened and converted to numbers)."""
    out = bytearray()
    idx = 0
    total = len(values)
    for letter, count in _items(fmt):
        if idx >= total:
            break
        end = min(idx + min(count, total), total)
        while idx < end:
            num = values[idx]
            if letter in _INT:
                code, bits = _INT[letter]
                out += struct.pack(code, _to_int(num) & ((1 << bits) - 1))
            elif letter in "fF":
                out += struct.pack("<f", _float32(num))
            elif letter in "dD":
                out += struct.pack("<d", float(num))
            elif letter in "wW":
                out += varint(_to_int(num))
            idx += 1
    return bytes(out)


def _float32(num: float | int) -> float:
    try:
        struct.pack("<f", num)
    except OverflowError:
        return math.copysign(math.inf, num)
    return float(num)


def unpack(fmt: bytes, data: bytes) -> list[float | int]:
    """Deserialize ``data``; stops quietly when the data runs out."""
    out: list[float | int] = []
    pos = 0
    size = len(data)
    for letter, count in _items(fmt):
        if pos >= size:
            break
        loop = min(count, size - pos)
        for _ in range(loop):
            if pos >= size:
                break
            if letter in "wW":
                n = 0
                while pos < size:
                    c = data[pos]
                    pos += 1
                    n = (n * 128 + (c & 0x7F)) & ((1 << 64) - 1)
                    if c < 0x80:
                        break
                out.append(n)
                continue
            code = _UNPACK.get(letter)
            if code is None:
                continue
            width = struct.calcsize(code)
            if size - pos < width:
                pos = size
                break
            (v,) = struct.unpack_from(code, data, pos)
            pos += width
            out.append(v)
    return out

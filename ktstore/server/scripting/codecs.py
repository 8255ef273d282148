"""``kt.codec``: the encoders/decoders a script can call, with KC's exact output.

URL encoding uses lowercase hex and keeps ``[A-Za-z0-9_.~-]``; URL decoding has
KC's quirks (``+`` is a space, raw control and non-ASCII bytes are dropped);
Base64 decoding is lenient; quoted-printable escapes with uppercase hex.
``zlib`` means raw deflate, ``deflate`` the zlib format and ``gzip`` gzip, as in
KC's ZLIB modes.  Unknown modes and corrupt compressed input give ``None``
(``nil`` in Lua).
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib

_URL_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = b"0123456789abcdef"


def url_encode(data: bytes) -> bytes:
    out = bytearray()
    for c in data:
        if c in _URL_SAFE:
            out.append(c)
        else:
            out += b"%" + bytes((_HEX[c >> 4], _HEX[c & 15]))
    return bytes(out)


def _hexval(c: int) -> int:
    if 48 <= c <= 57:
        return c - 48
    c |= 0x20
    if 97 <= c <= 102:
        return c - 87
    return -1


def url_decode(data: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        c = data[i]
        if c == 0x25:  # '%'
            if i + 2 < n and _hexval(data[i + 1]) >= 0 and _hexval(data[i + 2]) >= 0:
                out.append(_hexval(data[i + 1]) * 16 + _hexval(data[i + 2]))
                i += 3
                continue
            out.append(c)
        elif c == 0x2B:  # '+'
            out.append(0x20)
        elif c <= 0x20 or c >= 0x7F:
            pass  # KC drops raw control, space and high bytes (signed char compare)
        else:
            out.append(c)
        i += 1
    return bytes(out)


def base_encode(data: bytes) -> bytes:
    return base64.b64encode(data)


def base_decode(data: bytes) -> bytes:
    """Lenient Base64: characters outside the alphabet are skipped, padding optional."""
    clean = re.sub(rb"[^A-Za-z0-9+/]", b"", data.split(b"=", 1)[0])
    clean = clean[: len(clean) - len(clean) % 4 if len(clean) % 4 == 1 else len(clean)]
    try:
        return base64.b64decode(clean + b"=" * (-len(clean) % 4))
    except binascii.Error:  # pragma: no cover - cleaned input always decodes
        return b""


def quote_encode(data: bytes) -> bytes:
    out = bytearray()
    for c in data:
        if c == 0x3D or (c < 0x20 and c not in (0x09, 0x0A, 0x0D)) or c > 0x7E:
            out += b"=%02X" % c
        else:
            out.append(c)
    return bytes(out)


def quote_decode(data: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        c = data[i]
        if c == 0x3D:
            if data[i + 1 : i + 3] == b"\r\n":
                i += 3
                continue
            if data[i + 1 : i + 2] == b"\n":
                i += 2
                continue
            if i + 2 < n and _hexval(data[i + 1]) >= 0 and _hexval(data[i + 2]) >= 0:
                out.append(_hexval(data[i + 1]) * 16 + _hexval(data[i + 2]))
                i += 3
                continue
        out.append(c)
        i += 1
    return bytes(out)


def hex_encode(data: bytes) -> bytes:
    return data.hex().encode()


def hex_decode(data: bytes) -> bytes:
    """Pairs of hex digits; anything else (spaces, a dangling digit) is ignored."""
    digits = [v for v in (_hexval(c) for c in data) if v >= 0]
    return bytes(digits[i] * 16 + digits[i + 1] for i in range(0, len(digits) - 1, 2))


_WBITS = {b"zlib": -15, b"deflate": 15, b"gzip": 31}


def _compress(data: bytes, wbits: int) -> bytes:
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, wbits)
    return c.compress(data) + c.flush()


_CHUNK = 1 << 20


def _decompress(data: bytes, wbits: int, limit: int | None = None) -> bytes | None:
    """Inflate ``data``; more than ``limit`` bytes of output is a MemoryError
    (a few kB of deflate can expand to gigabytes), found out in chunks so the
    output never grows far past the limit."""
    try:
        d = zlib.decompressobj(wbits)
        if limit is None:
            return d.decompress(data) + d.flush()
        parts: list[bytes] = []
        size = 0
        pending = data
        while True:
            part = d.decompress(pending, _CHUNK)
            size += len(part)
            if size > limit:
                raise MemoryError("not enough memory")
            parts.append(part)
            pending = d.unconsumed_tail
            if not pending and len(part) < _CHUNK:
                break
        tail = d.flush()
        if size + len(tail) > limit:
            raise MemoryError("not enough memory")
        parts.append(tail)
    except zlib.error:
        return None
    return b"".join(parts)


_ENCODERS = {
    b"url": url_encode,
    b"base": base_encode,
    b"quote": quote_encode,
    b"hex": hex_encode,
}
_DECODERS = {
    b"url": url_decode,
    b"base": base_decode,
    b"quote": quote_decode,
    b"hex": hex_decode,
}


def codec(mode: bytes, data: bytes, limit: int | None = None) -> bytes | None:
    """``kt.codec(mode, str)``; a ``~`` prefix on the mode decodes; decompressed
    output beyond ``limit`` bytes raises MemoryError."""
    decode = mode.startswith(b"~")
    name = (mode[1:] if decode else mode).lower()
    if name in _WBITS:
        wbits = _WBITS[name]
        return _decompress(data, wbits, limit) if decode else _compress(data, wbits)
    table = _DECODERS if decode else _ENCODERS
    fn = table.get(name)
    return None if fn is None else fn(data)

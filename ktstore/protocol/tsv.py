"""TSV bodies of the HTTP RPC interface and Kyoto Tycoon's column encodings (docs/protocol.md, "TSV-RPC").

A TSV body is one ``key<TAB>value<LF>`` line per entry. With ``colenc`` every key and
value is encoded: ``B`` Base64, ``U`` URL encoding, ``Q`` quoted-printable. The
decoders here reproduce ktserver's (Kyoto Cabinet's) lenient behaviour, not the RFCs,
because the server must read what ktserver reads and the client must read what
ktserver writes:

* a line without a TAB is ignored, a CR before LF is dropped, the value may hold TABs;
* URL decoding turns ``+`` into a space and silently drops raw bytes ``<= 0x20``,
  ``0x7F`` and ``>= 0x80``; ``%`` takes up to two hex digits;
* Base64 decoding skips foreign characters and stops after the group holding ``=``.

Correct input takes the C fast paths (:mod:`binascii`); only odd input pays for the
byte-by-byte emulation.
"""

from __future__ import annotations

import binascii
import functools
import re
from collections.abc import Callable, Iterable

__all__ = [
    "TSV_MEDIA_TYPE",
    "FORM_MEDIA_TYPE",
    "encode_tsv",
    "decode_tsv",
    "choose_colenc",
    "content_type_for",
    "parse_content_type",
    "url_encode",
    "url_decode",
    "decode_form",
    "base64_encode",
    "base64_decode_lenient",
    "qp_encode",
    "qp_decode",
]

TSV_MEDIA_TYPE = "text/tab-separated-values"
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"

_b2a = binascii.b2a_base64
_a2b = binascii.a2b_base64

# --- Base64 ------------------------------------------------------------------------------


def base64_encode(data: bytes) -> bytes:
    """Standard Base64 (``+/``, ``=`` padding, no newline), as KC's ``baseencode``."""
    return _b2a(data, newline=False)


_CANONICAL_B64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def _strict_b64_py310(data: bytes) -> bytes:
    """Python 3.10 has no strict mode: check the canonical shape with a regex instead."""
    if _CANONICAL_B64.fullmatch(data) is None:
        raise binascii.Error("not canonical base64")
    return _a2b(data)


_strict_b64: Callable[[bytes], bytes]
try:
    _a2b(b"", strict_mode=True)  # type: ignore[call-arg]
    # a partial is a C-level call: no Python frame per field
    _strict_b64 = functools.partial(_a2b, strict_mode=True)  # type: ignore[call-arg]
except TypeError:
    _strict_b64 = _strict_b64_py310


_B64_VALUES = {
    c: i for i, c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
}


def _kc_base64_decode(data: bytes) -> bytes:
    """Byte-exact emulation of KC ``basedecode`` for input that is not canonical Base64.

    Foreign characters are skipped; every 4 counted characters make a group; ``=`` counts
    as a zero sextet and ends decoding after its group; a short last group without ``=``
    still yields 3 bytes of its (unshifted) bits, as KC does.
    """
    if b"\0" in data:
        data = data[: data.index(b"\0")]  # the C code works on a NUL-terminated string
    out = bytearray()
    values = _B64_VALUES
    pos = 0
    size = len(data)
    eqcnt = 0
    while pos < size and eqcnt == 0:
        bits = 0
        count = 0
        while pos < size and count < 4:
            c = data[pos]
            pos += 1
            v = values.get(c)
            if v is not None:
                bits = (bits << 6) | v
                count += 1
            elif c == 0x3D:  # '='
                bits <<= 6
                count += 1
                eqcnt += 1
        if count == 0 and pos >= size:
            continue
        if eqcnt == 0:
            out += bytes(((bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF))
        elif eqcnt == 1:
            out += bytes(((bits >> 16) & 0xFF, (bits >> 8) & 0xFF))
        elif eqcnt == 2:
            out.append((bits >> 16) & 0xFF)
    return bytes(out)


def base64_decode_lenient(data: bytes) -> bytes:
    """Decode Base64 the way ktserver does: never fails, whatever the input."""
    if not len(data) & 3:  # strict mode lets "0000=" through; KC decodes the "=" group
        try:
            return _strict_b64(data)
        except (binascii.Error, ValueError):
            pass
    return _kc_base64_decode(bytes(data))


# --- URL encoding -------------------------------------------------------------------------

_URL_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.~-")
_URL_TABLE = [bytes([c]) if c in _URL_SAFE else b"%%%02x" % c for c in range(256)]
_URL_UNSAFE = re.compile(rb"[^A-Za-z0-9_.~-]")
_URL_PLAIN = re.compile(rb"[!-*,-~]*")  # printable, no '+', no '%' handled separately


def url_encode(data: bytes) -> bytes:
    """Percent-encode every byte except ``[A-Za-z0-9_.~-]`` (lowercase hex, like KC)."""
    if _URL_UNSAFE.search(data) is None:
        return bytes(data)
    table = _URL_TABLE
    return b"".join([table[c] for c in data])


_HEX = {c: int(chr(c), 16) for c in b"0123456789abcdefABCDEF"}


def url_decode(data: bytes) -> bytes:
    """URL-decode with KC's quirks: ``+`` is a space; raw bytes ``<= 0x20``, ``0x7F`` and
    ``>= 0x80`` are dropped; ``%`` reads up to two following characters, a non-hex one
    counting as nothing (``%4z`` -> ``\\x04``); a ``%`` cut short by the end stops decoding;
    a raw NUL ends the input (KC works on C strings)."""
    if b"%" not in data and _URL_PLAIN.fullmatch(data) is not None:
        return bytes(data)  # nothing to do: the common case for plain keys
    if b"\0" in data:
        data = data[: data.index(b"\0")]
    out = bytearray()
    hexv = _HEX
    pos = 0
    size = len(data)
    while pos < size:
        c = data[pos]
        if c == 0x25:  # '%'
            pos += 1
            if pos >= size:
                break
            num = hexv.get(data[pos], 0)
            pos += 1
            if pos >= size:
                break
            d = hexv.get(data[pos])
            if d is not None:
                num = num * 16 + d
            out.append(num)
            pos += 1
        elif c == 0x2B:  # '+'
            out.append(0x20)
            pos += 1
        else:
            if 0x20 < c < 0x7F:
                out.append(c)
            pos += 1
    return bytes(out)


_FORM_SEP = re.compile(rb"[&;]")
_BLANKS = bytes(range(1, 33))  # what ktserver skips before a field (0x01-0x20)


def decode_form(data: bytes) -> list[tuple[bytes, bytes]]:
    """Decode ``application/x-www-form-urlencoded`` data (also query strings) like ktserver:
    fields separated by ``&`` or ``;``, leading blanks skipped, empty fields ignored, a
    field without ``=`` is a key with an empty value, both sides url_decode'd."""
    if b"\0" in data:
        data = data[: data.index(b"\0")]
    out = []
    for field in _FORM_SEP.split(data):
        field = field.lstrip(_BLANKS)
        if not field:
            continue
        key, _, value = field.partition(b"=")
        out.append((url_decode(key), url_decode(value)))
    return out


# --- quoted-printable ---------------------------------------------------------------------

_QP_TABLE = [
    b"=%02X" % c if (c == 0x3D or c < 0x20 or c > 0x7E) else bytes([c]) for c in range(256)
]
_QP_UNSAFE = re.compile(rb"[^ -<>-~]")


def qp_encode(data: bytes) -> bytes:
    """Quoted-printable as KC: ``=``, control bytes and bytes > 0x7E become ``=XX``; no line
    wrapping."""
    if _QP_UNSAFE.search(data) is None:
        return bytes(data)
    table = _QP_TABLE
    return b"".join([table[c] for c in data])


def qp_decode(data: bytes) -> bytes:
    """Quoted-printable decoding as KC: soft line breaks removed, raw control bytes, 0x7F
    and bytes >= 0x80 dropped (KC compares signed chars), ``=`` reads up to two hex digits
    (non-hex counts as nothing)."""
    if b"=" not in data and _QP_UNSAFE.search(data) is None:
        return bytes(data)
    if b"\0" in data:
        data = data[: data.index(b"\0")]
    out = bytearray()
    hexv = _HEX
    pos = 0
    size = len(data)
    while pos < size:
        c = data[pos]
        if c == 0x3D:  # '='
            pos += 1
            if pos >= size:
                break
            c = data[pos]
            if c == 0x0D:
                pos += 1
                if pos >= size:
                    break
                if data[pos] == 0x0A:
                    pos += 1
            elif c == 0x0A:
                pos += 1
            else:
                num = hexv.get(c, 0)
                pos += 1
                if pos >= size:
                    break
                d = hexv.get(data[pos])
                if d is not None:
                    num = num * 16 + d
                out.append(num)
                pos += 1
        else:
            if 0x20 <= c < 0x7F:  # signed char in KC: bytes >= 0x80 count as control
                out.append(c)
            pos += 1
    return bytes(out)


# --- TSV bodies ---------------------------------------------------------------------------

_ENCODERS = {"B": base64_encode, "U": url_encode, "Q": qp_encode}
_DECODERS = {"B": base64_decode_lenient, "U": url_decode, "Q": qp_decode}


def encode_tsv(pairs: Iterable[tuple[bytes, bytes]], colenc: str | None) -> bytes:
    """Build a TSV body from pairs in the given order, every field encoded with ``colenc``.

    With ``colenc=None`` the caller guarantees no key holds a TAB/LF and no value an LF
    (see :func:`choose_colenc`); nothing is checked here, for speed.
    """
    if colenc is None:
        return b"".join([b"%s\t%s\n" % (k, v) for k, v in pairs])
    if colenc == "B":
        # b2a_base64 with its newline gives "value\n" for free
        return b"".join([_b2a(k, newline=False) + b"\t" + _b2a(v) for k, v in pairs])
    enc = _ENCODERS[colenc.upper()]
    return b"".join([enc(k) + b"\t" + enc(v) + b"\n" for k, v in pairs])


def _raw_lines(body: bytes) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    append = out.append
    for line in body.split(b"\n"):
        key, sep, value = line.partition(b"\t")
        if sep:
            if value.endswith(b"\r"):
                value = value[:-1]
            append((key, value))
    return out


def _b64_lines(body: bytes) -> list[tuple[bytes, bytes]]:
    # Canonical Base64 (what every encoder sends) decodes in C; the first odd field
    # sends the whole body down the byte-exact lenient path. (Splitting all fields in
    # one sweep was measured: no faster, the Base64 decoding itself dominates.)
    out: list[tuple[bytes, bytes]] = []
    append = out.append
    strict = _strict_b64
    try:
        for line in body.split(b"\n"):
            key, sep, value = line.partition(b"\t")
            if sep:
                if value[-1:] == b"\r":
                    value = value[:-1]
                if len(key) & 3 or len(value) & 3:
                    raise ValueError("not canonical base64")
                append((strict(key), strict(value)))
        return out
    except (binascii.Error, ValueError):
        dec = base64_decode_lenient
        return [(dec(k), dec(v)) for k, v in _raw_lines(body)]


def decode_tsv(body: bytes, colenc: str | None) -> list[tuple[bytes, bytes]]:
    """Parse a TSV body into pairs, in order (duplicates kept: a map keeps the last one).

    Lines without a TAB are ignored; each line splits at its first TAB; a CR before
    LF is dropped; with ``colenc`` both sides are decoded (leniently, as ktserver).
    """
    if not body:
        return []
    if type(body) is not bytes:
        body = bytes(body)
    if colenc is None:
        return _raw_lines(body)
    if colenc == "B":
        return _b64_lines(body)
    dec = _DECODERS[colenc.upper()]
    return [(dec(k), dec(v)) for k, v in _raw_lines(body)]


# --- the server's choice of encoding ----------------------------------------------------------

_CONTROL_BYTES = bytes(range(32)) + b"\x7f"
# bytes ktserver's estimate counts as one character in URL encoding (others count 3)
_URL_EST_SAFE_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.!~*'()"


def choose_colenc(pairs: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The column encoding ktserver picks for a response (docs/protocol.md, "TSV-RPC").

    Encode when any key or value holds a byte < 0x20 or 0x7F, or is longer than 255
    bytes; then ``B`` if ktserver's Base64 size estimate is below its URL-encoding
    estimate, else ``U``. Both estimates look at the first 255 bytes of each field only
    (that is what ktserver does, so we do too, to answer with the same encoding).
    Works on all fields at once with C-level operations: this runs for every response.
    """
    fields = [x for pair in pairs for x in pair]
    if not fields:
        return None
    lengths = list(map(len, fields))
    longest = max(lengths)
    joined = b"".join(fields)
    if longest <= 255 and len(joined.translate(None, _CONTROL_BYTES)) == len(joined):
        return None
    if longest > 255:
        joined = b"".join([x[:255] for x in fields])
        lengths = [n if n < 255 else 255 for n in lengths]
    blen = sum([n * 6 // 4 for n in lengths]) + 3 * len(lengths)
    ulen = len(joined) + 2 * len(joined.translate(None, _URL_EST_SAFE_BYTES))
    return "B" if blen < ulen else "U"


# --- Content-Type ----------------------------------------------------------------------------


def content_type_for(colenc: str | None) -> str:
    """The Content-Type of a TSV body: ``text/tab-separated-values[; colenc=X]``."""
    if colenc is None:
        return TSV_MEDIA_TYPE
    return f"{TSV_MEDIA_TYPE}; colenc={colenc}"


def parse_content_type(value: str) -> tuple[str, str | None]:
    """Split a Content-Type into (media type lowercased, colenc upper-case or None).

    Like ktserver, the ``colenc`` attribute is matched case-insensitively, may be
    quoted, and only its first character counts (B, Q or U; anything else is None).
    """
    media, _, params = value.partition(";")
    media = media.strip().lower()
    colenc = None
    for param in params.split(";"):
        name, eq, val = param.strip().partition("=")
        if eq and name.strip().lower() == "colenc":
            val = val.strip().lstrip('"')
            if val[:1] in ("B", "b", "Q", "q", "U", "u"):
                colenc = val[0].upper()
    return media, colenc

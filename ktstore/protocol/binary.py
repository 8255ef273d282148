"""Kyoto Tycoon's binary protocol (magic bytes 0xB4, 0xB8, 0xB9, 0xBA, 0xBF), both sides.

Frames are fixed-width big-endian integers followed by raw bytes (docs/protocol.md, "Binary protocol").
Encoders build a whole frame with one ``b"".join``; parsers follow the sans-I/O
convention of :mod:`ktstore.protocol`: ``parse_x(buf, pos) -> (result, end)``, raising
:class:`~ktstore.errors.Incomplete` with a lower bound of the bytes needed from ``pos``
and :class:`~ktstore.errors.ProtocolError` for bytes that cannot be this protocol.

A 0xBF error reply is *returned* as :data:`ERROR_REPLY`: whether the connection
survives depends on the command (play_script keeps it, the bulk commands close it),
which is the caller's business.

Speed matters here (bulk operations are the fast path of the whole client), so the
code uses precompiled :class:`struct.Struct` objects, and parsers of ``bytes`` slice
directly. A ``bytearray``/``memoryview`` is copied once into ``bytes`` (one memcpy
beats slicing a mutable buffer field by field), so results always hold immutable
``bytes``. Callers with a big reply arriving slowly should read large chunks: a reply's
total size is only known once every record header has been seen.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import repeat
from typing import Final

from ktstore.errors import Incomplete, InvalidArgument, ProtocolError
from ktstore.protocol.limits import DATA_MAX_SIZE

__all__ = [
    "MAGIC_NOP",
    "MAGIC_REPLICATION",
    "MAGIC_PLAY_SCRIPT",
    "MAGIC_SET_BULK",
    "MAGIC_REMOVE_BULK",
    "MAGIC_GET_BULK",
    "MAGIC_ERROR",
    "FLAG_NOREPLY",
    "ERROR_REPLY",
    "ERROR_REPLY_BYTES",
    "SetBulk",
    "RemoveBulk",
    "GetBulk",
    "PlayScript",
    "BinaryRequest",
    "is_binary",
    "encode_set_bulk",
    "encode_remove_bulk",
    "encode_get_bulk",
    "encode_play_script",
    "encode_get",
    "encode_set",
    "encode_remove",
    "encode_get_bulk_db",
    "encode_set_bulk_db",
    "encode_remove_bulk_db",
    "parse_count_reply",
    "parse_get_bulk_reply",
    "parse_play_script_reply",
    "parse_reply",
    "parse_request",
    "encode_count_reply",
    "encode_get_bulk_reply",
    "encode_play_script_reply",
]

MAGIC_NOP: Final = 0xB0
MAGIC_REPLICATION: Final = 0xB1
MAGIC_PLAY_SCRIPT: Final = 0xB4
MAGIC_SET_BULK: Final = 0xB8
MAGIC_REMOVE_BULK: Final = 0xB9
MAGIC_GET_BULK: Final = 0xBA
MAGIC_ERROR: Final = 0xBF

#: Flag bit: the server sends no reply (set_bulk, remove_bulk, play_script).
FLAG_NOREPLY: Final = 1


class _ErrorReply:
    """Type of :data:`ERROR_REPLY`; a singleton with a readable repr."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ERROR_REPLY"

    def __reduce__(self) -> str:
        return "ERROR_REPLY"


#: What reply parsers return for a 0xBF reply (the single byte carries no detail).
ERROR_REPLY: Final = _ErrorReply()

#: The 0xBF reply as bytes, for the server.
ERROR_REPLY_BYTES: Final = b"\xbf"

# Precompiled layouts (all big-endian).
_HEAD3 = struct.Struct(">BII")  # magic, flags, rnum                (requests)
_HEAD4 = struct.Struct(">BIII")  # magic, flags, nsiz, rnum         (play_script request)
_COUNT = struct.Struct(">BI")  # magic, count                       (replies)
_U32 = struct.Struct(">I")
_II = struct.Struct(">II")  # ksiz, vsiz                            (play_script records)
_HI = struct.Struct(">HI")  # dbidx, ksiz                           (get/remove keys)
_HIIQ = struct.Struct(">HIIq")  # dbidx, ksiz, vsiz, xt             (set/get records)
_GET1 = struct.Struct(">BIIHI")  # head + one key                   (get/remove of one key)
_SET1 = struct.Struct(">BIIHIIq")  # head + one record              (set of one record)
#: Public names of the two single-key frame heads (the client packs them inline).
ONE_KEY_HEAD = _GET1
ONE_RECORD_HEAD = _SET1

_COUNT_SIZE = _COUNT.size  # 5
_REC_SIZE = _HIIQ.size  # 18
_KEY_SIZE = _HI.size  # 6
_PAIR_SIZE = _II.size  # 8

# Incomplete(need) adds a lower bound for the records not seen yet, capped so that a
# hostile count cannot make the reader try to buffer gigabytes.
_LOOKAHEAD_CAP = 1 << 16


def _lookahead(remaining: int, size: int) -> int:
    extra = remaining * size
    return extra if extra < _LOOKAHEAD_CAP else _LOOKAHEAD_CAP


def is_binary(first_byte: int) -> bool:
    """Whether a request starting with ``first_byte`` is binary (0x00 or >= 0x80), not HTTP."""
    return first_byte == 0 or first_byte >= 0x80


# ---------------------------------------------------------------------------------------
# server-side request objects


class _Flagged:
    """The ``no_reply`` of a request from its flags (a mixin of the request classes)."""

    __slots__ = ()
    flags: int

    @property
    def no_reply(self) -> bool:
        return bool(self.flags & FLAG_NOREPLY)


@dataclass(slots=True)
class SetBulk(_Flagged):
    """A 0xB8 request: ``records`` are ``(dbidx, key, value, xt)`` with the wire xt."""

    flags: int
    records: list[tuple[int, bytes, bytes, int]]


@dataclass(slots=True)
class RemoveBulk(_Flagged):
    """A 0xB9 request: ``keys`` are ``(dbidx, key)``."""

    flags: int
    keys: list[tuple[int, bytes]]


@dataclass(slots=True)
class GetBulk:
    """A 0xBA request: ``keys`` are ``(dbidx, key)``; flags are ignored by ktserver."""

    flags: int
    keys: list[tuple[int, bytes]]

    @property
    def no_reply(self) -> bool:
        return False  # get_bulk always replies


@dataclass(slots=True)
class PlayScript(_Flagged):
    """A 0xB4 request: procedure ``name`` and ``params`` as ``(key, value)`` pairs."""

    flags: int
    name: bytes
    params: list[tuple[bytes, bytes]]


BinaryRequest = SetBulk | RemoveBulk | GetBulk | PlayScript


# ---------------------------------------------------------------------------------------
# client -> server encoders


def _too_large(what: str, size: int) -> InvalidArgument:
    return InvalidArgument(f"{what} of {size} bytes exceeds the protocol limit of {DATA_MAX_SIZE}")


def encode_set_bulk(
    records: Iterable[tuple[int, bytes, bytes, int]], no_reply: bool = False
) -> bytes:
    """Encode a SET_BULK request; records are ``(dbidx, key, value, wire_xt)``.

    Raises InvalidArgument for a size over DATA_MAX_SIZE or an index/xt that does not
    fit its field, since ktserver would answer those by closing the connection.
    """
    parts: list = [b""]
    append = parts.append
    pack = _HIIQ.pack
    n = 0
    try:
        for dbidx, key, value, xt in records:
            ksiz = len(key)
            vsiz = len(value)
            if ksiz > DATA_MAX_SIZE or vsiz > DATA_MAX_SIZE:
                raise _too_large("key" if ksiz > DATA_MAX_SIZE else "value", max(ksiz, vsiz))
            append(pack(dbidx, ksiz, vsiz, xt) + key + value)
            n += 1
        parts[0] = _HEAD3.pack(MAGIC_SET_BULK, FLAG_NOREPLY if no_reply else 0, n)
    except struct.error as exc:
        raise InvalidArgument(f"set_bulk record does not fit the protocol: {exc}") from None
    return b"".join(parts)


def encode_set_bulk_db(
    dbidx: int, keys: list[bytes], values: list[bytes], xt: int, no_reply: bool = False
) -> bytes:
    """``encode_set_bulk(zip(repeat(dbidx), keys, values, repeat(xt)), no_reply)`` for
    records of one database with one xt, given as two equally long lists (the client's
    set_bulk).  The sizes are checked once, on the whole frame: no field of a frame
    within DATA_MAX_SIZE can exceed it."""
    if len(keys) != len(values):
        raise ValueError("keys and values differ in length")
    pack = _HIIQ.pack
    try:
        parts = [_HEAD3.pack(MAGIC_SET_BULK, FLAG_NOREPLY if no_reply else 0, len(keys))]
        extend = parts.extend
        for k, v in zip(keys, values, strict=False):
            extend((pack(dbidx, len(k), len(v), xt), k, v))
    except struct.error as exc:
        raise InvalidArgument(f"set_bulk record does not fit the protocol: {exc}") from None
    frame = b"".join(parts)
    if len(frame) > DATA_MAX_SIZE and (
        max(map(len, keys)) > DATA_MAX_SIZE or max(map(len, values)) > DATA_MAX_SIZE
    ):
        return encode_set_bulk(zip(repeat(dbidx), keys, values, repeat(xt)))  # raises
    return frame


def _encode_keys(magic: int, flags: int, keys: Iterable[tuple[int, bytes]]) -> bytes:
    parts: list = [b""]
    append = parts.append
    pack = _HI.pack
    n = 0
    try:
        for dbidx, key in keys:
            ksiz = len(key)
            if ksiz > DATA_MAX_SIZE:
                raise _too_large("key", ksiz)
            append(pack(dbidx, ksiz) + key)
            n += 1
        parts[0] = _HEAD3.pack(magic, flags, n)
    except struct.error as exc:
        raise InvalidArgument(f"key does not fit the protocol: {exc}") from None
    return b"".join(parts)


def _encode_keys_db(magic: int, flags: int, dbidx: int, keys: list[bytes]) -> bytes:
    pack = _HI.pack
    try:
        parts = [_HEAD3.pack(magic, flags, len(keys))]
        extend = parts.extend
        for k in keys:
            extend((pack(dbidx, len(k)), k))
    except struct.error as exc:
        raise InvalidArgument(f"key does not fit the protocol: {exc}") from None
    frame = b"".join(parts)
    if len(frame) > DATA_MAX_SIZE and max(map(len, keys)) > DATA_MAX_SIZE:
        return _encode_keys(magic, flags, zip(repeat(dbidx), keys))  # raises
    return frame


def encode_get_bulk_db(dbidx: int, keys: list[bytes]) -> bytes:
    """``encode_get_bulk(zip(repeat(dbidx), keys))`` for a list of keys of one database
    (sizes checked on the whole frame, as :func:`encode_set_bulk_db`)."""
    return _encode_keys_db(MAGIC_GET_BULK, 0, dbidx, keys)


def encode_remove_bulk_db(dbidx: int, keys: list[bytes], no_reply: bool = False) -> bytes:
    """``encode_remove_bulk(zip(repeat(dbidx), keys), no_reply)`` for one database."""
    return _encode_keys_db(MAGIC_REMOVE_BULK, FLAG_NOREPLY if no_reply else 0, dbidx, keys)


def encode_get(dbidx: int, key: bytes) -> bytes:
    """``encode_get_bulk([(dbidx, key)])`` with one struct call (the hot path of get)."""
    if len(key) <= DATA_MAX_SIZE and 0 <= dbidx <= 0xFFFF:
        return _GET1.pack(MAGIC_GET_BULK, 0, 1, dbidx, len(key)) + key
    return encode_get_bulk(((dbidx, key),))  # raises the proper error


def encode_set(dbidx: int, key: bytes, value: bytes, xt: int, no_reply: bool = False) -> bytes:
    """``encode_set_bulk([(dbidx, key, value, xt)], no_reply)`` with one struct call."""
    if len(key) <= DATA_MAX_SIZE and len(value) <= DATA_MAX_SIZE:
        try:
            flags = FLAG_NOREPLY if no_reply else 0
            return (
                _SET1.pack(MAGIC_SET_BULK, flags, 1, dbidx, len(key), len(value), xt) + key + value
            )
        except struct.error:
            pass
    return encode_set_bulk(((dbidx, key, value, xt),), no_reply)  # raises the proper error


def encode_remove(dbidx: int, key: bytes, no_reply: bool = False) -> bytes:
    """``encode_remove_bulk([(dbidx, key)], no_reply)`` with one struct call."""
    if len(key) <= DATA_MAX_SIZE and 0 <= dbidx <= 0xFFFF:
        flags = FLAG_NOREPLY if no_reply else 0
        return _GET1.pack(MAGIC_REMOVE_BULK, flags, 1, dbidx, len(key)) + key
    return encode_remove_bulk(((dbidx, key),), no_reply)  # raises the proper error


def encode_remove_bulk(keys: Iterable[tuple[int, bytes]], no_reply: bool = False) -> bytes:
    """Encode a REMOVE_BULK request for ``(dbidx, key)`` pairs."""
    return _encode_keys(MAGIC_REMOVE_BULK, FLAG_NOREPLY if no_reply else 0, keys)


def encode_get_bulk(keys: Iterable[tuple[int, bytes]]) -> bytes:
    """Encode a GET_BULK request for ``(dbidx, key)`` pairs (flags 0: the server ignores them)."""
    return _encode_keys(MAGIC_GET_BULK, 0, keys)


def encode_play_script(
    name: bytes, params: Iterable[tuple[bytes, bytes]], no_reply: bool = False
) -> bytes:
    """Encode a PLAY_SCRIPT request. Any name goes (unlike HTTP, which wants alphanumerics)."""
    if len(name) > DATA_MAX_SIZE:
        raise _too_large("script name", len(name))
    parts: list = [b"", name]
    append = parts.append
    pack = _II.pack
    n = 0
    for key, value in params:
        ksiz = len(key)
        vsiz = len(value)
        if ksiz > DATA_MAX_SIZE or vsiz > DATA_MAX_SIZE:
            raise _too_large("parameter", max(ksiz, vsiz))
        append(pack(ksiz, vsiz))
        append(key)
        append(value)
        n += 1
    parts[0] = _HEAD4.pack(MAGIC_PLAY_SCRIPT, FLAG_NOREPLY if no_reply else 0, len(name), n)
    return b"".join(parts)


# ---------------------------------------------------------------------------------------
# client-side reply parsers


def _check_size(size: int) -> None:
    if size > DATA_MAX_SIZE:
        raise ProtocolError(f"size field {size} exceeds the protocol limit of {DATA_MAX_SIZE}")


def _reply_magic(buf, pos: int, magic: int) -> int:
    """Check the first byte of a reply; return it (``MAGIC_ERROR`` for an error reply)."""
    if len(buf) <= pos:
        raise Incomplete(1)  # a 0xBF reply is one byte: ask for no more than that
    first = buf[pos]
    if first != magic and first != MAGIC_ERROR:
        raise ProtocolError(f"unexpected reply magic 0x{first:02x} (expected 0x{magic:02x})")
    return first


def parse_count_reply(buf, pos: int = 0, magic: int = MAGIC_SET_BULK):
    """Parse a set_bulk/remove_bulk reply: ``(count | ERROR_REPLY, end)``."""
    if len(buf) - pos >= _COUNT_SIZE and buf[pos] == magic:  # the usual case, inlined
        return _U32.unpack_from(buf, pos + 1)[0], pos + _COUNT_SIZE
    if _reply_magic(buf, pos, magic) == MAGIC_ERROR:
        return ERROR_REPLY, pos + 1
    if len(buf) - pos < _COUNT_SIZE:
        raise Incomplete(_COUNT_SIZE)
    return _COUNT.unpack_from(buf, pos)[1], pos + _COUNT_SIZE


def _records(buf: bytes, p: int, count: int, origin: int) -> tuple[list, int]:
    """Parse ``count`` records of ``dbidx ksiz vsiz xt key value`` starting at ``p``
    (get_bulk replies, set_bulk requests); ``Incomplete`` counts from ``origin``."""
    size = len(buf)
    unpack = _HIIQ.unpack_from
    out: list = []
    append = out.append
    if count * _REC_SIZE <= size - p and size - origin <= DATA_MAX_SIZE:
        # Optimistic pass for a message that is (likely) all there: no bounds tests per
        # record.  A buffer no larger than DATA_MAX_SIZE holds no larger field, and a
        # record past the end shows as struct.error or end > size: then the checked
        # loop below starts over and raises what it should.
        end = p
        try:
            for _ in range(count):
                dbidx, ksiz, vsiz, xt = unpack(buf, end)
                end += 18  # _REC_SIZE
                kend = end + ksiz
                end = kend + vsiz
                append((dbidx, buf[kend - ksiz : kend], buf[kend:end], xt))
        except struct.error:
            end = size + 1
        if end <= size:
            return out, end
        out = []
        append = out.append
    for i in range(count):
        head_end = p + _REC_SIZE
        if head_end > size:
            raise Incomplete(head_end - origin + _lookahead(count - i - 1, _REC_SIZE))
        dbidx, ksiz, vsiz, xt = unpack(buf, p)
        if ksiz > DATA_MAX_SIZE or vsiz > DATA_MAX_SIZE:
            _check_size(max(ksiz, vsiz))
        kend = head_end + ksiz
        end = kend + vsiz
        if end > size:
            raise Incomplete(end - origin + _lookahead(count - i - 1, _REC_SIZE))
        append((dbidx, buf[head_end:kend], buf[kend:end], xt))
        p = end
    return out, p


def _get_bulk_records(buf: bytes, pos: int) -> tuple[list, int]:
    """Parse a get_bulk success reply (magic at ``pos``) from a ``bytes`` buffer."""
    if len(buf) - pos < _COUNT_SIZE:
        raise Incomplete(_COUNT_SIZE)
    hits = _COUNT.unpack_from(buf, pos)[1]
    return _records(buf, pos + _COUNT_SIZE, hits, pos)


def _on_bytes(parse, buf, pos: int):
    """Run a ``bytes`` parser on any buffer: other types are copied once from ``pos``.

    One memcpy is far cheaper than slicing a bytearray per field (and the results
    must be immutable ``bytes`` anyway, e.g. to serve as dict keys).
    """
    if type(buf) is bytes:
        return parse(buf, pos)
    result, end = parse(bytes(memoryview(buf)[pos:]), 0)
    return result, end + pos


def parse_get_bulk_reply(buf, pos: int = 0):
    """Parse a get_bulk reply: ``([(dbidx, key, value, xt), ...] | ERROR_REPLY, end)``.

    ``xt`` is the absolute expiration the server reported (XTMAX when none).
    """
    if type(buf) is bytes and len(buf) > pos and buf[pos] == MAGIC_GET_BULK:  # the usual case
        return _get_bulk_records(buf, pos)
    if _reply_magic(buf, pos, MAGIC_GET_BULK) == MAGIC_ERROR:
        return ERROR_REPLY, pos + 1
    return _on_bytes(_get_bulk_records, buf, pos)


def _pairs(buf: bytes, p: int, count: int, origin: int) -> tuple[list, int]:
    """Parse ``count`` records of ``ksiz vsiz key value`` (play_script params/outputs)."""
    size = len(buf)
    unpack = _II.unpack_from
    out: list = []
    append = out.append
    for i in range(count):
        head_end = p + _PAIR_SIZE
        if head_end > size:
            raise Incomplete(head_end - origin + _lookahead(count - i - 1, _PAIR_SIZE))
        ksiz, vsiz = unpack(buf, p)
        if ksiz > DATA_MAX_SIZE or vsiz > DATA_MAX_SIZE:
            _check_size(max(ksiz, vsiz))
        kend = head_end + ksiz
        end = kend + vsiz
        if end > size:
            raise Incomplete(end - origin + _lookahead(count - i - 1, _PAIR_SIZE))
        append((buf[head_end:kend], buf[kend:end]))
        p = end
    return out, p


def _play_script_outputs(buf: bytes, pos: int) -> tuple[list, int]:
    if len(buf) - pos < _COUNT_SIZE:
        raise Incomplete(_COUNT_SIZE)
    count = _COUNT.unpack_from(buf, pos)[1]
    return _pairs(buf, pos + _COUNT_SIZE, count, pos)


def parse_play_script_reply(buf, pos: int = 0):
    """Parse a play_script reply: ``([(key, value), ...] | ERROR_REPLY, end)``."""
    if _reply_magic(buf, pos, MAGIC_PLAY_SCRIPT) == MAGIC_ERROR:
        return ERROR_REPLY, pos + 1
    return _on_bytes(_play_script_outputs, buf, pos)


def parse_reply(buf, pos: int, magic: int):
    """Parse the reply to a request whose magic byte was ``magic`` (dispatch helper)."""
    if magic == MAGIC_GET_BULK:
        return parse_get_bulk_reply(buf, pos)
    if magic == MAGIC_PLAY_SCRIPT:
        return parse_play_script_reply(buf, pos)
    if magic == MAGIC_SET_BULK or magic == MAGIC_REMOVE_BULK:
        return parse_count_reply(buf, pos, magic)
    raise ValueError(f"no reply parser for magic 0x{magic:02x}")


# ---------------------------------------------------------------------------------------
# server side: requests in, replies out


def _set_bulk(buf: bytes, pos: int) -> tuple[SetBulk, int]:
    if len(buf) - pos < _HEAD3.size:
        raise Incomplete(_HEAD3.size)
    _, flags, rnum = _HEAD3.unpack_from(buf, pos)
    records, end = _records(buf, pos + _HEAD3.size, rnum, pos)
    return SetBulk(flags, records), end


def _keys(buf: bytes, pos: int) -> tuple[int, list, int]:
    size = len(buf)
    if size - pos < _HEAD3.size:
        raise Incomplete(_HEAD3.size)
    _, flags, rnum = _HEAD3.unpack_from(buf, pos)
    p = pos + _HEAD3.size
    unpack = _HI.unpack_from
    out: list = []
    append = out.append
    for i in range(rnum):
        head_end = p + _KEY_SIZE
        if head_end > size:
            raise Incomplete(head_end - pos + _lookahead(rnum - i - 1, _KEY_SIZE))
        dbidx, ksiz = unpack(buf, p)
        if ksiz > DATA_MAX_SIZE:
            _check_size(ksiz)
        end = head_end + ksiz
        if end > size:
            raise Incomplete(end - pos + _lookahead(rnum - i - 1, _KEY_SIZE))
        append((dbidx, buf[head_end:end]))
        p = end
    return flags, out, p


def _get_bulk(buf: bytes, pos: int) -> tuple[GetBulk, int]:
    flags, keys, end = _keys(buf, pos)
    return GetBulk(flags, keys), end


def _remove_bulk(buf: bytes, pos: int) -> tuple[RemoveBulk, int]:
    flags, keys, end = _keys(buf, pos)
    return RemoveBulk(flags, keys), end


def _play_script(buf: bytes, pos: int) -> tuple[PlayScript, int]:
    if len(buf) - pos < _HEAD4.size:
        raise Incomplete(_HEAD4.size)
    _, flags, nsiz, rnum = _HEAD4.unpack_from(buf, pos)
    _check_size(nsiz)
    p = pos + _HEAD4.size + nsiz
    if p > len(buf):
        raise Incomplete(p - pos + _lookahead(rnum, _PAIR_SIZE))
    name = buf[p - nsiz : p]
    params, end = _pairs(buf, p, rnum, pos)
    return PlayScript(flags, name, params), end


_REQUEST_PARSERS = {
    MAGIC_SET_BULK: _set_bulk,
    MAGIC_GET_BULK: _get_bulk,
    MAGIC_REMOVE_BULK: _remove_bulk,
    MAGIC_PLAY_SCRIPT: _play_script,
}


def parse_request(buf, pos: int = 0):
    """Parse one binary request (server side): ``(SetBulk|RemoveBulk|GetBulk|PlayScript, end)``.

    Unknown magic bytes (including replication 0xB1, which is not served here) and sizes
    over DATA_MAX_SIZE raise ProtocolError; ktserver closes the connection for both.
    """
    if len(buf) <= pos:
        raise Incomplete(1)
    parse = _REQUEST_PARSERS.get(buf[pos])
    if parse is None:
        raise ProtocolError(f"unknown binary magic 0x{buf[pos]:02x}")
    return _on_bytes(parse, buf, pos)


def encode_count_reply(magic: int, n: int) -> bytes:
    """The reply of set_bulk (0xB8) / remove_bulk (0xB9): magic + u32 count."""
    return _COUNT.pack(magic, n)


def encode_get_bulk_reply(records: Iterable[tuple[int, bytes, bytes, int]]) -> bytes:
    """The reply of get_bulk: ``(dbidx, key, value, absolute_xt)`` for each found record."""
    parts: list = [b""]
    append = parts.append
    pack = _HIIQ.pack
    n = 0
    for dbidx, key, value, xt in records:
        append(pack(dbidx, len(key), len(value), xt))
        append(key)
        append(value)
        n += 1
    parts[0] = _COUNT.pack(MAGIC_GET_BULK, n)
    return b"".join(parts)


def encode_play_script_reply(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The success reply of play_script: the procedure's output pairs."""
    parts: list = [b""]
    append = parts.append
    pack = _II.pack
    n = 0
    for key, value in pairs:
        append(pack(len(key), len(value)))
        append(key)
        append(value)
        n += 1
    parts[0] = _COUNT.pack(MAGIC_PLAY_SCRIPT, n)
    return b"".join(parts)

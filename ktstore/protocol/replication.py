"""Kyoto Tycoon's replication stream and update-log messages, as pure functions over bytes.

Why a module of its own: three parties speak this protocol -- a replication consumer
(:class:`ktstore.replication.ReplicationClient`), the server streaming its update log
to a slave, and the server *being* a slave of another master -- and each must agree
byte for byte with a real ktserver (see ``docs/protocol.md``, "Replication").

The stream (magic ``0xB1``):

* client -> server: ``0xB1, u32 flags, u64 ts, u16 sid``; the server sends every logged
  message whose timestamp is strictly greater than ``ts``.  ``flags & 1`` ("white
  SID") asks for only the messages that originated at ``sid``; without it, messages
  that originated at ``sid`` are skipped (that is how a dual master avoids loops).
* server -> client: one byte, ``0xB1`` (accepted) or ``0xBF`` (no update log); then
  frames: data ``0xB1, u64 ts, u32 size, message`` (``size`` 0 is a keep-alive sent
  after many skipped messages) and heart-beats ``0xB0, u64 ts`` when caught up, each of
  which the client must answer with one ``0xB1`` byte or the server drops the stream.

A message is ``u16 origin sid, u16 db index, u8 op``, then for SET ``varint ksiz,
varint vsiz, key, value`` where the value starts with the record's 5-byte big-endian
expiration time; for REMOVE ``varint ksiz, key``; for CLEAR nothing.

Nothing here reads a socket or a clock: parsers take a buffer and a position and
return ``None`` when more bytes are needed, so callers decide how to read.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from ktstore.errors import Incomplete, ProtocolError
from ktstore.protocol.dumps import decode_varint, encode_varint
from ktstore.protocol.limits import DATA_MAX_SIZE, XTMAX

__all__ = [
    "MAGIC_REPLICATION",
    "MAGIC_NOP",
    "MAGIC_ERROR",
    "FLAG_WHITE_SID",
    "OP_SET",
    "OP_REMOVE",
    "OP_CLEAR",
    "ACK",
    "REQUEST_SIZE",
    "DataFrame",
    "Heartbeat",
    "Message",
    "encode_request",
    "parse_request",
    "encode_data_frame",
    "encode_heartbeat",
    "parse_frame",
    "encode_message",
    "decode_message",
    "split_xt",
]

MAGIC_REPLICATION: Final = 0xB1
MAGIC_NOP: Final = 0xB0
MAGIC_ERROR: Final = 0xBF
FLAG_WHITE_SID: Final = 0x01
OP_SET: Final = 0xA1
OP_REMOVE: Final = 0xA2
OP_CLEAR: Final = 0xA5
ACK: Final = b"\xb1"  # the client's answer to a heart-beat, and the server's "accepted"

_REQUEST = struct.Struct(">BIQH")  # magic, flags, ts, sid
_DATA_HEAD = struct.Struct(">BQI")  # magic, ts, size
_NOP = struct.Struct(">BQ")  # magic, ts
_MSG_HEAD = struct.Struct(">HHB")  # origin sid, db index, op
REQUEST_SIZE: Final = _REQUEST.size
_U64_MAX: Final = (1 << 64) - 1


class DataFrame(NamedTuple):
    """A logged message (``message`` empty for a keep-alive frame)."""

    ts: int
    message: bytes


class Heartbeat(NamedTuple):
    """The master is caught up as of ``ts``; answer with :data:`ACK`."""

    ts: int


class Message(NamedTuple):
    """One decoded update-log message.

    ``value`` is the stored value *without* its expiration prefix; ``xt`` is the
    absolute expiration time (``XTMAX`` for none).  Both are ``None`` unless ``op`` is
    :data:`OP_SET`; ``key`` is ``None`` for :data:`OP_CLEAR`.
    """

    sid: int
    db: int
    op: int
    key: bytes | None = None
    value: bytes | None = None
    xt: int | None = None


def encode_request(ts: int, sid: int, white: bool = False) -> bytes:
    """The 15-byte request that opens a replication stream after ``ts``."""
    if not 0 <= ts <= _U64_MAX:
        raise ValueError(f"replication timestamp out of range: {ts}")
    if not 0 <= sid <= 0xFFFF:
        raise ValueError(f"server id out of range (0-65535): {sid}")
    return _REQUEST.pack(MAGIC_REPLICATION, FLAG_WHITE_SID if white else 0, ts, sid)


def parse_request(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int, int] | None:
    """``(flags, ts, sid)`` of a request at ``pos``, or ``None`` if it is incomplete."""
    if len(buf) - pos < _REQUEST.size:
        return None
    magic, flags, ts, sid = _REQUEST.unpack_from(buf, pos)
    if magic != MAGIC_REPLICATION:
        raise ProtocolError(f"not a replication request (magic 0x{magic:02x})")
    return flags, ts, sid


def encode_data_frame(ts: int, message: bytes) -> bytes:
    return _DATA_HEAD.pack(MAGIC_REPLICATION, ts, len(message)) + message


def encode_heartbeat(ts: int) -> bytes:
    return _NOP.pack(MAGIC_NOP, ts)


def parse_frame(
    buf: bytes | bytearray | memoryview, pos: int = 0
) -> tuple[DataFrame | Heartbeat, int] | None:
    """The frame at ``pos`` and the position after it, or ``None`` if more bytes are needed.

    Raises :class:`ProtocolError` for a magic byte that is not part of the stream
    (``0xBF`` included: the master refused or lost its log) and for a size over the
    protocol's limit, so a hostile length cannot make the caller wait for (or
    allocate) gigabytes.
    """
    avail = len(buf) - pos
    if avail < 1:
        return None
    magic = buf[pos]
    if magic == MAGIC_REPLICATION:
        if avail < _DATA_HEAD.size:
            return None
        _, ts, size = _DATA_HEAD.unpack_from(buf, pos)
        if size > DATA_MAX_SIZE:
            raise ProtocolError(f"replication frame of {size} bytes is over the limit")
        end = pos + _DATA_HEAD.size + size
        if len(buf) < end:
            return None
        return DataFrame(ts, bytes(buf[pos + _DATA_HEAD.size : end])), end
    if magic == MAGIC_NOP:
        if avail < _NOP.size:
            return None
        return Heartbeat(_NOP.unpack_from(buf, pos)[1]), pos + _NOP.size
    if magic == MAGIC_ERROR:
        raise ProtocolError("the server refused replication (it keeps no update log)")
    raise ProtocolError(f"unexpected byte 0x{magic:02x} in a replication stream")


def encode_message(
    sid: int, db: int, op: int, key: bytes = b"", value: bytes = b"", xt: int = XTMAX
) -> bytes:
    """An update-log message; ``value`` without prefix, ``xt`` absolute (SET only)."""
    head = _MSG_HEAD.pack(sid, db, op)
    if op == OP_SET:
        return b"".join(
            (
                head,
                encode_varint(len(key)),
                encode_varint(len(value) + 5),
                key,
                min(xt, XTMAX).to_bytes(5, "big"),
                value,
            )
        )
    if op == OP_REMOVE:
        return b"".join((head, encode_varint(len(key)), key))
    return head


def decode_message(msg: bytes | memoryview) -> Message:
    """Decode one update-log message; :class:`ProtocolError` if it is malformed."""
    if len(msg) < _MSG_HEAD.size:
        raise ProtocolError("update-log message too short")
    sid, db, op = _MSG_HEAD.unpack_from(msg, 0)
    pos = _MSG_HEAD.size
    try:
        if op == OP_SET:
            ksiz, pos = decode_varint(msg, pos)
            vsiz, pos = decode_varint(msg, pos)
            end = pos + ksiz + vsiz
            if vsiz < 5 or end > len(msg):
                raise ProtocolError("truncated SET message")
            key = bytes(msg[pos : pos + ksiz])
            xt, value = split_xt(bytes(msg[pos + ksiz : end]))
            return Message(sid, db, op, key, value, xt)
        if op == OP_REMOVE:
            ksiz, pos = decode_varint(msg, pos)
            if pos + ksiz > len(msg):
                raise ProtocolError("truncated REMOVE message")
            return Message(sid, db, op, bytes(msg[pos : pos + ksiz]))
        if op == OP_CLEAR:
            return Message(sid, db, op)
    except Incomplete:
        raise ProtocolError("truncated update-log message") from None
    raise ProtocolError(f"unsupported update-log operation 0x{op:02x}")


def split_xt(stored: bytes) -> tuple[int, bytes]:
    """Split a stored value into ``(xt, value)`` (KT's timed databases prefix 5 bytes)."""
    if len(stored) < 5:
        raise ProtocolError("stored value shorter than its expiration prefix")
    return int.from_bytes(stored[:5], "big"), stored[5:]

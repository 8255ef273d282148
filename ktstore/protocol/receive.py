"""An incremental receive buffer and the reply decoders that consume it (no I/O).

Why this exists: a reply can arrive in any number of pieces.  Parsing the whole buffer
again after every read costs time quadratic in the reply's size, and sizing a buffer
from a length the peer *announces* lets 18 hostile bytes make us allocate gigabytes.
So every reader here

* keeps its parse state between reads (what is parsed is consumed and never looked at
  again),
* answers "need more bytes" with the value :data:`NEED_MORE`, not an exception (the
  hot path of a client is one small reply, possibly split),
* lets memory grow only with the bytes actually received (a :class:`ReceiveBuffer`
  holds what arrived; nothing is allocated from a size field), and
* enforces hard caps: :data:`~ktstore.protocol.limits.DATA_MAX_SIZE` per binary field,
  :data:`REPLY_MAX` per reply, :data:`~ktstore.protocol.http.HEAD_MAX` per HTTP head.

The I/O layers (the sync connection, the asyncio protocol) own the sockets; they call
:meth:`ReceiveBuffer.feed` with what arrived and ``decoder.step(buffer)`` until it
returns something else than :data:`NEED_MORE`; ``decoder.need`` says how many buffered
bytes the next step needs at least, so a caller may skip steps that cannot succeed.
See docs/protocol.md ("Reading replies").
"""

from __future__ import annotations

import struct
from typing import Any, Final

from ktstore.errors import Incomplete, ProtocolError
from ktstore.protocol.binary import (
    ERROR_REPLY,
    MAGIC_ERROR,
    MAGIC_GET_BULK,
    MAGIC_PLAY_SCRIPT,
    MAGIC_REMOVE_BULK,
    MAGIC_SET_BULK,
    GetBulk,
    PlayScript,
    RemoveBulk,
    SetBulk,
)
from ktstore.protocol.http import (
    HEAD_MAX,
    RESPONSE_BODY_MAX,
    LineTooLong,
    keep_alive,
    parse_request_head,
    parse_response_head,
)
from ktstore.protocol.limits import DATA_MAX_SIZE, LINE_MAX

__all__ = [
    "NEED_MORE",
    "REPLY_MAX",
    "ReceiveBuffer",
    "Decoder",
    "CountReply",
    "SetCountReply",
    "RemoveCountReply",
    "GetBulkReply",
    "GetBulkPairs",
    "PlayScriptReply",
    "HttpReply",
    "HttpResponse",
    "ParserDecoder",
    "FrameTooLarge",
    "BinaryRequestDecoder",
    "RequestHeadDecoder",
]


class _NeedMore:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_MORE"


#: What ``step`` returns while the message is not complete.
NEED_MORE: Final = _NeedMore()

#: The most bytes one reply may occupy (binary or HTTP): four times ktserver's request
#: limit, so a get_bulk of many large values still fits while a peer that streams
#: garbage is cut off.
REPLY_MAX: Final = RESPONSE_BODY_MAX

#: Compact the buffer (drop consumed bytes) once this many are consumed.
_COMPACT_AT = 1 << 16

_U32 = struct.Struct(">I")
_COUNT = struct.Struct(">BI")
_HIIQ = struct.Struct(">HIIq")
_II = struct.Struct(">II")
_HI = struct.Struct(">HI")
_HEAD3 = struct.Struct(">BII")
_HEAD4 = struct.Struct(">BIII")
#: A get_bulk reply of one record, up to its key: magic, count, dbidx, ksiz, vsiz, xt.
_ONE_RECORD = struct.Struct(">BIHIIq")
_NO_RECORDS = bytes([MAGIC_GET_BULK, 0, 0, 0, 0])
#: ksiz and vsiz of a get_bulk record head (dbidx and xt skipped).
_SIZES = struct.Struct(">2xII8x")


class ReceiveBuffer:
    """Bytes received and not consumed yet: ``buf[pos:]``.

    A single chunk that arrives into an empty buffer is kept as the ``bytes`` object
    the socket returned (no copy: the usual small reply).  Further chunks go into one
    ``bytearray`` that grows with what arrives; consumed bytes are dropped in amortised
    constant time.  Decoders read ``buf``/``pos`` and advance ``pos``.
    """

    __slots__ = ("buf", "pos", "received")

    def __init__(self) -> None:
        self.buf: bytes | bytearray = b""
        self.pos = 0
        #: bytes fed since the last :meth:`start_message` (for the REPLY_MAX cap).
        self.received = 0

    def __len__(self) -> int:
        return len(self.buf) - self.pos

    def __repr__(self) -> str:
        return f"<ReceiveBuffer {len(self)} bytes>"

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self.received += len(data)
        buf = self.buf
        pos = self.pos
        if pos >= len(buf):
            self.buf = data
            self.pos = 0
        elif type(buf) is bytes:
            grown = bytearray(buf[pos:] if pos else buf)
            grown += data
            self.buf = grown
            self.pos = 0
        else:
            assert isinstance(buf, bytearray)
            if pos >= _COMPACT_AT:
                del buf[:pos]
                self.pos = 0
            buf += data

    def start_message(self) -> None:
        """Count received bytes from here (a new reply starts with what is buffered)."""
        self.received = len(self)

    def clear(self) -> None:
        self.buf = b""
        self.pos = 0
        self.received = 0

    def take(self, n: int) -> bytes:
        """Consume ``n`` bytes (the caller checked they are there) and return them."""
        pos = self.pos
        end = pos + n
        self.pos = end
        buf = self.buf
        if type(buf) is bytes:
            return buf[pos:end] if (pos or end != len(buf)) else buf
        return bytes(memoryview(buf)[pos:end])

    def take_all(self) -> bytes:
        """Consume everything buffered."""
        return self.take(len(self))


class Decoder:
    """A reply being decoded.  ``step(rb)`` consumes what it can from ``rb`` and returns
    the result, or :data:`NEED_MORE`; ``need`` is the number of buffered bytes the next
    call needs at least; ``eof(rb)`` is called when the peer closed the stream (only
    close-framed HTTP bodies complete then; everything else raises).

    ``whole`` (a class attribute, ``None`` when a decoder has none) is the fast path of
    the usual case, a reply that arrived in one read into an empty buffer:
    ``whole(chunk)`` returns the result when ``chunk`` is exactly one complete, valid
    reply, and :data:`NEED_MORE` for anything else (incomplete, an error reply, bad
    magic, bytes after the reply), which the caller then feeds to a decoder instance:
    no decoder object is made for the common reply, and the odd one still gets every
    check.  One pass over bytes that arrived: the cost stays linear.
    """

    __slots__ = ("need",)
    whole: Any = None

    def __init__(self) -> None:
        self.need = 1

    def step(self, rb: ReceiveBuffer) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def eof(self, rb: ReceiveBuffer) -> Any:
        """The peer closed the stream before the reply was complete."""
        raise EOFError

    @staticmethod
    def _check_total(rb: ReceiveBuffer) -> None:
        if rb.received > REPLY_MAX:
            raise ProtocolError(f"reply exceeds {REPLY_MAX} bytes")


def _magic_error(first: int, magic: int) -> ProtocolError:
    return ProtocolError(f"unexpected reply magic 0x{first:02x} (expected 0x{magic:02x})")


class CountReply(Decoder):
    """set_bulk / remove_bulk reply: the count, or ``ERROR_REPLY``."""

    __slots__ = ("magic",)

    def __init__(self, magic: int) -> None:
        self.need = 1
        self.magic = magic

    def step(self, rb: ReceiveBuffer) -> Any:
        buf = rb.buf
        pos = rb.pos
        avail = len(buf) - pos
        if avail >= 5 and buf[pos] == self.magic:
            rb.pos = pos + 5
            return _U32.unpack_from(buf, pos + 1)[0]
        if avail < 1:
            return NEED_MORE
        first = buf[pos]
        if first == MAGIC_ERROR:
            rb.pos = pos + 1
            return ERROR_REPLY
        if first != self.magic:
            raise _magic_error(first, self.magic)
        self.need = 5
        return NEED_MORE


def _count_whole(magic: int) -> Any:
    def whole(chunk: bytes) -> Any:
        if len(chunk) == 5 and chunk[0] == magic:
            return _U32.unpack_from(chunk, 1)[0]
        return NEED_MORE

    return whole


class SetCountReply(CountReply):
    """set_bulk reply (:class:`CountReply` of ``MAGIC_SET_BULK``)."""

    __slots__ = ()
    whole = staticmethod(_count_whole(MAGIC_SET_BULK))

    def __init__(self) -> None:
        self.need = 1
        self.magic = MAGIC_SET_BULK


class RemoveCountReply(CountReply):
    """remove_bulk reply (:class:`CountReply` of ``MAGIC_REMOVE_BULK``)."""

    __slots__ = ()
    whole = staticmethod(_count_whole(MAGIC_REMOVE_BULK))

    def __init__(self) -> None:
        self.need = 1
        self.magic = MAGIC_REMOVE_BULK


class _Records(Decoder):
    """Shared loop of the replies made of a count and sized records.

    State: ``count`` (-1 until the head is read) and the records parsed so far.  An
    incomplete record is not consumed; ``need`` then holds its whole size, so the
    next steps return at once until that many bytes are buffered (its 8/18-byte head
    is read again then: constant work, never a rescan of earlier records).
    """

    __slots__ = ("count", "out")
    _magic = 0

    def __init__(self) -> None:
        self.need = 1
        self.count = -1
        self.out: list[Any] = []

    def step(self, rb: ReceiveBuffer) -> Any:
        buf = rb.buf
        pos = rb.pos
        size = len(buf)
        if size - pos < self.need:
            self._check_total(rb)
            return NEED_MORE
        if self.count < 0:
            first = buf[pos]
            if first == MAGIC_ERROR:
                rb.pos = pos + 1
                return ERROR_REPLY
            if first != self._magic:
                raise _magic_error(first, self._magic)
            if size - pos < 5:
                self.need = 5
                return NEED_MORE
            self.count = _U32.unpack_from(buf, pos + 1)[0]
            pos += 5
        if self._parse(rb, buf, pos, size):
            return self.out
        self._check_total(rb)
        return NEED_MORE

    def _parse(self, rb: ReceiveBuffer, buf: Any, pos: int, size: int) -> bool:
        raise NotImplementedError  # pragma: no cover


class GetBulkReply(_Records):
    """get_bulk reply: ``[(dbidx, key, value, xt), ...]`` or ``ERROR_REPLY``."""

    __slots__ = ()
    _magic = MAGIC_GET_BULK

    def step(self, rb: ReceiveBuffer) -> Any:
        # A one-record reply all in a bytes buffer (the single gets of a pipeline or
        # the asyncio client), in one struct call; anything else: the general loop.
        buf = rb.buf
        pos = rb.pos
        if self.count < 0 and type(buf) is bytes and len(buf) - pos >= 23:
            magic, count, dbidx, ksiz, vsiz, xt = _ONE_RECORD.unpack_from(buf, pos)
            if count == 1 and magic == MAGIC_GET_BULK:
                kstart = pos + 23
                kend = kstart + ksiz
                end = kend + vsiz
                if end <= len(buf):  # (so neither size exceeds what arrived)
                    rb.pos = end
                    return [(dbidx, buf[kstart:kend], buf[kend:end], xt)]
        return _Records.step(self, rb)

    @staticmethod
    def whole(chunk: bytes) -> Any:
        """The records of a reply that is exactly ``chunk`` (see :class:`Decoder`)."""
        size = len(chunk)
        if size >= 23:
            magic, count, dbidx, ksiz, vsiz, xt = _ONE_RECORD.unpack_from(chunk)
            if count == 1 and magic == MAGIC_GET_BULK and 23 + ksiz + vsiz == size:
                return [(dbidx, chunk[23 : 23 + ksiz], chunk[23 + ksiz :], xt)]  # one get
        elif chunk == _NO_RECORDS:
            return []
        if size < 5 or chunk[0] != MAGIC_GET_BULK:
            return NEED_MORE
        count = _U32.unpack_from(chunk, 1)[0]
        if count * 18 > size - 5 or size > DATA_MAX_SIZE:
            return NEED_MORE  # (no field of a chunk this size can exceed the limit)
        unpack = _HIIQ.unpack_from
        out: list[Any] = []
        append = out.append
        p = 5
        try:
            for _ in range(count):
                dbidx, ksiz, vsiz, xt = unpack(chunk, p)
                kstart = p + 18
                kend = kstart + ksiz
                p = kend + vsiz
                append((dbidx, chunk[kstart:kend], chunk[kend:p], xt))
        except struct.error:
            return NEED_MORE
        return out if p == size else NEED_MORE

    def _parse(self, rb: ReceiveBuffer, buf: Any, pos: int, size: int) -> bool:
        out = self.out
        append = out.append
        left = self.count - len(out)
        unpack = _HIIQ.unpack_from
        is_bytes = type(buf) is bytes
        if is_bytes and left * 18 <= size - pos and size - pos <= DATA_MAX_SIZE:
            start_len = len(out)
            # Optimistic pass over a reply that is likely all there (a buffer no larger
            # than DATA_MAX_SIZE holds no larger field); an overrun starts over below.
            p = pos
            try:
                for _ in range(left):
                    dbidx, ksiz, vsiz, xt = unpack(buf, p)
                    kstart = p + 18
                    kend = kstart + ksiz
                    p = kend + vsiz
                    append((dbidx, buf[kstart:kend], buf[kend:p], xt))
            except struct.error:
                p = size + 1
            if p <= size:
                rb.pos = p
                return True
            del out[start_len:]  # undo; the checked loop decides
        while left:
            head_end = pos + 18
            if head_end > size:
                self.need = 18
                rb.pos = pos
                return False
            dbidx, ksiz, vsiz, xt = unpack(buf, pos)
            if ksiz > DATA_MAX_SIZE or vsiz > DATA_MAX_SIZE:
                raise ProtocolError(f"size field {max(ksiz, vsiz)} exceeds the protocol limit")
            kend = head_end + ksiz
            end = kend + vsiz
            if end > size:
                self.need = end - pos
                rb.pos = pos
                return False
            if is_bytes:
                append((dbidx, buf[head_end:kend], buf[kend:end], xt))
            else:
                append((dbidx, bytes(buf[head_end:kend]), bytes(buf[kend:end]), xt))
            pos = end
            left -= 1
        rb.pos = pos
        self.need = 1
        return True


class GetBulkPairs(_Records):
    """get_bulk reply as one flat list ``[key0, value0, key1, value1, ...]`` or
    ``ERROR_REPLY``: the plain ``get_bulk`` needs neither dbidx nor xt, and a flat list
    lets the caller build its dict in C (``dict(zip(it, it))``) instead of a Python loop
    over 4-tuples."""

    __slots__ = ()
    _magic = MAGIC_GET_BULK

    @staticmethod
    def whole(chunk: bytes) -> Any:
        """The pairs of a reply that is exactly ``chunk`` (see :class:`Decoder`)."""
        size = len(chunk)
        if size < 5 or chunk[0] != MAGIC_GET_BULK:
            return NEED_MORE
        count = _U32.unpack_from(chunk, 1)[0]
        if count * 18 > size - 5 or size > DATA_MAX_SIZE:
            return NEED_MORE  # (no field of a chunk this size can exceed the limit)
        unpack = _SIZES.unpack_from
        out: list[bytes] = []
        append = out.append
        p = 5
        try:
            for _ in range(count):
                ksiz, vsiz = unpack(chunk, p)
                p += 18
                kend = p + ksiz
                append(chunk[p:kend])
                p = kend + vsiz
                append(chunk[kend:p])
        except struct.error:
            return NEED_MORE
        return out if p == size else NEED_MORE

    def _parse(self, rb: ReceiveBuffer, buf: Any, pos: int, size: int) -> bool:
        out = self.out
        append = out.append
        left = self.count - (len(out) >> 1)
        unpack = _SIZES.unpack_from
        is_bytes = type(buf) is bytes
        while left:
            head_end = pos + 18
            if head_end > size:
                self.need = 18
                rb.pos = pos
                return False
            ksiz, vsiz = unpack(buf, pos)
            if ksiz > DATA_MAX_SIZE or vsiz > DATA_MAX_SIZE:
                raise ProtocolError(f"size field {max(ksiz, vsiz)} exceeds the protocol limit")
            kend = head_end + ksiz
            end = kend + vsiz
            if end > size:
                self.need = end - pos
                rb.pos = pos
                return False
            if is_bytes:
                append(buf[head_end:kend])
                append(buf[kend:end])
            else:
                append(bytes(buf[head_end:kend]))
                append(bytes(buf[kend:end]))
            pos = end
            left -= 1
        rb.pos = pos
        self.need = 1
        return True


class PlayScriptReply(_Records):
    """play_script reply: ``[(key, value), ...]`` or ``ERROR_REPLY``."""

    __slots__ = ()
    _magic = MAGIC_PLAY_SCRIPT

    def _parse(self, rb: ReceiveBuffer, buf: Any, pos: int, size: int) -> bool:
        out = self.out
        append = out.append
        left = self.count - len(out)
        unpack = _II.unpack_from
        is_bytes = type(buf) is bytes
        while left:
            head_end = pos + 8
            if head_end > size:
                self.need = 8
                rb.pos = pos
                return False
            ksiz, vsiz = unpack(buf, pos)
            if ksiz > DATA_MAX_SIZE or vsiz > DATA_MAX_SIZE:
                raise ProtocolError(f"size field {max(ksiz, vsiz)} exceeds the protocol limit")
            kend = head_end + ksiz
            end = kend + vsiz
            if end > size:
                self.need = end - pos
                rb.pos = pos
                return False
            if is_bytes:
                append((buf[head_end:kend], buf[kend:end]))
            else:
                append((bytes(buf[head_end:kend]), bytes(buf[kend:end])))
            pos = end
            left -= 1
        rb.pos = pos
        self.need = 1
        return True


class HttpReply:
    """A decoded HTTP response: status, version, lowercased headers, body, and whether
    the connection may carry another request."""

    __slots__ = ("status", "version", "headers", "body", "keep_alive")

    def __init__(
        self, status: int, version: str, headers: dict[str, str], body: bytes, keep: bool
    ) -> None:
        self.status = status
        self.version = version
        self.headers = headers
        self.body = body
        self.keep_alive = keep

    def __iter__(self) -> Any:  # (status, headers, body), the old exchange result
        return iter((self.status, self.headers, self.body))

    def __repr__(self) -> str:
        return f"<HttpReply {self.status} {len(self.body)} bytes>"


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILER, _CLOSE = range(6)


def _fast_head(text: str) -> tuple[int, str, dict[str, str]] | None:
    """The usual head (CRLF only, plain header names) in one pass; ``None`` for
    anything else, which the general parser then decides on."""
    lines = text.split("\r\n")
    n = len(lines) - 1
    status_line = lines[0]
    code = status_line[9:12]
    if not (
        text.count("\r") == n
        and text.count("\n") == n
        and status_line[:5] == "HTTP/"
        and status_line[8:9] == " "
        and " " not in status_line[:8]
        and status_line[12:13] in (" ", "")
        and code.isdigit()
        and code.isascii()
    ):
        return None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or " " in name or "\t" in name:
            return None
        headers[name.lower()] = value.lstrip(" ")
    return int(code), status_line[:8], headers


class HttpResponse(Decoder):
    """One HTTP/1.x response.  The head is searched for once (each step resumes the
    search where the last one stopped); the body is framed by Content-Length, chunked
    encoding or the connection closing, and is collected as it arrives.

    ``head_request`` is true when the request was ``HEAD`` (no body follows).
    """

    __slots__ = (
        "state",
        "scan",
        "status",
        "version",
        "headers",
        "left",
        "parts",
        "total",
        "head_request",
    )

    def __init__(self, head_request: bool = False) -> None:
        self.need = 1
        self.state = _HEAD
        self.scan = 0
        self.status = 0
        self.version = ""
        self.headers: dict[str, str] = {}
        self.left = 0
        self.parts: list[bytes] = []
        self.total = 0
        self.head_request = head_request

    def _done(self, body: bytes) -> HttpReply:
        version = self.version
        headers = self.headers
        if self.state == _CLOSE:
            keep = False
        elif version == "HTTP/1.1" and "connection" not in headers:
            keep = True
        else:
            keep = keep_alive(version, headers)
        return HttpReply(self.status, version, headers, body, keep)

    def step(self, rb: ReceiveBuffer) -> Any:
        if self.state == _HEAD:
            buf = rb.buf
            pos = rb.pos
            start = pos + self.scan
            stop = buf.find(b"\r\n\r\n", start)
            if stop < 0 and buf.find(b"\n\n", start) < 0 and buf.find(b"\n\r\n", start) < 0:
                # No blank line yet: resume the search here next time (the general
                # parser runs only once a head is complete, so nothing is rescanned).
                avail = len(buf) - pos
                if avail > HEAD_MAX:
                    raise ProtocolError(f"HTTP head longer than {HEAD_MAX} bytes")
                self.scan = max(0, avail - 3)
                self.need = avail + 1
                return NEED_MORE
            if stop < 0 or stop - pos > LINE_MAX:
                return self._general_head(rb)
            text = bytes(buf[pos:stop]).decode("latin-1")
            fast = _fast_head(text)
            if fast is None:
                return self._general_head(rb)
            self.status, self.version, headers = fast
            self.headers = headers
            body_start = stop + 4
            clen = headers.get("content-length")
            status = self.status
            if (
                clen is not None
                and clen.isdigit()
                and clen.isascii()
                and "transfer-encoding" not in headers
                and status >= 200
                and status != 204
                and status != 304
                and not self.head_request
            ):
                length = int(clen)
                if length > REPLY_MAX:
                    raise ProtocolError(f"HTTP body of {length} bytes exceeds the size limit")
                end = body_start + length
                if end <= len(buf):  # the usual case: the whole response is here
                    rb.pos = end
                    body = buf[body_start:end]
                    return self._done(body if type(body) is bytes else bytes(body))
                rb.pos = body_start
                self.state = _LENGTH
                self.left = length
            else:
                rb.pos = body_start
                self._framing_from_head()
        return self._body(rb)

    def _general_head(self, rb: ReceiveBuffer) -> Any:
        buf = rb.buf
        pos = rb.pos
        try:
            head, end = parse_response_head(buf, pos)
        except Incomplete:
            avail = len(buf) - pos
            if avail > HEAD_MAX:
                raise ProtocolError(f"HTTP head longer than {HEAD_MAX} bytes") from None
            self.scan = max(0, avail - 3)  # resume the search for the blank line here
            self.need = avail + 1
            return NEED_MORE
        self.status = head.status
        self.version = head.version
        self.headers = head.headers
        rb.pos = end
        self._framing_from_head()
        return self._body(rb)

    def _framing_from_head(self) -> None:
        headers = self.headers
        status = self.status
        self.need = 0
        if self.head_request or status < 200 or status == 204 or status == 304:
            self.state = _LENGTH
            self.left = 0
            return
        te = headers.get("transfer-encoding")
        if te is not None and te.lower() == "chunked":
            self.state = _CHUNK_SIZE
            return
        clen = headers.get("content-length")
        if clen is not None:
            clen = clen.strip()
            if not clen.isdigit() or not clen.isascii():
                raise ProtocolError(f"bad Content-Length: {clen[:40]!r}")
            length = int(clen)
            if length > REPLY_MAX:
                raise ProtocolError(f"HTTP body of {length} bytes exceeds the size limit")
            self.state = _LENGTH
            self.left = length
            return
        self.state = _CLOSE

    def _add(self, data: bytes) -> None:
        self.total += len(data)
        if self.total > REPLY_MAX:
            raise ProtocolError(f"HTTP body exceeds {REPLY_MAX} bytes")
        self.parts.append(data)

    def _body(self, rb: ReceiveBuffer) -> Any:
        while True:
            state = self.state
            avail = len(rb)
            if state == _LENGTH:
                left = self.left
                if avail >= left:
                    data = rb.take(left)
                    if self.parts:
                        self.parts.append(data)
                        data = b"".join(self.parts)
                        self.parts = []
                    return self._done(data)
                if avail:
                    # Take what arrived: the body grows with received bytes only.
                    self.parts.append(rb.take_all())
                    self.left = left - avail
                self.need = 1
                return NEED_MORE
            if state == _CLOSE:
                if avail:
                    self._add(rb.take_all())
                self.need = 1
                return NEED_MORE
            # chunked: size line, data + CRLF, ..., trailer lines, blank line
            buf = rb.buf
            pos = rb.pos
            nl = buf.find(b"\n", pos)
            if state == _CHUNK_DATA:
                left = self.left
                if avail < left + 2:
                    self.need = left + 2
                    return NEED_MORE
                if buf[pos + left : pos + left + 2] != b"\r\n":
                    raise ProtocolError("invalid chunk: data not followed by CRLF")
                self._add(rb.take(left))
                rb.pos += 2
                self.state = _CHUNK_SIZE
                continue
            if nl < 0:
                if avail > LINE_MAX + 1:
                    raise ProtocolError("chunk size line too long")
                self.need = avail + 1
                return NEED_MORE
            if nl - pos > LINE_MAX + 1:
                raise ProtocolError("chunk size line too long")
            line = bytes(buf[pos:nl]).replace(b"\r", b"")
            rb.pos = nl + 1
            if state == _TRAILER:
                if not line:
                    return self._done(b"".join(self.parts))
                continue
            if not line:  # ktserver: an empty size line ends the body
                return self._done(b"".join(self.parts))
            size = _chunk_size(line)
            if self.total + size > REPLY_MAX:
                raise ProtocolError(f"HTTP body exceeds {REPLY_MAX} bytes")
            if size == 0:
                self.state = _TRAILER
            else:
                self.state = _CHUNK_DATA
                self.left = size

    def eof(self, rb: ReceiveBuffer) -> Any:
        if self.state == _CLOSE:
            if len(rb):
                self._add(rb.take_all())
            return self._done(b"".join(self.parts))
        raise EOFError


def _chunk_size(line: bytes) -> int:
    """KC atoih on a chunk-size line: hex digits up to the first other character."""
    text = line.decode("latin-1").lstrip("".join(map(chr, range(1, 33))))
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    for i, c in enumerate(text):
        if c not in "0123456789abcdefABCDEF":
            text = text[:i]
            break
    return int(text, 16) if text else 0


class ParserDecoder(Decoder):
    """Adapter for a whole-message parser ``parse(buf, pos, *args) -> (result, end)``
    that raises :class:`~ktstore.errors.Incomplete` (the server's request parsers).

    The parser is called again only once at least ``Incomplete.need`` bytes are
    buffered, so a message costs a bounded number of parses as long as the parser's
    ``need`` grows (the binary and HTTP parsers of this package guarantee that).
    """

    __slots__ = ("parse", "args")

    def __init__(self, parse: Any, *args: Any) -> None:
        self.need = 1
        self.parse = parse
        self.args = args

    def step(self, rb: ReceiveBuffer) -> Any:
        if len(rb) < self.need:
            self._check_total(rb)
            return NEED_MORE
        try:
            result, end = self.parse(rb.buf, rb.pos, *self.args)
        except Incomplete as exc:
            self.need = max(exc.need, len(rb) + 1)
            self._check_total(rb)
            return NEED_MORE
        rb.pos = end
        self.need = 1
        return result


# ---------------------------------------------------------------------------------------
# server side: requests


class FrameTooLarge(ProtocolError):
    """A binary request frame whose size (known from its header and record heads
    before its bytes arrive) exceeds the decoder's ``frame_max``."""


# the smallest record of each request: set (dbidx, ksiz, vsiz, xt), remove/get
# (dbidx, ksiz), a play_script parameter (ksiz, vsiz)
_MIN_RECORD = {MAGIC_SET_BULK: 18, MAGIC_REMOVE_BULK: 6, MAGIC_GET_BULK: 6, MAGIC_PLAY_SCRIPT: 8}


class BinaryRequestDecoder(Decoder):
    """One binary request (server side): ``SetBulk``, ``RemoveBulk``, ``GetBulk`` or
    ``PlayScript`` of :mod:`ktstore.protocol.binary`, decoded as its bytes arrive.

    Complete records are consumed at once and kept in the decoder, so a frame arriving
    in many packets costs time linear in its size (each byte is parsed once; the head of
    a record split by a packet boundary is read again, constant work).  An incomplete
    record sets ``need`` to its whole size, so no step runs until it is all there.

    ``magic`` and ``flags`` are known once the header arrived (the caller answers a
    refused frame by them).  Unknown magic bytes (replication 0xB1 included) and size
    fields over :data:`~ktstore.protocol.limits.DATA_MAX_SIZE` raise ProtocolError; a
    frame whose header and record heads already add up to more than ``frame_max``
    bytes raises :class:`FrameTooLarge` before the rest is received.
    """

    __slots__ = ("frame_max", "magic", "flags", "count", "name", "out", "frame")

    def __init__(self, frame_max: int = 2 * DATA_MAX_SIZE + 64) -> None:
        self.need = 1
        self.frame_max = frame_max
        self.magic = -1
        self.flags = 0
        self.count = -1  # records announced; -1 until the header (and name) are consumed
        self.name = b""
        self.out: list[Any] = []
        self.frame = 0  # bytes of the frame consumed so far

    def step(self, rb: ReceiveBuffer) -> Any:
        if self.count < 0:
            buf = rb.buf
            pos = rb.pos
            avail = len(buf) - pos
            if avail < 1:
                return NEED_MORE
            magic = self.magic = buf[pos]
            per = _MIN_RECORD.get(magic)
            if per is None:
                raise ProtocolError(f"unknown binary magic 0x{magic:02x}")
            if magic == MAGIC_PLAY_SCRIPT:
                if avail < 13:
                    self.need = 13
                    return NEED_MORE
                _, self.flags, nsiz, count = _HEAD4.unpack_from(buf, pos)
                if nsiz > DATA_MAX_SIZE:
                    raise ProtocolError(f"size field {nsiz} exceeds the protocol limit")
                head = 13 + nsiz
            else:
                if avail < 9:
                    self.need = 9
                    return NEED_MORE
                _, self.flags, count = _HEAD3.unpack_from(buf, pos)
                nsiz = 0
                head = 9
            if head + count * per > self.frame_max:
                raise FrameTooLarge(f"binary frame of at least {head + count * per} bytes")
            if avail < head:
                self.need = head
                return NEED_MORE
            if nsiz:
                self.name = bytes(buf[pos + 13 : pos + head])
            rb.pos = pos + head
            self.frame = head
            self.count = count
        return self._records(rb)

    def _records(self, rb: ReceiveBuffer) -> Any:
        buf = rb.buf
        base = rb.pos
        if type(buf) is bytes:
            data: bytes = buf
            p = base
        else:  # one copy of what is unparsed beats a bytes() of every field slice
            data = bytes(memoryview(buf)[base:])
            p = 0
        start = p
        size = len(data)
        out = self.out
        append = out.append
        left = self.count - len(out)
        magic = self.magic
        need = 0
        if magic == MAGIC_SET_BULK:
            # The hot loop of bulk loads: one bounds test per record; the size-field
            # check is needed only when the buffer could hold a field over the limit.
            unpack = _HIIQ.unpack_from
            big = size - p > DATA_MAX_SIZE
            for _ in range(left):
                head_end = p + 18
                if head_end > size:
                    need = 18
                    break
                dbidx, ksiz, vsiz, xt = unpack(data, p)
                kend = head_end + ksiz
                end = kend + vsiz
                if end > size or big:
                    if ksiz > DATA_MAX_SIZE or vsiz > DATA_MAX_SIZE:
                        raise ProtocolError(
                            f"size field {max(ksiz, vsiz)} exceeds the protocol limit"
                        )
                    if end > size:
                        need = end - p
                        break
                append((dbidx, data[head_end:kend], data[kend:end], xt))
                p = end
            left = self.count - len(out)
        elif magic == MAGIC_PLAY_SCRIPT:
            unpack2 = _II.unpack_from
            while left:
                head_end = p + 8
                if head_end > size:
                    need = 8
                    break
                ksiz, vsiz = unpack2(data, p)
                kend = head_end + ksiz
                end = kend + vsiz
                if ksiz > DATA_MAX_SIZE or vsiz > DATA_MAX_SIZE:
                    raise ProtocolError(f"size field {max(ksiz, vsiz)} exceeds the protocol limit")
                if end > size:
                    need = end - p
                    break
                append((data[head_end:kend], data[kend:end]))
                p = end
                left -= 1
        else:  # get_bulk / remove_bulk keys
            unpack3 = _HI.unpack_from
            while left:
                head_end = p + 6
                if head_end > size:
                    need = 6
                    break
                dbidx, ksiz = unpack3(data, p)
                end = head_end + ksiz
                if ksiz > DATA_MAX_SIZE:
                    raise ProtocolError(f"size field {ksiz} exceeds the protocol limit")
                if end > size:
                    need = end - p
                    break
                append((dbidx, data[head_end:end]))
                p = end
                left -= 1
        consumed = p - start
        rb.pos = base + consumed
        self.frame += consumed
        if not left:
            self.need = 1
            self.out = []
            if magic == MAGIC_SET_BULK:
                return SetBulk(self.flags, out)
            if magic == MAGIC_PLAY_SCRIPT:
                return PlayScript(self.flags, self.name, out)
            if magic == MAGIC_GET_BULK:
                return GetBulk(self.flags, out)
            return RemoveBulk(self.flags, out)
        least = self.frame + need + (left - 1) * _MIN_RECORD[magic]
        if least > self.frame_max:
            raise FrameTooLarge(f"binary frame of at least {least} bytes")
        self.need = need
        return NEED_MORE


class RequestHeadDecoder(Decoder):
    """An HTTP request head (server side): :class:`~ktstore.protocol.http.RequestHead`.

    The common head that arrived whole is parsed at once.  Otherwise the search for
    the blank line resumes where the last one stopped, and the head is parsed once,
    when it is complete; a head longer than ``HEAD_MAX`` or a line longer than
    ``LINE_MAX`` raises :class:`~ktstore.protocol.http.LineTooLong` as soon as it shows.
    The decoder consumes the head; the body (if any) is left in the buffer.
    """

    __slots__ = ("scan",)

    def __init__(self) -> None:
        self.need = 1
        self.scan = -1  # -1: no step yet (try a whole parse first)

    def step(self, rb: ReceiveBuffer) -> Any:
        buf = rb.buf
        pos = rb.pos
        size = len(buf)
        if self.scan >= 0:
            start = pos + self.scan
            if buf.find(b"\n\r\n", start) < 0 and buf.find(b"\n\n", start) < 0:
                return self._incomplete(buf, pos, size)
        try:
            head, end = parse_request_head(buf, pos)
        except Incomplete:
            return self._incomplete(buf, pos, size)
        rb.pos = end
        self.need = 1
        self.scan = -1
        return head

    def _incomplete(self, buf: Any, pos: int, size: int) -> Any:
        avail = size - pos
        if avail > HEAD_MAX:
            raise LineTooLong(f"HTTP head longer than {HEAD_MAX} bytes")
        last = buf.rfind(b"\n", pos)
        if size - (last + 1 if last >= 0 else pos) > LINE_MAX + 1:  # +1: a trailing CR
            raise LineTooLong(f"HTTP line longer than {LINE_MAX} bytes")
        self.scan = avail - 2 if avail > 2 else 0  # a blank line may straddle the cut
        self.need = avail + 1
        return NEED_MORE

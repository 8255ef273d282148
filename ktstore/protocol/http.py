"""HTTP/1.x as Kyoto Tycoon speaks it: request/response heads, bodies, keep-alive, and
responses encoded exactly like ktserver's (docs/protocol.md, "HTTP").

Parsing follows ktserver's reader, so that our server accepts what ktserver accepts:

* a line ends at LF; CR characters are dropped wherever they are; lines are at most
  LINE_MAX (8191) bytes;
* the request line is ``METHOD SP target SP version``, the version exactly ``HTTP/1.0``
  or ``HTTP/1.1``; methods other than GET HEAD POST PUT DELETE are "unknown" (answered
  501, but their body is still read);
* header names are whitespace-normalised and lowercased, values lose leading spaces;
  lines without ``:`` are ignored; a repeated header keeps its last value;
* a request body is read only for POST, PUT and unknown methods: ``Content-Length``
  first, else ``Transfer-Encoding: chunked``; more than HTTP_BODY_MAX is refused with
  :class:`BodyTooLarge` (the server answers 413), a too-long line with
  :class:`LineTooLong`, anything else malformed with plain ProtocolError.

Encoding reproduces ktserver's layout: status line with its reason phrases (450
``Logical Inconsistency``), ``Server: KyotoTycoon/0.9.56``, ``Date``, ``Connection:
close`` when not keeping alive, ``Content-Length`` (not for HEAD or 304), then the
other headers sorted by name and re-capitalised (``X-Kt-Xt``).

Strings: heads are decoded as Latin-1, so every byte survives (``.encode("latin-1")``
gives the raw bytes back, e.g. for :func:`ktstore.protocol.tsv.url_decode`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from ktstore.errors import Incomplete, ProtocolError
from ktstore.protocol.limits import HTTP_BODY_MAX, LINE_MAX

__all__ = [
    "SERVER_VERSION",
    "KNOWN_METHODS",
    "HEAD_MAX",
    "RESPONSE_BODY_MAX",
    "LineTooLong",
    "BodyTooLarge",
    "RequestHead",
    "ResponseHead",
    "reason_phrase",
    "parse_request_head",
    "parse_response_head",
    "body_framing",
    "parse_body",
    "parse_chunked",
    "ChunkedDecoder",
    "parse_request",
    "parse_response",
    "keep_alive",
    "encode_request",
    "encode_response",
    "encode_error_response",
    "encode_chunked",
    "http_date",
    "capitalize_header",
]

#: The version our server announces (the ktserver it emulates).
SERVER_VERSION = "0.9.56"

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE"})
_BODY_METHODS = frozenset({"GET", "HEAD", "DELETE"})  # complement: these never carry a body

#: Bound on a whole head (ktserver has none; this keeps a hostile peer from growing it).
HEAD_MAX = 64 * (LINE_MAX + 1)

#: Bound on a response body the client accepts: a TSV body of a HTTP_BODY_MAX value in
#: Base64 (or URL encoding) is larger than HTTP_BODY_MAX itself.
RESPONSE_BODY_MAX = 4 * HTTP_BODY_MAX


class LineTooLong(ProtocolError):
    """An HTTP line (request/status line, header, chunk size) is longer than LINE_MAX,
    or a whole head longer than HEAD_MAX."""


class BodyTooLarge(ProtocolError):
    """A body larger than the limit was announced; ktserver answers 413 for a request."""

    status = 413


_REASONS = {
    100: "Continue",
    101: "Switching Protocols",
    102: "Processing",
    200: "OK",
    201: "Created",
    202: "Accepted",
    203: "Non-Authoritative Information",
    204: "No Content",
    205: "Reset Content",
    206: "Partial Content",
    207: "Multi-Status",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    305: "Use Proxy",
    307: "Temporary Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Requested Range Not Satisfiable",
    417: "Expectation Failed",
    422: "Unprocessable Entity",
    423: "Locked",
    424: "Failed Dependency",
    426: "Upgrade Required",
    450: "Logical Inconsistency",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates",
    507: "Insufficient Storage",
    509: "Bandwidth Limit Exceeded",
    510: "Not Extended",
}


def reason_phrase(status: int) -> str:
    """ktserver's reason phrase for a status (its fallbacks for unlisted codes too)."""
    phrase = _REASONS.get(status)
    if phrase is not None:
        return phrase
    if status < 100:
        return "Unknown Status"
    if status < 200:
        return "Unknown Informational Status"
    if status < 300:
        return "Unknown Success Status"
    if status < 400:
        return "Unknown Redirection Status"
    if status < 500:
        return "Unknown Client Error Status"
    if status < 600:
        return "Unknown Server Error Status"
    return "Unknown Status"


# --- heads -----------------------------------------------------------------------------------


@dataclass(slots=True)
class RequestHead:
    """A parsed request head.

    ``target`` is the request target as sent; ``path`` the part before the first ``?``
    and ``query`` the part after it (None without ``?``); all still URL-encoded.
    ``method`` is as sent (case-sensitive, like ktserver: ``get`` is an unknown method).
    """

    method: str
    target: str
    path: str
    query: str | None
    version: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def known_method(self) -> bool:
        return self.method in KNOWN_METHODS

    @property
    def keep_alive(self) -> bool:
        return keep_alive(self.version, self.headers)

    @property
    def path_bytes(self) -> bytes:
        return self.path.encode("latin-1")

    @property
    def query_bytes(self) -> bytes:
        return b"" if self.query is None else self.query.encode("latin-1")


@dataclass(slots=True)
class ResponseHead:
    """A parsed response head; header names lowercased."""

    version: str
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def keep_alive(self) -> bool:
        return keep_alive(self.version, self.headers)


def _head_end(buf, pos: int) -> tuple[int, int]:
    """Find the empty line ending a head: ``(end of the last header line, body start)``."""
    a = buf.find(b"\n\r\n", pos)
    b = buf.find(b"\n\n", pos, a + 2 if a >= 0 else len(buf))
    if b >= 0 and (a < 0 or b <= a):
        stop, end = b, b + 2
    elif a >= 0:
        stop, end = a, a + 3
    else:
        stop = end = -1
    if stop >= 0:
        if stop - pos > HEAD_MAX:
            raise LineTooLong(f"HTTP head longer than {HEAD_MAX} bytes")
        return stop, end
    # incomplete: refuse early what can never become a valid head
    size = len(buf)
    if size - pos > HEAD_MAX:
        raise LineTooLong(f"HTTP head longer than {HEAD_MAX} bytes")
    last = buf.rfind(b"\n", pos)
    if size - (last + 1 if last >= 0 else pos) > LINE_MAX + 1:  # +1: a trailing CR
        raise LineTooLong(f"HTTP line longer than {LINE_MAX} bytes")
    raise Incomplete(size - pos + 1)


def _split_head(buf, pos: int, stop: int) -> list[str]:
    text = bytes(buf[pos:stop]).decode("latin-1")
    if "\r" in text:
        text = text.replace("\r", "")
    lines = text.split("\n")
    if len(text) > LINE_MAX and max(map(len, lines)) > LINE_MAX:
        raise LineTooLong(f"HTTP line longer than {LINE_MAX} bytes")
    return lines


def _head_lines(buf, pos: int) -> tuple[list[str], int]:
    """The lines of the head at ``pos`` (CRs removed) and the offset of the body.

    Fast path for the usual CRLF-only head of at most LINE_MAX bytes: one find, one
    decode, one split, all in C. Anything else (bare LFs, stray CRs, long heads) takes
    the general path, which applies ktserver's rules literally.
    """
    stop = buf.find(b"\r\n\r\n", pos)
    if 0 <= stop - pos <= LINE_MAX:
        text = bytes(buf[pos:stop]).decode("latin-1")
        n = text.count("\r\n")
        if text.count("\n") == n and text.count("\r") == n:
            return text.split("\r\n"), stop + 4
    stop, end = _head_end(buf, pos)
    return _split_head(buf, pos, stop), end


def _parse_headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        if " " in name or "\t" in name or not name:
            name = " ".join(name.split())
            if not name:
                continue
        headers[name.lower()] = value.lstrip(" ")
    return headers


def parse_request_head(buf, pos: int = 0) -> tuple[RequestHead, int]:
    """Parse a request head: ``(RequestHead, offset of the body)``.

    Raises ProtocolError where ktserver drops the connection silently (no two spaces in
    the request line, empty target, a version other than HTTP/1.0 or HTTP/1.1).
    Leading empty lines are not skipped (ktserver does not skip them either).
    """
    lines, end = _head_lines(buf, pos)
    method, sp1, rest = lines[0].partition(" ")
    target, sp2, version = rest.partition(" ")
    if not sp1 or not sp2:
        raise ProtocolError(f"malformed request line: {lines[0][:80]!r}")
    path, qmark, query = target.partition("?")
    if not path:
        raise ProtocolError("empty request target")
    if version != "HTTP/1.1" and version != "HTTP/1.0":
        raise ProtocolError(f"unsupported HTTP version: {version[:20]!r}")
    head = RequestHead(method, target, path, query if qmark else None, version)
    head.headers = _parse_headers(lines[1:]) if len(lines) > 1 else {}
    return head, end


def parse_response_head(buf, pos: int = 0) -> tuple[ResponseHead, int]:
    """Parse a response head: ``(ResponseHead, offset of the body)``."""
    lines, end = _head_lines(buf, pos)
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or len(code) != 3 or not code.isdigit():
        raise ProtocolError(f"malformed status line: {lines[0][:80]!r}")
    head = ResponseHead(version, int(code), reason)
    head.headers = _parse_headers(lines[1:]) if len(lines) > 1 else {}
    return head, end


def keep_alive(version: str, headers: dict[str, str]) -> bool:
    """Whether the connection stays open after this message (ktserver's rule): on by
    default for HTTP/1.1, off for 1.0; ``Connection: close``/``keep-alive`` override."""
    keep = version == "HTTP/1.1"
    conn = headers.get("connection")
    if conn is not None:
        conn = conn.lower()
        if conn == "close":
            return False
        if conn == "keep-alive":
            return True
    return keep


# --- bodies ------------------------------------------------------------------------------------


_BLANKS = "".join(map(chr, range(1, 33)))  # what KC skips before a number


def _atoi(text: str) -> int:
    """KC atoi on a header value (leading blanks, sign, digits, stop at garbage)."""
    if text.isdigit() and text.isascii():
        return int(text)
    text = text.lstrip(_BLANKS)
    sign = 1
    if text[:1] in ("-", "+"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    n = 0
    for i, c in enumerate(text):
        if not "0" <= c <= "9":
            text = text[:i]
            break
    if text:
        n = int(text)
    return sign * n


def body_framing(
    head: RequestHead | ResponseHead, request_method: str | None = None
) -> tuple[str, int]:
    """How the body after ``head`` is delimited: ``("none"|"length"|"chunked"|"close", length)``.

    For a request, ktserver's rule: only POST, PUT and unknown methods have a body,
    by ``Content-Length`` (preferred) or chunked; otherwise none. A length over
    HTTP_BODY_MAX raises BodyTooLarge.

    For a response (pass the request's method as ``request_method`` so that a HEAD
    answer is known to have no body): 1xx, 204 and 304 have none; then chunked,
    Content-Length, or "close" (read until the peer closes).
    """
    headers = head.headers
    if isinstance(head, RequestHead):
        if head.method in _BODY_METHODS:
            return "none", 0
        clen = headers.get("content-length")
        if clen is not None:
            length = _atoi(clen)
            if length >= 0:
                if length > HTTP_BODY_MAX:
                    raise BodyTooLarge(f"request body of {length} bytes exceeds {HTTP_BODY_MAX}")
                return "length", length
        te = headers.get("transfer-encoding")
        if te is not None and te.lower() == "chunked":
            return "chunked", 0
        return "none", 0
    status = head.status
    if request_method == "HEAD" or status < 200 or status == 204 or status == 304:
        return "none", 0
    te = headers.get("transfer-encoding")
    if te is not None and te.lower() == "chunked":
        return "chunked", 0
    clen = headers.get("content-length")
    if clen is not None:
        clen = clen.strip()
        if not clen.isdigit():
            raise ProtocolError(f"bad Content-Length: {clen[:40]!r}")
        length = int(clen)
        if length > RESPONSE_BODY_MAX:
            raise BodyTooLarge(f"response body of {length} bytes exceeds {RESPONSE_BODY_MAX}")
        return "length", length
    return "close", 0


_HEXDIGITS = frozenset("0123456789abcdefABCDEF")


def _chunk_size(line: bytes) -> int:
    """KC atoih on a chunk-size line: hex digits up to the first other character."""
    text = line.decode("latin-1").lstrip(_BLANKS)
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    for i, c in enumerate(text):
        if c not in _HEXDIGITS:
            text = text[:i]
            break
    return int(text, 16) if text else 0


def parse_chunked(buf, pos: int = 0, limit: int = HTTP_BODY_MAX) -> tuple[bytes, int]:
    """Parse a whole chunked body at ``pos``: ``(data, end)``.

    Each chunk is a hex size line (extensions ignored), the data, then CRLF; the 0-size
    chunk ends the body, followed by an empty line or by trailer lines and an empty line
    (ktserver accepts no trailers; we do). An empty size line also ends the body, as in
    ktserver. More than ``limit`` bytes of data raise BodyTooLarge.
    """
    size = len(buf)
    parts: list[bytes] = []
    total = 0
    p = pos
    while True:
        nl = buf.find(b"\n", p)
        if nl < 0:
            if size - p > LINE_MAX + 1:
                raise LineTooLong("chunk size line too long")
            raise Incomplete(size - pos + 1)
        if nl - p > LINE_MAX + 1:
            raise LineTooLong("chunk size line too long")
        line = bytes(buf[p:nl]).replace(b"\r", b"")
        p = nl + 1
        if not line:
            return b"".join(parts), p  # ktserver: an empty size line ends the body
        csiz = _chunk_size(line)
        if total + csiz > limit:
            raise BodyTooLarge(f"chunked body exceeds {limit} bytes")
        if csiz == 0:
            break
        data_end = p + csiz
        if data_end + 2 > size:
            raise Incomplete(data_end + 2 - pos + 1)
        if buf[data_end : data_end + 2] != b"\r\n":
            raise ProtocolError("invalid chunk: data not followed by CRLF")
        parts.append(bytes(buf[p:data_end]))
        total += csiz
        p = data_end + 2
    # after the last chunk: optional trailer lines, then an empty line
    while True:
        nl = buf.find(b"\n", p)
        if nl < 0:
            if size - p > LINE_MAX + 1:
                raise LineTooLong("trailer line too long")
            raise Incomplete(size - pos + 1)
        line = bytes(buf[p:nl]).replace(b"\r", b"")
        p = nl + 1
        if not line:
            return b"".join(parts), p


_PLAIN_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,15})\r\n")


class ChunkedDecoder:
    """An incremental chunked-body decoder with ktserver's rules (server side).

    Feed it the bytes received so far with :meth:`feed`; it consumes every whole
    size line and as much chunk data as is there, appending the data to
    :attr:`body` at once, so memory stays at the body plus one partial size line
    whatever the chunk sizes (a body of 1-byte chunks no longer costs one Python
    object per chunk), and each byte is looked at once.

    ktserver's rules (``kthttp.h``): a size line is hex digits (KC's ``atoih``:
    anything else ends the number, so ``zz`` and ``-5`` are 0); an empty size line
    ends the body; the data of every chunk, *including the 0-size one*, must be
    followed by exactly CRLF, otherwise ProtocolError ("invalid chunk": a size
    line of ``zz`` followed by data, and trailers, are refused); more than
    ``limit`` bytes raise BodyTooLarge; a size line over LINE_MAX LineTooLong.
    """

    __slots__ = ("body", "done", "limit", "_left", "_crlf", "_last")

    def __init__(self, limit: int = HTTP_BODY_MAX) -> None:
        self.body = bytearray()
        self.done = False
        self.limit = limit
        self._left = 0  # data bytes of the current chunk still to come
        self._crlf = False  # the CRLF after a chunk's data is expected next
        self._last = False  # the 0-size chunk was seen: its CRLF ends the body

    def feed(self, buf, pos: int = 0) -> int:
        """Consume what can be consumed of ``buf[pos:]``; returns the new position.

        When :attr:`done` is set the body is complete and the position is just
        after it; otherwise everything before the returned position is consumed
        and more bytes are needed.
        """
        size = len(buf)
        p = pos
        body = self.body
        while not self.done:
            if self._left:
                take = min(self._left, size - p)
                if take <= 0:
                    return p
                body += buf[p : p + take]
                p += take
                self._left -= take
                if self._left:
                    return p
                self._crlf = True
            if self._crlf:
                if size - p < 2:
                    if size > p and buf[p] != 13:
                        raise ProtocolError("invalid chunk: data not followed by CRLF")
                    return p
                if buf[p] != 13 or buf[p + 1] != 10:
                    raise ProtocolError("invalid chunk: data not followed by CRLF")
                p += 2
                self._crlf = False
                if self._last:  # that was the CRLF after the 0-size chunk
                    self.done = True
                    return p
                continue
            m = _PLAIN_SIZE_LINE.match(buf, p)
            if m is not None:  # the usual "1f4\r\n": skip the general line handling
                csiz = int(m.group(1), 16)
                end = m.end() + csiz
                if csiz and end + 2 <= size and buf[end : end + 2] == b"\r\n":
                    if len(body) + csiz > self.limit:
                        raise BodyTooLarge(f"chunked body exceeds {self.limit} bytes")
                    body += buf[m.end() : end]  # a whole chunk at once
                    p = end + 2
                    continue
                p = m.end()
            else:
                nl = buf.find(b"\n", p)
                if nl < 0:
                    if size - p > LINE_MAX + 1:
                        raise LineTooLong("chunk size line too long")
                    return p
                if nl - p > LINE_MAX + 1:
                    raise LineTooLong("chunk size line too long")
                line = bytes(buf[p:nl]).replace(b"\r", b"")
                p = nl + 1
                if not line:
                    self.done = True  # ktserver: an empty size line ends the body
                    return p
                csiz = _chunk_size(line)
            if len(body) + csiz > self.limit:
                raise BodyTooLarge(f"chunked body exceeds {self.limit} bytes")
            if csiz == 0:
                self._last = True
                self._crlf = True
            else:
                self._left = csiz
        return p


def parse_body(
    buf, pos: int, framing: tuple[str, int], limit: int = HTTP_BODY_MAX
) -> tuple[bytes, int]:
    """Read the body at ``pos`` as framed by :func:`body_framing`: ``(body, end)``.

    A "close" body cannot be complete before the peer closes: this raises Incomplete;
    the I/O layer reads to EOF and takes everything.
    """
    kind, length = framing
    if kind == "length":
        end = pos + length
        if end > len(buf):
            raise Incomplete(length)
        return bytes(buf[pos:end]), end
    if kind == "none":
        return b"", pos
    if kind == "chunked":
        return parse_chunked(buf, pos, limit)
    raise Incomplete(len(buf) - pos + 1)


def parse_request(buf, pos: int = 0) -> tuple[RequestHead, bytes, int]:
    """Parse a whole request (head and body): ``(head, body, end)``. Convenience for
    the server; Incomplete counts from ``pos`` as everywhere."""
    head, body_start = parse_request_head(buf, pos)
    framing = body_framing(head)
    try:
        body, end = parse_body(buf, body_start, framing)
    except Incomplete as exc:
        raise Incomplete(body_start - pos + exc.need) from None
    return head, body, end


def parse_response(
    buf, pos: int = 0, request_method: str | None = None
) -> tuple[ResponseHead, bytes, int]:
    """Parse a whole response (head and body): ``(head, body, end)``. Convenience for
    the client; a body delimited by closing raises Incomplete (read to EOF instead)."""
    head, body_start = parse_response_head(buf, pos)
    framing = body_framing(head, request_method)
    try:
        body, end = parse_body(buf, body_start, framing, RESPONSE_BODY_MAX)
    except Incomplete as exc:
        raise Incomplete(body_start - pos + exc.need) from None
    return head, body, end


# --- encoding --------------------------------------------------------------------------------------


def capitalize_header(name: str) -> str:
    """ktserver's header spelling: lowercased, then a capital after start, ``-`` or space
    (``x-kt-xt`` -> ``X-Kt-Xt``)."""
    return "-".join(part[:1].upper() + part[1:] for part in name.lower().split("-"))


def encode_request(
    method: str, target: str, headers: Iterable[tuple[str, str]] | None = None, body: bytes = b""
) -> bytes:
    """Encode an HTTP/1.1 request. ``Content-Length`` is added for a non-empty body and for
    POST/PUT (do not pass it); everything else (Host, Content-Type...) comes from ``headers``."""
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    if headers:
        lines.extend([f"{name}: {value}\r\n" for name, value in headers])
    if body or method == "POST" or method == "PUT":
        lines.append(f"Content-Length: {len(body)}\r\n")
    lines.append("\r\n")
    head = "".join(lines).encode("latin-1")
    return head + body if body else head


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(epoch_seconds: float) -> str:
    """An RFC 1123 date in GMT, e.g. ``Fri, 27 Nov 2026 07:00:00 GMT`` (locale-free)."""
    t = time.gmtime(int(epoch_seconds))
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


_date_cache: tuple[int, str] = (-1, "")


def _cached_date(now: float) -> str:
    global _date_cache
    second = int(now)
    if _date_cache[0] != second:
        _date_cache = (second, http_date(second))
    return _date_cache[1]


_STATUS_LINES: dict[int, str] = {}


def _server_lines(status: int, now: float) -> str:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {reason_phrase(status)}\r\n"
    date = _cached_date(now)
    return f"{line}Server: KyotoTycoon/{SERVER_VERSION}\r\nDate: {date}\r\n"


_HEADER_NAMES: dict[str, str] = {}  # as given -> as ktserver spells it (bounded cache)


def _header_name(name: str) -> str | None:
    """ktserver's spelling of a response header name, None for names it drops."""
    norm = " ".join(name.split()).lower()
    if not norm or ":" in norm or " " in norm:
        return None
    spelled = capitalize_header(norm)
    if len(_HEADER_NAMES) < 256:
        _HEADER_NAMES[name] = spelled
    return spelled


def encode_response(
    status: int,
    headers: Iterable[tuple[str, str]] | dict[str, str] | None,
    body: bytes,
    head_only: bool = False,
    *,
    keep_alive: bool = True,
    now: float,
) -> bytes:
    """Encode a response laid out like ktserver's.

    ``head_only`` (a HEAD request) or status 304 omits Content-Length and the body;
    ``keep_alive=False`` adds ``Connection: close``. Other headers are written after
    those, sorted by name and re-capitalised, values whitespace-normalised, as ktserver
    does. ``now`` (epoch seconds) is the time for the Date header: the caller reads the
    clock, so the protocol core never does.
    """
    parts = [_server_lines(status, now)]
    if not keep_alive:
        parts.append("Connection: close\r\n")
    with_body = not head_only and status != 304
    if with_body:
        parts.append(f"Content-Length: {len(body)}\r\n")
    if headers:
        items = headers.items() if isinstance(headers, dict) else headers
        normalised: dict[str, str] = {}
        names = _HEADER_NAMES
        for name, value in items:
            spelled = names.get(name)
            if spelled is None:
                spelled = _header_name(name)
                if spelled is None:
                    continue
            value = str(value)
            if not value.isprintable() or "  " in value or value[:1] == " " or value[-1:] == " ":
                value = " ".join(value.split())  # ktserver normalises whitespace
            normalised[spelled] = value
        if len(normalised) > 1:
            # ktserver's headers live in a map keyed by lowercased name: sorted output
            for spelled in sorted(normalised, key=str.lower):
                parts.append(f"{spelled}: {normalised[spelled]}\r\n")
        else:
            parts.extend([f"{spelled}: {value}\r\n" for spelled, value in normalised.items()])
    parts.append("\r\n")
    head = "".join(parts).encode("latin-1")
    return head + body if with_body and body else head


def encode_error_response(status: int, message: str, *, now: float) -> bytes:
    """ktserver's ``send_error`` answer for framing errors (e.g. 413, 400): a text/plain body
    ``"<code> <reason> (<message>)\\n"`` and ``Connection: close``."""
    body = f"{status} {reason_phrase(status)} ({message})\n".encode("latin-1")
    parts = [
        _server_lines(status, now),
        "Connection: close\r\n",
        f"Content-Length: {len(body)}\r\n",
        "Content-Type: text/plain\r\n\r\n",
    ]
    return "".join(parts).encode("latin-1") + body


def encode_chunked(chunks: Iterable[bytes]) -> bytes:
    """Encode data as a chunked body (for tests and for clients that stream uploads)."""
    parts = []
    for chunk in chunks:
        if chunk:
            parts.append(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)

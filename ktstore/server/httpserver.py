"""The HTTP side of a connection: framing, TSV-RPC (``/rpc/...``) and the RESTful interface.

Framing follows ktserver (docs/protocol.md, "HTTP"): a body is read only for POST, PUT
and unknown methods, by ``Content-Length`` or chunked encoding, at most
``HTTP_BODY_MAX`` bytes (a larger declared length gets 413 *before* anything is
read or allocated).  A request line with a bad version drops the connection
silently; other framing errors get ktserver's plain-text error and close.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ktstore.errors import ProtocolError
from ktstore.protocol import http, tsv
from ktstore.protocol.expire import resolve_xt, rest_put_xt
from ktstore.protocol.limits import XTMAX
from ktstore.protocol.receive import RequestHeadDecoder
from ktstore.protocol.rpc import rv_to_status
from ktstore.server import rpc
from ktstore.server.netio import Reader, send, send_last

if TYPE_CHECKING:
    from ktstore.server.context import ServerContext
    from ktstore.server.session import Session

__all__ = ["handle_http"]

_NO_BODY_METHODS = frozenset({"GET", "HEAD", "DELETE"})
_TSV = tsv.TSV_MEDIA_TYPE
# per-process caches for the hot path: decoded procedure paths, parsed Content-Types
_NAMES: dict[str, bytes] = {}
_CTYPES: dict[str, tuple[str, str | None]] = {}
_FORM = tsv.FORM_MEDIA_TYPE


def _header(headers: dict[str, str], name: str) -> str | None:
    """A request header by lowercase name (the parser lowercases names)."""
    return headers.get(name)


def _send_error(reader: Reader, status: int, message: str) -> None:
    """ktserver's ``send_error``: a plain-text body, then the connection closes."""
    send_last(reader.sock, http.encode_error_response(status, message, now=time.time()))


class _BadRequest(Exception):
    """A body that cannot be read: ktserver's status and plain-text message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _framed(parse: Callable[..., Any], message: str, *args: Any) -> Any:
    """``parse(*args)`` with its ProtocolError as ktserver's answer: 413 for a body
    over the limit, else 400 with ``message``."""
    try:
        return parse(*args)
    except http.BodyTooLarge:
        raise _BadRequest(413, "request entity too large") from None
    except ProtocolError:
        raise _BadRequest(400, message) from None


def _read_body(reader: Reader, head: Any) -> bytes:
    """The body of a POST/PUT/unknown-method request: by Content-Length or chunked.

    A chunked body is decoded as it arrives (:class:`ktstore.protocol.http.ChunkedDecoder`),
    so it costs about its own size in memory whatever its chunk sizes.
    """
    framing, length = _framed(http.body_framing, "receiving data failed", head)
    if framing == "chunked":
        decoder = http.ChunkedDecoder()
        while True:
            rb = reader.rb
            rb.pos = _framed(decoder.feed, "invalid chunk", rb.buf, rb.pos)
            if decoder.done:
                body = bytes(decoder.body)
                decoder.body = bytearray()
                return body
            reader.fill_more()
    if framing != "length" or not length:
        return b""
    return reader.take(length)


def handle_http(server: ServerContext, reader: Reader, session: Session) -> bool:
    """Serve one HTTP request; returns whether the connection stays open."""
    try:
        head = reader.read(RequestHeadDecoder())
    except ProtocolError:
        return False  # bad request line / version: ktserver drops the connection
    if "\0" in head.target:
        # ktserver reads the request line as a C string: a NUL cuts it before the
        # version, and a line without a version drops the connection
        return False
    method = head.method
    headers = head.headers
    body = b""
    if method not in _NO_BODY_METHODS:
        reader.start_body()
        try:
            body = _read_body(reader, head)
        except _BadRequest as e:
            _send_error(reader, e.status, e.message)
            return False
    keep = http.keep_alive(head.version, headers)
    path = head.path
    if path.startswith("/rpc/"):
        data = _rpc(server, session, path, head.query, headers, body, keep)
    else:
        data = _rest(server, method, path, head.target, headers, body, keep)
    send(reader.sock, data)
    return keep


def _finish(
    status: int, headers: list[tuple[str, str]], body: bytes, keep: bool, head_only: bool = False
) -> bytes:
    return http.encode_response(status, headers, body, head_only, keep_alive=keep, now=time.time())


# --------------------------------------------------------------------------- RPC


def _rpc(
    server: ServerContext,
    session: Session,
    path: str,
    query: str | None,
    headers: dict[str, str],
    body: bytes,
    keep: bool,
) -> bytes:
    name = _NAMES.get(path)
    if name is None:
        name = tsv.url_decode(path[5:].encode("latin-1"))
        if name in rpc.PROCEDURES:  # cache only real procedures: the cache stays small
            _NAMES[path] = name
    params: dict[bytes, bytes] = {}
    if query:
        params.update(tsv.decode_form(query.encode("latin-1")))
    if body:
        ctype = headers.get("content-type")
        if ctype:
            parsed = _CTYPES.get(ctype)
            if parsed is None:
                parsed = tsv.parse_content_type(ctype)
                if len(_CTYPES) < 64:
                    _CTYPES[ctype] = parsed
            media, colenc = parsed
            if media.startswith(_TSV):
                params.update(tsv.decode_tsv(body, colenc))
            elif media.startswith(_FORM):
                params.update(tsv.decode_form(body))
    rv, out = rpc.dispatch(server, session, name, params)
    out.sort()
    colenc = tsv.choose_colenc(out)
    return _finish(
        rv_to_status(rv),
        [("Content-Type", tsv.content_type_for(colenc))],
        tsv.encode_tsv(out, colenc),
        keep,
    )


# -------------------------------------------------------------------------- REST


def _rest(
    server: ServerContext,
    method: str,
    path: str,
    target: str,
    headers: dict[str, str],
    body: bytes,
    keep: bool,
) -> bytes:
    raw = path[1:] if path.startswith("/") else path
    dbidx = 0
    if "/" in raw:
        dbname, _, raw = raw.partition("/")
        if raw.startswith("/"):  # ktserver skips one more slash: /0//key is key "key"
            raw = raw[1:]
        dbidx = rpc.resolve_db(server, tsv.url_decode(dbname.encode("latin-1")))
    if dbidx < 0:  # a HEAD gets the status line alone, as from ktserver
        return _finish(400, [], b"no such database\n", keep, head_only=method == "HEAD")
    db = server.dbs[dbidx]
    key = tsv.url_decode(raw.encode("latin-1"))
    stats = server.stats
    if method == "GET" or method == "HEAD":
        stats["get"] += 1
        rec = db.get(key)
        if rec is None:
            stats["get_misses"] += 1
            hdrs404 = [("X-Kt-Error", db.error_text())]
            if method == "HEAD":
                hdrs404.append(("Content-Length", "0"))
            return _finish(404, hdrs404, b"", keep, head_only=method == "HEAD")
        hdrs: list[tuple[str, str]] = []
        if rec[1] < XTMAX:
            hdrs.append(("X-Kt-Xt", http.http_date(rec[1])))
        if method == "HEAD":
            hdrs.append(("Content-Length", str(len(rec[0]))))
            return _finish(200, hdrs, rec[0], keep, head_only=True)
        return _finish(200, hdrs, rec[0], keep)
    if method == "PUT":
        mode = (_header(headers, "x-kt-mode") or "set").lower()
        xt = resolve_xt(rest_put_xt(_header(headers, "x-kt-xt")), int(time.time()))
        stats["set"] += 1
        if mode == "add":
            ok = db.add(key, body, xt)
        elif mode == "replace":
            ok = db.replace(key, body, xt)
        else:
            ok = db.set(key, body, xt)
        if not ok:
            stats["set_misses"] += 1
            code = db.error()[0]
            status = 450 if code in (6, 7, 8) else 500
            return _finish(status, [("X-Kt-Error", db.error_text())], b"", keep)
        # like ktserver: the server's own name and the request target as sent
        return _finish(201, [("Location", f"http://{server.server_name()}{target}")], b"", keep)
    if method == "DELETE":
        stats["remove"] += 1
        if db.remove(key):
            return _finish(204, [], b"", keep)
        stats["remove_misses"] += 1
        return _finish(404, [("X-Kt-Error", db.error_text())], b"", keep)
    return _finish(501, [], b"", keep)

"""One client connection: read requests, pick the protocol per request, answer.

The first byte of every request decides (docs/protocol.md): ``0x00`` or
``>= 0x80`` is a binary command (:mod:`ktstore.server.binaryserver`), anything
else an HTTP request (:mod:`ktstore.server.httpserver`).  The socket reading and
the progress deadlines live in :mod:`ktstore.server.netio`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from ktstore.server.binaryserver import handle_binary
from ktstore.server.netio import Closed, Reader

if TYPE_CHECKING:
    from ktstore.server.context import ServerContext
    from ktstore.server.session import Session

_Handler = Callable[["ServerContext", Reader, "Session"], bool]
_handle_http: _Handler | None = None


def _http_handler() -> _Handler:
    """The HTTP side (framing, TSV-RPC, REST), imported by the first HTTP request:
    a server restarted for binary clients answers without loading it."""
    global _handle_http
    if _handle_http is None:
        from ktstore.server.httpserver import handle_http

        _handle_http = handle_http
    return _handle_http


__all__ = ["serve_connection"]


def serve_connection(server: ServerContext, sock: socket.socket, session: Session) -> None:
    """Serve requests on ``sock`` until the peer leaves or a request says close."""
    reader = Reader(sock, server.config.timeout)
    handle_http = _handle_http
    try:
        while not server.stopping:
            reader.release()  # do not keep a consumed (maybe huge) request alive
            reader.start_head()
            first = reader.peek()
            if first == 0 or first >= 0x80:
                keep = handle_binary(server, reader, session)
            else:
                if handle_http is None:
                    handle_http = _http_handler()
                keep = handle_http(server, reader, session)
            if not keep:
                return
    except Closed:
        return

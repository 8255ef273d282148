"""One client connection: read requests, pick the protocol per request, answer.

The first byte of every request decides (kt-protocol §1): ``0x00`` or
``>= 0x80`` is a binary command (:mod:`ktstore.server.binaryserver`), anything
else an HTTP request (:mod:`ktstore.server.httpserver`).  The socket reading and
the progress deadlines live in :mod:`ktstore.server.netio`.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from ktstore.server.binaryserver import handle_binary
from ktstore.server.httpserver import handle_http
from ktstore.server.netio import Closed, Reader

if TYPE_CHECKING:
    from ktstore.server.context import ServerContext
    from ktstore.server.session import Session

__all__ = ["serve_connection"]


def serve_connection(server: ServerContext, sock: socket.socket, session: Session) -> None:
    """Serve requests on ``sock`` until the peer leaves or a request says close."""
    reader = Reader(sock, server.config.timeout)
    try:
        while not server.stopping:
            reader.release()  # do not keep a consumed (maybe huge) request alive
            reader.start_head()
            first = reader.peek()
            if first == 0 or first >= 0x80:
                keep = handle_binary(server, reader, session)
            else:
                keep = handle_http(server, reader, session)
            if not keep:
                return
    except Closed:
        return

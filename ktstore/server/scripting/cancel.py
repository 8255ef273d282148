"""``client_gone(sock)``: the ``cancel`` test the server passes to ``ScriptHost.call``.

A Lua call can run for up to the host's time limit; when its client has
closed the connection nobody will read the answer, so the call should stop
rather than keep a core busy.  The host asks ``cancel()`` about once per
millisecond of Lua work, so the test must be cheap: one non-blocking
``recv(MSG_PEEK)``.  The connection is gone when the peer closed it (EOF) or
reset it; bytes waiting (a pipelined next request) mean it is still there.
A client that half-closes its side while waiting for the answer is taken
for gone, which is what a peer that sent FIN usually means.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

__all__ = ["client_gone"]


def client_gone(sock: socket.socket) -> Callable[[], bool]:
    """A callable answering whether the peer of ``sock`` has closed or reset it."""

    def gone() -> bool:
        try:
            data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False  # nothing to read: the client is waiting for the answer
        except OSError:
            return True  # reset, or the socket was closed under us
        return data == b""

    return gone

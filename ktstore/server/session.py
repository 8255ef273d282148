"""Per-connection and shared request state: RPC cursors and the ``WAIT``/``SIGNAL`` conditions.

Kept apart from the server object so the request handlers can use them without
importing :mod:`ktstore.server.core` (which imports the handlers).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from ktstore.server.database import DBCursor

__all__ = ["Session", "ConditionMap", "peer_alive"]

_ALIVE_CHECK = 1.0  # seconds between checks that a waiting client is still there


def peer_alive(sock: socket.socket) -> bool:
    """Whether the peer of ``sock`` is still connected (no EOF, no error), without
    consuming anything it sent."""
    try:
        p = select.poll()
        p.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP | _POLLRDHUP)
        events = p.poll(0)
        if not events:
            return True
        ev = events[0][1]
        if ev & (select.POLLERR | select.POLLHUP | _POLLRDHUP):
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


_POLLRDHUP = getattr(select, "POLLRDHUP", 0)


class ConditionMap:
    """Named conditions for the ``WAIT``/``SIGNAL`` RPC parameters.

    ``signal`` wakes one waiter (or all with ``broadcast``) and returns how many
    it woke, which ktserver reports as ``SIGNALED``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[bytes, list[Any]] = {}  # name -> [Condition, waiters, tickets]
        self._stopping = False

    def wait(self, name: bytes, timeout: float, alive: Callable[[], bool] | None = None) -> bool:
        """Block until ``name`` is signalled (True) or ``timeout`` seconds pass (False).

        ``alive`` is asked about once a second: when it says the client left, the
        wait ends (False) instead of keeping the thread for the whole timeout.
        ``timeout`` may be ``inf`` (wait for a signal only); NaN or <= 0 ends at once.
        """
        if not timeout > 0:  # also NaN: it must never spin
            return False
        deadline = time.monotonic() + timeout
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                entry = [threading.Condition(self._lock), 0, 0]
                self._entries[name] = entry
            entry[1] += 1
            try:
                while entry[2] == 0 and not self._stopping:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    if alive is not None and not alive():
                        return False
                    # in slices: to ask ``alive``, and a lock timeout cannot be inf
                    entry[0].wait(min(remaining, _ALIVE_CHECK))
                if entry[2] > 0:
                    entry[2] -= 1
                    return True
                return False
            finally:
                entry[1] -= 1
                if entry[1] == 0 and entry[2] == 0:
                    self._entries.pop(name, None)

    def signal(self, name: bytes, broadcast: bool = False) -> int:
        """Wake one (or every) waiter of ``name``; returns the number woken."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                return 0
            idle = entry[1] - entry[2]
            n = idle if broadcast else min(1, idle)
            if n > 0:
                entry[2] += n
                entry[0].notify_all()
            return max(n, 0)

    def stop(self) -> None:
        """Wake every waiter (the server is stopping)."""
        with self._lock:
            self._stopping = True
            for entry in self._entries.values():
                entry[0].notify_all()


class Session:
    """Per-connection state: the RPC cursors (ids are session-local, as in ktserver)."""

    __slots__ = ("cursors", "peer", "sock")

    def __init__(self, peer: str = "", sock: socket.socket | None = None) -> None:
        self.cursors: dict[int, DBCursor] = {}
        self.peer = peer
        self.sock = sock  # to notice a client that leaves during a WAIT

    def alive(self) -> bool:
        """Whether the client is still connected (always True without a socket)."""
        return self.sock is None or peer_alive(self.sock)

    def close(self) -> None:
        for cur in self.cursors.values():
            cur.disable()
        self.cursors.clear()

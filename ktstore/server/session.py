"""Per-connection and shared request state: RPC cursors and the ``WAIT``/``SIGNAL`` conditions.

Kept apart from the server object so the request handlers can use them without
importing :mod:`ktstore.server.core` (which imports the handlers).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ktstore.server.database import DBCursor

__all__ = ["Session", "ConditionMap"]


class ConditionMap:
    """Named conditions for the ``WAIT``/``SIGNAL`` RPC parameters.

    ``signal`` wakes one waiter (or all with ``broadcast``) and returns how many
    it woke, which ktserver reports as ``SIGNALED``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[bytes, list[Any]] = {}  # name -> [Condition, waiters, tickets]
        self._stopping = False

    def wait(self, name: bytes, timeout: float) -> bool:
        """Block until ``name`` is signalled (True) or ``timeout`` seconds pass (False)."""
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
                    entry[0].wait(remaining)
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

    __slots__ = ("cursors", "peer")

    def __init__(self, peer: str = "") -> None:
        self.cursors: dict[int, DBCursor] = {}
        self.peer = peer

    def close(self) -> None:
        for cur in self.cursors.values():
            cur.disable()
        self.cursors.clear()

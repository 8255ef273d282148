"""How a server knows when to end: its owner's lifeline, or its sharers' locks.

Why: a server started for an application must never outlive it, however the
application ends (SIGKILL included), and a server shared by the processes of one
machine (``Store("app.kct")``) must end once none of them needs it.  Both rules rest
on things the kernel cleans up when a process dies, so no exit handler has to run:

* ``-lifeline``: the owner keeps the write end of a pipe that is our standard input;
  when the owner dies the pipe reaches end-of-file and we stop.
* ``-shared PREFIX``: every process using the server holds a *shared* ``flock`` on
  ``PREFIX.users`` for as long as it uses it; we poll for an *exclusive* lock, which
  we get only when no user is left.  Start and end are serialized by an exclusive
  lock on ``PREFIX.lock``, held by a starting user until the server answers and by an
  ending server until it exits, so a user never finds the address of a server that
  is going away.  The server publishes its address in ``PREFIX.addr`` (``host port
  pid``) once it listens, and removes it when it ends.

The client half is :mod:`ktstore.shared`; the file names are defined here once.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from collections.abc import Callable

__all__ = ["watch_lifeline", "SharedServerLocks", "shared_paths"]

POLL_INTERVAL = 0.5


def shared_paths(prefix: str) -> tuple[str, str, str]:
    """``(lock, users, addr)`` file paths for a shared server's ``prefix``."""
    return prefix + ".lock", prefix + ".users", prefix + ".addr"


def watch_lifeline(on_end: Callable[[], None]) -> threading.Thread:
    """Call ``on_end()`` once standard input reaches end-of-file (the owner is gone)."""

    def watch() -> None:
        fd = sys.stdin.fileno() if sys.stdin is not None else 0
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass
        on_end()

    t = threading.Thread(target=watch, name="ktstore-lifeline", daemon=True)
    t.start()
    return t


class SharedServerLocks:
    """The server side of ``-shared PREFIX``: publish the address, end when unused."""

    def __init__(self, prefix: str) -> None:
        self.lock_path, self.users_path, self.addr_path = shared_paths(prefix)
        self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        self._users_fd = os.open(self.users_path, os.O_RDWR | os.O_CREAT, 0o644)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, host: str, port: int) -> None:
        """Write ``PREFIX.addr`` atomically (the starting user waits for it)."""
        tmp = f"{self.addr_path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{host} {port} {os.getpid()}\n")
        os.replace(tmp, self.addr_path)

    def watch(self, on_unused: Callable[[], None]) -> None:
        """Poll until no user holds ``PREFIX.users``; then unpublish and call ``on_unused``.

        The locks stay held until the process exits, so a new user waits for this
        server to be gone before it starts the next one on the same files."""

        def loop() -> None:
            while not self._stop.wait(POLL_INTERVAL):
                try:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a user is starting or attaching right now
                try:
                    fcntl.flock(self._users_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                    continue
                self.unpublish()
                on_unused()
                return

        self._thread = threading.Thread(target=loop, name="ktstore-shared", daemon=True)
        self._thread.start()

    def unpublish(self) -> None:
        try:
            with open(self.addr_path) as f:
                mine = f.read().split()[2:3] == [str(os.getpid())]
            if mine:
                os.remove(self.addr_path)
        except (OSError, IndexError):
            pass

    def close(self) -> None:
        """Stop polling (the locks are released when the process exits)."""
        self._stop.set()

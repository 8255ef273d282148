"""A thread-safe pool of connections, with the retry rules that keep requests safe.

Why a pool at all: Kyoto Tycoon answers one request at a time per connection, so each
thread needs its own socket while a request is in flight, and reconnecting for every
call would cost more than the call.  Two idle stacks are kept (binary protocol and
HTTP), because an HTTP connection may carry per-connection state (cursors) and is
closed by the server on ``Connection: close``.

The rules (docs/reliability.md, "Connections and retries"):

* an idle connection older than ``max_age`` seconds is closed, not reused;
* before reuse an idle connection is polled: if the server closed it (restart) or sent
  stray bytes, it is replaced, so the first call after a restart succeeds (reads skip
  the poll on a socket used less than a millisecond ago: they are retried anyway);
* a connection that failed or timed out mid-request is closed, never pooled again;
* a request that failed on the network is retried once on a fresh connection if it is
  a read (idempotent), and a write only when none of its bytes were sent;
* after ``fork()`` the child never touches the parent's sockets (it starts empty and
  does not close the inherited ones either: closing is harmless but pointless).

Idle stacks are plain lists: ``append``/``pop`` are atomic, so checkout and checkin
need no lock on the hot path; the lock only guards ``close_all`` and fork recovery.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ktstore.client.command import HTTP, NOREPLY, Command
from ktstore.client.connection import Connection, _fork_gen
from ktstore.errors import KTConnectionError, KTTimeoutError
from ktstore.protocol.binary import ERROR_REPLY

__all__ = ["Pool"]

#: Idle connections younger than this (seconds) are reused without a staleness poll.
FRESH = 0.001

_monotonic = time.monotonic


class Pool:
    """Connections to one server, shared by all threads of a process."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        max_age: float | None = 3600,
        connect_timeout: float | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_age = float(max_age) if max_age else 3600.0
        self._lock = threading.Lock()
        self._idle: list[Connection] = []
        self._idle_http: list[Connection] = []
        self._in_use: set[Connection] = set()
        self._gen = 0  # bumped by close_all: connections of older generations are closed
        self._fork_gen = _fork_gen[0]

    def __repr__(self) -> str:
        return (
            f"<Pool {self.host}:{self.port} idle={len(self._idle)}+{len(self._idle_http)} "
            f"in_use={len(self._in_use)}>"
        )

    # -- checkout / checkin -------------------------------------------------------

    def _reset_after_fork(self) -> None:
        """In a forked child: forget the parent's connections without touching them.

        The lock is replaced rather than acquired: another thread of the parent may
        have held it at the moment of the fork, and it would never be released here.
        """
        self._lock = threading.Lock()
        self._idle = []
        self._idle_http = []
        self._in_use = set()
        self._fork_gen = _fork_gen[0]

    def connect(self) -> Connection:
        """A new connection, registered as in use (the caller must ``release`` it)."""
        conn = Connection(self.host, self.port, self.timeout, self.connect_timeout)
        conn.pool_gen = self._gen
        self._in_use.add(conn)
        return conn

    def acquire(self, http: bool = False, idempotent: bool = False) -> Connection:
        """An idle healthy connection, or a new one.

        An idle connection is polled before reuse (did the server close it?).  Only for
        an ``idempotent`` request is the poll skipped on a socket released less than
        :data:`FRESH` seconds ago: if the server went away in between, the request
        fails on the network and is retried on a new connection.  A write is never
        retried once sent, so it always gets the poll: an in-process server restarts
        in well under a millisecond (the cause of a flaky restart test).
        """
        if self._fork_gen != _fork_gen[0]:
            self._reset_after_fork()
        idle = self._idle_http if http else self._idle
        if idle:
            now = time.monotonic()
            while True:
                try:
                    conn = idle.pop()
                except IndexError:
                    break
                idle_for = now - conn.last_used
                if idle_for > self.max_age or (
                    (idle_for > FRESH or not idempotent) and conn.is_stale()
                ):
                    conn.close()
                    continue
                conn.reused = True
                self._in_use.add(conn)
                return conn
        return self.connect()

    def release(self, conn: Connection, http: bool = False) -> None:
        """Give a connection back; broken or outdated ones are closed instead."""
        self._in_use.discard(conn)
        if conn.broken or conn.pool_gen != self._gen or conn.fork_gen != _fork_gen[0]:
            if conn.fork_gen == _fork_gen[0]:
                conn.close()
            return
        conn.last_used = time.monotonic()
        (self._idle_http if http else self._idle).append(conn)

    def close_all(self) -> int:
        """Close every idle connection and retire those in use (they are closed when
        returned); return how many connections that was."""
        if self._fork_gen != _fork_gen[0]:
            self._reset_after_fork()
        with self._lock:
            idle = self._idle + self._idle_http
            self._idle = []
            self._idle_http = []
            n = len(idle) + len(self._in_use)
            self._gen += 1
        for conn in idle:
            conn.close()
        return n

    @property
    def stats(self) -> tuple[int, int, int]:
        """(idle binary, idle HTTP, in use) connection counts."""
        return len(self._idle), len(self._idle_http), len(self._in_use)

    # -- requests with the retry rules ---------------------------------------------

    @staticmethod
    def _may_retry(exc: KTConnectionError, idempotent: bool) -> bool:
        if isinstance(exc, KTTimeoutError):
            return False  # a stalled server would make the caller wait twice
        return idempotent or not getattr(exc, "sent", True)

    def call(
        self,
        request: bytes,
        factory: Any,
        idempotent: bool,
        keep: bool,
        http: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Send ``request`` on a pooled connection and return its reply decoded by
        ``factory`` (a decoder class of :mod:`ktstore.protocol.receive`): the hot path
        of :meth:`run`, also called directly by the sync client's single-key methods
        (no :class:`Command` object).

        :meth:`acquire`, :meth:`release` and the send/read are inlined for the usual
        case (an idle connection that needs no poll, a reply in one read); every rule
        of the module docstring holds, the rare cases take the general paths.
        """
        if self._fork_gen != _fork_gen[0]:
            self._reset_after_fork()
        try:
            conn = (self._idle_http if http else self._idle).pop()
        except IndexError:
            conn = self.connect()
        else:
            idle_for = _monotonic() - conn.last_used
            if idle_for > FRESH or not idempotent:
                if idle_for > self.max_age or conn.is_stale():
                    conn.close()
                    conn = self.acquire(http, idempotent)
                else:
                    conn.reused = True
                    self._in_use.add(conn)
            else:
                conn.reused = True
                self._in_use.add(conn)
        try:
            result = conn.exchange(request, factory, timeout)
        except KTConnectionError as exc:
            self.release(conn, http)
            if not self._may_retry(exc, idempotent):
                raise
            conn = self.connect()
            try:
                result = conn.exchange(request, factory, timeout)
                if result is ERROR_REPLY and not keep:
                    conn.close()
            finally:
                self.release(conn, http)
            return result
        except BaseException:
            conn.close()
            self.release(conn, http)
            raise
        if result is ERROR_REPLY and not keep:
            conn.close()
        # release, inlined
        self._in_use.discard(conn)
        if conn.broken or conn.pool_gen != self._gen or conn.fork_gen != _fork_gen[0]:
            if conn.fork_gen == _fork_gen[0]:
                conn.close()
            return result
        conn.last_used = _monotonic()
        (self._idle_http if http else self._idle).append(conn)
        return result

    def run(self, cmd: Command) -> Any:
        """Send ``cmd`` on a pooled connection and return its decoded reply (not yet
        finished), with the retry rules.

        After a network failure the request is retried once on a fresh connection when
        :meth:`_may_retry` allows it; any other exception (a parse error, an
        interrupt...) closes the connection, whose stream position is unknown.  A 0xBF
        error reply makes ktserver close the connection for the bulk commands, so the
        socket is discarded then unless ``cmd.keep`` (play_script and HTTP keep it).
        """
        kind = cmd.kind
        if kind != NOREPLY:
            return self.call(
                cmd.request, cmd.decoder, cmd.idempotent, cmd.keep, kind == HTTP, cmd.timeout
            )
        http = False
        conn = self.acquire(http, cmd.idempotent)
        try:
            result = self._once(conn, cmd)
        except KTConnectionError as exc:
            self.release(conn, http)
            if not self._may_retry(exc, cmd.idempotent):
                raise
            conn = self.connect()
            try:
                result = self._once(conn, cmd)
                if result is ERROR_REPLY and not cmd.keep:
                    conn.close()
            finally:
                self.release(conn, http)
            return result
        except BaseException:
            conn.close()
            self.release(conn, http)
            raise
        if result is ERROR_REPLY and not cmd.keep:
            conn.close()
        self.release(conn, http)
        return result

    @staticmethod
    def _once(conn: Connection, cmd: Command) -> Any:
        conn.send(cmd.request, cmd.timeout)
        if cmd.kind == NOREPLY:
            return None
        return conn.read(cmd.decoder())  # type: ignore[misc]

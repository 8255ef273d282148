"""The socket side of a connection: a receive buffer with deadlines, and the senders.

This module knows sockets and time, nothing of the protocols: the handlers
(:mod:`ktstore.server.httpserver`, :mod:`ktstore.server.binaryserver`) drive the
sans-I/O parsers of :mod:`ktstore.protocol` through :meth:`Reader.parse`.  A
parser that raises :class:`~ktstore.errors.Incomplete` tells how many bytes it
needs; we read at least that many and parse again (so a large request is read
in few steps and joined once, never re-scanned quadratically).

Progress rules (so that no client can hold a connection and its thread
forever, see the server README, "Limits"):

* every socket operation times out after ``-tout`` (a kernel timeout on the
  blocking socket: no cost per call);
* a request *head* (an HTTP request line and headers, or the waiting for the
  first byte of the next request) must arrive within ``-tout`` of its start;
* a *body* (an HTTP body, a binary frame) may take ``-tout`` plus one second per
  :data:`BODY_MIN_RATE` bytes received: a client that keeps sending one byte per
  ``-tout`` window is dropped.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable
from typing import Any

from ktstore.errors import Incomplete

__all__ = ["Reader", "Closed", "send", "send_last", "BODY_MIN_RATE"]

_RECV = 1 << 16
_RECV_MAX = 1 << 20
_DRAIN_WAIT_MS = 5  # how long a large message's next packet may take to be drained eagerly
_DRAIN_MAX = 1 << 28  # never drain eagerly past this (the buffer is bounded by need or this)
_SLACK = 0.01  # a deadline may be overshot by this much rather than poll() before every recv

#: The slowest a request body may arrive, in bytes per second (after a grace of
#: ``-tout``).  16 KiB/s is far below any LAN or WAN a database serves, and high
#: enough that a 256 MiB body (the HTTP limit) cannot hold a thread for days.
BODY_MIN_RATE = 16 * 1024


class Closed(Exception):
    """The peer closed the connection, it timed out, or we decided to drop it."""


class Reader:
    """A receive buffer over a blocking socket, with the progress deadlines.

    ``buf[pos:]`` holds the bytes received and not consumed yet.  ``buf`` is
    ``bytes`` (not a bytearray) so the parsers can slice it without copying it
    first; refills join the pieces once.

    :meth:`start_head` and :meth:`start_body` start the clock of the two
    progress rules (see the module docstring); :meth:`no_deadline` turns them
    off (a replication stream waits for its consumer as long as it likes).
    """

    __slots__ = ("sock", "buf", "pos", "_poller", "tout", "_t0", "_got", "_rate")

    def __init__(self, sock: socket.socket, tout: float = 0.0) -> None:
        self.sock = sock
        self.buf = b""
        self.pos = 0
        self._poller: select.poll | None = None
        self.tout = tout  # 0: no deadlines
        self._t0 = 0.0
        self._got = 0
        self._rate = 0.0  # 0: head mode (no allowance per byte)

    # ------------------------------------------------------------- deadlines

    def start_head(self) -> None:
        """A request (head) starts now: it must be complete within ``-tout``."""
        self._t0 = time.monotonic()
        self._got = 0
        self._rate = 0.0

    def start_body(self, rate: float = BODY_MIN_RATE) -> None:
        """A body starts now: ``-tout`` plus one second per ``rate`` bytes received."""
        self._t0 = time.monotonic()
        self._got = 0
        self._rate = rate

    def no_deadline(self) -> None:
        """Only the per-operation ``-tout`` applies from now on."""
        self._t0 = 0.0

    def _time_left(self) -> float:
        """Seconds left before the current deadline (inf without one)."""
        if not self._t0 or not self.tout:
            return float("inf")
        limit = self._t0 + self.tout
        if self._rate:
            limit += self._got / self._rate
        return limit - time.monotonic()

    def _poll(self) -> select.poll:
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self.sock, select.POLLIN)
        return self._poller

    def _wait_readable(self) -> None:
        """Before a recv: give up if the deadline passed; when it is nearer than
        ``-tout`` (the kernel timeout of the recv), wait for data only that long."""
        left = self._time_left()
        if left >= self.tout - _SLACK:
            return  # the recv's own timeout ends it in time (the usual, first recv)
        if left <= 0 or not self._poll().poll(left * 1000.0):
            raise Closed("too slow: deadline passed")

    # ------------------------------------------------------------------ reads

    def fill(self, need: int = 1) -> None:
        """Make ``len(buf) - pos >= need``, reading from the socket; Closed on EOF."""
        have = len(self.buf) - self.pos
        if have >= need:
            return
        parts = [self.buf[self.pos :]] if have else []
        recv = self.sock.recv
        deadlines = bool(self._t0 and self.tout)
        try:
            while have < need:
                if deadlines:
                    self._wait_readable()
                want = need - have
                chunk = recv(_RECV if want < _RECV else (want if want < _RECV_MAX else _RECV_MAX))
                if not chunk:
                    raise Closed("peer closed")
                parts.append(chunk)
                have += len(chunk)
                self._got += len(chunk)
            if need > _RECV:
                # A large message whose parser only knows a lower bound of its size
                # (a bulk of many small records): also take what arrives without a
                # pause, up to twice the bound.  The buffer then grows geometrically
                # and the parser re-runs O(log n) times instead of once per 64 KiB.
                target = min(need << 1, max(need, _DRAIN_MAX))
                poll = self._poll()
                while have < target and poll.poll(_DRAIN_WAIT_MS):
                    try:
                        chunk = recv(min(target - have, _RECV_MAX), socket.MSG_DONTWAIT)
                    except OSError:
                        break
                    if not chunk:
                        break
                    parts.append(chunk)
                    have += len(chunk)
                    self._got += len(chunk)
        except TimeoutError:
            raise Closed("timeout") from None
        except OSError as e:
            raise Closed(str(e)) from None
        self.buf = parts[0] if len(parts) == 1 else b"".join(parts)
        self.pos = 0

    def fill_more(self) -> None:
        """Read at least one byte more than is buffered (for streaming decoders that
        consumed everything they could)."""
        self.fill(len(self.buf) - self.pos + 1)

    def parse(self, parser: Callable[[bytes, int], tuple[Any, int]]) -> Any:
        """Run a sans-I/O parser on ``buf[pos:]``, reading as much as it says it needs,
        and consume what it parsed; its ProtocolError propagates."""
        while True:
            try:
                result, end = parser(self.buf, self.pos)
            except Incomplete as inc:
                self.fill(inc.need)
                continue
            self.pos = end
            return result

    def release(self) -> None:
        """Drop the consumed part of the buffer (a finished, maybe huge request)."""
        if self.pos >= len(self.buf):
            self.buf = b""
            self.pos = 0


def send(sock: socket.socket, data: bytes) -> None:
    """Send an answer; a failure ends the connection (Closed)."""
    try:
        sock.sendall(data)
    except OSError as e:
        raise Closed(str(e)) from None


def send_last(sock: socket.socket, data: bytes) -> None:
    """Send a final answer before the connection closes; a peer already gone is fine."""
    try:
        sock.sendall(data)
    except OSError:
        pass

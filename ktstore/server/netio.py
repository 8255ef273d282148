"""The socket side of a connection: a receive buffer with deadlines, and the senders.

This module knows sockets and time, nothing of the protocols: the handlers
(:mod:`ktstore.server.httpserver`, :mod:`ktstore.server.binaryserver`) step the
incremental decoders of :mod:`ktstore.protocol.receive` through
:meth:`Reader.read`, the same receive buffer and decoders the clients use.  A
decoder consumes what it can parse and keeps its state, and answers "need more"
with a value and a byte count; we then read until that many bytes are buffered
and step it again.  Whatever arrived is parsed at once (no waiting for more than
the decoder needs), and no byte is parsed twice, so a request costs time linear
in its size however it is split into packets.

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
from typing import Any

from ktstore.protocol.receive import NEED_MORE, Decoder, ReceiveBuffer

__all__ = ["Reader", "Closed", "send", "send_last", "BODY_MIN_RATE"]

_RECV = 1 << 16  # the usual recv size: a small request's bytes, or a packet train
_RECV_MAX = 1 << 20  # the largest single recv, when a decoder needs that much
_SLACK = 0.01  # a deadline may be overshot by this much rather than poll() before every recv

#: The slowest a request body may arrive, in bytes per second (after a grace of
#: ``-tout``).  16 KiB/s is far below any LAN or WAN a database serves, and high
#: enough that a 256 MiB body (the HTTP limit) cannot hold a thread for days.
BODY_MIN_RATE = 16 * 1024


class Closed(Exception):
    """The peer closed the connection, it timed out, or we decided to drop it."""


class Reader:
    """A :class:`~ktstore.protocol.receive.ReceiveBuffer` over a blocking socket,
    with the progress deadlines.

    ``rb`` holds the bytes received and not consumed yet.  :meth:`start_head` and
    :meth:`start_body` start the clock of the two progress rules (see the module
    docstring); :meth:`no_deadline` turns them off (a replication stream waits for
    its consumer as long as it likes).
    """

    __slots__ = ("sock", "rb", "_poller", "tout", "_t0", "_got", "_rate")

    def __init__(self, sock: socket.socket, tout: float = 0.0) -> None:
        self.sock = sock
        self.rb = ReceiveBuffer()
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
        """Make at least ``need`` bytes buffered, reading from the socket; Closed on
        EOF.  Each recv takes what has arrived (up to what is still needed, at least
        64 KiB): never a wait for bytes beyond ``need``."""
        rb = self.rb
        have = len(rb)
        if have >= need:
            return
        recv = self.sock.recv
        feed = rb.feed
        deadlines = bool(self._t0 and self.tout)
        try:
            while have < need:
                if deadlines:
                    self._wait_readable()
                want = need - have
                chunk = recv(_RECV if want < _RECV else (want if want < _RECV_MAX else _RECV_MAX))
                if not chunk:
                    raise Closed("peer closed")
                feed(chunk)
                have += len(chunk)
                self._got += len(chunk)
        except TimeoutError:
            raise Closed("timeout") from None
        except OSError as e:
            raise Closed(str(e)) from None

    def fill_more(self) -> None:
        """Read at least one byte more than is buffered (for streaming decoders that
        consumed everything they could)."""
        self.fill(len(self.rb) + 1)

    def read(self, decoder: Decoder) -> Any:
        """Step ``decoder`` over the buffer, reading whenever it needs more bytes,
        until it returns its message; its ProtocolError propagates."""
        rb = self.rb
        while True:
            if len(rb) >= decoder.need:
                result = decoder.step(rb)
                if result is not NEED_MORE:
                    return result
            need = decoder.need
            self.fill(need if need > len(rb) else len(rb) + 1)

    def peek(self) -> int:
        """The next byte (reading it if none is buffered), not consumed."""
        rb = self.rb
        if not len(rb):
            self.fill(1)
        return rb.buf[rb.pos]

    def take(self, n: int) -> bytes:
        """Read and consume exactly ``n`` bytes."""
        self.fill(n)
        return self.rb.take(n)

    def release(self) -> None:
        """Drop the consumed part of the buffer (a finished, maybe huge request)."""
        if not len(self.rb):
            self.rb.clear()


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

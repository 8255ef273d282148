"""One TCP connection to a Kyoto Tycoon server, driving the protocol core's decoders.

The protocol core (:mod:`ktstore.protocol`) only turns bytes into results; this module
owns the socket.  A :class:`Connection` sends a whole request and feeds what it
receives to a decoder of :mod:`ktstore.protocol.receive` until the decoder returns a
result: the decoder keeps its state between reads, so a reply costs time linear in its
size, and memory grows with the bytes that arrive, never with a length the peer
announces.

``timeout`` bounds a whole call, not each read: the first read waits at most
``timeout`` and every further read only what is left of it, so a server that dribbles a
byte per second cannot hold the caller (docs/reliability.md, "Deadlines").

Everything that can go wrong on the wire is turned into ktstore's typed errors here,
and the connection marks itself *broken* so the pool never hands a half-read socket to
the next caller.  Errors raised while sending carry ``sent`` (did any byte of the
request leave?) so the caller can retry a write safely only when the server cannot
have seen it.
"""

from __future__ import annotations

import itertools
import os
import select
import socket
import struct
import time
from typing import Any

from ktstore.errors import KTConnectionError, KTTimeoutError, ProtocolError
from ktstore.protocol.receive import NEED_MORE, HttpReply, HttpResponse, ReceiveBuffer

__all__ = ["Connection", "DEFAULT_TIMEOUT", "DEFAULT_CONNECT_TIMEOUT", "fork_generation"]

#: Call timeout used when the client is given ``timeout=None``: long enough for slow
#: scripts, short enough that a dead server never hangs the caller forever.
DEFAULT_TIMEOUT = 60.0
#: Connect timeout when ``timeout=None`` (a connect should never take long on a LAN).
DEFAULT_CONNECT_TIMEOUT = 10.0

_RBUF_SIZE = 1 << 16
#: The first read of a reply: small replies are the common case, and a 64 KiB read
#: costs ~1 us more per call in allocation (measured; bench/bench_client.py).
_FIRST_READ = 1 << 14
_POLL_IN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
_monotonic = time.monotonic

# Bumped in every forked child, so pools notice a fork with one integer comparison
# instead of an os.getpid() system call per request.
_fork_gen = [0]


def _after_fork_in_child() -> None:
    _fork_gen[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def fork_generation() -> int:
    """A number that changes in a child process after ``fork()``."""
    return _fork_gen[0]


def _conn_error(exc: BaseException, what: str, sent: bool) -> KTConnectionError:
    """Map a socket exception to ktstore's error types, remembering whether bytes left.

    EAGAIN on our blocking sockets is the kernel's SO_RCVTIMEO/SO_SNDTIMEO firing.
    """
    if isinstance(exc, (socket.timeout, TimeoutError, BlockingIOError)):
        err: KTConnectionError = KTTimeoutError(f"timed out {what}")
    else:
        err = KTConnectionError(f"connection error {what}: {exc}")
    err.sent = sent  # type: ignore[attr-defined]
    return err


class Connection:
    """A socket plus a receive buffer; not thread-safe (the pool gives it to one caller).

    ``broken`` is set as soon as the byte stream can no longer be trusted (error, timeout,
    EOF, unexpected bytes); the pool closes broken connections instead of reusing them.
    """

    __slots__ = (
        "host",
        "port",
        "timeout",
        "sock",
        "fork_gen",
        "created",
        "last_used",
        "broken",
        "closed",
        "reused",
        "pool_gen",
        "rb",
        "_poll",
        "_recv",
        "_send",
        "_kernel_timeouts",
        "_armed",
        "_deadline",
        "__weakref__",
    )

    _ids = itertools.count(1)

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        ctimeout = connect_timeout
        if ctimeout is None:
            ctimeout = DEFAULT_CONNECT_TIMEOUT if timeout is None else timeout
        try:
            sock = socket.create_connection((host, port), timeout=ctimeout)
        except OSError as exc:
            raise _conn_error(exc, f"connecting to {host}:{port}", sent=False) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - not TCP (unlikely)
            pass
        self.sock = sock
        self._kernel_timeouts = True
        self._armed = -1.0
        self._deadline = 0.0
        self.set_timeout(self.timeout)
        self.fork_gen = _fork_gen[0]
        self.created = self.last_used = _monotonic()
        self.broken = False
        self.closed = False
        self.reused = False
        self.pool_gen = 0
        self.rb = ReceiveBuffer()
        self._poll: Any = None
        self._recv = sock.recv
        self._send = sock.send

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("broken" if self.broken else "open")
        return f"<Connection {self.host}:{self.port} {state}>"

    # -- life cycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close the socket.  Never ``shutdown()``: after a fork the parent may still
        use the same TCP connection, and shutdown would kill it for both processes."""
        if not self.closed:
            self.closed = True
            self.broken = True
            try:
                self.sock.close()
            except OSError:  # pragma: no cover
                pass

    def is_stale(self) -> bool:
        """True when an idle connection must not be reused: the peer closed it (a
        server restart), reset it, or sent bytes nobody asked for.

        A zero-timeout poll costs one system call.
        """
        rb = self.rb
        if self.closed or self.broken or rb.pos < len(rb.buf):
            return True
        poller = self._poll
        try:
            if poller is None:
                poller = self._poll = select.poll()
                poller.register(self.sock, _POLL_IN)
            return bool(poller.poll(0))
        except (OSError, ValueError):  # a closed socket (fileno -1)
            return True

    def set_timeout(self, timeout: float) -> None:
        """Set the kernel's send/receive timeout of the socket (one system call).

        The socket stays in blocking mode and the kernel enforces the timeout
        (SO_RCVTIMEO/SO_SNDTIMEO): Python's own socket timeouts add a poll() system call
        before every send and receive, which costs more than the rest of a small
        request's client-side work.  Where the options cannot be set, Python's
        timeouts are used instead.
        """
        self._armed = timeout
        sock = self.sock
        if self._kernel_timeouts:
            sec = int(timeout)
            usec = int((timeout - sec) * 1e6)
            if sec == 0 and usec == 0:
                usec = 1  # a zero timeval would mean "block forever"
            tv = struct.pack("ll", sec, usec)
            try:
                sock.settimeout(None)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
                return
            except (OSError, AttributeError, struct.error):
                self._kernel_timeouts = False
        sock.settimeout(timeout)

    def _remaining(self) -> float:
        """Arm the socket with what is left of the call's deadline before another read
        or send; raise a timeout when nothing is left."""
        remaining = self._deadline - _monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline")
        if remaining < self._armed:
            self.set_timeout(remaining)
        return remaining

    def start_call(self, timeout: float | None = None) -> None:
        """Start the deadline of one call (``timeout`` overrides the connection's)."""
        limit = self.timeout if timeout is None else timeout
        if self._armed != limit:
            self.set_timeout(limit)
        self._deadline = _monotonic() + limit

    # -- I/O ----------------------------------------------------------------------

    def send(self, data: bytes, timeout: float | None = None, start: bool = True) -> None:
        """Send a whole request.  An error raised before the first byte left has
        ``sent=False``, which makes retrying even a write safe."""
        if start:
            self.start_call(timeout)
        try:
            n = self._send(data)
        except BaseException as exc:
            self.close()
            if isinstance(exc, OSError):
                raise _conn_error(exc, "sending the request", sent=False) from exc
            raise
        if n < len(data):
            self._send_rest(data, n)

    def _send_rest(self, data: bytes, n: int) -> None:
        """Send what is left of a request after a partial send, within the deadline."""
        view = memoryview(data)
        try:
            while n < len(data):
                self._remaining()
                n += self._send(view[n:])
        except BaseException as exc:
            self.close()
            if isinstance(exc, OSError):
                raise _conn_error(exc, "sending the request", sent=True) from exc
            raise

    def _read_error(self, exc: BaseException) -> BaseException:
        """Close the connection after a failed read; return the exception to raise.

        Timeout, reset, EOF, KeyboardInterrupt...: the stream position is lost.
        """
        self.close()
        if isinstance(exc, EOFError):
            err = KTConnectionError("the server closed the connection")
            err.sent = True  # type: ignore[attr-defined]
            err.__suppress_context__ = True
            return err
        if isinstance(exc, OSError):
            err = _conn_error(exc, "reading the reply", sent=True)
            err.__cause__ = exc
            return err
        return exc

    def exchange(self, data: bytes, factory: Any, timeout: float | None = None) -> Any:
        """Send a request and read its reply: the hot path of every call.

        :meth:`send` and :meth:`read` in one frame, with the usual case first: the whole
        request leaves in one ``send``, the buffer is empty, and the reply arrives in
        one ``recv`` that the decoder class's ``whole`` parses without a decoder object
        (:class:`~ktstore.protocol.receive.Decoder`).  Anything else (a partial send, a
        split or odd reply, an error) takes the general path with the same deadline.
        """
        # start_call, inlined
        limit = self.timeout if timeout is None else timeout
        if self._armed != limit:
            self.set_timeout(limit)
        self._deadline = _monotonic() + limit
        try:
            n = self._send(data)
        except BaseException as exc:
            self.close()
            if isinstance(exc, OSError):
                raise _conn_error(exc, "sending the request", sent=False) from exc
            raise
        if n < len(data):
            self._send_rest(data, n)
        whole = factory.whole if factory.__class__ is type else None  # type: ignore[attr-defined]
        rb = self.rb
        if whole is None or rb.pos < len(rb.buf):
            return self.read(factory())
        try:
            chunk = self._recv(_FIRST_READ)
        except BaseException as exc:
            raise self._read_error(exc)  # noqa: B904 (the cause is set there)
        if chunk:
            result = whole(chunk)
            if result is not NEED_MORE:
                return result
        return self.read(factory(), True, chunk)

    def read(self, decoder: Any, last: bool = True, first: bytes | None = None) -> Any:
        """Read one reply with ``decoder`` (a :class:`~ktstore.protocol.receive.Decoder`)
        within the deadline started by :meth:`send`.

        Bytes after the reply of the ``last`` request mean the stream is out of step,
        so the connection is then marked broken after returning the result.  ``first``
        is a chunk already received for this reply (by :meth:`exchange`).
        """
        rb = self.rb
        buffered = len(rb.buf) - rb.pos
        rb.received = buffered
        try:
            if first is None:
                if buffered and buffered >= decoder.need:  # a pipelined reply, already here
                    result = decoder.step(rb)
                    if result is not NEED_MORE:
                        return self._done(result, last)
                # The first read waits at most the armed timeout (the call's); every
                # further one only what is left of the deadline.
                chunk = self._recv(_RBUF_SIZE)
            else:
                chunk = first
            while True:
                if not chunk:
                    result = decoder.eof(rb)  # EOFError unless the body ends at close
                    self.broken = True
                    return result
                rb.feed(chunk)
                if len(rb.buf) - rb.pos >= decoder.need:
                    result = decoder.step(rb)
                    if result is not NEED_MORE:
                        break
                self._remaining()
                chunk = self._recv(_RBUF_SIZE)
        except ProtocolError:
            self.close()
            raise
        except BaseException as exc:
            raise self._read_error(exc)  # noqa: B904 (the cause is set there)
        return self._done(result, last)

    def _done(self, result: Any, last: bool) -> Any:
        """Mark the connection broken when the stream is out of step after the last
        reply (stray bytes) or the server announced it closes."""
        rb = self.rb
        if last and rb.pos < len(rb.buf):
            self.broken = True
        if result.__class__ is HttpReply and not result.keep_alive:
            self.broken = True
        return result

    def request(self, data: bytes, decoder: Any, timeout: float | None = None) -> Any:
        """Send a request and read its reply (``decoder``: a fresh decoder instance)."""
        self.send(data, timeout)
        return self.read(decoder)

    def http_exchange(self, data: bytes, timeout: float | None = None) -> tuple[int, Any, bytes]:
        """Send an HTTP request, read the whole response: ``(status, headers, body)``.

        A response that does not keep the connection alive marks it broken, so the
        pool closes it instead of reusing it.
        """
        reply = self.request(data, HttpResponse(), timeout)
        return reply.status, reply.headers, reply.body

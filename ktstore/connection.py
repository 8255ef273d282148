"""One TCP connection to a Kyoto Tycoon server, driving the sans-I/O protocol parsers.

The protocol core (:mod:`ktstore.protocol`) only turns bytes into results; this module
owns the socket.  A :class:`Connection` sends a whole request with one ``sendall`` and
feeds what it receives to a parser until the parser stops raising
:class:`~ktstore.errors.Incomplete`.  Everything that can go wrong on the wire is turned
into ktstore's typed errors here, and the connection marks itself *broken* so the pool
never hands a half-read socket to the next caller.

Errors raised while sending carry ``sent`` (did any byte of the request leave?) so the
caller can retry a write safely only when the server cannot have seen it.
"""

from __future__ import annotations

import itertools
import os
import select
import socket
import struct
import time
from typing import Any

from ktstore.errors import Incomplete, KTConnectionError, KTTimeoutError, ProtocolError
from ktstore.protocol.http import body_framing, keep_alive, parse_chunked, parse_response_head
from ktstore.protocol.limits import HTTP_BODY_MAX, LINE_MAX

__all__ = ["Connection", "DEFAULT_TIMEOUT", "DEFAULT_CONNECT_TIMEOUT", "fork_generation"]

#: Read timeout used when the client is given ``timeout=None``: long enough for slow
#: scripts, short enough that a dead server never hangs the caller forever.
DEFAULT_TIMEOUT = 60.0
#: Connect timeout when ``timeout=None`` (a connect should never take long on a LAN).
DEFAULT_CONNECT_TIMEOUT = 10.0

_RBUF_SIZE = 1 << 16
_POLL_IN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR

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
        "_poll",
        "_rbuf",
        "_rview",
        "_recv_into",
        "_sendall",
        "_send",
        "_kernel_timeouts",
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
        self.set_timeout(self.timeout)
        self.fork_gen = _fork_gen[0]
        self.created = self.last_used = time.monotonic()
        self.broken = False
        self.closed = False
        self.reused = False
        self.pool_gen = 0
        self._poll: Any = None
        self._rbuf = bytearray(_RBUF_SIZE)
        self._rview = memoryview(self._rbuf)
        self._recv_into = sock.recv_into
        self._sendall = sock.sendall
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

        A zero-timeout poll costs one system call; only when the socket is readable do we
        peek to tell EOF from stray data (both make it stale anyway).
        """
        if self.closed or self.broken:
            return True
        poller = self._poll
        if poller is None:
            poller = self._poll = select.poll()
            poller.register(self.sock, _POLL_IN)
        try:
            return bool(poller.poll(0))
        except OSError:  # pragma: no cover
            return True

    def set_timeout(self, timeout: float) -> None:
        """Per-operation send/receive timeout.

        The socket stays in blocking mode and the kernel enforces the timeout
        (SO_RCVTIMEO/SO_SNDTIMEO): Python's own socket timeouts add a poll() system call
        before every send and receive, which costs more than the rest of a small
        request's client-side work.  Where the options cannot be set, Python's
        timeouts are used instead.
        """
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

    # -- I/O ----------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send a whole request.  An error raised before the first byte left has
        ``sent=False``, which makes retrying even a write safe."""
        try:
            n = self._send(data)
        except BaseException as exc:
            self.close()
            if isinstance(exc, OSError):
                raise _conn_error(exc, "sending the request", sent=False) from exc
            raise
        if n < len(data):
            try:
                self._sendall(memoryview(data)[n:])
            except BaseException as exc:
                self.close()
                if isinstance(exc, OSError):
                    raise _conn_error(exc, "sending the request", sent=True) from exc
                raise

    def _recv(self, data: bytes, need: int) -> bytes:
        """Return ``data`` extended with received bytes to at least ``need`` bytes.

        Small reads land in the connection's reusable buffer (one copy of exactly what
        arrived); a large known remainder is read straight into one allocation.
        """
        have = len(data)
        recv_into = self._recv_into
        try:
            if need - have <= _RBUF_SIZE:
                view = self._rview
                parts = [data] if have else []
                while have < need:
                    n = recv_into(view, _RBUF_SIZE)
                    if not n:
                        raise EOFError
                    parts.append(view[:n].tobytes())
                    have += n
                return parts[0] if len(parts) == 1 else b"".join(parts)
            buf = bytearray(need)
            buf[:have] = data
            mv = memoryview(buf)
            while have < need:
                n = recv_into(mv[have:])
                if not n:
                    raise EOFError
                have += n
            return bytes(buf)
        except BaseException as exc:
            raise self._read_error(exc)  # noqa: B904 (the cause is set there)

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

    def read(self, parse: Any, *args: Any) -> Any:
        """Read one message with ``parse(buf, 0, *args) -> (result, end)``.

        Bytes after the message (there should be none: we never pipeline) mean the stream
        is out of step, so the connection is marked broken after returning the result.
        """
        # The first read is inline: a small reply usually arrives whole.
        try:
            n = self._recv_into(self._rview, _RBUF_SIZE)
            if not n:
                raise EOFError
        except BaseException as exc:
            raise self._read_error(exc)  # noqa: B904 (the cause is set there)
        data = self._rview[:n].tobytes()
        while True:
            try:
                result, end = parse(data, 0, *args)
            except Incomplete as exc:
                data = self._recv(data, exc.need if exc.need > len(data) else len(data) + 1)
                continue
            except ProtocolError:
                self.close()
                raise
            if end != len(data):
                self.broken = True
            return result

    def read_to_eof(self, data: bytes, limit: int) -> bytes:
        """Read until the peer closes (HTTP bodies framed by connection close)."""
        parts = [data]
        total = len(data)
        view = self._rview
        try:
            while True:
                n = self._recv_into(view, _RBUF_SIZE)
                if not n:
                    break
                parts.append(view[:n].tobytes())
                total += n
                if total > limit:
                    self.close()
                    raise ProtocolError("HTTP body exceeds the size limit")
        except OSError as exc:
            self.close()
            raise _conn_error(exc, "reading the reply", sent=True) from exc
        self.close()
        return b"".join(parts)

    def request(self, data: bytes, parse: Any, *args: Any) -> Any:
        """Send a request and read its reply."""
        self.send(data)
        return self.read(parse, *args)

    def http_exchange(self, data: bytes) -> tuple[int, Any, bytes]:
        """Send an HTTP request, read the whole response: ``(status, headers, body)``.

        A response that does not keep the connection alive marks it broken, so the
        pool closes it instead of reusing it.
        """
        self.send(data)
        status, version, headers, body, to_eof = self.read(_parse_http_response)
        if to_eof:
            body = self.read_to_eof(body, HTTP_BODY_MAX)
        if (version != "HTTP/1.1" or "connection" in headers) and not keep_alive(version, headers):
            self.broken = True
        return status, headers, body


def _parse_http_response(buf: bytes, pos: int = 0) -> tuple[tuple[Any, ...], int]:
    """One HTTP response, as one sans-I/O parse: ``((status, version, headers, body,
    read_to_eof), end)``; ``read_to_eof`` is true for a body framed by the connection
    closing (then ``body`` holds what arrived so far).

    The usual response (what ktserver sends: a CRLF-only head with plain header names and
    a Content-Length) is parsed inline, in one pass; anything else takes the protocol
    core's general parser, which gives the same result for the usual case.
    """
    stop = buf.find(b"\r\n\r\n", pos)
    if 0 <= stop - pos <= LINE_MAX:
        text = buf[pos:stop].decode("latin-1")
        lines = text.split("\r\n")
        n = len(lines) - 1
        status_line = lines[0]
        code = status_line[9:12]
        if (
            text.count("\r") == n
            and text.count("\n") == n
            and status_line[:5] == "HTTP/"
            and status_line[8:9] == " "
            and " " not in status_line[:8]
            and status_line[12:13] in (" ", "")
            and code.isdigit()
            and code.isascii()
        ):
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep or not name or " " in name or "\t" in name:
                    break  # (an odd line: the general parser decides)
                headers[name.lower()] = value.lstrip(" ")
            else:
                clen = headers.get("content-length")
                status = int(code)
                if (
                    clen is not None
                    and clen.isdigit()
                    and clen.isascii()
                    and "transfer-encoding" not in headers
                    and status >= 200
                    and status != 204
                    and status != 304
                ):
                    length = int(clen)
                    if length <= HTTP_BODY_MAX:  # (else the general parser's error)
                        start = stop + 4
                        end = start + length
                        if len(buf) < end:
                            raise Incomplete(end - pos)
                        version = status_line[:8]
                        return (status, version, headers, buf[start:end], False), end
    return _parse_http_response_general(buf, pos)


def _parse_http_response_general(buf: bytes, pos: int = 0) -> tuple[tuple[Any, ...], int]:
    """:func:`_parse_http_response` for any response, over the protocol core."""
    head, end = parse_response_head(buf, pos)
    kind, length = body_framing(head)
    result: tuple[Any, ...] = (head.status, head.version, head.headers)
    if kind == "length":
        if length > HTTP_BODY_MAX:
            raise ProtocolError(f"HTTP body of {length} bytes exceeds the size limit")
        stop = end + length
        if len(buf) < stop:
            raise Incomplete(stop - pos)
        return (*result, buf[end:stop], False), stop
    if kind == "none":
        return (*result, b"", False), end
    if kind == "chunked":
        try:
            body, stop = parse_chunked(buf, end)
        except Incomplete as exc:
            raise Incomplete(end - pos + exc.need) from None
        return (*result, body, False), stop
    return (*result, bytes(buf[end:]), True), len(buf)

"""Follow a server's update log: :class:`ReplicationClient`, a change-feed consumer.

Why: a Kyoto Tycoon server started with ``-ulog DIR -sid N`` logs every committed
change, and any client may stream that log (the same stream a slave server reads).
That is how an application keeps a cache, a search index or an audit trail in step
with the data without polling.  The API is ukt's (``ReplicationClient(kt, sid=None,
decode_values=True)``, ``run(timestamp)``, ``stop()``), with what ukt lacks:

* every message carries its log timestamp ``ts`` and the client remembers the last one
  (:attr:`ReplicationClient.last_ts`), so ``run(since=rc.last_ts)`` resumes exactly
  after the last message handled -- nothing lost, nothing repeated;
* keep-alive frames and heart-beats are handled (ukt fails on the former);
* a server without an update log raises :class:`~ktstore.errors.ReplicationError`,
  a silent server raises :class:`~ktstore.errors.KTTimeoutError` after ``timeout``,
  and a lost connection :class:`~ktstore.errors.KTConnectionError`.

Each message is a ``dict``: ``sid`` (the server where the change was made), ``db``,
``op`` (:data:`REPL_SET`, :data:`REPL_REMOVE` or :data:`REPL_CLEAR`), ``ts``, and
for SET and REMOVE the ``key``; for SET also ``value`` and ``xt`` (absolute unix
time, ``0xFFFFFFFFFF`` for none).  Bulk operations log one message per record; a
remove of a missing key is logged too (the server does that).

The wire format lives in :mod:`ktstore.protocol.replication` (no I/O there).
"""

from __future__ import annotations

import datetime as _dt
import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from ktstore.errors import KTConnectionError, KTTimeoutError, ProtocolError, ReplicationError
from ktstore.protocol import replication as _repl

__all__ = ["ReplicationClient", "REPL_SET", "REPL_REMOVE", "REPL_CLEAR"]

REPL_SET = _repl.OP_SET
REPL_REMOVE = _repl.OP_REMOVE
REPL_CLEAR = _repl.OP_CLEAR

_READ_SIZE = 256 * 1024
_DEFAULT_TIMEOUT = 10.0  # a caught-up master sends a heart-beat about every 0.1 s


def _decode_key(key: bytes) -> str | bytes:
    """UTF-8 keys as ``str``; any other key stays the caller's ``bytes`` (never mangled)."""
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return key


class ReplicationClient:
    """Stream the update log of the server ``kt`` talks to.

    :param kt: a :class:`~ktstore.KyotoTycoon` (its host, port, timeout, key decoding
        and serializer are used).
    :param sid: this consumer's server id; messages that *originated* at this id are
        skipped by the server.  Default: a random id between 100 and 199, as ukt.
    :param decode_values: decode SET values with the client's serializer (values that
        do not decode are left as bytes).
    """

    def __init__(self, kt: Any, sid: int | None = None, decode_values: bool = True) -> None:
        self.kt = kt
        self.sid = random.randint(100, 199) if sid is None else int(sid)
        if not 0 <= self.sid <= 0xFFFF:
            raise ValueError(f"server id out of range (0-65535): {self.sid}")
        self.decode_values = decode_values
        self.last_ts: int | None = None
        self._running = False
        self._finished = threading.Event()
        self._finished.set()

    def run(
        self, timestamp: float | _dt.datetime | None = None, *, since: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """A generator of the messages logged after a point in time.

        ``timestamp`` is a unix time in seconds or a ``datetime`` (default: now), as in
        ukt; ``since`` is a log timestamp (``message["ts"]`` or :attr:`last_ts`) and
        resumes strictly after it.  The generator ends after :meth:`stop`.
        """
        if self._running:
            raise ReplicationError("replication client is already running")
        if since is not None:
            ts = int(since)
        else:
            if timestamp is None:
                timestamp = time.time()
            elif isinstance(timestamp, _dt.datetime):
                if timestamp.tzinfo is None:  # naive means UTC, as everywhere in ktstore
                    timestamp = timestamp.replace(tzinfo=_dt.timezone.utc)
                timestamp = timestamp.timestamp()
            ts = int(timestamp * 1_000_000_000)
        request = _repl.encode_request(max(ts, 0), self.sid)
        self._running = True
        self._finished.clear()
        return self._stream(request)

    def stop(self, wait: bool = False) -> bool:
        """Ask the running generator to end (it notices within about 0.1 s, at the next
        frame or heart-beat).  ``wait=True`` blocks until it has ended: only from
        another thread than the one iterating."""
        if not self._running:
            return False
        self._running = False
        if wait:
            self._finished.wait()
        return True

    @property
    def running(self) -> bool:
        return self._running

    # ------------------------------------------------------------------ internals

    def _connect(self) -> socket.socket:
        timeout = getattr(self.kt, "timeout", None) or _DEFAULT_TIMEOUT
        try:
            sock = socket.create_connection((self.kt.host, self.kt.port), timeout=timeout)
        except TimeoutError as e:
            raise KTTimeoutError(f"connecting to {self.kt.host}:{self.kt.port}: {e}") from e
        except OSError as e:
            raise KTConnectionError(f"connecting to {self.kt.host}:{self.kt.port}: {e}") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _stream(self, request: bytes) -> Iterator[dict[str, Any]]:
        sock: socket.socket | None = None
        try:
            sock = self._connect()
            buf = bytearray()
            self._send(sock, request)
            while not buf:
                self._recv_into(sock, buf)
            if buf[0] != _repl.MAGIC_REPLICATION:
                raise ReplicationError(
                    f"{self.kt.host}:{self.kt.port} refused replication: the server keeps no "
                    "update log (start it with -ulog DIR -sid N)"
                )
            pos = 1
            while self._running:
                try:
                    parsed = _repl.parse_frame(buf, pos)
                except ProtocolError as e:
                    raise ReplicationError(str(e)) from e
                if parsed is None:
                    if pos:
                        del buf[:pos]
                        pos = 0
                    self._recv_into(sock, buf)
                    continue
                frame, pos = parsed
                if isinstance(frame, _repl.Heartbeat):
                    self._send(sock, _repl.ACK)
                    continue
                if not frame.message:  # keep-alive after skipped messages
                    continue
                message = self._decode(frame)
                self.last_ts = frame.ts
                yield message
        finally:
            self._running = False
            if sock is not None:
                sock.close()
            self._finished.set()

    def _send(self, sock: socket.socket, data: bytes) -> None:
        try:
            sock.sendall(data)
        except TimeoutError as e:
            raise KTTimeoutError(f"replication stream: {e}") from e
        except OSError as e:
            raise KTConnectionError(f"replication stream: {e}") from e

    def _recv_into(self, sock: socket.socket, buf: bytearray) -> None:
        try:
            data = sock.recv(_READ_SIZE)
        except TimeoutError as e:
            raise KTTimeoutError("the server sent nothing (not even a heart-beat)") from e
        except OSError as e:
            raise KTConnectionError(f"replication stream: {e}") from e
        if not data:
            raise KTConnectionError("the server closed the replication stream")
        buf += data

    def _decode(self, frame: _repl.DataFrame) -> dict[str, Any]:
        try:
            msg = _repl.decode_message(frame.message)
        except ProtocolError as e:
            raise ReplicationError(str(e)) from e
        out: dict[str, Any] = {"sid": msg.sid, "db": msg.db, "op": msg.op, "ts": frame.ts}
        if msg.key is not None:
            out["key"] = _decode_key(msg.key) if self.kt.decode_keys else msg.key
        if msg.op == REPL_SET:
            out["xt"] = msg.xt
            value: Any = msg.value
            if self.decode_values:
                try:
                    value = self.kt.decode_value(value)
                except Exception:  # not this serializer's data: hand over the bytes
                    pass
            out["value"] = value
        return out

"""The server as a replication slave (``-mhost H -mport N -rts FILE -riv S``).

Why: Kyoto Tycoon scales reads and survives the loss of a machine by replication: a
slave streams its master's update log (the 0xB1 stream of
:mod:`ktstore.protocol.replication`) and applies every change to its own databases.
Two servers that are each other's slave form a *dual master*.  This module follows
ktserver's own slave so that ours can follow a real ktserver, and the other way round:

* the replication time stamp (RTS) -- the log timestamp of the last change applied --
  lives in the ``-rts`` file as ``%020llu\\n``; a restarted slave asks its master for
  what came after it, so nothing is lost (a change may be applied twice after a crash,
  which is harmless: SET, REMOVE and CLEAR give the same result when repeated).  We
  write the file after every batch of applied changes and on heart-beats, where
  ktserver writes it only when a stream ends; so after a SIGKILL we replay less.
* a change that originated at this server's own ``-sid`` is never applied (the master
  does not send it either), and every applied change is logged in our own update log
  under its *original* server id: with that, a dual master does not loop.
* changes for a database index this server does not have are skipped, as ktserver does.
* ``-riv`` throttles as ktserver does: after each change ``riv`` is added to a sum, and
  the slave sleeps 0.1 s per 100 of it (default 0.04: at most ~25,000 changes/s).
* the master is retried every second while it is down; ``tune_replication`` changes
  master, timestamp and interval at run time.

The slave runs in one thread of the server; it touches the databases only through the
same :class:`~ktstore.server.database.Database` methods a request would use, one batch
(one commit) per run of consecutive changes to one database.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ktstore.errors import ProtocolError
from ktstore.protocol import replication as repl
from ktstore.protocol.expire import kt_atoi

__all__ = ["ReplicationSlave", "read_rts_file", "RTS_FILE_SIZE", "DEFAULT_RIV"]

RTS_FILE_SIZE = 21  # "%020llu\n"
DEFAULT_RIV = 0.04
_STREAM_TIMEOUT = 60.0  # ktserver's slave gives up on a master silent for a minute
_RETRY_INTERVAL = 1.0
_READ_SIZE = 256 * 1024


def read_rts_file(path: str) -> int:
    """The timestamp stored in an RTS file (0 if it is missing, empty or not a number)."""
    try:
        with open(path, "rb") as f:
            return max(kt_atoi(f.read(RTS_FILE_SIZE).rstrip(b"\n\x00")), 0)
    except FileNotFoundError:
        return 0


class ReplicationSlave:
    """Follows one master and applies its changes to ``dbs``.

    ``log(kind, message)`` is the server's logger; ``ulog`` its update log or
    ``None``.  Nothing happens until :meth:`start`; with an empty ``host`` the slave
    idles until :meth:`set_master` names one (as ktserver with ``-rts`` and no
    ``-mhost``).
    """

    def __init__(
        self,
        *,
        sid: int,
        rts_path: str,
        host: str | None,
        port: int,
        riv: float,
        dbs: Sequence[Any],
        ulog: Any,
        log: Callable[[str, str], None],
    ) -> None:
        self.sid = sid
        self.rts_path = rts_path
        self._host = host or ""
        self._port = port
        self._riv = riv
        self._dbs = dbs
        self._ulog = ulog
        self._log = log
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._alive = True
        self._restart = False
        self._pending_ts: int | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self.rts = 0
        self.applied = 0  # changes applied since start (for tests and reports)

    # ------------------------------------------------------------------ control

    @property
    def host(self) -> str:
        with self._lock:
            return self._host

    @property
    def port(self) -> int:
        with self._lock:
            return self._port

    @property
    def riv(self) -> float:
        return self._riv

    def start(self) -> None:
        """Open (create) the RTS file and start following the master."""
        self._fd = os.open(self.rts_path, os.O_RDWR | os.O_CREAT, 0o644)
        self.rts = read_rts_file(self.rts_path)
        self._write_rts()
        self._thread = threading.Thread(target=self._run, name="ktstore-slave", daemon=True)
        self._thread.start()

    def set_master(self, host: str, port: int, ts: int | None, iv: float | None) -> None:
        """``tune_replication``: a new master (``""`` stops replicating), a timestamp to
        restart from (``None`` keeps the current one) and interval (``None`` keeps it)."""
        with self._lock:
            self._host = host
            self._port = port
            if ts is not None:
                self._pending_ts = ts
            if iv is not None and iv >= 0:
                self._riv = iv
            self._restart = True
        self._interrupt()

    def stop(self) -> None:
        """Stop following, write the RTS file and close it."""
        self._alive = False
        self._interrupt()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._fd is not None:
            self._write_rts()
            os.close(self._fd)
            self._fd = None

    def _interrupt(self) -> None:
        self._wake.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _write_rts(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            os.pwrite(fd, b"%020d\n" % self.rts, 0)
        except OSError as e:
            self._log("error", f"writing the time stamp failed: {e}")

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        deferred = False
        while self._alive:
            with self._lock:
                host, port = self._host, self._port
                pending, self._pending_ts = self._pending_ts, None
                self._restart = False
            if pending is not None:
                self.rts = pending
                self._write_rts()
            if host:
                try:
                    sock = socket.create_connection((host, port), timeout=_STREAM_TIMEOUT)
                except OSError:
                    if not deferred:
                        self._log("system", f"replication was deferred: host={host} port={port}")
                    deferred = True
                else:
                    deferred = False
                    self._sock = sock
                    try:
                        self._follow(sock, host, port)
                    finally:
                        self._sock = None
                        sock.close()
                        self._write_rts()
            if self._alive:
                self._wake.wait(_RETRY_INTERVAL)
                self._wake.clear()

    def _follow(self, sock: socket.socket, host: str, port: int) -> None:
        """One stream from the master, until it breaks, we stop, or are re-tuned."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.sendall(repl.encode_request(self.rts, self.sid))
            first = sock.recv(1)
        except OSError:
            first = b""
        if first != repl.ACK:
            self._log("system", f"replication was refused or failed: host={host} port={port}")
            return
        self._log("system", f"replication started: host={host} port={port} rts={self.rts}")
        buf = bytearray()
        rivsum = 0.0
        try:
            while self._alive and not self._restart:
                try:
                    data = sock.recv(_READ_SIZE)
                except OSError:
                    break
                if not data:
                    break
                buf += data
                pos = 0
                batch: list[tuple[int, repl.Message]] = []
                acks = 0
                while True:
                    try:
                        parsed = repl.parse_frame(buf, pos)
                    except ProtocolError as e:
                        self._log("error", f"replication stream from {host}:{port}: {e}")
                        return
                    if parsed is None:
                        break
                    frame, pos = parsed
                    if isinstance(frame, repl.Heartbeat):
                        acks += 1
                        self._apply(batch)
                        batch = []
                        if frame.ts > self.rts:
                            self.rts = frame.ts
                        continue
                    if frame.message:
                        try:
                            msg = repl.decode_message(frame.message)
                        except ProtocolError as e:
                            self._log("error", f"replication: bad message skipped: {e}")
                        else:
                            if msg.sid != self.sid and msg.db < len(self._dbs):
                                batch.append((frame.ts, msg))
                        rivsum += self._riv
                    else:
                        rivsum += self._riv * 256 / 4  # ktserver's keep-alive weight
                    if frame.ts > self.rts and not batch:
                        self.rts = frame.ts
                del buf[:pos]
                self._apply(batch)
                self._write_rts()
                if acks:
                    try:
                        sock.sendall(repl.ACK * acks)
                    except OSError:
                        break
                while rivsum > 100 and self._alive and not self._restart:
                    time.sleep(0.1)
                    rivsum -= 100
        finally:
            self._log("system", f"replication finished: host={host} port={port}")

    def _apply(self, batch: list[tuple[int, repl.Message]]) -> None:
        """Apply changes in order: one commit per run of changes to one db from one origin."""
        i = 0
        n = len(batch)
        while i < n:
            _, first = batch[i]
            j = i
            while j < n and batch[j][1].db == first.db and batch[j][1].sid == first.sid:
                j += 1
            self._apply_run(first.db, first.sid, [m for _, m in batch[i:j]])
            self.rts = max(self.rts, batch[j - 1][0])
            self.applied += j - i
            i = j

    def _apply_run(self, dbidx: int, origin: int, messages: list[repl.Message]) -> None:
        db = self._dbs[dbidx]
        ulog = self._ulog
        token = ulog.set_origin(origin) if ulog is not None else None
        try:
            with db.batch():
                for m in messages:
                    if m.op == repl.OP_SET:
                        assert m.key is not None and m.value is not None and m.xt is not None
                        db.set(m.key, m.value, m.xt)
                    elif m.op == repl.OP_REMOVE:
                        assert m.key is not None
                        db.remove(m.key)
                    elif m.op == repl.OP_CLEAR:
                        db.clear()
        except Exception as e:  # a failed apply must not kill the slave thread
            self._log("error", f"recovering a database failed: {e!r}")
        finally:
            if ulog is not None:
                ulog.reset_origin(token)

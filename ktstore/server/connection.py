"""One client connection: read requests, pick the protocol per request, answer.

The first byte of every request decides (kt-protocol §1): ``0x00`` or
``>= 0x80`` is a binary command, anything else an HTTP request.  A receive
buffer drives the sans-I/O parsers of :mod:`ktstore.protocol`: a parser that
raises :class:`~ktstore.errors.Incomplete` tells how many bytes it needs, we
read at least that many and parse again (so a large request is read in few
steps and joined once, never re-scanned quadratically).  Oversized size fields
are refused by the parsers before anything is allocated.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ktstore.errors import Incomplete, ProtocolError
from ktstore.protocol import binary
from ktstore.protocol.limits import DATA_MAX_SIZE

if TYPE_CHECKING:
    from ktstore.server.core import Server, Session
    from ktstore.server.database import Database

__all__ = ["serve_connection", "Closed"]

_RECV = 1 << 16
_RECV_MAX = 1 << 20
_DRAIN_WAIT_MS = 5  # how long a large message's next packet may take to be drained eagerly
_ERROR = binary.ERROR_REPLY_BYTES


class Closed(Exception):
    """The peer closed the connection, it timed out, or we decided to drop it."""


class Reader:
    """A receive buffer over a blocking socket.

    ``buf[pos:]`` holds the bytes received and not consumed yet.  ``buf`` is
    ``bytes`` (not a bytearray) so the parsers can slice it without copying it
    first; refills join the pieces once.
    """

    __slots__ = ("sock", "buf", "pos", "_poller")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.pos = 0
        self._poller: select.poll | None = None

    def _poll(self) -> select.poll:
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self.sock, select.POLLIN)
        return self._poller

    def fill(self, need: int = 1) -> None:
        """Make ``len(buf) - pos >= need``, reading from the socket; Closed on EOF."""
        have = len(self.buf) - self.pos
        if have >= need:
            return
        parts = [self.buf[self.pos :]] if have else []
        recv = self.sock.recv
        try:
            while have < need:
                want = need - have
                chunk = recv(_RECV if want < _RECV else (want if want < _RECV_MAX else _RECV_MAX))
                if not chunk:
                    raise Closed("peer closed")
                parts.append(chunk)
                have += len(chunk)
            if need > _RECV:
                # A large message whose parser only knows a lower bound of its size
                # (a bulk of many small records): also take what arrives without a
                # pause, up to twice the bound.  The buffer then grows geometrically
                # and the parser re-runs O(log n) times instead of once per 64 KiB.
                target = need << 1
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
        except TimeoutError:
            raise Closed("timeout") from None
        except OSError as e:
            raise Closed(str(e)) from None
        self.buf = parts[0] if len(parts) == 1 else b"".join(parts)
        self.pos = 0

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


def _send(sock: socket.socket, data: bytes) -> None:
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


def serve_connection(server: Server, sock: socket.socket, session: Session) -> None:
    """Serve requests on ``sock`` until the peer leaves or a request says close."""
    from ktstore.server.httpserver import handle_http  # circular at module level

    reader = Reader(sock)
    try:
        while not server.stopping:
            if reader.pos >= len(reader.buf):
                reader.buf = b""  # do not keep a consumed (maybe huge) request alive
                reader.pos = 0
                reader.fill(1)
            first = reader.buf[reader.pos]
            if first == 0 or first >= 0x80:
                keep = handle_binary(server, reader, session)
            else:
                keep = handle_http(server, reader, session)
            if not keep:
                return
    except Closed:
        return


# ------------------------------------------------------------------------ binary


def _binary_header_flags(reader: Reader) -> int:
    buf, pos = reader.buf, reader.pos
    if len(buf) - pos >= 5:
        return int.from_bytes(buf[pos + 1 : pos + 5], "big")
    return 0


def _per_db(
    dbs: list[Database],
    items: Sequence[tuple[Any, ...]],
    run: Callable[[Database, int], tuple[int, bool]],
) -> int:
    """Run a bulk write against database 0, then against each other database its
    items name (most requests name only database 0: one pass, one lock hold).
    ktserver skips items naming an unknown database silently."""
    n, others = run(dbs[0], 0) if dbs else (0, True)
    if others:
        for idx in sorted({item[0] for item in items if 0 < item[0] < len(dbs)}):
            n += run(dbs[idx], idx)[0]
    return n


def _get_bulk(
    dbs: list[Database], keys: list[tuple[int, bytes]]
) -> list[tuple[int, bytes, bytes, int]]:
    """The records of a binary get_bulk in request order (unknown databases: not found)."""
    if dbs:
        out, others = dbs[0].get_bulk_wire(keys, 0)
        if not others:
            return out
    out = []
    for dbidx, key in keys:  # several databases: key by key, to keep the request order
        if dbidx < len(dbs):
            rec = dbs[dbidx].get(key)
            if rec is not None:
                out.append((dbidx, key, rec[0], rec[1]))
    return out


def handle_binary(server: Server, reader: Reader, session: Session) -> bool:
    """Serve one binary command; returns whether the connection stays open."""
    sock = reader.sock
    try:
        req = reader.parse(binary.parse_request)
    except ProtocolError:
        # Replication: served from the update log (0xBF without one).  Unknown
        # magic: close without a word.  A size over the limit: the bulk commands
        # answer 0xBF (unless no-reply) and close; play_script just closes.
        magic = reader.buf[reader.pos]
        if magic == binary.MAGIC_REPLICATION:
            replicate(server, reader)
            return False
        if magic in (binary.MAGIC_SET_BULK, binary.MAGIC_REMOVE_BULK, binary.MAGIC_GET_BULK):
            flags = _binary_header_flags(reader)
            if magic == binary.MAGIC_GET_BULK or not flags & binary.FLAG_NOREPLY:
                send_last(sock, _ERROR)
        return False
    kind = type(req)
    if kind is binary.GetBulk:
        keys = req.keys
        out = _get_bulk(server.dbs, keys)
        stats = server.stats
        stats["get"] += len(keys)
        stats["get_misses"] += len(keys) - len(out)
        _send(sock, binary.encode_get_bulk_reply(out))
        return True
    if kind is binary.SetBulk or kind is binary.RemoveBulk:
        stats = server.stats
        try:
            if kind is binary.SetBulk:
                now = int(time.time())
                n = _per_db(
                    server.dbs, req.records, lambda db, i: db.set_bulk_wire(req.records, i, now)
                )
                stats["set"] += n
                magic = binary.MAGIC_SET_BULK
            else:
                n = _per_db(server.dbs, req.keys, lambda db, i: db.remove_bulk_wire(req.keys, i))
                stats["remove"] += len(req.keys)
                stats["remove_misses"] += len(req.keys) - n
                magic = binary.MAGIC_REMOVE_BULK
        except Exception as e:
            server.log("error", f"binary {kind.__name__} failed: {e!r}")
            if not req.no_reply:
                send_last(sock, _ERROR)
            return False
        if not req.no_reply:
            _send(sock, binary.encode_count_reply(magic, n))
        return True
    # play_script: every failure is a bare 0xBF and the connection stays open
    server.stats["script"] += 1
    host = server.script_host()
    reply = _ERROR
    if host is not None and len(req.name) <= DATA_MAX_SIZE:
        try:
            rv, outputs = host.call(req.name, req.params)
        except Exception as e:
            server.log("error", f"[SCRIPT]: host failure: {e!r}")
            rv, outputs = 5, []
        if rv == 0:  # ktserver's output map is a std::map: records in key order
            reply = binary.encode_play_script_reply(sorted(outputs))
    if not req.no_reply:
        _send(sock, reply)
    return True


# ------------------------------------------------------------------- replication

_REPL_REQUEST = struct.Struct(">BIQH")  # magic, flags, ts, sid
_REPL_FRAME = struct.Struct(">BQI")  # 0xB1, ts, size (then the message)
_NOP = struct.Struct(">BQ")  # 0xB0, ts (heart-beat)
_WHITE_SID = 1
_DUMMY_FREQ = 256


def replicate(server: Server, reader: Reader) -> None:
    """Stream the update log to a replication client (ktserver's 0xB1 protocol).

    The request is ``0xB1, u32 flags, u64 ts, u16 sid``.  We answer ``0xB1`` and
    send every logged message with a timestamp above ``ts`` as
    ``0xB1, u64 ts, u32 size, message``, skipping messages of the client's own
    sid (or, with the white-sid flag, of any other sid; a size-0 dummy frame
    every 256 skips).  When caught up we send ``0xB0, u64 ts`` heart-beats
    about every 0.1 s, each answered by the client with one ``0xB1`` byte.
    Without ``-ulog`` the answer is ``0xBF``.  The stream ends with the
    connection.
    """
    from ktstore.server.ulog import UlogReader

    sock = reader.sock
    reader.fill(_REPL_REQUEST.size)
    _, flags, ts, sid = _REPL_REQUEST.unpack_from(reader.buf, reader.pos)
    reader.pos += _REPL_REQUEST.size
    ulog = server.ulog
    if ulog is None:
        server.log("info", "no update log allows no replication")
        send_last(sock, _ERROR)
        return
    white = bool(flags & _WHITE_SID)
    _send(sock, b"\xb1")
    server.log("system", f"a slave was connected: ts={ts} sid={sid}")
    log_reader = UlogReader(ulog, ts)
    last_ts = 0
    misses = 0
    try:
        while not server.stopping:
            sent_any = False
            out = []
            for mts, msg in log_reader.read():
                rsid = int.from_bytes(msg[:2], "big")
                if (rsid != sid) if white else (rsid == sid):
                    misses += 1
                    if misses >= _DUMMY_FREQ:
                        out.append(_REPL_FRAME.pack(0xB1, mts, 0))
                        misses = 0
                else:
                    misses = 0
                    out.append(_REPL_FRAME.pack(0xB1, mts, len(msg)) + msg)
                last_ts = max(last_ts, mts)
                if len(out) >= 256:
                    _send(sock, b"".join(out))
                    out = []
                    sent_any = True
            if out:
                _send(sock, b"".join(out))
                sent_any = True
            if sent_any:
                continue
            cc = ulog.clock_pure()
            if cc > 1_000_000_000:
                cc -= 1_000_000_000
            _send(sock, _NOP.pack(0xB0, max(cc, last_ts)))
            reader.fill(1)
            ack = reader.buf[reader.pos]
            reader.pos += 1
            if ack != 0xB1:
                return
            with ulog.lock:
                if not server.stopping:
                    ulog.changed.wait(0.1)
    finally:
        server.log("system", f"a slave was disconnected: sid={sid}")

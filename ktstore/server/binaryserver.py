"""Kyoto Tycoon's binary protocol on the server side: the bulk commands, play_script
and the replication stream (docs/protocol.md, "Binary protocol";
the replication stream is described at :func:`replicate`).

A binary request starts with a magic byte ``0x00`` or ``>= 0x80`` (the
connection dispatcher, :mod:`ktstore.server.connection`, decides per request).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ktstore.errors import ProtocolError
from ktstore.protocol import binary
from ktstore.protocol import replication as repl
from ktstore.protocol.limits import DATA_MAX_SIZE
from ktstore.protocol.receive import BinaryRequestDecoder
from ktstore.server.database import request_scope
from ktstore.server.netio import Reader, send, send_last

if TYPE_CHECKING:
    from ktstore.server.context import ServerContext
    from ktstore.server.database import Database
    from ktstore.server.session import Session

__all__ = ["handle_binary", "replicate"]

_ERROR = binary.ERROR_REPLY_BYTES

#: The largest binary request frame we buffer: room for one record of the largest
#: key and value KT accepts.  The decoder knows a lower bound of a frame's size
#: from its record count and the record heads received so far, so a frame that
#: would exceed this is refused (0xBF, as for an oversized record) *before* its
#: bytes are buffered, and memory stays within a small constant of what arrived.
FRAME_MAX = 2 * DATA_MAX_SIZE + 64


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


def handle_binary(server: ServerContext, reader: Reader, session: Session) -> bool:
    """Serve one binary command; returns whether the connection stays open."""
    sock = reader.sock
    reader.start_body()  # a frame is all body: it must keep the minimum rate
    decoder = BinaryRequestDecoder(FRAME_MAX)
    try:
        req = reader.read(decoder)
    except ProtocolError:
        # Replication: served from the update log (0xBF without one).  Unknown
        # magic: close without a word.  A size over the limit: the bulk commands
        # answer 0xBF (unless no-reply) and close; play_script just closes.
        magic = decoder.magic  # the frame's first byte (the decoder may have consumed records)
        if magic == binary.MAGIC_REPLICATION:
            replicate(server, reader)
            return False
        if magic in (binary.MAGIC_SET_BULK, binary.MAGIC_REMOVE_BULK, binary.MAGIC_GET_BULK):
            if magic == binary.MAGIC_GET_BULK or not decoder.flags & binary.FLAG_NOREPLY:
                send_last(sock, _ERROR)
        return False
    kind = type(req)
    if kind is binary.GetBulk:
        keys = req.keys
        out = _get_bulk(server.dbs, keys)
        stats = server.stats
        stats["get"] += len(keys)
        stats["get_misses"] += len(keys) - len(out)
        send(sock, binary.encode_get_bulk_reply(out))
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
            send(sock, binary.encode_count_reply(magic, n))
        return True
    # play_script: every failure is a bare 0xBF and the connection stays open
    server.stats["script"] += 1
    host = server.script_host()
    reply = _ERROR
    if host is None:
        server.script_missing()
    if host is not None and len(req.name) <= DATA_MAX_SIZE:
        try:
            from ktstore.server.scripting.cancel import client_gone  # loaded with the host

            with request_scope(server.dbs):  # one Lua call = one commit per file database
                rv, outputs = host.call(req.name, req.params, cancel=client_gone(sock))
        except Exception as e:
            server.log("error", f"[SCRIPT]: host failure: {e!r}")
            rv, outputs = 5, []
        if rv == 0:  # ktserver's output map is a std::map: records in key order
            reply = binary.encode_play_script_reply(sorted(outputs))
    if not req.no_reply:
        send(sock, reply)
    return True


# ------------------------------------------------------------------- replication

_DUMMY_FREQ = 256


def replicate(server: ServerContext, reader: Reader) -> None:
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
    head = reader.take(repl.REQUEST_SIZE)
    reader.no_deadline()  # a stream: its consumer acknowledges as long as it likes
    request = repl.parse_request(head, 0)
    assert request is not None  # take() read all of its bytes
    flags, ts, sid = request
    ulog = server.ulog
    if ulog is None:
        server.log("info", "no update log allows no replication")
        send_last(sock, _ERROR)
        return
    white = bool(flags & repl.FLAG_WHITE_SID)
    send(sock, repl.ACK)
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
                        out.append(repl.encode_data_frame(mts, b""))
                        misses = 0
                else:
                    misses = 0
                    out.append(repl.encode_data_frame(mts, msg))
                last_ts = max(last_ts, mts)
                if len(out) >= 256:
                    send(sock, b"".join(out))
                    out = []
                    sent_any = True
            if out:
                send(sock, b"".join(out))
                sent_any = True
            if sent_any:
                continue
            cc = ulog.clock_pure()
            if cc > 1_000_000_000:
                cc -= 1_000_000_000
            send(sock, repl.encode_heartbeat(max(cc, last_ts)))
            ack = reader.take(1)[0]
            if ack != repl.MAGIC_REPLICATION:
                return
            with ulog.lock:
                if not server.stopping:
                    ulog.changed.wait(0.1)
    finally:
        server.log("system", f"a slave was disconnected: sid={sid}")

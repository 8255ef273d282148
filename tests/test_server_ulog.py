"""The update log (-ulog/-sid/-ulim): files, ulog_list/ulog_remove, binary replication."""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

import pytest
from replay import RawClient

from ktstore.protocol.dumps import decode_varint
from ktstore.protocol.limits import XTMAX
from ktstore.server import Server
from ktstore.server.config import UsageError, parse_args


def test_ulog_needs_sid() -> None:
    with pytest.raises(UsageError):
        parse_args(["-ulog", "x"])
    cfg = parse_args(["-ulog", "x", "-sid", "7", "-ulim", "1k"])
    assert (cfg.ulog, cfg.sid, cfg.ulim) == ("x", 7, 1024)


class Stream:
    """A replication client: reads frames, answers heart-beats."""

    def __init__(self, port: int, ts: int = 0, sid: int = 99) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(struct.pack(">BIQH", 0xB1, 0, ts, sid))
        self.buf = b""
        assert self.need(1) == b"\xb1"

    def need(self, k: int) -> bytes:
        while len(self.buf) < k:
            chunk = self.sock.recv(65536)
            assert chunk, "stream closed"
            self.buf += chunk
        data, self.buf = self.buf[:k], self.buf[k:]
        return data

    def messages(self, n: int) -> list[tuple[int, bytes]]:
        """Read ``n`` replication frames -> [(ts, message)]."""
        out: list[tuple[int, bytes]] = []
        while len(out) < n:
            magic = self.need(1)[0]
            if magic == 0xB0:
                self.need(8)
                self.sock.sendall(b"\xb1")
                continue
            assert magic == 0xB1
            ts, size = struct.unpack(">QI", self.need(12))
            out.append((ts, self.need(size)))
        return out

    def close(self) -> None:
        self.sock.close()


def _decode(msg: bytes) -> tuple:
    sid, dbidx, op = struct.unpack(">HHB", msg[:5])
    if op == 0xA1:
        ksiz, p = decode_varint(msg, 5)
        vsiz, p = decode_varint(msg, p)
        key, value = msg[p : p + ksiz], msg[p + ksiz : p + ksiz + vsiz]
        return sid, dbidx, "set", key, int.from_bytes(value[:5], "big"), value[5:]
    if op == 0xA2:
        ksiz, p = decode_varint(msg, 5)
        return sid, dbidx, "remove", msg[p : p + ksiz]
    return sid, dbidx, "clear" if op == 0xA5 else op


@pytest.fixture
def ulog_server(tmp_path: Path):
    srv = Server(["*", "%"], port=0, args=["-lz", "-ulog", str(tmp_path / "ulog"), "-sid", "7"])
    srv.start()
    yield srv
    srv.stop()


def test_replication_stream(ulog_server: Server) -> None:
    c = RawClient("127.0.0.1", ulog_server.port)
    c.rpc("set", {"key": "a", "value": "1"})
    c.rpc("set", {"DB": "1", "key": "t", "value": "tree", "xt": "-2000000000"})
    c.rpc("remove", {"key": "a"})
    stream = Stream(ulog_server.port)
    got = stream.messages(3)
    assert [_decode(m) for _, m in got] == [
        (7, 0, "set", b"a", XTMAX, b"1"),
        (7, 1, "set", b"t", 2000000000, b"tree"),
        (7, 0, "remove", b"a"),
    ]
    assert [ts for ts, _ in got] == sorted(ts for ts, _ in got)
    # new writes reach a caught-up stream (through the heart-beat loop)
    c.rpc("clear", {"DB": "1"})
    ((ts, msg),) = stream.messages(1)
    assert _decode(msg) == (7, 1, "clear") and ts > got[-1][0]
    stream.close()
    # a client with the server's own sid gets nothing of it (loop prevention) ...
    own = Stream(ulog_server.port, sid=7)
    assert own.need(1) == b"\xb0"  # straight to heart-beats
    own.close()
    # ... and a start timestamp skips what came before it
    late = Stream(ulog_server.port, ts=got[1][0])
    assert [_decode(m)[2] for _, m in late.messages(2)] == ["remove", "clear"]
    late.close()
    c.close()


def test_ulog_list_and_remove(tmp_path: Path) -> None:
    path = tmp_path / "ulog"
    srv = Server(["*"], port=0, args=["-lz", "-ulog", str(path), "-sid", "1", "-ulim", "200"])
    srv.start()
    try:
        c = RawClient("127.0.0.1", srv.port)
        for i in range(12):
            c.rpc("set", {"key": f"k{i}", "value": "x" * 40})
        status, out = c.rpc("ulog_list")
        assert status == 200 and len(out) >= 3
        for name, value in out.items():
            assert Path(name.decode()).parent == path and name.endswith(b".ulog")
            size, ts = value.split(b":")
            assert int(size) == os.path.getsize(name.decode())
        # "now" has millisecond resolution while log timestamps add a counter within
        # the millisecond (as ktserver's): let the clock move past the last write
        time.sleep(0.005)
        assert c.rpc("ulog_remove", {"ts": "now"})[0] == 200
        status, out = c.rpc("ulog_list")
        assert len(out) == 1
        c.close()
    finally:
        srv.stop()
    # the log survives a restart and continues in the newest file
    srv = Server(["*"], port=0, args=["-lz", "-ulog", str(path), "-sid", "1"])
    srv.start()
    try:
        c = RawClient("127.0.0.1", srv.port)
        before = c.rpc("ulog_list")[1]
        c.rpc("set", {"key": "after", "value": "restart"})
        after = c.rpc("ulog_list")[1]
        assert set(after) == set(before) and after != before
        c.close()
    finally:
        srv.stop()


def test_replication_refused_without_ulog() -> None:
    srv = Server(["*"], port=0, args=["-lz"])
    srv.start()
    try:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(struct.pack(">BIQH", 0xB1, 0, 0, 1))
        assert s.recv(10) == b"\xbf"
        assert s.recv(10) == b""
        s.close()
        c = RawClient("127.0.0.1", srv.port)
        assert c.rpc("ulog_list") == (400, {b"ERROR": b"no update log allows no replication"})
        c.close()
    finally:
        srv.stop()


def test_stop_ends_replication_streams(ulog_server: Server) -> None:
    s = Stream(ulog_server.port)
    time.sleep(0.05)
    t0 = time.monotonic()
    ulog_server.stop()
    assert time.monotonic() - t0 < 3
    s.close()

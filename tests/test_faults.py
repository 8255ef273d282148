"""Faults the client must survive: restarts, a server dying mid-reply, stalls, many
threads, fork.  Only the "dies mid-reply" cases use a tiny fake server: a real one
cannot be made to stop half-way through a reply on demand."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
import time

import pytest
from conftest import REAL_SERVER, free_port, wait_for_port

from ktstore import KTConnectionError, KTTimeoutError, KyotoTycoon


def _start_on(port: int):
    """Start a server on a fixed port (to restart it where the client expects it)."""
    if REAL_SERVER:
        proc = subprocess.Popen(
            [REAL_SERVER, "-le", "-host", "127.0.0.1", "-port", str(port), "*"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port("127.0.0.1", port)

        def stop():
            proc.terminate()
            proc.wait(10)

        return stop
    from ktstore.server import Server

    server = Server(["*"], host="127.0.0.1", port=port)
    server.start()
    return server.stop


def test_first_call_after_restart_succeeds():
    port = free_port()
    stop = _start_on(port)
    kt = KyotoTycoon("127.0.0.1", port, timeout=5)
    try:
        kt.set("k", "v")
        assert kt.get("k") == "v"
        assert kt.count() == 1  # an idle HTTP connection too
        stop()
        with pytest.raises(KTConnectionError):
            kt.get("k")  # nothing listens: a typed error, quickly
        stop = _start_on(port)
        # the pooled sockets are dead; the pool notices and reconnects
        assert kt.get("k") is None
        assert kt.set("k", "v2") == 1
        assert kt.count() == 1
        stop()
        stop = _start_on(port)
        assert kt.set("k", "v3") == 1  # a write after a restart, too
        assert kt.status()["count"] == 1
    finally:
        stop()
        kt.close_all()


class FakeServer:
    """Accepts connections and answers each request with ``reply(request_bytes)``:
    bytes to send, then the connection is closed (or left open with ``stall``)."""

    def __init__(self, reply, stall: bool = False) -> None:
        self.reply = reply
        self.stall = stall
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._open.append(conn)
            conn.settimeout(5)
            try:
                data = conn.recv(65536)
            except OSError:
                continue
            if not data:
                conn.close()
                continue
            self.requests.append(data)
            try:
                conn.sendall(self.reply(data))
            except OSError:
                pass
            if not self.stall:
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for c in self._open:
            c.close()


@pytest.fixture
def faked():
    """``faked(reply, stall=False, timeout=2) -> (fake server, client of it)``; the
    servers are closed when the test ends."""
    servers: list[FakeServer] = []

    def start(reply, stall: bool = False, timeout: float = 2) -> tuple[FakeServer, KyotoTycoon]:
        fake = FakeServer(reply, stall)
        servers.append(fake)
        return fake, KyotoTycoon("127.0.0.1", fake.port, timeout=timeout)

    yield start
    for fake in servers:
        fake.close()


def _partial_get_reply(request: bytes) -> bytes:
    # get_bulk reply announcing one record with a 100-byte value, cut after 10 bytes
    return b"\xba" + struct.pack(">I", 1) + struct.pack(">HIIq", 0, 1, 100, 0) + b"k" + b"x" * 10


def test_server_dies_mid_reply_read_is_retried_once_then_fails(faked):
    fake, kt = faked(_partial_get_reply)
    with pytest.raises(KTConnectionError) as info:
        kt.get("k")
    assert not isinstance(info.value, KTTimeoutError)
    assert len(fake.requests) == 2  # a read is retried once on a fresh connection
    assert kt.pool.stats == (0, 0, 0)  # and no half-read socket was kept


def test_server_dies_mid_reply_write_is_not_retried(faked):
    fake, kt = faked(lambda req: req[:1] + b"\x00")  # half a set/remove_bulk reply
    with pytest.raises(KTConnectionError):
        kt.set("k", "v")
    assert len(fake.requests) == 1  # the write reached the server: never sent twice
    with pytest.raises(KTConnectionError):
        kt.remove_bulk(["a", "b"])
    assert len(fake.requests) == 2
    assert kt.pool.stats == (0, 0, 0)


def test_server_dies_mid_http_reply(faked):
    fake, kt = faked(lambda req: b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nnum\t1")
    with pytest.raises(KTConnectionError):
        kt.increment("n")  # a write over HTTP: not retried
    assert len(fake.requests) == 1
    with pytest.raises(KTConnectionError):
        kt.status()  # a read: retried once
    assert len(fake.requests) == 3
    assert kt.pool.stats == (0, 0, 0)


def test_garbage_reply_is_a_protocol_error_and_discards_the_socket(faked):
    from ktstore import ProtocolError

    fake, kt = faked(lambda req: b"\x42garbage", stall=True)
    with pytest.raises(ProtocolError):
        kt.get("k")
    assert kt.pool.stats == (0, 0, 0)


def test_stalled_server_times_out_and_discards_the_socket():
    # A listening socket that never accepts: the kernel completes the handshake, then
    # nothing ever answers.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    port = lsock.getsockname()[1]
    kt = KyotoTycoon("127.0.0.1", port, timeout=0.2)
    try:
        start = time.monotonic()
        with pytest.raises(KTTimeoutError):
            kt.get("k")
        with pytest.raises(KTTimeoutError):
            kt.status()
        assert time.monotonic() - start < 2  # timeouts are not retried
        assert kt.pool.stats == (0, 0, 0)
    finally:
        lsock.close()


def test_stall_after_a_partial_reply_times_out(faked):
    fake, kt = faked(_partial_get_reply, stall=True, timeout=0.2)
    with pytest.raises(KTTimeoutError):
        kt.get("k")
    assert len(fake.requests) == 1
    assert kt.pool.stats == (0, 0, 0)


def test_binary_error_reply_discards_the_socket(faked):
    fake, kt = faked(lambda req: b"\xbf", stall=True)
    from ktstore import ServerError

    with pytest.raises(ServerError):
        kt.set("k", "v")
    assert kt.pool.stats == (0, 0, 0)


def test_many_threads_share_one_client(kt_server):
    kt = KyotoTycoon(kt_server.host, kt_server.port, timeout=5)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(100):
                key = f"t{n}-{i}"
                kt.set(key, key * 3)
                assert kt.get(key) == key * 3
                if i % 10 == 0:
                    kt.increment("counter")
                    assert kt.get_bulk([key]) == {key: key * 3}
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert kt.increment("counter", 0) == 80
    assert kt.count() == 801
    idle, idle_http, in_use = kt.pool.stats
    assert in_use == 0 and 1 <= idle <= 8 and 1 <= idle_http <= 8
    kt.close_all()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_safety(kt_server):
    kt = KyotoTycoon(kt_server.host, kt_server.port, timeout=5)
    kt.set("parent", "1")
    assert kt.count() == 1
    parent_conns = list(kt.pool._idle) + list(kt.pool._idle_http)
    assert len(parent_conns) == 2
    pid = os.fork()
    if pid == 0:  # child: must open its own connections and leave the parent's alone
        code = 0
        try:
            if kt.get("parent") != "1" or kt.set("child", "2") != 1 or kt.count() != 2:
                code = 1
            mine = list(kt.pool._idle) + list(kt.pool._idle_http)
            if any(c in parent_conns for c in mine):
                code = 2
            kt.close_all()
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # the parent's pooled connections still work and are reused
    assert kt.get("child") == "2"
    assert kt.count() == 2
    assert set(kt.pool._idle) | set(kt.pool._idle_http) == set(parent_conns)
    kt.close_all()


def test_play_script_error_keeps_the_socket(kt_server):
    from ktstore import ScriptError

    kt = KyotoTycoon(kt_server.host, kt_server.port, timeout=5)
    kt.set("k", "v")
    (conn,) = kt.pool._idle
    with pytest.raises(ScriptError):
        kt._play_script("no_such_procedure_anywhere", [(b"a", b"b")])
    assert kt.pool._idle == [conn]  # ktserver keeps the connection after a script 0xBF
    assert kt.get("k") == "v"
    assert kt.pool._idle == [conn]
    kt.close_all()


def test_idle_connections_older_than_max_age_are_replaced(kt_server):
    kt = KyotoTycoon(kt_server.host, kt_server.port, timeout=5, max_age=0.05)
    kt.set("k", "v")
    (first,) = kt.pool._idle
    assert kt.get("k") == "v"
    assert kt.pool._idle == [first]  # young enough: reused
    time.sleep(0.08)
    assert kt.get("k") == "v"
    (second,) = kt.pool._idle
    assert second is not first and first.closed
    kt.close_all()


def test_write_is_retried_when_nothing_was_sent(kt_server):
    kt = KyotoTycoon(kt_server.host, kt_server.port, timeout=5)
    kt.set("k", "v1")
    (conn,) = kt.pool._idle
    # Break the socket under the pool's feet and make it look freshly used, so the
    # staleness poll is skipped and the failure happens at send time, before any byte
    # left: then even a write may be retried, on a new connection.
    conn.sock.close()
    conn.last_used = time.monotonic()
    assert kt.set("k", "v2") == 1
    assert kt.get("k") == "v2"
    assert conn not in kt.pool._idle
    kt.close_all()


def test_interrupt_mid_read_drops_the_connection(kt_server):
    kt = KyotoTycoon(kt_server.host, kt_server.port, timeout=5)
    kt.set("k", "v")
    (conn,) = kt.pool._idle

    def interrupted(*args):
        raise KeyboardInterrupt

    conn._recv = interrupted  # the request is sent, then ^C arrives while reading
    with pytest.raises(KeyboardInterrupt):
        kt.get("k")
    assert conn.closed and kt.pool.stats == (0, 0, 0)
    assert kt.get("k") == "v"  # a fresh connection, no stale reply in the way
    kt.close_all()

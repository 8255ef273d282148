"""The built-in server over real sockets: both protocols, concurrency, limits, bad input.

Everything here talks raw bytes through the protocol core (tests/replay.RawClient),
never through the ktstore client, so a client bug cannot hide a server bug.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from replay import RawClient

from ktstore.protocol import binary
from ktstore.protocol.limits import DATA_MAX_SIZE, INT64MAX, XTMAX
from ktstore.server import Server


@pytest.fixture
def server():
    srv = Server(["*", "%"], host="127.0.0.1", port=0, args=["-lz"])
    srv.start()
    yield srv
    srv.stop()


def client(srv: Server, timeout: float = 5.0) -> RawClient:
    return RawClient("127.0.0.1", srv.port, timeout=timeout)


def test_binary_bulk_roundtrip_two_dbs(server: Server) -> None:
    c = client(server)
    recs = [(0, b"a", b"1", INT64MAX), (1, b"a", b"tree", INT64MAX), (7, b"x", b"skip", INT64MAX)]
    assert c.binary(binary.encode_set_bulk(recs)) == 2
    got = c.binary(binary.encode_get_bulk([(0, b"a"), (1, b"a"), (0, b"zz"), (9, b"a")]))
    assert got == [(0, b"a", b"1", XTMAX), (1, b"a", b"tree", XTMAX)]
    assert c.binary(binary.encode_remove_bulk([(0, b"a"), (0, b"a"), (1, b"nope")])) == 1
    # no-reply: nothing comes back, the next command works on the same connection
    c.sock.sendall(binary.encode_set_bulk([(0, b"q", b"quiet", INT64MAX)], no_reply=True))
    assert c.binary(binary.encode_get_bulk([(0, b"q")])) == [(0, b"q", b"quiet", XTMAX)]
    # and HTTP on the same connection, decided per request by the first byte
    assert c.rpc("get", {"key": "q"}) == (200, {b"value": b"quiet"})
    assert c.binary(binary.encode_get_bulk([(1, b"a")]))[0][2] == b"tree"
    c.close()


def test_binary_xt_rules(server: Server) -> None:
    c = client(server)
    now = int(time.time())
    c.binary(binary.encode_set_bulk([(0, b"rel", b"v", 100), (0, b"abs", b"v", -(now + 500))]))
    got = {k: xt for _, k, _, xt in c.binary(binary.encode_get_bulk([(0, b"rel"), (0, b"abs")]))}
    assert abs(got[b"rel"] - (now + 100)) <= 2 and got[b"abs"] == now + 500
    c.binary(binary.encode_set_bulk([(0, b"past", b"v", -(now - 10))]))
    assert c.binary(binary.encode_get_bulk([(0, b"past")])) == []
    c.close()


def test_play_script_without_scr(server: Server) -> None:
    c = client(server)
    status, out = c.rpc("play_script", {"name": "echo"})
    assert status == 501 and out == {b"ERROR": b"the scripting extention is disabled"}
    c.sock.sendall(binary.encode_play_script(b"echo", [(b"a", b"b")]))
    c.fill(1)
    assert c.buf[:1] == b"\xbf"
    c.buf = c.buf[1:]
    assert c.rpc("void") == (200, {})  # connection kept
    c.close()


def test_rpc_basics_and_counters(server: Server) -> None:
    c = client(server)
    assert c.rpc("set", {"key": "k", "value": "v", "xt": "100"}) == (200, {})
    status, out = c.rpc("get", {"key": "k"})
    assert status == 200 and out[b"value"] == b"v" and abs(int(out[b"xt"]) - time.time() - 100) < 3
    assert c.rpc("get", {"key": "nope"}) == (450, {b"ERROR": b"DB: 7: no record: no record"})
    assert c.rpc("increment", {"key": "n", "num": "3"}) == (200, {b"num": b"3"})
    assert c.rpc("increment_double", {"key": "d", "num": "2.5"}) == (200, {b"num": b"2.500000"})
    assert c.rpc("get", {"key": "d"})[1][b"value"] == struct.pack(">qq", 2, 500000000000000)
    assert c.rpc("get", {"key": "x", "DB": "nope"}) == (400, {b"ERROR": b"no such database"})
    assert c.rpc("set", {"DB": "%", "key": "t", "value": "tree"}) == (200, {})
    assert c.rpc("get", {"DB": "1", "key": "t"})[1] == {b"value": b"tree"}
    status, out = c.rpc("report")
    assert (
        status == 200 and out[b"db_1"].startswith(b"count=1 ") and out[b"db_1"].endswith(b"path=%")
    )
    status, out = c.rpc("status", {"DB": "1"})
    assert out[b"count"] == b"1" and out[b"path"] == b"%"
    assert c.rpc("count")[0] == 501
    assert c.rpc("cur_jump_back", {"CUR": "1"})[0] == 501  # hash DB 0
    assert c.rpc("cur_delete", {"CUR": "42"}) == (501, {b"ERROR": b"not implemented: cur_delete"})
    assert c.rpc("ulog_list")[0] == 400
    c.close()


def test_cursors_are_per_connection(server: Server) -> None:
    a, b = client(server), client(server)
    a.rpc("set_bulk", {"DB": "1", "_k1": "1", "_k2": "2"})
    assert a.rpc("cur_jump", {"DB": "1", "CUR": "1"})[0] == 200
    assert a.rpc("cur_step", {"CUR": "1"})[0] == 200
    assert b.rpc("cur_get_key", {"DB": "1", "CUR": "1"})[0] == 450  # b's cursor 1 is fresh
    assert a.rpc("cur_get_key", {"CUR": "1"}) == (200, {b"key": b"k2"})
    a.close()
    b.close()


def test_wait_and_signal(server: Server) -> None:
    result = {}

    def waiter() -> None:
        c = client(server)
        result["w"] = c.rpc("get", {"key": "s", "WAIT": "cond", "WAITTIME": "5"})
        c.close()

    t = threading.Thread(target=waiter)
    t.start()
    c = client(server)
    deadline = time.monotonic() + 5
    while True:  # signal until the waiter is registered
        status, out = c.rpc("set", {"key": "s", "value": "1", "SIGNAL": "cond"})
        if out[b"SIGNALED"] == b"1" or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    t.join(5)
    assert out[b"SIGNALED"] == b"1"
    assert result["w"] == (200, {b"value": b"1"})
    status, out = c.rpc("get", {"key": "s", "WAIT": "other", "WAITTIME": "0.05"})
    assert (status, out) == (503, {b"ERROR": b"the condition timed out"})
    c.close()


def test_concurrent_clients(server: Server) -> None:
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            c = client(server)
            for j in range(60):
                key = b"t%d-%d" % (i, j)
                c.binary(binary.encode_set_bulk([(i % 2, key, key * 2, INT64MAX)]))
                assert c.binary(binary.encode_get_bulk([(i % 2, key)]))[0][2] == key * 2
                assert c.rpc("increment", {"key": "shared", "num": "1"})[0] == 200
            c.close()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    c = client(server)
    assert c.rpc("increment", {"key": "shared", "num": "0"})[1] == {b"num": b"720"}
    c.close()


def test_slow_client_does_not_stall_others(server: Server) -> None:
    slow_http = socket.create_connection(("127.0.0.1", server.port))
    slow_http.sendall(b"POST /rpc/set HTTP/1.1\r\nContent-Len")
    slow_bin = socket.create_connection(("127.0.0.1", server.port))
    slow_bin.sendall(binary.encode_set_bulk([(0, b"k", b"v" * 1000, INT64MAX)])[:500])
    c = client(server, timeout=2)
    t0 = time.monotonic()
    for _ in range(20):
        assert c.rpc("void")[0] == 200
    assert time.monotonic() - t0 < 2
    # the slow ones can still finish their requests
    slow_bin.sendall(binary.encode_set_bulk([(0, b"k", b"v" * 1000, INT64MAX)])[500:])
    assert slow_bin.recv(5) == b"\xb8\x00\x00\x00\x01"
    slow_http.sendall(b"gth: 0\r\n\r\n")
    assert slow_http.recv(12).startswith(b"HTTP/1.1 400")
    for s in (slow_http, slow_bin):
        s.close()
    c.close()


def _closed(sock: socket.socket, timeout: float = 3.0) -> bytes:
    """Everything the server sends until it closes (fails on timeout)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize(
    ("frame", "answer"),
    [
        (struct.pack(">BIIHIIq", 0xB8, 0, 1, 0, DATA_MAX_SIZE + 1, 1, 0), b"\xbf"),
        (struct.pack(">BIIHIIq", 0xB8, 1, 1, 0, 1, 0xFFFFFFFF, 0), b""),  # no-reply: just close
        (struct.pack(">BIIHI", 0xBA, 0, 1, 0, 0xFFFFFFF0), b"\xbf"),
        (struct.pack(">BIIHI", 0xB9, 0, 1, 0, DATA_MAX_SIZE + 1), b"\xbf"),
        (struct.pack(">BIII", 0xB4, 0, DATA_MAX_SIZE + 1, 0), b""),
        (b"\xbe\x00\x00\x00\x00", b""),  # unknown magic
        (b"\xb1" + bytes(14), b"\xbf"),  # replication without an update log
    ],
)
def test_oversized_and_unknown_binary(server: Server, frame: bytes, answer: bytes) -> None:
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(frame)
    assert _closed(s) == answer
    s.close()
    c = client(server)
    assert c.rpc("void")[0] == 200  # the server is fine
    c.close()


def test_oversized_http_body_refused(server: Server) -> None:
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"POST /rpc/set HTTP/1.1\r\nContent-Length: 300000000\r\n\r\nkey\tx\n")
    reply = _closed(s)
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert reply.endswith(b"(request entity too large)\n")
    s.close()
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"PUT /k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n20000000\r\nabc")
    assert _closed(s).startswith(b"HTTP/1.1 413 ")
    s.close()


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/2.0\r\n\r\n",
        b"NONSENSE\r\n\r\n",
        b"\r\n\r\n",
        b"GET /rpc/void HTTP/1.1\r\n" + b"X-Long: " + b"a" * 20000 + b"\r\n\r\n",
        b"POST /rpc/void HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /rpc/void HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        bytes(range(256)),
        b"\x00" * 64,
    ],
)
def test_malformed_input_never_crashes(server: Server, garbage: bytes) -> None:
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(garbage)
    s.shutdown(socket.SHUT_WR)
    try:
        _closed(s)
    except TimeoutError:  # pragma: no cover - a hang is a failure
        pytest.fail("server neither answered nor closed")
    except ConnectionResetError:
        pass
    s.close()
    c = client(server)
    assert c.rpc("void")[0] == 200
    c.close()


def test_truncated_frames_then_disconnect(server: Server) -> None:
    frame = binary.encode_set_bulk([(0, b"key", b"value", INT64MAX)])
    for cut in (1, 5, 9, 20, len(frame) - 1):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(frame[:cut])
        s.close()
    c = client(server)
    assert c.binary(binary.encode_get_bulk([(0, b"key")])) == []
    c.close()


def test_unknown_method_and_rest(server: Server) -> None:
    c = client(server)
    head, body = c.request("PUT", "/1/tree%20key", body=b"val")
    assert head.status == 201 and c.header(head, "location").endswith("/1/tree%20key")
    head, body = c.request("GET", "/%25/tree%20key")
    assert (head.status, body) == (200, b"val")
    head, _ = c.request("PUT", "/e", headers=[("X-Kt-Xt", str(int(time.time()) + 100))], body=b"x")
    head, body = c.request("GET", "/e")
    assert head.status == 200 and c.header(head, "x-kt-xt")
    head, body = c.request("PATCH", "/e", body=b"zz")
    assert head.status == 501
    c.close()


def test_http_keepalive_and_close(server: Server) -> None:
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"GET /rpc/void HTTP/1.0\r\n\r\n")
    reply = _closed(s)
    assert reply.startswith(b"HTTP/1.1 200") or reply.startswith(b"HTTP/1.0 200")
    assert b"connection: close" in reply.lower()
    s.close()
    c = client(server)
    for _ in range(3):
        assert c.rpc("void")[0] == 200
    c.close()


def test_stop_closes_live_connections() -> None:
    srv = Server(["*"], host="127.0.0.1", port=0, args=["-lz"])
    srv.start()
    idle = socket.create_connection(("127.0.0.1", srv.port))
    half = socket.create_connection(("127.0.0.1", srv.port))
    half.sendall(b"POST /rpc/void HTTP/1.1\r\n")
    waiting = client(srv)
    outcome: list[object] = []

    def wait_on_condition() -> None:
        try:
            outcome.append(waiting.rpc("get", {"key": "x", "WAIT": "c", "WAITTIME": "30"}))
        except OSError as exc:  # the server closed the connection: what we expect
            outcome.append(exc)

    t = threading.Thread(target=wait_on_condition)
    t.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 5
    for s in (idle, half):
        s.settimeout(2)
        assert s.recv(10) == b""
        s.close()
    t.join(5)
    assert not t.is_alive()
    # the waiter is released: either answered "timed out" or its connection closed
    assert len(outcome) == 1
    assert isinstance(outcome[0], OSError) or outcome[0][0] == 503  # type: ignore[index]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()


def test_tout_drops_idle_and_stalled_connections() -> None:
    srv = Server(["*"], host="127.0.0.1", port=0, args=["-lz", "-tout", "0.3"])
    srv.start()
    try:
        idle = socket.create_connection(("127.0.0.1", srv.port))
        stalled = socket.create_connection(("127.0.0.1", srv.port))
        stalled.sendall(b"POST /rpc/void HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        t0 = time.monotonic()
        for s in (idle, stalled):
            assert _closed(s, timeout=3) == b""
            s.close()
        assert time.monotonic() - t0 < 2.5
        c = client(srv)  # an active client is not affected
        assert c.rpc("void")[0] == 200
        c.close()
    finally:
        srv.stop()


def test_big_bulk_of_small_records_is_not_quadratic(server: Server) -> None:
    # The parser only knows a lower bound for such a frame (64 KiB look-ahead); the
    # reader must grow its buffer geometrically or this takes minutes, not a blink.
    frame = binary.encode_set_bulk([(0, b"k%d" % i, b"v" * 100, INT64MAX) for i in range(60000)])
    c = client(server, timeout=30)
    t0 = time.monotonic()
    assert c.binary(frame) == 60000
    assert time.monotonic() - t0 < 5
    keys = [(0, b"k%d" % i) for i in range(0, 60000, 7)]
    assert len(c.binary(binary.encode_get_bulk(keys))) == len(keys)
    c.close()


_PREFIXES = [
    b"",
    b"\xb8",
    b"\xba\x00\x00\x00\x00",
    b"\xb4\x00\x00\x00\x00",
    b"\xb9",
    b"GET /rpc/",
    b"POST /rpc/set HTTP/1.1\r\nContent-Length: ",
    b"PUT /key HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST /rpc/echo HTTP/1.1\r\nContent-Type: text/tab-separated-values; colenc=",
]


def test_fuzzed_requests_never_break_the_server(server: Server) -> None:
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=60, deadline=None, database=None)
    @hypothesis.given(st.sampled_from(_PREFIXES), st.binary(max_size=300))
    def fuzz(prefix: bytes, tail: bytes) -> None:
        s = socket.create_connection(("127.0.0.1", server.port))
        try:
            s.sendall(prefix + tail)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass
        finally:
            s.close()

    fuzz()
    c = client(server)
    assert c.rpc("void")[0] == 200
    assert c.rpc("report")[1][b"serv_conn_count"] == b"1"  # every fuzz connection ended
    c.close()

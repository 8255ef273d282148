"""No request can freeze ktstore-server, starve it or exhaust its memory.

One test (or more) per hazard: a catastrophic regex, a connection thread that
cannot start, WAITTIME nonsense, chunked and binary bodies that would grow
memory, clients that dribble, and the command line that must refuse nonsense.
Memory is measured on a server in its own process (its peak RSS, ``VmHWM``),
everything else on the built-in server in this process.
"""

from __future__ import annotations

import select
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, wait_for_port
from replay import RawClient

from ktstore.protocol import binary, tsv
from ktstore.protocol.limits import INT64MAX
from ktstore.server import Server
from ktstore.server.config import USAGE, UsageError, parse_args


def _server(*args: str, dbs: tuple[str, ...] = ("*", "%")) -> Server:
    srv = Server(list(dbs), host="127.0.0.1", port=0, args=["-lz", *args])
    srv.start()
    return srv


@pytest.fixture
def server() -> Iterator[Server]:
    srv = _server()
    yield srv
    srv.stop()


def client(srv: Server, timeout: float = 10.0) -> RawClient:
    return RawClient("127.0.0.1", srv.port, timeout=timeout)


def _closed_without_answer(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """What the server sends before closing (fails if it does not close in time)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data


def _conn_count(srv: Server) -> int:
    c = client(srv)
    try:
        return int(c.rpc("report")[1][b"serv_conn_count"]) - 1
    finally:
        c.close()


def _wait_until(cond: object, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


# --------------------------------------------------------------- 1: regular expressions


def test_catastrophic_regex_answers_at_once(server: Server) -> None:
    c = client(server)
    assert c.rpc("set", {"key": "a" * 40 + "!", "value": "v"})[0] == 200
    assert c.rpc("set", {"key": "aaa", "value": "v"})[0] == 200
    t0 = time.monotonic()
    status, out = c.rpc("match_regex", {"regex": "(a+)+$"})
    # a backtracking engine needs ~2**40 steps here; a linear one microseconds
    assert time.monotonic() - t0 < 2.0
    assert status == 200 and out == {b"_aaa": b"0", b"num": b"1"}
    status, out = c.rpc("match_regex", {"regex": "(a|aa)+!$"})
    assert status == 200 and out[b"num"] == b"1"
    c.close()


def test_unrelated_requests_answer_while_regex_runs(server: Server) -> None:
    """Long matches (many long keys) in a loop on one connection; another
    connection's requests are answered in milliseconds meanwhile."""
    loader = client(server)
    for batch in range(4):
        recs = [(0, b"a" * 3000 + b"!%d" % (batch * 500 + i), b"v", INT64MAX) for i in range(500)]
        assert loader.binary(binary.encode_set_bulk(recs)) == 500
    loader.close()
    stop = threading.Event()
    rounds: list[float] = []

    def hammer() -> None:
        c = client(server, timeout=30)
        while not stop.is_set():
            t0 = time.monotonic()
            status, out = c.rpc("match_regex", {"regex": "^(a+)+$"})
            rounds.append(time.monotonic() - t0)
            assert status == 200 and out == {b"num": b"0"}
        c.close()

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        assert _wait_until(lambda: len(rounds) >= 1, 20)
        c = client(server)
        lat = []
        for i in range(30):
            t0 = time.monotonic()
            assert c.rpc("set", {"key": f"k{i}", "value": "v"})[0] == 200
            assert c.rpc("get", {"key": f"k{i}"})[0] == 200
            lat.append((time.monotonic() - t0) / 2)
        c.close()
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert statistics.median(lat) < 0.05, lat
    assert max(lat) < 1.0, lat  # nothing froze


def test_lua_kt_regex_is_linear(tmp_path: Path) -> None:
    pytest.importorskip("lupa")
    script = tmp_path / "rx.lua"
    script.write_text(
        "kt = __kyototycoon__\nfunction rx(inmap, outmap)\n"
        "  outmap.m = tostring(kt.regex(string.rep('a', 5000) .. '!', inmap.p))\n"
        "  outmap.r = kt.regex('hello world', '(o)', '[$1]')\n"
        "  return kt.RVSUCCESS\nend\n"
    )
    srv = _server("-scr", str(script))
    try:
        c = client(srv)
        t0 = time.monotonic()
        status, out = c.rpc("play_script", {"name": "rx", "_p": "(a+)+$"})
        assert time.monotonic() - t0 < 2.0
        assert status == 200 and out == {b"_m": b"false", b"_r": b"hell[o] w[o]rld"}
        c.close()
    finally:
        srv.stop()


# --------------------------------------------------------------- 2: the accept loop


class _FailingThread(threading.Thread):
    """A thread that cannot start, as under a pid limit or a memory cap."""

    def start(self) -> None:
        raise RuntimeError("can't start new thread")


def test_thread_start_failure_refuses_that_connection_only(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    srv = Server(["*"], host="127.0.0.1", port=0, args=["-log", str(log)])
    srv.start()
    failures = [0]

    def factory(*args: object, **kwargs: object) -> threading.Thread:
        if failures[0] < 3:
            failures[0] += 1
            return _FailingThread(*args, **kwargs)  # type: ignore[arg-type]
        return threading.Thread(*args, **kwargs)  # type: ignore[arg-type]

    srv._thread_factory = factory
    try:
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", srv.port))
            s.sendall(b"GET /rpc/void HTTP/1.1\r\n\r\n")
            assert _closed_without_answer(s) == b""  # refused: closed, not hung
            s.close()
        c = client(srv)
        assert c.rpc("void")[0] == 200  # and the listener lives on
        c.close()
    finally:
        srv.stop()  # does not raise
    text = log.read_text()
    assert text.count("cannot serve a connection") == 3
    assert "can't start new thread" in text


def test_connection_cap_makes_new_clients_wait() -> None:
    srv = _server("-maxconn", "2")
    try:
        a, b = client(srv), client(srv)
        assert a.rpc("void")[0] == 200 and b.rpc("void")[0] == 200
        late = socket.create_connection(("127.0.0.1", srv.port))  # the kernel accepts it
        late.sendall(b"GET /rpc/void HTTP/1.1\r\n\r\n")
        late.settimeout(0.5)
        with pytest.raises(TimeoutError):
            late.recv(100)  # not served while two connections are open
        a.close()
        late.settimeout(5)
        assert late.recv(100).startswith(b"HTTP/1.1 200")  # served once a slot frees
        late.close()
        b.close()
    finally:
        srv.stop()


# --------------------------------------------------------------- 3: WAIT / WAITTIME


@pytest.mark.parametrize("waittime", ["nan", "-nan", "NaN"])
def test_waittime_nan_times_out_at_once(server: Server, waittime: str) -> None:
    """As ktserver: no clock comparison with NaN succeeds, so it times out at once
    (it used to spin a core forever)."""
    c = client(server)
    t0 = time.monotonic()
    status, out = c.rpc("void", {"WAIT": "x", "WAITTIME": waittime})
    assert time.monotonic() - t0 < 1.0
    assert status == 503 and out == {b"ERROR": b"the condition timed out"}
    assert c.rpc("void")[0] == 200
    c.close()


@pytest.mark.parametrize("waittime", ["inf", "1e300"])
def test_endless_wait_is_signalled(server: Server, waittime: str) -> None:
    c = client(server)
    answers: list[tuple[int, dict[bytes, bytes]]] = []
    t = threading.Thread(
        target=lambda: answers.append(c.rpc("void", {"WAIT": "w", "WAITTIME": waittime}))
    )
    t.start()
    other = client(server)
    assert _wait_until(lambda: other.rpc("void", {"SIGNAL": "w"})[1] == {b"SIGNALED": b"1"})
    t.join(5)
    assert answers == [(200, {})]
    other.close()
    c.close()


def test_wait_ends_when_the_client_leaves(server: Server) -> None:
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"GET /rpc/void?WAIT=never&WAITTIME=inf HTTP/1.1\r\n\r\n")
    assert _wait_until(lambda: _conn_count(server) == 1)
    s.close()
    assert _wait_until(lambda: _conn_count(server) == 0, 5)  # its thread ended
    # and a signal now finds no waiter
    c = client(server)
    assert c.rpc("void", {"SIGNAL": "never"}) == (200, {b"SIGNALED": b"0"})
    c.close()


# --------------------------------------------------------------- memory (own process)


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def proc_server() -> Iterator[tuple[subprocess.Popen, int]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ktstore.server", "-lz", "-port", str(port), "-tout", "2", "*"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, 20.0, proc)
        c = RawClient("127.0.0.1", port)
        assert c.rpc("void")[0] == 200  # warm up the request path before measuring
        c.close()
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(10)


def test_chunked_body_memory_is_bounded(proc_server: tuple[subprocess.Popen, int]) -> None:
    """A body of 1-byte chunks costs about its size, not one object per chunk."""
    proc, port = proc_server
    n = 1_500_000
    before = _peak_rss(proc.pid)
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"PUT /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"1\r\nx\r\n" * 10_000
    for _ in range(n // 10_000):
        s.sendall(piece)
    s.sendall(b"0\r\n\r\n")
    s.settimeout(60)
    assert s.recv(100).startswith(b"HTTP/1.1 201")
    s.close()
    grown = _peak_rss(proc.pid) - before
    wire = n * 6
    # body (1.5 MB) + its stored copy + buffers; one object per chunk would be ~50 MB
    assert grown < wire // 2, (grown, wire)
    c = RawClient("127.0.0.1", port)
    head, body = c.request("GET", "/big")
    assert head.status == 200 and body == b"x" * n
    c.close()


def test_binary_frame_over_the_cap_is_refused_before_buffering(
    proc_server: tuple[subprocess.Popen, int],
) -> None:
    proc, port = proc_server
    before = _peak_rss(proc.pid)
    s = socket.create_connection(("127.0.0.1", port))
    # 4 billion records announced: at least 18 bytes each, far over the cap
    s.sendall(struct.pack(">BII", 0xB8, 0, 0xFFFFFFFF))
    assert _closed_without_answer(s) == b"\xbf"
    s.close()
    assert _peak_rss(proc.pid) - before < 8 << 20


def test_stalled_binary_frame_costs_what_was_sent(
    proc_server: tuple[subprocess.Popen, int],
) -> None:
    proc, port = proc_server
    before = _peak_rss(proc.pid)
    s = socket.create_connection(("127.0.0.1", port))
    vsiz = 200 << 20
    s.sendall(struct.pack(">BIIHIIq", 0xB8, 0, 1, 0, 1, vsiz, INT64MAX) + b"k")
    sent = 0
    block = b"v" * (1 << 20)
    while sent < 32 << 20:
        s.sendall(block)
        sent += len(block)
    time.sleep(0.5)  # stall (-tout is 2 s)
    grown = _peak_rss(proc.pid) - before
    assert grown < 3 * sent, (grown, sent)
    assert _closed_without_answer(s, timeout=10) == b""  # dropped after -tout
    s.close()
    c = RawClient("127.0.0.1", port)
    assert c.rpc("status")[1][b"count"] == b"0"  # nothing half-stored
    c.close()


# --------------------------------------------------------------- 8: -tout and progress


@pytest.mark.parametrize("tout", ["inf", "nan", "-inf", "1e-7", "-1", "abc", "1e9"])
def test_tout_nonsense_is_a_usage_error(tout: str) -> None:
    with pytest.raises(UsageError):
        parse_args(["-tout", tout])


def test_tout_nonsense_on_the_command_line() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ktstore.server", "-tout", "inf"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1 and "-tout" in r.stderr and "usage" in r.stderr


@pytest.mark.parametrize(
    "args",
    [["-th", "0"], ["-th", "x"], ["-maxconn", "0"], ["-sid", "70000"], ["-ulim", "0"]],
)
def test_other_option_nonsense(args: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_args(args)


def test_tout_zero_keeps_the_default() -> None:
    assert parse_args(["-tout", "0"]).timeout == 30.0
    assert parse_args(["-tout", "0.25"]).timeout == 0.25


def _dribble(port: int, data: bytes, every: float, prefix: bytes = b"") -> float:
    """Send ``prefix`` at once, then ``data`` one byte per ``every`` seconds until
    the server closes; returns how long that took (fails if it never closes)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(prefix)
    t0 = time.monotonic()
    try:
        for byte in data:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                return time.monotonic() - t0
            r, _, _ = select.select([s], [], [], every)
            if r:
                try:
                    if s.recv(65536) == b"":
                        return time.monotonic() - t0
                except OSError:
                    return time.monotonic() - t0
        raise AssertionError("the server kept the dribbling connection")
    finally:
        s.close()


def test_dribbled_head_is_dropped() -> None:
    srv = _server("-tout", "0.6")
    try:
        head = b"GET /rpc/void?" + b"a" * 60 + b" HTTP/1.1\r\n\r\n"
        # each byte arrives within -tout, but the head takes far longer than -tout
        took = _dribble(srv.port, head, 0.2)
        assert took < 3.0
    finally:
        srv.stop()


def test_dribbled_body_is_dropped() -> None:
    srv = _server("-tout", "0.6")
    try:
        head = b"POST /rpc/void HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"
        took = _dribble(srv.port, b"x" * 100, 0.2, prefix=head)
        assert took < 3.0  # 100 bytes would take 20 s
        c = client(srv)
        assert c.rpc("void")[0] == 200
        c.close()
    finally:
        srv.stop()


def test_dribbled_binary_frame_is_dropped() -> None:
    srv = _server("-tout", "0.6")
    try:
        frame = binary.encode_set_bulk([(0, b"k", b"v" * 1000, INT64MAX)])
        took = _dribble(srv.port, frame, 0.2)
        assert took < 3.0
        c = client(srv)
        assert c.rpc("status")[1][b"count"] == b"0"
        c.close()
    finally:
        srv.stop()


def test_a_slow_but_steady_body_is_served() -> None:
    """The rule drops dribblers, not clients whose body takes longer than -tout."""
    srv = _server("-tout", "0.5")
    try:
        body = tsv.encode_tsv([(b"key", b"k"), (b"value", b"v" * 40_000)], None)
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(
            b"POST /rpc/set HTTP/1.1\r\nContent-Type: text/tab-separated-values\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        for i in range(0, len(body), 8000):  # 40 kB over ~1 s: above the minimum rate
            s.sendall(body[i : i + 8000])
            time.sleep(0.2)
        s.settimeout(5)
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        s.close()
    finally:
        srv.stop()


# --------------------------------------------------------------- 9: small answers


@pytest.mark.parametrize("size", [b"zz", b"-5", b"0"])
def test_bad_chunk_size_is_400(server: Server, size: bytes) -> None:
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(
        b"PUT /k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\nhello\r\n0\r\n\r\n"
    )
    answer = _closed_without_answer(s)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert answer.endswith(b"\r\n\r\n400 Bad Request (invalid chunk)\n")
    s.close()


def test_chunk_trailers_are_refused_as_by_ktserver(server: Server) -> None:
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"PUT /k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-T: 1\r\n\r\n")
    assert b"(invalid chunk)" in _closed_without_answer(s)
    s.close()


@pytest.mark.parametrize(
    "line", [b"POST /rpc/se\x00t HTTP/1.1", b"GET /rpc/void\x00 HTTP/1.1", b"GET /a\x00b HTTP/1.1"]
)
def test_nul_in_the_request_line_closes(server: Server, line: bytes) -> None:
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(line + b"\r\nContent-Length: 0\r\n\r\n")
    assert _closed_without_answer(s) == b""
    s.close()


def test_encoded_nul_in_an_rpc_name_is_not_implemented(server: Server) -> None:
    c = client(server)
    head, _ = c.request("GET", "/rpc/vo%00id")
    assert head.status == 501
    c.close()


def test_help_prints_the_usage() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ktstore.server", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0 and r.stdout == USAGE and "-ktlua" in r.stdout


def test_ktlua_loads_the_bundled_script() -> None:
    pytest.importorskip("lupa")
    from ktstore.resources import kt_lua_path

    cfg = parse_args(["-ktlua"])
    assert cfg.script is not None and Path(cfg.script) == kt_lua_path()
    srv = _server("-ktlua", dbs=("*",))
    try:
        c = client(srv)
        status, out = c.rpc("play_script", {"name": "modelscan"})
        assert status != 501  # the procedure exists (bad input is another matter)
        c.close()
    finally:
        srv.stop()
    with pytest.raises(UsageError):
        parse_args(["-ktlua", "-bogus"])

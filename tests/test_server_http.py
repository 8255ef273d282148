"""HTTP details of the built-in server beyond the recorded conformance scenarios."""

from __future__ import annotations

import socket
import time

import pytest
from replay import RawClient

from ktstore.protocol import binary, http, tsv
from ktstore.protocol.limits import INT64MAX
from ktstore.server import Server


@pytest.fixture
def server():
    srv = Server(["*", "%"], port=0, args=["-lz"])
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def c(server: Server):
    cl = RawClient("127.0.0.1", server.port)
    yield cl
    cl.close()


def test_chunked_request_body(c: RawClient) -> None:
    body = tsv.encode_tsv([(b"key", b"ck"), (b"value", b"chunked value")], None)
    raw = (
        b"POST /rpc/set HTTP/1.1\r\nHost: x\r\nContent-Type: text/tab-separated-values\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + http.encode_chunked([body[:5], body[5:]])
    )
    c.sock.sendall(raw)
    head, _ = c.parse(http.parse_response_head), None
    assert head.status == 200
    c.fill(int(head.headers["content-length"]))
    c.buf = c.buf[int(head.headers["content-length"]) :]
    assert c.rpc("get", {"key": "ck"}) == (200, {b"value": b"chunked value"})


def test_query_form_and_colenc_inputs(c: RawClient) -> None:
    head, body = c.request("GET", "/rpc/set?key=q%20k&value=a+b")
    assert head.status == 200
    assert c.rpc("get", {"key": "q k"}, colenc="U") == (200, {b"value": b"a b"})
    assert c.rpc("get", {"key": "q k"}, colenc="Q") == (200, {b"value": b"a b"})
    form = b"key=f&value=%00%01"
    head, _ = c.request(
        "POST", "/rpc/set", [("Content-Type", "application/x-www-form-urlencoded")], form
    )
    assert head.status == 200
    status, out = c.rpc("get", {"key": "f"})
    assert out == {b"value": b"\x00\x01"}


def test_binary_values_and_server_colenc(c: RawClient) -> None:
    value = bytes(range(256)) * 4
    assert c.rpc("set", {"key": "bin", "value": value})[0] == 200
    head, body = c.request(
        "POST",
        "/rpc/get",
        [("Content-Type", "text/tab-separated-values")],
        b"key\tbin\n",
    )
    ctype = head.headers["content-type"]
    assert "colenc=" in ctype
    assert dict(tsv.decode_tsv(body, tsv.parse_content_type(ctype)[1])) == {b"value": value}


def test_large_values_both_protocols(c: RawClient) -> None:
    big = b"x" * (3 << 20)
    assert c.binary(binary.encode_set_bulk([(0, b"big", big, INT64MAX)])) == 1
    assert c.binary(binary.encode_get_bulk([(0, b"big")]))[0][2] == big
    status, out = c.rpc("get", {"key": "big"})
    assert status == 200 and out[b"value"] == big
    head, body = c.request("GET", "/big")
    assert body == big


def test_expired_records_invisible_until_collected(c: RawClient) -> None:
    past = str(-(int(time.time()) - 5))
    for i in range(3):
        assert c.rpc("set", {"key": f"old{i}", "value": "v", "xt": past})[0] == 200
    assert c.rpc("get", {"key": "old0"})[0] == 450
    assert c.rpc("check", {"key": "old1"})[0] == 450
    head, _ = c.request("GET", "/old2")
    assert head.status == 404
    assert c.rpc("vacuum")[0] == 200
    assert c.rpc("status")[1][b"count"] == b"0"
    # a write without xt clears an existing expiration
    c.rpc("set", {"key": "t", "value": "1", "xt": "100"})
    assert b"xt" in c.rpc("get", {"key": "t"})[1]
    c.rpc("append", {"key": "t", "value": "2"})
    assert c.rpc("get", {"key": "t"})[1] == {b"value": b"12"}


def test_tree_order_in_cursors_and_matches(c: RawClient) -> None:
    keys = [b"b", b"\xff", b"a\x00", b"a", b"ab", b"\x00z", b"B"]
    c.binary(binary.encode_set_bulk([(1, k, b"v", INT64MAX) for k in keys]))
    status, out = c.rpc("match_prefix", {"DB": "1", "prefix": ""})
    ordered = sorted(keys)
    assert [
        k[1:] for k, v in sorted(out.items(), key=lambda kv: int(kv[1])) if k != b"num"
    ] == ordered
    assert c.rpc("cur_jump", {"DB": "1", "CUR": "7"})[0] == 200
    seen = []
    while True:
        status, out = c.rpc("cur_get_key", {"CUR": "7", "step": ""})
        if status != 200:
            break
        seen.append(out[b"key"])
    assert seen == ordered
    assert c.rpc("cur_jump_back", {"CUR": "7", "key": b"ab\x01"})[0] == 200
    assert c.rpc("cur_get_key", {"CUR": "7"})[1] == {b"key": b"ab"}
    assert c.rpc("cur_step_back", {"CUR": "7"})[0] == 200
    assert c.rpc("cur_get_key", {"CUR": "7"})[1] == {b"key": b"a\x00"}
    status, out = c.rpc("match_regex", {"DB": "1", "regex": "^a"})
    assert sorted(out.items(), key=lambda kv: kv[1]) == [
        (b"_a", b"0"),
        (b"_a\x00", b"1"),
        (b"_ab", b"2"),
        (b"num", b"3"),
    ]


def test_http10_keep_alive_header(server: Server) -> None:
    s = socket.create_connection(("127.0.0.1", server.port))
    for _ in range(2):
        s.sendall(b"GET /rpc/void HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        data = s.recv(4096)
        assert data.startswith(b"HTTP/1.1 200") and b"close" not in data.lower()
    s.close()


def test_flag_parameters_are_presence_only(c: RawClient) -> None:
    assert c.rpc("set_bulk", {"_a": "1", "atomic": "false"})[1] == {b"num": b"1"}
    c.rpc("set_bulk", {"DB": "1", "_k1": "1", "_k2": "2"})
    c.rpc("cur_jump", {"DB": "1", "CUR": "1"})
    assert c.rpc("cur_get_key", {"CUR": "1", "step": "no"})[1] == {b"key": b"k1"}
    assert c.rpc("cur_get_key", {"CUR": "1"})[1] == {b"key": b"k2"}


def test_signal_broadcast_counts_waiters(server: Server, c: RawClient) -> None:
    import threading

    results = []

    def waiter() -> None:
        w = RawClient("127.0.0.1", server.port)
        results.append(w.rpc("void", {"WAIT": "bc", "WAITTIME": "5"})[0])
        w.close()

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    total = 0
    while total < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
        status, out = c.rpc("void", {"SIGNAL": "bc", "SIGNALBROAD": ""})
        total += int(out[b"SIGNALED"])
    for t in threads:
        t.join(5)
    assert total == 3 and results == [200, 200, 200]


def test_synchronize_command_is_refused_like_a_failed_command(c: RawClient) -> None:
    assert c.rpc("synchronize", {"hard": ""}) == (200, {})
    status, out = c.rpc("synchronize", {"command": "backup"})
    assert status == 500
    assert out == {b"ERROR": b"DB: 8: logical inconsistency: postprocessing failed"}


def test_a_procedure_without_a_script_is_answered_as_ktserver_and_logged_with_a_hint(
    tmp_path,
) -> None:
    """The answer stays ktserver's (501, conformance); the log says how to load one."""
    import urllib.error
    import urllib.request

    from ktstore.server import Server

    log = tmp_path / "server.log"
    server = Server(["*"], host="127.0.0.1", port=0, args=["-log", str(log)])
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/rpc/play_script?name=hset"
        for _ in range(2):
            try:
                urllib.request.urlopen(url, timeout=5)
            except urllib.error.HTTPError as e:
                assert e.code == 501
            else:
                raise AssertionError("a procedure without a script must be refused")
    finally:
        server.stop()
    text = log.read_text()
    assert text.count("no script is loaded") == 1 and "-ktlua" in text

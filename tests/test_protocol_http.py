"""HTTP heads, bodies and responses: ktserver's parsing rules and response layout,
chunked bodies split at every position, limits that tell "too large" from "malformed"."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ktstore.errors import Incomplete, ProtocolError
from ktstore.protocol import http
from ktstore.protocol.limits import HTTP_BODY_MAX, LINE_MAX

NOW = 1_795_758_988  # Fri, 27 Nov 2026 ...


def test_request_head_basics() -> None:
    raw = b"POST /rpc/get?key=a&DB=1 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\r\nbody"
    head, end = http.parse_request_head(raw)
    assert raw[end:] == b"body"
    assert head.method == "POST" and head.known_method
    assert head.target == "/rpc/get?key=a&DB=1"
    assert head.path == "/rpc/get" and head.query == "key=a&DB=1"
    assert head.query_bytes == b"key=a&DB=1" and head.path_bytes == b"/rpc/get"
    assert head.version == "HTTP/1.1"
    assert head.headers == {"host": "x", "content-type": "text/plain"}
    assert head.keep_alive


def test_request_head_ktserver_leniency() -> None:
    # bare LF, CR anywhere dropped, odd header spacing, no-colon lines ignored, last wins
    raw = b"GET /k HTTP/1.0\nX  Kt\t Mode :  add\nnonsense\nA: 1\nA: 2\r\n\n"
    head, end = http.parse_request_head(raw)
    assert end == len(raw)
    assert head.query is None
    assert head.headers == {"x kt mode": "add", "a": "2"}
    assert not head.keep_alive
    head, _ = http.parse_request_head(b"FOO /x HTTP/1.1\r\n\r\n")
    assert not head.known_method and head.method == "FOO"
    head, _ = http.parse_request_head(b"get /x HTTP/1.1\r\n\r\n")
    assert not head.known_method  # case-sensitive, like ktserver


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /x HTTP/2.0\r\n\r\n",
        b"GET /x http/1.1\r\n\r\n",
        b"GET /x\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET ?q=1 HTTP/1.1\r\n\r\n",
        b"\r\nGET /x HTTP/1.1\r\n\r\n",
        b"GET /a b HTTP/1.1\r\n\r\n",
    ],
)
def test_request_head_rejected(raw) -> None:
    with pytest.raises(ProtocolError) as info:
        http.parse_request_head(raw)
    assert not isinstance(info.value, Incomplete)


def test_request_head_incomplete_and_limits() -> None:
    raw = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
    for cut in range(len(raw)):
        with pytest.raises(Incomplete) as info:
            http.parse_request_head(b"zz" + raw[:cut], 2)
        assert cut < info.value.need <= len(raw)
    long_line = b"GET /" + b"a" * LINE_MAX + b" HTTP/1.1\r\n\r\n"
    with pytest.raises(http.LineTooLong):
        http.parse_request_head(long_line)
    with pytest.raises(http.LineTooLong):  # refused before the line is even complete
        http.parse_request_head(b"GET /" + b"a" * (LINE_MAX + 10))
    ok = b"GET /" + b"a" * (LINE_MAX - 20) + b" HTTP/1.1\r\n\r\n"
    assert http.parse_request_head(ok)[1] == len(ok)
    with pytest.raises(http.LineTooLong):
        http.parse_request_head(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 100000)
    with pytest.raises(http.LineTooLong):
        http.parse_request_head(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 100000 + b"\r\n")


def test_keep_alive_rules() -> None:
    assert http.keep_alive("HTTP/1.1", {})
    assert not http.keep_alive("HTTP/1.0", {})
    assert not http.keep_alive("HTTP/1.1", {"connection": "Close"})
    assert http.keep_alive("HTTP/1.0", {"connection": "Keep-Alive"})
    assert http.keep_alive("HTTP/1.1", {"connection": "upgrade"})


def test_request_body_framing() -> None:
    def framing(raw: bytes):
        return http.body_framing(http.parse_request_head(raw)[0])

    assert framing(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n") == ("none", 0)
    assert framing(b"DELETE / HTTP/1.1\r\nContent-Length: 5\r\n\r\n") == ("none", 0)
    assert framing(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n") == ("length", 5)
    assert framing(b"FOO / HTTP/1.1\r\nContent-Length: 5\r\n\r\n") == ("length", 5)
    assert framing(b"PUT / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n") == ("chunked", 0)
    both = b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
    assert framing(both) == ("length", 3)  # ktserver prefers Content-Length
    assert framing(b"POST / HTTP/1.1\r\n\r\n") == ("none", 0)
    assert framing(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n") == ("none", 0)
    assert framing(b"POST / HTTP/1.1\r\nContent-Length: 12abc\r\n\r\n") == ("length", 12)
    too_big = f"POST / HTTP/1.1\r\nContent-Length: {HTTP_BODY_MAX + 1}\r\n\r\n".encode()
    with pytest.raises(http.BodyTooLarge) as info:
        framing(too_big)
    assert info.value.status == 413 and isinstance(info.value, ProtocolError)
    assert framing(f"POST / HTTP/1.1\r\nContent-Length: {HTTP_BODY_MAX}\r\n\r\n".encode()) == (
        "length",
        HTTP_BODY_MAX,
    )


def test_parse_whole_request() -> None:
    raw = b"POST /rpc/echo HTTP/1.1\r\nContent-Length: 4\r\n\r\na\tb\nGET / HTTP/1.1\r\n\r\n"
    head, body, end = http.parse_request(raw)
    assert body == b"a\tb\n" and head.path == "/rpc/echo"
    head2, body2, end2 = http.parse_request(raw, end)
    assert head2.method == "GET" and body2 == b"" and end2 == len(raw)
    first = raw[:end]
    for cut in range(len(first)):
        with pytest.raises(Incomplete) as info:
            http.parse_request(first[:cut])
        assert cut < info.value.need <= len(first)


@given(st.lists(st.binary(min_size=1, max_size=20), max_size=5))
def test_chunked_round_trip_split_everywhere(chunks) -> None:
    encoded = http.encode_chunked(chunks)
    data = b"".join(chunks)
    assert http.parse_chunked(encoded) == (data, len(encoded))
    assert http.parse_chunked(b"x" + encoded + b"next", 1) == (data, 1 + len(encoded))
    for cut in range(len(encoded)):
        with pytest.raises(Incomplete) as info:
            http.parse_chunked(encoded[:cut])
        assert cut < info.value.need <= len(encoded)


def test_chunked_details() -> None:
    body = b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"
    assert http.parse_chunked(body) == (b"hello", len(body))
    assert http.parse_chunked(b"A\r\n0123456789\r\n0\r\n\r\n")[0] == b"0123456789"
    assert http.parse_chunked(b"3\nabc\r\n0\n\n")[0] == b"abc"
    assert http.parse_chunked(b"3\r\nabc\r\n\r\n") == (b"abc", 10)  # empty size line ends it
    with pytest.raises(ProtocolError) as info:
        http.parse_chunked(b"3\r\nabcXY0\r\n\r\n")
    assert not isinstance(info.value, (Incomplete, http.BodyTooLarge))
    with pytest.raises(http.BodyTooLarge):
        http.parse_chunked(b"%x\r\n" % (HTTP_BODY_MAX + 1))
    with pytest.raises(http.BodyTooLarge):
        http.parse_chunked(b"8\r\n12345678\r\n8\r\n", limit=10)
    raw = b"PUT /k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + http.encode_chunked(
        [b"ab", b"c"]
    )
    assert http.parse_request(raw)[1:] == (b"abc", len(raw))


def test_response_head_and_framing() -> None:
    raw = b"HTTP/1.1 450 Logical Inconsistency\r\nContent-Length: 3\r\nX-Kt-Error: e\r\n\r\nabc"
    head, end = http.parse_response_head(raw)
    assert (head.version, head.status, head.reason) == ("HTTP/1.1", 450, "Logical Inconsistency")
    assert head.headers["x-kt-error"] == "e"
    assert http.body_framing(head) == ("length", 3)
    assert http.parse_response(raw) == (head, b"abc", len(raw))
    assert http.body_framing(head, "HEAD") == ("none", 0)
    head204, _ = http.parse_response_head(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert http.body_framing(head204) == ("none", 0)
    close, _ = http.parse_response_head(b"HTTP/1.0 200 OK\r\n\r\n")
    assert http.body_framing(close) == ("close", 0)
    with pytest.raises(ProtocolError):
        http.parse_response_head(b"HTTP/1.1 abc OK\r\n\r\n")
    with pytest.raises(ProtocolError):
        http.parse_response_head(b"SSH-2.0 nope\r\n\r\n")
    bad_len, _ = http.parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
    with pytest.raises(ProtocolError):
        http.body_framing(bad_len)
    for cut in range(len(raw)):
        with pytest.raises(Incomplete) as info:
            http.parse_response(raw[:cut])
        assert cut < info.value.need <= len(raw)


def test_encode_response_layout() -> None:
    raw = http.encode_response(
        200,
        [("x-kt-xt", "Fri, 27 Nov 2026 07:00:00 GMT"), ("Content-Type", "text/plain")],
        b"value",
        now=NOW,
    )
    assert raw == (
        b"HTTP/1.1 200 OK\r\n"
        b"Server: KyotoTycoon/0.9.56\r\n"
        b"Date: " + http.http_date(NOW).encode() + b"\r\n"
        b"Content-Length: 5\r\n"
        b"Content-Type: text/plain\r\n"
        b"X-Kt-Xt: Fri, 27 Nov 2026 07:00:00 GMT\r\n"
        b"\r\n"
        b"value"
    )
    head_only = http.encode_response(200, {}, b"value", head_only=True, keep_alive=False, now=NOW)
    assert b"Content-Length" not in head_only and head_only.endswith(b"Connection: close\r\n\r\n")
    assert http.encode_response(450, None, b"", now=NOW).startswith(
        b"HTTP/1.1 450 Logical Inconsistency\r\n"
    )
    not_modified = http.encode_response(304, None, b"x", now=NOW)
    assert b"Content-Length" not in not_modified and not not_modified.endswith(b"x")
    head, body, end = http.parse_response(
        http.encode_response(201, {"location": "http://h/k"}, b"", now=NOW)
    )
    assert (
        head.status == 201 and head.reason == "Created" and head.headers["location"] == "http://h/k"
    )


def test_encode_error_response() -> None:
    raw = http.encode_error_response(413, "request entity too large", now=NOW)
    head, body, _ = http.parse_response(raw)
    assert head.status == 413 and not head.keep_alive
    assert head.headers["content-type"] == "text/plain"
    assert body == b"413 Request Entity Too Large (request entity too large)\n"


def test_reason_phrases() -> None:
    assert http.reason_phrase(450) == "Logical Inconsistency"
    assert http.reason_phrase(413) == "Request Entity Too Large"
    assert http.reason_phrase(299) == "Unknown Success Status"
    assert http.reason_phrase(460) == "Unknown Client Error Status"
    assert http.reason_phrase(700) == "Unknown Status"


def test_http_date() -> None:
    assert http.http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http.http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"


def test_encode_request() -> None:
    raw = http.encode_request(
        "POST", "/rpc/get", [("Content-Type", "text/tab-separated-values")], b"k\tv\n"
    )
    head, body, end = http.parse_request(raw)
    assert (
        head.method == "POST" and head.path == "/rpc/get" and body == b"k\tv\n" and end == len(raw)
    )
    assert head.headers["content-length"] == "4"
    get = http.encode_request("GET", "/key", [("Host", "h")])
    assert get == b"GET /key HTTP/1.1\r\nHost: h\r\n\r\n"
    assert b"Content-Length: 0" in http.encode_request("PUT", "/key")

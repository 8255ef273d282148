"""The server's request decoders (``BinaryRequestDecoder``, ``RequestHeadDecoder`` in
ktstore.protocol.receive) and the reader that steps them (ktstore.server.netio).

What they promise: the same request however its bytes are split into packets, what
is parsed consumed at once (so a request costs time linear in its size: a split
never makes earlier records be parsed again), and the errors of the whole-message
parsers (ktstore.protocol.binary / http) for the same bytes."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ktstore.errors import Incomplete, ProtocolError
from ktstore.protocol import binary, http
from ktstore.protocol.limits import INT64MAX
from ktstore.protocol.receive import (
    NEED_MORE,
    BinaryRequestDecoder,
    FrameTooLarge,
    ReceiveBuffer,
    RequestHeadDecoder,
)
from ktstore.server import Server

records = st.lists(
    st.tuples(
        st.integers(0, 3), st.binary(max_size=40), st.binary(max_size=60), st.integers(0, 1 << 40)
    ),
    max_size=12,
)
keys = st.lists(st.tuples(st.integers(0, 3), st.binary(max_size=40)), max_size=12)
pairs = st.lists(st.tuples(st.binary(max_size=30), st.binary(max_size=30)), max_size=8)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["set", "get", "remove", "script"]))
    if kind == "set":
        return binary.encode_set_bulk(draw(records), no_reply=draw(st.booleans()))
    if kind == "get":
        return binary.encode_get_bulk(draw(keys))
    if kind == "remove":
        return binary.encode_remove_bulk(draw(keys), no_reply=draw(st.booleans()))
    return binary.encode_play_script(draw(st.binary(max_size=20)), draw(pairs))


def _decode_in_pieces(decoder, data: bytes, cuts: list[int]):
    """Feed ``data`` cut at ``cuts``; step whenever the decoder may succeed.  Returns
    the result, the bytes left over, and the most bytes ever left unconsumed."""
    rb = ReceiveBuffer()
    result = NEED_MORE
    most_left = 0
    bounds = sorted({c for c in cuts if 0 < c < len(data)}) + [len(data)]
    start = 0
    for end in bounds:
        rb.feed(data[start:end])
        start = end
        if result is NEED_MORE and len(rb) >= decoder.need:
            result = decoder.step(rb)
            if result is NEED_MORE:
                assert decoder.need > len(rb)  # never a step that cannot succeed
        most_left = max(most_left, len(rb))
    return result, rb, most_left


@given(frames(), st.lists(st.integers(0, 2000), max_size=30), st.binary(max_size=5))
def test_any_split_gives_the_whole_message_parse(data, cuts, tail) -> None:
    whole, end = binary.parse_request(data, 0)
    assert end == len(data)
    result, rb, _ = _decode_in_pieces(BinaryRequestDecoder(), data + tail, cuts)
    assert result == whole
    assert rb.take_all() == tail  # the next request's bytes stay in the buffer


def test_parsed_records_are_consumed_at_once() -> None:
    """A bulk of many records fed a few bytes at a time never keeps more than one
    partial record unconsumed: no record is parsed twice."""
    recs = [(0, b"key%05d" % i, b"v" * 30, 0) for i in range(2000)]
    data = binary.encode_set_bulk(recs)
    one = 18 + 8 + 30
    result, _, most_left = _decode_in_pieces(
        BinaryRequestDecoder(), data, list(range(7, len(data), 7))
    )
    assert result == binary.SetBulk(0, recs)
    assert most_left < one + 7


@given(st.binary(max_size=64), st.lists(st.integers(0, 64), max_size=6))
def test_junk_fails_like_the_whole_message_parser(data, cuts) -> None:
    try:
        expected: object = binary.parse_request(data, 0)[0]
    except Incomplete:
        expected = NEED_MORE
    except ProtocolError:
        expected = ProtocolError
    try:
        got: object = _decode_in_pieces(BinaryRequestDecoder(), data, cuts)[0]
    except FrameTooLarge:
        # Stricter by design: a header announcing more than the frame cap is refused
        # before its bytes arrive, where the whole-message parser would wait for them.
        assert expected in (NEED_MORE, ProtocolError)
        return
    except ProtocolError:
        got = ProtocolError
    assert got == expected


def test_a_header_over_the_cap_is_refused_where_the_whole_parser_waits() -> None:
    data = b"\xb8\x00\x00\x00\x00\x02\x00\x00\x00"  # set_bulk of 2^25 records
    with pytest.raises(Incomplete):
        binary.parse_request(data, 0)
    with pytest.raises(FrameTooLarge):
        _decode_in_pieces(BinaryRequestDecoder(), data, [])


def test_frame_over_the_cap_is_refused_from_its_header() -> None:
    rb = ReceiveBuffer()
    rb.feed(struct.pack(">BII", binary.MAGIC_SET_BULK, 0, 1000))
    decoder = BinaryRequestDecoder(frame_max=1000)
    with pytest.raises(FrameTooLarge):
        decoder.step(rb)
    assert decoder.magic == binary.MAGIC_SET_BULK


def test_record_over_the_cap_is_refused_before_its_bytes() -> None:
    rb = ReceiveBuffer()
    rb.feed(struct.pack(">BII", binary.MAGIC_SET_BULK, binary.FLAG_NOREPLY, 1))
    rb.feed(struct.pack(">HIIq", 0, 10, 5000, 0))
    decoder = BinaryRequestDecoder(frame_max=1000)
    with pytest.raises(FrameTooLarge):
        decoder.step(rb)
    assert decoder.flags == binary.FLAG_NOREPLY


HEADS = [
    b"GET /rpc/void HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /rpc/set HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
    b"GET /a HTTP/1.1\nHost: x\n\n",
    b"GET /a HTTP/1.1\r\nX: 1\n\r\nrest",
]


@pytest.mark.parametrize("data", HEADS)
def test_request_head_in_any_two_pieces(data: bytes) -> None:
    whole, end = http.parse_request_head(data, 0)
    for cut in range(len(data) + 1):
        pieces = [c for c in (cut,) if 0 < c < len(data)]
        result, rb, _ = _decode_in_pieces(RequestHeadDecoder(), data, pieces)
        assert result == whole
        assert rb.take_all() == data[end:]


def test_request_head_byte_by_byte() -> None:
    data = HEADS[0]
    result, rb, _ = _decode_in_pieces(RequestHeadDecoder(), data, list(range(len(data))))
    assert result.method == "GET" and result.path == "/rpc/void"
    assert result.headers == {"host": "x"}
    assert len(rb) == 0


def test_endless_request_head_is_refused() -> None:
    rb = ReceiveBuffer()
    decoder = RequestHeadDecoder()
    rb.feed(b"GET /a HTTP/1.1\r\n")
    assert decoder.step(rb) is NEED_MORE
    with pytest.raises(http.LineTooLong):
        for _ in range(http.HEAD_MAX // 1000 + 2):
            rb.feed(b"X: " + b"y" * 995 + b"\r\n")
            if len(rb) >= decoder.need:
                assert decoder.step(rb) is NEED_MORE


def test_bulk_in_many_packets_is_served() -> None:
    """A set_bulk of 20,000 records sent in 1 KiB packets (TCP_NODELAY) is stored
    whole, and the connection serves the next request."""
    srv = Server(["*"], host="127.0.0.1", port=0)
    srv.start()
    try:
        recs = [(0, b"k%06d" % i, b"v" * 40, INT64MAX) for i in range(20000)]
        data = binary.encode_set_bulk(recs)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(0, len(data), 1024):
                s.sendall(data[i : i + 1024])
            assert _recv_exact(s, 5) == struct.pack(">BI", binary.MAGIC_SET_BULK, 20000)
            s.sendall(binary.encode_get_bulk([(0, b"k019999")]))
            reply = _recv_exact(s, 5 + 18 + 7 + 40)
        [(dbidx, key, value, _)] = binary.parse_get_bulk_reply(reply)[0]
        assert (dbidx, key, value) == (0, b"k019999", b"v" * 40)
    finally:
        srv.stop()


def _recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "server closed"
        out += chunk
    return out

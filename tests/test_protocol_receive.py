"""The incremental receive buffer and reply decoders (ktstore.protocol.receive).

What they promise: the same result however the bytes are split, parsed bytes consumed
and never looked at again, memory bounded by what arrived (not by announced sizes),
and hard caps on hostile sizes."""

from __future__ import annotations

import struct

import pytest

from ktstore.errors import ProtocolError
from ktstore.protocol import binary, http
from ktstore.protocol.receive import (
    NEED_MORE,
    CountReply,
    GetBulkPairs,
    GetBulkReply,
    HttpResponse,
    ParserDecoder,
    PlayScriptReply,
    ReceiveBuffer,
    RemoveCountReply,
    SetCountReply,
)

RESPONSES = [
    "HTTP/1.1 200 OK\r\nServer: KyotoTycoon/0.9.56\r\nContent-Type: text/tab-separated-values"
    "\r\nContent-Length: 6\r\n\r\nnum\t5\n",
    "HTTP/1.1 450 Logical Inconsistency\r\nContent-Length: 0\r\n\r\n",
    "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 200 OK\r\nCONTENT-LENGTH:2\r\n\r\nok",
    "HTTP/1.1 200 OK\r\nContent-Length:  2 \r\n\r\nok",
    "HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 200 OK\r\nno colon\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n"
    "2\r\nok\r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n",
]


def _decode(decoder, pieces):
    """Feed ``pieces`` one by one; the result and the bytes left unconsumed."""
    rb = ReceiveBuffer()
    result = NEED_MORE
    for piece in pieces:
        rb.feed(piece)
        if result is NEED_MORE and len(rb) >= decoder.need:
            result = decoder.step(rb)
    return result, rb


def _splits(data: bytes):
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    for cut in range(1, len(data)):
        yield [data[:cut], data[cut:]]


@pytest.mark.parametrize("text", RESPONSES)
def test_http_response_is_the_same_however_it_is_split(text):
    data = text.encode("latin-1") + b"NEXT"  # a pipelined next reply must stay buffered
    head, body, end = http.parse_response(data)
    for pieces in _splits(data):
        reply, rb = _decode(HttpResponse(), pieces)
        assert reply is not NEED_MORE, pieces
        assert (reply.status, reply.version, reply.headers, reply.body) == (
            head.status,
            head.version,
            head.headers,
            body,
        )
        assert reply.keep_alive == head.keep_alive
        assert rb.take_all() == data[end:] == b"NEXT"


def test_http_body_framed_by_close_ends_at_eof():
    data = b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nto the end"
    for pieces in _splits(data):
        decoder = HttpResponse()
        result, rb = _decode(decoder, pieces)
        assert result is NEED_MORE
        reply = decoder.eof(rb)
        assert reply.body == b"to the end" and not reply.keep_alive


def test_http_eof_mid_reply_raises():
    decoder = HttpResponse()
    result, rb = _decode(decoder, [b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"])
    assert result is NEED_MORE
    with pytest.raises(EOFError):
        decoder.eof(rb)


@pytest.mark.parametrize(
    "text",
    ["HTTP/ 1x 200 OK\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n"],
)
def test_http_malformed_status_line(text):
    with pytest.raises(ProtocolError):
        _decode(HttpResponse(), [text.encode()])


def test_http_hostile_content_length_allocates_nothing_ahead():
    decoder = HttpResponse()
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 268435456\r\n\r\n"
    result, rb = _decode(decoder, [head, b"x" * 100])
    assert result is NEED_MORE
    # what is held is what arrived: the 100 body bytes, in the decoder's parts
    assert sum(map(len, decoder.parts)) == 100 and len(rb) == 0
    with pytest.raises(ProtocolError):
        _decode(HttpResponse(), [b"HTTP/1.1 200 OK\r\nContent-Length: 9999999999999\r\n\r\n"])


def test_http_endless_head_is_cut_off():
    decoder = HttpResponse()
    rb = ReceiveBuffer()
    rb.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(ProtocolError):
        for _ in range(10_000):
            rb.feed(b"X-Filler: " + b"y" * 100 + b"\r\n")
            decoder.step(rb)


def _get_bulk_reply(records):
    return binary.encode_get_bulk_reply(records)


def test_get_bulk_reply_is_the_same_however_it_is_split():
    records = [(0, b"k%d" % i, b"v" * i, 1000 + i) for i in range(20)]
    data = _get_bulk_reply(records) + b"\xb8"
    for pieces in _splits(data):
        result, rb = _decode(GetBulkReply(), pieces)
        assert result == records
        assert rb.take_all() == b"\xb8"


def test_get_bulk_pairs_is_the_flat_form_of_the_records():
    records = [(i % 2, b"k%d" % i, b"v" * i, 1000 + i) for i in range(20)]
    flat = [field for _, k, v, _ in records for field in (k, v)]
    data = _get_bulk_reply(records)
    assert GetBulkPairs.whole(data) == flat
    for pieces in _splits(data + b"\xb8"):
        result, rb = _decode(GetBulkPairs(), pieces)
        assert result == flat
        assert rb.take_all() == b"\xb8"
    for cut in range(len(data)):
        assert GetBulkPairs.whole(data[:cut]) is NEED_MORE
    assert GetBulkPairs.whole(data + b"\xb8") is NEED_MORE
    assert _decode(GetBulkPairs(), [b"\xbf"])[0] is binary.ERROR_REPLY
    bad = b"\xba" + struct.pack(">I", 1) + struct.pack(">HIIq", 0, 1, (1 << 28) + 1, 0)
    with pytest.raises(ProtocolError):
        _decode(GetBulkPairs(), [bad])


def test_get_bulk_reply_consumes_as_it_goes():
    """Linear parsing: after every read, all that is left unconsumed is at most one
    incomplete record, so no byte is ever parsed twice."""
    records = [(0, b"key%06d" % i, b"value" * 3, 0) for i in range(5000)]
    data = _get_bulk_reply(records)
    record_size = 18 + 9 + 15
    decoder = GetBulkReply()
    rb = ReceiveBuffer()
    result = NEED_MORE
    for start in range(0, len(data), 1000):
        rb.feed(data[start : start + 1000])
        if len(rb) >= decoder.need:
            result = decoder.step(rb)
        if result is NEED_MORE:
            assert len(rb) < record_size
    assert result == records


def test_get_bulk_hostile_sizes():
    # a record announcing 2**28 bytes of value: nothing is allocated ahead of the data
    head = b"\xba" + struct.pack(">I", 1) + struct.pack(">HIIq", 0, 1, 1 << 28, 0) + b"k"
    decoder = GetBulkReply()
    result, rb = _decode(decoder, [head, b"x" * 10])
    assert result is NEED_MORE and len(rb.buf) <= len(head) + 10
    assert decoder.need == 18 + 1 + (1 << 28)
    # one byte over the protocol's limit is refused as soon as the size is readable
    bad = b"\xba" + struct.pack(">I", 1) + struct.pack(">HIIq", 0, 1, (1 << 28) + 1, 0)
    with pytest.raises(ProtocolError):
        _decode(GetBulkReply(), [bad])
    # a count of 2**32-1 records costs nothing until records arrive
    result, rb = _decode(GetBulkReply(), [b"\xba\xff\xff\xff\xff"])
    assert result is NEED_MORE


def test_error_replies_and_counts():
    assert _decode(GetBulkReply(), [b"\xbf"])[0] is binary.ERROR_REPLY
    assert _decode(PlayScriptReply(), [b"\xbf"])[0] is binary.ERROR_REPLY
    assert _decode(CountReply(0xB8), [b"\xbf"])[0] is binary.ERROR_REPLY
    assert _decode(CountReply(0xB8), [b"\xb8\x00", b"\x00\x00\x07"])[0] == 7
    with pytest.raises(ProtocolError):
        _decode(CountReply(0xB8), [b"\xb9\x00\x00\x00\x07"])
    pairs = [(b"a", b"1"), (b"bb", b"")]
    data = binary.encode_play_script_reply(pairs)
    for pieces in _splits(data):
        assert _decode(PlayScriptReply(), pieces)[0] == pairs


@pytest.mark.parametrize("n", [0, 1, 2, 30])
def test_whole_reply_fast_path_agrees_with_the_decoder(n):
    """``whole(chunk)`` (a reply that arrived in one read) gives the decoder's result
    for exactly one valid reply, and NEED_MORE for anything the decoder must judge:
    a cut reply, bytes after it, an error reply, another magic, hostile sizes."""
    records = [(i % 3, b"k%d" % i, b"v" * i, 1000 + i) for i in range(n)]
    data = _get_bulk_reply(records)
    assert GetBulkReply.whole(data) == records == _decode(GetBulkReply(), [data])[0]
    for cut in range(len(data)):
        assert GetBulkReply.whole(data[:cut]) is NEED_MORE
    assert GetBulkReply.whole(data + b"\xb8") is NEED_MORE
    assert GetBulkReply.whole(b"\xbf") is NEED_MORE
    assert GetBulkReply.whole(b"\xb8" + data[1:]) is NEED_MORE
    hostile = b"\xba" + struct.pack(">I", 1) + struct.pack(">HIIq", 0, 1, 1 << 28, 0) + b"k"
    assert GetBulkReply.whole(hostile) is NEED_MORE
    assert GetBulkReply.whole(b"\xba\xff\xff\xff\xff") is NEED_MORE
    assert SetCountReply.whole(b"\xb8\x00\x00\x00\x07") == 7
    assert RemoveCountReply.whole(b"\xb9\x00\x00\x00\x01") == 1
    for odd in (b"\xbf", b"\xb8\x00", b"\xb9\x00\x00\x00\x07", b"\xb8\x00\x00\x00\x07\xb8"):
        assert SetCountReply.whole(odd) is NEED_MORE
    assert _decode(SetCountReply(), [b"\xb8\x00", b"\x00\x00\x07"])[0] == 7
    assert _decode(RemoveCountReply(), [b"\xbf"])[0] is binary.ERROR_REPLY


def test_parser_adapter_for_the_server_side_parsers():
    request = binary.encode_set_bulk([(0, b"k", b"v", 5)])
    for pieces in _splits(request):
        result, rb = _decode(ParserDecoder(binary.parse_request), pieces)
        assert result.records == [(0, b"k", b"v", 5)]

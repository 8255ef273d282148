"""Hostile bytes: every parser of the protocol core either parses, asks for more
(Incomplete) or refuses (ProtocolError), and never fails in another way; the lenient
decoders never fail at all. The server feeds untrusted input straight into these."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ktstore.errors import ProtocolError
from ktstore.protocol import binary, dumps, expire, http, tsv

junk = st.binary(max_size=200)


def _binaryish() -> st.SearchStrategy[bytes]:
    magic = st.sampled_from([0xB4, 0xB8, 0xB9, 0xBA, 0xBF, 0xB1, 0x00])
    return st.tuples(magic, junk).map(lambda t: bytes([t[0]]) + t[1])


def _httpish() -> st.SearchStrategy[bytes]:
    words = st.sampled_from(
        [
            b"GET",
            b"POST",
            b"PUT",
            b" ",
            b"/rpc/x",
            b"?a=b",
            b"HTTP/1.1",
            b"HTTP/1.0",
            b"\r\n",
            b"\n",
        ]
        + [b"Content-Length: 3", b"Transfer-Encoding: chunked", b"3\r\nabc", b"0", b":", b"\r"]
        + [b"HTTP/1.1 200 OK", b"Content-Length: 99999999999", b"\xff\x00"]
    )
    return st.lists(words, max_size=25).map(b"".join)


@given(st.one_of(junk, _binaryish()), st.integers(0, 3))
def test_binary_parsers_fail_cleanly(data, pos) -> None:
    for parse in (
        binary.parse_request,
        binary.parse_get_bulk_reply,
        binary.parse_play_script_reply,
        lambda b, p: binary.parse_count_reply(b, p, binary.MAGIC_SET_BULK),
    ):
        try:
            parse(data, pos)
        except ProtocolError:  # includes Incomplete
            pass


@given(st.one_of(junk, _httpish()))
def test_http_parsers_fail_cleanly(data) -> None:
    for parse in (
        http.parse_request_head,
        http.parse_response_head,
        http.parse_request,
        http.parse_response,
        http.parse_chunked,
    ):
        try:
            parse(data, 0)
        except ProtocolError:
            pass


@given(junk)
def test_lenient_decoders_never_fail(data) -> None:
    for colenc in (None, "B", "U", "Q"):
        tsv.decode_tsv(data, colenc)
    tsv.decode_form(data)
    tsv.base64_decode_lenient(data)
    tsv.url_decode(data)
    tsv.qp_decode(data)
    dumps.mapload(data)
    dumps.arrayload(data)
    expire.kt_atoi(data)
    expire.parse_kt_time(data)
    expire.rest_put_xt(data)
    tsv.choose_colenc([(data, data)])
    tsv.parse_content_type(data.decode("latin-1"))
    try:
        dumps.decode_varint(data)
    except ProtocolError:
        pass


# ------------------------------------------------------------------ chunked decoder


def _feed_in_pieces(data: bytes, cuts: list[int]) -> tuple[bytes | None, int]:
    """Feed ``data`` to a ChunkedDecoder in pieces, as the server does (the
    unconsumed rest is kept and more appended); returns (body or None, consumed)."""
    decoder = http.ChunkedDecoder(limit=1000)
    buf, pos, consumed = b"", 0, 0
    edges = sorted({c for c in cuts if 0 < c < len(data)}) + [len(data)]
    start = 0
    for edge in edges:
        buf = buf[pos:] + data[start:edge]
        start = edge
        new = decoder.feed(buf, 0)
        assert 0 <= new <= len(buf)
        consumed += new
        pos = new
        # memory: the decoder keeps at most what it was given
        assert len(decoder.body) <= consumed
        if decoder.done:
            return bytes(decoder.body), consumed
    return None, consumed


def _chunkedish() -> st.SearchStrategy[bytes]:
    words = st.sampled_from(
        [b"1", b"3", b"a", b"F", b"0", b"zz", b"-5", b" ", b";x", b"\r\n", b"\n", b"\r"]
        + [b"abc", b"x", b"\x00", b"ffffffffffffffffff", b"3e8", b"X-T: 1"]
    )
    return st.lists(words, max_size=30).map(b"".join)


@given(st.one_of(junk, _chunkedish()), st.lists(st.integers(0, 250), max_size=8))
def test_chunked_decoder_fails_cleanly_in_any_pieces(data, cuts) -> None:
    try:
        whole = _feed_in_pieces(data, [])
    except ProtocolError:
        whole = None
    try:
        pieces = _feed_in_pieces(data, cuts)
    except ProtocolError:
        pieces = None
    if whole is not None and whole[0] is not None:
        assert pieces == whole  # the split never changes the outcome


@given(
    st.lists(st.binary(min_size=1, max_size=40), max_size=12),
    st.lists(st.integers(0, 200), max_size=6),
)
def test_chunked_decoder_decodes_what_was_encoded(chunks, cuts) -> None:
    wire = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    body, consumed = _feed_in_pieces(wire + b"NEXT", cuts)
    assert body == b"".join(chunks) and consumed == len(wire)


# ------------------------------------------------------------------ binary commands, served

_records = st.lists(
    st.tuples(st.integers(0, 3), st.binary(max_size=12), st.binary(max_size=24)), max_size=5
)


def _binary_frame() -> st.SearchStrategy[bytes]:
    """A valid frame of every binary command (set/remove/get bulk, play_script,
    replication), to be mutated."""
    return st.one_of(
        _records.map(lambda r: binary.encode_set_bulk([(d, k, v, 100) for d, k, v in r])),
        _records.map(lambda r: binary.encode_set_bulk([(d, k, v, 1) for d, k, v in r], True)),
        _records.map(lambda r: binary.encode_remove_bulk([(d, k) for d, k, _ in r])),
        _records.map(lambda r: binary.encode_get_bulk([(d, k) for d, k, _ in r])),
        _records.map(lambda r: binary.encode_play_script(b"echo", [(k, v) for _, k, v in r])),
        st.binary(min_size=14, max_size=14).map(lambda b: b"\xb1" + b),
    )


@st.composite
def _mutated_frame(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(_binary_frame()))
    how = draw(st.sampled_from(["cut", "flip", "count", "size", "tail", "as is"]))
    if how == "cut":
        del frame[draw(st.integers(1, len(frame))) :]
    elif how == "flip":
        i = draw(st.integers(0, len(frame) - 1))
        frame[i] = draw(st.integers(0, 255))
    elif how == "count" and len(frame) >= 9:
        frame[5:9] = draw(st.integers(0, 0xFFFFFFFF)).to_bytes(4, "big")
    elif how == "size" and len(frame) >= 13:
        i = draw(st.integers(5, len(frame) - 4))
        frame[i : i + 4] = draw(st.integers(0, 0xFFFFFFFF)).to_bytes(4, "big")
    elif how == "tail":
        frame += draw(junk)
    return bytes(frame)


def test_binary_commands_fuzzed_against_the_server() -> None:
    """Every binary command, mutated, sent to the built-in server then EOF: it
    answers or closes within seconds (no hang, no crash, nothing buffered for
    sizes that were only announced), and serves normally afterwards."""
    import resource
    import socket

    from hypothesis import settings

    from ktstore.server import Server

    srv = Server(["*", "%"], host="127.0.0.1", port=0, args=["-lz", "-tout", "5"])
    srv.start()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB

    @settings(max_examples=150, deadline=None, database=None)
    @given(st.lists(_mutated_frame(), min_size=1, max_size=3))
    def fuzz(frames: list[bytes]) -> None:
        s = socket.create_connection(("127.0.0.1", srv.port))
        try:
            s.sendall(b"".join(frames))
            s.shutdown(socket.SHUT_WR)
            s.settimeout(10)
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass
        finally:
            s.close()

    try:
        fuzz()
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.settimeout(10)
        s.sendall(binary.encode_get_bulk([(0, b"nothing")]))
        assert s.recv(100) == b"\xba\x00\x00\x00\x00"
        s.close()
        assert srv.connection_count() <= 1
        # frames announcing up to 4 GiB allocated nothing of the sort
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
        assert grown < 64 * 1024, f"peak RSS grew by {grown} KiB"
    finally:
        srv.stop()


@given(st.one_of(_mutated_frame(), junk))
def test_capped_binary_parser_never_waits_for_more_than_the_cap(data) -> None:
    """The server's decoder asks for at most FRAME_MAX bytes: a frame announcing more
    is refused from its header or record sizes, before anything is buffered."""
    from ktstore.protocol.receive import NEED_MORE, BinaryRequestDecoder, ReceiveBuffer
    from ktstore.server.binaryserver import FRAME_MAX

    if not data:
        return
    rb = ReceiveBuffer()
    rb.feed(data)
    decoder = BinaryRequestDecoder(FRAME_MAX)
    try:
        result = decoder.step(rb)
    except ProtocolError:
        return
    if result is NEED_MORE:
        assert len(rb) < decoder.need
        assert decoder.frame + decoder.need <= FRAME_MAX

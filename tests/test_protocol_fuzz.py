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

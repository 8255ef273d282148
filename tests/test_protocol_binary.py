"""Binary protocol frames: encoders and parsers agree, byte layouts match docs/protocol.md ("Binary protocol"),
incomplete input asks for the right number of bytes, hostile sizes are refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ktstore.errors import Incomplete, InvalidArgument, ProtocolError
from ktstore.protocol import binary as b
from ktstore.protocol.limits import DATA_MAX_SIZE, INT64MAX, INT64MIN, XTMAX

blobs = st.binary(max_size=40)
dbidx = st.integers(0, 0xFFFF)
xts = st.integers(INT64MIN, INT64MAX)
records = st.lists(st.tuples(dbidx, blobs, blobs, xts), max_size=8)
keys = st.lists(st.tuples(dbidx, blobs), max_size=8)
pairs = st.lists(st.tuples(blobs, blobs), max_size=8)


def all_prefixes_incomplete(parse, data: bytes, *args) -> None:
    """Every strict prefix raises Incomplete with a need that is a true lower bound."""
    for cut in range(len(data)):
        with pytest.raises(Incomplete) as info:
            parse(data[:cut], 0, *args)
        assert cut < info.value.need <= len(data), (cut, info.value.need)


# --- byte layouts -----------------------------------------------------------------------


def test_set_bulk_layout() -> None:
    frame = b.encode_set_bulk([(0, b"a1", b"v", INT64MAX)])
    assert frame.hex() == ("b80000000000000001000000000002000000017fffffffffffffff613176")
    assert b.encode_set_bulk([], no_reply=True) == bytes.fromhex("b80000000100000000")


def test_get_and_remove_bulk_layout() -> None:
    assert b.encode_get_bulk([(1, b"k")]).hex() == "ba00000000000000010001000000016b"
    assert b.encode_remove_bulk([(0, b"k")], no_reply=True).hex() == (
        "b900000001000000010000000000016b"
    )


def test_play_script_layout() -> None:
    frame = b.encode_play_script(b"echo", [(b"a", b"1")])
    assert frame.hex() == ("b40000000000000004000000016563686f00000001000000016131")


def test_replies_layout() -> None:
    assert b.encode_count_reply(b.MAGIC_SET_BULK, 3) == bytes.fromhex("b800000003")
    assert b.encode_get_bulk_reply([(0, b"a", b"1", XTMAX)]).hex() == (
        "ba0000000100000000000100000001000000ffffffffff6131"
    )
    assert b.encode_play_script_reply([]) == bytes.fromhex("b400000000")


def test_accepts_generators_and_other_buffers() -> None:
    frame = b.encode_get_bulk((0, k) for k in [b"x", bytearray(b"y"), memoryview(b"z")])
    req, end = b.parse_request(frame)
    assert end == len(frame)
    assert req == b.GetBulk(0, [(0, b"x"), (0, b"y"), (0, b"z")])


# --- round trips ------------------------------------------------------------------------


@given(records, st.booleans())
def test_set_bulk_round_trip(recs, no_reply) -> None:
    frame = b.encode_set_bulk(recs, no_reply=no_reply)
    req, end = b.parse_request(frame)
    assert end == len(frame)
    assert isinstance(req, b.SetBulk)
    assert req.records == recs
    assert req.no_reply is no_reply


@given(keys, st.booleans())
def test_key_requests_round_trip(ks, no_reply) -> None:
    req, end = b.parse_request(b.encode_remove_bulk(ks, no_reply))
    assert req == b.RemoveBulk(int(no_reply), ks) and req.no_reply is no_reply
    req, end = b.parse_request(b.encode_get_bulk(ks))
    assert req == b.GetBulk(0, ks) and not req.no_reply


@given(blobs, pairs, st.booleans())
def test_play_script_round_trip(name, params, no_reply) -> None:
    frame = b.encode_play_script(name, params, no_reply)
    req, end = b.parse_request(frame)
    assert end == len(frame)
    assert req == b.PlayScript(int(no_reply), name, params)


@given(st.lists(st.tuples(dbidx, blobs, blobs, st.integers(0, INT64MAX)), max_size=6))
def test_get_bulk_reply_round_trip(recs) -> None:
    frame = b.encode_get_bulk_reply(recs)
    assert b.parse_get_bulk_reply(frame) == (recs, len(frame))
    # bytearray and memoryview give bytes back too, at any offset
    shifted = bytearray(b"junk" + frame + b"next")
    got, end = b.parse_get_bulk_reply(shifted, 4)
    assert (got, end) == (recs, 4 + len(frame))
    assert all(type(k) is bytes and type(v) is bytes for _, k, v, _ in got)
    assert b.parse_get_bulk_reply(memoryview(bytes(shifted)), 4) == (recs, 4 + len(frame))


@given(pairs)
def test_play_script_reply_round_trip(ps) -> None:
    frame = b.encode_play_script_reply(ps)
    assert b.parse_play_script_reply(frame) == (ps, len(frame))
    assert b.parse_play_script_reply(bytearray(frame)) == (ps, len(frame))


@given(st.integers(0, 0xFFFFFFFF))
def test_count_reply_round_trip(n) -> None:
    for magic in (b.MAGIC_SET_BULK, b.MAGIC_REMOVE_BULK):
        frame = b.encode_count_reply(magic, n)
        assert b.parse_count_reply(frame, 0, magic) == (n, 5)
        assert b.parse_reply(frame, 0, magic) == (n, 5)


@given(records)
def test_request_prefixes_are_incomplete(recs) -> None:
    frame = b.encode_set_bulk(recs)
    all_prefixes_incomplete(b.parse_request, frame)
    all_prefixes_incomplete(b.parse_request, bytearray(frame))


@given(st.lists(st.tuples(dbidx, blobs, blobs, st.integers(0, INT64MAX)), max_size=5), pairs)
def test_reply_prefixes_are_incomplete(recs, ps) -> None:
    all_prefixes_incomplete(b.parse_get_bulk_reply, b.encode_get_bulk_reply(recs))
    all_prefixes_incomplete(b.parse_play_script_reply, b.encode_play_script_reply(ps))
    all_prefixes_incomplete(b.parse_count_reply, b.encode_count_reply(0xB8, 1), 0xB8)


@given(keys, blobs, pairs)
def test_request_prefixes_other_kinds(ks, name, ps) -> None:
    all_prefixes_incomplete(b.parse_request, b.encode_get_bulk(ks))
    all_prefixes_incomplete(b.parse_request, b.encode_remove_bulk(ks))
    all_prefixes_incomplete(b.parse_request, b.encode_play_script(name, ps))


def test_two_frames_back_to_back() -> None:
    buf = b.encode_get_bulk([(0, b"a")]) + b.encode_play_script(b"f", [])
    first, end = b.parse_request(buf)
    second, end2 = b.parse_request(buf, end)
    assert first == b.GetBulk(0, [(0, b"a")])
    assert second == b.PlayScript(0, b"f", [])
    assert end2 == len(buf)


# --- Incomplete(need) and errors --------------------------------------------------------


def test_need_counts_from_pos() -> None:
    with pytest.raises(Incomplete) as info:
        b.parse_count_reply(b"\xb8\x00", 0, b.MAGIC_SET_BULK)
    assert info.value.need == 5
    with pytest.raises(Incomplete) as info:
        b.parse_count_reply(b"xxxx\xb8\x00", 4, b.MAGIC_SET_BULK)
    assert info.value.need == 5
    # nothing yet: only one byte is certain (the reply may be a bare 0xBF)
    with pytest.raises(Incomplete) as info:
        b.parse_count_reply(b"", 0, b.MAGIC_SET_BULK)
    assert info.value.need == 1


def test_need_grows_with_known_sizes() -> None:
    frame = b.encode_get_bulk_reply([(0, b"k" * 100, b"v" * 1000, 5)])
    with pytest.raises(Incomplete) as info:
        b.parse_get_bulk_reply(frame[:30])
    assert info.value.need == len(frame)


def test_need_is_capped_for_hostile_counts() -> None:
    with pytest.raises(Incomplete) as info:
        b.parse_get_bulk_reply(bytes.fromhex("baffffffff"))
    assert info.value.need <= 5 + 18 + (1 << 16)


def test_error_reply_is_returned() -> None:
    assert b.parse_get_bulk_reply(b"\xbf") == (b.ERROR_REPLY, 1)
    assert b.parse_play_script_reply(b"xx\xbf", 2) == (b.ERROR_REPLY, 3)
    assert b.parse_count_reply(b"\xbf", 0, b.MAGIC_REMOVE_BULK) == (b.ERROR_REPLY, 1)
    assert repr(b.ERROR_REPLY) == "ERROR_REPLY"


def test_wrong_reply_magic() -> None:
    with pytest.raises(ProtocolError) as info:
        b.parse_get_bulk_reply(b"\xb8\x00\x00\x00\x00")
    assert not isinstance(info.value, Incomplete)


@pytest.mark.parametrize("magic", [0xBE, 0xB1, 0xB0, 0x00, 0xBF])
def test_unknown_request_magic(magic) -> None:
    with pytest.raises(ProtocolError) as info:
        b.parse_request(bytes([magic]) + b"\x00" * 16)
    assert not isinstance(info.value, Incomplete)


def test_oversized_fields_refused_before_data() -> None:
    big = DATA_MAX_SIZE + 1
    head = bytes.fromhex("b8 00000000 00000001 0000") + big.to_bytes(4, "big")
    frame = head + (1).to_bytes(4, "big") + b"\x00" * 8
    with pytest.raises(ProtocolError) as info:
        b.parse_request(frame)
    assert not isinstance(info.value, Incomplete)
    with pytest.raises(ProtocolError):
        b.parse_request(bytearray(frame))
    key_frame = bytes.fromhex("ba 00000000 00000001 0000") + big.to_bytes(4, "big")
    with pytest.raises(ProtocolError) as info:
        b.parse_request(key_frame)
    assert not isinstance(info.value, Incomplete)
    script = bytes.fromhex("b4 00000000") + big.to_bytes(4, "big") + bytes(4)
    with pytest.raises(ProtocolError) as info:
        b.parse_request(script)
    assert not isinstance(info.value, Incomplete)
    reply = bytes.fromhex("ba 00000001 0000 00000001") + big.to_bytes(4, "big") + bytes(8)
    with pytest.raises(ProtocolError) as info:
        b.parse_get_bulk_reply(reply)
    assert not isinstance(info.value, Incomplete)
    ps_reply = bytes.fromhex("b4 00000001") + big.to_bytes(4, "big") + bytes(4)
    with pytest.raises(ProtocolError) as info:
        b.parse_play_script_reply(ps_reply)
    assert not isinstance(info.value, Incomplete)


def test_exact_limit_is_allowed_in_header() -> None:
    frame = bytes.fromhex("ba 00000000 00000001 0000") + DATA_MAX_SIZE.to_bytes(4, "big")
    with pytest.raises(Incomplete) as info:
        b.parse_request(frame)
    assert info.value.need == len(frame) + DATA_MAX_SIZE


def test_encoders_reject_bad_arguments() -> None:
    with pytest.raises(InvalidArgument):
        b.encode_get_bulk([(70000, b"k")])
    with pytest.raises(InvalidArgument):
        b.encode_set_bulk([(0, b"k", b"v", INT64MAX + 1)])
    with pytest.raises(InvalidArgument):
        b.encode_remove_bulk([(-1, b"k")])

    class Huge(bytes):
        def __len__(self) -> int:
            return DATA_MAX_SIZE + 1

    with pytest.raises(InvalidArgument):
        b.encode_set_bulk([(0, b"k", Huge(), 0)])
    with pytest.raises(InvalidArgument):
        b.encode_get_bulk([(0, Huge())])
    with pytest.raises(InvalidArgument):
        b.encode_play_script(Huge(), [])
    with pytest.raises(InvalidArgument):
        b.encode_play_script(b"f", [(b"k", Huge())])


def test_is_binary() -> None:
    assert b.is_binary(0x00) and b.is_binary(0x80) and b.is_binary(0xB8)
    assert not b.is_binary(ord("G")) and not b.is_binary(0x7F)

"""KC varints, mapdump/arraydump and counter formats: vectors from docs/protocol.md ("Dumps and varints")
(recorded from a real ktserver) and round trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ktstore.errors import Incomplete, InvalidArgument, ProtocolError, SerializationError
from ktstore.protocol import dumps as d
from ktstore.protocol.limits import INT64MAX, INT64MIN


@pytest.mark.parametrize(
    ("n", "hexed"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "8100"),
        (200, "8148"),
        (16383, "ff7f"),
        (16384, "818000"),
    ],
)
def test_varint_vectors(n, hexed) -> None:
    assert d.encode_varint(n).hex() == hexed
    assert d.decode_varint(bytes.fromhex(hexed)) == (n, len(hexed) // 2)


@given(st.integers(0, 2**64 - 1))
def test_varint_round_trip(n) -> None:
    data = d.encode_varint(n)
    assert d.decode_varint(b"x" + data + b"y", 1) == (n, 1 + len(data))
    for cut in range(len(data)):
        with pytest.raises(Incomplete) as info:
            d.decode_varint(data[:cut])
        assert cut < info.value.need <= len(data)


def test_varint_errors() -> None:
    with pytest.raises(InvalidArgument):
        d.encode_varint(-1)
    with pytest.raises(InvalidArgument):
        d.encode_varint(2**64)
    with pytest.raises(ProtocolError) as info:
        d.decode_varint(b"\x80" * 11)
    assert not isinstance(info.value, Incomplete)


def test_dump_vectors() -> None:
    assert d.mapdump([(b"k", b"v")]).hex() == "01016b76"
    assert d.arraydump([b"x", b"3", b"yy"]).hex() == "01780133027979"
    assert d.mapload(bytes.fromhex("01016b76")) == [(b"k", b"v")]
    assert d.arrayload(bytes.fromhex("01780133027979")) == [b"x", b"3", b"yy"]
    # recorded: dumpmap{name="huey"} from lua.json
    assert d.mapdump([(b"name", b"huey")]) == b"\x04\x04namehuey"


@given(st.lists(st.tuples(st.binary(max_size=300), st.binary(max_size=300)), max_size=6))
def test_mapdump_round_trip(pairs) -> None:
    data = d.mapdump(pairs)
    assert d.mapload(data) == pairs
    assert d.mapload(bytearray(data)) == pairs
    for cut in range(len(data)):  # truncated: a prefix of the entries, silently
        got = d.mapload(data[:cut])
        assert got == pairs[: len(got)]


@given(st.lists(st.binary(max_size=300), max_size=6))
def test_arraydump_round_trip(items) -> None:
    data = d.arraydump(items)
    assert d.arrayload(data) == items
    for cut in range(len(data)):
        got = d.arrayload(data[:cut])
        assert got == items[: len(got)]


@given(st.integers(INT64MIN, INT64MAX))
def test_int_counter(n) -> None:
    data = d.encode_int_counter(n)
    assert len(data) == 8 and d.decode_int_counter(data) == n


def test_int_counter_layout_and_errors() -> None:
    assert d.encode_int_counter(5) == bytes.fromhex("0000000000000005")
    assert d.encode_int_counter(-1) == b"\xff" * 8
    with pytest.raises(InvalidArgument):
        d.encode_int_counter(INT64MAX + 1)
    with pytest.raises(SerializationError):
        d.decode_int_counter(b"1234")


def test_double_counter_layout() -> None:
    assert d.encode_double_counter(1.5).hex() == "00000000000000010001c6bf52634000"
    assert d.decode_double_counter(bytes.fromhex("00000000000000010001c6bf52634000")) == 1.5
    neg = d.encode_double_counter(-2.25)
    assert d.decode_double_counter(neg) == -2.25
    assert math.isnan(d.decode_double_counter(d.encode_double_counter(math.nan)))
    assert d.decode_double_counter(d.encode_double_counter(math.inf)) == math.inf
    assert d.decode_double_counter(d.encode_double_counter(-math.inf)) == -math.inf
    with pytest.raises(SerializationError):
        d.decode_double_counter(b"\x00" * 8)


@given(st.floats(-1e12, 1e12, allow_nan=False))
def test_double_counter_round_trip(x) -> None:
    got = d.decode_double_counter(d.encode_double_counter(x))
    assert got == pytest.approx(x, abs=1e-9, rel=1e-12)

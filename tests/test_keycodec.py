"""The index key encoding: encoded byte order must equal value order, for every kind,
and the encodings must be self-delimiting (a pk appended after the value must not
change the order of different values) and decodable."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ktstore.models import keycodec as kc


def _sign(a, b) -> int:
    return (a > b) - (a < b)


def _check_order(enc, a, b) -> None:
    ea, eb = enc(a), enc(b)
    assert _sign(ea, eb) == _sign(a, b), (a, b, ea, eb)
    # self-delimiting: a suffix (the pk) never reverses the order of different values
    if a != b:
        assert _sign(ea + b"\xff\xff", eb) == _sign(a, b)
        assert _sign(ea, eb + b"\xff\xff") == _sign(a, b)


@given(st.integers(), st.integers())
def test_int_order(a: int, b: int) -> None:
    _check_order(kc.encode_int, a, b)


@given(st.integers())
def test_int_roundtrip(a: int) -> None:
    enc = kc.encode_int(a)
    assert kc.decode_int(enc + b"tail") == (a, len(enc))


@given(st.floats(allow_nan=False), st.floats(allow_nan=False))
def test_float_order(a: float, b: float) -> None:
    _check_order(kc.encode_float, a, b)


@given(st.floats(allow_nan=False))
def test_float_roundtrip(a: float) -> None:
    value, end = kc.decode_float(kc.encode_float(a))
    assert value == a and end == 9


def test_float_zero_and_nan() -> None:
    assert kc.encode_float(-0.0) == kc.encode_float(0.0)
    with pytest.raises(ValueError):
        kc.encode_float(float("nan"))


decimals = st.decimals(allow_nan=False, allow_infinity=False)


@given(decimals, decimals)
def test_decimal_order(a: decimal.Decimal, b: decimal.Decimal) -> None:
    _check_order(kc.encode_decimal, a, b)


@given(decimals)
def test_decimal_roundtrip(a: decimal.Decimal) -> None:
    enc = kc.encode_decimal(a)
    value, end = kc.decode_decimal(enc + b"\x00\xffzz")
    assert value == a and end == len(enc)


def test_decimal_equal_values_encode_alike() -> None:
    assert kc.encode_decimal(decimal.Decimal("1")) == kc.encode_decimal(decimal.Decimal("1.000"))
    assert kc.encode_decimal(decimal.Decimal("-0")) == kc.encode_decimal(0)


@given(st.text(), st.text())
def test_text_order(a: str, b: str) -> None:
    _check_order(kc.encode_text, a, b)


@given(st.text())
def test_text_roundtrip(a: str) -> None:
    enc = kc.encode_text(a)
    assert kc.decode_text(enc + b"\x00\x00") == (a, len(enc))


@given(st.binary(), st.binary())
def test_bytes_order(a: bytes, b: bytes) -> None:
    _check_order(kc.encode_bytes, a, b)


@given(st.text(), st.text())
def test_text_prefix_matches_exactly_startswith(a: str, b: str) -> None:
    assert kc.encode_text(a).startswith(kc.encode_text_prefix(b)) == a.startswith(b)


aware = st.datetimes(
    timezones=st.sampled_from(
        [
            dt.timezone.utc,
            dt.timezone(dt.timedelta(hours=5, minutes=30)),
            dt.timezone(-dt.timedelta(hours=8)),
        ]
    )
)


@given(aware, aware)
def test_datetime_order(a: dt.datetime, b: dt.datetime) -> None:
    _check_order(kc.encode_datetime, a, b)


@given(aware)
def test_datetime_roundtrip(a: dt.datetime) -> None:
    value, _ = kc.decode_datetime(kc.encode_datetime(a))
    assert value == a


def test_naive_datetime_refused() -> None:
    with pytest.raises(ValueError):
        kc.encode_datetime(dt.datetime(2020, 1, 1))


@given(st.dates(), st.dates())
def test_date_order(a: dt.date, b: dt.date) -> None:
    _check_order(kc.encode_date, a, b)


@given(st.booleans(), st.booleans())
def test_bool_order(a: bool, b: bool) -> None:
    _check_order(kc.encode_bool, a, b)


@given(st.one_of(st.integers(), st.text(), st.floats(allow_nan=False)))
def test_none_sorts_first(v) -> None:
    enc = {int: kc.encode_int, str: kc.encode_text, float: kc.encode_float}[type(v)]
    assert kc.encode_none() < enc(v)


@given(st.binary())
def test_prefix_successor(p: bytes) -> None:
    succ = kc.prefix_successor(p)
    if succ is None:
        assert p == b"\xff" * len(p)
    else:
        assert succ > p and not succ.startswith(p) or p == b""
        assert (p + b"\xff" * 5) < succ


def test_int_encodings_stay_above_none():
    """Every int that can be indexed encodes above NONE (so ranges never include None)."""
    biggest = 256**126 - 1
    assert kc.encode_int(-biggest)[:1] > kc.NONE
    assert kc.decode_int(kc.encode_int(-biggest))[0] == -biggest
    for bad in (256**126, -(256**126)):
        with pytest.raises(OverflowError):
            kc.encode_int(bad)

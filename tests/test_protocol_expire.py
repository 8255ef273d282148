"""Expiration rules: KC atoi, ktserver's xt resolution, the client's expire_time
conversion (naive datetimes are UTC), strmktime for RESTful X-Kt-Xt."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ktstore.errors import InvalidArgument
from ktstore.protocol.expire import (
    kt_atoi,
    kt_atoih,
    parse_kt_time,
    resolve_xt,
    rest_put_xt,
    to_wire_xt,
)
from ktstore.protocol.limits import INT64MAX, INT64MIN, RELATIVE_XT_LIMIT, XTMAX

NOW = 1_795_758_988


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"123", 123),
        (b"  -12abc", -12),
        (b"+7", 7),
        (b"\t\n 42 ", 42),
        (b"abc", 0),
        (b"", 0),
        (b"-", 0),
        ("1abc", 1),
        (b"\x8012", 0),  # bytes >= 0x80 are not blanks for KC
        (b"99999999999999999999", 7766279631452241919),  # wraps like C (mod 2**64)
    ],
)
def test_kt_atoi(text, value) -> None:
    assert kt_atoi(text) == value


def test_kt_atoih() -> None:
    assert kt_atoih(b"0x1F") == 31
    assert kt_atoih(b"ffz") == 255
    assert kt_atoih(b"zz") == 0


@given(st.integers(-(10**6), 10**6))
def test_atoi_matches_int(n) -> None:
    assert kt_atoi(str(n).encode()) == n


def test_resolve_xt() -> None:
    assert resolve_xt(100, NOW) == NOW + 100
    assert resolve_xt(0, NOW) == NOW
    assert resolve_xt(-1234567890, NOW) == 1234567890
    assert resolve_xt(INT64MAX, NOW) == XTMAX
    assert resolve_xt(INT64MIN, NOW) == XTMAX
    assert resolve_xt(XTMAX, NOW) == XTMAX
    assert resolve_xt(-XTMAX - 5, NOW) == XTMAX


def test_to_wire_xt_numbers() -> None:
    assert to_wire_xt(None, NOW) == INT64MAX
    assert to_wire_xt(0, NOW) == 0
    assert to_wire_xt(60, NOW) == 60
    assert to_wire_xt(0.5, NOW) == 1  # a fraction never rounds down to "now"
    assert to_wire_xt(RELATIVE_XT_LIMIT - 1, NOW) == RELATIVE_XT_LIMIT - 1
    assert to_wire_xt(RELATIVE_XT_LIMIT, NOW) == -RELATIVE_XT_LIMIT
    assert to_wire_xt(NOW + 10, NOW) == -(NOW + 10)
    assert to_wire_xt(float(NOW), NOW) == -NOW


def test_to_wire_xt_dates() -> None:
    assert to_wire_xt(dt.timedelta(minutes=2), NOW) == 120
    aware = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert to_wire_xt(aware, NOW) == -int(aware.timestamp())
    naive = dt.datetime(2026, 11, 27, 9, 0)  # naive means UTC
    assert to_wire_xt(naive, NOW) == -int(aware.timestamp())


@pytest.mark.parametrize(
    "bad",
    [True, False, -1, -0.5, float("nan"), float("inf"), "10", dt.timedelta(seconds=-1), b"1"],
)
def test_to_wire_xt_rejects(bad) -> None:
    with pytest.raises(InvalidArgument):
        to_wire_xt(bad, NOW)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100", 100),
        (" 0x10", 16),
        ("1h", 3600),
        ("5m ", 300),
        ("60s", 60),
        ("2d", 172800),
        ("2026-11-27T10:00:00+01:00", 1795770000),
        ("2026-11-27T09:00:00Z", 1795770000),
        ("2026-11-27T09:00:00.123Z", 1795770000),
        ("2026-11-27", 1795737600),
        ("2026/11/27 09:00:00", 1795770000),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 784111777),
        ("06 Nov 1994 08:49:37 +0100", 784108177),
        ("Thu, 01 Jan 1970 00:00:00 PST", 28800),
        ("", None),
        ("   ", None),
    ],
)
def test_parse_kt_time(text, value) -> None:
    assert parse_kt_time(text, NOW) == value


def test_rest_put_xt() -> None:
    assert rest_put_xt(None) == INT64MAX
    assert rest_put_xt("100") == -100  # absolute: already expired, as ktserver
    assert rest_put_xt("0") == INT64MAX
    assert rest_put_xt("garbage") == INT64MAX
    assert rest_put_xt(str(XTMAX)) == INT64MAX
    assert rest_put_xt("Sun, 06 Nov 1994 08:49:37 GMT") == -784111777

"""The pure parts of the command line: server URLs and the export line format."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ktstore.cli.jsonl import BadLine, Record, dump_record, load_record
from ktstore.errors import InvalidArgument
from ktstore.protocol.limits import XTMAX
from ktstore.urls import KtURL, parse_url


def test_url_defaults() -> None:
    u = parse_url("kt://")
    assert (u.host, u.port, u.db) == ("127.0.0.1", 1978, 0)
    assert u.client_kwargs() == {"host": "127.0.0.1", "port": 1978, "default_db": 0}


def test_url_full() -> None:
    u = parse_url("kt://example.org:2000/3?serializer=msgpack&timeout=2.5&decode_keys=false")
    assert u.client_kwargs() == {
        "host": "example.org",
        "port": 2000,
        "default_db": 3,
        "serializer": "msgpack",
        "timeout": 2.5,
        "decode_keys": False,
    }
    assert parse_url(str(u)) == u


def test_url_without_scheme_and_ipv6() -> None:
    assert parse_url("localhost:1979").port == 1979
    u = parse_url("kt://[::1]:1980/1")
    assert (u.host, u.port, u.db) == ("::1", 1980, 1)
    assert parse_url(str(u)) == u


def test_url_timeout_none_is_explicit() -> None:
    assert parse_url("kt://h?timeout=none").client_kwargs()["timeout"] is None


@pytest.mark.parametrize(
    "url, words",
    [
        ("http://h:1", "scheme"),
        ("kt://h:99999", "port"),
        ("kt://h:x", "port"),
        ("kt://h/abc", "database index"),
        ("kt://h/70000", "database index"),
        ("kt://h?serializer=yaml", "serializer"),
        ("kt://h?timeout=-1", "positive"),
        ("kt://h?timeout=soon", "number"),
        ("kt://h?colour=red", "unknown option 'colour'"),
        ("kt://h?timeout=1&timeout=2", "twice"),
        ("kt://u:p@h", "passwords"),
        ("", "empty"),
    ],
)
def test_url_errors_name_the_bad_part(url: str, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        parse_url(url)


def test_url_is_a_value() -> None:
    assert parse_url("kt://h:1/2") == KtURL("h", 1, 2)


@given(
    db=st.integers(0, 0xFFFF),
    key=st.binary(max_size=40),
    value=st.binary(max_size=200),
    xt=st.none() | st.integers(1, XTMAX - 1),
)
def test_every_record_round_trips(db: int, key: bytes, value: bytes, xt: int | None) -> None:
    line = dump_record(Record(db, key, value, xt))
    assert "\n" not in line
    assert load_record(line, 1) == Record(db, key, value, xt)
    assert load_record(line.encode("utf-8"), 1) == Record(db, key, value, xt)


def test_text_stays_readable_binary_goes_base64() -> None:
    assert dump_record(Record(0, "ключ".encode(), b"v", None)) == (
        '{"db": 0, "key": "ключ", "value": "v", "xt": null}'
    )
    assert '"key64": "/w=="' in dump_record(Record(1, b"\xff", b"v", XTMAX))
    assert dump_record(Record(1, b"k", b"v", XTMAX)).endswith('"xt": null}')


@pytest.mark.parametrize(
    "line, words",
    [
        ("{bad", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"key": "k"}', "exactly one of 'value'"),
        ('{"key": "k", "key64": "aw==", "value": ""}', "exactly one of 'key'"),
        ('{"key64": "***", "value": ""}', "not valid base64"),
        ('{"key": 1, "value": ""}', "must be a string"),
        ('{"db": -1, "key": "k", "value": ""}', "database index"),
        ('{"key": "k", "value": "", "xt": "soon"}', "xt"),
        ('{"key": "k", "value": "", "colour": 1}', "unknown field"),
    ],
)
def test_bad_lines_name_line_and_reason(line: str, words: str) -> None:
    with pytest.raises(BadLine, match=words) as info:
        load_record(line, 7)
    assert info.value.lineno == 7
    assert str(info.value).startswith("line 7: ")


def test_blank_lines_are_skipped() -> None:
    assert load_record("  \n", 3) is None

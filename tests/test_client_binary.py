"""KyotoTycoon methods that use the binary protocol: get/set/remove and their bulk forms,
serializers, expire times, the dict-style interface and argument checking."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from conftest import free_port

from ktstore import (
    KT_BINARY,
    KT_JSON,
    KT_MSGPACK,
    KT_NONE,
    KT_PICKLE,
    InvalidArgument,
    KyotoTycoon,
    SerializationError,
)
from ktstore.protocol.limits import DATA_MAX_SIZE, XTMAX


def test_get_set_remove(kt):
    assert kt.get("missing") is None
    assert kt.set("k1", "v1") == 1
    assert kt.get("k1") == "v1"
    assert kt.get_bytes("k1") == b"v1"
    assert kt.get("k1", decode_value=False) == b"v1"
    assert kt.set("k1", "v1b") == 1
    assert kt.get("k1") == "v1b"
    assert kt.remove("k1") == 1
    assert kt.remove("k1") == 0
    assert kt.get("k1") is None


def test_unicode_and_binary_keys_round_trip(kt):
    keys = ["café", "tab\tkey", "nl\nkey", "nul\x00key", "", "☃" * 50]
    for i, key in enumerate(keys):
        kt.set(key, f"value-{i}")
    assert kt.get_bulk(keys) == {k: f"value-{i}" for i, k in enumerate(keys)}
    raw = b"\xff\xfe\x00bin"
    kt.set_bytes(raw, b"\x00\x01\xff")
    assert kt.get_bytes(raw) == b"\x00\x01\xff"
    # A non-UTF-8 key comes back as the caller's bytes key (as ukt does) ...
    assert kt.get_bulk([raw, "café"], decode_values=False) == {
        raw: b"\x00\x01\xff",
        "café": b"value-0",
    }
    # ... and one passed as str with surrogate escapes comes back as that str.
    escaped = raw.decode("utf-8", "surrogateescape")
    (decoded,) = [k for k in kt.get_bulk([escaped], decode_values=False)]
    assert decoded == escaped and kt.encode_key(decoded) == raw
    assert kt.get_bytes(decoded) == b"\x00\x01\xff"


def test_decode_keys_false_returns_bytes(kt_server):
    kt = KyotoTycoon(kt_server.host, kt_server.port, decode_keys=False)
    kt.set_bulk({"a": "1", b"b": "2"})
    assert kt.get_bulk(["a", "b"]) == {b"a": "1", b"b": "2"}
    kt.close_all()


def test_bulk_operations(kt):
    data = {f"k{i:03d}": f"v{i}" for i in range(100)}
    assert kt.set_bulk(data) == 100
    assert kt.get_bulk(list(data) + ["nope"]) == data
    assert kt.get_bulk([]) == {}
    assert kt.get_bulk(["k001", "k002"], decode_values=False) == {"k001": b"v1", "k002": b"v2"}
    assert kt.remove_bulk(["k000", "k001", "nope"]) == 2
    assert kt.remove_bulk([]) == 0
    assert kt.get("k000") is None
    # set_bulk accepts an iterable of pairs too
    assert kt.set_bulk([("p1", "a"), ("p2", "b")]) == 2
    assert kt.get_bulk(["p1", "p2"]) == {"p1": "a", "p2": "b"}


def test_bulk_details_across_databases(kt):
    xt = int(time.time()) + 3600
    n = kt.set_bulk_details(
        [
            (0, "k1", "v1-0", None),
            (1, "k1", "v1-1", -xt),
            (1, "k2", "v2", -xt),
            (0, "k3", "v3", None),
        ]
    )
    assert n == 4
    res = kt.get_bulk_details([(0, "k1"), (1, "k1"), (0, "k2"), (1, "k2"), (0, "kx"), (2, "xx")])
    assert res == [(0, "k1", "v1-0", XTMAX), (1, "k1", "v1-1", xt), (1, "k2", "v2", xt)]
    raw = kt.get_bulk_details([(0, "k1")], decode_values=False)
    assert raw == [(0, "k1", b"v1-0", XTMAX)]
    # db None in a details tuple means the default database
    assert kt.get_bulk_details([(None, "k3")]) == [(0, "k3", "v3", XTMAX)]
    assert kt.remove_bulk_details([(0, "k1"), (0, "k2"), (1, "k1"), (1, "k3")]) == 2
    assert kt.get_bulk_details([(0, "k1"), (0, "k3"), (1, "k1"), (1, "k2")]) == [
        (0, "k3", "v3", XTMAX),
        (1, "k2", "v2", xt),
    ]


def test_db_argument_and_default_db(kt):
    kt.set("k", "zero")
    kt.set("k", "one", db=1)
    assert kt.get("k") == "zero"
    assert kt.get("k", db=1) == "one"
    assert kt.get_bulk(["k"], db=1) == {"k": "one"}
    kt.set_database(1)
    assert kt.get("k") == "one"
    assert kt.remove("k") == 1
    assert kt.get("k", db=0) == "zero"
    kt.set_database(0)
    assert kt.get("k") == "zero"
    client = KyotoTycoon(kt.host, kt.port, default_db=1)
    assert client.get("k") is None
    client.close_all()


def test_no_reply(kt):
    assert kt.set("nr", "v", no_reply=True) is None
    assert kt.set_bulk({"nr2": "a", "nr3": "b"}, no_reply=True) is None
    # the next request on the same connection sees the writes
    assert kt.get_bulk(["nr", "nr2", "nr3"]) == {"nr": "v", "nr2": "a", "nr3": "b"}
    assert kt.remove("nr", no_reply=True) is None
    assert kt.remove_bulk(["nr2"], no_reply=True) is None
    assert kt.set_bulk_details([(0, "nr4", "x", None)], no_reply=True) is None
    assert kt.remove_bulk_details([(0, "nr3")], no_reply=True) is None
    assert kt.get_bulk(["nr", "nr2", "nr3", "nr4"]) == {"nr4": "x"}


@pytest.mark.parametrize(
    "serializer,value",
    [
        (KT_BINARY, "text ☃"),
        (KT_JSON, {"a": [1, 2.5, None, "x"], "b": True}),
        (KT_MSGPACK, {"a": [1, 2, b"bin"], "b": {"c": None}}),
        (KT_PICKLE, {"a": (1, 2), "s": {1, 2}, "d": dt.date(2020, 1, 2)}),
        (KT_NONE, b"\x00\x01raw"),
    ],
)
def test_serializers(kt_server, serializer, value):
    kt = KyotoTycoon(kt_server.host, kt_server.port, serializer=serializer)
    kt.set("k", value)
    assert kt.get("k") == value
    kt.set_bulk({"a": value, "b": value})
    assert kt.get_bulk(["a", "b"]) == {"a": value, "b": value}
    assert kt.get_bulk_details([(0, "a")])[0][2] == value
    kt.close_all()


def test_serializer_wire_formats(kt_server):
    js = KyotoTycoon(kt_server.host, kt_server.port, serializer=KT_JSON)
    js.set("j", {"a": 1})
    assert js.get_bytes("j") == b'{"a":1}'
    none = KyotoTycoon(kt_server.host, kt_server.port, serializer=KT_NONE)
    assert none.get("j") == b'{"a":1}'
    binary = KyotoTycoon(kt_server.host, kt_server.port)
    binary.set("n", 12)  # numbers are stored as their text, as ukt does
    assert binary.get("n") == "12"
    binary.set_bytes("bad", b"\xff\xfe")
    with pytest.raises(SerializationError):
        binary.get("bad")
    with pytest.raises(SerializationError):
        binary.set("obj", object())
    with pytest.raises(SerializationError):
        js.set("obj", object())
    for c in (js, none, binary):
        c.close_all()


def test_custom_encode_decode(kt_server):
    kt = KyotoTycoon(
        kt_server.host,
        kt_server.port,
        encode_value=lambda v: ("<" + v + ">").encode(),
        decode_value=lambda b: b.decode()[1:-1],
    )
    kt.set("k", "hello")
    assert kt.get_bytes("k") == b"<hello>"
    assert kt.get("k") == "hello"
    failing = KyotoTycoon(kt_server.host, kt_server.port, decode_value=lambda b: 1 / 0)
    with pytest.raises(SerializationError):
        failing.get("k")
    kt.close_all()
    failing.close_all()


def test_dict_interface(kt):
    kt["a"] = "1"
    kt["b", 1] = "2"
    kt["c"] = ("3", 3600)
    assert kt["a"] == "1"
    assert kt["b", 1] == "2"
    assert kt["b"] is None
    assert kt["c"] == "3"
    assert kt.get_bulk_details([(0, "c")])[0][3] <= int(time.time()) + 3601
    assert "a" in kt
    assert ("b", 1) in kt
    assert ("b", 0) not in kt
    assert len(kt) == 2
    del kt["a"]
    del kt["b", 1]
    assert "a" not in kt
    assert kt.update({"x": "1"}, y="2") == 2
    assert kt.get_bulk(["x", "y"]) == {"x": "1", "y": "2"}
    assert kt.update(z="3") == 1
    assert bool(kt) is True


def _xt(kt, key, db=0):
    (rec,) = kt.get_bulk_details([(db, key)])
    return rec[3]


def test_expire_time_forms(kt):
    now = time.time()
    kt.set("rel", "v", expire_time=100)
    assert abs(_xt(kt, "rel") - (now + 100)) <= 2
    kt.set("td", "v", expire_time=dt.timedelta(minutes=5))
    assert abs(_xt(kt, "td") - (now + 300)) <= 2
    absolute = int(now) + 86400 * 365
    kt.set("abs", "v", expire_time=absolute)
    assert _xt(kt, "abs") == absolute
    aware = dt.datetime(2100, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    kt.set("aware", "v", expire_time=aware)
    assert _xt(kt, "aware") == int(aware.timestamp())
    naive = dt.datetime(2100, 1, 2, 3, 4, 5)  # naive datetimes are UTC
    kt.set("naive", "v", expire_time=naive)
    assert _xt(kt, "naive") == int(naive.replace(tzinfo=dt.timezone.utc).timestamp())
    kt.set("never", "v", expire_time=None)
    assert _xt(kt, "never") == XTMAX
    kt.set_bulk({"b1": "v", "b2": "v"}, expire_time=50)
    assert abs(_xt(kt, "b2") - (now + 50)) <= 2
    # a write without expire_time clears the expiration
    kt.set("rel", "v2")
    assert _xt(kt, "rel") == XTMAX


def test_expired_records_are_invisible(kt):
    past = dt.datetime(2001, 1, 1, tzinfo=dt.timezone.utc)
    kt.set("old", "v", expire_time=past)
    kt.set_bulk({"old2": "v"}, expire_time=past)
    assert kt.get("old") is None
    assert kt.get_bulk(["old", "old2"]) == {}
    assert not kt.exists("old")


def test_invalid_arguments_rejected_before_sending():
    # Nothing listens on this port: an InvalidArgument proves nothing was sent.
    kt = KyotoTycoon("127.0.0.1", free_port(), timeout=1)
    with pytest.raises(InvalidArgument):
        kt.get(123)
    with pytest.raises(InvalidArgument):
        kt.set(None, "v")
    with pytest.raises(InvalidArgument):
        kt.get_bulk(["ok", 1.5])
    with pytest.raises(InvalidArgument):
        kt.set("k", "v", db=-1)
    with pytest.raises(InvalidArgument):
        kt.set("k", "v", db="0")
    with pytest.raises(InvalidArgument):
        kt.get("k", db=70000)
    with pytest.raises(InvalidArgument):
        kt.get("\ud800")  # lone surrogate
    with pytest.raises(InvalidArgument):
        kt.set("k", "v", expire_time="soon")
    with pytest.raises(InvalidArgument):
        kt.set_bulk_details([(True, "k", "v", None)])
    with pytest.raises(InvalidArgument):
        kt.set_database("x")
    with pytest.raises(InvalidArgument):
        KyotoTycoon(serializer="yaml")
    with pytest.raises(InvalidArgument):
        KyotoTycoon(default_db=-2)
    with pytest.raises(InvalidArgument):
        kt.cas("k", None, None)
    with pytest.raises(InvalidArgument):
        kt.increment("k", "one")
    with pytest.raises(InvalidArgument):
        kt.increment_double("k", object())
    with pytest.raises(InvalidArgument):
        kt.match_prefix("k", max_keys="ten")
    with pytest.raises(InvalidArgument):
        kt.match_similar("k", distance=1.5)
    with pytest.raises(InvalidArgument):
        kt.vacuum(step=None)
    assert kt.pool.stats == (0, 0, 0)


class _Huge(bytes):
    """Claims to be over the protocol limit without allocating 256 MiB."""

    def __len__(self) -> int:
        return DATA_MAX_SIZE + 1


def test_oversized_value_rejected_before_sending():
    kt = KyotoTycoon("127.0.0.1", free_port(), timeout=1, encode_value=lambda v: _Huge(b"x"))
    with pytest.raises(InvalidArgument):
        kt.set("k", "v")
    with pytest.raises(InvalidArgument):
        kt.set_bulk({"k": "v"})
    with pytest.raises(InvalidArgument):
        kt.add("k", "v")
    with pytest.raises(InvalidArgument):
        kt.cas("k", "old", "new")
    assert kt.pool.stats == (0, 0, 0)


@pytest.mark.sync_only
def test_connections_are_reused(kt):
    for i in range(20):
        kt.set(f"k{i}", "v")
        kt.get(f"k{i}")
    idle, idle_http, in_use = kt.pool.stats
    assert (idle, in_use) == (1, 0)
    assert kt.close_all() == 1
    assert kt.pool.stats[:1] == (0,)
    assert kt.get("k1") == "v"


def test_bulk_fast_paths_fall_back_correctly(kt):
    # mixed key types, bytes values, numbers: every fast path must give way
    assert kt.set_bulk({"s": "1", b"b": b"2", "n": 3}) == 3
    assert kt.get_bulk(["s", b"b", "n"]) == {"s": "1", "b": "2", "n": "3"}
    assert kt.set_bulk({"raw": b"\xff"}, encode_values=False) == 1
    assert kt.get_bulk(["raw"], decode_values=False) == {"raw": b"\xff"}
    with pytest.raises(SerializationError):
        kt.get_bulk(["raw", "s"])  # not UTF-8: the serializer's typed error
    with pytest.raises(SerializationError):
        kt.set_bulk({"k": "\ud800"})
    with pytest.raises(InvalidArgument):
        kt.set_bulk({"\ud800": "v"})
    with pytest.raises(InvalidArgument):
        kt.get_bulk(["ok", "\ud800"])
    with pytest.raises(InvalidArgument):
        kt.remove_bulk([1])
    assert kt.remove_bulk(iter(["s", b"b"])) == 2
    assert kt.get_bulk(k for k in ["n"]) == {"n": "3"}


def test_hot_path_frames_match_the_bulk_encoders():
    from itertools import repeat

    from ktstore.protocol import binary as b
    from ktstore.protocol.limits import INT64MAX

    for key, value, db, xt in [
        (b"k", b"v", 0, INT64MAX),
        (b"", b"", 65535, -5),
        (b"\x00" * 300, b"x", 7, 0),
    ]:
        assert b.encode_get(db, key) == b.encode_get_bulk([(db, key)])
        for no_reply in (False, True):
            assert b.encode_set(db, key, value, xt, no_reply) == b.encode_set_bulk(
                [(db, key, value, xt)], no_reply
            )
            assert b.encode_remove(db, key, no_reply) == b.encode_remove_bulk([(db, key)], no_reply)
    keys = [b"a", b"bb", b"", b"\xff" * 70]
    values = [b"1", b"", b"333", b"\n" * 9]
    for no_reply in (False, True):
        assert b.encode_set_bulk_db(3, keys, values, 99, no_reply) == b.encode_set_bulk(
            zip(repeat(3), keys, values, repeat(99)), no_reply
        )
        assert b.encode_remove_bulk_db(3, keys, no_reply) == b.encode_remove_bulk(
            zip(repeat(3), keys), no_reply
        )
    assert b.encode_get_bulk_db(3, keys) == b.encode_get_bulk(zip(repeat(3), keys))
    assert b.encode_get_bulk_db(0, []) == b.encode_get_bulk([])
    assert b.encode_set_bulk_db(0, [], [], 0) == b.encode_set_bulk([])
    # the same refusals as the general encoders (the list encoders check sizes on the
    # whole frame, so a bytes subclass merely claiming a huge length is not one for them)
    for bad in (
        lambda: b.encode_get(0, _Huge(b"k")),
        lambda: b.encode_get(70000, b"k"),
        lambda: b.encode_set(0, b"k", _Huge(b"v"), 0),
        lambda: b.encode_set(0, b"k", b"v", INT64MAX + 1),
        lambda: b.encode_set(-1, b"k", b"v", 0),
        lambda: b.encode_remove(0, _Huge(b"k")),
        lambda: b.encode_remove(-1, b"k"),
        lambda: b.encode_set_bulk_db(0, [b"k"], [b"v"], -(2**64)),
        lambda: b.encode_remove_bulk_db(70000, [b"k"]),
    ):
        with pytest.raises(InvalidArgument):
            bad()
    with pytest.raises(ValueError):
        b.encode_set_bulk_db(0, [b"k"], [], 0)


def test_get_bulk_reply_parser_fast_and_checked_paths_agree():
    from ktstore.errors import Incomplete, ProtocolError
    from ktstore.protocol import binary as b

    records = [(0, b"k%d" % i, b"v" * i, XTMAX) for i in range(50)]
    reply = b.encode_get_bulk_reply(records)
    assert b.parse_get_bulk_reply(reply) == (records, len(reply))
    assert b.parse_get_bulk_reply(b"xx" + reply + b"yy", 2) == (records, len(reply) + 2)
    assert b.parse_get_bulk_reply(bytearray(reply)) == (records, len(reply))
    for cut in (1, 5, 6, 23, 24, len(reply) // 2, len(reply) - 1):
        with pytest.raises(Incomplete) as info:
            b.parse_get_bulk_reply(reply[:cut])
        assert info.value.need > cut
    # a size over the limit inside a short buffer: ProtocolError, not a wait for 256 MiB
    bad = bytes.fromhex("ba 00000001 0000") + (DATA_MAX_SIZE + 1).to_bytes(4, "big") + bytes(12)
    with pytest.raises(ProtocolError):
        b.parse_get_bulk_reply(bad)

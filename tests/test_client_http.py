"""KyotoTycoon methods that use HTTP TSV-RPC: conditional writes, counters, cas,
checks, matching, information, maintenance and lazy iteration."""

from __future__ import annotations

import datetime as dt

import pytest

from ktstore import KT_JSON, KT_NONE, InvalidArgument, KyotoTycoon, ServerError


def test_add_replace_append(kt):
    assert kt.add("k", "v1") is True
    assert kt.add("k", "v2") is False
    assert kt.get("k") == "v1"
    assert kt.replace("k", "v3") is True
    assert kt.replace("missing", "x") is False
    assert kt.get("missing") is None
    assert kt.get("k") == "v3"
    assert kt.append("k", "-tail") is True
    assert kt.get("k") == "v3-tail"
    assert kt.append("new", "abc") is True
    assert kt.get("new") == "abc"
    assert kt.add("k1", "x", db=1) is True
    assert kt.get("k1", db=1) == "x"
    assert kt.get("k1") is None


def test_http_writes_with_binary_data_and_expiry(kt):
    value = bytes(range(256)) * 3
    assert kt.add(b"\x00\tk\n", value, encode_value=False) is True
    assert kt.get_bytes(b"\x00\tk\n") == value
    assert kt.replace(b"\x00\tk\n", "é\r\n", expire_time=100) is True
    assert kt.get(b"\x00\tk\n") == "é\r\n"
    long_text = "plain text ☃ " * 500  # long, no control bytes: sent as raw TSV
    assert kt.add("long", long_text) is True
    assert kt.seize("long") == long_text
    (rec,) = kt.get_bulk_details([(0, b"\x00\tk\n")])
    assert rec[3] < 2**40 - 1


def test_increment(kt):
    assert kt.increment("n") == 1
    assert kt.increment("n", 5) == 6
    assert kt.increment("n", -10) == -4
    assert kt.increment("m", 1, orig=100) == 101
    assert kt.increment("n", 0) == -4
    assert len(kt.get_bytes("n")) == 8
    kt.set("text", "abc")
    with pytest.raises(ServerError) as info:
        kt.increment("text")
    assert info.value.status == 450
    assert "logical inconsistency" in info.value.message


def test_increment_double(kt):
    assert kt.increment_double("d") == 1.0
    assert kt.increment_double("d", 1.5) == 2.5
    assert kt.increment_double("d", -0.25) == pytest.approx(2.25)
    assert kt.increment_double("e", 1, orig=10.5) == 11.5
    assert len(kt.get_bytes("d")) == 16


def test_cas(kt):
    kt.set("k", "v1")
    assert kt.cas("k", "v1", "v2") is True
    assert kt.get("k") == "v2"
    assert kt.cas("k", "v1", "v3") is False
    assert kt.get("k") == "v2"
    assert kt.cas("new", None, "created") is True
    assert kt.cas("new", None, "again") is False
    assert kt.cas("new", "created", None) is True
    assert kt.get("new") is None


def test_exists_length_seize(kt):
    kt.set("k", "hello")
    assert kt.exists("k") is True
    assert kt.exists("nope") is False
    assert kt.length("k") == 5
    assert kt.length("nope") is None
    assert kt.seize("k") == "hello"
    assert kt.seize("k") is None
    kt.set("p", "x")
    assert kt.pop("p") == "x"
    kt.set("raw", "bytes")
    assert kt.seize("raw", decode_value=False) == b"bytes"


def test_match_prefix_regex_similar(kt):
    kt.set_bulk({k: "v" for k in ["aa", "ab", "abc", "b", "bb", "ac"]}, db=1)
    assert kt.match_prefix("a", db=1) == ["aa", "ab", "abc", "ac"]
    assert kt.match_prefix("a", max_keys=2, db=1) == ["aa", "ab"]
    assert kt.match_prefix("zz", db=1) == []
    assert kt.match_regex("^a.$", db=1) == ["aa", "ab", "ac"]
    assert kt.match_regex("c$", max_keys=1, db=1) == ["abc"]
    similar = kt.match_similar("ab", 1, db=1)
    assert set(similar) == {"aa", "ab", "abc", "b", "bb", "ac"}
    assert similar[0] == "ab"
    assert kt.match_similar("ab", 0, db=1) == ["ab"]
    assert kt.match_similar("abcd", 1, db=1) == ["abc"]
    assert kt.keys_nonlazy(db=1) == ["aa", "ab", "abc", "ac", "b", "bb"]
    with pytest.raises(ServerError) as info:
        kt.match_regex("(", db=1)
    assert info.value.status == 450


def test_report_status_count_size(kt):
    kt.set_bulk({"a": "1", "b": "2"})
    report = kt.report()
    assert "db_0" in report and "db_1" in report
    status = kt.status()
    assert status["count"] == 2
    assert isinstance(status["size"], int)
    assert kt.count() == 2
    assert kt.count(db=1) == 0
    assert kt.size() == status["size"]
    assert len(kt) == 2
    assert kt.databases == ["*", "%"]
    dbs = kt.list_databases()
    assert [p for p, _ in dbs] == ["*", "%"]
    assert dbs[0][1]["count"] == 2


def test_clear_vacuum_synchronize(kt):
    kt.set_bulk({"a": "1", "b": "2"})
    kt.set("c", "3", db=1)
    assert kt.vacuum() is True
    assert kt.vacuum(step=5) is True
    assert kt.synchronize() is True
    assert kt.synchronize(hard=True) is True
    assert kt.clear() is True
    assert kt.count() == 0
    assert kt.count(db=1) == 1


def test_unknown_database_index_is_a_server_error(kt):
    with pytest.raises(ServerError) as info:
        kt.status(db=7)
    assert info.value.status == 400
    assert info.value.message == "no such database"


def test_ulog_without_ulog_is_an_error(kt):
    with pytest.raises(ServerError) as info:
        kt.ulog_list()
    assert info.value.status == 400


def test_keys_values_items(kt):
    data = {f"k{i}": f"v{i}" for i in range(10)}
    kt.set_bulk(data, db=1)
    assert list(kt.keys(db=1)) == sorted(data)
    assert list(kt.values(db=1)) == [data[k] for k in sorted(data)]
    assert list(kt.items(db=1)) == sorted(data.items())
    assert sorted(kt.keys()) == []
    kt.set_bulk(data)
    assert sorted(kt) == sorted(data)
    assert sorted(kt.items()) == sorted(data.items())
    # abandoning a generator half-way releases its connection
    gen = kt.keys()
    next(gen)
    gen.close()
    assert kt.pool.stats[2] == 0


def test_serialize_dict_and_list(kt_server):
    kt = KyotoTycoon(kt_server.host, kt_server.port)
    assert kt.serialize_dict({"k": "v"}) == b"\x01\x01kv"
    assert kt.serialize_list(["x", "3", "yy"]) == b"\x01x\x013\x02yy"
    d = {"a": "1", "b": "two", "☃": "é"}
    assert kt.deserialize_dict(kt.serialize_dict(d)) == d
    assert kt.deserialize_list(kt.serialize_list(["a", "", "c"])) == ["a", "", "c"]
    assert kt.deserialize_dict(kt.serialize_dict(d), decode_values=False)["b"] == b"two"
    raw = kt.serialize_dict({"k": b"\x00\xff"}, encode_values=False)
    assert kt.deserialize_dict(raw, decode_values=False) == {"k": b"\x00\xff"}
    js = KyotoTycoon(kt_server.host, kt_server.port, serializer=KT_JSON)
    assert js.deserialize_list(js.serialize_list([{"a": 1}, [2]])) == [{"a": 1}, [2]]
    none = KyotoTycoon(kt_server.host, kt_server.port, serializer=KT_NONE)
    assert none.deserialize_list(none.serialize_list([b"\x00", b"x" * 200])) == [
        b"\x00",
        b"x" * 200,
    ]


def test_ulog_list_and_remove(server_factory, tmp_path):
    server = server_factory(["*"], extra_args=["-ulog", str(tmp_path / "ulog"), "-sid", "1"])
    kt = KyotoTycoon(server.host, server.port, timeout=5)
    kt.set("k", "v")
    logs = kt.ulog_list()
    assert len(logs) == 1
    path, size, when = logs[0]
    assert path.endswith("0000000001.ulog")
    assert int(size) > 0
    assert isinstance(when, dt.datetime) and when.tzinfo is None
    assert kt.ulog_remove(dt.datetime.now(dt.timezone.utc)) is True
    assert kt.ulog_remove() is True
    kt.close_all()


def test_increment_orig_keywords(kt):
    with pytest.raises(ServerError) as info:
        kt.increment("absent", 1, orig="try")  # fail when missing
    assert info.value.status == 450
    kt.increment("c", 5)
    assert kt.increment("c", 7, orig="set") == 7  # overwrite
    with pytest.raises(InvalidArgument):
        kt.increment("c", 1, orig="bogus")


def test_request_builder_matches_the_protocol_encoders():
    from ktstore.client.commands import NO_DB as _NO_DB
    from ktstore.protocol import http, tsv

    kt = KyotoTycoon("127.0.0.1", 1978)

    def reference(name, params, colenc):
        ctype = tsv.content_type_for(colenc)
        headers = [("Host", "127.0.0.1:1978"), ("Content-Type", ctype)]
        return http.encode_request("POST", "/rpc/" + name, headers, tsv.encode_tsv(params, colenc))

    cases = [
        ("status", [], 0, None),
        ("increment", [(b"key", b"k"), (b"num", b"1")], 2, None),
        ("set", [(b"key", b"a\tb"), (b"value", b"v")], 0, "B"),
        ("set", [(b"key", b"k"), (b"value", b"line\nbreak")], 0, "B"),
        ("set", [(b"key", b"k"), (b"value", b"cr\r")], 0, "B"),
        ("set", [(b"key", b"k"), (b"value", b"\x00\x7f")], 0, "B"),
        ("set", [(b"key", b"k"), (b"value", b"\xff\x80 high bytes stay raw")], 0, None),
        ("report", [], _NO_DB, None),
        ("ulog_remove", [(b"ts", b"1")], _NO_DB, None),
    ]
    for name, params, db, colenc in cases:
        full = params if db is _NO_DB else [(b"DB", b"%d" % db), *params]
        expected = reference(name, full, colenc)
        assert kt._build_rpc(name, list(params), db) == expected
        assert kt._build_rpc(name, list(params), db) == expected  # the cached head too

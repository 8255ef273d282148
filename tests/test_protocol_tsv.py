"""TSV bodies and column encodings: round trips, ktserver's decoding quirks, its choice
of encoding (checked against every recorded answer of the real server)."""

from __future__ import annotations

import base64
import json

import pytest
from conftest import CONFORMANCE
from hypothesis import given
from hypothesis import strategies as st

from ktstore.protocol import tsv

blobs = st.binary(max_size=300)
pairs = st.lists(st.tuples(blobs, blobs), max_size=10)
# raw TSV can only carry keys without TAB/LF and values without LF (and no trailing CR)
raw_key = st.binary(max_size=40).filter(lambda b: b"\t" not in b and b"\n" not in b)
raw_value = st.binary(max_size=40).filter(lambda b: b"\n" not in b and not b.endswith(b"\r"))


@given(pairs, st.sampled_from(["B", "U", "Q", "b", "u", "q"]))
def test_tsv_round_trip_every_colenc(ps, colenc) -> None:
    body = tsv.encode_tsv(ps, colenc)
    assert tsv.decode_tsv(body, colenc) == ps
    assert tsv.decode_tsv(bytearray(body), colenc) == ps


@given(st.lists(st.tuples(raw_key, raw_value), max_size=10))
def test_tsv_round_trip_raw(ps) -> None:
    assert tsv.decode_tsv(tsv.encode_tsv(ps, None), None) == ps


@given(pairs)
def test_server_choice_is_decodable(ps) -> None:
    colenc = tsv.choose_colenc(ps)
    assert colenc in (None, "B", "U")
    if colenc is None:
        assert all(
            len(x) <= 255 and not any(c < 0x20 or c == 0x7F for c in x) for p in ps for x in p
        )
    body = tsv.encode_tsv(ps, colenc)
    assert tsv.decode_tsv(body, colenc) == ps


def test_tsv_layout() -> None:
    assert tsv.encode_tsv([(b"a", b"1"), (b"b", b"x\ty")], None) == b"a\t1\nb\tx\ty\n"
    assert tsv.encode_tsv([(b"k", b"\x00\x01")], "B") == b"aw==\tAAE=\n"
    assert tsv.encode_tsv([(b"k", b"x\x01y")], "U") == b"k\tx%01y\n"
    assert tsv.encode_tsv([(b"k", b"a=b\xff")], "Q") == b"k\ta=3Db=FF\n"
    assert tsv.encode_tsv([], "B") == b""


def test_decode_tsv_rules() -> None:
    body = b"a\t1\r\nno tab here\nb\tx\ty\n\t\nc\t\n"
    assert tsv.decode_tsv(body, None) == [(b"a", b"1"), (b"b", b"x\ty"), (b"", b""), (b"c", b"")]
    # last line without LF, duplicate keys kept in order
    assert tsv.decode_tsv(b"k\t1\nk\t2", None) == [(b"k", b"1"), (b"k", b"2")]
    assert tsv.decode_tsv(b"", "B") == []
    assert tsv.decode_tsv(b"a2V5\tdmFs\r\n", "B") == [(b"key", b"val")]
    assert tsv.decode_tsv(b"a2V5\tdmFs\r\n", "b") == [(b"key", b"val")]


def test_url_encode() -> None:
    assert tsv.url_encode(b"aZ09_.~-") == b"aZ09_.~-"
    assert tsv.url_encode(b"a b+c/\xff\x00") == b"a%20b%2bc%2f%ff%00"


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        (b"a+b%2Bc", b"a b+c"),
        (b"%41%4a%4A", b"AJJ"),
        (b"x y\tz\x7f\x80\xffw", b"xyzw"),  # raw blanks, DEL and high bytes dropped
        (b"%4z", b"\x04"),  # non-hex second digit counts as nothing
        (b"%zz", b"\x00"),
        (b"ab%4", b"ab"),  # cut short: stop
        (b"ab%", b"ab"),
        (b"ab\x00cd", b"ab"),  # C string
        (b"plain", b"plain"),
        (b"", b""),
    ],
)
def test_url_decode_quirks(raw, decoded) -> None:
    assert tsv.url_decode(raw) == decoded


@given(st.binary(max_size=100))
def test_url_round_trip(data) -> None:
    assert tsv.url_decode(tsv.url_encode(data)) == data


def test_decode_form() -> None:
    assert tsv.decode_form(b"x=1;y=2&z=%41") == [(b"x", b"1"), (b"y", b"2"), (b"z", b"A")]
    assert tsv.decode_form(b"key=form&value=a+b%2Bc") == [(b"key", b"form"), (b"value", b"a b+c")]
    assert tsv.decode_form(b"&& flag;  k=v=w;=e") == [(b"flag", b""), (b"k", b"v=w"), (b"", b"e")]
    assert tsv.decode_form(b"") == []
    assert tsv.decode_form(b"a=1\x00&b=2") == [(b"a", b"1")]


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        (b"aGVsbG8=", b"hello"),
        (b"aGVs\nbG8=", b"hello"),  # foreign characters skipped
        (b"aGVsbG8=trailing", b"hello"),  # decoding stops after the '=' group
        (b"QQ==", b"A"),
        (b"QUI=", b"AB"),
        (b"QQ", b"\x00\x04\x10"),  # a short group without '=' keeps its unshifted bits
        (b"", b""),
        (b"!!!", b""),
    ],
)
def test_base64_lenient(raw, decoded) -> None:
    assert tsv.base64_decode_lenient(raw) == decoded


@given(st.binary(max_size=100))
def test_base64_round_trip(data) -> None:
    assert tsv.base64_decode_lenient(tsv.base64_encode(data)) == data


def test_quoted_printable() -> None:
    assert tsv.qp_encode(b"plain text") == b"plain text"
    assert tsv.qp_encode(b"a=\x00\x7f") == b"a=3D=00=7F"
    assert tsv.qp_decode(b"a=3d=3D=\r\nb=\nc") == b"a==bc"
    assert tsv.qp_decode(b"x\x01y") == b"xy"
    assert tsv.qp_decode(b"x\xc3\xa9y=C3=A9") == b"xy\xc3\xa9"  # raw high bytes dropped
    assert tsv.qp_decode(b"x=4") == b"x"


@given(st.binary(max_size=100))
def test_qp_round_trip(data) -> None:
    assert tsv.qp_decode(tsv.qp_encode(data)) == data


def test_choose_colenc_rules() -> None:
    assert tsv.choose_colenc([]) is None
    assert tsv.choose_colenc([(b"k", "höhe".encode())]) is None  # UTF-8 alone: raw
    assert tsv.choose_colenc([(b"b", b"x\x01y")]) == "U"
    assert tsv.choose_colenc([(b"num", (5).to_bytes(8, "big"))]) == "B"
    assert tsv.choose_colenc([(b"v", b"a" * 256)]) == "U"  # long but plain: U is cheaper
    assert tsv.choose_colenc([(b"v", b"a" * 255)]) is None
    assert tsv.choose_colenc([(b"v", "ü".encode() * 200)]) == "B"


def test_content_type() -> None:
    assert tsv.content_type_for(None) == "text/tab-separated-values"
    assert tsv.content_type_for("B") == "text/tab-separated-values; colenc=B"
    assert tsv.parse_content_type("text/tab-separated-values") == (
        "text/tab-separated-values",
        None,
    )
    assert tsv.parse_content_type("Text/Tab-Separated-Values; ColEnc=u") == (
        "text/tab-separated-values",
        "U",
    )
    assert tsv.parse_content_type('text/tab-separated-values; charset=x; colenc="B"')[1] == "B"
    assert tsv.parse_content_type("text/tab-separated-values; colenc=X")[1] is None
    assert tsv.parse_content_type("application/x-www-form-urlencoded") == (
        "application/x-www-form-urlencoded",
        None,
    )


def _b(s: str) -> bytes:
    return base64.b64decode(s[4:]) if s.startswith("b64:") else s.encode()


def test_choice_matches_every_recorded_answer() -> None:
    checked = 0
    for name in ("http", "lua"):
        data = json.loads((CONFORMANCE / f"{name}.json").read_text())
        for scenario in data["scenarios"]:
            for step in scenario["steps"]:
                response = step.get("response")
                if not response or "pairs" not in response:
                    continue
                ps = sorted((_b(k), _b(v)) for k, v in response["pairs"])
                want = tsv.parse_content_type(response["content_type"])[1]
                assert tsv.choose_colenc(ps) == want, step["request"]
                checked += 1
    assert checked > 100


@given(st.text(alphabet="QUJDabz019+/=\n!", max_size=24).map(str.encode))
def test_base64_fast_path_agrees_with_kc_emulation(data) -> None:
    assert tsv.base64_decode_lenient(data) == tsv._kc_base64_decode(data)


@given(st.text(alphabet="QUJ=\t\n\r!", max_size=40).map(str.encode))
def test_b64_body_agrees_with_field_by_field(body) -> None:
    expected = [
        (tsv._kc_base64_decode(k), tsv._kc_base64_decode(v)) for k, v in tsv.decode_tsv(body, None)
    ]
    assert tsv.decode_tsv(body, "B") == expected


def _url_decode_reference(data: bytes) -> bytes:
    """KC's url decoder, byte by byte, as the reference for the fast path."""
    data = data.split(b"\0", 1)[0]
    out = bytearray()
    hexv = {c: int(chr(c), 16) for c in b"0123456789abcdefABCDEF"}
    i = 0
    while i < len(data):
        c = data[i]
        if c == 0x25:
            if i + 1 >= len(data):
                break
            num = hexv.get(data[i + 1], 0)
            if i + 2 >= len(data):
                break
            d = hexv.get(data[i + 2])
            out.append(num * 16 + d if d is not None else num)
            i += 3
        elif c == 0x2B:
            out.append(0x20)
            i += 1
        else:
            if 0x20 < c < 0x7F:
                out.append(c)
            i += 1
    return bytes(out)


@given(st.text(alphabet="%4aFz+ \x01\x7f\xff\x00x", max_size=30).map(lambda s: s.encode("latin-1")))
def test_url_decode_matches_reference(data) -> None:
    assert tsv.url_decode(data) == _url_decode_reference(data)


@given(st.binary(max_size=60))
def test_url_decode_matches_reference_binary(data) -> None:
    assert tsv.url_decode(data) == _url_decode_reference(data)
    assert tsv.url_decode(tsv.url_encode(data)) == data

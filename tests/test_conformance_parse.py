"""The client side of the protocol core understands every answer a real ktserver gave.

HTTP (``http.json``, ``lua.json``): each recorded response is rebuilt as bytes (status
line, the recorded Content-Type and headers, the body TSV-encoded with the recorded
colenc, or the raw REST body) and must come back through ``parse_response`` +
``decode_tsv`` as the recorded rows. Binary (``binary.json``): every recorded reply
parses completely with the parser for its request's magic byte, every prefix of it is
Incomplete, and our encoders reproduce the recorded requests and replies byte for byte.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from conftest import CONFORMANCE

from ktstore.errors import Incomplete, ProtocolError
from ktstore.protocol import binary, http, tsv


def _bytes(value: str) -> bytes:
    return base64.b64decode(value[4:]) if value.startswith("b64:") else value.encode()


def _steps(name: str) -> list[tuple[str, int, dict]]:
    data = json.loads((CONFORMANCE / f"{name}.json").read_text())
    return [
        (scenario["name"], i, step)
        for scenario in data["scenarios"]
        for i, step in enumerate(scenario["steps"])
        if "sleep" not in step
    ]


HTTP_STEPS = _steps("http") + _steps("lua")
BINARY_STEPS = _steps("binary")


def _rebuild(request: dict, response: dict) -> bytes:
    headers = list((response.get("headers") or {}).items())
    ctype = response.get("content_type")
    if ctype is not None:
        headers.append(("Content-Type", ctype))
    if "pairs" in response:
        colenc = tsv.parse_content_type(ctype)[1]
        pairs = [(_bytes(k), _bytes(v)) for k, v in response["pairs"]]
        body = tsv.encode_tsv(pairs, colenc)
    else:
        body = _bytes(response["body"])
    head_only = request["method"] == "HEAD"
    return http.encode_response(response["status"], headers, body, head_only, now=0)


@pytest.mark.parametrize(
    "step", [s for _, _, s in HTTP_STEPS], ids=[f"{n}-{i}" for n, i, _ in HTTP_STEPS]
)
def test_http_answer_parses(step: dict) -> None:
    request, response = step["request"], step["response"]
    raw = _rebuild(request, response)
    head, body, end = http.parse_response(raw + b"HTTP/1.1 next", 0, request["method"])
    assert end == len(raw)
    assert head.status == response["status"]
    assert head.reason == http.reason_phrase(response["status"])
    for name, value in (response.get("headers") or {}).items():
        assert head.headers[name.lower()] == value
    if "pairs" in response:
        media, colenc = tsv.parse_content_type(head.headers["content-type"])
        assert media == tsv.TSV_MEDIA_TYPE
        expected = [(_bytes(k), _bytes(v)) for k, v in response["pairs"]]
        assert tsv.decode_tsv(body, colenc) == expected
    else:
        assert body == _bytes(response["body"])
    # a client reading byte by byte gets Incomplete, never a wrong answer
    for cut in range(0, len(raw), max(1, len(raw) // 40)):
        with pytest.raises(Incomplete) as info:
            http.parse_response(raw[:cut], 0, request["method"])
        assert cut < info.value.need <= len(raw)


def _reply_parser(magic: int):
    return lambda buf, pos=0: binary.parse_reply(buf, pos, magic)


@pytest.mark.parametrize(
    "step", [s for _, _, s in BINARY_STEPS], ids=[f"{n}-{i}" for n, i, _ in BINARY_STEPS]
)
def test_binary_answer_parses(step: dict) -> None:
    request = bytes.fromhex(step["request_hex"])
    reply = bytes.fromhex(step["response_hex"])
    magic = request[0]
    if magic not in (
        binary.MAGIC_SET_BULK,
        binary.MAGIC_REMOVE_BULK,
        binary.MAGIC_GET_BULK,
        binary.MAGIC_PLAY_SCRIPT,
    ):
        with pytest.raises(ProtocolError):
            binary.parse_request(request)
        assert reply == b""  # ktserver closed without answering
        return
    # the request side: our server parses it and our client encodes it identically
    req, end = binary.parse_request(request)
    assert end == len(request)
    if isinstance(req, binary.SetBulk):
        assert binary.encode_set_bulk(req.records, req.no_reply) == request
    elif isinstance(req, binary.RemoveBulk):
        assert binary.encode_remove_bulk(req.keys, req.no_reply) == request
    elif isinstance(req, binary.GetBulk):
        assert binary.encode_get_bulk(req.keys) == request
    else:
        assert binary.encode_play_script(req.name, req.params, req.no_reply) == request
    if not reply:
        assert req.no_reply
        return
    parse = _reply_parser(magic)
    result, end = parse(reply + b"\xb8", 0)
    assert end == len(reply)
    for cut in range(len(reply)):
        with pytest.raises(Incomplete) as info:
            parse(reply[:cut])
        assert cut < info.value.need <= len(reply)
    # and the server side encodes the same reply bytes
    if result is binary.ERROR_REPLY:
        assert reply == binary.ERROR_REPLY_BYTES
    elif magic == binary.MAGIC_GET_BULK:
        assert binary.encode_get_bulk_reply(result) == reply
    elif magic == binary.MAGIC_PLAY_SCRIPT:
        assert binary.encode_play_script_reply(result) == reply
    else:
        assert binary.encode_count_reply(magic, result) == reply


def test_corpus_is_not_empty() -> None:
    assert len(HTTP_STEPS) > 200
    assert len(BINARY_STEPS) > 15
    assert Path(CONFORMANCE / "README.md").exists()

"""Replay the recorded Lua answers of a real ktserver against our script host.

``lua.json`` (HTTP play_script) and the play_script frames of ``binary.json``
were recorded with ``probe.lua``; here the same procedures run directly on a
:class:`ScriptHost` over fresh :class:`Database` objects, so the host is held
to the recordings even without the network server (which has its own replay
test).  The few non-script steps (``clear``, ``set_bulk``) are applied to the
database directly.
"""

from __future__ import annotations

import base64
import json

import pytest
from conftest import CONFORMANCE

from ktstore.protocol import binary
from ktstore.protocol.expire import resolve_xt
from ktstore.server.database import Database
from ktstore.server.scripting import RV_INTERNAL, RV_INVALID, RV_LOGIC, RV_SUCCESS, ScriptHost

PROBE = CONFORMANCE / "probe.lua"


def _b(s: str) -> bytes:
    if s.startswith("b64:"):
        return base64.b64decode(s[4:])
    return s.encode("utf-8")


def _host(names: list[str]) -> tuple[ScriptHost, list[Database]]:
    dbs = [Database(n) for n in names]
    return ScriptHost(str(PROBE), dbs, [db.name for db in dbs], log=lambda k, m: None), dbs


def _http_steps() -> list[tuple[int, dict]]:
    data = json.loads((CONFORMANCE / "lua.json").read_text())
    (scenario,) = data["scenarios"]
    return list(enumerate(scenario["steps"]))


_STATUS_RV = {200: RV_SUCCESS, 400: RV_INVALID, 450: RV_LOGIC, 500: RV_INTERNAL}


def test_lua_json_replay() -> None:
    data = json.loads((CONFORMANCE / "lua.json").read_text())
    (scenario,) = data["scenarios"]
    host, dbs = _host(scenario["databases"])
    checked = 0
    for i, step in enumerate(scenario["steps"]):
        req, resp = step["request"], step["response"]
        pairs = [(_b(k), _b(v)) for k, v in req.get("pairs", [])]
        if req["path"] == "/rpc/clear":
            dbs[0].clear()
            continue
        if req["path"] == "/rpc/set_bulk":
            for k, v in pairs:
                dbs[0].set(k[1:], v)
            continue
        assert req["path"] == "/rpc/play_script"
        params = dict(pairs)
        name = params.get(b"name")
        if not name or not name.isalnum():
            continue  # refused by the HTTP layer before the host is involved
        args = [(k[1:], v) for k, v in pairs if k.startswith(b"_")]
        result = host.call(name, args)
        status = resp["status"]
        if status == 501:
            assert result.missing, (i, name)
            continue
        assert not result.missing
        assert result.rv == _STATUS_RV[status], (i, name, result)
        if status == 200:
            expected = [(_b(k)[1:], _b(v)) for k, v in resp.get("pairs", [])]
            assert result.outputs == expected, (i, name)
        checked += 1
    assert checked >= 20


def test_binary_json_play_script_replay() -> None:
    data = json.loads((CONFORMANCE / "binary.json").read_text())
    (scenario,) = [s for s in data["scenarios"] if "probe.lua" in s["server_args"]]
    host, dbs = _host(scenario["databases"])
    checked = 0
    for step in scenario["steps"]:
        raw = bytes.fromhex(step.get("request_hex", ""))
        if not raw or raw[0] not in (binary.MAGIC_PLAY_SCRIPT, binary.MAGIC_SET_BULK, 0xB9):
            continue
        req, _end = binary.parse_request(raw, 0)
        if isinstance(req, binary.SetBulk):  # the records the later procedures see
            for idx, key, value, xt in req.records:
                if idx < len(dbs):
                    dbs[idx].set(key, value, resolve_xt(xt, dbs[idx].now()))
            continue
        if isinstance(req, binary.RemoveBulk):
            for idx, key in req.keys:
                if idx < len(dbs):
                    dbs[idx].remove(key)
            continue
        result = host.call(req.name, req.params)
        reply = bytes.fromhex(step["response_hex"])
        if not reply:
            continue  # no-reply flag
        outputs, _end = binary.parse_play_script_reply(reply, 0)
        if outputs is binary.ERROR_REPLY:
            assert result.rv != RV_SUCCESS or result.missing
        else:
            assert result.rv == RV_SUCCESS and not result.missing
            assert result.outputs == outputs
        checked += 1
    assert checked >= 4


@pytest.mark.parametrize("name", ["faillogic", "failinvalid", "failraise"])
def test_failures_are_not_missing(name: str) -> None:
    host, _ = _host(["*"])
    result = host.call(name.encode(), [])
    assert not result.missing
    assert result.rv != RV_SUCCESS

"""EmbeddedServer with the built-in server (a subprocess, like a real ktserver)."""

from __future__ import annotations

import sys

import pytest

from ktstore import KT_JSON, EmbeddedServer, KTConnectionError, KyotoTycoon


def test_run_stop_and_client():
    server = EmbeddedServer(server="builtin", quiet=True)
    client = server.run()
    try:
        assert isinstance(client, KyotoTycoon)
        assert server.client is client
        assert server.running
        assert 0 < server.port <= 32767
        assert client.set("k1", "v1") == 1
        assert client.get("k1") == "v1"
        assert client.databases == ["*"]
    finally:
        assert server.stop() is True
    assert not server.running
    assert server.stop() is False
    with pytest.raises(KTConnectionError):
        server.client  # noqa: B018


def test_context_manager_databases_and_serializer():
    with EmbeddedServer(
        server="builtin", database=["*", "%"], serializer=KT_JSON, quiet=True
    ) as server:
        kt = server.client
        kt.set("k", {"a": [1, 2]}, db=1)
        assert kt.get("k", db=1) == {"a": [1, 2]}
        assert kt.databases == ["*", "%"]
        proc = server._proc
    assert proc.returncode is not None  # reaped


def test_command_line():
    server = EmbeddedServer(server="builtin", port=23456, server_args=["-th", "4"])
    cmd = server.command(23456)
    assert cmd[:3] == [sys.executable, "-m", "ktstore.server"]
    assert cmd[-1] == "*"
    assert cmd[cmd.index("-port") + 1] == "23456"
    assert cmd[cmd.index("-host") + 1] == "127.0.0.1"
    assert "-th" in cmd
    own = EmbeddedServer(server="/opt/kt/bin/ktserver", server_args=["-scr", "mine.lua"])
    cmd = own.command(20000)
    assert cmd[0] == "/opt/kt/bin/ktserver"
    assert cmd.count("-scr") == 1 and cmd[cmd.index("-scr") + 1] == "mine.lua"


def test_scr_is_passed_when_kt_lua_exists():
    from ktstore.resources import kt_lua_path

    try:
        path = kt_lua_path()
    except FileNotFoundError:
        pytest.skip("kt.lua is not there yet")
    cmd = EmbeddedServer(server="builtin").command(20000)
    assert cmd[cmd.index("-scr") + 1] == str(path)


def test_failing_server_raises():
    server = EmbeddedServer(
        server=sys.executable, server_args=["-c", "raise SystemExit(3)"], quiet=True
    )
    # python -c ... exits at once: run() must report it, not hang
    with pytest.raises(KTConnectionError):
        server.run()
    assert not server.running


def test_bad_port_rejected():
    from ktstore import InvalidArgument

    with pytest.raises(InvalidArgument):
        EmbeddedServer(port=40000)

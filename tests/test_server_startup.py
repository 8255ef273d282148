"""What the server loads before it listens.

A restarted server should answer within a fraction of a second, and most of that is
Python importing modules: the server must not import the client (dependencies point
client -> protocol <- server), and the HTTP/RPC side and the regex engine are loaded
by the first request that needs them."""

from __future__ import annotations

import subprocess
import sys

from ktstore.server import Server


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return set(out.split())


def test_server_start_path_imports_neither_client_nor_http_side() -> None:
    mods = _modules_after(
        "from ktstore.server.config import parse_args\n"
        "from ktstore.server.core import Server\n"
        "from ktstore.server.database import DatabaseOpenError"
    )
    assert "ktstore.server.core" in mods
    loaded_late = {
        "ktstore.client",
        "ktstore.server.httpserver",
        "ktstore.server.rpc",
        "ktstore.server.matching",
        "ktstore.server.posixregex",
        "ktstore.server.scripting",
    }
    assert not (mods & loaded_late)


def test_lazily_loaded_parts_work_on_first_use() -> None:
    from ktstore import KyotoTycoon

    srv = Server(["*"], host="127.0.0.1", port=0)
    srv.start()
    try:
        kt = KyotoTycoon(host="127.0.0.1", port=srv.port)
        try:
            kt.set_bulk({"a1": "x", "b2": "y"})  # binary first
            assert kt.match_regex("^a") == ["a1"]  # then HTTP and the regex engine
        finally:
            kt.close()
    finally:
        srv.stop()

"""The fixtures users get: the pytest plugin (found through its entry point by a fresh
pytest process, as in a user's project), the context manager, and py.typed."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ktstore
from ktstore.errors import KTConnectionError
from ktstore.testing import ThrowawayServer, running_server

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "testing.md"


def _blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_docs_example_runs_with_only_the_entry_point(tmp_path: Path) -> None:
    """The example test of docs/testing.md passes in a project that only installed
    ktstore: no conftest, no pytest_plugins line, plugins loaded from entry points."""
    example = _blocks(DOC.read_text("utf-8"))[0]
    assert "def test_" in example
    (tmp_path / "test_accounts.py").write_text(example)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_DISABLE_PLUGIN_AUTOLOAD"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout


def test_docs_unittest_example(tmp_path: Path) -> None:
    code = next(b for b in _blocks(DOC.read_text("utf-8")) if "unittest" in b)
    (tmp_path / "test_cache.py").write_text(code)
    result = subprocess.run(
        [sys.executable, "-m", "unittest", "-q", "test_cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Ran 1 test" in result.stderr


def test_fixtures_are_fresh_per_test_first(ktstore_client, ktstore_server) -> None:
    assert ktstore_client.count() == 0
    ktstore_client.set("left-behind", "x")
    assert ktstore_server.url == f"kt://127.0.0.1:{ktstore_server.port}/0"


def test_fixtures_are_fresh_per_test_second(ktstore_client) -> None:
    assert ktstore_client.get("left-behind") is None


def test_async_client_fixture_serves_the_same_server(ktstore_async_client, ktstore_client) -> None:
    """The asyncio fixture talks to the test's server (what one client writes the other
    reads), from a loop made by the test, and needs nothing from that loop at teardown."""
    from ktstore.client.aio import AsyncKyotoTycoon

    assert isinstance(ktstore_async_client, AsyncKyotoTycoon)
    ktstore_client.set("shared", "1")

    async def scenario():
        await ktstore_async_client.set("from-async", "2")
        return await ktstore_async_client.get("shared")

    assert asyncio.run(scenario()) == "1"
    assert ktstore_client.get("from-async") == "2"
    assert ktstore_async_client.pool.conns  # closed by the fixture after the loop ended


def test_store_fixture_is_the_tree_database(ktstore_store, ktstore_server) -> None:
    ktstore_store["k"] = "v"
    assert ktstore_store.is_tree()
    assert ktstore_server.client().get("k", db=1) is not None


def test_running_server_stops_and_closes(tmp_path: Path) -> None:
    with running_server(["*"], script=False) as server:
        kt = server.client()
        kt.set("k", "v")
        with pytest.raises(Exception, match="procedure|script"):
            kt.raw_script("ktstoreversion")
        port = server.port
    with pytest.raises(KTConnectionError):
        ktstore.KyotoTycoon(port=port, timeout=2).count()


def test_running_server_stops_on_error() -> None:
    seen: list[ThrowawayServer] = []
    with pytest.raises(RuntimeError), running_server(["*"]) as server:
        seen.append(server)
        raise RuntimeError("test failed")
    with pytest.raises(KTConnectionError):
        ktstore.KyotoTycoon(port=seen[0].port, timeout=2).count()


def test_running_server_refuses_a_missing_script(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), running_server(script=tmp_path / "nope.lua"):
        pass


def test_py_typed_ships_in_the_package() -> None:
    """PEP 561 marker next to the modules (flit puts the package directory, so
    this file, into the wheel)."""
    assert (Path(ktstore.__file__).parent / "py.typed").is_file()

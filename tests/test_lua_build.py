"""lua/kt.lua is the build output of lua/src/*.lua (lua/build.py), never edited by hand."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from ktstore.errors import ScriptError

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "lua" / "build.py"


def _build_module():
    spec = importlib.util.spec_from_file_location("ktstore_lua_build", BUILD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_kt_lua_is_the_build_output():
    built = _build_module().build()
    assert (ROOT / "lua" / "kt.lua").read_text(encoding="utf-8") == built, (
        "lua/kt.lua is stale: run `python lua/build.py`"
    )


def test_build_concatenates_sources_in_name_order(tmp_path):
    module = _build_module()
    src = tmp_path / "src"
    src.mkdir()
    (src / "10_b.lua").write_text("local b = 2\n")
    (src / "00_a.lua").write_text("local a = 1")  # no final newline: one is added
    text = module.build(src)
    assert text == module.BANNER + "local a = 1\nlocal b = 2\n"


def test_check_command_passes_on_the_repository():
    done = subprocess.run(
        [sys.executable, str(BUILD), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_every_source_area_is_present():
    names = [p.name for p in _build_module().sources()]
    assert names[0] == "00_prelude.lua"
    for area in ("hash", "list", "set", "queue", "schedule", "models", "ukt"):
        assert any(area in n for n in names), area


# -- one convention across the sources ------------------------------------------------------

SRC = ROOT / "lua" / "src"


def test_conventions_are_defined_once_in_the_prelude():
    """XTMAX, the database lookup and the error wrapper exist once (00_prelude.lua);
    every other source uses them instead of its own copy."""
    import re

    for path in sorted(SRC.glob("*.lua")):
        if path.name == "00_prelude.lua":
            continue
        text = path.read_text(encoding="utf-8")
        assert "1099511627775" not in text, path.name  # XTMAX
        assert "kt.dbs[" not in text, path.name  # getdb / finddb
        assert not re.search(r"(?m)^function \w+\(inmap, outmap\)", text), path.name
        assert "pcall(body" not in text, path.name


@pytest.mark.parametrize(
    "proc", ["hlen", "llen", "queuecount", "schedulecount", "modelseq", "modelscan", "expire_time"]
)
def test_every_area_reports_a_bad_database_the_same_way(kt, proc):
    """Containers, queues, schedules, models and ukt's procedures: a database that
    does not exist is a 400 ScriptError naming the procedure (the one selector, the
    one error convention; the client passes ``errout`` to get the message)."""
    with pytest.raises(ScriptError) as info:
        kt._lua_call(proc, [(b"key", b"k"), (b"db", b"99")])
    assert info.value.status == 400
    assert info.value.message.startswith(proc + ": ")

"""lua/kt.lua is the build output of lua/src/*.lua (lua/build.py), never edited by hand."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

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

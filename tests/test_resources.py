"""The Lua script ships inside the package (a wheel has no repository root)."""

from pathlib import Path

from ktstore.resources import kt_lua_path

ROOT = Path(__file__).resolve().parent.parent


def test_packaged_kt_lua_is_the_repository_script() -> None:
    packaged = ROOT / "ktstore" / "lua" / "kt.lua"
    assert packaged.read_bytes() == (ROOT / "lua" / "kt.lua").read_bytes()
    assert kt_lua_path().read_bytes() == (ROOT / "lua" / "kt.lua").read_bytes()

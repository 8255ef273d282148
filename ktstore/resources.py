"""Where the files that ship with ktstore are (our Lua script)."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def kt_lua_path() -> Path:
    """Path of ``kt.lua``, the server-side procedures the client's Lua methods call.

    In a source checkout (editable install) this is ``lua/kt.lua`` at the repository
    root; an installed wheel carries a copy inside the package.
    """
    for candidate in (_HERE / "lua" / "kt.lua", _HERE.parent / "lua" / "kt.lua"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError("kt.lua is not installed with this copy of ktstore")

"""Which Lua the host embeds: LuaJIT 2.1 when lupa ships it, else PUC Lua 5.1.

Both run Lua 5.1 code (ktserver's dialect).  LuaJIT's interpreter runs the
container and model procedures of ``lua/kt.lua`` about 1.5x faster than PUC
Lua 5.1 (measured with the host alone: a ``hset`` on a 100-field hash 94 ->
56 us, a model save 48 -> 39 us), and every Lua test plus the recorded
``lua.json`` answers pass on both.  Its JIT compiler stays **off**: compiled
traces never run debug hooks, so a compiled loop would escape the time budget
(the sandbox calls ``jit.off()`` and removes the ``jit`` module).

``KTSTORE_LUA=lua51`` (or ``luajit21``) in the environment, or the host's
``runtime`` argument, picks one explicitly (tests run the sandbox on both).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

#: Tried in this order when nothing is asked for.
PREFERRED = ("luajit21", "lua51")


def load(name: str | None = None) -> ModuleType:
    """The lupa module for ``name`` (``None``: the environment, else the fastest present)."""
    name = name or os.environ.get("KTSTORE_LUA") or None
    if name is not None:
        if name not in PREFERRED:
            raise ValueError(f"unknown Lua runtime {name!r} (choose from {', '.join(PREFERRED)})")
        return importlib.import_module(f"lupa.{name}")
    for candidate in PREFERRED:
        try:
            return importlib.import_module(f"lupa.{candidate}")
        except ImportError:  # pragma: no cover - a lupa build without LuaJIT
            continue
    raise ImportError("lupa has no Lua 5.1 runtime")  # pragma: no cover

"""Which Lua the host embeds: LuaJIT 2.1 when lupa ships it, else PUC Lua 5.1.

Both run Lua 5.1 code (ktserver's dialect), and every Lua test plus the
recorded ``lua.json`` answers pass on both.  Measured with the host alone
(``lua/kt.lua``, in-process, CPU time on a shared machine, so roughly): a
``hset`` on a 100-field hash took about 130 us on PUC Lua 5.1 with the dump
codecs in Python, 94 us with them in Lua, 43 us on LuaJIT's interpreter and
25 us once LuaJIT compiles the codecs; a model save about 65 -> 40 us.

LuaJIT's compiled traces never run debug hooks, so a compiled loop would
escape the time budget.  With a time limit, every function (the script's,
the host's, whatever ``loadstring`` makes later) is barred from the compiler
except ``kt.mapload/mapdump/arrayload/arraydump``, whose loops are bounded by
their input and charged to the budget; an unsafe script could load unbarred
code, so there the compiler is off altogether (see ``host.py``).

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

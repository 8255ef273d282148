"""The client's shape: old import paths work, the client modules import each other
without cycles, and containers/cursors/Store use only the client interface."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "ktstore"


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("ktstore.client", ["KyotoTycoon", "AsyncKyotoTycoon"]),
        ("ktstore.connection", ["Connection", "DEFAULT_TIMEOUT", "fork_generation"]),
        ("ktstore.pool", ["Pool"]),
        ("ktstore.cursor", ["Cursor", "CursorNotSupported"]),
        ("ktstore.containers", ["Hash", "List", "Set", "Queue", "Schedule"]),
        ("ktstore.lua_api", ["LuaMethods", "LuaProcedures", "XTMAX"]),
        ("ktstore", ["KyotoTycoon", "AsyncKyotoTycoon", "AsyncStore", "Store", "Cursor"]),
    ],
)
def test_old_and_new_import_paths(module, names):
    mod = importlib.import_module(module)
    for name in names:
        assert getattr(mod, name) is not None


def _module_imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        deps = set()
        for node in ast.parse(path.read_text()).body:  # module level: what loads
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ktstore"):
                deps.add(node.module)
        graph[name] = deps
    return graph


def test_client_modules_have_no_import_cycles():
    graph = _module_imports()
    client = {m for m in graph if m.startswith("ktstore.client.")}

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for dep in graph.get(todo.pop(), ()):
                if dep in client and dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    assert not [m for m in client if m in reach(m)]
    # and the protocol core never imports the client
    for name, deps in graph.items():
        if name.startswith("ktstore.protocol"):
            assert not any(d.startswith("ktstore.client") for d in deps), name


@pytest.mark.parametrize("module", ["containers.py", "cursor.py"])
def test_containers_and_cursors_use_only_the_public_interface(module):
    text = (ROOT / "client" / module).read_text()
    assert not re.findall(r"\b(?:kt|protocol|client)\._[a-z]", text)

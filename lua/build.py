"""Build ``lua/kt.lua`` from the sources in ``lua/src/``.

Why a build: ktserver loads ONE script (``-scr``), but the procedures are easier to
own and review per area (containers, queues, schedules, models, ukt compatibility).
The sources are plain Lua fragments of one chunk: they share the locals of the files
before them (``00_prelude.lua`` defines the error convention, the database selector
and ``XTMAX`` that every other file uses), so the build is a concatenation in file
name order behind a banner, with nothing else added.  Lua 5.1 caps a chunk at 200
locals: a new area should keep its helpers in one table (as ``90_ukt.lua`` does).

Usage (from anywhere)::

    python lua/build.py          # rewrite lua/kt.lua
    python lua/build.py --check  # exit 1 if lua/kt.lua is not the build output

``tests/test_lua_build.py`` runs the check, so a stale ``kt.lua`` fails the suite.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src"
TARGET = HERE / "kt.lua"

BANNER = (
    "-- GENERATED FILE: built by lua/build.py from lua/src/*.lua.  Edit the sources,\n"
    "-- then run `python lua/build.py` (tests/test_lua_build.py checks it is current).\n"
    "--\n"
)


def sources(directory: Path = SOURCES) -> list[Path]:
    """The source files in build order (their names start with a two-digit rank)."""
    return sorted(directory.glob("*.lua"))


def build(directory: Path = SOURCES) -> str:
    """The text of kt.lua built from ``directory``."""
    parts = [BANNER]
    for path in sources(directory):
        text = path.read_text(encoding="utf-8")
        if not text.endswith("\n"):
            text += "\n"
        parts.append(text)
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only check that lua/kt.lua is current"
    )
    args = parser.parse_args(argv)
    text = build()
    current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else None
    if args.check:
        if current != text:
            print(f"{TARGET} is stale: run `python lua/build.py`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        TARGET.write_text(text, encoding="utf-8")
        print(f"wrote {TARGET} ({len(sources())} sources, {text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

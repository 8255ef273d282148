"""What every storage engine of ktstore-server shares: database specs, KC error codes,
visitor sentinels.

Why a module of its own: the in-memory engine (:mod:`ktstore.server.database`), the
on-disk engine (:mod:`ktstore.server.filedb`), the cursors and the file-format code
all need these names, and none of them should import another engine to get them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ktstore.protocol.rpc import KC_ERROR_NAMES

__all__ = [
    "REMOVE",
    "NOP",
    "Visitor",
    "DatabaseOpenError",
    "parse_db_spec",
    "ERR_SUCCESS",
    "ERR_NOIMPL",
    "ERR_INVALID",
    "ERR_NOREPOS",
    "ERR_NOPERM",
    "ERR_BROKEN",
    "ERR_DUPREC",
    "ERR_NOREC",
    "ERR_LOGIC",
    "ERR_SYSTEM",
    "ERR_MISC",
    "ERROR_NAMES",
]

# Kyoto Cabinet error codes and their names (kcdb.h), as ``db:error()`` and the
# ``DB: <code>: <name>: <message>`` RPC texts report them.
ERR_SUCCESS = 0
ERR_NOIMPL = 1
ERR_INVALID = 2
ERR_NOREPOS = 3
ERR_NOPERM = 4
ERR_BROKEN = 5
ERR_DUPREC = 6
ERR_NOREC = 7
ERR_LOGIC = 8
ERR_SYSTEM = 9
ERR_MISC = 15
ERROR_NAMES = KC_ERROR_NAMES


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: A visitor returns this to delete the record it was shown.
REMOVE: Any = _Sentinel("REMOVE")
#: A visitor may return this (or ``None``) to leave the record unchanged.
NOP: Any = _Sentinel("NOP")

#: ``visitor(key, value_or_None, xt) -> None | NOP | REMOVE | (new_value, new_xt_or_None)``.
#: ``value`` is ``None`` (and ``xt`` is ``XTMAX``) for a missing or expired record.
#: A ``new_xt`` of ``None`` keeps the current xt of an existing record (XTMAX for a
#: new one); otherwise it is an absolute time.
Visitor = Callable[[bytes, "bytes | None", int], Any]

_MEMORY_HASH = {"*", ":", "-"}
_MEMORY_TREE = {"%", "+"}
_HASH_EXT = {"kch", "hdb", "kcd", "ddb", "kcph", "phdb", "kcs", "sdb", "kcc", "cdb"}
_TREE_EXT = {"kct", "tdb", "kcf", "fdb", "kcpt", "ptdb", "kcg", "gdb"}
_MEMORY_EXT = {"kcph", "phdb", "kcpt", "ptdb", "kcs", "sdb", "kcc", "cdb", "kcg", "gdb"}
_TYPE_PARAM = {
    "phash": ("hash", False),
    "ptree": ("tree", False),
    "stash": ("hash", False),
    "cache": ("hash", False),
    "grass": ("tree", False),
    "hash": ("hash", True),
    "tree": ("tree", True),
    "dir": ("hash", True),
    "forest": ("tree", True),
}
# KC type numbers reported by ``status`` (kcdb.h / kcpolydb.h).
_TYPE_NUMBERS = {"-": 16, "+": 17, ":": 24, "*": 32, "%": 33}


class DatabaseOpenError(Exception):
    """A database spec could not be opened (bad type, foreign file, I/O error)."""


def _atoix(text: str) -> int:
    """KC's atoix: an integer with an optional k/m/g/t/p/e binary suffix."""
    m = re.match(r"\s*([-+]?\d+(?:\.\d*)?)\s*([kmgtpeKMGTPE]?)", text)
    if not m:
        return 0
    num = float(m.group(1))
    mult = {
        "": 1,
        "k": 1 << 10,
        "m": 1 << 20,
        "g": 1 << 30,
        "t": 1 << 40,
        "p": 1 << 50,
        "e": 1 << 60,
    }
    return int(num * mult[m.group(2).lower()])


def parse_db_spec(spec: str) -> tuple[str, str, bool, dict[str, str]]:
    """Split a ktserver database argument into ``(path, kind, persistent, params)``.

    ``kind`` is ``"hash"`` or ``"tree"``; ``persistent`` is true for file
    databases (kept in a file).  Raises :class:`DatabaseOpenError` for a
    type we cannot serve, as ktserver refuses to start on one.
    """
    path, *tunings = spec.split("#")
    params: dict[str, str] = {}
    for tuning in tunings:
        name, sep, value = tuning.partition("=")
        if sep:
            params[name.strip()] = value.strip()
    if "type" in params:
        t = params["type"].lower()
        if t in _TYPE_PARAM:
            kind, persistent = _TYPE_PARAM[t]
            if path in _MEMORY_HASH or path in _MEMORY_TREE:
                persistent = False
            return path, kind, persistent, params
    if path in _MEMORY_HASH:
        return path, "hash", False, params
    if path in _MEMORY_TREE:
        return path, "tree", False, params
    base = path.rsplit("/", 1)[-1]
    ext = base.rsplit(".", 1)[-1].lower() if "." in base else ""
    if ext in _HASH_EXT:
        return path, "hash", ext not in _MEMORY_EXT, params
    if ext in _TREE_EXT:
        return path, "tree", ext not in _MEMORY_EXT, params
    raise DatabaseOpenError(
        f"{spec}: unknown database type (use *, %, :, -, + or a .kch/.kct file path)"
    )

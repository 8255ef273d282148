"""The line format of ``ktstore export`` / ``ktstore import``: one JSON object per record.

Pure functions over ``bytes`` and ``str`` (no I/O), so the format is tested without
a server.  One line per record::

    {"db": 0, "key": "user:1", "value": "Ada", "xt": 1767225600}
    {"db": 1, "key64": "AP8=", "value64": "gaNhYmM=", "xt": null}

* ``db`` is the database index the record came from.
* A key or value that is valid UTF-8 is written as text under ``key``/``value`` (the
  file stays readable and greppable); anything else is written base64-encoded under
  ``key64``/``value64``.  Exactly one of each pair is present, so every byte string
  round-trips exactly, and a reader never has to guess which encoding a string uses.
* ``xt`` is the absolute expiration time (unix seconds) or ``null`` for a record that
  never expires.

Why JSON lines: a dump can be streamed, split, concatenated, filtered with ``grep``
or ``jq``, and a damaged line is reported by its number without losing the rest.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from ktstore.protocol.limits import XTMAX

__all__ = ["BadLine", "Record", "dump_record", "load_record"]

_FIELDS = frozenset({"db", "key", "key64", "value", "value64", "xt"})


class BadLine(ValueError):
    """A line of an export file that is not a record; ``lineno`` is 1-based."""

    def __init__(self, lineno: int, reason: str) -> None:
        super().__init__(f"line {lineno}: {reason}")
        self.lineno = lineno
        self.reason = reason


@dataclass(frozen=True)
class Record:
    """One exported record: ``xt`` is absolute unix seconds, ``None`` = never expires."""

    db: int
    key: bytes
    value: bytes
    xt: int | None = None


def _put(obj: dict[str, Any], name: str, data: bytes) -> None:
    try:
        obj[name] = data.decode("utf-8")
    except UnicodeDecodeError:
        obj[name + "64"] = base64.b64encode(data).decode("ascii")


def dump_record(record: Record) -> str:
    """The line (without its newline) for ``record``; an ``xt`` of XTMAX or more is
    written as ``null``, which is how ktserver says "never expires"."""
    obj: dict[str, Any] = {"db": record.db}
    _put(obj, "key", record.key)
    _put(obj, "value", record.value)
    obj["xt"] = None if record.xt is None or record.xt >= XTMAX else record.xt
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def _take(obj: dict[str, Any], name: str, lineno: int) -> bytes:
    text, b64 = obj.get(name), obj.get(name + "64")
    if (text is None) == (b64 is None):
        raise BadLine(lineno, f"needs exactly one of {name!r} and {name + '64'!r}")
    if text is not None:
        if not isinstance(text, str):
            raise BadLine(lineno, f"{name!r} must be a string")
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            raise BadLine(lineno, f"{name!r} holds a lone surrogate; use {name}64") from None
    if not isinstance(b64, str):
        raise BadLine(lineno, f"{name + '64'!r} must be a base64 string")
    try:
        return base64.b64decode(b64.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise BadLine(lineno, f"{name + '64'!r} is not valid base64") from None


def load_record(line: str | bytes, lineno: int) -> Record | None:
    """Parse one line; ``None`` for a blank line.  :class:`BadLine` (with the line
    number) for anything that is not exactly one record."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            raise BadLine(lineno, "not UTF-8 text") from None
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadLine(lineno, f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise BadLine(lineno, "not a JSON object")
    unknown = set(obj) - _FIELDS
    if unknown:
        raise BadLine(lineno, f"unknown field(s) {', '.join(sorted(map(repr, unknown)))}")
    db = obj.get("db", 0)
    if type(db) is not int or not 0 <= db <= 0xFFFF:
        raise BadLine(lineno, "'db' must be a database index (0..65535)")
    key = _take(obj, "key", lineno)
    value = _take(obj, "value", lineno)
    xt = obj.get("xt")
    if xt is not None and (type(xt) is not int or not 0 < xt < XTMAX):
        raise BadLine(lineno, "'xt' must be null or a positive unix time in seconds")
    return Record(db, key, value, xt)

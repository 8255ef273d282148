"""TSV-RPC return values, their HTTP statuses, and ktserver's standard ERROR texts.

Shared by the server (which must answer with ktserver's exact codes and texts, so that
clients written for ktserver understand it) and the client (which turns them into
:class:`~ktstore.errors.ServerError` with the status and text kept). docs/protocol.md, "Return values".
"""

from __future__ import annotations

import re
from itertools import repeat
from typing import Final

__all__ = [
    "RVSUCCESS",
    "RVENOIMPL",
    "RVEINVALID",
    "RVELOGIC",
    "RVETIMEOUT",
    "RVEINTERNAL",
    "RVENETWORK",
    "RVEMISC",
    "RV_NAMES",
    "rv_to_status",
    "status_to_rv",
    "KC_SUCCESS",
    "KC_NOIMPL",
    "KC_INVALID",
    "KC_NOREPOS",
    "KC_NOPERM",
    "KC_BROKEN",
    "KC_DUPREC",
    "KC_NOREC",
    "KC_LOGIC",
    "KC_SYSTEM",
    "KC_MISC",
    "KC_ERROR_NAMES",
    "KC_ERROR_SYMBOLS",
    "kc_error_name",
    "rv_for_kc_error",
    "db_error_message",
    "parse_db_error_message",
    "not_implemented_message",
    "ERR_INVALID_PARAMETERS",
    "ERR_NO_SUCH_DATABASE",
    "ERR_NO_SUCH_CURSOR",
    "ERR_TIMED_OUT",
    "ERR_SCRIPT_DISABLED",
    "ERR_NO_SUCH_PROCEDURE",
    "ERR_SCRIPT_FAILED",
    "ERR_RTS_NOT_SET",
    "ERR_NO_ULOG",
    "ERROR_KEY",
    "encode_rpc_body",
    "decode_rpc_output",
    "rpc_error_text",
]

# --- return values (RPCClient::ReturnValue) ----------------------------------------------

RVSUCCESS: Final = 0  #: success
RVENOIMPL: Final = 1  #: not implemented (unknown procedure, unsupported operation)
RVEINVALID: Final = 2  #: invalid parameters, unknown database or cursor
RVELOGIC: Final = 3  #: done, but logically failed (no record, duplicate, cas mismatch...)
RVETIMEOUT: Final = 4  #: WAIT timed out
RVEINTERNAL: Final = 5  #: internal error
RVENETWORK: Final = 6  #: network error (client side only)
RVEMISC: Final = 15  #: miscellaneous error

RV_NAMES: Final = {
    RVSUCCESS: "RVSUCCESS",
    RVENOIMPL: "RVENOIMPL",
    RVEINVALID: "RVEINVALID",
    RVELOGIC: "RVELOGIC",
    RVETIMEOUT: "RVETIMEOUT",
    RVEINTERNAL: "RVEINTERNAL",
    RVENETWORK: "RVENETWORK",
    RVEMISC: "RVEMISC",
}

_RV_STATUS = {RVSUCCESS: 200, RVENOIMPL: 501, RVEINVALID: 400, RVELOGIC: 450, RVETIMEOUT: 503}
_STATUS_RV = {status: rv for rv, status in _RV_STATUS.items()}


def rv_to_status(rv: int) -> int:
    """HTTP status ktserver sends for a return value: any value it does not know is 500.

    This includes the non-RV numbers a Lua procedure may return (e.g. a KC error code 7).
    """
    return _RV_STATUS.get(rv, 500)


def status_to_rv(status: int) -> int:
    """The return value an HTTP status stands for (the client side of :func:`rv_to_status`);
    500 and any status ktserver never sends for RPC map to RVEINTERNAL."""
    return _STATUS_RV.get(status, RVEINTERNAL)


# --- Kyoto Cabinet error codes (BasicDB::Error::Code) --------------------------------------

KC_SUCCESS: Final = 0
KC_NOIMPL: Final = 1
KC_INVALID: Final = 2
KC_NOREPOS: Final = 3
KC_NOPERM: Final = 4
KC_BROKEN: Final = 5
KC_DUPREC: Final = 6
KC_NOREC: Final = 7
KC_LOGIC: Final = 8
KC_SYSTEM: Final = 9
KC_MISC: Final = 15

#: The code names KC prints (``Error::name()``), e.g. in ``DB: 7: no record: no record``.
KC_ERROR_NAMES: Final = {
    KC_SUCCESS: "success",
    KC_NOIMPL: "not implemented",
    KC_INVALID: "invalid operation",
    KC_NOREPOS: "no repository",
    KC_NOPERM: "no permission",
    KC_BROKEN: "broken file",
    KC_DUPREC: "record duplication",
    KC_NOREC: "no record",
    KC_LOGIC: "logical inconsistency",
    KC_SYSTEM: "system error",
    KC_MISC: "miscellaneous error",
}

#: The symbolic names of the Lua ``kt.Error`` table.
KC_ERROR_SYMBOLS: Final = {
    "SUCCESS": KC_SUCCESS,
    "NOIMPL": KC_NOIMPL,
    "INVALID": KC_INVALID,
    "NOREPOS": KC_NOREPOS,
    "NOPERM": KC_NOPERM,
    "BROKEN": KC_BROKEN,
    "DUPREC": KC_DUPREC,
    "NOREC": KC_NOREC,
    "LOGIC": KC_LOGIC,
    "SYSTEM": KC_SYSTEM,
    "MISC": KC_MISC,
}


def kc_error_name(code: int) -> str:
    """KC's name of an error code; unknown codes are "miscellaneous error", as in KC."""
    return KC_ERROR_NAMES.get(code, KC_ERROR_NAMES[KC_MISC])


def rv_for_kc_error(code: int) -> int:
    """The usual return value for a failed DB operation: duplicates, missing records and
    logical inconsistencies are RVELOGIC (450), "not implemented" RVENOIMPL (501), the
    rest RVEINTERNAL (500). (A few ktserver procedures deviate; the server decides.)"""
    if code in (KC_DUPREC, KC_NOREC, KC_LOGIC):
        return RVELOGIC
    if code == KC_NOIMPL:
        return RVENOIMPL
    return RVEINTERNAL


def db_error_message(code: int, message: str | None = None) -> str:
    """ktserver's text for a DB-layer error: ``DB: <code>: <name>: <message>``.

    The message defaults to the code's name (``DB: 7: no record: no record``).
    """
    name = kc_error_name(code)
    return f"DB: {code}: {name}: {name if message is None else message}"


def parse_db_error_message(text: str) -> tuple[int, str, str] | None:
    """Split ``DB: <code>: <name>: <message>`` into (code, name, message), else None."""
    if not text.startswith("DB: "):
        return None
    parts = text[4:].split(": ", 2)
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1], parts[2]


def not_implemented_message(procedure: str) -> str:
    """The ERROR text of an unknown procedure (501)."""
    return f"not implemented: {procedure}"


# --- standard ERROR texts ------------------------------------------------------------------

#: Key of the error text in a non-200 TSV body.
ERROR_KEY: Final = "ERROR"

ERR_INVALID_PARAMETERS: Final = "invalid parameters"
ERR_NO_SUCH_DATABASE: Final = "no such database"
ERR_NO_SUCH_CURSOR: Final = "no such cursor"
ERR_TIMED_OUT: Final = "the condition timed out"
#: sic: ktserver's spelling
ERR_SCRIPT_DISABLED: Final = "the scripting extention is disabled"
ERR_NO_SUCH_PROCEDURE: Final = "no such scripting procedure"
ERR_SCRIPT_FAILED: Final = "the scripting procedure failed"
ERR_RTS_NOT_SET: Final = "the RTS file is not set"
ERR_NO_ULOG: Final = "no update log allows no replication"


# --- the client's side of TSV-RPC: request bodies and reply outputs ------------------------

_CONTROL_OTHER = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")  # control bytes but TAB and LF
_TABS = repeat(b"\t")
_ONCE = repeat(1)
_parsed_ctypes: dict[str, tuple[str, str | None]] = {}


def encode_rpc_body(params: list[tuple[bytes, bytes]]) -> tuple[bytes, str | None]:
    """The TSV body of an RPC request and its colenc (``None`` or ``"B"``).

    One pass builds the raw body; its TABs and LFs are then counted: a field holding a
    control byte (TAB, LF, CR... would break the line structure) means Base64 instead,
    which ktserver decodes for any byte.  Unlike a response, a long plain field needs
    no encoding: raw is the smallest.
    """
    body = b"".join([b"%s\t%s\n" % (k, v) for k, v in params])
    n = len(params)
    if body.count(b"\n") != n or body.count(b"\t") != n or _CONTROL_OTHER.search(body):
        from ktstore.protocol import tsv

        return tsv.encode_tsv(params, "B"), "B"
    return body, None


def decode_rpc_output(headers: dict[str, str] | None, body: bytes) -> dict[bytes, bytes]:
    """The output map of an RPC response (``{}`` unless the body is TSV).

    Raw TSV follows tsv.decode_tsv's rules: each line splits at its first TAB, a
    repeated key keeps the last.  The usual body (no CR, a TAB on every line) is split
    in C; a line without TAB makes dict() refuse, and the loop below then ignores such
    lines and drops a CR before the LF.
    """
    ctype = headers.get("content-type", "") if headers else ""
    parsed = _parsed_ctypes.get(ctype)
    if parsed is None:
        from ktstore.protocol import tsv

        parsed = tsv.parse_content_type(ctype) if ctype else ("", None)
        if len(_parsed_ctypes) < 64:  # a handful of distinct values in practice
            _parsed_ctypes[ctype] = parsed
    media, colenc = parsed
    if media != "text/tab-separated-values" or not body:
        return {}
    if colenc is not None:
        from ktstore.protocol import tsv

        return dict(tsv.decode_tsv(body, colenc))
    lines = body.split(b"\n")
    if not lines[-1]:
        lines.pop()
    try:
        if b"\r" in body:
            raise ValueError
        return dict(map(bytes.split, lines, _TABS, _ONCE))
    except ValueError:
        out = {}
        for line in lines:
            key, sep, value = line.partition(b"\t")
            if sep:
                out[key] = value[:-1] if value[-1:] == b"\r" else value
        return out


def rpc_error_text(status: int, out: dict[bytes, bytes], body: bytes) -> str:
    """The message of a failed RPC: the server's ``ERROR`` output, else the body."""
    message = out.get(b"ERROR")
    if message is None:
        return body.decode("utf-8", "replace").strip() or f"HTTP status {status}"
    return message.decode("utf-8", "replace")

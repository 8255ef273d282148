"""Turning Python arguments into request bytes, checked before anything is sent.

Shared by the commands, the Lua-backed methods and the containers (so none of them
imports another's privates).  Every function raises
:class:`~ktstore.errors.InvalidArgument` for a value it cannot encode.
"""

from __future__ import annotations

import re
from typing import Any

from ktstore.errors import InvalidArgument
from ktstore.protocol.limits import DATA_MAX_SIZE

__all__ = [
    "raw_value",
    "script_value",
    "int_arg",
    "float_arg",
    "number_arg",
    "integer_arg",
    "special_orig",
    "check_size",
    "parse_number",
    "numbers",
]

_NUM_RE = re.compile(rb"^-?\d+$")
_FLOAT_RE = re.compile(rb"^-?\d+\.\d+$")


def raw_value(value: Any) -> bytes:
    """A value passed with encode_value(s)=False: bytes as is, str as UTF-8."""
    t = type(value)
    if t is bytes:
        return value
    if t is str:
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidArgument(f"value is not encodable as UTF-8: {exc}") from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return raw_value(str(value))
    raise InvalidArgument(f"a raw value must be bytes or str, not {t.__name__}")


def script_value(value: Any) -> bytes:
    """A script parameter sent without the serializer: bytes as is, text as UTF-8,
    numbers in decimal (so ``db=1`` or ``n=3`` work as in ukt)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bool):
        raise InvalidArgument("a raw script value cannot be a bool")
    if isinstance(value, (int, float)):
        return str(value).encode("ascii")
    raise InvalidArgument(
        f"a raw script value must be bytes, str or a number, not {type(value).__name__}"
    )


def int_arg(name: str, value: Any) -> bytes:
    """A whole-number parameter as decimal bytes; anything else is InvalidArgument."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, bool) or int(value) != value:
                raise ValueError
            value = int(value)
        except (TypeError, ValueError, OverflowError):
            raise InvalidArgument(f"{name} must be an integer, not {value!r}") from None
    return b"%d" % value


def float_arg(name: str, value: Any) -> bytes:
    if isinstance(value, bool):
        raise InvalidArgument(f"{name} must be a number, not {value!r}")
    try:
        return repr(float(value)).encode("ascii")
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgument(f"{name} must be a number, not {value!r}") from None


def number_arg(value: Any, what: str) -> bytes:
    """A numeric procedure input, checked here so a typo fails before the round trip."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{what} must be a number, not {value!r}")
    if isinstance(value, float) and value != value:
        raise InvalidArgument(f"{what} must not be NaN")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return repr(value).encode("ascii")


def integer_arg(value: Any, what: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} must be an int, not {value!r}")
    return b"%d" % value


def special_orig(orig: str) -> bytes:
    """``orig='try'`` (fail if missing) or ``'set'`` (overwrite), ktserver's keywords."""
    if orig not in ("try", "set"):
        raise InvalidArgument(f"orig must be a number, 'try' or 'set', not {orig!r}")
    return orig.encode("ascii")


def check_size(value: bytes) -> bytes:
    if len(value) > DATA_MAX_SIZE:
        raise InvalidArgument(f"value of {len(value)} bytes exceeds the protocol limit")
    return value


def parse_number(value: bytes) -> Any:
    if _NUM_RE.match(value):
        return int(value)
    if _FLOAT_RE.match(value):
        return float(value)
    return value.decode("utf-8", "replace")


def numbers(out: dict[bytes, bytes]) -> dict[str, Any]:
    """A report/status output with text keys, numbers as int/float (digits inline)."""
    return {
        k.decode("utf-8", "replace"): int(v) if v.isdigit() else parse_number(v)
        for k, v in out.items()
    }

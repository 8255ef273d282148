"""Value serializers: how Python values become the bytes Kyoto Tycoon stores.

The names (``KT_BINARY``, ``KT_JSON``, ``KT_MSGPACK``, ``KT_NONE``, ``KT_PICKLE``) are
the ones ukt users already pass to ``KyotoTycoon(serializer=...)``.  Each resolves to a
pair of plain functions ``(encode, decode)`` so the client's hot path is one call with
no dispatch.  Every failure is re-raised as :class:`~ktstore.errors.SerializationError`
so callers can tell "my value could not be (de)coded" from network or server errors.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any

from ktstore.errors import ImproperlyConfigured, InvalidArgument, SerializationError

__all__ = [
    "KT_BINARY",
    "KT_JSON",
    "KT_MSGPACK",
    "KT_NONE",
    "KT_PICKLE",
    "SERIALIZERS",
    "get_serializer",
]

KT_BINARY = "binary"
KT_JSON = "json"
KT_MSGPACK = "msgpack"
KT_NONE = "none"
KT_PICKLE = "pickle"

Encoder = Callable[[Any], bytes]
Decoder = Callable[[bytes], Any]


def _binary_encode(value: Any) -> bytes:
    """str -> UTF-8, bytes-like as is; numbers are written as their decimal text
    (what ukt users rely on for ``set('n', 1)``).  Anything else is refused rather
    than silently stored as its ``str()``."""
    t = type(value)
    if t is str:
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SerializationError(f"value is not encodable as UTF-8: {exc}") from None
    if t is bytes:
        return value
    if t is bytearray or t is memoryview:
        return bytes(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value).encode("ascii")
    if isinstance(value, (str, bytes)):  # subclasses
        return _binary_encode(str(value) if isinstance(value, str) else bytes(value))
    raise SerializationError(f"KT_BINARY stores str or bytes, not {t.__name__}")


def _binary_decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SerializationError(
            f"value is not UTF-8 text ({exc}); use KT_NONE or get_bytes() for binary data"
        ) from None


def _none_encode(value: Any) -> bytes:
    """Raw bytes; a str is accepted as UTF-8 for convenience (as ukt does)."""
    t = type(value)
    if t is bytes:
        return value
    if t is bytearray or t is memoryview or isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, str):
        return _binary_encode(value)
    raise SerializationError(f"KT_NONE stores bytes, not {t.__name__}")


def _none_decode(data: bytes) -> bytes:
    return data


def _json_encode(value: Any) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"value is not JSON-serializable: {exc}") from None


def _json_decode(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SerializationError(f"value is not JSON: {exc}") from None


def _pickle_encode(value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # pickling can raise almost anything
        raise SerializationError(f"value cannot be pickled: {exc}") from None


def _pickle_decode(data: bytes) -> Any:
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise SerializationError(f"value cannot be unpickled: {exc}") from None


def _msgpack_pair() -> tuple[Encoder, Decoder]:
    try:
        import msgpack
    except ImportError:  # pragma: no cover - msgpack is a dependency
        raise ImproperlyConfigured("KT_MSGPACK needs the msgpack package") from None
    packb = msgpack.packb
    unpackb = msgpack.unpackb

    def encode(value: Any) -> bytes:
        try:
            return packb(value, use_bin_type=True)
        except Exception as exc:
            raise SerializationError(f"value cannot be packed with msgpack: {exc}") from None

    def decode(data: bytes) -> Any:
        try:
            return unpackb(data, raw=False)
        except Exception as exc:
            raise SerializationError(f"value is not msgpack: {exc}") from None

    return encode, decode


SERIALIZERS: dict[str, tuple[Encoder, Decoder] | None] = {
    KT_BINARY: (_binary_encode, _binary_decode),
    KT_JSON: (_json_encode, _json_decode),
    KT_MSGPACK: None,  # resolved lazily (import cost)
    KT_NONE: (_none_encode, _none_decode),
    KT_PICKLE: (_pickle_encode, _pickle_decode),
}


def _wrap(fn: Callable, what: str) -> Callable:
    """Make a user-supplied codec raise SerializationError like the built-in ones."""

    def wrapped(arg):
        try:
            return fn(arg)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(f"custom {what} failed: {exc!r}") from exc

    wrapped.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapped


def get_serializer(
    serializer: str | None = None,
    encode_value: Encoder | None = None,
    decode_value: Decoder | None = None,
) -> tuple[Encoder, Decoder]:
    """Resolve the client's ``serializer``/``encode_value``/``decode_value`` arguments.

    A custom ``encode_value`` or ``decode_value`` replaces that half of the named
    serializer (``KT_BINARY`` when none is named).  An unknown name raises
    InvalidArgument at construction time rather than at the first write.
    """
    name = KT_BINARY if serializer is None else serializer
    if name not in SERIALIZERS:
        raise ImproperlyConfigured(
            f"unknown serializer {serializer!r}; use one of {', '.join(sorted(SERIALIZERS))}"
        )
    pair = SERIALIZERS[name]
    if pair is None:
        pair = _msgpack_pair()
    enc, dec = pair
    if encode_value is not None:
        if not callable(encode_value):
            raise InvalidArgument("encode_value must be callable")
        enc = _wrap(encode_value, "encode_value")
    if decode_value is not None:
        if not callable(decode_value):
            raise InvalidArgument("decode_value must be callable")
        dec = _wrap(decode_value, "decode_value")
    return enc, dec

"""Every method of the documented client API, written once as request builders plus
reply decoders (no I/O).

:class:`Commands` is the base of both :class:`~ktstore.client.sync.KyotoTycoon` and
:class:`~ktstore.client.aio.AsyncKyotoTycoon`.  A public method checks its arguments,
encodes the request, and hands a :class:`~ktstore.client.command.Command` (with the
function that turns the reply into its value) to ``self.execute``: the sync client
returns the value, the asyncio client a coroutine, a pipeline queues the command.

Each method uses the protocol that suits it (docs/protocol.md): the binary protocol
for get/set/remove and their bulk forms (a single-key get is a one-key get_bulk), and
HTTP TSV-RPC for everything else.

Arguments are checked before anything is sent: a bad key type, a value over the
protocol's 256 MiB limit, an unknown serializer or a bad database index raise
:class:`~ktstore.errors.InvalidArgument` and leave every connection untouched.

Expiration times (``expire_time``) follow ukt's convention, resolved by
:func:`ktstore.protocol.expire.to_wire_xt`: ``None`` = never, a number below 180 days
is relative seconds, a larger one an absolute unix time, a ``timedelta`` is relative,
and a ``datetime`` is absolute -- a *naive* datetime is taken as UTC (not local time as
in ukt), so the same value means the same instant on every machine.
"""

from __future__ import annotations

import datetime as _dt
import struct as _struct
import time
from collections.abc import Iterable, Mapping
from itertools import repeat
from typing import Any

from ktstore.client.command import BINARY, HTTP, NOREPLY, Command, Program
from ktstore.client.lua import LuaMethods
from ktstore.client.params import (
    check_size,
    float_arg,
    int_arg,
    numbers,
    raw_value,
    special_orig,
)
from ktstore.errors import InvalidArgument, ScriptError, ServerError
from ktstore.protocol import binary as _bin
from ktstore.protocol import dumps, http
from ktstore.protocol.expire import to_wire_xt
from ktstore.protocol.limits import DATA_MAX_SIZE, HTTP_BODY_MAX, INT64MAX
from ktstore.protocol.receive import (
    GetBulkPairs,
    GetBulkReply,
    HttpResponse,
    PlayScriptReply,
    RemoveCountReply,
    SetCountReply,
)
from ktstore.protocol.rpc import decode_rpc_output, encode_rpc_body, rpc_error_text
from ktstore.protocol.tsv import content_type_for
from ktstore.serializers import KT_BINARY, _binary_decode, _binary_encode, get_serializer

__all__ = ["Commands", "NO_DB"]

_ERROR_REPLY = _bin.ERROR_REPLY
_encode_get_bulk = _bin.encode_get_bulk
_encode_set_bulk = _bin.encode_set_bulk
_encode_remove_bulk = _bin.encode_remove_bulk
_encode_get = _bin.encode_get
_encode_set = _bin.encode_set
_encode_remove = _bin.encode_remove
_encode_get_bulk_db = _bin.encode_get_bulk_db
_encode_set_bulk_db = _bin.encode_set_bulk_db
_encode_remove_bulk_db = _bin.encode_remove_bulk_db
_encode_play_script = _bin.encode_play_script
# The single-key frames, packed inline by get/set/remove (the hottest calls).
_GET1_pack = _bin.ONE_KEY_HEAD.pack
_SET1_pack = _bin.ONE_RECORD_HEAD.pack
_struct_error = _struct.error
assert (_bin.MAGIC_GET_BULK, _bin.MAGIC_SET_BULK, _bin.MAGIC_REMOVE_BULK) == (0xBA, 0xB8, 0xB9)
_SET_COUNT = SetCountReply
_REMOVE_COUNT = RemoveCountReply

#: "This procedure takes no DB parameter" (report, ulog_*...).
NO_DB: Any = object()
_CTYPES = {None: content_type_for(None), "B": content_type_for("B")}
# Arguments for map(str.encode, keys, _UTF8, _SURROGATES): endless, so shareable.
_str_encode = str.encode
_bytes_decode = bytes.decode
_UTF8 = repeat("utf-8")
_SURROGATES = repeat("surrogateescape")


def _binary_error(command: str) -> ServerError:
    return ServerError(f"the server rejected the {command} request", None, command)


def _count(command: str) -> Any:
    """The finish of set_bulk/remove_bulk: the count, or the server's refusal."""

    def finish(n: Any) -> Any:
        if n is _ERROR_REPLY:
            raise _binary_error(command)
        return n

    return finish


_finish_set = _count("set_bulk")
_finish_remove = _count("remove_bulk")


def _none(_: Any) -> None:
    return None


def _status_ok(result: tuple[int, dict[bytes, bytes]]) -> bool:
    return result[0] == 200


def _true(_: Any) -> bool:
    return True


class Commands(LuaMethods):
    """The client API as commands; see the module docstring.

    :param host: server host.
    :param port: server port.
    :param timeout: seconds a whole call may take (connect, send and every read of
        the reply together); ``None`` means
        :data:`ktstore.client.connection.DEFAULT_TIMEOUT` (a dead server must never
        hang the caller).
    :param default_db: database index used when a method's ``db`` is ``None``.
    :param decode_keys: return keys as ``str`` (UTF-8; bytes that are not UTF-8 come
        back as surrogate escapes, so they round-trip exactly) instead of ``bytes``.
    :param serializer: ``KT_BINARY`` (default), ``KT_JSON``, ``KT_MSGPACK``,
        ``KT_PICKLE`` or ``KT_NONE``.
    :param encode_value: custom function value -> bytes (overrides the serializer's).
    :param decode_value: custom function bytes -> value.
    :param max_age: idle connections older than this many seconds are not reused.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1978,
        timeout: float | None = None,
        default_db: int = 0,
        decode_keys: bool = True,
        serializer: str | None = None,
        encode_value: Any = None,
        decode_value: Any = None,
        max_age: float | None = 3600,
    ) -> None:
        if type(port) is not int or not 0 < port < 65536:
            raise InvalidArgument(f"bad port {port!r}")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise InvalidArgument(f"timeout must be a positive number or None, not {timeout!r}")
        self.host = host
        self.port = port
        self.timeout = timeout
        self.default_db = self._check_db(default_db)
        self.decode_keys = bool(decode_keys)
        self.serializer = KT_BINARY if serializer is None else serializer
        enc, dec = get_serializer(serializer, encode_value, decode_value)
        # Plain callables on the instance, so the hot path is one call without a
        # method lookup through the class.  (``_encode_value``/``_decode_value`` are
        # the old private names, kept for the model layer.)
        self._encode_value = self.encode_value = enc
        self._decode_value = self.decode_value = dec
        # KT_BINARY without custom codecs: bulk paths inline str.encode/bytes.decode.
        self._utf8_values = enc is _binary_encode and dec is _binary_decode
        self.max_age = max_age
        self._host_header = f"{host}:{port}"
        self._rpc_heads: dict[str, bytes] = {}

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> Any:
        """A client configured by a ``kt://host:port/db?serializer=...&timeout=...`` URL
        (:mod:`ktstore.urls`); keyword arguments override what the URL says.

        >>> KyotoTycoon.from_url("kt://cache.local:1978/1?serializer=msgpack&timeout=5")
        """
        from ktstore.urls import parse_url

        kwargs = parse_url(url).client_kwargs()
        kwargs.update(overrides)
        return cls(**kwargs)

    # -- the runner (each client class provides it) -----------------------------------------

    def execute_command(self, runnable: Command | Program) -> Any:
        """Run a command (or a program of commands) and return its value; the asyncio
        client returns a coroutine, a pipeline queues the command."""
        raise NotImplementedError  # pragma: no cover

    def _binary(
        self, request: bytes, factory: Any, finish: Any, idempotent: bool, keep: bool = False
    ) -> Any:
        """Run a binary command built by a hot-path method (get, set, remove and their
        bulk forms).  This default wraps it in a :class:`Command` for
        :meth:`execute_command`; the sync client overrides it to skip the object."""
        return self.execute_command(Command(BINARY, request, factory, finish, idempotent, keep))

    # -- keys, values, databases: the client interface used by containers and models -------

    @staticmethod
    def _check_db(db: Any) -> int:
        if type(db) is int and 0 <= db <= 0xFFFF:
            return db
        raise InvalidArgument(f"database index must be an int in 0..65535, not {db!r}")

    def resolve_db(self, db: Any) -> int:
        """``None`` -> the default database index; anything but an index is refused."""
        if db is None:
            return self.default_db
        if type(db) is int and 0 <= db <= 0xFFFF:
            return db
        raise InvalidArgument(f"database index must be an int in 0..65535, not {db!r}")

    _db = resolve_db  # the old private name (models, Store)

    def encode_key(self, key: Any) -> bytes:
        """str -> UTF-8 (surrogate escapes back to their bytes), bytes as is.

        Numbers and other types are refused: ``1`` and ``"1"`` must not silently become
        the same key.
        """
        t = type(key)
        if t is str:
            try:
                data = key.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError as exc:
                raise InvalidArgument(f"key is not encodable as UTF-8: {exc}") from None
        elif t is bytes:
            data = key
        elif isinstance(key, (bytes, bytearray, memoryview)):
            data = bytes(key)
        elif isinstance(key, str):
            return self.encode_key(str(key))
        else:
            raise InvalidArgument(f"keys must be str or bytes, not {t.__name__}")
        if len(data) > DATA_MAX_SIZE:
            raise InvalidArgument(f"key of {len(data)} bytes exceeds the protocol limit")
        return data

    def decode_key(self, data: bytes) -> Any:
        """A key as the caller sees it: ``str`` when ``decode_keys`` else ``bytes``."""
        if self.decode_keys:
            return data.decode("utf-8", "surrogateescape")
        return data

    def wire_xt(self, expire_time: Any) -> int:
        """The wire xt of an ``expire_time`` (see the module docstring).

        A negative int is passed through as ukt does: on the wire it already means the
        absolute unix time ``-expire_time`` (ukt's tests and users rely on this).
        """
        if expire_time is None:
            return INT64MAX
        if type(expire_time) is int and expire_time < 0:
            return expire_time
        try:
            return to_wire_xt(expire_time, time.time())
        except InvalidArgument:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidArgument(f"bad expire_time {expire_time!r}: {exc}") from None

    _xt = wire_xt

    def with_xt(
        self, params: list[tuple[bytes, bytes]], expire_time: Any
    ) -> list[tuple[bytes, bytes]]:
        """``params`` plus the ``xt`` parameter of an HTTP procedure, when one is given."""
        if expire_time is not None:
            params.append((b"xt", b"%d" % self.wire_xt(expire_time)))
        return params

    _with_xt = with_xt

    def key_list(self, keys: Iterable[Any]) -> list[bytes]:
        """The encoded keys, with the str-only case encoded in C."""
        if not isinstance(keys, (list, tuple)):
            keys = list(keys)
        try:
            return list(map(_str_encode, keys, _UTF8, _SURROGATES))
        except (TypeError, UnicodeEncodeError):
            pass
        ek = self.encode_key
        try:
            return [
                k
                if type(k) is bytes
                else k.encode("utf-8", "surrogateescape")
                if type(k) is str
                else ek(k)
                for k in keys
            ]
        except UnicodeEncodeError:
            return [ek(k) for k in keys]  # raises InvalidArgument

    _key_list = key_list

    # -- command builders: binary PLAY_SCRIPT and HTTP RPC ----------------------------------

    def script_command(
        self, name: str | bytes, params: list[tuple[bytes, bytes]], no_reply: bool = False
    ) -> Command:
        """Binary PLAY_SCRIPT of procedure ``name``; its value is the output pairs
        ``[(key, value), ...]`` (``None`` with ``no_reply``).  A 0xBF reply (any
        script failure) raises ScriptError and keeps the connection, as ktserver does."""
        bname = name.encode("utf-8") if isinstance(name, str) else bytes(name)
        data = _encode_play_script(bname, params, no_reply)
        if no_reply:
            return Command(NOREPLY, data, None, _none, name="play_script")
        pname = bname.decode("utf-8", "replace")

        def finish(result: Any) -> list[tuple[bytes, bytes]]:
            if result is _ERROR_REPLY:
                raise ScriptError("the scripting procedure failed", None, pname)
            return result

        return Command(BINARY, data, PlayScriptReply, finish, False, True, name=pname)

    def _play_script(
        self, name: str | bytes, params: list[tuple[bytes, bytes]], no_reply: bool = False
    ) -> Any:
        """Old private name of ``execute(script_command(...))`` (the model layer)."""
        return self.execute_command(self.script_command(name, params, no_reply))

    def rpc_command(
        self,
        name: str,
        params: list[tuple[bytes, bytes]],
        db: Any = None,
        allowed: tuple[int, ...] = (),
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> Command:
        """HTTP ``/rpc/<name>``; its value is ``(status, output)``.

        A status other than 200 and those in ``allowed`` raises ServerError carrying
        the server's ``ERROR`` text.  ``idempotent`` requests are retried once after a
        network failure; ``timeout`` (seconds) lengthens this call (``WAIT``).
        ``db=NO_DB`` for the procedures that take no database.
        """
        request = self._build_rpc(name, params, db)

        def finish(reply: Any) -> tuple[int, dict[bytes, bytes]]:
            return self._rpc_result(name, reply.status, reply.headers, reply.body, allowed)

        return Command(HTTP, request, HttpResponse, finish, idempotent, True, timeout, name)

    def _rpc(
        self,
        name: str,
        params: list[tuple[bytes, bytes]],
        db: Any = None,
        allowed: tuple[int, ...] = (),
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Old private name of ``execute(rpc_command(...))``."""
        return self.execute_command(
            self.rpc_command(name, params, db, allowed, idempotent, timeout)
        )

    def _build_rpc(self, name: str, params: list[tuple[bytes, bytes]], db: Any) -> bytes:
        """The bytes of a ``POST /rpc/<name>`` request (the request line and fixed
        headers of each procedure are built once)."""
        if db is not NO_DB:
            params = [(b"DB", b"%d" % self.resolve_db(db)), *params]
        body, colenc = encode_rpc_body(params)
        if colenc is None:
            head = self._rpc_heads.get(name) or self._rpc_head(name, None)
        else:
            head = self._rpc_head(name, colenc)
        if len(body) > HTTP_BODY_MAX:
            raise InvalidArgument(f"request of {len(body)} bytes exceeds the HTTP body limit")
        return b"%s%d\r\n\r\n%s" % (head, len(body), body)

    def _rpc_head(self, name: str, colenc: str | None) -> bytes:
        """``POST /rpc/<name>`` and its headers up to the ``Content-Length`` value."""
        head = http.encode_request(
            "POST",
            "/rpc/" + name,
            [("Host", self._host_header), ("Content-Type", _CTYPES[colenc])],
            b"",
        )
        assert head.endswith(b"Content-Length: 0\r\n\r\n")
        head = head[: -len(b"0\r\n\r\n")]
        if colenc is None and len(self._rpc_heads) < 256:
            self._rpc_heads[name] = head
        return head

    @staticmethod
    def _rpc_result(
        name: str, status: int, headers: Any, body: bytes, allowed: tuple[int, ...]
    ) -> tuple[int, dict[bytes, bytes]]:
        out = decode_rpc_output(headers, body)
        if status != 200 and status not in allowed:
            raise ServerError(rpc_error_text(status, out, body), status, name)
        return status, out

    # -- configuration ----------------------------------------------------------------------

    def set_database(self, db: int) -> None:
        """Set the database index used when a method is called with ``db=None``."""
        self.default_db = self._check_db(db)

    # -- mapdump / arraydump (no I/O) -------------------------------------------------------

    def serialize_dict(self, d: Mapping[Any, Any], encode_values: bool = True) -> bytes:
        """``d`` in the byte format of KT's Lua ``mapdump`` (and the Hash container)."""
        enc = self._encode_value if encode_values else raw_value
        ek = self.encode_key
        return dumps.mapdump([(ek(k), enc(v)) for k, v in d.items()])

    def deserialize_dict(self, data: bytes, decode_values: bool = True) -> dict[Any, Any]:
        """Inverse of :meth:`serialize_dict` (KT's Lua ``mapload``)."""
        dk = self.decode_key
        pairs = dumps.mapload(bytes(data))
        items = pairs.items() if isinstance(pairs, dict) else pairs
        if decode_values:
            dec = self._decode_value
            return {dk(k): dec(v) for k, v in items}
        return {dk(k): v for k, v in items}

    def serialize_list(self, values: Iterable[Any], encode_values: bool = True) -> bytes:
        """``values`` in the byte format of KT's Lua ``arraydump`` (and the List container)."""
        enc = self._encode_value if encode_values else raw_value
        return dumps.arraydump([enc(v) for v in values])

    def deserialize_list(self, data: bytes, decode_values: bool = True) -> list[Any]:
        """Inverse of :meth:`serialize_list` (KT's Lua ``arrayload``)."""
        items = dumps.arrayload(bytes(data))
        if decode_values:
            dec = self._decode_value
            return [dec(v) for v in items]
        return list(items)

    # -- binary protocol: get --------------------------------------------------------------

    def _finish_get(self, records: Any) -> Any:
        if not records:
            return None
        if records is _ERROR_REPLY:
            raise _binary_error("get_bulk")
        return self._decode_value(records[0][2])

    @staticmethod
    def _finish_get_raw(records: Any) -> Any:
        if not records:
            return None
        if records is _ERROR_REPLY:
            raise _binary_error("get_bulk")
        return records[0][2]

    def get_command(self, key: Any, db: int | None = None, decode_value: bool = True) -> Command:
        """The command of :meth:`get`."""
        # The single-key paths inline the common cases (str key, default db, KT_BINARY)
        # to keep the per-call overhead minimal; everything else takes the checked path.
        if type(key) is str:
            try:
                bkey = key.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                bkey = self.encode_key(key)  # raises InvalidArgument
        else:
            bkey = self.encode_key(key)  # (sizes are checked by the frame encoder)
        dbidx = self.default_db if db is None else self.resolve_db(db)
        finish = self._finish_get if decode_value else self._finish_get_raw
        return Command(BINARY, _encode_get(dbidx, bkey), GetBulkReply, finish, True, False)

    def get(self, key: Any, db: int | None = None, decode_value: bool = True) -> Any:
        """The value at ``key`` (deserialized unless ``decode_value=False``), or ``None``."""
        # get_command, inlined (the hottest call of the API)
        if type(key) is str:
            try:
                bkey = key.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                bkey = self.encode_key(key)  # raises InvalidArgument
        else:
            bkey = self.encode_key(key)
        dbidx = self.default_db if db is None else self.resolve_db(db)  # (0..0xFFFF)
        if len(bkey) <= DATA_MAX_SIZE:  # encode_get, inlined
            request = _GET1_pack(0xBA, 0, 1, dbidx, len(bkey)) + bkey
        else:
            request = _encode_get(dbidx, bkey)  # raises InvalidArgument
        finish = self._finish_get if decode_value else self._finish_get_raw
        return self._binary(request, GetBulkReply, finish, True)

    def get_bytes_command(self, key: Any, db: int | None = None) -> Command:
        """The command of :meth:`get_bytes`."""
        return self.get_command(key, db, False)

    def get_bytes(self, key: Any, db: int | None = None) -> Any:
        """The raw bytes at ``key``, or ``None``."""
        return self.get(key, db, False)

    def _bulk_dict(self, decode_values: bool, asked: list[bytes], keys: Any) -> Any:
        """The finish of get_bulk (a :class:`GetBulkPairs` reply, ``[k0, v0, k1, v1...]``):
        ``{key: value}``.  With ``decode_keys`` a key that is not UTF-8 comes back as the
        caller passed it (the ``bytes`` object), as ukt does; other keys as ``str``.
        The usual cases build the dict in C (``dict(zip(it, it))`` over ``map``)."""
        decode_keys = self.decode_keys
        utf8 = self._utf8_values
        dec = self._decode_value

        def finish(flat: Any) -> dict[Any, Any]:
            if flat is _ERROR_REPLY:
                raise _binary_error("get_bulk")
            if decode_keys:
                try:
                    if decode_values and utf8:
                        try:
                            it = map(_bytes_decode, flat)
                            return dict(zip(it, it, strict=False))
                        except UnicodeDecodeError:
                            pass
                    ks = map(_bytes_decode, flat[0::2])
                    if decode_values:
                        return dict(zip(ks, map(dec, flat[1::2]), strict=False))
                    return dict(zip(ks, flat[1::2], strict=False))
                except UnicodeDecodeError:
                    pass
                # Some key is not UTF-8: give back the caller's own key object for it.
                theirs = {}
                if keys is not None:
                    for k in keys:
                        if type(k) is not str:
                            theirs[bytes(k)] = k
                out = {}
                for k, v in zip(flat[0::2], flat[1::2], strict=True):
                    try:
                        ck = k.decode("utf-8")
                    except UnicodeDecodeError:
                        ck = theirs.get(k, k.decode("utf-8", "surrogateescape"))
                    out[ck] = dec(v) if decode_values else v
                return out
            if decode_values:
                return dict(zip(flat[0::2], map(dec, flat[1::2]), strict=False))
            it = iter(flat)
            return dict(zip(it, it, strict=False))

        return finish

    def get_bulk(
        self, keys: Iterable[Any], db: int | None = None, decode_values: bool = True
    ) -> Any:
        """``{key: value}`` for the keys that exist (missing keys are left out)."""
        dbidx = self.resolve_db(db)
        if not isinstance(keys, (list, tuple)):
            keys = list(keys)
        bkeys = self.key_list(keys)
        request = _encode_get_bulk_db(dbidx, bkeys)
        finish = self._bulk_dict(decode_values, bkeys, keys)
        return self._binary(request, GetBulkPairs, finish, True)

    def get_bulk_details(
        self, db_key_list: Iterable[tuple[int, Any]], decode_values: bool = True
    ) -> Any:
        """``[(db, key, value, xt), ...]`` for the ``(db, key)`` pairs that exist.

        ``xt`` is the absolute expiration reported by the server (``0xFFFFFFFFFF``,
        XTMAX, when the record never expires), as ukt returns it.
        """
        ek = self.encode_key
        check = self.resolve_db
        request = _encode_get_bulk([(check(d), ek(k)) for d, k in db_key_list])
        dk = self.decode_key
        dec = self._decode_value if decode_values else None

        def finish(records: Any) -> list[tuple[int, Any, Any, int]]:
            if records is _ERROR_REPLY:
                raise _binary_error("get_bulk")
            return [(d, dk(k), dec(v) if dec is not None else v, xt) for d, k, v, xt in records]

        return self.execute_command(Command(BINARY, request, GetBulkReply, finish, True, False))

    # -- binary protocol: set ----------------------------------------------------------------

    def _set_command(self, request: bytes, no_reply: bool) -> Any:
        if no_reply:
            return self.execute_command(Command(NOREPLY, request, None, _none, name="set_bulk"))
        return self._binary(request, _SET_COUNT, _finish_set, False)

    def set(
        self,
        key: Any,
        value: Any,
        db: int | None = None,
        expire_time: Any = None,
        no_reply: bool = False,
        encode_value: bool = True,
    ) -> Any:
        """Store one record; return the number stored (1), or ``None`` with ``no_reply``."""
        if encode_value:
            if self._utf8_values and type(value) is str:
                try:
                    bvalue = value.encode("utf-8")
                except UnicodeEncodeError:
                    bvalue = self._encode_value(value)  # raises SerializationError
            else:
                bvalue = self._encode_value(value)
        else:
            bvalue = raw_value(value)
        if type(key) is str:
            try:
                bkey = key.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                bkey = self.encode_key(key)  # raises InvalidArgument
        else:
            bkey = self.encode_key(key)  # (sizes are checked by the frame encoder)
        dbidx = self.default_db if db is None else self.resolve_db(db)
        xt = INT64MAX if expire_time is None else self.wire_xt(expire_time)
        if not no_reply and len(bkey) <= DATA_MAX_SIZE and len(bvalue) <= DATA_MAX_SIZE:
            try:  # encode_set, inlined
                head = _SET1_pack(0xB8, 0, 1, dbidx, len(bkey), len(bvalue), xt)
            except _struct_error:
                pass  # an xt out of range: encode_set raises the proper error
            else:
                return self._binary(head + bkey + bvalue, _SET_COUNT, _finish_set, False)
        return self._set_command(_encode_set(dbidx, bkey, bvalue, xt, no_reply), no_reply)

    def set_bytes(
        self,
        key: Any,
        value: bytes,
        db: int | None = None,
        expire_time: Any = None,
        no_reply: bool = False,
    ) -> Any:
        """Store raw bytes without serializing them."""
        return self.set(key, value, db, expire_time, no_reply, False)

    def set_bulk(
        self,
        data: Mapping[Any, Any] | Iterable[tuple[Any, Any]],
        db: int | None = None,
        expire_time: Any = None,
        no_reply: bool = False,
        encode_values: bool = True,
    ) -> Any:
        """Store many records in one request; return how many were stored."""
        dbidx = self.default_db if db is None else self.resolve_db(db)
        xt = INT64MAX if expire_time is None else self.wire_xt(expire_time)
        if type(data) is dict and (self._utf8_values or not encode_values):
            # Fastest path, a dict of str -> str: keys and values encoded in C (map),
            # the frame built from the two lists; a TypeError (not all str) or
            # UnicodeEncodeError (lone surrogate) falls through to the paths below.
            try:
                ks = list(map(_str_encode, data, _UTF8, _SURROGATES))
                vs = list(map(_str_encode, data.values()))
            except (TypeError, UnicodeEncodeError):
                pass
            else:
                request = _encode_set_bulk_db(dbidx, ks, vs, xt, no_reply)
                return self._set_command(request, no_reply)
        ek = self.encode_key
        enc = self._encode_value if encode_values else raw_value
        items = data.items() if isinstance(data, Mapping) else data
        records: Any = None
        if enc is raw_value or self._utf8_values:
            # Fast path for str keys and str/bytes values: encode inline, no calls.
            if not isinstance(items, (list, tuple, type({}.items()))):
                items = list(items)
            try:
                records = [
                    (
                        dbidx,
                        k.encode("utf-8", "surrogateescape") if type(k) is str else ek(k),
                        v.encode("utf-8")
                        if type(v) is str
                        else (v if type(v) is bytes else enc(v)),
                        xt,
                    )
                    for k, v in items
                ]
            except UnicodeEncodeError:
                records = None  # the general path raises the proper error
        if records is None:
            records = [(dbidx, ek(k), enc(v), xt) for k, v in items]
        return self._set_command(_encode_set_bulk(records, no_reply), no_reply)

    def set_bulk_details(
        self,
        data: Iterable[tuple[int, Any, Any, Any]],
        no_reply: bool = False,
        encode_values: bool = True,
    ) -> Any:
        """Store ``(db, key, value, expire_time)`` records, each with its own db and xt."""
        ek = self.encode_key
        enc = self._encode_value if encode_values else raw_value
        check = self.resolve_db
        xt = self.wire_xt
        records = [(check(d), ek(k), enc(v), xt(t)) for d, k, v, t in data]
        return self._set_command(_encode_set_bulk(records, no_reply), no_reply)

    # -- binary protocol: remove -------------------------------------------------------------

    def _remove_command(self, request: bytes, no_reply: bool) -> Any:
        if no_reply:
            return self.execute_command(Command(NOREPLY, request, None, _none, name="remove_bulk"))
        return self._binary(request, _REMOVE_COUNT, _finish_remove, False)

    def remove(self, key: Any, db: int | None = None, no_reply: bool = False) -> Any:
        """Remove one key; return the number removed (1 or 0)."""
        if type(key) is str:
            try:
                bkey = key.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                bkey = self.encode_key(key)  # raises InvalidArgument
        else:
            bkey = self.encode_key(key)  # (sizes are checked by the frame encoder)
        dbidx = self.default_db if db is None else self.resolve_db(db)  # (0..0xFFFF)
        if not no_reply and len(bkey) <= DATA_MAX_SIZE:  # encode_remove, inlined
            request = _GET1_pack(0xB9, 0, 1, dbidx, len(bkey)) + bkey
            return self._binary(request, _REMOVE_COUNT, _finish_remove, False)
        return self._remove_command(_encode_remove(dbidx, bkey, no_reply), no_reply)

    def remove_bulk(
        self, keys: Iterable[Any], db: int | None = None, no_reply: bool = False
    ) -> Any:
        """Remove many keys of one database; return the number removed."""
        request = _encode_remove_bulk_db(self.resolve_db(db), self.key_list(keys), no_reply)
        return self._remove_command(request, no_reply)

    def remove_bulk_details(
        self, db_key_list: Iterable[tuple[int, Any]], no_reply: bool = False
    ) -> Any:
        """Remove ``(db, key)`` pairs across databases; return the number removed."""
        ek = self.encode_key
        check = self.resolve_db
        request = _encode_remove_bulk([(check(d), ek(k)) for d, k in db_key_list], no_reply)
        return self._remove_command(request, no_reply)

    # -- HTTP: single-record procedures ---------------------------------------------------

    def _write(
        self, proc: str, key: Any, value: Any, db: Any, expire_time: Any, encode_value: bool
    ) -> Any:
        bvalue = check_size(self._encode_value(value) if encode_value else raw_value(value))
        params = [(b"key", self.encode_key(key)), (b"value", bvalue)]
        self.with_xt(params, expire_time)
        return self.execute_command(self.rpc_command(proc, params, db, (450,)).then(_status_ok))

    def add(
        self,
        key: Any,
        value: Any,
        db: int | None = None,
        expire_time: Any = None,
        encode_value: bool = True,
    ) -> Any:
        """Store only if the key does not exist; ``False`` if it does."""
        return self._write("add", key, value, db, expire_time, encode_value)

    def replace(
        self,
        key: Any,
        value: Any,
        db: int | None = None,
        expire_time: Any = None,
        encode_value: bool = True,
    ) -> Any:
        """Store only if the key exists; ``False`` if it does not."""
        return self._write("replace", key, value, db, expire_time, encode_value)

    def append(
        self,
        key: Any,
        value: Any,
        db: int | None = None,
        expire_time: Any = None,
        encode_value: bool = True,
    ) -> Any:
        """Append to the value at ``key`` (creating it if missing)."""
        return self._write("append", key, value, db, expire_time, encode_value)

    def _increment(
        self,
        proc: str,
        number: Any,
        key: Any,
        n: Any,
        orig: Any,
        db: Any,
        expire_time: Any,
        convert: Any,
    ) -> Any:
        """``increment``/``increment_double``: ``number`` turns ``n`` and a numeric
        ``orig`` into the parameters' text, ``convert`` the answer into the value."""
        params = [(b"key", self.encode_key(key)), (b"num", number("n", n))]
        if orig is not None:
            o = special_orig(orig) if isinstance(orig, str) else number("orig", orig)
            params.append((b"orig", o))
        cmd = self.rpc_command(proc, self.with_xt(params, expire_time), db)
        return self.execute_command(cmd.then(lambda r: convert(r[1][b"num"])))

    def increment(
        self,
        key: Any,
        n: int = 1,
        orig: int | str | None = None,
        db: int | None = None,
        expire_time: Any = None,
    ) -> Any:
        """Add ``n`` to the 8-byte counter at ``key``; return the new value.

        ``orig`` is the starting value when the key is missing (``'try'`` fails instead,
        ``'set'`` overwrites).  A value that is not a counter raises ServerError (450).
        """
        return self._increment("increment", int_arg, key, n, orig, db, expire_time, int)

    def increment_double(
        self,
        key: Any,
        n: float = 1.0,
        orig: float | str | None = None,
        db: int | None = None,
        expire_time: Any = None,
    ) -> Any:
        """Add ``n`` to the 16-byte decimal counter at ``key``; return the new value."""
        return self._increment("increment_double", float_arg, key, n, orig, db, expire_time, float)

    def cas(
        self,
        key: Any,
        old_val: Any,
        new_val: Any,
        db: int | None = None,
        expire_time: Any = None,
        encode_value: bool = True,
    ) -> Any:
        """Atomically replace ``old_val`` by ``new_val``; ``False`` if the value differed.

        ``old_val=None`` means "the key must not exist"; ``new_val=None`` removes it.
        """
        if old_val is None and new_val is None:
            raise InvalidArgument("cas needs old_val, new_val or both")
        enc = self._encode_value if encode_value else raw_value
        params = [(b"key", self.encode_key(key))]
        if old_val is not None:
            params.append((b"oval", check_size(enc(old_val))))
        if new_val is not None:
            params.append((b"nval", check_size(enc(new_val))))
        self.with_xt(params, expire_time)
        return self.execute_command(self.rpc_command("cas", params, db, (450,)).then(_status_ok))

    def exists(self, key: Any, db: int | None = None) -> Any:
        """Whether ``key`` exists (and has not expired)."""
        cmd = self.rpc_command("check", [(b"key", self.encode_key(key))], db, (450,), True)
        return self.execute_command(cmd.then(_status_ok))

    check = exists

    def length(self, key: Any, db: int | None = None) -> Any:
        """Size in bytes of the raw value at ``key``, or ``None``."""
        cmd = self.rpc_command("check", [(b"key", self.encode_key(key))], db, (450,), True)
        return self.execute_command(cmd.then(lambda r: int(r[1][b"vsiz"]) if r[0] == 200 else None))

    def seize(self, key: Any, db: int | None = None, decode_value: bool = True) -> Any:
        """Atomically get and remove the value at ``key``; ``None`` if missing."""
        dec = self._decode_value if decode_value else None

        def finish(r: tuple[int, dict[bytes, bytes]]) -> Any:
            if r[0] != 200:
                return None
            value = r[1][b"value"]
            return dec(value) if dec is not None else value

        cmd = self.rpc_command("seize", [(b"key", self.encode_key(key))], db, (450,))
        return self.execute_command(cmd.then(finish))

    pop = seize

    def vacuum(self, step: int = 0, db: int | None = None) -> Any:
        """Collect expired records (``step`` records, or all when 0)."""
        step_b = int_arg("step", step)
        params = [(b"step", step_b)] if step > 0 else []
        return self.execute_command(self.rpc_command("vacuum", params, db).then(_true))

    # -- HTTP: matching -------------------------------------------------------------------

    def _match(self, proc: str, params: list[tuple[bytes, bytes]], max_keys: Any, db: Any) -> Any:
        if max_keys is not None:
            params.append((b"max", int_arg("max_keys", max_keys)))
        dk = self.decode_key

        def finish(r: tuple[int, dict[bytes, bytes]]) -> list[Any]:
            ordered = sorted(
                ((int(v), k[1:]) for k, v in r[1].items() if k[:1] == b"_"), key=lambda p: p[0]
            )
            return [dk(k) for _, k in ordered]

        return self.execute_command(self.rpc_command(proc, params, db, (), True).then(finish))

    def match_prefix(self, prefix: Any, max_keys: int | None = None, db: int | None = None) -> Any:
        """Keys starting with ``prefix``, in the database's order (sorted on tree DBs).

        Like ktserver, this may include keys of expired records not yet collected.
        """
        return self._match("match_prefix", [(b"prefix", self.encode_key(prefix))], max_keys, db)

    def match_regex(self, regex: Any, max_keys: int | None = None, db: int | None = None) -> Any:
        """Keys matching the POSIX extended regular expression ``regex``."""
        return self._match("match_regex", [(b"regex", self.encode_key(regex))], max_keys, db)

    def match_similar(
        self,
        origin: Any,
        distance: int | None = None,
        max_keys: int | None = None,
        db: int | None = None,
    ) -> Any:
        """Keys within ``distance`` edits of ``origin`` (UTF-8 aware), nearest first."""
        params = [(b"origin", self.encode_key(origin)), (b"utf", b"true")]
        if distance is not None:
            params.append((b"range", int_arg("distance", distance)))
        return self._match("match_similar", params, max_keys, db)

    def keys_nonlazy(self, db: int | None = None) -> Any:
        """All keys in one request (``match_prefix('')``)."""
        return self.match_prefix(b"", db=db)

    # -- HTTP: update log -----------------------------------------------------------------

    def ulog_list(self) -> Any:
        """``[(path, size, max_timestamp), ...]`` of the update-log files.

        The timestamp is a naive UTC ``datetime`` (the server's clock, ms precision).
        """

        def finish(r: tuple[int, dict[bytes, bytes]]) -> list[tuple[str, str, _dt.datetime]]:
            result = []
            for path, meta in sorted(r[1].items()):
                size, _, ts = meta.decode("ascii").partition(":")
                when = _dt.datetime.fromtimestamp(int(ts) / 1e9, _dt.timezone.utc)
                result.append((path.decode("utf-8", "replace"), size, when.replace(tzinfo=None)))
            return result

        return self.execute_command(self.rpc_command("ulog_list", [], NO_DB, (), True).then(finish))

    def ulog_remove(self, max_dt: _dt.datetime | None = None) -> Any:
        """Remove update-log files older than ``max_dt`` (naive = UTC; default now)."""
        if max_dt is None:
            ts = time.time()
        elif isinstance(max_dt, _dt.datetime):
            if max_dt.tzinfo is None:
                max_dt = max_dt.replace(tzinfo=_dt.timezone.utc)
            ts = max_dt.timestamp()
        else:
            raise InvalidArgument(f"max_dt must be a datetime, not {type(max_dt).__name__}")
        cmd = self.rpc_command("ulog_remove", [(b"ts", b"%d" % int(ts * 1e9))], NO_DB)
        return self.execute_command(cmd.then(_true))

    # -- HTTP: database information and maintenance ----------------------------------------

    def _report_command(self) -> Command:
        return self.rpc_command("report", [], NO_DB, (), True).then(lambda r: numbers(r[1]))

    def report(self) -> Any:
        """The server's report (counters, configuration, ``db_<i>`` summaries)."""
        return self.execute_command(self._report_command())

    def _status_command(self, db: Any) -> Command:
        return self.rpc_command("status", [], db, (), True).then(lambda r: numbers(r[1]))

    def status(self, db: int | None = None) -> Any:
        """Status of one database (``count``, ``size``, ``path``, ``type``...)."""
        return self.execute_command(self._status_command(db))

    def count(self, db: int | None = None) -> Any:
        """Number of records (including expired ones not yet collected)."""
        return self.execute_command(
            self._status_command(db).then(lambda s: int(s.get("count") or 0))
        )

    def size(self, db: int | None = None) -> Any:
        """Size of the database in bytes, as the server reports it."""
        return self.execute_command(
            self._status_command(db).then(lambda s: int(s.get("size") or 0))
        )

    @staticmethod
    def _database_paths(report: dict[str, Any]) -> list[str]:
        found = []
        for key, value in report.items():
            if key.startswith("db_") and key[3:].isdigit():
                path = str(value).split("path=", 1)[-1] if "path=" in str(value) else ""
                found.append((int(key[3:]), path))
        return [path for _, path in sorted(found)]

    @property
    def databases(self) -> Any:
        """Paths of the server's databases, in index order."""
        return self.execute_command(self._report_command().then(self._database_paths))

    def _list_databases(self) -> Program:
        paths = yield self._report_command().then(self._database_paths)
        result = []
        for db, path in enumerate(paths):
            result.append((path, (yield self._status_command(db))))
        return result

    def list_databases(self) -> Any:
        """``[(path, status), ...]`` for every database."""
        return self.execute_command(self._list_databases())

    def clear(self, db: int | None = None) -> Any:
        """Remove every record of the database."""
        return self.execute_command(self.rpc_command("clear", [], db).then(_true))

    def synchronize(
        self, hard: bool = False, command: str | None = None, db: int | None = None
    ) -> Any:
        """Flush the database to its file, then optionally run ``command`` (a file name in
        the server's ``-cmd`` directory).  ``False`` when the server reports a failure."""
        params: list[tuple[bytes, bytes]] = []
        if hard:
            params.append((b"hard", b""))
        if command is not None:
            params.append((b"command", command.encode("utf-8")))
        return self.execute_command(
            self.rpc_command("synchronize", params, db, (450, 500)).then(_status_ok)
        )

    def update(self, __data: Mapping[Any, Any] | None = None, **kwargs: Any) -> Any:
        """Set many records (dict-style); see :meth:`set_bulk`."""
        data = dict(__data) if __data is not None else {}
        data.update(kwargs)
        return self.set_bulk(data)

"""The Kyoto Tycoon client: the documented API of ukt's ``KyotoTycoon``.

Each method uses the protocol that suits it (kt-protocol.md §1): the binary protocol
for get/set/remove and their bulk forms (a single-key get is a one-key get_bulk), and
HTTP TSV-RPC for everything else.  Both go through the connection pool
(:mod:`ktstore.pool`), which owns the retry and socket-hygiene rules.

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
import itertools
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from itertools import repeat
from typing import Any

from ktstore.errors import InvalidArgument, ScriptError, ServerError
from ktstore.lua_api import LuaMethods
from ktstore.pool import Pool
from ktstore.protocol import binary as _bin
from ktstore.protocol import dumps, http, tsv
from ktstore.protocol.expire import to_wire_xt
from ktstore.protocol.limits import DATA_MAX_SIZE, HTTP_BODY_MAX, INT64MAX
from ktstore.serializers import KT_BINARY, _binary_decode, _binary_encode, get_serializer

__all__ = ["KyotoTycoon"]

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
_parse_get_bulk_reply = _bin.parse_get_bulk_reply
_parse_count_reply = _bin.parse_count_reply
_parse_play_script_reply = _bin.parse_play_script_reply
_SET_ARGS = (_bin.MAGIC_SET_BULK,)
_REMOVE_ARGS = (_bin.MAGIC_REMOVE_BULK,)
_NO_ARGS = ()

_NUM_RE = re.compile(rb"^-?\d+$")
_FLOAT_RE = re.compile(rb"^-?\d+\.\d+$")
_NO_DB = object()  # "this procedure takes no DB parameter"
# Control bytes other than TAB and LF (those two are counted instead).
_CONTROL_OTHER = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
_CTYPES = {None: tsv.content_type_for(None), "B": tsv.content_type_for("B")}
_parsed_ctypes: dict[str, tuple[str, str | None]] = {}
# Arguments for map(str.encode, keys, _UTF8, _SURROGATES): endless, so shareable.
_str_encode = str.encode
_UTF8 = repeat("utf-8")
_SURROGATES = repeat("surrogateescape")
_TABS = repeat(b"\t")
_ONCE = repeat(1)


def _raw_value(value: Any) -> bytes:
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
        return _raw_value(str(value))
    raise InvalidArgument(f"a raw value must be bytes or str, not {t.__name__}")


def _int_arg(name: str, value: Any) -> bytes:
    """A whole-number parameter as decimal bytes; anything else is InvalidArgument."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, bool) or int(value) != value:
                raise ValueError
            value = int(value)
        except (TypeError, ValueError, OverflowError):
            raise InvalidArgument(f"{name} must be an integer, not {value!r}") from None
    return b"%d" % value


def _float_arg(name: str, value: Any) -> bytes:
    if isinstance(value, bool):
        raise InvalidArgument(f"{name} must be a number, not {value!r}")
    try:
        return repr(float(value)).encode("ascii")
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgument(f"{name} must be a number, not {value!r}") from None


def _special_orig(orig: str) -> bytes:
    """``orig='try'`` (fail if missing) or ``'set'`` (overwrite), ktserver's keywords."""
    if orig not in ("try", "set"):
        raise InvalidArgument(f"orig must be a number, 'try' or 'set', not {orig!r}")
    return orig.encode("ascii")


def _check_size(value: bytes) -> bytes:
    if len(value) > DATA_MAX_SIZE:
        raise InvalidArgument(f"value of {len(value)} bytes exceeds the protocol limit")
    return value


def _parse_number(value: bytes) -> Any:
    if _NUM_RE.match(value):
        return int(value)
    if _FLOAT_RE.match(value):
        return float(value)
    return value.decode("utf-8", "replace")


def _numbers(out: dict[bytes, bytes]) -> dict[str, Any]:
    """A report/status output with text keys, numbers as int/float (digits inline)."""
    return {
        k.decode("utf-8", "replace"): int(v) if v.isdigit() else _parse_number(v)
        for k, v in out.items()
    }


class KyotoTycoon(LuaMethods):
    """Client for a Kyoto Tycoon server (or ``ktstore-server``).

    Thread-safe: any number of threads may share one client; each request borrows a
    connection from the pool.  Safe across ``fork()``: a child process opens its own
    connections.

    :param host: server host.
    :param port: server port.
    :param timeout: socket timeout in seconds for connecting and for each read;
        ``None`` means :data:`ktstore.connection.DEFAULT_TIMEOUT` (a dead server must
        never hang the caller).
    :param default_db: database index used when a method's ``db`` is ``None``.
    :param decode_keys: return keys as ``str`` (UTF-8; bytes that are not UTF-8 come
        back as surrogate escapes, so they round-trip exactly) instead of ``bytes``.
    :param serializer: ``KT_BINARY`` (default), ``KT_JSON``, ``KT_MSGPACK``,
        ``KT_PICKLE`` or ``KT_NONE``.
    :param encode_value: custom function value -> bytes (overrides the serializer's).
    :param decode_value: custom function bytes -> value.
    :param max_age: idle connections older than this many seconds are not reused.
    """

    _cursor_ids = itertools.count(1)

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
        # The "Client internals" contract: plain callables on the instance, so the hot
        # path is one call without a method lookup through the class.
        self._encode_value = self.encode_value = enc
        self._decode_value = self.decode_value = dec
        # KT_BINARY without custom codecs: bulk paths inline str.encode/bytes.decode.
        self._utf8_values = enc is _binary_encode and dec is _binary_decode
        self.max_age = max_age
        self._pool = Pool(host, port, timeout, max_age)
        self._host_header = f"{host}:{port}"
        self._rpc_heads: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"<KyotoTycoon {self.host}:{self.port} db={self.default_db}>"

    @property
    def pool(self) -> Pool:
        """The connection pool (for statistics and tests)."""
        return self._pool

    # -- internals shared with lua_api / containers / models --------------------------

    @staticmethod
    def _check_db(db: Any) -> int:
        if type(db) is int and 0 <= db <= 0xFFFF:
            return db
        raise InvalidArgument(f"database index must be an int in 0..65535, not {db!r}")

    def _db(self, db: Any) -> int:
        """``None`` -> the default database index; anything but an index is refused."""
        if db is None:
            return self.default_db
        if type(db) is int and 0 <= db <= 0xFFFF:
            return db
        raise InvalidArgument(f"database index must be an int in 0..65535, not {db!r}")

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

    def _xt(self, expire_time: Any) -> int:
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

    def _with_xt(
        self, params: list[tuple[bytes, bytes]], expire_time: Any
    ) -> list[tuple[bytes, bytes]]:
        """``params`` plus the ``xt`` parameter of an HTTP procedure, when one is given."""
        if expire_time is not None:
            params.append((b"xt", b"%d" % self._xt(expire_time)))
        return params

    def _play_script(
        self, name: str | bytes, params: list[tuple[bytes, bytes]], no_reply: bool = False
    ) -> list[tuple[bytes, bytes]] | None:
        """Binary PLAY_SCRIPT.  A 0xBF reply (any script failure) raises ScriptError and
        keeps the connection, as ktserver does."""
        bname = name.encode("utf-8") if isinstance(name, str) else bytes(name)
        data = _encode_play_script(bname, params, no_reply)
        if no_reply:
            self._pool.send_only(data)
            return None
        result = self._pool.request(data, _parse_play_script_reply, _NO_ARGS, False, True)
        if result is _ERROR_REPLY:
            pname = bname.decode("utf-8", "replace")
            raise ScriptError("the scripting procedure failed", None, pname)
        return result

    def _key_list(self, keys: Iterable[Any]) -> list[bytes]:
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

    def _binary_error(self, command: str) -> ServerError:
        return ServerError(f"the server rejected the {command} request", None, command)

    # -- HTTP RPC -------------------------------------------------------------------------

    def _rpc(
        self,
        name: str,
        params: list[tuple[bytes, bytes]],
        db: Any = None,
        allowed: tuple[int, ...] = (),
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> tuple[int, dict[bytes, bytes]]:
        """Call ``/rpc/<name>``; return ``(status, output)``.

        A status other than 200 and those in ``allowed`` raises ServerError carrying the
        server's ``ERROR`` text.  ``idempotent`` requests are retried once after a
        network failure; ``timeout`` (seconds) extends the read timeout of this request
        (for ``WAIT`` conditions).
        """
        request = self._build_rpc(name, params, db)
        status, headers, rbody = self._pool.http(request, idempotent, timeout)
        return self._rpc_result(name, status, headers, rbody, allowed)

    def _build_rpc(self, name: str, params: list[tuple[bytes, bytes]], db: Any) -> bytes:
        """The bytes of a ``POST /rpc/<name>`` request (TSV body, colenc only if needed).

        One pass builds the raw TSV body; its TABs and LFs are then counted: a field
        holding a control byte (TAB, LF, CR... would break the line structure) means
        Base64 instead, which ktserver decodes for any byte.  Unlike a response, a long
        plain field needs no encoding: raw is the smallest.  The request line and the
        fixed headers of each procedure are built once.
        """
        lines = [b"%s\t%s\n" % (k, v) for k, v in params]
        n = len(lines)
        if db is not _NO_DB:
            lines.insert(0, b"DB\t%d\n" % self._db(db))
            n += 1
        body = b"".join(lines)
        if body.count(b"\n") != n or body.count(b"\t") != n or _CONTROL_OTHER.search(body):
            if db is not _NO_DB:
                params = [(b"DB", b"%d" % self._db(db)), *params]
            body = tsv.encode_tsv(params, "B")
            head = self._rpc_head(name, "B")
        else:
            head = self._rpc_heads.get(name) or self._rpc_head(name, None)
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
        ctype = headers.get("content-type", "") if headers else ""
        parsed = _parsed_ctypes.get(ctype)
        if parsed is None:
            parsed = tsv.parse_content_type(ctype) if ctype else ("", None)
            if len(_parsed_ctypes) < 64:  # a handful of distinct values in practice
                _parsed_ctypes[ctype] = parsed
        media, colenc = parsed
        if media != "text/tab-separated-values" or not body:
            out = {}
        elif colenc is None:
            # Raw TSV (tsv.decode_tsv's rules): each line splits at its first TAB, a
            # repeated key keeps the last.  The usual body (no CR, a TAB on every line)
            # is split in C; a line without TAB makes dict() refuse, and the loop
            # below ignores such lines and drops a CR before the LF.
            lines = body.split(b"\n")
            if not lines[-1]:
                lines.pop()
            try:
                if b"\r" in body:
                    raise ValueError
                out = dict(map(bytes.split, lines, _TABS, _ONCE))
            except ValueError:
                out = {}
                for line in lines:
                    key, sep, value = line.partition(b"\t")
                    if sep:
                        out[key] = value[:-1] if value[-1:] == b"\r" else value
        else:
            out = dict(tsv.decode_tsv(body, colenc))
        if status != 200 and status not in allowed:
            message = out.get(b"ERROR")
            if message is None:
                text = body.decode("utf-8", "replace").strip() or f"HTTP status {status}"
            else:
                text = message.decode("utf-8", "replace")
            raise ServerError(text, status, name)
        return status, out

    # -- configuration ----------------------------------------------------------------------

    def set_database(self, db: int) -> None:
        """Set the database index used when a method is called with ``db=None``."""
        self.default_db = self._check_db(db)

    def close_all(self) -> int:
        """Close every pooled connection; return how many were closed."""
        return self._pool.close_all()

    # -- mapdump / arraydump ----------------------------------------------------------------

    def serialize_dict(self, d: Mapping[Any, Any], encode_values: bool = True) -> bytes:
        """``d`` in the byte format of KT's Lua ``mapdump`` (and the Hash container)."""
        enc = self._encode_value if encode_values else _raw_value
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
        enc = self._encode_value if encode_values else _raw_value
        return dumps.arraydump([enc(v) for v in values])

    def deserialize_list(self, data: bytes, decode_values: bool = True) -> list[Any]:
        """Inverse of :meth:`serialize_list` (KT's Lua ``arrayload``)."""
        items = dumps.arrayload(bytes(data))
        if decode_values:
            dec = self._decode_value
            return [dec(v) for v in items]
        return list(items)

    # -- binary protocol: get --------------------------------------------------------------

    def get(self, key: Any, db: int | None = None, decode_value: bool = True) -> Any:
        """The value at ``key`` (deserialized unless ``decode_value=False``), or ``None``."""
        # The single-key paths inline the common cases (str key, default db, KT_BINARY)
        # to keep the per-call overhead minimal; everything else takes the checked path.
        if type(key) is str:
            try:
                bkey = key.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                bkey = self.encode_key(key)  # raises InvalidArgument
        else:
            bkey = self.encode_key(key)  # (sizes are checked by the frame encoder)
        dbidx = self.default_db if db is None else self._db(db)
        request = _encode_get(dbidx, bkey)
        records = self._pool.request(request, _parse_get_bulk_reply, _NO_ARGS, True)
        if not records:
            return None
        if records is _ERROR_REPLY:
            raise self._binary_error("get_bulk")
        value = records[0][2]
        return self._decode_value(value) if decode_value else value

    def get_bytes(self, key: Any, db: int | None = None) -> bytes | None:
        """The raw bytes at ``key``, or ``None``."""
        return self.get(key, db, False)

    def get_bulk(
        self, keys: Iterable[Any], db: int | None = None, decode_values: bool = True
    ) -> dict[Any, Any]:
        """``{key: value}`` for the keys that exist (missing keys are left out)."""
        dbidx = self._db(db)
        request = _encode_get_bulk_db(dbidx, self._key_list(keys))
        records = self._pool.request(request, _parse_get_bulk_reply, _NO_ARGS, True)
        if records is _ERROR_REPLY:
            raise self._binary_error("get_bulk")
        if self.decode_keys:
            if decode_values:
                if self._utf8_values:
                    # KT_BINARY fast path: str.decode in the comprehension, the
                    # serializer (and its SerializationError) only if that fails.
                    try:
                        return {
                            r[1].decode("utf-8", "surrogateescape"): r[2].decode("utf-8")
                            for r in records
                        }
                    except UnicodeDecodeError:
                        pass
                dec = self._decode_value
                return {r[1].decode("utf-8", "surrogateescape"): dec(r[2]) for r in records}
            return {r[1].decode("utf-8", "surrogateescape"): r[2] for r in records}
        if decode_values:
            dec = self._decode_value
            return {r[1]: dec(r[2]) for r in records}
        return {r[1]: r[2] for r in records}

    def get_bulk_details(
        self, db_key_list: Iterable[tuple[int, Any]], decode_values: bool = True
    ) -> list[tuple[int, Any, Any, int]]:
        """``[(db, key, value, xt), ...]`` for the ``(db, key)`` pairs that exist.

        ``xt`` is the absolute expiration reported by the server (``0xFFFFFFFFFF``,
        XTMAX, when the record never expires), as ukt returns it.
        """
        ek = self.encode_key
        check = self._db
        request = _encode_get_bulk([(check(d), ek(k)) for d, k in db_key_list])
        records = self._pool.request(request, _parse_get_bulk_reply, _NO_ARGS, True)
        if records is _ERROR_REPLY:
            raise self._binary_error("get_bulk")
        dk = self.decode_key
        dec = self._decode_value if decode_values else None
        return [(d, dk(k), dec(v) if dec is not None else v, xt) for d, k, v, xt in records]

    # -- binary protocol: set ----------------------------------------------------------------

    def _set_request(self, request: bytes, no_reply: bool) -> int | None:
        if no_reply:
            self._pool.send_only(request)
            return None
        n = self._pool.request(request, _parse_count_reply, _SET_ARGS, False)
        if n is _ERROR_REPLY:
            raise self._binary_error("set_bulk")
        return n

    def set(
        self,
        key: Any,
        value: Any,
        db: int | None = None,
        expire_time: Any = None,
        no_reply: bool = False,
        encode_value: bool = True,
    ) -> int | None:
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
            bvalue = _raw_value(value)
        if type(key) is str:
            try:
                bkey = key.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                bkey = self.encode_key(key)  # raises InvalidArgument
        else:
            bkey = self.encode_key(key)  # (sizes are checked by the frame encoder)
        dbidx = self.default_db if db is None else self._db(db)
        xt = INT64MAX if expire_time is None else self._xt(expire_time)
        request = _encode_set(dbidx, bkey, bvalue, xt, no_reply)
        if no_reply:
            self._pool.send_only(request)
            return None
        n = self._pool.request(request, _parse_count_reply, _SET_ARGS, False)
        if n is _ERROR_REPLY:
            raise self._binary_error("set_bulk")
        return n

    def set_bytes(
        self,
        key: Any,
        value: bytes,
        db: int | None = None,
        expire_time: Any = None,
        no_reply: bool = False,
    ) -> int | None:
        """Store raw bytes without serializing them."""
        return self.set(key, value, db, expire_time, no_reply, False)

    def set_bulk(
        self,
        data: Mapping[Any, Any] | Iterable[tuple[Any, Any]],
        db: int | None = None,
        expire_time: Any = None,
        no_reply: bool = False,
        encode_values: bool = True,
    ) -> int | None:
        """Store many records in one request; return how many were stored."""
        dbidx = self.default_db if db is None else self._db(db)
        xt = INT64MAX if expire_time is None else self._xt(expire_time)
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
                return self._set_request(request, no_reply)
        ek = self.encode_key
        enc = self._encode_value if encode_values else _raw_value
        items = data.items() if isinstance(data, Mapping) else data
        records: Any = None
        if enc is _raw_value or self._utf8_values:
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
        return self._set_request(_encode_set_bulk(records, no_reply), no_reply)

    def set_bulk_details(
        self,
        data: Iterable[tuple[int, Any, Any, Any]],
        no_reply: bool = False,
        encode_values: bool = True,
    ) -> int | None:
        """Store ``(db, key, value, expire_time)`` records, each with its own db and xt."""
        ek = self.encode_key
        enc = self._encode_value if encode_values else _raw_value
        check = self._db
        xt = self._xt
        records = [(check(d), ek(k), enc(v), xt(t)) for d, k, v, t in data]
        return self._set_request(_encode_set_bulk(records, no_reply), no_reply)

    # -- binary protocol: remove -------------------------------------------------------------

    def _remove_request(self, request: bytes, no_reply: bool) -> int | None:
        if no_reply:
            self._pool.send_only(request)
            return None
        n = self._pool.request(request, _parse_count_reply, _REMOVE_ARGS, False)
        if n is _ERROR_REPLY:
            raise self._binary_error("remove_bulk")
        return n

    def remove(self, key: Any, db: int | None = None, no_reply: bool = False) -> int | None:
        """Remove one key; return the number removed (1 or 0)."""
        if type(key) is str:
            try:
                bkey = key.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                bkey = self.encode_key(key)  # raises InvalidArgument
        else:
            bkey = self.encode_key(key)  # (sizes are checked by the frame encoder)
        dbidx = self.default_db if db is None else self._db(db)
        request = _encode_remove(dbidx, bkey, no_reply)
        return self._remove_request(request, no_reply)

    def remove_bulk(
        self, keys: Iterable[Any], db: int | None = None, no_reply: bool = False
    ) -> int | None:
        """Remove many keys of one database; return the number removed."""
        request = _encode_remove_bulk_db(self._db(db), self._key_list(keys), no_reply)
        return self._remove_request(request, no_reply)

    def remove_bulk_details(
        self, db_key_list: Iterable[tuple[int, Any]], no_reply: bool = False
    ) -> int | None:
        """Remove ``(db, key)`` pairs across databases; return the number removed."""
        ek = self.encode_key
        check = self._db
        request = _encode_remove_bulk([(check(d), ek(k)) for d, k in db_key_list], no_reply)
        return self._remove_request(request, no_reply)

    # -- HTTP: single-record procedures ---------------------------------------------------

    def _write(
        self, proc: str, key: Any, value: Any, db: Any, expire_time: Any, encode_value: bool
    ) -> bool:
        bvalue = _check_size(self._encode_value(value) if encode_value else _raw_value(value))
        params = [(b"key", self.encode_key(key)), (b"value", bvalue)]
        self._with_xt(params, expire_time)
        status, _ = self._rpc(proc, params, db, (450,))
        return status == 200

    def add(
        self,
        key: Any,
        value: Any,
        db: int | None = None,
        expire_time: Any = None,
        encode_value: bool = True,
    ) -> bool:
        """Store only if the key does not exist; ``False`` if it does."""
        return self._write("add", key, value, db, expire_time, encode_value)

    def replace(
        self,
        key: Any,
        value: Any,
        db: int | None = None,
        expire_time: Any = None,
        encode_value: bool = True,
    ) -> bool:
        """Store only if the key exists; ``False`` if it does not."""
        return self._write("replace", key, value, db, expire_time, encode_value)

    def append(
        self,
        key: Any,
        value: Any,
        db: int | None = None,
        expire_time: Any = None,
        encode_value: bool = True,
    ) -> bool:
        """Append to the value at ``key`` (creating it if missing)."""
        return self._write("append", key, value, db, expire_time, encode_value)

    def _increment(
        self, proc: str, number: Any, key: Any, n: Any, orig: Any, db: Any, expire_time: Any
    ) -> bytes:
        """``increment``/``increment_double``: the new value's text; ``number`` turns
        ``n`` and a numeric ``orig`` into the parameters' text."""
        params = [(b"key", self.encode_key(key)), (b"num", number("n", n))]
        if orig is not None:
            o = _special_orig(orig) if isinstance(orig, str) else number("orig", orig)
            params.append((b"orig", o))
        _, out = self._rpc(proc, self._with_xt(params, expire_time), db)
        return out[b"num"]

    def increment(
        self,
        key: Any,
        n: int = 1,
        orig: int | str | None = None,
        db: int | None = None,
        expire_time: Any = None,
    ) -> int:
        """Add ``n`` to the 8-byte counter at ``key``; return the new value.

        ``orig`` is the starting value when the key is missing (``'try'`` fails instead,
        ``'set'`` overwrites).  A value that is not a counter raises ServerError (450).
        """
        return int(self._increment("increment", _int_arg, key, n, orig, db, expire_time))

    def increment_double(
        self,
        key: Any,
        n: float = 1.0,
        orig: float | str | None = None,
        db: int | None = None,
        expire_time: Any = None,
    ) -> float:
        """Add ``n`` to the 16-byte decimal counter at ``key``; return the new value."""
        return float(self._increment("increment_double", _float_arg, key, n, orig, db, expire_time))

    def cas(
        self,
        key: Any,
        old_val: Any,
        new_val: Any,
        db: int | None = None,
        expire_time: Any = None,
        encode_value: bool = True,
    ) -> bool:
        """Atomically replace ``old_val`` by ``new_val``; ``False`` if the value differed.

        ``old_val=None`` means "the key must not exist"; ``new_val=None`` removes it.
        """
        if old_val is None and new_val is None:
            raise InvalidArgument("cas needs old_val, new_val or both")
        enc = self._encode_value if encode_value else _raw_value
        params = [(b"key", self.encode_key(key))]
        if old_val is not None:
            params.append((b"oval", _check_size(enc(old_val))))
        if new_val is not None:
            params.append((b"nval", _check_size(enc(new_val))))
        self._with_xt(params, expire_time)
        status, _ = self._rpc("cas", params, db, (450,))
        return status == 200

    def exists(self, key: Any, db: int | None = None) -> bool:
        """Whether ``key`` exists (and has not expired)."""
        status, _ = self._rpc("check", [(b"key", self.encode_key(key))], db, (450,), True)
        return status == 200

    check = exists

    def length(self, key: Any, db: int | None = None) -> int | None:
        """Size in bytes of the raw value at ``key``, or ``None``."""
        status, out = self._rpc("check", [(b"key", self.encode_key(key))], db, (450,), True)
        if status != 200:
            return None
        return int(out[b"vsiz"])

    def seize(self, key: Any, db: int | None = None, decode_value: bool = True) -> Any:
        """Atomically get and remove the value at ``key``; ``None`` if missing."""
        status, out = self._rpc("seize", [(b"key", self.encode_key(key))], db, (450,))
        if status != 200:
            return None
        value = out[b"value"]
        return self._decode_value(value) if decode_value else value

    pop = seize

    def vacuum(self, step: int = 0, db: int | None = None) -> bool:
        """Collect expired records (``step`` records, or all when 0)."""
        step_b = _int_arg("step", step)
        params = [(b"step", step_b)] if step > 0 else []
        self._rpc("vacuum", params, db)
        return True

    # -- HTTP: matching -------------------------------------------------------------------

    def _match(self, proc: str, params: list[tuple[bytes, bytes]], max_keys: Any, db: Any) -> list:
        if max_keys is not None:
            params.append((b"max", _int_arg("max_keys", max_keys)))
        _, out = self._rpc(proc, params, db, (), True)
        ordered = sorted(
            ((int(v), k[1:]) for k, v in out.items() if k[:1] == b"_"), key=lambda p: p[0]
        )
        dk = self.decode_key
        return [dk(k) for _, k in ordered]

    def match_prefix(
        self, prefix: Any, max_keys: int | None = None, db: int | None = None
    ) -> list[Any]:
        """Keys starting with ``prefix``, in the database's order (sorted on tree DBs).

        Like ktserver, this may include keys of expired records not yet collected.
        """
        return self._match("match_prefix", [(b"prefix", self.encode_key(prefix))], max_keys, db)

    def match_regex(
        self, regex: Any, max_keys: int | None = None, db: int | None = None
    ) -> list[Any]:
        """Keys matching the POSIX extended regular expression ``regex``."""
        return self._match("match_regex", [(b"regex", self.encode_key(regex))], max_keys, db)

    def match_similar(
        self,
        origin: Any,
        distance: int | None = None,
        max_keys: int | None = None,
        db: int | None = None,
    ) -> list[Any]:
        """Keys within ``distance`` edits of ``origin`` (UTF-8 aware), nearest first."""
        params = [(b"origin", self.encode_key(origin)), (b"utf", b"true")]
        if distance is not None:
            params.append((b"range", _int_arg("distance", distance)))
        return self._match("match_similar", params, max_keys, db)

    # -- HTTP: update log -----------------------------------------------------------------

    def ulog_list(self) -> list[tuple[str, str, _dt.datetime]]:
        """``[(path, size, max_timestamp), ...]`` of the update-log files.

        The timestamp is a naive UTC ``datetime`` (the server's clock, ms precision).
        """
        _, out = self._rpc("ulog_list", [], _NO_DB, (), True)
        result = []
        for path, meta in sorted(out.items()):
            size, _, ts = meta.decode("ascii").partition(":")
            when = _dt.datetime.fromtimestamp(int(ts) / 1e9, _dt.timezone.utc)
            result.append((path.decode("utf-8", "replace"), size, when.replace(tzinfo=None)))
        return result

    def ulog_remove(self, max_dt: _dt.datetime | None = None) -> bool:
        """Remove update-log files older than ``max_dt`` (naive = UTC; default now)."""
        if max_dt is None:
            ts = time.time()
        elif isinstance(max_dt, _dt.datetime):
            if max_dt.tzinfo is None:
                max_dt = max_dt.replace(tzinfo=_dt.timezone.utc)
            ts = max_dt.timestamp()
        else:
            raise InvalidArgument(f"max_dt must be a datetime, not {type(max_dt).__name__}")
        self._rpc("ulog_remove", [(b"ts", b"%d" % int(ts * 1e9))], _NO_DB)
        return True

    # -- HTTP: database information and maintenance ----------------------------------------

    def report(self) -> dict[str, Any]:
        """The server's report (counters, configuration, ``db_<i>`` summaries)."""
        _, out = self._rpc("report", [], _NO_DB, (), True)
        return _numbers(out)

    def status(self, db: int | None = None) -> dict[str, Any]:
        """Status of one database (``count``, ``size``, ``path``, ``type``...)."""
        _, out = self._rpc("status", [], db, (), True)
        return _numbers(out)

    def count(self, db: int | None = None) -> int:
        """Number of records (including expired ones not yet collected)."""
        return int(self.status(db).get("count") or 0)

    def size(self, db: int | None = None) -> int:
        """Size of the database in bytes, as the server reports it."""
        return int(self.status(db).get("size") or 0)

    @property
    def databases(self) -> list[str]:
        """Paths of the server's databases, in index order."""
        found = []
        for key, value in self.report().items():
            if key.startswith("db_") and key[3:].isdigit():
                path = str(value).split("path=", 1)[-1] if "path=" in str(value) else ""
                found.append((int(key[3:]), path))
        return [path for _, path in sorted(found)]

    def list_databases(self) -> list[tuple[str, dict[str, Any]]]:
        """``[(path, status), ...]`` for every database."""
        return [(path, self.status(db)) for db, path in enumerate(self.databases)]

    def clear(self, db: int | None = None) -> bool:
        """Remove every record of the database."""
        self._rpc("clear", [], db)
        return True

    def synchronize(
        self, hard: bool = False, command: str | None = None, db: int | None = None
    ) -> bool:
        """Flush the database to its file, then optionally run ``command`` (a file name in
        the server's ``-cmd`` directory).  ``False`` when the server reports a failure."""
        params: list[tuple[bytes, bytes]] = []
        if hard:
            params.append((b"hard", b""))
        if command is not None:
            params.append((b"command", command.encode("utf-8")))
        status, _ = self._rpc("synchronize", params, db, (450, 500))
        return status == 200

    # -- dict-like interface --------------------------------------------------------------

    def _key_db(self, item: Any) -> tuple[Any, Any]:
        if type(item) is tuple:
            if len(item) != 2:
                raise InvalidArgument("expected a key or a (key, db) tuple")
            return item
        return item, None

    def __getitem__(self, item: Any) -> Any:
        key, db = self._key_db(item)
        return self.get(key, db)

    def __setitem__(self, item: Any, value: Any) -> None:
        key, db = self._key_db(item)
        if type(value) is tuple:
            if len(value) != 2:
                raise InvalidArgument("expected a value or a (value, expire_time) tuple")
            self.set(key, value[0], db, value[1])
        else:
            self.set(key, value, db)

    def __delitem__(self, item: Any) -> None:
        key, db = self._key_db(item)
        self.remove(key, db)

    def __contains__(self, item: Any) -> bool:
        key, db = self._key_db(item)
        return self.exists(key, db)

    def __len__(self) -> int:
        return self.count()

    def __bool__(self) -> bool:
        # Without this, ``if client:`` would call __len__ and ask the server for a count.
        return True

    def update(self, __data: Mapping[Any, Any] | None = None, **kwargs: Any) -> int | None:
        """Set many records (dict-style); see :meth:`set_bulk`."""
        data = dict(__data) if __data is not None else {}
        data.update(kwargs)
        return self.set_bulk(data)

    # -- iteration (cursors) --------------------------------------------------------------

    def cursor(
        self,
        db: int | None = None,
        cursor_id: int | None = None,
        decode_values: bool = True,
        encode_values: bool = True,
    ):
        """A :class:`~ktstore.cursor.Cursor` over database ``db``."""
        from ktstore.cursor import Cursor

        if cursor_id is None:
            cursor_id = next(KyotoTycoon._cursor_ids)
        return Cursor(self, cursor_id, db, decode_values, encode_values)

    def _iterate(self, db: Any, what: str) -> Iterator[Any]:
        cursor = self.cursor(db=db)
        try:
            if not cursor.jump():
                return
            while True:
                item = cursor._read(what, True)
                if item is None:
                    return
                yield item
        finally:
            cursor.close()

    def keys(self, db: int | None = None) -> Iterator[Any]:
        """All keys, lazily, through a cursor (one request per key: slow on big DBs)."""
        return self._iterate(db, "key")

    def keys_nonlazy(self, db: int | None = None) -> list[Any]:
        """All keys in one request (``match_prefix('')``)."""
        return self.match_prefix(b"", db=db)

    def values(self, db: int | None = None) -> Iterator[Any]:
        """All values, lazily, through a cursor."""
        return self._iterate(db, "value")

    def items(self, db: int | None = None) -> Iterator[tuple[Any, Any]]:
        """All ``(key, value)`` pairs, lazily, through a cursor."""
        return self._iterate(db, "get")

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

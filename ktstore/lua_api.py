"""Client methods that run as Lua procedures of ``lua/kt.lua`` on the server.

``KyotoTycoon`` inherits them; see docs/architecture.md for the members of the client
this mixin relies on (``encode_key decode_key _encode_value _decode_value _db
_play_script``).  Two more are used where the contract has no equivalent: the public
``get_bytes``/``set_bytes`` (the containers' ``get_raw``/``set_raw``) and ``_rpc``, the
client's HTTP TSV-RPC call, for what the binary protocol cannot express: the
``WAIT``/``SIGNAL`` conditions behind :meth:`Queue.bpop <ktstore.containers.Queue.bpop>`.

Error reporting: a failed procedure answers a bare ``0xBF`` on the binary protocol (a
real ktserver drops the outputs of a failed script even over HTTP), so the helpers pass
the ``errout`` flag: kt.lua then reports failures as outputs ``error`` and ``rv``, which
become a :class:`~ktstore.errors.ScriptError` carrying the script's own message.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ktstore.errors import InvalidArgument, ScriptError

if TYPE_CHECKING:  # pragma: no cover
    from ktstore.containers import Hash, List, Queue, Schedule, Set

__all__ = ["LuaMethods", "LuaProcedures", "RV_STATUS", "XTMAX"]

#: "No expiration" as the server reports it (2**40 - 1).
XTMAX = 0xFFFFFFFFFF

#: kt.lua's return codes -> the HTTP status ktserver would have answered.
RV_STATUS = {1: 501, 2: 400, 3: 450, 4: 503, 5: 500}

_ERROUT = (b"errout", b"")


def _raw(value: Any) -> bytes:
    """A parameter value sent without the serializer: bytes as is, text as UTF-8,
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


def _number(value: Any, what: str) -> bytes:
    """A numeric procedure input, checked here so a typo fails before the round trip."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{what} must be a number, not {value!r}")
    if isinstance(value, float) and value != value:
        raise InvalidArgument(f"{what} must not be NaN")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return repr(value).encode("ascii")


def _integer(value: Any, what: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} must be an int, not {value!r}")
    return b"%d" % value


def _container_class(name: str) -> Any:
    """A class of :mod:`ktstore.containers` (imported on first use: it imports this
    module)."""
    from ktstore import containers

    return getattr(containers, name)


class LuaProcedures:
    """``client.lua``: call any procedure of the server's script by name.

    ``client.lua.hlen(key='h')`` or ``client.lua['hlen'](key='h')`` is
    ``client.script('hlen', {'key': 'h'})``; the keyword arguments ``no_reply``,
    ``encode_values`` and ``decode_values`` are passed to :meth:`LuaMethods.script`.
    """

    __slots__ = ("_client",)

    def __init__(self, client: LuaMethods) -> None:
        self._client = client

    def __getitem__(self, name: str) -> Any:
        client = self._client

        def run(
            __data: Mapping[Any, Any] | None = None,
            no_reply: bool = False,
            encode_values: bool = True,
            decode_values: bool = True,
            **kwargs: Any,
        ) -> Any:
            data = dict(__data) if __data is not None else {}
            data.update(kwargs)
            return client.script(name, data, no_reply, encode_values, decode_values)

        run.__name__ = name
        return run

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self[name]


class LuaMethods:
    """Mixin of the Lua-backed client methods (script, touch, Hash, Queue, ...)."""

    # -- generic script calls -----------------------------------------------------------

    def script(
        self,
        name: str,
        data: Mapping[Any, Any] | None = None,
        no_reply: bool = False,
        encode_values: bool = True,
        decode_values: bool = True,
    ) -> dict[Any, Any] | None:
        """Run the Lua procedure ``name`` with ``data`` as its input map.

        Keys are encoded like record keys; values go through the serializer when
        ``encode_values`` (else bytes/str/numbers are sent as is), and the outputs'
        values are deserialized when ``decode_values``.  Returns ``None`` with
        ``no_reply``.  A failing procedure raises :class:`ScriptError`.
        """
        enc = self._encode_value if encode_values else _raw  # type: ignore[attr-defined]
        ek = self.encode_key  # type: ignore[attr-defined]
        params = [(ek(k), enc(v)) for k, v in (data or {}).items()]
        out = self._play_script(name, params, no_reply)  # type: ignore[attr-defined]
        if out is None:
            return None
        dk = self.decode_key  # type: ignore[attr-defined]
        if decode_values:
            dec = self._decode_value  # type: ignore[attr-defined]
            return {dk(k): dec(v) for k, v in out}
        return {dk(k): v for k, v in out}

    def raw_script(
        self, name: str, data: Mapping[Any, Any] | None = None, no_reply: bool = False
    ) -> dict[bytes, bytes] | None:
        """Run a Lua procedure with no serialization at all: keys and values are
        sent as given (bytes/str/numbers) and returned as ``bytes``."""
        params = [(_raw(k), _raw(v)) for k, v in (data or {}).items()]
        out = self._play_script(name, params, no_reply)  # type: ignore[attr-defined]
        if out is None:
            return None
        return dict(out)

    @property
    def lua(self) -> LuaProcedures:
        """Call procedures as attributes: ``client.lua.proc(**inputs)``."""
        return LuaProcedures(self)

    def _lua_call(
        self,
        proc: str,
        params: list[tuple[bytes, bytes]],
        db: int | None = None,
        no_reply: bool = False,
    ) -> dict[bytes, bytes]:
        """Call a kt.lua procedure on database ``db`` and return its raw outputs.

        Failures reported by the script (``error``/``rv`` outputs) raise ScriptError
        with the script's message and the status ktserver would have used (450 for
        "no such item", 400 for bad input, 500 internal).
        """
        dbidx = self._db(db)  # type: ignore[attr-defined]
        if dbidx:  # kt.lua's default is the first database
            params.append((b"db", b"%d" % dbidx))
        params.append(_ERROUT)
        out = self._play_script(proc, params, no_reply)  # type: ignore[attr-defined]
        if out is None:
            return {}
        result = dict(out)
        message = result.get(b"error")
        if message is not None and b"rv" in result:
            try:
                rv = int(result[b"rv"])
            except ValueError:
                rv = 5
            raise ScriptError(message.decode("utf-8", "replace"), RV_STATUS.get(rv, 500), proc)
        return result

    # -- HTTP conditions (WAIT / SIGNAL) ------------------------------------------------

    def _http_script(
        self,
        proc: str,
        params: list[tuple[bytes, bytes]],
        db: int | None,
        extra: list[tuple[bytes, bytes]],
    ) -> dict[bytes, bytes] | None:
        """Call a procedure over HTTP ``/rpc/play_script`` with control parameters
        (``WAIT``, ``WAITTIME``...).  Returns the outputs, or ``None`` when the wait
        timed out (503)."""
        rpc = getattr(self, "_rpc", None)
        if rpc is None:  # pragma: no cover - the client always has it
            raise ScriptError("this client cannot call procedures over HTTP", None, proc)
        params = [*params, (b"db", b"%d" % self._db(db)), _ERROUT]  # type: ignore[attr-defined]
        rparams = [(b"name", proc.encode("ascii"))]
        rparams += [(b"_" + k, v) for k, v in params]
        rparams += extra
        status, out = rpc("play_script", rparams, db, (503,))
        if status == 503:
            return None
        result = {k[1:]: v for k, v in out.items() if k.startswith(b"_")}
        message = result.get(b"error")
        if message is not None and b"rv" in result:
            rv = int(result[b"rv"]) if result[b"rv"].isdigit() else 5
            raise ScriptError(message.decode("utf-8", "replace"), RV_STATUS.get(rv, 500), proc)
        return result

    def _signal(self, condition: bytes, db: int | None) -> None:
        """Wake every client blocked on ``condition`` (HTTP ``SIGNAL`` + ``SIGNALBROAD``)."""
        rpc = getattr(self, "_rpc", None)
        if rpc is None:  # pragma: no cover
            return
        rpc("void", [(b"SIGNAL", condition), (b"SIGNALBROAD", b"")], db)

    # -- expiration times ---------------------------------------------------------------

    def _wire_xt(self, xt: Any) -> bytes:
        if xt is None:
            return b"%d" % XTMAX
        from ktstore.protocol.expire import to_wire_xt

        try:
            return b"%d" % to_wire_xt(xt, time.time())
        except InvalidArgument:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidArgument(f"bad expire time {xt!r}: {exc}") from None

    def _keys_dump(self, keys: Iterable[Any]) -> bytes:
        from ktstore.protocol import dumps

        return dumps.arraydump([self.encode_key(k) for k in keys])  # type: ignore[attr-defined]

    def _xt_map(self, data: bytes | None) -> dict[Any, int]:
        from ktstore.protocol import dumps

        if not data:
            return {}
        pairs = dumps.mapload(data)
        items = pairs.items() if isinstance(pairs, dict) else pairs
        dk = self.decode_key  # type: ignore[attr-defined]
        return {dk(k): int(v) for k, v in items}

    def touch(self, key: Any, xt: Any = None, db: int | None = None) -> int | None:
        """Set the expire time of ``key`` (``None``: never) keeping its value; return the
        old absolute expire time (:data:`XTMAX` when it had none) or ``None`` when the
        key does not exist."""
        out = self.touch_bulk([key], xt, db)
        return out.get(self.decode_key(self.encode_key(key)))  # type: ignore[attr-defined]

    def touch_bulk(
        self, keys: Iterable[Any], xt: Any = None, db: int | None = None
    ) -> dict[Any, int]:
        """:meth:`touch` for several keys: ``{key: old expire time}`` for those that exist."""
        params = [(b"keys", self._keys_dump(keys)), (b"xt", self._wire_xt(xt))]
        return self._xt_map(self._lua_call("touchbulk", params, db).get(b"data"))

    def touch_relative(self, key: Any, n: int, db: int | None = None) -> int | None:
        """Move the expire time of ``key`` by ``n`` seconds; return the new one, or
        ``None`` when the key does not exist.  A key without expiry keeps none."""
        out = self.touch_bulk_relative([key], n, db)
        return out.get(self.decode_key(self.encode_key(key)))  # type: ignore[attr-defined]

    def touch_bulk_relative(
        self, keys: Iterable[Any], n: int, db: int | None = None
    ) -> dict[Any, int]:
        """:meth:`touch_relative` for several keys: ``{key: new expire time}``."""
        params = [(b"keys", self._keys_dump(keys)), (b"n", _integer(n, "n"))]
        return self._xt_map(self._lua_call("touchbulkrelative", params, db).get(b"data"))

    def expire_time(self, key: Any, db: int | None = None) -> int | None:
        """The absolute expire time of ``key`` (unix seconds; :data:`XTMAX` when it
        never expires), or ``None`` when the key does not exist."""
        out = self._lua_call("expiretime", [(b"key", self.encode_key(key))], db)  # type: ignore[attr-defined]
        xt = out.get(b"xt")
        return None if xt is None else int(xt)

    def expires(self, key: Any, db: int | None = None) -> _dt.datetime | None:
        """The expire time as a naive UTC ``datetime`` (the client reads naive datetimes
        as UTC too, so a value round-trips); ``datetime.max`` when the key never
        expires; ``None`` when it does not exist."""
        ts = self.expire_time(key, db)
        if ts is None:
            return None
        if ts >= XTMAX or ts > 10**11:
            return _dt.datetime.max
        return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).replace(tzinfo=None)

    def error(self, db: int | None = None) -> tuple[int, str]:
        """The database's last error as ``(code, message)`` -- ``(0, 'success')`` when
        the last operation succeeded.  Kept per server worker thread, so only a hint."""
        out = self._lua_call("lasterror", [], db)
        return int(out.get(b"code", b"0")), out.get(b"name", b"success").decode("utf-8", "replace")

    # -- container factories --------------------------------------------------------------

    def Hash(
        self,
        key: Any,
        encode_values: bool = True,
        decode_values: bool = True,
        db: int | None = None,
    ) -> Hash:
        """A :class:`~ktstore.containers.Hash` stored at ``key``."""
        return _container_class("Hash")(self, key, encode_values, decode_values, db)

    def List(
        self,
        key: Any,
        encode_values: bool = True,
        decode_values: bool = True,
        db: int | None = None,
    ) -> List:
        """A :class:`~ktstore.containers.List` stored at ``key``."""
        return _container_class("List")(self, key, encode_values, decode_values, db)

    def Set(
        self,
        key: Any,
        encode_values: bool = True,
        decode_values: bool = True,
        db: int | None = None,
    ) -> Set:
        """A :class:`~ktstore.containers.Set` stored at ``key``."""
        return _container_class("Set")(self, key, encode_values, decode_values, db)

    def Queue(self, key: Any, db: int | None = None) -> Queue:
        """A priority :class:`~ktstore.containers.Queue` named ``key``."""
        return _container_class("Queue")(self, key, db)

    def Schedule(self, key: Any, db: int | None = None) -> Schedule:
        """A :class:`~ktstore.containers.Schedule` named ``key``."""
        return _container_class("Schedule")(self, key, db)

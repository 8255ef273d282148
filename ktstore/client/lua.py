"""Client methods that run as Lua procedures of ``lua/kt.lua`` on the server.

Both clients inherit them (through :class:`~ktstore.client.commands.Commands`); they
use only the client interface documented in docs/architecture.md ("The client
interface"): ``encode_key decode_key encode_value decode_value resolve_db
script_command rpc_command execute``.  HTTP (``rpc_command``) serves what the binary
protocol cannot express: the ``WAIT``/``SIGNAL`` conditions behind
:meth:`Queue.bpop <ktstore.client.containers.Queue.bpop>`.

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

from ktstore.client.command import Command
from ktstore.client.params import integer_arg, number_arg, script_value
from ktstore.client.scriptcheck import ensure_script
from ktstore.client.ukt_http import UktHttpMethods
from ktstore.errors import InvalidArgument, ScriptError
from ktstore.protocol import dumps
from ktstore.protocol.expire import to_wire_xt

if TYPE_CHECKING:  # pragma: no cover
    from ktstore.client.containers import Hash, List, Queue, Schedule, Set, SignalQueue

__all__ = ["LuaMethods", "LuaProcedures", "RV_STATUS", "XTMAX"]

#: "No expiration" as the server reports it (2**40 - 1).
XTMAX = 0xFFFFFFFFFF

#: kt.lua's return codes -> the HTTP status ktserver would have answered.
RV_STATUS = {1: 501, 2: 400, 3: 450, 4: 503, 5: 500}

_ERROUT = (b"errout", b"")

# Old private names (containers and tests imported them from here).
_raw = script_value


def _number(value: Any, what: str) -> bytes:
    return number_arg(value, what)


def _integer(value: Any, what: str) -> bytes:
    return integer_arg(value, what)


def _container_class(name: str) -> Any:
    """A class of :mod:`ktstore.client.containers` (imported on first use, so that
    importing the client does not load the containers)."""
    from ktstore.client import containers

    return getattr(containers, name)


def _script_failure(proc: str) -> Any:
    """The finish of a kt.lua call: its outputs as a dict, or the ScriptError that the
    ``error``/``rv`` outputs describe."""

    def finish(out: Any) -> dict[bytes, bytes]:
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

    return finish


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


class LuaMethods(UktHttpMethods):
    """Mixin of the Lua-backed client methods (script, touch, Hash, Queue, ...), written
    as commands like the rest of the API (see :mod:`ktstore.client.commands`)."""

    # provided by Commands
    encode_key: Any
    decode_key: Any
    _encode_value: Any
    _decode_value: Any
    resolve_db: Any
    execute_command: Any
    script_command: Any
    rpc_command: Any

    # -- generic script calls -----------------------------------------------------------

    def script(
        self,
        name: str,
        data: Mapping[Any, Any] | None = None,
        no_reply: bool = False,
        encode_values: bool = True,
        decode_values: bool = True,
    ) -> Any:
        """Run the Lua procedure ``name`` with ``data`` as its input map.

        Keys are encoded like record keys; values go through the serializer when
        ``encode_values`` (else bytes/str/numbers are sent as is), and the outputs'
        values are deserialized when ``decode_values``.  Returns ``None`` with
        ``no_reply``.  A failing procedure raises :class:`ScriptError`.
        """
        enc = self._encode_value if encode_values else script_value
        ek = self.encode_key
        params = [(ek(k), enc(v)) for k, v in (data or {}).items()]
        dk = self.decode_key
        dec = self._decode_value if decode_values else None

        def finish(out: Any) -> Any:
            if out is None:
                return None
            if dec is not None:
                return {dk(k): dec(v) for k, v in out}
            return {dk(k): v for k, v in out}

        return self.execute_command(self.script_command(name, params, no_reply).then(finish))

    def raw_script(
        self, name: str, data: Mapping[Any, Any] | None = None, no_reply: bool = False
    ) -> Any:
        """Run a Lua procedure with no serialization at all: keys and values are
        sent as given (bytes/str/numbers) and returned as ``bytes``."""
        params = [(script_value(k), script_value(v)) for k, v in (data or {}).items()]
        cmd = self.script_command(name, params, no_reply)
        return self.execute_command(cmd.then(lambda out: None if out is None else dict(out)))

    @property
    def lua(self) -> LuaProcedures:
        """Call procedures as attributes: ``client.lua.proc(**inputs)``."""
        return LuaProcedures(self)

    def lua_command(
        self,
        proc: str,
        params: list[tuple[bytes, bytes]],
        db: int | None = None,
        no_reply: bool = False,
    ) -> Command:
        """A call of a kt.lua procedure on database ``db``; its value is the raw outputs
        as a dict.

        Failures reported by the script (``error``/``rv`` outputs) raise ScriptError
        with the script's message and the status ktserver would have used (450 for
        "no such item", 400 for bad input, 500 internal).
        """
        dbidx = self.resolve_db(db)
        if dbidx:  # kt.lua's default is the first database
            params.append((b"db", b"%d" % dbidx))
        params.append(_ERROUT)
        return self.script_command(proc, params, no_reply).then(_script_failure(proc))

    def _run_ktlua(self, runnable: Command) -> Any:
        """Run a call of a kt.lua procedure; the client's first one is preceded by the
        check that the server runs ktstore's kt.lua (:mod:`ktstore.client.scriptcheck`)."""
        return self.execute_command(ensure_script(self, runnable, runnable.name))

    def _lua_call(
        self,
        proc: str,
        params: list[tuple[bytes, bytes]],
        db: int | None = None,
        no_reply: bool = False,
    ) -> Any:
        """Old private name of ``execute(lua_command(...))``."""
        return self.execute_command(self.lua_command(proc, params, db, no_reply))

    # -- HTTP conditions (WAIT / SIGNAL) ------------------------------------------------

    def http_script_command(
        self,
        proc: str,
        params: list[tuple[bytes, bytes]],
        db: int | None,
        extra: list[tuple[bytes, bytes]],
        timeout: float | None = None,
    ) -> Command:
        """Call a procedure over HTTP ``/rpc/play_script`` with control parameters
        (``WAIT``, ``WAITTIME``...).  Its value is the outputs, or ``None`` when the
        wait timed out (503)."""
        params = [*params, (b"db", b"%d" % self.resolve_db(db)), _ERROUT]
        rparams = [(b"name", proc.encode("ascii"))]
        rparams += [(b"_" + k, v) for k, v in params]
        rparams += extra

        def finish(r: tuple[int, dict[bytes, bytes]]) -> Any:
            status, out = r
            if status == 503:
                return None
            result = {k[1:]: v for k, v in out.items() if k.startswith(b"_")}
            message = result.get(b"error")
            if message is not None and b"rv" in result:
                rv = int(result[b"rv"]) if result[b"rv"].isdigit() else 5
                raise ScriptError(message.decode("utf-8", "replace"), RV_STATUS.get(rv, 500), proc)
            return result

        return self.rpc_command("play_script", rparams, db, (503,), False, timeout).then(finish)

    def signal_command(self, condition: bytes, db: int | None) -> Command:
        """Wake every client blocked on ``condition`` (HTTP ``SIGNAL`` + ``SIGNALBROAD``)."""
        return self.rpc_command("void", [(b"SIGNAL", condition), (b"SIGNALBROAD", b"")], db)

    # -- expiration times ---------------------------------------------------------------

    def _wire_xt(self, xt: Any) -> bytes:
        if xt is None:
            return b"%d" % XTMAX
        try:
            return b"%d" % to_wire_xt(xt, time.time())
        except InvalidArgument:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidArgument(f"bad expire time {xt!r}: {exc}") from None

    def _keys_dump(self, keys: Iterable[Any]) -> bytes:
        return dumps.arraydump([self.encode_key(k) for k in keys])

    def _xt_map(self, data: bytes | None) -> dict[Any, int]:
        if not data:
            return {}
        pairs = dumps.mapload(data)
        items = pairs.items() if isinstance(pairs, dict) else pairs
        dk = self.decode_key
        return {dk(k): int(v) for k, v in items}

    def _touch_bulk_command(self, keys: Iterable[Any], xt: Any, db: int | None) -> Command:
        params = [(b"keys", self._keys_dump(keys)), (b"xt", self._wire_xt(xt))]
        cmd = self.lua_command("touchbulk", params, db)
        return cmd.then(lambda out: self._xt_map(out.get(b"data")))

    def touch(self, key: Any, xt: Any = None, db: int | None = None) -> Any:
        """Set the expire time of ``key`` (``None``: never) keeping its value; return the
        old absolute expire time (:data:`XTMAX` when it had none) or ``None`` when the
        key does not exist."""
        mine = self.decode_key(self.encode_key(key))
        return self._run_ktlua(self._touch_bulk_command([key], xt, db).then(lambda m: m.get(mine)))

    def touch_bulk(self, keys: Iterable[Any], xt: Any = None, db: int | None = None) -> Any:
        """:meth:`touch` for several keys: ``{key: old expire time}`` for those that exist."""
        return self._run_ktlua(self._touch_bulk_command(keys, xt, db))

    def _touch_relative_command(self, keys: Iterable[Any], n: int, db: int | None) -> Command:
        params = [(b"keys", self._keys_dump(keys)), (b"n", integer_arg(n, "n"))]
        cmd = self.lua_command("touchbulkrelative", params, db)
        return cmd.then(lambda out: self._xt_map(out.get(b"data")))

    def touch_relative(self, key: Any, n: int, db: int | None = None) -> Any:
        """Move the expire time of ``key`` by ``n`` seconds; return the new one, or
        ``None`` when the key does not exist.  A key without expiry keeps none."""
        mine = self.decode_key(self.encode_key(key))
        cmd = self._touch_relative_command([key], n, db)
        return self._run_ktlua(cmd.then(lambda m: m.get(mine)))

    def touch_bulk_relative(self, keys: Iterable[Any], n: int, db: int | None = None) -> Any:
        """:meth:`touch_relative` for several keys: ``{key: new expire time}``."""
        return self._run_ktlua(self._touch_relative_command(keys, n, db))

    def _expire_time_command(self, key: Any, db: int | None) -> Command:
        cmd = self.lua_command("expiretime", [(b"key", self.encode_key(key))], db)
        return cmd.then(lambda out: None if out.get(b"xt") is None else int(out[b"xt"]))

    def expire_time(self, key: Any, db: int | None = None) -> Any:
        """The absolute expire time of ``key`` (unix seconds; :data:`XTMAX` when it
        never expires), or ``None`` when the key does not exist."""
        return self._run_ktlua(self._expire_time_command(key, db))

    @staticmethod
    def _expires(ts: int | None) -> _dt.datetime | None:
        if ts is None:
            return None
        if ts >= XTMAX or ts > 10**11:
            return _dt.datetime.max
        return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).replace(tzinfo=None)

    def expires(self, key: Any, db: int | None = None) -> Any:
        """The expire time as a naive UTC ``datetime`` (the client reads naive datetimes
        as UTC too, so a value round-trips); ``datetime.max`` when the key never
        expires; ``None`` when it does not exist."""
        return self._run_ktlua(self._expire_time_command(key, db).then(self._expires))

    def error(self, db: int | None = None) -> Any:
        """The database's last error as ``(code, message)`` -- ``(0, 'success')`` when
        the last operation succeeded.  Kept per server worker thread, so only a hint."""

        def finish(out: dict[bytes, bytes]) -> tuple[int, str]:
            name = out.get(b"name", b"success").decode("utf-8", "replace")
            return int(out.get(b"code", b"0")), name

        return self._run_ktlua(self.lua_command("lasterror", [], db).then(finish))

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

    def SignalQueue(
        self,
        key: str,
        signal: str = "q",
        db: int | None = None,
        wait: float = 10,
        cursor: int | None = None,
    ) -> SignalQueue:
        """ukt's :class:`~ktstore.containers.SignalQueue` named ``key`` (needs a tree
        database, no script)."""
        return _container_class("SignalQueue")(self, key, signal, db, wait, cursor)

    def Schedule(self, key: Any, db: int | None = None) -> Schedule:
        """A :class:`~ktstore.containers.Schedule` named ``key``."""
        return _container_class("Schedule")(self, key, db)

"""ukt's ``*_http`` methods: get/set/remove (single and bulk) over HTTP RPC.

ktstore picks the protocol per method (binary where it can), so these exist only so
that code written for ukt, which calls them by name, runs unchanged; they return
what ukt's do.  Written as commands like every other method, so both clients (and
pipelines) run them.  Inherited by the clients through
:class:`~ktstore.client.lua.LuaMethods`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ktstore.client.params import check_size, script_value

__all__ = ["UktHttpMethods"]


class UktHttpMethods:
    """``get_http``, ``set_http``, ``remove_http``, ``get_bulk_http``,
    ``set_bulk_http``, ``remove_bulk_http`` (ukt 0.4.8's names and return values)."""

    # provided by the client (docs/architecture.md, "The client interface")
    encode_key: Any
    encode_value: Any
    decode_value: Any
    rpc_command: Any
    execute_command: Any
    with_xt: Any

    def _value_bytes(self, value: Any, encode: bool) -> bytes:
        return check_size(self.encode_value(value) if encode else script_value(value))

    def get_http(self, key: Any, db: int | None = None, decode_value: bool = True) -> Any:
        """The value at ``key`` (``None`` if missing), read over HTTP."""

        def finish(r: tuple[int, dict[bytes, bytes]]) -> Any:
            if r[0] == 450:
                return None
            value = r[1][b"value"]
            return self.decode_value(value) if decode_value else value

        cmd = self.rpc_command("get", [(b"key", self.encode_key(key))], db, (450,), True)
        return self.execute_command(cmd.then(finish))

    def _simple_write_http(
        self, proc: str, key: Any, value: Any, db: Any, expire_time: Any, encode: bool
    ) -> Any:
        params = [(b"key", self.encode_key(key)), (b"value", self._value_bytes(value, encode))]
        cmd = self.rpc_command(proc, self.with_xt(params, expire_time), db, (450,))
        return self.execute_command(cmd.then(lambda r: r[0] != 450))

    def set_http(
        self,
        key: Any,
        value: Any,
        db: int | None = None,
        expire_time: Any = None,
        encode_value: bool = True,
    ) -> Any:
        """Store ``value`` at ``key`` over HTTP; ``True``."""
        return self._simple_write_http("set", key, value, db, expire_time, encode_value)

    def remove_http(self, key: Any, db: int | None = None) -> Any:
        """Remove ``key`` over HTTP; 1 if it existed, else 0."""
        cmd = self.rpc_command("remove", [(b"key", self.encode_key(key))], db, (450,))
        return self.execute_command(cmd.then(lambda r: 0 if r[0] == 450 else 1))

    def get_bulk_http(
        self, keys: Iterable[Any], db: int | None = None, decode_values: bool = True
    ) -> Any:
        """``{key: value}`` for the keys that exist, read over HTTP; each key is
        returned as the caller gave it (``bytes`` stay ``bytes``)."""
        given = {self.encode_key(k): k for k in keys}
        params = [(b"_" + k, b"") for k in given]

        def finish(r: tuple[int, dict[bytes, bytes]]) -> dict[Any, Any]:
            dec = self.decode_value if decode_values else None
            found: dict[Any, Any] = {}
            for k, v in r[1].items():
                if k[:1] == b"_" and k[1:] in given:
                    found[given[k[1:]]] = dec(v) if dec is not None else v
            return found

        cmd = self.rpc_command("get_bulk", params, db, (), True)
        return self.execute_command(cmd.then(finish))

    def set_bulk_http(
        self,
        data: Mapping[Any, Any],
        db: int | None = None,
        expire_time: Any = None,
        encode_values: bool = True,
    ) -> Any:
        """Store every pair of ``data`` over HTTP; the number stored."""
        params = [
            (b"_" + self.encode_key(k), self._value_bytes(v, encode_values))
            for k, v in data.items()
        ]
        cmd = self.rpc_command("set_bulk", self.with_xt(params, expire_time), db)
        return self.execute_command(cmd.then(lambda r: int(r[1].get(b"num", b"0"))))

    def remove_bulk_http(self, keys: Iterable[Any], db: int | None = None) -> Any:
        """Remove ``keys`` over HTTP; the number that existed."""
        params = [(b"_" + self.encode_key(k), b"") for k in keys]
        cmd = self.rpc_command("remove_bulk", params, db)
        return self.execute_command(cmd.then(lambda r: int(r[1].get(b"num", b"0"))))

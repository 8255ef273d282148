"""Server-side cursors over HTTP (``cur_*`` procedures).

ktserver keeps cursors per connection (docs/protocol.md, "Cursors"): a cursor id means
nothing on another socket.  So each cursor holds one keep-alive HTTP connection of its
own for its whole life, instead of borrowing pooled ones per call (which only works
by luck with a single thread).  The connection goes back to the pool on
:meth:`Cursor.close`; a cursor that is dropped without closing just closes its socket,
which also frees the server-side cursor.

If that connection breaks (server restart), the server-side position is gone:
:meth:`jump`/:meth:`jump_back` transparently reconnect since they set a new position;
other calls raise :class:`~ktstore.errors.KTConnectionError`.

:class:`CursorCommands` holds every operation once, as a command (request + finish)
handed to ``self._run``; :class:`Cursor` runs them on a blocking connection, the
asyncio client's ``AsyncCursor`` on an asyncio one.
"""

from __future__ import annotations

from typing import Any

from ktstore.client.command import Command
from ktstore.client.params import raw_value
from ktstore.errors import KTConnectionError, ServerError

__all__ = ["Cursor", "CursorCommands", "CursorNotSupported"]


class CursorNotSupported(ServerError, NotImplementedError):
    """The database does not support this cursor operation (e.g. ``jump_back`` or
    ``step_back`` on a hash database: HTTP 501).  Also a ``NotImplementedError``, which
    is what ukt raises there."""


def _lost() -> KTConnectionError:
    return KTConnectionError("the cursor's connection was lost; jump() to set a new position")


class CursorCommands:
    """The cursor operations, written once; ``_run(cmd, positioning)`` and
    ``_value(x)`` are the I/O of the concrete class.

    :param protocol: the client.
    :param cursor_id: the cursor's id (unique within its connection).
    :param db: database index (``None``: the client's default at creation).
    :param decode_values: deserialize values read through the cursor.
    :param encode_values: serialize values written through the cursor.
    """

    def __init__(
        self,
        protocol: Any,
        cursor_id: int,
        db: int | None = None,
        decode_values: bool = True,
        encode_values: bool = True,
    ) -> None:
        self.protocol = protocol
        self.cursor_id = cursor_id
        # A cursor's database is fixed when the server creates it, so resolve the
        # default now: a later set_database() must not silently retarget it.
        self.db = protocol.resolve_db(db)
        self._decode_values = decode_values
        self._encode_values = encode_values
        self._cid = b"%d" % int(cursor_id)
        self._conn: Any = None
        self._valid = False
        self._initialized = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.cursor_id} db={self.db} valid={self._valid}>"

    # -- the I/O (provided by the concrete class) -----------------------------------------

    def _run(self, cmd: Command, positioning: bool = False) -> Any:
        raise NotImplementedError  # pragma: no cover

    def _value(self, value: Any) -> Any:
        """``value`` as this class returns results (as is, or as an awaitable)."""
        raise NotImplementedError  # pragma: no cover

    # -- commands ---------------------------------------------------------------------------

    def _command(self, name: str, params: list[tuple[bytes, bytes]]) -> Command:
        """``cur_<name>`` on this cursor; its value is ``(status, output)`` (450 allowed,
        501 raises CursorNotSupported)."""
        client = self.protocol
        params.insert(0, (b"CUR", self._cid))
        cmd = client.rpc_command(name, params, self.db, (450, 501))

        def check(result: tuple[int, dict[bytes, bytes]]) -> tuple[int, dict[bytes, bytes]]:
            if result[0] == 501:
                raise CursorNotSupported(f"{name} is not supported by this database", 501, name)
            return result

        return cmd.then(check)

    def is_valid(self) -> bool:
        """Whether the cursor currently points at a record."""
        return self._valid

    def _move(self, name: str, params: list[tuple[bytes, bytes]], positioning: bool = False) -> Any:
        def finish(result: tuple[int, dict[bytes, bytes]]) -> bool:
            self._valid = result[0] == 200
            return self._valid

        return self._run(self._command(name, params).then(finish), positioning)

    def _jump(self, name: str, key: Any) -> Any:
        params = [] if key is None else [(b"key", self.protocol.encode_key(key))]
        self._initialized = True
        return self._move(name, params, positioning=True)

    def jump(self, key: Any = None) -> Any:
        """Go to ``key`` (or the first record after it); to the first record if ``None``."""
        return self._jump("cur_jump", key)

    def jump_back(self, key: Any = None) -> Any:
        """Go backwards to ``key`` (or the last record before it); to the last record if
        ``None``.  Tree databases only (CursorNotSupported on hash databases)."""
        return self._jump("cur_jump_back", key)

    def step(self) -> Any:
        """Go to the next record; ``False`` past the last one."""
        return self._move("cur_step", [])

    def step_back(self) -> Any:
        """Go to the previous record; ``False`` before the first one (tree databases)."""
        return self._move("cur_step_back", [])

    def _on_record(
        self, name: str, params: list[tuple[bytes, bytes]], then: Any, missing: Any = None
    ) -> Any:
        """Call a procedure on the current record: ``then(output)``, or ``missing`` (and
        the cursor invalid) when the cursor points nowhere or the call reports 450."""
        if not self._valid:
            return self._value(missing)

        def finish(result: tuple[int, dict[bytes, bytes]]) -> Any:
            if result[0] != 200:
                self._valid = False
                return missing
            return then(result[1])

        return self._run(self._command(name, params).then(finish))

    def _key_value(self, out: dict[bytes, bytes]) -> tuple[Any, Any]:
        """The ``(key, value)`` of a record output, decoded as the cursor says."""
        client = self.protocol
        value = out[b"value"]
        if self._decode_values:
            value = client.decode_value(value)
        return client.decode_key(out[b"key"]), value

    def _read(self, what: str, step: bool) -> Any:
        """``cur_get_key``/``cur_get_value``/``cur_get``; ``None`` (and invalid) when
        the cursor points nowhere."""
        params = [(b"step", b"")] if step else []
        client = self.protocol
        if what == "key":
            return self._on_record("cur_get_key", params, lambda o: client.decode_key(o[b"key"]))
        if what == "value":
            dec = client.decode_value if self._decode_values else (lambda v: v)
            return self._on_record("cur_get_value", params, lambda o: dec(o[b"value"]))
        return self._on_record("cur_get", params, self._key_value)

    def key(self, step: bool = False) -> Any:
        """Key of the current record (``None`` if none); then step if ``step``."""
        return self._read("key", step)

    def value(self, step: bool = False) -> Any:
        """Value of the current record (``None`` if none); then step if ``step``."""
        return self._read("value", step)

    def get(self, step: bool = False) -> Any:
        """``(key, value)`` of the current record (``None`` if none); then step if ``step``."""
        return self._read("get", step)

    def set_value(self, value: Any, step: bool = False, expire_time: Any = None) -> Any:
        """Replace the current record's value (and expiration); then step if ``step``."""
        if not self._valid:
            return self._value(False)
        client = self.protocol
        bvalue = client.encode_value(value) if self._encode_values else raw_value(value)
        params = client.with_xt([(b"value", bvalue)], expire_time)
        if step:
            params.append((b"step", b""))
        return self._on_record("cur_set_value", params, lambda o: True, False)

    def remove(self) -> Any:
        """Remove the current record; the cursor moves to the next one."""
        return self._on_record("cur_remove", [], lambda o: True, False)

    def seize(self) -> Any:
        """Get and remove the current record: ``(key, value)``, or ``None``."""
        return self._on_record("cur_seize", [], self._key_value)


class Cursor(CursorCommands):
    """A cursor over one database, on a blocking connection of the sync client."""

    def _value(self, value: Any) -> Any:
        return value

    def _run(self, cmd: Command, positioning: bool = False) -> Any:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                self._drop()
                if not positioning:
                    self._valid = False
                    raise _lost()
            conn = self._conn = self.protocol.pool.connect()
        try:
            reply = conn.request(cmd.request, cmd.decoder())  # type: ignore[misc]
        except BaseException:
            self._valid = False
            self._drop()
            raise
        return cmd.finish(reply)

    def _drop(self) -> None:
        """Forget the connection, closing it (no network traffic)."""
        conn = self._conn
        self._conn = None
        if conn is not None:
            conn.close()
            self.protocol.pool.release(conn, True)

    def __del__(self) -> None:
        try:
            if self._conn is not None:
                self._drop()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> bool:
        """Delete the server-side cursor and give the connection back to the pool.

        Returns ``True`` when a live server-side cursor was deleted."""
        conn = self._conn
        self._valid = False
        if conn is None:
            return False
        if conn.closed or conn.broken:
            self._drop()
            return False
        try:
            status, _ = self._run(self._command("cur_delete", []))
        except ServerError:
            status = 0
        except KTConnectionError:
            return False
        conn = self._conn
        self._conn = None
        if conn is not None:
            self.protocol.pool.release(conn, True)
        return status == 200

    def __iter__(self) -> Cursor:
        if not self._initialized:
            self.jump()
        return self

    def __next__(self) -> tuple[Any, Any]:
        item = self._read("get", True)
        if item is None:
            raise StopIteration
        return item

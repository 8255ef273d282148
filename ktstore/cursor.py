"""Server-side cursors over HTTP (``cur_*`` procedures).

ktserver keeps cursors per connection (kt-protocol.md §3.8): a cursor id means nothing
on another socket.  So each :class:`Cursor` holds one keep-alive HTTP connection of its
own for its whole life, instead of borrowing pooled ones per call (which only works
by luck with a single thread).  The connection goes back to the pool on
:meth:`Cursor.close`; a cursor that is dropped without closing just closes its socket,
which also frees the server-side cursor.

If that connection breaks (server restart), the server-side position is gone:
:meth:`jump`/:meth:`jump_back` transparently reconnect since they set a new position;
other calls raise :class:`~ktstore.errors.KTConnectionError`.
"""

from __future__ import annotations

from typing import Any

from ktstore.errors import KTConnectionError, ServerError

__all__ = ["Cursor", "CursorNotSupported"]


class CursorNotSupported(ServerError, NotImplementedError):
    """The database does not support this cursor operation (e.g. ``jump_back`` or
    ``step_back`` on a hash database: HTTP 501).  Also a ``NotImplementedError``, which
    is what ukt raises there."""


class Cursor:
    """A cursor over one database of a :class:`~ktstore.client.KyotoTycoon` server.

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
        self.db = protocol._db(db)
        self._decode_values = decode_values
        self._encode_values = encode_values
        self._cid = b"%d" % int(cursor_id)
        self._conn: Any = None
        self._valid = False
        self._initialized = False

    def __repr__(self) -> str:
        return f"<Cursor {self.cursor_id} db={self.db} valid={self._valid}>"

    # -- connection handling ---------------------------------------------------------

    def _call(
        self, name: str, params: list[tuple[bytes, bytes]], positioning: bool = False
    ) -> tuple[int, dict[bytes, bytes]]:
        client = self.protocol
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                self._drop()
                if not positioning:
                    self._valid = False
                    raise KTConnectionError(
                        "the cursor's connection was lost; jump() to set a new position"
                    )
            conn = self._conn = client._pool.connect()
        params.insert(0, (b"CUR", self._cid))
        request = client._build_rpc(name, params, self.db)
        try:
            status, headers, body = conn.http_exchange(request)
        except BaseException:
            self._valid = False
            self._drop()
            raise
        if status == 501:
            client._rpc_result(name, status, headers, body, (450, 501))
            raise CursorNotSupported(f"{name} is not supported by this database", 501, name)
        return client._rpc_result(name, status, headers, body, (450,))

    def _drop(self) -> None:
        """Forget the connection, closing it (no network traffic)."""
        conn = self._conn
        self._conn = None
        if conn is not None:
            conn.close()
            self.protocol._pool.release(conn, True)

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

    # -- positioning -------------------------------------------------------------------

    def is_valid(self) -> bool:
        """Whether the cursor currently points at a record."""
        return self._valid

    def _move(
        self, name: str, params: list[tuple[bytes, bytes]], positioning: bool = False
    ) -> bool:
        status, _ = self._call(name, params, positioning)
        self._valid = status == 200
        return self._valid

    def _jump(self, name: str, key: Any) -> bool:
        params = [] if key is None else [(b"key", self.protocol.encode_key(key))]
        self._initialized = True
        return self._move(name, params, positioning=True)

    def jump(self, key: Any = None) -> bool:
        """Go to ``key`` (or the first record after it); to the first record if ``None``."""
        return self._jump("cur_jump", key)

    def jump_back(self, key: Any = None) -> bool:
        """Go backwards to ``key`` (or the last record before it); to the last record if
        ``None``.  Tree databases only (CursorNotSupported on hash databases)."""
        return self._jump("cur_jump_back", key)

    def step(self) -> bool:
        """Go to the next record; ``False`` past the last one."""
        return self._move("cur_step", [])

    def step_back(self) -> bool:
        """Go to the previous record; ``False`` before the first one (tree databases)."""
        return self._move("cur_step_back", [])

    # -- reading ---------------------------------------------------------------------------

    def _on_record(self, name: str, params: list[tuple[bytes, bytes]]) -> Any:
        """Call a procedure on the current record: its output, or ``None`` (and the
        cursor invalid) when the cursor points nowhere or the call reports 450."""
        if not self._valid:
            return None
        status, out = self._call(name, params)
        if status != 200:
            self._valid = False
            return None
        return out

    def _key_value(self, out: dict[bytes, bytes]) -> tuple[Any, Any]:
        """The ``(key, value)`` of a record output, decoded as the cursor says."""
        client = self.protocol
        value = out[b"value"]
        if self._decode_values:
            value = client._decode_value(value)
        return client.decode_key(out[b"key"]), value

    def _read(self, what: str, step: bool) -> Any:
        """``cur_get_key``/``cur_get_value``/``cur_get``; ``None`` (and invalid) when
        the cursor points nowhere."""
        params = [(b"step", b"")] if step else []
        name = "cur_get" if what == "get" else "cur_get_" + what
        out = self._on_record(name, params)
        if out is None:
            return None
        if what == "key":
            return self.protocol.decode_key(out[b"key"])
        if what == "value":
            value = out[b"value"]
            return self.protocol._decode_value(value) if self._decode_values else value
        return self._key_value(out)

    def key(self, step: bool = False) -> Any:
        """Key of the current record (``None`` if none); then step if ``step``."""
        return self._read("key", step)

    def value(self, step: bool = False) -> Any:
        """Value of the current record (``None`` if none); then step if ``step``."""
        return self._read("value", step)

    def get(self, step: bool = False) -> tuple[Any, Any] | None:
        """``(key, value)`` of the current record (``None`` if none); then step if ``step``."""
        return self._read("get", step)

    # -- writing ---------------------------------------------------------------------------

    def set_value(self, value: Any, step: bool = False, expire_time: Any = None) -> bool:
        """Replace the current record's value (and expiration); then step if ``step``."""
        if not self._valid:
            return False
        client = self.protocol
        if self._encode_values:
            bvalue = client._encode_value(value)
        else:
            from ktstore.client import _raw_value

            bvalue = _raw_value(value)
        params = client._with_xt([(b"value", bvalue)], expire_time)
        if step:
            params.append((b"step", b""))
        return self._on_record("cur_set_value", params) is not None

    def remove(self) -> bool:
        """Remove the current record; the cursor moves to the next one."""
        return self._on_record("cur_remove", []) is not None

    def seize(self) -> tuple[Any, Any] | None:
        """Get and remove the current record: ``(key, value)``, or ``None``."""
        out = self._on_record("cur_seize", [])
        return None if out is None else self._key_value(out)

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
            status, _ = self._call("cur_delete", [])
        except ServerError:
            status = 0
        except KTConnectionError:
            return False
        conn = self._conn
        self._conn = None
        if conn is not None:
            self.protocol._pool.release(conn, True)
        return status == 200

    # -- iteration -------------------------------------------------------------------------

    def __iter__(self) -> Cursor:
        if not self._initialized:
            self.jump()
        return self

    def __next__(self) -> tuple[Any, Any]:
        item = self._read("get", True)
        if item is None:
            raise StopIteration
        return item

"""The blocking client: :class:`KyotoTycoon`, the documented API of ukt's client.

Every method is written once in :mod:`ktstore.client.commands` as a command (request
bytes + reply decoder); this class only adds the runner that sends a command on a
pooled socket (:mod:`ktstore.client.pool`, which owns the retry and socket-hygiene
rules) and returns ``command.finish(reply)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from ktstore.client.command import BINARY, Command, Program, run_program
from ktstore.client.commands import Commands
from ktstore.client.cursor import Cursor
from ktstore.client.pool import Pool
from ktstore.errors import InvalidArgument

__all__ = ["KyotoTycoon"]


class KyotoTycoon(Commands):
    """Client for a Kyoto Tycoon server (or ``ktstore-server``).

    Thread-safe: any number of threads may share one client; each request borrows a
    connection from the pool.  Safe across ``fork()``: a child process opens its own
    connections.  The arguments are those of
    :class:`~ktstore.client.commands.Commands`; ``timeout`` bounds each whole call.
    """

    _cursor_ids = itertools.count(1)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool = Pool(self.host, self.port, self.timeout, self.max_age)

    def __repr__(self) -> str:
        return f"<KyotoTycoon {self.host}:{self.port} db={self.default_db}>"

    @property
    def pool(self) -> Pool:
        """The connection pool (for statistics and tests)."""
        return self._pool

    # -- the runner --------------------------------------------------------------------------

    def execute_command(self, runnable: Command | Program) -> Any:
        """Run a command, or a program of commands, and return its value."""
        if runnable.__class__ is Command:
            return runnable.finish(self._pool.run(runnable))  # type: ignore[union-attr]
        return self._run_program(runnable)  # type: ignore[arg-type]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass with its own runner (failover) must see every command.
        cls._direct = cls.execute_command is KyotoTycoon.execute_command

    _direct = True

    def _binary(
        self, request: bytes, factory: Any, finish: Any, idempotent: bool, keep: bool = False
    ) -> Any:
        """The hot path of get/set/remove and their bulk forms: straight to the pool,
        without a :class:`Command` object (same retry rules, same deadline)."""
        if self._direct:
            return finish(self._pool.call(request, factory, idempotent, keep))
        return self.execute_command(Command(BINARY, request, factory, finish, idempotent, keep))

    def _run_program(self, program: Program) -> Any:
        run = self._pool.run
        return run_program(program, lambda cmd: cmd.finish(run(cmd)))

    def pipeline(self) -> Any:
        """A :class:`~ktstore.client.pipeline.Pipeline`: queue commands, send them on
        one connection, read all replies (``with kt.pipeline() as p: ...``)."""
        from ktstore.client.pipeline import Pipeline

        return Pipeline(self)

    def close_all(self) -> int:
        """Close every pooled connection; return how many were closed."""
        return self._pool.close_all()

    close = close_all

    def __enter__(self) -> KyotoTycoon:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close_all()

    # -- dict-like interface --------------------------------------------------------------

    @staticmethod
    def _key_db(item: Any) -> tuple[Any, Any]:
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

    # -- iteration (cursors) --------------------------------------------------------------

    def cursor(
        self,
        db: int | None = None,
        cursor_id: int | None = None,
        decode_values: bool = True,
        encode_values: bool = True,
    ) -> Cursor:
        """A :class:`~ktstore.client.cursor.Cursor` over database ``db``."""
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

    def values(self, db: int | None = None) -> Iterator[Any]:
        """All values, lazily, through a cursor."""
        return self._iterate(db, "value")

    def items(self, db: int | None = None) -> Iterator[tuple[Any, Any]]:
        """All ``(key, value)`` pairs, lazily, through a cursor."""
        return self._iterate(db, "get")

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

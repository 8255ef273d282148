"""The asyncio client: :class:`AsyncKyotoTycoon`, the same API as coroutines.

The commands are those of :mod:`ktstore.client.commands` (written once); this module
is only the asyncio runner:

* :class:`AsyncConnection` is an :class:`asyncio.Protocol` over one socket.  Requests
  are written as they come and their decoders wait in a FIFO; every ``data_received``
  feeds the shared :class:`~ktstore.protocol.receive.ReceiveBuffer` and completes as
  many replies as it holds, so many coroutines can have requests in flight on one
  connection (pipelining) and one read serves many of them.
* :class:`AsyncPool` spreads requests over up to ``max_connections`` connections: an
  idle connection first, then a new one, and only when the cap is reached the least
  busy one; a call that may be slow by design (a server-side ``WAIT``, a cursor) gets a
  connection of its own, so it never delays the replies of others.  The retry rules
  are the sync pool's (docs/reliability.md).
* ``timeout`` bounds each whole call (a timer per request).  A request that times out
  leaves its reply somewhere in the stream, so its connection is closed and the other
  requests on it fail with :class:`~ktstore.errors.KTConnectionError` (reads are
  retried once on a new connection, like after any network failure).

Works with any asyncio event loop, uvloop included (only ``loop.create_connection``
and the Protocol callbacks are used).
"""

from __future__ import annotations

import asyncio
import itertools
import select
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from ktstore.client.command import BINARY, NOREPLY, Command, Program, arun_program
from ktstore.client.commands import Commands
from ktstore.client.connection import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT
from ktstore.client.cursor import CursorCommands
from ktstore.errors import KTConnectionError, KTTimeoutError, ProtocolError, ServerError
from ktstore.protocol.binary import ERROR_REPLY
from ktstore.protocol.receive import NEED_MORE, HttpReply, ReceiveBuffer

__all__ = ["AsyncKyotoTycoon", "AsyncConnection", "AsyncPool", "AsyncCursor"]

_POLL_IN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
#: Idle connections younger than this (seconds) skip the staleness poll for reads.
FRESH = 0.001
_monotonic = time.monotonic
_get_running_loop = asyncio.get_running_loop


def _closed_error(message: str = "the server closed the connection") -> KTConnectionError:
    err = KTConnectionError(message)
    err.sent = True  # type: ignore[attr-defined]
    return err


#: A request in flight: ``(decoder, future, deadline in loop time)`` (a plain tuple:
#: one is made per request).
_Pending = tuple[Any, "asyncio.Future[Any]", float]


class AsyncConnection(asyncio.Protocol):
    """One connection; requests are pipelined, replies matched in order."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transport: Any = None
        self.rb = ReceiveBuffer()
        self.pending: deque[_Pending] = deque()
        self.broken = False
        self.closed = False
        self.exclusive = False  # reserved by one caller (cursor, WAIT, pipeline)
        self.last_used = time.monotonic()
        self.loop = asyncio.get_running_loop()
        self._fd = -1
        self._poller: Any = None
        # Requests written in one event-loop iteration go out in one write.
        self._wbuf: list[bytes] = []
        # One timer per connection, armed for the earliest deadline in flight.
        self._timer: Any = None
        self._timer_at = 0.0

    @classmethod
    async def open(
        cls, host: str, port: int, timeout: float, connect_timeout: float
    ) -> AsyncConnection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: cls(timeout), host, port), connect_timeout
            )
        except asyncio.TimeoutError:
            err: KTConnectionError = KTTimeoutError(f"timed out connecting to {host}:{port}")
            err.sent = False  # type: ignore[attr-defined]
            raise err from None
        except OSError as exc:
            err = KTConnectionError(f"connection error connecting to {host}:{port}: {exc}")
            err.sent = False  # type: ignore[attr-defined]
            raise err from exc
        return conn

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                import socket as _socket

                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                self._fd = sock.fileno()
            except (OSError, AttributeError):  # pragma: no cover
                pass

    def data_received(self, data: bytes) -> None:
        rb = self.rb
        rb.feed(data)
        pending = self.pending
        popleft = pending.popleft
        while pending:
            head = pending[0]
            decoder = head[0]
            if len(rb.buf) - rb.pos < decoder.need:
                return
            try:
                result = decoder.step(rb)
            except ProtocolError as exc:
                self._fail(exc)
                return
            if result is NEED_MORE:
                return
            popleft()
            rb.received = len(rb.buf) - rb.pos  # rb.start_message(), inlined
            future = head[1]
            if not future.done():
                future.set_result(result)
            if result.__class__ is HttpReply and not result.keep_alive:
                self._fail(_closed_error("the server closes this connection"))
                return
        if rb.pos < len(rb.buf):  # bytes nobody asked for: the stream is out of step
            self._fail(ProtocolError("unexpected bytes from the server"))

    def eof_received(self) -> bool:
        pending = self.pending
        if pending:
            head = pending[0]
            try:
                result = head[0].eof(self.rb)  # a body that ends at close
            except EOFError:
                pass
            except ProtocolError as exc:
                self._fail(exc)
                return False
            else:
                pending.popleft()
                if not head[1].done():
                    head[1].set_result(result)
        self._fail(_closed_error())
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        if exc is None:
            self._fail(_closed_error())
        else:
            err = KTConnectionError(f"connection error reading the reply: {exc}")
            err.sent = True  # type: ignore[attr-defined]
            self._fail(err)

    # -- requests ------------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        """The stream cannot be trusted any more: close, fail everything in flight."""
        self.broken = True
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                try:
                    self.transport.close()
                except RuntimeError:  # its event loop is closed: nothing to close
                    pass
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wbuf = []
        pending = self.pending
        while pending:
            p = pending.popleft()
            if not p[1].done():
                p[1].set_exception(exc)

    def close(self) -> None:
        self._fail(_closed_error("the connection was closed"))

    def _check_deadlines(self) -> None:
        """The connection's timer: time out an expired request (which closes the
        connection, see the module docstring), or re-arm for the earliest deadline."""
        self._timer = None
        pending = self.pending
        if not pending:
            return
        now = self.loop.time()
        earliest = min(p[2] for p in pending)
        if earliest > now:
            self._arm(earliest)
            return
        for p in pending:
            if p[2] <= now and not p[1].done():
                err = KTTimeoutError("timed out reading the reply")
                err.sent = True  # type: ignore[attr-defined]
                p[1].set_exception(err)
        self._fail(_closed_error("another request on this connection timed out"))

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._check_deadlines)

    def _flush(self) -> None:
        wbuf = self._wbuf
        if wbuf and not self.closed:
            self._wbuf = []
            self.transport.write(wbuf[0] if len(wbuf) == 1 else b"".join(wbuf))

    def _write(self, request: bytes) -> None:
        if self.closed:
            err = KTConnectionError("the connection is closed")
            err.sent = False  # type: ignore[attr-defined]
            raise err
        wbuf = self._wbuf
        if not wbuf:
            self.loop.call_soon(self._flush)
        wbuf.append(request)
        self.last_used = _monotonic()

    def submit(self, request: bytes, decoder: Any, timeout: float | None) -> asyncio.Future[Any]:
        """Queue a request for this loop iteration's write; the future resolves to its
        decoded reply, or fails once ``timeout`` (default: the connection's) passed."""
        if self.closed:
            self._write(request)  # raises
        wbuf = self._wbuf
        if not wbuf:
            self.loop.call_soon(self._flush)
        wbuf.append(request)
        self.last_used = _monotonic()  # (_write, inlined)
        loop = self.loop
        future = loop.create_future()
        deadline = loop.time() + (self.timeout if timeout is None else timeout)
        self.pending.append((decoder, future, deadline))
        timer = self._timer
        if timer is None or deadline < self._timer_at:
            self._arm(deadline)
        return future

    def send_only(self, request: bytes) -> None:
        self._write(request)

    def is_stale(self) -> bool:
        """Whether an idle connection was closed by the server while the event loop
        had no chance to tell us (one zero-timeout poll)."""
        if self.closed or self.broken:
            return True
        if self._fd < 0:
            return False
        try:
            poller = self._poller
            if poller is None:
                poller = self._poller = select.poll()
                poller.register(self._fd, _POLL_IN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True


class AsyncPool:
    """Connections to one server for one event loop, with the sync pool's retry rules."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        max_age: float | None = 3600,
        max_connections: int = 8,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self.connect_timeout = DEFAULT_CONNECT_TIMEOUT if timeout is None else timeout
        self.max_age = float(max_age) if max_age else 3600.0
        self.max_connections = max(1, int(max_connections))
        self.conns: list[AsyncConnection] = []
        self._opening = 0
        self._opened: list[asyncio.Future[None]] = []  # waiters for an opening connection
        self._lent = 0  # exclusive connections handed out (cursors, waits, pipelines)
        self._loop: Any = None  # the event loop the connections belong to

    def __repr__(self) -> str:
        return f"<AsyncPool {self.host}:{self.port} connections={len(self.conns)}>"

    async def connect(self, exclusive: bool = False) -> AsyncConnection:
        """A new connection (kept in the pool unless ``exclusive``)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._new_loop(loop)
        self._opening += 1
        try:
            conn = await AsyncConnection.open(
                self.host, self.port, self.timeout, self.connect_timeout
            )
        finally:
            self._opening -= 1
            waiters = self._opened
            self._opened = []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        conn.exclusive = exclusive
        if exclusive:
            self._lent += 1
        else:
            self.conns.append(conn)
        return conn

    @property
    def stats(self) -> tuple[int, int, int]:
        """(idle, 0, in use) connection counts, as the sync pool's ``stats`` (in use:
        connections with requests in flight plus those lent to one caller)."""
        busy = sum(1 for c in self.conns if c.pending)
        return len(self.conns) - busy, 0, busy + self._lent

    def _prune(self) -> None:
        now = time.monotonic()
        keep = []
        for conn in self.conns:
            if conn.closed or (not conn.pending and now - conn.last_used > self.max_age):
                conn.close()
            else:
                keep.append(conn)
        self.conns = keep

    def ready(self, cmd: Command) -> AsyncConnection | None:
        """An open connection for ``cmd`` right now (an idle one, or the least busy
        at the cap), or ``None`` when the pool wants a new one or ``cmd`` needs the
        general path (no reply, a long wait)."""
        if cmd.kind == NOREPLY or (cmd.timeout is not None and cmd.timeout > self.timeout):
            return None
        return self.ready_for(cmd.idempotent)

    def ready_for(self, idempotent: bool) -> AsyncConnection | None:
        """:meth:`ready` for a request with a reply and the pool's timeout."""
        if self._loop is not _get_running_loop():
            return None  # (acquire starts over on this loop)
        best = None
        best_n = 1 << 62
        for conn in self.conns:
            if conn.closed:
                return None  # the general path prunes it
            n = len(conn.pending)
            if not n:
                if (not idempotent or _monotonic() - conn.last_used > FRESH) and conn.is_stale():
                    return None
                return conn
            if n < best_n:
                best = conn
                best_n = n
        if best is None or len(self.conns) + self._opening < self.max_connections:
            return None
        return best

    async def acquire(self, idempotent: bool) -> AsyncConnection:
        """The connection for a new request: an idle one, else a new one while under
        ``max_connections``, else the least busy one (pipelining behind its replies)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._new_loop(loop)
        conns = self.conns
        if any(c.closed for c in conns):
            self._prune()
            conns = self.conns
        best = None
        for conn in conns:
            if not conn.pending:
                if (
                    not idempotent or time.monotonic() - conn.last_used > FRESH
                ) and conn.is_stale():
                    conn.close()
                    continue
                return conn
            if best is None or len(conn.pending) < len(best.pending):
                best = conn
        if len(self.conns) + self._opening < self.max_connections:
            return await self.connect()
        if best is None:
            # At the cap and every connection is still opening: wait for one.
            waiter = asyncio.get_running_loop().create_future()
            self._opened.append(waiter)
            await waiter
            return await self.acquire(idempotent)
        return best

    def _new_loop(self, loop: Any) -> None:
        """The client is used from another event loop (e.g. one ``asyncio.run`` per
        test): connections belong to the loop that opened them, so forget them."""
        for conn in self.conns:
            try:
                conn.close()
            except RuntimeError:  # their loop is closed already
                pass
        self.conns = []
        self._opening = 0
        self._opened = []
        self._loop = loop

    def release_exclusive(self, conn: AsyncConnection) -> None:
        """Give back a connection reserved by one caller (kept if healthy)."""
        if conn.exclusive:
            self._lent -= 1
            conn.exclusive = False
        if conn.closed or conn.pending or len(self.conns) >= self.max_connections:
            conn.close()
            return
        conn.exclusive = False
        self.conns.append(conn)

    async def close_all(self) -> int:
        conns = self.conns
        self.conns = []
        for conn in conns:
            conn.close()
        return len(conns)

    @staticmethod
    def _may_retry(exc: KTConnectionError, idempotent: bool) -> bool:
        if isinstance(exc, KTTimeoutError):
            return False
        return idempotent or not getattr(exc, "sent", True)

    async def run(self, cmd: Command) -> Any:
        """Send ``cmd`` and return its decoded reply, with the retry rules."""
        slow = cmd.timeout is not None and cmd.timeout > self.timeout
        if slow:
            conn = await self.connect(exclusive=True)
            try:
                result = await self._once(conn, cmd)
            finally:
                self.release_exclusive(conn)
        else:
            try:
                conn = await self.acquire(cmd.idempotent)
                result = await self._once(conn, cmd)
            except KTConnectionError as exc:
                if not self._may_retry(exc, cmd.idempotent):
                    raise
                conn = await self.connect()
                result = await self._once(conn, cmd)
        if result is ERROR_REPLY and not cmd.keep:
            conn.close()  # ktserver closes the connection after a failed bulk command
        return result

    @staticmethod
    async def _once(conn: AsyncConnection, cmd: Command) -> Any:
        if cmd.kind == NOREPLY:
            conn.send_only(cmd.request)
            return None
        return await conn.submit(cmd.request, cmd.decoder(), cmd.timeout)  # type: ignore[misc]


async def _value(value: Any) -> Any:
    return value


class AsyncCursor(CursorCommands):
    """A cursor over one database on a connection of its own (the asyncio client)."""

    async def _run(self, cmd: Command, positioning: bool = False) -> Any:  # type: ignore[override]
        conn = self._conn
        if conn is None or conn.closed:
            if conn is not None:
                self._conn = None
                self.protocol.pool.release_exclusive(conn)
                if not positioning:
                    self._valid = False
                    raise KTConnectionError(
                        "the cursor's connection was lost; jump() to set a new position"
                    )
            conn = self._conn = await self.protocol.pool.connect(exclusive=True)
        try:
            reply = await conn.submit(cmd.request, cmd.decoder(), cmd.timeout)  # type: ignore[misc]
        except BaseException:
            self._valid = False
            conn.close()
            self._conn = None
            self.protocol.pool.release_exclusive(conn)
            raise
        return cmd.finish(reply)

    def _value(self, value: Any) -> Any:
        return _value(value)

    async def close(self) -> bool:
        """Delete the server-side cursor and give the connection back to the pool."""
        conn = self._conn
        self._valid = False
        if conn is None:
            return False
        if conn.closed:
            self._conn = None
            self.protocol.pool.release_exclusive(conn)
            return False
        try:
            status, _ = await self._run(self._command("cur_delete", []))
        except ServerError:
            status = 0
        except KTConnectionError:
            return False
        conn = self._conn
        self._conn = None
        if conn is not None:
            self.protocol.pool.release_exclusive(conn)
        return status == 200

    async def __aenter__(self) -> AsyncCursor:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __aiter__(self) -> AsyncCursor:
        return self

    async def __anext__(self) -> tuple[Any, Any]:
        if not self._initialized:
            await self.jump()
        item = await self._read("get", True)
        if item is None:
            raise StopAsyncIteration
        return item

    def __del__(self) -> None:
        conn = self._conn
        if conn is not None and not conn.closed:
            try:
                conn.close()
            except Exception:  # pragma: no cover - loop already closed
                pass


class AsyncKyotoTycoon(Commands):
    """The asyncio client: every method of :class:`~ktstore.client.sync.KyotoTycoon`
    as a coroutine, with the same arguments, return values and errors.

    ``max_connections`` caps the connections one client opens; beyond it, concurrent
    requests are pipelined on the least busy connection.  Use it from one event loop
    (``async with AsyncKyotoTycoon(...) as kt:`` closes it).
    """

    _cursor_ids = itertools.count(1)

    def __init__(self, *args: Any, max_connections: int = 8, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool = AsyncPool(self.host, self.port, self.timeout, self.max_age, max_connections)

    def __repr__(self) -> str:
        return f"<AsyncKyotoTycoon {self.host}:{self.port} db={self.default_db}>"

    @property
    def pool(self) -> AsyncPool:
        return self._pool

    # -- the runner ------------------------------------------------------------------------

    def execute_command(self, runnable: Command | Program) -> Any:
        """A coroutine running a command (or a program of commands)."""
        if runnable.__class__ is Command:
            return self._execute(runnable)  # type: ignore[arg-type]
        return self._run_program(runnable)  # type: ignore[arg-type]

    async def _execute(self, cmd: Command) -> Any:
        pool = self._pool
        conn = pool.ready(cmd)
        if conn is None:
            return cmd.finish(await pool.run(cmd))
        # The usual case, inline: a connection is at hand, no coroutine layers.
        try:
            reply = await conn.submit(cmd.request, cmd.decoder(), None)  # type: ignore[misc]
        except KTConnectionError as exc:
            if not pool._may_retry(exc, cmd.idempotent):
                raise
            conn = await pool.connect()
            reply = await pool._once(conn, cmd)
        if reply is ERROR_REPLY and not cmd.keep:
            conn.close()
        return cmd.finish(reply)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass with its own runner (failover) must see every command.
        cls._direct = cls.execute_command is AsyncKyotoTycoon.execute_command

    _direct = True

    def _binary(
        self, request: bytes, factory: Any, finish: Any, idempotent: bool, keep: bool = False
    ) -> Any:
        """The hot path of get/set/remove and their bulk forms: :meth:`_execute`
        without a :class:`Command` object unless the general path needs one."""
        if self._direct:
            return self._execute_binary(request, factory, finish, idempotent, keep)
        return self.execute_command(Command(BINARY, request, factory, finish, idempotent, keep))

    async def _execute_binary(
        self, request: bytes, factory: Any, finish: Any, idempotent: bool, keep: bool
    ) -> Any:
        pool = self._pool
        conn = pool.ready_for(idempotent)
        if conn is None:
            cmd = Command(BINARY, request, factory, finish, idempotent, keep)
            return finish(await pool.run(cmd))
        try:
            reply = await conn.submit(request, factory(), None)
        except KTConnectionError as exc:
            if not pool._may_retry(exc, idempotent):
                raise
            conn = await pool.connect()
            reply = await conn.submit(request, factory(), None)
        if reply is ERROR_REPLY and not keep:
            conn.close()
        return finish(reply)

    async def _run_program(self, program: Program) -> Any:
        pool = self._pool

        async def run(cmd: Command) -> Any:
            return cmd.finish(await pool.run(cmd))

        return await arun_program(program, run)

    def pipeline(self) -> Any:
        """An :class:`~ktstore.client.pipeline.AsyncPipeline`
        (``async with kt.pipeline() as p: ...``)."""
        from ktstore.client.pipeline import AsyncPipeline

        return AsyncPipeline(self)

    async def close_all(self) -> int:
        """Close every connection; return how many were closed."""
        return await self._pool.close_all()

    close = close_all

    async def __aenter__(self) -> AsyncKyotoTycoon:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close_all()

    def __bool__(self) -> bool:
        return True

    # -- cursors and iteration -------------------------------------------------------------

    def cursor(
        self,
        db: int | None = None,
        cursor_id: int | None = None,
        decode_values: bool = True,
        encode_values: bool = True,
    ) -> AsyncCursor:
        """An :class:`AsyncCursor` over database ``db``."""
        if cursor_id is None:
            cursor_id = next(AsyncKyotoTycoon._cursor_ids)
        return AsyncCursor(self, cursor_id, db, decode_values, encode_values)

    async def _iterate(self, db: Any, what: str) -> AsyncIterator[Any]:
        cursor = self.cursor(db=db)
        try:
            if not await cursor.jump():
                return
            while True:
                item = await cursor._read(what, True)
                if item is None:
                    return
                yield item
        finally:
            await cursor.close()

    def keys(self, db: int | None = None) -> AsyncIterator[Any]:
        """All keys, lazily (``async for key in kt.keys()``)."""
        return self._iterate(db, "key")

    def values(self, db: int | None = None) -> AsyncIterator[Any]:
        """All values, lazily."""
        return self._iterate(db, "value")

    def items(self, db: int | None = None) -> AsyncIterator[Any]:
        """All ``(key, value)`` pairs, lazily."""
        return self._iterate(db, "get")

    def __aiter__(self) -> AsyncIterator[Any]:
        return self.keys()

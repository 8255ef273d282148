"""Pipelines: many commands sent on one connection before any reply is read.

``with kt.pipeline() as p: p.get("a"); p.set("b", 1); p.Hash("h").get("f")`` queues
the commands (every method of the client API that is one request: binary and HTTP
alike), then sends them all in one write and reads the replies in order.  The results
are in ``p.results`` (also returned by :meth:`Pipeline.execute`), in the order the
commands were queued.

Errors are per command: a command the server refuses (ServerError, ScriptError...)
does not desynchronise the stream, because every reply is still read with its own
decoder.  ``execute(raise_on_error=True)`` (the default) raises the first error after
all replies are read; with ``False`` the exception objects take the failed commands'
places in the results.  A network failure mid-pipeline fails the commands whose
replies were not read (KTConnectionError; none is retried: some may be writes the
server did execute).  Methods that need several round trips (``Queue.bpop``,
``list_databases``...) cannot be pipelined (InvalidArgument).

The whole pipeline is one call: ``timeout`` bounds it.
"""

from __future__ import annotations

from typing import Any

from ktstore.client.command import NOREPLY, Command, Program
from ktstore.client.commands import Commands
from ktstore.errors import InvalidArgument, KTConnectionError, KyotoTycoonError
from ktstore.protocol.binary import ERROR_REPLY

__all__ = ["Pipeline", "AsyncPipeline"]


class _PipelineBase(Commands):
    """The client API, queueing instead of running (shares the client's settings)."""

    def __init__(self, client: Commands) -> None:  # noqa: D107 - no super().__init__
        self.__dict__.update(client.__dict__)
        self.client = client
        self.commands: list[Command] = []
        self.results: list[Any] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {len(self.commands)} queued>"

    def __len__(self) -> int:
        return len(self.commands)

    def __bool__(self) -> bool:
        return True

    def execute_command(self, runnable: Command | Program) -> Any:
        """Queue a command; returns the pipeline (calls can be chained)."""
        if runnable.__class__ is not Command:
            close = getattr(runnable, "close", None)
            if close is not None:
                close()
            raise InvalidArgument("this method needs several round trips: it cannot be pipelined")
        self.commands.append(runnable)  # type: ignore[arg-type]
        return self

    def _finish(self, replies: list[Any], raise_on_error: bool) -> list[Any]:
        """Turn the replies into results (an exception object in a reply's place is a
        command that failed on the network)."""
        results: list[Any] = []
        first: BaseException | None = None
        for cmd, reply in zip(self.commands, replies, strict=True):
            if isinstance(reply, BaseException):
                value: Any = reply
            else:
                try:
                    value = cmd.finish(reply)
                except (KyotoTycoonError, ValueError, IndexError, KeyError) as exc:
                    value = exc
            if first is None and isinstance(value, BaseException):
                first = value
            results.append(value)
        self.commands = []
        self.results = results
        if first is not None and raise_on_error:
            raise first
        return results

    @staticmethod
    def _not_read(exc: BaseException) -> KTConnectionError:
        err = KTConnectionError(f"the reply was not read: {exc}")
        err.sent = True  # type: ignore[attr-defined]
        return err


class Pipeline(_PipelineBase):
    """A pipeline of the sync client; see the module docstring."""

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Send every queued command, read every reply, return the results."""
        commands = self.commands
        if not commands:
            self.results = []
            return []
        pool = self.client._pool  # type: ignore[attr-defined]
        idempotent = all(c.idempotent for c in commands)
        conn = pool.acquire(False, idempotent)
        replies: list[Any] = []
        try:
            conn.send(b"".join([c.request for c in commands]))
            last = len(commands) - 1
            for i, cmd in enumerate(commands):
                if cmd.kind == NOREPLY:
                    replies.append(None)
                    continue
                reply = conn.read(cmd.decoder(), i == last)  # type: ignore[misc]
                replies.append(reply)
                if reply is ERROR_REPLY and not cmd.keep:
                    # ktserver closes the connection after a failed bulk command:
                    # the commands after it were not executed.
                    conn.close()
                    err = KTConnectionError(
                        "not executed: the server closed the connection after an error"
                    )
                    err.sent = True  # type: ignore[attr-defined]
                    replies.extend([err] * (len(commands) - len(replies)))
                    break
        except KTConnectionError as exc:
            conn.close()
            replies.extend([self._not_read(exc)] * (len(commands) - len(replies)))
        except BaseException:
            conn.close()
            pool.release(conn)
            raise
        pool.release(conn)
        return self._finish(replies, raise_on_error)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None and self.commands:
            self.execute()


class AsyncPipeline(_PipelineBase):
    """A pipeline of the asyncio client (``async with kt.pipeline() as p: ...``)."""

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Send every queued command, read every reply, return the results."""
        commands = self.commands
        if not commands:
            self.results = []
            return []
        pool = self.client._pool  # type: ignore[attr-defined]
        conn = await pool.connect(exclusive=True)
        replies: list[Any] = []
        futures: list[Any] = []
        try:
            for cmd in commands:
                if cmd.kind == NOREPLY:
                    conn.send_only(cmd.request)
                    futures.append(None)
                else:
                    futures.append(conn.submit(cmd.request, cmd.decoder(), None))  # type: ignore[misc]
            for cmd, fut in zip(commands, futures, strict=True):
                if fut is None:
                    replies.append(None)
                    continue
                try:
                    reply = await fut
                except KTConnectionError as exc:
                    replies.append(self._not_read(exc))
                    continue
                replies.append(reply)
                if reply is ERROR_REPLY and not cmd.keep:
                    conn.close()
        finally:
            for fut in futures:
                if fut is not None and not fut.done():
                    fut.cancel()
            pool.release_exclusive(conn)
        return self._finish(replies, raise_on_error)

    async def __aenter__(self) -> AsyncPipeline:
        return self

    async def __aexit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None and self.commands:
            await self.execute()

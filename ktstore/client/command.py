"""A command: the bytes of one request, how to read its reply, and how to turn the
reply into the caller's value -- everything about a call except the I/O.

Every public method of the client is written once (in :mod:`ktstore.client.commands`,
:mod:`ktstore.client.lua` and :mod:`ktstore.client.containers`) as a pure request
builder that returns a :class:`Command`, handed to the client's runner:

* the sync client (:class:`~ktstore.client.sync.KyotoTycoon`) sends it on a pooled
  socket and returns ``command.finish(reply)``;
* the asyncio client returns a coroutine doing the same on an asyncio connection;
* a pipeline queues it and returns the results of many commands at once.

A method that needs several round trips (a blocking queue pop, ``list_databases``) is
written as a *program*: a generator that yields commands and receives their results
(``result = yield command``); each runner drives it with its own I/O.  Nothing in this
module touches a socket.  See docs/architecture.md ("How to add a command").
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Final

__all__ = [
    "Command",
    "Program",
    "BINARY",
    "NOREPLY",
    "HTTP",
    "identity",
    "run_program",
    "arun_program",
]

#: The reply is a binary-protocol frame.
BINARY: Final = 0
#: Nothing is read back (binary requests with the no-reply flag).
NOREPLY: Final = 1
#: The reply is an HTTP response (TSV-RPC).
HTTP: Final = 2


def run_program(program: Program, run: Callable[[Command], Any]) -> Any:
    """Drive a program with a blocking runner: ``run(cmd)`` returns the command's value
    (or raises, and the error is thrown into the program); the program's return value."""
    try:
        cmd = next(program)
        while True:
            try:
                value = run(cmd)
            except Exception as exc:
                cmd = program.throw(exc)
            else:
                cmd = program.send(value)
    except StopIteration as stop:
        return stop.value


async def arun_program(program: Program, run: Callable[[Command], Any]) -> Any:
    """:func:`run_program` with an asyncio runner: ``await run(cmd)``."""
    try:
        cmd = next(program)
        while True:
            try:
                value = await run(cmd)
            except Exception as exc:
                cmd = program.throw(exc)
            else:
                cmd = program.send(value)
    except StopIteration as stop:
        return stop.value


def identity(result: Any) -> Any:
    return result


class Command:
    """One request and the pure functions around it.

    :param kind: :data:`BINARY`, :data:`NOREPLY` or :data:`HTTP`.
    :param request: the encoded request.
    :param decoder: a zero-argument factory of a fresh decoder of
        :mod:`ktstore.protocol.receive` (``None`` for :data:`NOREPLY`).
    :param finish: reply -> the caller's value (may raise the command's typed error).
    :param idempotent: safe to send again after a network failure.
    :param keep: keep the connection after a binary error reply (0xBF): ktserver
        closes it after a failed bulk command, keeps it after a failed script.
    :param timeout: a longer timeout for this call (a server-side ``WAIT``).
    :param name: the procedure, for error messages.
    """

    __slots__ = ("kind", "request", "decoder", "finish", "idempotent", "keep", "timeout", "name")

    def __init__(
        self,
        kind: int,
        request: bytes,
        decoder: Callable[[], Any] | None,
        finish: Callable[[Any], Any] = identity,
        idempotent: bool = False,
        keep: bool = True,
        timeout: float | None = None,
        name: str = "",
    ) -> None:
        self.kind = kind
        self.request = request
        self.decoder = decoder
        self.finish = finish
        self.idempotent = idempotent
        self.keep = keep
        self.timeout = timeout
        self.name = name

    def __repr__(self) -> str:
        kind = ("binary", "noreply", "http")[self.kind]
        return f"<Command {self.name or '?'} {kind} {len(self.request)} bytes>"

    def then(self, fn: Callable[[Any], Any]) -> Command:
        """Apply ``fn`` to this command's value (returns the command, changed)."""
        inner = self.finish
        if inner is identity:
            self.finish = fn
        else:
            self.finish = lambda reply: fn(inner(reply))
        return self

    def catch(self, exc_type: type[BaseException], fn: Callable[[BaseException], Any]) -> Command:
        """Turn an ``exc_type`` raised by the finishing into ``fn(exc)`` (a value, or
        ``fn`` raises another error)."""
        inner = self.finish

        def finish(reply: Any) -> Any:
            try:
                return inner(reply)
            except exc_type as exc:
                return fn(exc)

        self.finish = finish
        return self


#: A multi-step command: yields commands, receives their values, returns the result.
Program = Generator[Command, Any, Any]

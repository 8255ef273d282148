"""The asyncio form of the failover client (see :mod:`ktstore.client.failover`).

A module of its own so that importing the blocking client never imports asyncio.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from ktstore.client.aio import AsyncKyotoTycoon
from ktstore.client.command import Command, Program, arun_program
from ktstore.client.failover import FailoverRouting
from ktstore.errors import KTConnectionError

__all__ = ["AsyncFailoverKyotoTycoon"]


class AsyncFailoverKyotoTycoon(FailoverRouting, AsyncKyotoTycoon):
    """:class:`FailoverKyotoTycoon` on the asyncio client: the same routing, every
    method a coroutine."""

    client_class = AsyncKyotoTycoon

    def __repr__(self) -> str:
        return f"<AsyncFailoverKyotoTycoon {self.members!r}>"

    async def _run_one(self, cmd: Command) -> Any:
        write = not self.is_read(cmd)
        last: KTConnectionError | None = None
        deadline = time.monotonic() + self.wait
        for attempt in itertools.count():
            for member in self._candidates(write):
                try:
                    reply = await member.client.pool.run(cmd)
                except KTConnectionError as e:
                    self._failed(member, e, write)
                    last = e
                    continue
                self._succeeded(member)
                return cmd.finish(reply)
            pause = self._pause(deadline, attempt)
            if pause is None:
                break
            await asyncio.sleep(pause)
        raise self._exhausted(write, last)

    def execute_command(self, runnable: Command | Program) -> Any:
        if runnable.__class__ is Command:
            return self._run_one(runnable)  # type: ignore[arg-type]
        return self._drive(runnable)  # type: ignore[arg-type]

    async def _drive(self, program: Program) -> Any:
        return await arun_program(program, self._run_one)

    @property
    def pool(self) -> Any:
        return self.current(False).pool

    def pipeline(self) -> Any:
        return self.current(True).pipeline()

    async def close_all(self) -> int:  # type: ignore[override]
        total = 0
        for m in self.members:
            total += await m.client.close_all()
        return total

    close = close_all

"""Drive the asyncio client from synchronous test code, so that the client test suite
runs unchanged against both clients (the ``kt`` fixture is parametrized over them).

:class:`Bridge` wraps an object of the asyncio API: a call that returns a coroutine is
run to completion on the bridge's event loop (in a thread of its own), an async
iterator becomes a list iterator, and objects of the async API (containers, cursors,
pipelines) come back wrapped too.  Dunder methods (``len(kt)``, ``kt["k"]``,
``for item in cursor``) use the sync class's own implementation with the bridge as
``self``, which calls the bridged coroutine methods: the behaviour tested is the async
client's.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

from ktstore.client import containers
from ktstore.client.aio import AsyncCursor, AsyncKyotoTycoon
from ktstore.client.cursor import Cursor
from ktstore.client.lua import LuaProcedures
from ktstore.client.pipeline import AsyncPipeline, Pipeline
from ktstore.client.sync import KyotoTycoon

_SYNC_TWIN = {
    AsyncKyotoTycoon: KyotoTycoon,
    AsyncCursor: Cursor,
    AsyncPipeline: Pipeline,
}
_WRAPPED = (AsyncKyotoTycoon, AsyncCursor, AsyncPipeline, containers._Keyed, LuaProcedures)


class Loop:
    """An event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def _drain(loop: Loop, aiter: Any) -> list[Any]:
    async def collect() -> list[Any]:
        return [item async for item in aiter]

    return loop.run(collect())


def wrap(loop: Loop, value: Any) -> Any:
    if inspect.isawaitable(value):
        value = loop.run(_await(value))
    if hasattr(value, "__anext__") and not isinstance(value, AsyncCursor):
        return _generator(_drain(loop, value))
    if isinstance(value, _WRAPPED):
        return Bridge(loop, value)
    return value


def _generator(items: list[Any]) -> Any:
    yield from items


async def _await(value: Any) -> Any:
    return await value


class Bridge:
    """See the module docstring."""

    def __init__(self, loop: Loop, target: Any) -> None:
        object.__setattr__(self, "_loop", loop)
        object.__setattr__(self, "_target", target)

    def __getattr__(self, name: str) -> Any:
        target = self._target
        if isinstance(target, containers._Keyed) and name in ("kt",):
            return getattr(target, name)
        try:
            attr = getattr(target, name)
        except AttributeError:
            return self._twin(name)  # a static helper of the sync class
        if callable(attr) and not isinstance(attr, type):

            def call(*args: Any, **kwargs: Any) -> Any:
                args = tuple(a._target if isinstance(a, Bridge) else a for a in args)
                kwargs = {k: v._target if isinstance(v, Bridge) else v for k, v in kwargs.items()}
                return wrap(self._loop, attr(*args, **kwargs))

            return call
        return wrap(self._loop, attr)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    def __repr__(self) -> str:
        return f"<Bridge {self._target!r}>"

    def _twin(self, name: str) -> Any:
        target = self._target
        cls = _SYNC_TWIN.get(type(target), type(target))
        try:
            return getattr(cls, name)
        except AttributeError:
            if not name.startswith("__"):
                raise
            raise TypeError(f"{cls.__name__} has no {name}") from None

    def __getitem__(self, item: Any) -> Any:
        return self._twin("__getitem__")(self, item)

    def __setitem__(self, item: Any, value: Any) -> None:
        self._twin("__setitem__")(self, item, value)

    def __delitem__(self, item: Any) -> None:
        self._twin("__delitem__")(self, item)

    def __contains__(self, item: Any) -> bool:
        return self._twin("__contains__")(self, item)

    def __len__(self) -> int:
        return self._twin("__len__")(self)

    def __bool__(self) -> bool:
        return True

    def __iter__(self) -> Any:
        target = self._target
        if isinstance(target, AsyncCursor):
            return iter(_drain(self._loop, target))
        return self._twin("__iter__")(self)

    def __and__(self, other: Any) -> Any:
        return self._twin("__and__")(self, other)

    def __or__(self, other: Any) -> Any:
        return self._twin("__or__")(self, other)

    def __sub__(self, other: Any) -> Any:
        return self._twin("__sub__")(self, other)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        target = self._target
        if isinstance(target, AsyncCursor):
            self._loop.run(target.close())
        elif isinstance(target, AsyncPipeline) and exc_type is None and target.commands:
            self._loop.run(target.execute())

    def __eq__(self, other: Any) -> bool:
        return self is other or self._target == getattr(other, "_target", other)

    __hash__ = object.__hash__

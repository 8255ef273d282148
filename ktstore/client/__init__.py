"""The ktstore client: one protocol core, commands written once, a sync and an asyncio
runner (docs/architecture.md).

* :class:`~ktstore.client.sync.KyotoTycoon` -- the blocking, thread-safe client;
* :class:`~ktstore.client.aio.AsyncKyotoTycoon` -- the asyncio client (same API, as
  coroutines);
* :mod:`~ktstore.client.commands` -- every method as request builder + reply decoder;
* :mod:`~ktstore.client.connection` / :mod:`~ktstore.client.pool` -- sockets and the
  retry rules; :mod:`~ktstore.client.pipeline` -- many commands per round trip;
* :mod:`~ktstore.client.cursor`, :mod:`~ktstore.client.containers`,
  :mod:`~ktstore.client.lua` -- cursors, containers and Lua-backed methods, which talk
  to a client only through the interface of :mod:`~ktstore.client.interface`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ktstore.client.sync import KyotoTycoon

if TYPE_CHECKING:
    from ktstore.client.aio import AsyncKyotoTycoon

__all__ = ["KyotoTycoon", "AsyncKyotoTycoon"]


def __getattr__(name: str) -> Any:
    # The asyncio client is loaded on first use (importing asyncio costs ~10 ms).
    if name == "AsyncKyotoTycoon":
        from ktstore.client.aio import AsyncKyotoTycoon

        return AsyncKyotoTycoon
    raise AttributeError(f"module 'ktstore.client' has no attribute {name!r}")

"""ktstore: a fast, robust Python client, server and model layer for Kyoto Tycoon.

The public API mirrors ukt's: ``KyotoTycoon`` (the client), ``Cursor``, the
serializer names and ``EmbeddedServer``; ``AsyncKyotoTycoon`` is the same API for
asyncio (docs/client.md), ``AsyncStore`` the ``Store`` API over it.  Every error
derives from ``KyotoTycoonError`` (ukt's exception names work too: every public name
of ukt 0.4.8 is exported here with ukt's meaning, so ``import ktstore as ukt`` runs
ukt code; docs/porting-ukt.md lists the deliberate differences).  Heavier parts
(the clients and the embedded server) are imported on first use, so
``import ktstore.protocol`` from the server does not pull them in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ktstore.errors import (
    ImproperlyConfigured,
    Incomplete,
    InvalidArgument,
    KTConnectionError,
    KTError,
    KTTimeoutError,
    KyotoTycoonError,
    ProtocolError,
    ReplicationError,
    ScriptError,
    SerializationError,
    ServerConnectionError,
    ServerError,
    ServerTimeoutError,
    SignalTimeout,
)
from ktstore.serializers import KT_BINARY, KT_JSON, KT_MSGPACK, KT_NONE, KT_PICKLE

if TYPE_CHECKING:
    from ktstore.async_store import AsyncStore
    from ktstore.client import KyotoTycoon
    from ktstore.client.aio import AsyncKyotoTycoon
    from ktstore.client.scriptcheck import ScriptNotLoaded
    from ktstore.containers import Hash, List, Queue, Schedule, Set, SignalQueue
    from ktstore.cursor import Cursor, CursorNotSupported
    from ktstore.embedded import EmbeddedServer
    from ktstore.replication import ReplicationClient
    from ktstore.store import Store

__version__ = "0.1.0"

__all__ = [
    "KyotoTycoon",
    "Cursor",
    "CursorNotSupported",
    "EmbeddedServer",
    "Store",
    "Hash",
    "List",
    "Set",
    "Queue",
    "Schedule",
    "SignalQueue",
    "ReplicationClient",
    "KT_BINARY",
    "KT_JSON",
    "KT_MSGPACK",
    "KT_NONE",
    "KT_PICKLE",
    "KyotoTycoonError",
    "KTError",
    "InvalidArgument",
    "KTConnectionError",
    "KTTimeoutError",
    "ProtocolError",
    "Incomplete",
    "ServerError",
    "ServerConnectionError",
    "ServerTimeoutError",
    "SignalTimeout",
    "ImproperlyConfigured",
    "ReplicationError",
    "ScriptNotLoaded",
    "AsyncKyotoTycoon",
    "AsyncStore",
    "ScriptError",
    "SerializationError",
]

_LAZY = {
    "KyotoTycoon": "ktstore.client",
    "AsyncKyotoTycoon": "ktstore.client.aio",
    "AsyncStore": "ktstore.async_store",
    "Cursor": "ktstore.cursor",
    "CursorNotSupported": "ktstore.cursor",
    "EmbeddedServer": "ktstore.embedded",
    "Store": "ktstore.store",
    "Hash": "ktstore.containers",
    "List": "ktstore.containers",
    "Set": "ktstore.containers",
    "Queue": "ktstore.containers",
    "Schedule": "ktstore.containers",
    "SignalQueue": "ktstore.client.containers",
    "ReplicationClient": "ktstore.replication",
    "ScriptNotLoaded": "ktstore.client.scriptcheck",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ktstore' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""What a request handler may use of the server: :class:`ServerContext`.

The handlers (:mod:`ktstore.server.rpc`, :mod:`ktstore.server.httpserver`,
:mod:`ktstore.server.binaryserver`) are written against this protocol rather
than against :class:`ktstore.server.core.Server`, so the imports go one way:
``core -> connection -> httpserver/binaryserver -> rpc -> context``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ktstore.server.config import ServerConfig
    from ktstore.server.database import Database
    from ktstore.server.session import ConditionMap

__all__ = ["ServerContext"]


class ServerContext(Protocol):
    """The server state and services shared by every connection."""

    config: ServerConfig
    dbs: list[Database]
    stats: dict[str, int]
    ulog: Any
    slave: Any  # the replication slave (-rts), or None

    def script_missing(self) -> None: ...

    conditions: ConditionMap
    script_path: str | None
    started_at: float

    @property
    def stopping(self) -> bool: ...

    def log(self, kind: str, message: str) -> None: ...

    def script_host(self) -> Any: ...

    def server_name(self) -> str: ...

    def db_index_by_name(self, name: bytes) -> int: ...

    def connection_count(self) -> int: ...

"""ktstore-server: a Kyoto Tycoon compatible server (HTTP TSV-RPC, REST and binary on one port).

``Server`` is the embeddable server object (see :mod:`ktstore.server.core`);
``Database`` the storage engine every front-end shares
(:mod:`ktstore.server.database`).  ``python -m ktstore.server`` and the
``ktstore-server`` console script take ktserver's command line.

Module map (imports go one way, top to bottom; none of them imports ``core``)::

    core          Server: listener, accept loop, connection threads, life cycle
    connection    one connection: picks HTTP or binary per request
    httpserver    HTTP framing, the RESTful interface, TSV-RPC bodies
    binaryserver  binary bulk commands, play_script, the replication stream
    rpc           the TSV-RPC procedures over decoded parameters
    netio         the socket reader (progress deadlines) and senders
    session       per-connection cursors, WAIT/SIGNAL conditions
    context       ServerContext: what handlers may use of the server
    config        the command line;  database: the storage engine
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Server", "Database", "DBCursor"]

if TYPE_CHECKING:
    from ktstore.server.core import Server
    from ktstore.server.database import Database, DBCursor


def __getattr__(name: str) -> Any:
    # Lazy: importing the storage engine (for the Lua host) must not pull in the
    # network layer and the HTTP codec.
    if name == "Server":
        from ktstore.server.core import Server

        return Server
    if name in ("Database", "DBCursor"):
        from ktstore.server import database

        return getattr(database, name)
    raise AttributeError(name)

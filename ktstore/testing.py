"""Throwaway Kyoto Tycoon servers for tests, with or without pytest.

>>> from ktstore.testing import running_server
>>> with running_server() as srv:          # built-in server, databases "*" and "%"
...     kt = srv.client()
...     kt.set("k", "v")

The built-in server runs inside the test process (no interpreter start-up: a
server costs milliseconds, so every test can have its own), with ktstore's
``kt.lua`` loaded so containers and models work.  Pass ``server=`` the path of a
real ``ktserver`` to run the same tests against it in a subprocess.  Everything is
stopped and every client closed when the ``with`` block ends, even on failure.

The pytest fixtures built on this are in :mod:`ktstore.pytest_plugin`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ktstore.client import KyotoTycoon
    from ktstore.client.aio import AsyncKyotoTycoon
    from ktstore.store import Store

__all__ = ["DEFAULT_DATABASES", "ThrowawayServer", "running_server"]

#: a hash database (index 0) and an ordered tree database (index 1, what models need)
DEFAULT_DATABASES: tuple[str, ...] = ("*", "%")

ScriptChoice = bool | str | os.PathLike[str] | None


class ThrowawayServer:
    """A running server and the clients made for it (see :func:`running_server`)."""

    def __init__(self, host: str, port: int, databases: list[str], real: bool) -> None:
        self.host = host
        self.port = port
        self.databases = databases
        #: True when this is an external executable (e.g. a real ktserver)
        self.real = real
        self._clients: list[KyotoTycoon] = []
        self._async_clients: list[AsyncKyotoTycoon] = []

    def __repr__(self) -> str:
        return f"<ThrowawayServer {self.url}>"

    @property
    def url(self) -> str:
        """``kt://host:port/0``: for ``ktstore --url``, :mod:`ktstore.urls` or config."""
        return f"kt://{self.host}:{self.port}/0"

    def client(self, **kwargs: Any) -> KyotoTycoon:
        """A new client of this server (``KyotoTycoon`` keywords; 10 s timeout unless
        given); closed when the server stops."""
        from ktstore.client import KyotoTycoon

        kwargs.setdefault("timeout", 10.0)
        client = KyotoTycoon(self.host, self.port, **kwargs)
        self._clients.append(client)
        return client

    def async_client(self, **kwargs: Any) -> AsyncKyotoTycoon:
        """A new asyncio client of this server (``AsyncKyotoTycoon`` keywords; 10 s
        timeout unless given).  It connects lazily, on the event loop of its first call,
        so it can be made outside any loop; its connections are closed when the server
        stops, even if that loop has ended by then."""
        from ktstore.client.aio import AsyncKyotoTycoon

        kwargs.setdefault("timeout", 10.0)
        client = AsyncKyotoTycoon(self.host, self.port, **kwargs)
        self._async_clients.append(client)
        return client

    def store(self, db: int = 1, index_db: int | None = None, **client_kwargs: Any) -> Store:
        """A :class:`~ktstore.store.Store` over database ``db`` (default 1, the tree
        database, so models can bind to it), on a new client."""
        from ktstore.store import Store

        return Store(self.client(**client_kwargs), db=db, index_db=index_db)

    def close_clients(self) -> None:
        for client in self._clients:
            client.close_all()
        self._clients.clear()
        for aclient in self._async_clients:
            _drop_async_connections(aclient)
        self._async_clients.clear()


def _drop_async_connections(client: AsyncKyotoTycoon) -> None:
    """Close an asyncio client's connections without a running loop (``close_all`` is a
    coroutine, and the test's loop is usually closed by teardown time)."""
    conns = list(client.pool.conns)
    client.pool.conns = []
    for conn in conns:
        try:
            conn.close()
        except RuntimeError:  # its loop is closed: the transport is gone with it
            pass


def _script_path(script: ScriptChoice) -> str | None:
    if script is True:
        from ktstore.resources import kt_lua_path

        return str(kt_lua_path())
    if script is None or script is False:
        return None
    path = Path(script)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such script")
    return str(path)


@contextmanager
def running_server(
    databases: Sequence[str] = DEFAULT_DATABASES,
    *,
    script: ScriptChoice = True,
    server: str | os.PathLike[str] | None = None,
    args: Sequence[str] = (),
) -> Iterator[ThrowawayServer]:
    """Start a server on 127.0.0.1 and a free port; stop it (and close its clients)
    when the block ends.

    :param databases: ktserver database specs (default: ``*`` and ``%``, in memory).
    :param script: ``True`` loads ktstore's ``kt.lua``, ``False``/``None`` no script,
        a path loads that script.
    :param server: ``None`` or ``"builtin"`` runs the built-in server in this process;
        a path runs that executable (e.g. a real ``ktserver``) as a subprocess.
    :param args: extra ktserver options (``["-ulog", dir]``...).
    """
    dbs = list(databases)
    scr = _script_path(script)
    if server is None or server == "builtin":
        from ktstore.server import Server

        inproc = Server(dbs, host="127.0.0.1", port=0, script=scr, args=list(args))
        inproc.start()
        handle = ThrowawayServer("127.0.0.1", inproc.port, dbs, real=False)
        try:
            yield handle
        finally:
            handle.close_clients()
            inproc.stop()
        return

    import subprocess

    from ktstore.embedded import find_free_port, stop_process, wait_for_port

    port = find_free_port()  # <= 32767: a real ktserver refuses higher ports
    command = [os.fspath(server), "-le", "-host", "127.0.0.1", "-port", str(port), *args]
    if scr is not None:
        command += ["-scr", scr]
    proc = subprocess.Popen([*command, *dbs], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    handle = ThrowawayServer("127.0.0.1", port, dbs, real=True)
    try:
        wait_for_port("127.0.0.1", port, 15.0, proc)
        yield handle
    finally:
        handle.close_clients()
        stop_process(proc)

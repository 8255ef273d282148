"""Shared test fixtures: servers to test against.

By default every test runs against the built-in server, started in this process
(fast: no interpreter start-up per test).  When ``KTSTORE_TEST_SERVER`` names a
real ``ktserver`` executable, the same fixtures start that instead, so the suite
checks that the client (and our Lua script) work with the real thing.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
from hypothesis import settings

from ktstore import KyotoTycoon
from ktstore.embedded import find_free_port, stop_process, wait_for_port

# Property tests check behaviour, not speed: hypothesis' per-example deadline (200 ms)
# would fail them on a busy machine for no fault of the code.
settings.register_profile("ktstore", deadline=None)
settings.load_profile("ktstore")

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
CONFORMANCE = DATA / "conformance"
KT_LUA = ROOT / "lua" / "kt.lua"
REAL_SERVER = os.environ.get("KTSTORE_TEST_SERVER") or None


# The library's helpers: a free port a real ktserver accepts too (<= 32767), and a
# wait until a server accepts connections (KTConnectionError after ``timeout``).
free_port = find_free_port


@dataclass
class RunningServer:
    """A server a test talks to: where it listens and how to stop it."""

    host: str
    port: int
    databases: list[str]
    real: bool
    _stop: Callable[[], object] = field(repr=False)

    def stop(self) -> None:
        self._stop()


def start_server(
    databases: Sequence[str] = ("*",),
    script: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
    real: str | None = REAL_SERVER,
) -> RunningServer:
    """Start a server on a free port; a real ktserver when ``real`` names one."""
    port = free_port()
    if real:
        args = [real, "-le", "-host", "127.0.0.1", "-port", str(port), *extra_args]
        if script is not None:
            args += ["-scr", str(script)]
        args += list(databases)
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", port, 10.0, proc)
        return RunningServer("127.0.0.1", port, list(databases), True, partial(stop_process, proc))

    from ktstore.server import Server

    server = Server(
        list(databases),
        host="127.0.0.1",
        port=port,
        script=None if script is None else str(script),
        args=list(extra_args),
    )
    server.start()
    return RunningServer("127.0.0.1", server.port, list(databases), False, server.stop)


@pytest.fixture
def server_factory() -> Iterator[Callable[..., RunningServer]]:
    """Start servers with ``server_factory(databases, script=..., extra_args=...)``;
    all of them are stopped when the test ends."""
    started: list[RunningServer] = []

    def factory(
        databases: Sequence[str] = ("*",),
        script: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> RunningServer:
        s = start_server(databases, script=script, extra_args=extra_args)
        started.append(s)
        return s

    yield factory
    for s in reversed(started):
        s.stop()


@pytest.fixture
def kt_server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    """A fresh server with a hash DB (0) and a tree DB (1), and lua/kt.lua when it exists."""
    script = KT_LUA if KT_LUA.exists() else None
    return server_factory(["*", "%"], script=script)


@pytest.fixture(params=["sync", "async"])
def client_factory(
    request: pytest.FixtureRequest, kt_server: RunningServer
) -> Iterator[Callable[..., KyotoTycoon]]:
    """``client_factory(**options)``: clients of ``kt_server`` (5 s timeout unless
    given), closed after the test.

    Parametrized: the sync client, and the asyncio client driven through
    ``async_bridge.Bridge`` (same calls, same assertions), so the client test suite
    runs against both.  A test that looks at the sync client's internals (its pool's
    sockets) marks itself ``sync_only``.
    """
    if request.param == "sync":
        clients: list[KyotoTycoon] = []

        def make_sync(**options: object) -> KyotoTycoon:
            options.setdefault("timeout", 5)
            client = KyotoTycoon(kt_server.host, kt_server.port, **options)  # type: ignore[arg-type]
            clients.append(client)
            return client

        yield make_sync
        for client in clients:
            client.close_all()
        return
    if request.node.get_closest_marker("sync_only"):
        pytest.skip("looks at the sync client's internals")
    from async_bridge import Bridge, Loop

    from ktstore import AsyncKyotoTycoon

    loop = Loop()
    aclients: list[AsyncKyotoTycoon] = []

    def make_async(**options: object) -> KyotoTycoon:
        options.setdefault("timeout", 5)

        async def create() -> AsyncKyotoTycoon:
            return AsyncKyotoTycoon(kt_server.host, kt_server.port, **options)  # type: ignore[arg-type]

        aclient = loop.run(create())
        aclients.append(aclient)
        return Bridge(loop, aclient)  # type: ignore[return-value]

    yield make_async
    for aclient in aclients:
        loop.run(aclient.close_all())
    loop.close()


@pytest.fixture
def kt(client_factory: Callable[..., KyotoTycoon]) -> KyotoTycoon:
    """A client of ``kt_server`` (sync and async: see ``client_factory``)."""
    return client_factory()

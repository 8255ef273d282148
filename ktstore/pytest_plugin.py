"""pytest fixtures for code that uses ktstore (loaded automatically: installing
ktstore registers this module under the ``pytest11`` entry point).

Fixtures (each test gets its own fresh server, so tests never see each other's data):

``ktstore_server``
    a :class:`~ktstore.testing.ThrowawayServer` with databases ``*`` (0, hash) and
    ``%`` (1, tree) and ktstore's ``kt.lua`` loaded; ``.url``, ``.host``, ``.port``.
``ktstore_client``
    a :class:`~ktstore.client.KyotoTycoon` of that server (default database 0).
``ktstore_async_client``
    an :class:`~ktstore.client.aio.AsyncKyotoTycoon` of that server: await its
    methods inside the test's event loop (pytest-asyncio, anyio, or ``asyncio.run``
    in a plain test); it connects on first use and is closed after the test.
``ktstore_store``
    a :class:`~ktstore.store.Store` over its tree database (1), ready for models
    (``MyModel.bind(ktstore_store)``).
``ktstore_server_factory``
    ``factory(databases=..., script=..., args=...)`` for other layouts; every server
    it started is stopped after the test.

``--ktstore-server=PATH`` (default: the ``KTSTORE_TEST_SERVER`` environment
variable) runs the same tests against that executable, e.g. a real ``ktserver``,
instead of the built-in server.  See docs/testing.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest

from ktstore.testing import DEFAULT_DATABASES, ScriptChoice, ThrowawayServer, running_server

if TYPE_CHECKING:
    from ktstore.client import KyotoTycoon
    from ktstore.client.aio import AsyncKyotoTycoon
    from ktstore.store import Store


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ktstore")
    group.addoption(
        "--ktstore-server",
        dest="ktstore_server",
        default=os.environ.get("KTSTORE_TEST_SERVER") or None,
        metavar="PATH",
        help="run ktstore fixtures against this server executable (e.g. a real "
        "ktserver) instead of the built-in server (default: $KTSTORE_TEST_SERVER)",
    )


@pytest.fixture
def ktstore_server_factory(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., ThrowawayServer]]:
    """Start servers: ``factory(databases=("*", "%"), script=True, args=())``."""
    executable = request.config.getoption("ktstore_server", None)
    with ExitStack() as stack:

        def factory(
            databases: Sequence[str] = DEFAULT_DATABASES,
            script: ScriptChoice = True,
            args: Sequence[str] = (),
        ) -> ThrowawayServer:
            return stack.enter_context(
                running_server(databases, script=script, server=executable, args=args)
            )

        yield factory


@pytest.fixture
def ktstore_server(ktstore_server_factory: Callable[..., ThrowawayServer]) -> ThrowawayServer:
    """A fresh server (``*`` and ``%``, kt.lua loaded) for this test."""
    return ktstore_server_factory()


@pytest.fixture
def ktstore_client(ktstore_server: ThrowawayServer) -> KyotoTycoon:
    """A client of ``ktstore_server`` (10 s timeout, default database 0)."""
    return ktstore_server.client()


@pytest.fixture
def ktstore_async_client(ktstore_server: ThrowawayServer) -> AsyncKyotoTycoon:
    """An asyncio client of ``ktstore_server`` (10 s timeout, default database 0).

    A plain (not async) fixture, so it works with any async test runner: the client
    binds to the event loop of its first awaited call."""
    return ktstore_server.async_client()


@pytest.fixture
def ktstore_store(ktstore_server: ThrowawayServer) -> Store:
    """A Store over the tree database (1) of ``ktstore_server``; models bind to it."""
    return ktstore_server.store(db=1)


__all__: list[Any] = [
    "ktstore_async_client",
    "ktstore_client",
    "ktstore_server",
    "ktstore_server_factory",
    "ktstore_store",
]

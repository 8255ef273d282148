"""The client refuses to run containers on a server that does not run ktstore's
kt.lua (no script, or ukt's), with an error that says what to load -- for the sync
and the asyncio client (the check is one command program, run by either)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import KT_LUA, RunningServer

from ktstore import ScriptNotLoaded
from ktstore.client import KyotoTycoon
from ktstore.errors import ScriptError

try:
    import ukt as _ukt

    UKT_LUA: Path | None = Path(_ukt.__file__).resolve().parent / "scripts" / "kt.lua"
except ImportError:  # pragma: no cover - ukt is a test dependency
    UKT_LUA = None


@pytest.fixture(params=["sync", "async"])
def connect(request: pytest.FixtureRequest) -> Iterator[Callable[[RunningServer], Any]]:
    """``connect(server)``: a sync client, or the asyncio client behind the test bridge."""
    closers: list[Callable[[], Any]] = []
    if request.param == "sync":

        def make(server: RunningServer) -> Any:
            client = KyotoTycoon(server.host, server.port, timeout=5)
            closers.append(client.close_all)
            return client

        yield make
    else:
        from async_bridge import Bridge, Loop

        from ktstore import AsyncKyotoTycoon

        loop = Loop()

        def make(server: RunningServer) -> Any:
            async def create() -> AsyncKyotoTycoon:
                return AsyncKyotoTycoon(server.host, server.port, timeout=5)

            aclient = loop.run(create())
            closers.append(lambda: loop.run(aclient.close_all()))
            return Bridge(loop, aclient)

        yield make
        closers.append(loop.close)
    for close in closers:
        close()


def _says_what_to_load(exc: BaseException) -> None:
    text = str(exc)
    assert "-scr" in text and "kt_lua_path()" in text and "ktstore-server -ktlua" in text


def test_no_script_at_all(server_factory: Callable[..., RunningServer], connect: Any) -> None:
    kt = connect(server_factory(["*"]))
    with pytest.raises(ScriptNotLoaded) as info:
        kt.Hash("h").set("a", "1")
    _says_what_to_load(info.value)
    assert isinstance(info.value, ScriptError)  # old `except ScriptError` still catches
    with pytest.raises(ScriptNotLoaded):
        kt.touch("k", 10)
    # plain commands are not concerned
    kt.set("k", "v")
    assert kt.get("k") == "v"


@pytest.mark.skipif(UKT_LUA is None, reason="ukt is not installed")
def test_ukts_script_is_refused_before_anything_is_written(
    server_factory: Callable[..., RunningServer], connect: Any
) -> None:
    """With ukt's kt.lua, lextend and sadd would *succeed* and store nothing usable:
    the check runs first, so they raise and the database stays empty."""
    kt = connect(server_factory(["%"], script=UKT_LUA))
    with pytest.raises(ScriptNotLoaded) as info:
        kt.List("l").extend(["1", "2", "3"])
    _says_what_to_load(info.value)
    with pytest.raises(ScriptNotLoaded):
        kt.Set("s").add("1", "2")
    with pytest.raises(ScriptNotLoaded):
        kt.Queue("q").add("job")
    assert kt.count() == 0


def test_our_script_is_checked_once_per_client(
    server_factory: Callable[..., RunningServer], connect: Any
) -> None:
    server = server_factory(["*"], script=KT_LUA)
    kt = connect(server)
    assert kt.List("l").extend(["1", "2", "3"]) == 3
    assert kt._ktstore_script == "1"  # cached: later calls go straight to the procedure
    assert kt.Set("s").add("1", "2") == 2 and kt.Set("s").members() == {"1", "2"}
    other = connect(server)  # another client asks for itself
    assert getattr(other, "_ktstore_script", None) is None
    assert other.List("l")[:] == ["1", "2", "3"]

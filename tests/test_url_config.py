"""Configuration by URL: ``from_url`` on both clients and ``Store``, and ``KTSTORE_URL``
pointing ``Store()`` and unbound models of many processes at one server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from conftest import KT_LUA

from ktstore import KT_JSON, AsyncKyotoTycoon, KyotoTycoon, Store
from ktstore.errors import InvalidArgument


@pytest.fixture
def server(server_factory: Any) -> Any:
    return server_factory(["*", "%"], script=KT_LUA)


def test_client_from_url(server: Any) -> None:
    kt = KyotoTycoon.from_url(f"kt://127.0.0.1:{server.port}/1?serializer=json&timeout=5")
    assert (kt.default_db, kt.serializer, kt.timeout) == (1, KT_JSON, 5.0)
    kt.set("k", {"a": [1]})
    plain = KyotoTycoon("127.0.0.1", server.port)
    assert json.loads(plain.get("k", db=1)) == {"a": [1]}  # stored as JSON text
    assert KyotoTycoon.from_url(f"127.0.0.1:{server.port}", timeout=2).timeout == 2
    with pytest.raises(InvalidArgument, match="scheme"):
        KyotoTycoon.from_url(f"http://127.0.0.1:{server.port}")
    for c in (kt, plain):
        c.close_all()


def test_async_client_from_url(server: Any) -> None:
    async def main() -> None:
        kt = AsyncKyotoTycoon.from_url(f"kt://127.0.0.1:{server.port}/0?serializer=msgpack")
        await kt.set("k", [1, 2])
        assert await kt.get("k") == [1, 2]
        await kt.close_all()

    asyncio.run(main())


def test_store_from_url(server: Any) -> None:
    store = Store.from_url(f"kt://127.0.0.1:{server.port}/1")
    store["x"] = {"y": 1}  # msgpack by default, as Store()
    assert store["x"] == {"y": 1}
    assert Store(f"kt://127.0.0.1:{server.port}/1")["x"] == {"y": 1}
    assert store.db == 1


WORKER = textwrap.dedent(
    """
    import json, os
    from ktstore import Store
    from ktstore.models import Model, fields

    class Job(Model, prefix="job"):
        name = fields.Text(index=True)

    Job.create(name=f"from-{os.getpid()}")
    Store()[f"pid:{os.getpid()}"] = 1
    print(json.dumps(sorted(j.name for j in Job.query())), flush=True)
    """
)


def test_ktstore_url_points_store_and_unbound_models_at_one_server(server: Any) -> None:
    env = dict(os.environ, KTSTORE_URL=f"kt://127.0.0.1:{server.port}/1")
    outs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", WORKER], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        outs.append(json.loads(done.stdout))
    assert len(outs[0]) == 1 and len(outs[1]) == 2  # the second worker sees the first's job
    kt = KyotoTycoon("127.0.0.1", server.port)
    assert len(kt.match_prefix("pid:", db=1)) == 2
    kt.close_all()

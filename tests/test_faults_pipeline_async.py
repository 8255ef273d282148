"""Faults for the asyncio client and for pipelines: a server killed mid-pipeline, a
stalled reply (the deadline), a reply that dribbles in, hostile length headers, and
a restart between two calls."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
import tracemalloc

import pytest
from conftest import REAL_SERVER, free_port
from test_faults import FakeServer, _start_on

from ktstore import AsyncKyotoTycoon, KTConnectionError, KTTimeoutError, KyotoTycoon
from ktstore.protocol import binary


class DribbleServer:
    """Answers the first request with ``reply``, one byte every ``delay`` seconds."""

    def __init__(self, reply: bytes, delay: float) -> None:
        self.reply = reply
        self.delay = delay
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            for b in self.reply:
                if self.stop.wait(self.delay):
                    return
                try:
                    conn.sendall(bytes([b]))
                except OSError:
                    return
            self.stop.wait(30)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def _get_reply(value: bytes) -> bytes:
    return binary.encode_get_bulk_reply([(0, b"k", value, 0)])


def test_dribbling_reply_hits_the_deadline_sync():
    """One byte every 50 ms: each read succeeds, but the call's deadline ends it."""
    server = DribbleServer(_get_reply(b"x" * 1000), 0.05)
    kt = KyotoTycoon("127.0.0.1", server.port, timeout=0.3)
    try:
        start = time.monotonic()
        with pytest.raises(KTTimeoutError):
            kt.get("k")
        assert time.monotonic() - start < 3  # the whole reply would take 50 s
        assert kt.pool.stats == (0, 0, 0)
    finally:
        server.close()


def test_dribbling_reply_hits_the_deadline_async():
    server = DribbleServer(_get_reply(b"x" * 1000), 0.05)

    async def main() -> None:
        async with AsyncKyotoTycoon("127.0.0.1", server.port, timeout=0.3) as kt:
            start = time.monotonic()
            with pytest.raises(KTTimeoutError):
                await kt.get("k")
            assert time.monotonic() - start < 3

    try:
        asyncio.run(main())
    finally:
        server.close()


def test_stalled_server_async():
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)

    async def main() -> None:
        async with AsyncKyotoTycoon("127.0.0.1", lsock.getsockname()[1], timeout=0.2) as kt:
            with pytest.raises(KTTimeoutError):
                await kt.get("k")
            with pytest.raises(KTTimeoutError):
                await kt.status()
            assert kt.pool.stats[2] == 0

    try:
        asyncio.run(main())
    finally:
        lsock.close()


@pytest.mark.parametrize(
    "reply",
    [
        # a get_bulk record announcing a 2**28-byte value, then silence
        b"\xba" + struct.pack(">I", 1) + struct.pack(">HIIq", 0, 1, 1 << 28, 0) + b"k",
        # an HTTP reply announcing a 2**28-1 byte body, then silence
        b"HTTP/1.1 200 OK\r\nContent-Length: 268435455\r\n\r\nnum\t1\n",
    ],
    ids=["binary", "http"],
)
def test_hostile_length_headers_allocate_nothing(reply):
    fake = FakeServer(lambda req: reply, stall=True)
    kt = KyotoTycoon("127.0.0.1", fake.port, timeout=0.3)
    try:
        tracemalloc.start()
        with pytest.raises(KTTimeoutError):
            if reply.startswith(b"HTTP"):
                kt.status()
            else:
                kt.get("k")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 16 << 20  # nowhere near the announced 256 MiB
    finally:
        fake.close()


def test_server_killed_mid_pipeline():
    # The fake answers the first of the pipelined gets (whose bytes arrive together)
    # and closes the connection.
    fake = FakeServer(lambda req: _get_reply(b"v1"))
    kt = KyotoTycoon("127.0.0.1", fake.port, timeout=2)
    try:
        p = kt.pipeline()
        p.get("a")
        p.set("b", "2")
        p.get("c")
        results = p.execute(raise_on_error=False)
        assert results[0] == "v1"
        assert all(isinstance(r, KTConnectionError) for r in results[1:])
        with pytest.raises(KTConnectionError):
            with kt.pipeline() as p:
                p.get("a")
                p.get("b")
        assert kt.pool.stats == (0, 0, 0)
    finally:
        fake.close()


def test_server_killed_mid_pipeline_async():
    fake = FakeServer(lambda req: _get_reply(b"v1"))

    async def main() -> None:
        async with AsyncKyotoTycoon("127.0.0.1", fake.port, timeout=2) as kt:
            p = kt.pipeline()
            p.get("a")
            p.get("c")
            results = await p.execute(raise_on_error=False)
            assert results[0] == "v1" and isinstance(results[1], KTConnectionError)

    try:
        asyncio.run(main())
    finally:
        fake.close()


def test_pipeline_errors_are_per_command_and_the_stream_stays_in_step(kt):
    kt.set("text", "not a number")
    p = kt.pipeline()
    p.increment("text")  # 450: not a counter
    p.get("text")
    p.Hash("h").set("f", "1")
    p.add("text", "x")  # False, not an error
    p.match_prefix("te")
    results = p.execute(raise_on_error=False)
    from ktstore import ServerError

    assert isinstance(results[0], ServerError) and results[0].status == 450
    assert results[1:] == ["not a number", 1, False, ["text"]]
    with pytest.raises(ServerError):
        with kt.pipeline() as p:
            p.get("text")
            p.increment("text")
    assert p.results[0] == "not a number"
    assert kt.get("text") == "not a number"  # the connection is still usable


def test_async_first_call_after_restart_succeeds():
    port = free_port()
    stop = _start_on(port)

    async def main() -> None:
        nonlocal stop
        async with AsyncKyotoTycoon("127.0.0.1", port, timeout=5) as kt:
            assert await kt.set("k", "v") == 1
            assert await kt.count() == 1
            stop()
            stop = _start_on(port)
            assert await kt.set("k", "v2") == 1  # a write: the dead socket is noticed
            assert await kt.get("k") == "v2"

    try:
        asyncio.run(main())
    finally:
        stop()


@pytest.mark.skipif(REAL_SERVER is not None, reason="in-process server only")
def test_concurrent_coroutines_share_connections(kt_server):
    async def main() -> None:
        async with AsyncKyotoTycoon(kt_server.host, kt_server.port, max_connections=4) as kt:
            await kt.set_bulk({f"k{i}": str(i) for i in range(500)})
            values = await asyncio.gather(*[kt.get(f"k{i}") for i in range(500)])
            assert values == [str(i) for i in range(500)]
            assert len(kt.pool.conns) <= 4
            # a slow call (a server-side wait) does not hold up the others
            q = kt.Queue("q")
            waiter = asyncio.ensure_future(q.bpop(timeout=1.0))
            await asyncio.sleep(0.05)
            assert await kt.get("k1") == "1"
            assert not waiter.done()
            await q.add("job")
            assert await waiter == "job"

    asyncio.run(main())


def test_async_store(kt_server):
    from ktstore import AsyncStore

    async def main() -> None:
        async with AsyncKyotoTycoon(kt_server.host, kt_server.port) as kt:
            store = AsyncStore(kt, db=1)
            await store.set("a", "1")
            await store.update({"b": "2", "c": "3"})
            assert await store.get("a") == "1" and await store.contains("b")
            assert await store.get_many(["a", "c", "z"]) == {"a": "1", "c": "3"}
            assert [k async for k in store] == ["a", "b", "c"]
            assert await store.pop("a") == "1"
            with pytest.raises(KeyError):
                await store.delete("a")
            assert await store.setdefault("b", "9") == "2"
            assert await store.length() == 2

    asyncio.run(main())


def test_the_asyncio_client_runs_on_uvloop(kt_server):
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        async with AsyncKyotoTycoon(kt_server.host, kt_server.port) as kt:
            await kt.set_bulk({f"u{i}": str(i) for i in range(50)})
            got = await asyncio.gather(*[kt.get(f"u{i}") for i in range(50)])
            assert got == [str(i) for i in range(50)]
            assert await kt.increment("n", 2) == 2
            async with kt.pipeline() as p:
                p.get("u1")
                p.status()
            assert p.results[0] == "1"
            assert [k async for k in kt.keys(db=0)][:1]

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_one_async_client_across_event_loops(kt_server):
    kt = AsyncKyotoTycoon(kt_server.host, kt_server.port)
    assert asyncio.run(kt.set("k", "v")) == 1
    assert asyncio.run(kt.get("k")) == "v"  # a new loop: the old connections are dropped
    asyncio.run(kt.close_all())

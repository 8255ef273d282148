"""ktstore's client vs ukt's, on the same server.

    python bench/bench_client.py [--seconds 1.0]

The server runs in its own process: the built-in ``ktstore-server`` by default, or the
ktserver named by ``KTSTORE_BENCH_SERVER`` (e.g. ``/tmp/ktbuild/bin/ktserver``).
ukt is imported if installed; otherwise ``pip install --target /tmp/ukt-pkg ukt`` is
tried (never into the project's environment) and ukt is skipped if that fails.

Each case runs both clients in alternating rounds and keeps each one's best round
(robust to a shared, noisy machine); it prints operations per second, client CPU
microseconds per operation, and the ratios ktstore/ukt.  Goals (on a real ktserver):
>= 1.3x for single-key operations, 1.2x for bulk operations, 2.5x for HTTP procedures.

A third contender, the *raw socket floor*, runs in the same rounds: one ``sendall`` of a
pre-encoded request and ``recv`` until the reply is complete, with no client code at
all.  No client can beat it, so ``floor/ukt`` is the best ratio any client could
reach on this machine and server, and ``ktstore/floor`` how close we are to it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ktstore import EmbeddedServer, KyotoTycoon  # noqa: E402
from ktstore.protocol import binary, http  # noqa: E402
from ktstore.protocol.limits import INT64MAX  # noqa: E402

UKT_DIR = "/tmp/ukt-pkg"


def load_ukt():
    """Import ukt from the environment or a private /tmp install; None if unavailable."""
    try:
        return importlib.import_module("ukt")
    except ImportError:
        pass
    if UKT_DIR not in sys.path:
        sys.path.append(UKT_DIR)
    if not os.path.isdir(os.path.join(UKT_DIR, "ukt")):
        try:
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "-q", "--target", UKT_DIR, "ukt"],
                check=True,
                timeout=300,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            print(f"ukt unavailable ({exc}); benchmarking ktstore alone")
            return None
    importlib.invalidate_caches()
    try:
        return importlib.import_module("ukt")
    except ImportError as exc:
        print(f"ukt unavailable ({exc}); benchmarking ktstore alone")
        return None


def measure(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """Wall and client-CPU seconds of ``calls`` calls of ``fn``."""
    wall = time.perf_counter()
    cpu = time.process_time()
    for _ in range(calls):
        fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(
    fns: list[Callable[[], object]], seconds: float, rounds: int = 15
) -> list[tuple[float, float]]:
    """Best ``(ops/s, client CPU us per op)`` of each function.

    The functions run in alternating short rounds and the best round counts: on a
    shared machine load comes and goes, and alternating exposes every client to the
    same conditions (a sequential run mostly measures the neighbours).
    """
    for fn in fns:  # warm-up, and a calibration of how many calls fill a round
        for _ in range(20):
            fn()
    wall, _ = measure(fns[0], 50)
    calls = max(20, int(seconds / rounds / max(wall / 50, 1e-7)))
    best = [(float("inf"), float("inf"))] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            wall, cpu = measure(fn, calls)
            best[i] = (min(best[i][0], wall), min(best[i][1], cpu))
    return [(calls / wall, cpu / calls * 1e6) for wall, cpu in best]


def cases(client) -> dict[str, Callable[[], object]]:
    keys = KEYS
    data = DATA
    client.set_bulk(data)
    client.set("single", "x" * 100)
    return {
        "set": lambda: client.set("single", "x" * 100),
        "get": lambda: client.get("single"),
        "set_bulk(100)": lambda: client.set_bulk(data),
        "get_bulk(100)": lambda: client.get_bulk(keys),
        "remove(missing)": lambda: client.remove("missing"),
        "increment (HTTP)": lambda: client.increment("counter"),
        "status (HTTP)": lambda: client.status(),
        "exists (HTTP)": lambda: client.exists("single"),
    }


KEYS = [f"bulk-{i:03d}" for i in range(100)]
DATA = {k: "value-" + k for k in KEYS}


def floor_requests(port: int) -> dict[str, bytes]:
    """What any client must send for each case, encoded once up front."""

    def rpc(name: str, body: bytes) -> bytes:
        headers = [("Host", f"127.0.0.1:{port}"), ("Content-Type", "text/tab-separated-values")]
        return http.encode_request("POST", "/rpc/" + name, headers, body)

    x100 = b"x" * 100
    bulk = [(0, k.encode(), v.encode(), INT64MAX) for k, v in DATA.items()]
    return {
        "set": binary.encode_set_bulk([(0, b"single", x100, INT64MAX)]),
        "get": binary.encode_get_bulk([(0, b"single")]),
        "set_bulk(100)": binary.encode_set_bulk(bulk),
        "get_bulk(100)": binary.encode_get_bulk([(0, k) for _, k, _, _ in bulk]),
        "remove(missing)": binary.encode_remove_bulk([(0, b"missing")]),
        # num 0 on its own key: the same server work, a reply whose length never changes
        "increment (HTTP)": rpc("increment", b"DB\t0\nkey\tfloor-counter\nnum\t0\n"),
        "status (HTTP)": rpc("status", b"DB\t0\n"),
        "exists (HTTP)": rpc("check", b"DB\t0\nkey\tsingle\n"),
    }


def raw_floor(sock: socket.socket, request: bytes) -> Callable[[], object]:
    """One ``sendall`` + ``recv`` until as many bytes as the first reply had arrived."""
    sendall = sock.sendall
    recv = sock.recv
    sendall(request)
    size = len(recv(1 << 16))  # the replies here fit one read; lengths do not change
    while True:
        sock.settimeout(0.05)  # (unless the first read was short: drain it)
        try:
            more = recv(1 << 16)
        except (TimeoutError, BlockingIOError):
            break
        if not more:
            break
        size += len(more)
    sock.settimeout(None)

    def floor() -> None:
        sendall(request)
        got = len(recv(size))
        while got < size:
            got += len(recv(size - got))

    return floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="duration of each case")
    parser.add_argument(
        "--rounds", type=int, default=15, help="alternating rounds per case (the best counts)"
    )
    args = parser.parse_args()

    real = os.environ.get("KTSTORE_BENCH_SERVER")
    server = EmbeddedServer(server=real or "builtin", quiet=True)
    server.run()
    try:
        print(f"server: {real or 'ktstore-server (built-in)'} on port {server.port}")
        ours = KyotoTycoon("127.0.0.1", server.port)
        ukt = load_ukt()
        theirs = ukt.KyotoTycoon("127.0.0.1", server.port) if ukt else None
        ours_cases = cases(ours)
        theirs_cases = cases(theirs) if theirs else {}
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        floors = {name: raw_floor(sock, req) for name, req in floor_requests(server.port).items()}
        print(
            f"{'operation':<18} {'ktstore op/s':>12} {'ukt op/s':>9} {'ratio':>6}"
            f" {'floor op/s':>10} {'floor/ukt':>9} {'kts/floor':>9}"
            f"  {'cpu us: ktstore':>15} {'ukt':>6} {'floor':>6}"
        )
        for name, fn in ours_cases.items():
            fns = [fn, floors[name]] + ([theirs_cases[name]] if theirs_cases else [])
            results = compare(fns, args.seconds, args.rounds)
            (mine, mine_cpu), (floor, floor_cpu) = results[:2]
            other, other_cpu = results[2] if theirs_cases else (float("nan"), float("nan"))
            print(
                f"{name:<18} {mine:>12,.0f} {other:>9,.0f} {mine / other:>5.2f}x"
                f" {floor:>10,.0f} {floor / other:>8.2f}x {mine / floor:>8.0%}"
                f"  {mine_cpu:>15.1f} {other_cpu:>6.1f} {floor_cpu:>6.1f}"
            )
        sock.close()
        ours.close_all()
        if theirs is not None:
            theirs.close_all()
    finally:
        server.stop()


if __name__ == "__main__":
    main()

"""Queue and Hash throughput: ktstore (lua/kt.lua) vs ukt (its own scripts/kt.lua).

    python bench/bench_containers.py [--seconds 1.0] [--items 100]

Two servers of the same kind run side by side, each with its own client library's Lua
script: the built-in ``ktstore-server`` by default, or the ktserver named by
``KTSTORE_BENCH_SERVER``.  Both use a tree database (``%``), which ukt's queue needs.
ukt is imported if installed, else from the private ``pip install --target`` copy that
``bench_client.py`` makes (never in the project's environment); without it only
ktstore is measured.

Cases: ``queue add`` (one item per call), ``queue pop`` (pops exactly as many items as
the add phase stored, so an empty queue never inflates the figure), ``hash set`` (one
field of a hash holding ``--items`` fields) and ``hash get_all``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from ktstore import EmbeddedServer, KyotoTycoon  # noqa: E402


def load_ukt():
    """ukt, or None (reuses bench_client's private install logic)."""
    try:
        from bench_client import load_ukt as loader
    except ImportError:  # pragma: no cover
        try:
            import ukt

            return ukt
        except ImportError:
            return None
    return loader()


def timed(fn: Callable[[], object], seconds: float) -> tuple[int, float]:
    """Call ``fn`` for about ``seconds``; return (calls, elapsed)."""
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(20):
            fn()
        n += 20
        now = time.perf_counter()
        if now >= deadline:
            return n, now - start


def run_cases(client, seconds: float, items: int) -> dict[str, float]:
    """Operations per second of each case for one client library."""
    rates: dict[str, float] = {}
    q = client.Queue("bench-queue")
    for _ in range(50):  # warm-up
        q.add("warm-up item")
    while q.pop() is not None:
        pass
    n, elapsed = timed(lambda: q.add("payload-0123456789"), seconds)
    rates["queue add"] = n / elapsed
    start = time.perf_counter()
    for _ in range(n):
        q.pop()
    rates["queue pop"] = n / (time.perf_counter() - start)

    h = client.Hash("bench-hash")
    h.set_bulk({f"field-{i:04d}": f"value-{i}" for i in range(items)})
    n, elapsed = timed(lambda: h.set("field-0001", "new value"), seconds)
    rates[f"hash set ({items} fields)"] = n / elapsed
    n, elapsed = timed(h.get_all, seconds)
    rates[f"hash get_all ({items})"] = n / elapsed
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="duration of each case")
    parser.add_argument("--items", type=int, default=100, help="fields in the hash")
    args = parser.parse_args()

    real = os.environ.get("KTSTORE_BENCH_SERVER")
    kind = real or "builtin"
    ukt = load_ukt()
    ours_server = EmbeddedServer(server=kind, database="%", quiet=True)
    ours_server.run()
    theirs_server = None
    try:
        print(f"server: {real or 'ktstore-server (built-in)'}")
        ours = KyotoTycoon("127.0.0.1", ours_server.port)
        mine = run_cases(ours, args.seconds, args.items)
        ours.close_all()
        other: dict[str, float] = {}
        if ukt is not None:
            script = os.path.join(os.path.dirname(ukt.__file__), "scripts", "kt.lua")
            if os.path.exists(script):
                theirs_server = EmbeddedServer(
                    server=kind, database="%", server_args=["-scr", script], quiet=True
                )
                theirs_server.run()
                theirs = ukt.KyotoTycoon("127.0.0.1", theirs_server.port)
                other = run_cases(theirs, args.seconds, args.items)
                theirs.close_all()
            else:
                print(f"ukt's kt.lua not found at {script}; benchmarking ktstore alone")
        print(f"{'operation':<26} {'ktstore op/s':>13} {'ukt op/s':>11} {'ratio':>7}")
        for name, value in mine.items():
            if name in other:
                ratio = value / other[name]
                print(f"{name:<26} {value:>13,.0f} {other[name]:>11,.0f} {ratio:>6.2f}x")
            else:
                print(f"{name:<26} {value:>13,.0f} {'-':>11} {'-':>7}")
    finally:
        ours_server.stop()
        if theirs_server is not None:
            theirs_server.stop()


if __name__ == "__main__":
    main()

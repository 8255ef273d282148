"""Queue and Hash throughput: ktstore (lua/kt.lua) vs ukt (its own scripts/kt.lua).

    python bench/bench_containers.py [--seconds 1.0] [--items 100]

Two servers of the same kind run side by side, each with its own client library's Lua
script: the built-in ``ktstore-server`` by default, or the ktserver named by
``KTSTORE_BENCH_SERVER``.  Both use a tree database (``%``), which ukt's queue needs.
ukt is imported if installed, else from the private ``pip install --target`` copy that
``bench_client.py`` makes (never in the project's environment); without it only
ktstore is measured.

Cases: ``queue add`` (one item per call), ``queue pop`` (one item per call from a deep
queue; an empty queue would inflate the figure, so running dry is an error), ``hash
set`` (one field of a hash holding ``--items`` fields) and ``hash get_all``.  The two
libraries run in alternating slices of 50 calls, so a busy machine slows both alike.
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


CHUNK = 50  # calls per timed slice; the libraries alternate slice by slice


def compare(ops: dict[str, Callable[[], object]], seconds: float) -> dict[str, float]:
    """Calls per second of each library's ``op``, measured in alternating slices so
    that both see the same machine load (the host may be shared)."""
    spent = dict.fromkeys(ops, 0.0)
    calls = dict.fromkeys(ops, 0)
    deadline = time.perf_counter() + seconds * len(ops)
    while time.perf_counter() < deadline:
        for name, op in ops.items():
            start = time.perf_counter()
            for _ in range(CHUNK):
                op()
            spent[name] += time.perf_counter() - start
            calls[name] += CHUNK
    return {name: calls[name] / spent[name] for name in ops}


def run_cases(
    clients: dict[str, object], seconds: float, items: int
) -> dict[str, dict[str, float]]:
    """Operations per second of each case, per client library."""
    results: dict[str, dict[str, float]] = {}
    queues = {name: c.Queue("bench-queue") for name, c in clients.items()}
    for q in queues.values():
        q.extend(["warm-up"] * 50)
        while q.pop() is not None:
            pass
    results["queue add"] = compare(
        {name: (lambda q=q: q.add("payload-0123456789")) for name, q in queues.items()}, seconds
    )
    # Pops must never find the queue empty: refill each before its slices run out.
    depth = 20000
    for q in queues.values():
        q.extend(["payload-0123456789"] * depth)

    def popper(q):
        def op():
            if q.pop() is None:
                raise RuntimeError("queue drained during the pop benchmark")

        return op

    results["queue pop"] = compare(
        {name: popper(q) for name, q in queues.items()}, min(seconds, depth / 4000)
    )
    hashes = {name: c.Hash("bench-hash") for name, c in clients.items()}
    for h in hashes.values():
        h.set_bulk({f"field-{i:04d}": f"value-{i}" for i in range(items)})
    results[f"hash set ({items} fields)"] = compare(
        {name: (lambda h=h: h.set("field-0001", "new value")) for name, h in hashes.items()},
        seconds,
    )
    results[f"hash get_all ({items})"] = compare(
        {name: h.get_all for name, h in hashes.items()}, seconds
    )
    return results


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
        clients = {"ktstore": KyotoTycoon("127.0.0.1", ours_server.port)}
        if ukt is not None:
            script = os.path.join(os.path.dirname(ukt.__file__), "scripts", "kt.lua")
            if os.path.exists(script):
                theirs_server = EmbeddedServer(
                    server=kind, database="%", server_args=["-scr", script], quiet=True
                )
                theirs_server.run()
                clients["ukt"] = ukt.KyotoTycoon("127.0.0.1", theirs_server.port)
            else:
                print(f"ukt's kt.lua not found at {script}; benchmarking ktstore alone")
        results = run_cases(clients, args.seconds, args.items)
        for client in clients.values():
            client.close_all()
        print(f"{'operation':<26} {'ktstore op/s':>13} {'ukt op/s':>11} {'ratio':>7}")
        for name, rates in results.items():
            mine = rates["ktstore"]
            if "ukt" in rates:
                other = rates["ukt"]
                print(f"{name:<26} {mine:>13,.0f} {other:>11,.0f} {mine / other:>6.2f}x")
            else:
                print(f"{name:<26} {mine:>13,.0f} {'-':>11} {'-':>7}")
    finally:
        ours_server.stop()
        if theirs_server is not None:
            theirs_server.stop()


if __name__ == "__main__":
    main()

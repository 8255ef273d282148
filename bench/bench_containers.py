"""Container procedures through the Lua host: ktstore-server vs a real ktserver.

    python bench/bench_containers.py [--seconds 1.0] [--items 100] [--clients 4]
    python bench/bench_containers.py --vs-ukt      # the older client comparison

Both servers run ``lua/kt.lua`` on an in-memory tree database (``%``): the built-in
``ktstore-server`` and the ktserver named by ``KTSTORE_BENCH_SERVER`` (without it only
our own figures are printed).  Every case is measured twice:

* **1 client**: this process, the servers alternating in slices of 50 calls, so a busy
  machine slows both alike;
* **N client processes** (``--clients``, default 4): N processes call one server at a
  time for ``--seconds``, each on its own container, the servers alternating round by
  round (``--rounds``); the figure is the aggregate calls per second.

Cases: ``queue add`` (one item per call), ``queue pop`` (one item per call from a deep
queue; running dry is an error, an empty queue would inflate the figure), ``hash set``
(one field of a hash holding ``--items`` fields) and ``hash get_all``.

``--vs-ukt`` keeps the older comparison of client libraries: ktstore (lua/kt.lua) vs
ukt (its own scripts/kt.lua) on two servers of the same kind, one client.  ukt is
imported if installed, else from the private ``pip install --target`` copy that
``bench_client.py`` makes (never in the project's environment).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from ktstore import EmbeddedServer, KyotoTycoon  # noqa: E402

CHUNK = 50  # calls per timed slice; the servers alternate slice by slice
CASES = ("queue add", "queue pop", "hash set", "hash get_all")
PAYLOAD = "payload-0123456789"


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


def prepare(client, case: str, tag: str, items: int, depth: int) -> Callable[[], object]:
    """Set up one container for ``case`` and return the call to time."""
    if case.startswith("queue"):
        q = client.Queue(f"bench-queue-{tag}")
        while q.pop() is not None:
            pass
        if case == "queue add":
            return lambda: q.add(PAYLOAD)
        for start in range(0, depth, 1000):
            q.extend([PAYLOAD] * min(1000, depth - start))

        def pop() -> None:
            if q.pop() is None:
                raise RuntimeError("queue drained during the pop benchmark; raise --depth")

        return pop
    h = client.Hash(f"bench-hash-{tag}")
    h.set_bulk({f"field-{i:04d}": f"value-{i}" for i in range(items)})
    if case == "hash set":
        return lambda: h.set("field-0001", "new value")
    return h.get_all


def alternate(ops: dict[str, Callable[[], object]], seconds: float) -> dict[str, float]:
    """Calls per second of each op, measured in alternating slices so that all see
    the same machine load (the host may be shared)."""
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


def _worker(port, case, tag, items, depth, seconds, ready, results) -> None:
    """One client process: set up its container, wait for the others, call for
    ``seconds``, report the number of calls."""
    client = KyotoTycoon("127.0.0.1", port)
    op = prepare(client, case, tag, items, depth)
    ready.wait()
    n = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(CHUNK):
            op()
        n += CHUNK
    client.close_all()
    results.put(n)


def processes(port: int, case: str, clients: int, items: int, seconds: float, rnd: int) -> float:
    """Aggregate calls per second of ``clients`` processes on one server."""
    ctx = mp.get_context("spawn")
    ready = ctx.Barrier(clients + 1)
    results = ctx.Queue()
    depth = int(seconds * 6000) + 2000  # pops per process: well above what one can do
    procs = [
        ctx.Process(
            target=_worker,
            args=(port, case, f"p{rnd}-{i}", items, depth, seconds, ready, results),
        )
        for i in range(clients)
    ]
    for p in procs:
        p.start()
    ready.wait(timeout=300)
    start = time.perf_counter()
    total = sum(results.get(timeout=seconds + 120) for _ in procs)
    elapsed = time.perf_counter() - start
    for p in procs:
        p.join(30)
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"a client process of {case!r} failed")
    return total / max(elapsed, seconds)


def bench_servers(args: argparse.Namespace) -> None:
    real = os.environ.get("KTSTORE_BENCH_SERVER")
    servers = {"ktstore": EmbeddedServer(server="builtin", database="%", quiet=True)}
    if real:
        servers["ktserver"] = EmbeddedServer(server=real, database="%", quiet=True)
    try:
        for server in servers.values():
            server.run()
        print(f"servers: ktstore-server (built-in){', ' + real if real else ''}; lua/kt.lua; %")
        print(f"shared machine: {os.cpu_count()} cores; ratios are measured in one run")
        one: dict[str, dict[str, float]] = {}
        many: dict[str, dict[str, float]] = {}
        depth = int(args.seconds * 8000 * len(servers)) + 2000
        for case in CASES:
            ops = {
                name: prepare(s.client, case, "one", args.items, depth)
                for name, s in servers.items()
            }
            one[case] = alternate(ops, args.seconds)
        if args.clients > 0:
            for case in CASES:
                sums = dict.fromkeys(servers, 0.0)
                for rnd in range(args.rounds):
                    for name, s in servers.items():
                        sums[name] += processes(
                            s.port, case, args.clients, args.items, args.seconds, rnd
                        )
                many[case] = {name: v / args.rounds for name, v in sums.items()}
        for server in servers.values():
            server.client.close_all()
    finally:
        for server in servers.values():
            server.stop()
    report("1 client", one, real is not None, args.items)
    if many:
        report(f"{args.clients} client processes", many, real is not None, args.items)


def report(title: str, results: dict[str, dict[str, float]], real: bool, items: int) -> None:
    print(f"\n{title}")
    print(f"{'operation':<26} {'ktstore op/s':>13} {'ktserver op/s':>14} {'ratio':>7}")
    for case, rates in results.items():
        name = f"{case} ({items} fields)" if case.startswith("hash") else case
        mine = rates["ktstore"]
        if real:
            other = rates["ktserver"]
            print(f"{name:<26} {mine:>13,.0f} {other:>14,.0f} {mine / other:>6.2f}x")
        else:
            print(f"{name:<26} {mine:>13,.0f} {'-':>14} {'-':>7}")


def bench_ukt(args: argparse.Namespace) -> None:
    kind = os.environ.get("KTSTORE_BENCH_SERVER") or "builtin"
    ukt = load_ukt()
    ours_server = EmbeddedServer(server=kind, database="%", quiet=True)
    ours_server.run()
    theirs_server = None
    try:
        print(f"server: {kind if kind != 'builtin' else 'ktstore-server (built-in)'}")
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
        depth = int(args.seconds * 8000 * len(clients)) + 2000
        results = {
            case: alternate(
                {n: prepare(c, case, "ukt", args.items, depth) for n, c in clients.items()},
                args.seconds,
            )
            for case in CASES
        }
        for client in clients.values():
            client.close_all()
        print(f"{'operation':<26} {'ktstore op/s':>13} {'ukt op/s':>11} {'ratio':>7}")
        for case, rates in results.items():
            mine = rates["ktstore"]
            if "ukt" in rates:
                other = rates["ukt"]
                print(f"{case:<26} {mine:>13,.0f} {other:>11,.0f} {mine / other:>6.2f}x")
            else:
                print(f"{case:<26} {mine:>13,.0f} {'-':>11} {'-':>7}")
    finally:
        ours_server.stop()
        if theirs_server is not None:
            theirs_server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="duration of each case")
    parser.add_argument("--items", type=int, default=100, help="fields in the hash")
    parser.add_argument("--clients", type=int, default=4, help="client processes (0: skip)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per multi-process case")
    parser.add_argument("--vs-ukt", action="store_true", help="compare client libraries")
    args = parser.parse_args()
    if args.vs_ukt:
        bench_ukt(args)
    else:
        bench_servers(args)


if __name__ == "__main__":
    main()

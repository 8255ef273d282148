"""ktstore's client vs ukt's, on the same server.

    python bench/bench_client.py [--seconds 1.0]

The server runs in its own process: the built-in ``ktstore-server`` by default, or the
ktserver named by ``KTSTORE_BENCH_SERVER`` (e.g. ``/tmp/ktbuild/bin/ktserver``).
ukt is imported if installed; otherwise ``pip install --target /tmp/ukt-pkg ukt`` is
tried (never into the project's environment) and ukt is skipped if that fails.

Each case runs both clients in alternating rounds and keeps each one's best round
(robust to a shared, noisy machine); it prints operations per second, client CPU
microseconds per operation, and the ratios ktstore/ukt.  Goals (on a real ktserver): >= 1.3x for single-key operations,
1.2x for bulk operations, 2.5x for HTTP procedures.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ktstore import EmbeddedServer, KyotoTycoon  # noqa: E402

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
    fns: list[Callable[[], object]], seconds: float, rounds: int = 7
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
    keys = [f"bulk-{i:03d}" for i in range(100)]
    data = {k: "value-" + k for k in keys}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="duration of each case")
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
        print(
            f"{'operation':<18} {'ktstore op/s':>13} {'ukt op/s':>11} {'ratio':>7}"
            f" {'ktstore cpu us':>15} {'ukt cpu us':>11} {'ratio':>7}"
        )
        for name, fn in ours_cases.items():
            if theirs_cases:
                (mine, mine_cpu), (other, other_cpu) = compare(
                    [fn, theirs_cases[name]], args.seconds
                )
                print(
                    f"{name:<18} {mine:>13,.0f} {other:>11,.0f} {mine / other:>6.2f}x"
                    f" {mine_cpu:>15.1f} {other_cpu:>11.1f} {other_cpu / mine_cpu:>6.2f}x"
                )
            else:
                ((mine, mine_cpu),) = compare([fn], args.seconds)
                print(f"{name:<18} {mine:>13,.0f} {'-':>11} {'-':>7} {mine_cpu:>15.1f}")
        ours.close_all()
        if theirs is not None:
            theirs.close_all()
    finally:
        server.stop()


if __name__ == "__main__":
    main()

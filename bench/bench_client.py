"""ktstore's client vs ukt's, on the same server.

    python bench/bench_client.py [--seconds 1.0]

The server runs in its own process: the built-in ``ktstore-server`` by default, or the
ktserver named by ``KTSTORE_BENCH_SERVER`` (e.g. ``/tmp/ktbuild/bin/ktserver``).
ukt is imported if installed; otherwise ``pip install --target /tmp/ukt-pkg ukt`` is
tried (never into the project's environment) and ukt is skipped if that fails.

Each case runs for a fixed time after a warm-up and prints operations per second and
the ratio ktstore/ukt.  Goals (on a real ktserver): >= 1.3x for single-key operations,
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


def rate(fn: Callable[[], object], seconds: float) -> tuple[float, float]:
    """``(calls per second, client CPU microseconds per call)`` of ``fn`` over about
    ``seconds`` (after a short warm-up).  The CPU figure is this process only: with a
    slow or busy server it says more about the client than the wall-clock rate."""
    for _ in range(50):
        fn()
    n = 0
    batch = 50
    start = time.perf_counter()
    cpu = time.process_time()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn()
        n += batch
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start), (time.process_time() - cpu) / n * 1e6


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
            mine, mine_cpu = rate(fn, args.seconds)
            if theirs_cases:
                other, other_cpu = rate(theirs_cases[name], args.seconds)
                print(
                    f"{name:<18} {mine:>13,.0f} {other:>11,.0f} {mine / other:>6.2f}x"
                    f" {mine_cpu:>15.1f} {other_cpu:>11.1f} {other_cpu / mine_cpu:>6.2f}x"
                )
            else:
                print(f"{name:<18} {mine:>13,.0f} {'-':>11} {'-':>7} {mine_cpu:>15.1f}")
        ours.close_all()
        if theirs is not None:
            theirs.close_all()
    finally:
        server.stop()


if __name__ == "__main__":
    main()

"""Throughput of ktstore-server (and optionally a real ktserver), as ratios.

Usage::

    python bench/bench_server.py [N] [--records R] [--only memory|files|clients]
    KTSTORE_BENCH_SERVER=/path/to/ktserver python bench/bench_server.py [N]

Measures, from raw sockets (protocol core only):

* memory database, one client: binary get (1-record get_bulk) and set
  (1-record set_bulk), binary bulk of 100 records, one HTTP procedure
  (``/rpc/get`` on an existing key) with keep-alive;
* file databases (``.kch`` and ``.kct``, ``R`` records of 100-byte values,
  default 1,000,000): bulk load in binary ``set_bulk`` of 1,000, single ``set``
  (binary, and HTTP ``/rpc/set``) and ``get`` of random keys of the file, the
  server's RSS after the load, the time from a restart to the first answer and
  the RSS right after it;
* client-count scaling: 1, 2, 4 and 8 client processes each doing HTTP
  ``/rpc/set`` (then ``/rpc/get``) on a memory database, then on a ``.kch``
  file, for a fixed time (``--seconds``), aggregate requests/s.

Our server runs in a subprocess (``python -m ktstore.server``) so the client
and the server do not share a GIL, just as with a real ktserver.  With
``KTSTORE_BENCH_SERVER`` set, the same runs against that executable and the
ratio ours/real is printed.
"""

from __future__ import annotations

import argparse
import compileall
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ktstore.errors import Incomplete  # noqa: E402
from ktstore.protocol import binary, http, tsv  # noqa: E402
from ktstore.protocol.limits import INT64MAX  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return port if port <= 32767 else 20000 + port % 12000


def start(cmd: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)


class Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def call(self, data: bytes, parse: Callable, *args: object) -> object:
        self.sock.sendall(data)
        while True:
            try:
                result, end = parse(self.buf, 0, *args)
                self.buf = self.buf[end:]
                return result
            except Incomplete:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError("closed") from None
                self.buf += chunk

    def http(self, data: bytes) -> bytes:
        head = self.call(data, http.parse_response_head)
        _, length = http.body_framing(head)
        while len(self.buf) < length:
            self.buf += self.sock.recv(1 << 16)
        body, self.buf = self.buf[:length], self.buf[length:]
        return body


def rate(n: int, fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t0)


def run(port: int, n: int) -> dict[str, float]:
    c = Conn(port)
    value = b"v" * 100
    set1 = binary.encode_set_bulk([(0, b"key", value, INT64MAX)])
    get1 = binary.encode_get_bulk([(0, b"key")])
    set100 = binary.encode_set_bulk([(0, b"k%d" % i, value, INT64MAX) for i in range(100)])
    get100 = binary.encode_get_bulk([(0, b"k%d" % i) for i in range(100)])
    body = tsv.encode_tsv([(b"key", b"key")], None)
    rpc_get = http.encode_request(
        "POST",
        "/rpc/get",
        [("Host", "localhost"), ("Content-Type", tsv.content_type_for(None))],
        body,
    )  # fmt: skip
    parse_count = binary.parse_count_reply
    parse_get = binary.parse_get_bulk_reply
    c.call(set1, parse_count, binary.MAGIC_SET_BULK)
    assert c.call(get1, parse_get)[0][2] == value
    assert b"value" in c.http(rpc_get)
    results = {
        "binary set (1)": rate(n, lambda: c.call(set1, parse_count, binary.MAGIC_SET_BULK)),
        "binary get (1)": rate(n, lambda: c.call(get1, parse_get)),
        "binary set_bulk (100)": rate(max(n // 10, 1), lambda: c.call(set100, parse_count, 0xB8)),
        "binary get_bulk (100)": rate(max(n // 10, 1), lambda: c.call(get100, parse_get)),
        "http /rpc/get": rate(n, lambda: c.http(rpc_get)),
    }
    c.sock.close()
    return results


def bench(cmd_for_port: Callable[[int], list[str]], n: int) -> dict[str, float]:
    port = free_port()
    proc = start(cmd_for_port(port), port)
    try:
        return run(port, n)
    finally:
        proc.terminate()
        proc.wait(10)


def rss_mib(pid: int) -> float:
    """Resident memory of a process (VmRSS), MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def first_answer(cmd: list[str], port: int) -> tuple[subprocess.Popen, float]:
    """Start a server and time until it answers a ``get`` (the restart figure)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    get = binary.encode_get_bulk([(0, b"k%09d" % 0)])
    while True:
        try:
            c = Conn(port)
            c.call(get, binary.parse_get_bulk_reply)
            c.sock.close()
            return proc, time.perf_counter() - t0
        except OSError:
            if time.perf_counter() - t0 > 60:
                proc.kill()
                raise
            time.sleep(0.002)


ROUNDS = 3  # each timed case runs this many times per server, interleaved; best kept


def _load(c: Conn, lo: int, hi: int) -> float:
    """Load records ``lo..hi`` in binary set_bulk of 1,000; returns the seconds."""
    value = b"v" * 100
    t0 = time.perf_counter()
    for base in range(lo, hi, 1000):
        frame = binary.encode_set_bulk(
            [(0, b"k%09d" % i, value, INT64MAX) for i in range(base, min(base + 1000, hi))]
        )
        c.call(frame, binary.parse_count_reply, binary.MAGIC_SET_BULK)
    return time.perf_counter() - t0


def file_case(cmds: list[Callable[[int, str], list[str]]], ext: str, records: int, n: int) -> list:
    """Bulk load, single writes/reads, RSS, restart time on one file database per
    server command.  The servers run side by side and every timed case alternates
    between them (best of :data:`ROUNDS`), so a busy machine slows both alike."""
    tmp = tempfile.mkdtemp(prefix="ktbench-")
    outs: list[dict[str, float]] = [{} for _ in cmds]
    procs: list[subprocess.Popen] = []
    try:
        specs = [os.path.join(tmp, f"s{i}", f"casket.{ext}") for i in range(len(cmds))]
        ports = [free_port() for _ in cmds]
        full = [cmd(port, spec) for cmd, port, spec in zip(cmds, ports, specs, strict=True)]
        for spec in specs:
            os.makedirs(os.path.dirname(spec))
        procs = [start(cmd, port) for cmd, port in zip(full, ports, strict=True)]
        conns = [Conn(port) for port in ports]
        loads = [0.0 for _ in cmds]
        step = max(records // 4, 1000)
        for lo in range(0, records, step):  # the load in quarters, alternating
            for i, c in enumerate(conns):
                loads[i] += _load(c, lo, min(lo + step, records))
        for i, proc in enumerate(procs):
            outs[i]["bulk load rec/s"] = records / loads[i]
            outs[i]["RSS after load MiB"] = rss_mib(proc.pid)
        rng = random.Random(7)
        value = b"v" * 100
        keys = [b"k%09d" % rng.randrange(records) for _ in range(n)]
        head = [("Host", "localhost"), ("Content-Type", tsv.content_type_for(None))]
        cases: list[tuple[str, list[bytes], Callable[[Conn, bytes], object]]] = [
            (
                "binary set (1) ops/s",
                [binary.encode_set_bulk([(0, k, value, INT64MAX)]) for k in keys],
                lambda c, f: c.call(f, binary.parse_count_reply, binary.MAGIC_SET_BULK),
            ),
            (
                "http /rpc/set ops/s",
                [
                    http.encode_request(
                        "POST",
                        "/rpc/set",
                        head,
                        tsv.encode_tsv([(b"key", k), (b"value", value)], None),
                    )
                    for k in keys
                ],
                lambda c, f: c.http(f),
            ),
            (
                "binary get (1) ops/s",
                [binary.encode_get_bulk([(0, k)]) for k in keys],
                lambda c, f: c.call(f, binary.parse_get_bulk_reply),
            ),
        ]
        for name, frames, send in cases:
            for i in range(len(cmds)):
                outs[i][name] = 0.0
            for _ in range(ROUNDS):
                for i, c in enumerate(conns):
                    t0 = time.perf_counter()
                    for f in frames:
                        send(c, f)
                    outs[i][name] = max(outs[i][name], n / (time.perf_counter() - t0))
        for c in conns:
            c.sock.close()
        for proc in procs:
            proc.terminate()
            proc.wait(60)
        procs = []
        for i in range(len(cmds)):
            outs[i]["restart to 1st answer s"] = float("inf")
        for _ in range(ROUNDS):
            for i, cmd in enumerate(full):
                proc, secs = first_answer(cmd, ports[i])
                outs[i]["restart to 1st answer s"] = min(outs[i]["restart to 1st answer s"], secs)
                outs[i]["RSS after reopen MiB"] = rss_mib(proc.pid)
                proc.terminate()
                proc.wait(60)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(60)
        shutil.rmtree(tmp, ignore_errors=True)
    return outs


def _client_worker(port: int, op: str, seconds: float, wid: int, q: object) -> None:
    c = Conn(port)
    value = b"v" * 100
    reqs = [
        http.encode_request(
            "POST",
            f"/rpc/{op}",
            [("Host", "localhost"), ("Content-Type", tsv.content_type_for(None))],
            tsv.encode_tsv(
                [(b"key", b"w%d-%d" % (wid, i))] + ([(b"value", value)] if op == "set" else []),
                None,
            ),
        )
        for i in range(1000)
    ]
    n = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for r in reqs[:100]:
            c.http(r)
        n += 100
        reqs = reqs[100:] + reqs[:100]
    c.sock.close()
    q.put(n / seconds)  # type: ignore[attr-defined]


def clients_case(cmds: list[Callable[[int], list[str]]], seconds: float) -> list:
    """Aggregate requests/s of 1, 2, 4, 8 client processes (set, then get), per
    server command; the servers run side by side, cases alternate, best of two."""
    ports = [free_port() for _ in cmds]
    procs = [start(cmd(port), port) for cmd, port in zip(cmds, ports, strict=True)]
    outs: list[dict[str, float]] = [{} for _ in cmds]
    ctx = multiprocessing.get_context("fork")
    try:
        for op in ("set", "get"):
            for k in (1, 2, 4, 8):
                name = f"{op} x{k} clients req/s"
                for _ in range(2):
                    for i, port in enumerate(ports):
                        q = ctx.Queue()
                        ps = [
                            ctx.Process(target=_client_worker, args=(port, op, seconds, w, q))
                            for w in range(k)
                        ]
                        for p in ps:
                            p.start()
                        total = sum(q.get() for _ in ps)
                        for p in ps:
                            p.join()
                        outs[i][name] = max(outs[i].get(name, 0.0), total)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    return outs


def table(title: str, ours: dict[str, float], real: dict[str, float] | None) -> None:
    print(f"\n{title}")
    print(f"{'':28} {'ours':>12}" + (f" {'real':>12} {'ratio':>7}" if real else ""))
    for name, v in ours.items():
        line = f"{name:28} {v:12.3f}" if v < 100 else f"{name:28} {v:12.0f}"
        if real:
            r = real[name]
            line += (f" {r:12.3f}" if r < 100 else f" {r:12.0f}") + f" {v / r:7.2f}"
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=5000)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--only", choices=["memory", "files", "clients"])
    args = ap.parse_args()
    n = args.n
    real_path = os.environ.get("KTSTORE_BENCH_SERVER")

    def ours_cmd(port: int, *dbs: str) -> list[str]:
        return [sys.executable, "-m", "ktstore.server", "-lz", "-port", str(port), *dbs]

    def real_cmd(port: int, *dbs: str) -> list[str]:
        assert real_path
        return [real_path, "-lz", "-host", "127.0.0.1", "-port", str(port), *dbs]

    # A deployed server starts from compiled bytecode (pip compiles it at install).  A
    # checkout run with PYTHONDONTWRITEBYTECODE set would recompile every module at each
    # start: the restart figure would time Python's compiler, not the server.
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "ktstore"), quiet=1)
    print(f"machine: {os.cpu_count()} cores (shared: figures are noisy, compare ratios)")
    if args.only in (None, "memory"):
        ours = bench(lambda port: ours_cmd(port, "*"), n)
        real = bench(lambda port: real_cmd(port, "*"), n) if real_path else None
        table("memory database '*', one client (ops/s)", ours, real)
    cmds = [ours_cmd] + ([real_cmd] if real_path else [])
    if args.only in (None, "files"):
        for ext in ("kch", "kct"):
            results = file_case(cmds, ext, args.records, n)
            table(
                f".{ext} file, {args.records} records of 100 bytes",
                results[0],
                results[1] if len(results) > 1 else None,
            )
    if args.only in (None, "clients"):
        tmp = tempfile.mkdtemp(prefix="ktbench-")
        try:
            for db in ("*", "kch"):
                specs = ["*"] * len(cmds)
                if db != "*":
                    specs = [os.path.join(tmp, f"c{i}.kch") for i in range(len(cmds))]
                results = clients_case(
                    [
                        lambda port, cmd=cmd, spec=spec: cmd(port, spec)
                        for cmd, spec in zip(cmds, specs, strict=True)
                    ],
                    args.seconds,
                )
                title = "'*'" if db == "*" else "a .kch file"
                table(
                    f"client processes, HTTP /rpc/set then /rpc/get on {title} (req/s)",
                    results[0],
                    results[1] if len(results) > 1 else None,
                )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

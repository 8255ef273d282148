"""Single-client throughput of ktstore-server (and optionally a real ktserver).

Usage::

    python bench/bench_server.py [N]
    KTSTORE_BENCH_SERVER=/path/to/ktserver python bench/bench_server.py [N]

Measures, from one client thread on raw sockets (protocol core only):

* binary get (1-record get_bulk) and set (1-record set_bulk),
* binary bulk of 100 records (set_bulk + get_bulk),
* one HTTP procedure (``/rpc/get`` on an existing key) with keep-alive.

Our server runs in a subprocess (``python -m ktstore.server``) so the client
and the server do not share a GIL, just as with a real ktserver.  With
``KTSTORE_BENCH_SERVER`` set, the same runs against that executable and the
ratio ours/real is printed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
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


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    ours = bench(
        lambda port: [sys.executable, "-m", "ktstore.server", "-lz", "-port", str(port), "*"], n
    )
    real_path = os.environ.get("KTSTORE_BENCH_SERVER")
    real = None
    if real_path:
        real = bench(
            lambda port: [real_path, "-lz", "-host", "127.0.0.1", "-port", str(port), "*"], n
        )
    print(
        f"{'operation':24} {'ours ops/s':>12}"
        + (f" {'real ops/s':>12} {'ratio':>7}" if real else "")
    )
    for name, ops in ours.items():
        line = f"{name:24} {ops:12.0f}"
        if real:
            line += f" {real[name]:12.0f} {ops / real[name]:7.2f}"
        print(line)


if __name__ == "__main__":
    main()

"""Servers and processes: an embedded server never outlives its owner, and a database
file opened with ``Store(path)`` is served once for every process of the machine.

These tests run real processes: owners that are SIGKILLed, workers that share a
store, and they check the servers' process ids, not just the ports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ktstore import EmbeddedServer
from ktstore.errors import KTConnectionError

pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose: look at its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def server_pid(port: int) -> int:
    """The pid of the process listening on ``port`` (from /proc/net/tcp)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].split(":")[1], 16) == port:
                inodes.add(parts[9])
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    raise AssertionError(f"nothing listens on {port}")


def run_owner(code: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
    """Start a Python process running ``code``, which prints one JSON line when ready."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"owner failed: {proc.stderr.read() if proc.stderr else ''}")
    return proc, json.loads(line)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_embedded_server_dies_with_its_owner(how: int) -> None:
    owner, info = run_owner(
        """
        import json, time
        from ktstore import EmbeddedServer
        s = EmbeddedServer(server="builtin", database="%", quiet=True)
        s.run()
        print(json.dumps({"port": s.port}), flush=True)
        time.sleep(600)
        """
    )
    pid = server_pid(info["port"])
    assert alive(pid)
    owner.send_signal(how)
    owner.wait(10)
    assert wait_dead(pid), "the server outlived its owner"


def test_foreign_server_dies_with_its_owner(tmp_path: Path) -> None:
    # A stand-in for ktserver: an executable that takes ktserver's options and listens.
    fake = tmp_path / "fakekt"
    fake.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            """
            import socket, sys, time
            port = int(sys.argv[sys.argv.index("-port") + 1])
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()
            while True:
                time.sleep(1)
            """
        )
    )
    fake.chmod(0o755)
    owner, info = run_owner(
        f"""
        import json, time
        from ktstore import EmbeddedServer
        s = EmbeddedServer(server={str(fake)!r}, quiet=True)
        s.run()
        print(json.dumps({{"port": s.port}}), flush=True)
        time.sleep(600)
        """
    )
    pid = server_pid(info["port"])
    owner.kill()
    owner.wait(10)
    assert wait_dead(pid), "the foreign server outlived its owner"


def test_quiet_start_failure_says_why(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "x.kct"
    server = EmbeddedServer(server="builtin", database=str(missing), quiet=True)
    with pytest.raises(KTConnectionError) as err:
        server.run()
    text = str(err.value)
    assert "the server said" in text and str(missing.parent) in text
    assert not server.running


WORKER = """
import json, sys, time
from ktstore import Store
from ktstore.models import Model, fields
store = Store({path!r})
me = {me!r}

class Note(Model, prefix="note", store=store):
    author = fields.Text(index=True)

Note.create(author=me)
store[f"from-{{me}}"] = {{"pid": __import__("os").getpid()}}
print(json.dumps({{"port": store.client.port}}), flush=True)
# wait for the other worker's record, then report what we see
deadline = time.monotonic() + 20
while f"from-{{{other!r}}}" not in store and time.monotonic() < deadline:
    time.sleep(0.05)
while len(list(Note.query())) < 2 and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps(sorted(k for k in store.keys() if k.startswith("from-"))), flush=True)
print(json.dumps(sorted(n.author for n in Note.query())), flush=True)
sys.stdin.read()  # stay until told to go
"""


def test_store_path_is_shared_by_processes_and_ends_with_them(tmp_path: Path) -> None:
    path = str(tmp_path / "app.kct")
    procs = []
    infos = []
    for me, other in (("a", "b"), ("b", "a")):
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER.format(path=path, me=me, other=other)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        infos.append(json.loads(line))
    assert infos[0]["port"] == infos[1]["port"]  # one server for both
    pid = server_pid(infos[0]["port"])
    for proc in procs:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline()) == ["from-a", "from-b"]
        assert json.loads(proc.stdout.readline()) == ["a", "b"]  # models, from each process
    # One user killed: the server stays for the other.
    procs[0].kill()
    procs[0].wait(10)
    time.sleep(1.5)
    assert alive(pid)
    # The last user leaves: the server ends, and its address is withdrawn.
    assert procs[1].stdin is not None
    procs[1].stdin.close()
    procs[1].wait(10)
    assert wait_dead(pid), "the shared server outlived its users"
    assert not os.path.exists(path + ".ktstore.addr")
    # The data is in the file: the next user starts a new server and sees it.
    owner, info = run_owner(
        f"""
        import json
        from ktstore import Store
        s = Store({path!r})
        print(json.dumps({{"keys": sorted(k for k in s.keys() if k.startswith("from-"))}}), flush=True)
        """
    )
    owner.wait(10)
    assert info["keys"] == ["from-a", "from-b"]

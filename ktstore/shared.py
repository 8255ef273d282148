"""One server per database file, shared by every process on the machine that opens it.

Why: an application runs as many processes (web workers, job workers, a notebook
beside them).  ``Store("app.kct")`` in each of them must see the same data, yet
nobody wants to start and stop a server by hand.  So the first process to open a file
starts the built-in server for it, the others find that server and use it, and the
server ends by itself once no process uses it any more -- also when they were killed.

How (the server half is :mod:`ktstore.server.sharing`): next to the file live
``FILE.ktstore.lock``, ``.users`` and ``.addr``.  A user takes the exclusive
``.lock``, then a *shared* lock on ``.users`` that it keeps while the process lives
(the kernel drops it when the process dies), then reads ``.addr``; if no server
answers there, it starts one (``ktstore-server -shared PREFIX FILE``, detached from
the user so that it outlives the starter while others use it) and waits for it to
publish its address.  The server polls for an exclusive lock on ``.users``: it gets
one only when no user is left, and then ends.

Only the built-in server can do this (a real ``ktserver`` has no ``-shared``); use a
URL (``kt://host:port``) to share a server you run yourself.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from ktstore.errors import KTConnectionError

__all__ = ["shared_server", "SharedServer"]

_START_TIMEOUT = 30.0
_lock = threading.Lock()
_servers: dict[str, SharedServer] = {}


class SharedServer:
    """This process's use of the shared server of one database file."""

    def __init__(self, path: str, host: str, port: int, users_fd: int) -> None:
        self.path = path
        self.host = host
        self.port = port
        self._users_fd = users_fd  # held (shared) for the life of the process

    def __repr__(self) -> str:
        return f"<SharedServer {self.path} at {self.host}:{self.port}>"

    def client(self, **kwargs: Any) -> Any:
        from ktstore.client import KyotoTycoon

        return KyotoTycoon(self.host, self.port, **kwargs)


def _prefix(path: str) -> str:
    return path + ".ktstore"


def _read_addr(addr_path: str) -> tuple[str, int, int] | None:
    try:
        with open(addr_path) as f:
            host, port, pid = f.read().split()[:3]
        return host, int(port), int(pid)
    except (OSError, ValueError):
        return None


def _answers(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def shared_server(path: str | os.PathLike[str], script: bool = True) -> SharedServer:
    """The shared server of database file ``path``, started if none runs yet.

    ``path`` is a file database spec (``app.kct``, ``data.kch#...``); its directory
    must exist.  Within one process every call for the same file returns the same
    object.
    """
    spec = os.fspath(path)
    file_part, sep, tuning = spec.partition("#")
    real = os.path.realpath(file_part)
    with _lock:
        known = _servers.get(real)
        if known is not None and _answers(known.host, known.port):
            return known
        from ktstore.server.sharing import shared_paths

        prefix = _prefix(real)
        lock_path, users_path, addr_path = shared_paths(prefix)
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)  # waits while a server starts or ends
            users_fd = os.open(users_path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(users_fd, fcntl.LOCK_SH)
            addr = _read_addr(addr_path)
            if addr is None or not _answers(addr[0], addr[1]):
                addr = _start(real + sep + tuning, prefix, addr_path, script)
            server = SharedServer(real, addr[0], addr[1], users_fd)
            _servers[real] = server
            return server
        finally:
            os.close(lock_fd)  # releases the start/end lock; the users lock stays


def _start(spec: str, prefix: str, addr_path: str, script: bool) -> tuple[str, int, int]:
    """Start a detached built-in server for ``spec`` and wait for its address."""
    try:
        os.remove(addr_path)  # a stale address of a server that is gone
    except FileNotFoundError:
        pass
    from ktstore.embedded import find_free_port

    port = find_free_port()
    cmd = [sys.executable, "-m", "ktstore.server", "-le", "-host", "127.0.0.1"]
    cmd += ["-port", str(port), "-shared", prefix]
    if script:
        cmd.append("-ktlua")
    cmd.append(spec)
    errors = tempfile.TemporaryFile()  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,  # not ended with the starter's terminal or group
        )
        threading.Thread(target=proc.wait, daemon=True).start()  # reap it when it ends
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            addr = _read_addr(addr_path)
            if addr is not None and addr[2] == proc.pid:
                return addr
            if proc.poll() is not None:
                errors.seek(0)
                said = errors.read().decode("utf-8", "replace").strip()[-2000:]
                raise KTConnectionError(
                    f"the shared server for {spec} exited with status {proc.returncode}"
                    + (f": {said}" if said else "")
                )
            if time.monotonic() > deadline:
                proc.kill()
                raise KTConnectionError(f"the shared server for {spec} did not start")
            time.sleep(0.02)
    finally:
        errors.close()

"""Run a Kyoto Tycoon server as a child process, for tests, notebooks and examples.

``EmbeddedServer`` starts ``ktserver`` when one is installed and ``ktstore-server``
(our built-in, protocol-compatible server) otherwise, so code written against it works
on machines without Kyoto Tycoon.  Both take ktserver's command line, which is what we
pass.  Our Lua script (``kt.lua``) is loaded with ``-scr`` so the Lua-backed client
methods work, unless the caller already chose a script.

The server never outlives the process that started it, however that process ends:
the owner holds the write end of a pipe on the server's standard input, which the
kernel closes when the owner dies (even by SIGKILL).  Our server stops on that
(``-lifeline``); any other executable runs under :mod:`ktstore.lifeline`, a small
guard that stops it.  A process forked from the owner inherits the pipe, so the
server then lives until the last of them ends.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from ktstore.client import KyotoTycoon
from ktstore.errors import InvalidArgument, KTConnectionError

__all__ = ["EmbeddedServer", "find_free_port", "stop_process", "wait_for_port"]

_START_TIMEOUT = 15.0


def find_free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port in 20000..32767 (ktserver refuses ports above 32767)."""
    for _ in range(500):
        port = random.randint(20000, 32767)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise KTConnectionError("no free port found")


def wait_for_port(
    host: str, port: int, timeout: float = _START_TIMEOUT, proc: subprocess.Popen | None = None
) -> None:
    """Wait until ``host:port`` accepts TCP connections (a server has started).

    Raises KTConnectionError after ``timeout`` seconds, or as soon as ``proc`` (the
    server's process, if given) has exited.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        if proc is not None and proc.poll() is not None:
            raise KTConnectionError(
                f"the server exited with status {proc.returncode} before accepting "
                f"connections on {host}:{port}"
            )
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise KTConnectionError(
                    f"the server did not accept connections on {host}:{port}"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def stop_process(proc: subprocess.Popen, grace: float = 10.0) -> bool:
    """Terminate a server process and reap it (killed after ``grace`` seconds);
    ``False`` if it had already exited."""
    was_running = proc.poll() is None
    if was_running:
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return was_running


def _tail(stream: Any, limit: int = 2000) -> str:
    """The last ``limit`` bytes a process wrote to ``stream`` (a file), as text."""
    if stream is None:
        return ""
    try:
        stream.seek(0, os.SEEK_END)
        size = stream.tell()
        stream.seek(max(size - limit, 0))
        return stream.read().decode("utf-8", "replace").strip()
    except (OSError, ValueError):
        return ""


class EmbeddedServer:
    """A server subprocess and a client bound to it.

    :param server: ``None`` runs ``ktserver`` if it is on ``PATH``, else the built-in
        server; ``'builtin'`` forces the built-in one; anything else is the path of an
        executable that takes ktserver's options.
    :param host: address to bind.
    :param port: port, or ``None`` for a free one (<= 32767).
    :param database: database path(s) with tuning suffix; default in-memory hash ``*``.
    :param serializer: serializer of the client (``KT_BINARY`` by default).
    :param server_args: extra command-line options (placed before the databases).
    :param quiet: discard the server's output.

    ``run()`` returns the client; ``stop()`` terminates and reaps the process.  It is
    also a context manager (``with EmbeddedServer() as server: server.client...``).
    """

    def __init__(
        self,
        server: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        database: str | Sequence[str] = "*",
        serializer: str | None = None,
        server_args: Sequence[str] | None = None,
        quiet: bool = False,
    ) -> None:
        if port is not None and (type(port) is not int or not 0 < port <= 32767):
            raise InvalidArgument(f"port must be an int in 1..32767, not {port!r}")
        self.server = server
        self.host = host
        self.port = port
        self.databases = [database] if isinstance(database, str) else list(database)
        self.serializer = serializer
        self.server_args = list(server_args or ())
        self.quiet = quiet
        self._proc: subprocess.Popen | None = None
        self._client: KyotoTycoon | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedServer {self.host}:{self.port} {state}>"

    # -- command line --------------------------------------------------------------------

    def command(self, port: int) -> list[str]:
        """The command line that ``run()`` executes."""
        if self.server is None:
            real = shutil.which("ktserver")
            exe = [real] if real else [sys.executable, "-m", "ktstore.server"]
        elif self.server == "builtin":
            exe = [sys.executable, "-m", "ktstore.server"]
        else:
            exe = [os.fspath(self.server)]
        args = list(exe)
        if self.builtin:
            args.append("-lifeline")
        logging = {"-li", "-ls", "-le", "-lz"}
        if not logging.intersection(self.server_args):
            args.append("-le")
        args += ["-host", self.host, "-port", str(port)]
        if "-scr" not in self.server_args:
            script = self._script_path()
            if script is not None:
                args += ["-scr", script]
        args += self.server_args
        args += self.databases
        return args

    @staticmethod
    def _script_path() -> str | None:
        try:
            from ktstore.resources import kt_lua_path

            path = kt_lua_path()
        except (ImportError, FileNotFoundError):
            return None
        return str(path) if path.exists() else None

    @property
    def builtin(self) -> bool:
        """Whether :meth:`command` runs ktstore's own server."""
        if self.server is None:
            return shutil.which("ktserver") is None
        return self.server == "builtin"

    # -- life cycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def client(self) -> KyotoTycoon:
        """The client bound to the running server."""
        if self._client is None:
            raise KTConnectionError("the embedded server is not running; call run() first")
        return self._client

    def run(self) -> KyotoTycoon:
        """Start the server, wait until its port accepts connections, return the client."""
        if self.running:
            return self.client
        port = self.port if self.port is not None else find_free_port(self.host)
        cmd = self.command(port)
        if not self.builtin:  # a foreign server: the guard ends it with us
            cmd = [sys.executable, "-m", "ktstore.lifeline", "--", *cmd]
        # quiet: the output is dropped, but what the server says on stderr is kept in a
        # file so a failed start can tell why.
        errors = tempfile.TemporaryFile() if self.quiet else None  # noqa: SIM115
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL if self.quiet else None,
            stderr=errors,
            stdin=subprocess.PIPE,  # the lifeline: closed by the kernel when we die
        )
        self._proc = proc
        try:
            wait_for_port(self.host, port, _START_TIMEOUT, proc)
        except KTConnectionError as e:
            self.stop()  # (reaps the process whether it exited or hangs)
            said = _tail(errors)
            if said:
                raise KTConnectionError(f"{e}; the server said: {said}") from None
            raise
        finally:
            if errors is not None:
                errors.close()
        self.port = port
        self._client = KyotoTycoon(self.host, port, serializer=self.serializer)
        return self._client

    def stop(self) -> bool:
        """Terminate the server and reap it; ``False`` if it was not running."""
        proc = self._proc
        self._proc = None
        if self._client is not None:
            self._client.close_all()
            self._client = None
        if proc is None:
            return False
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        return stop_process(proc)

    def __enter__(self) -> EmbeddedServer:
        self.run()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __del__(self) -> None:
        try:
            if self._proc is not None and self._proc.poll() is None:
                self.stop()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

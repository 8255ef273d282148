"""The server object: listener, connection threads, shared state.

Threading model: one accept thread plus one thread per connection, with
blocking sockets whose timeout is ``-tout``.  A slow or broken client only
ever blocks its own thread; the databases' locks are held for single short
operations, never across network I/O.  ``stop()`` closes the listener and
shuts down every live connection so their threads wake up and exit, wakes any
request blocked in ``WAIT``, joins the threads and flushes the databases.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

from ktstore.server.config import ServerConfig, parse_args
from ktstore.server.connection import serve_connection
from ktstore.server.database import Database
from ktstore.server.session import ConditionMap, Session

__all__ = ["Server", "Session", "ConditionMap"]

_LEVELS = {"debug": 0, "info": 1, "system": 2, "error": 3, "none": 9}


class Server:
    """A Kyoto Tycoon compatible server on one TCP port (HTTP and binary).

    ``Server(databases, host=, port=, script=, args=)``: ``databases`` are
    ktserver database specs, ``args`` further ktserver-style options (parsed by
    :func:`ktstore.server.config.parse_args`).  ``port=0`` picks a free port;
    :attr:`port` tells which after :meth:`start`.
    """

    def __init__(
        self,
        databases: Sequence[str] | None = None,
        host: str | None = None,
        port: int | None = None,
        script: str | None = None,
        args: Sequence[str] = (),
        config: ServerConfig | None = None,
    ) -> None:
        cfg = config if config is not None else parse_args(list(args))
        if databases:
            cfg.databases = list(databases)
        if host is not None:
            cfg.host = host
        if port is not None:
            cfg.port = port
        if script is not None:
            cfg.script = script
        self.config = cfg
        self.script_path = cfg.script
        if cfg.script is not None and not os.path.isfile(cfg.script):
            raise FileNotFoundError(f"{cfg.script}: the script file does not exist")
        self.dbs: list[Database] = [Database(spec) for spec in cfg.databases]
        self._names: dict[bytes, int] = {}
        for i, db in enumerate(self.dbs):
            self._names.setdefault(db.name.encode("utf-8", "surrogateescape"), i)
        self.ulog: Any = None
        if cfg.ulog is not None:
            from ktstore.server.ulog import UpdateLog

            self.ulog = UpdateLog(cfg.ulog, cfg.sid or 0, cfg.ulim)
            for i, db in enumerate(self.dbs):
                db.set_commit_hook(self.ulog.hook(i))
        self.slave: Any = None
        if cfg.rts_path is not None:
            from ktstore.server.slave import ReplicationSlave

            self.slave = ReplicationSlave(
                sid=cfg.sid or 0,
                rts_path=cfg.rts_path,
                host=cfg.master_host,
                port=cfg.master_port,
                riv=cfg.riv,
                dbs=self.dbs,
                ulog=self.ulog,
                log=self.log,
            )
        self.conditions = ConditionMap()
        self.stats: dict[str, int] = dict.fromkeys(
            ("set", "set_misses", "remove", "remove_misses", "get", "get_misses", "script", "misc"),
            0,
        )
        self.started_at = time.time()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._conns_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(cfg.max_conns)
        self._cap_logged = False
        # how connection threads are made (a test replaces it to inject a failure)
        self._thread_factory: Any = threading.Thread
        self._stopping = threading.Event()
        self._port = cfg.port
        self._server_name: str | None = None
        self._script_host: Any = None
        self._script_lock = threading.Lock()
        self._script_failed = False
        self._told_no_script = False
        self._log_file: TextIO | None = None
        self._log_level = _LEVELS.get(cfg.log_level, 0)
        self._log_lock = threading.Lock()

    # ------------------------------------------------------------------ logging

    def log(self, kind: str, message: str) -> None:
        """Write one ktserver-style log line if ``kind`` passes the ``-l*`` filter."""
        if _LEVELS.get(kind, 0) < self._log_level:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        line = f"{stamp}Z: [{kind.upper()}]: {message}\n"
        with self._log_lock:
            out = self._log_file
            if out is None:
                if self.config.log_file in (None, "-"):
                    out = sys.stdout
                else:
                    out = self._log_file = open(self.config.log_file, "a", encoding="utf-8")  # noqa: SIM115
            try:
                out.write(line)
                out.flush()
            except (OSError, ValueError):
                pass

    @property
    def log_enabled_debug(self) -> bool:
        return self._log_level == 0

    # ------------------------------------------------------------------ state

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return self._port

    def db_index_by_name(self, name: bytes) -> int:
        return self._names.get(name, -1)

    def server_name(self) -> str:
        """``host:port`` as ktserver names itself (e.g. in RESTful ``Location`` headers).

        The bind address is turned into a host name the way ktserver does
        (127.0.0.1 -> ``localhost``); resolved once, on first use.
        """
        name = self._server_name
        if name is None:
            host = self.config.host
            try:
                if host in ("", "0.0.0.0", "::"):
                    host = socket.gethostname()
                else:
                    host = socket.gethostbyaddr(host)[0]
            except OSError:
                pass
            name = self._server_name = f"{host}:{self._port}"
        return name

    def connection_count(self) -> int:
        return len(self._conns)

    def script_host(self) -> Any:
        """The Lua host, created on first use; ``None`` without ``-scr`` or Lua support."""
        if self.script_path is None or self._script_failed:
            return None
        host = self._script_host
        if host is not None:
            return host
        with self._script_lock:
            if self._script_host is None and not self._script_failed:
                try:
                    from ktstore.server.scripting import ScriptHost
                except ImportError:
                    self._script_failed = True
                    self.log("error", "scripting is not available in this installation")
                    return None
                try:
                    self._script_host = ScriptHost(
                        self.script_path,
                        self.dbs,
                        [db.name for db in self.dbs],
                        allow_unsafe=self.config.script_unsafe,
                        log=self.log,
                        total_memory=self.config.script_memory,
                    )
                except Exception as e:
                    self._script_failed = True
                    self.log("error", f"[SCRIPT]: loading {self.script_path} failed: {e}")
                    return None
            return self._script_host

    def script_missing(self) -> None:
        """A procedure was called with no script loaded: say once in the log how to load
        one (the answer itself stays ktserver's, byte for byte)."""
        if not self._told_no_script:
            self._told_no_script = True
            self.log(
                "error",
                "play_script: no script is loaded; start the server with -scr FILE "
                "(ktstore's procedures: -ktlua, or -scr with ktstore.resources.kt_lua_path())",
            )

    def reload(self) -> None:
        """What SIGUSR1 does to ktserver: reopen the log file and reload the script."""
        with self._log_lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
        host = self._script_host
        if host is not None and hasattr(host, "reload"):
            host.reload()
        elif self._script_failed:
            self._script_failed = False  # try loading the (maybe fixed) script again
        self.log("system", "reloaded (log reopened, script reloaded)")

    # ------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Bind, listen and start accepting; returns once connections are accepted."""
        cfg = self.config
        infos = socket.getaddrinfo(cfg.host or None, cfg.port, 0, socket.SOCK_STREAM)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self._listener = sock
        self._port = sock.getsockname()[1]
        self.started_at = time.time()
        if self.script_path is not None:
            self.script_host()  # load early so a broken script is logged at start
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"ktstore-accept-{self._port}", daemon=True
        )
        self._accept_thread.start()
        self.log("system", f"listening on {cfg.host}:{self._port}")
        if self.slave is not None:
            self.slave.start()

    def _accept_loop(self) -> None:
        """Accept connections until stopped; nothing that happens here ends the loop.

        At most ``-maxconn`` connections are served at once: beyond that the loop
        stops accepting until one ends, so new clients wait in the kernel's listen
        backlog (they connect, and are answered once a slot frees).  A connection
        whose thread cannot be started is logged and closed.
        """
        listener = self._listener
        assert listener is not None
        slots = self._slots
        while not self._stopping.is_set():
            if not slots.acquire(timeout=0.2):
                if not self._cap_logged:
                    self._cap_logged = True
                    self.log("info", f"connection limit reached ({self.config.max_conns}): waiting")
                continue
            self._cap_logged = False
            try:
                self._accept_one(listener)
            except Exception as e:  # never let the accept thread die
                slots.release()
                self.log("error", f"accept loop: {e!r}")
                time.sleep(0.01)

    def _accept_one(self, listener: socket.socket) -> None:
        """Accept one connection and start its thread; holds one slot, which the
        connection's thread (or a failure here) gives back."""
        try:
            conn, addr = listener.accept()
        except OSError:
            self._slots.release()
            if not self._stopping.is_set():
                time.sleep(0.01)  # e.g. EMFILE: do not spin
            return
        if self._stopping.is_set():
            self._slots.release()
            conn.close()
            return
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._set_timeout(conn)
            t = self._thread_factory(
                target=self._run_connection, args=(conn, addr), name="ktstore-conn", daemon=True
            )
            with self._conns_lock:
                self._conns[conn] = t
            t.start()
        except Exception as e:
            with self._conns_lock:
                self._conns.pop(conn, None)
            self._slots.release()
            self.log("error", f"cannot serve a connection from {addr!r}: {e!r}")
            try:
                conn.close()
            except OSError:
                pass
            time.sleep(0.01)  # out of threads or memory: give the others a moment

    def _set_timeout(self, conn: socket.socket) -> None:
        """Apply ``-tout`` to every socket operation.

        Kernel timeouts (SO_RCVTIMEO/SO_SNDTIMEO) on a blocking socket cost nothing
        per call, whereas Python's ``settimeout`` adds a poll() before every
        recv/send; a timed-out call raises an OSError, which ends the connection.
        """
        tout = self.config.timeout
        if hasattr(socket, "SO_RCVTIMEO") and sys.platform.startswith("linux"):
            sec = int(tout)
            tv = struct.pack("ll", sec, int((tout - sec) * 1e6))
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
            conn.settimeout(None)
        else:  # pragma: no cover - other platforms
            conn.settimeout(tout)

    def _run_connection(self, conn: socket.socket, addr: Any) -> None:
        peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
        session = Session(peer, conn)
        try:
            serve_connection(self, conn, session)
        except Exception as e:  # a bug must not take the server down
            self.log("error", f"connection {peer}: {e!r}")
        finally:
            session.close()
            with self._conns_lock:
                self._conns.pop(conn, None)
            try:
                conn.close()
            except OSError:
                pass
            self._slots.release()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Close the listener and every connection, join the threads, flush the databases."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self.slave is not None:
            self.slave.stop()
        self.conditions.stop()
        if self.ulog is not None:
            with self.ulog.lock:
                self.ulog.changed.notify_all()  # wake replication streams
        listener = self._listener
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
        with self._conns_lock:
            conns = list(self._conns.items())
        for conn, _ in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _, t in conns:
            if t.ident is not None:  # a thread that failed to start cannot be joined
                t.join(5)
        host = self._script_host
        if host is not None and hasattr(host, "close"):
            try:
                host.close()
            except Exception:
                pass
        for db in self.dbs:
            try:
                db.close()
            except Exception as e:
                self.log("error", f"closing {db.path}: {e!r}")
        if self.ulog is not None:
            self.ulog.close()
        self.log("system", "server stopped")
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

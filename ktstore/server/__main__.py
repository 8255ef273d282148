"""``ktstore-server`` / ``python -m ktstore.server``: run a server from ktserver's command line.

SIGTERM and SIGINT stop it cleanly (connections closed, file databases flushed,
the ``-pid`` file removed); SIGHUP too, as a non-daemon ktserver does.  SIGUSR1
reopens the log file and reloads the ``-scr`` script without dropping connections
(ktserver restarts in place and drops them; keeping them is friendlier and
invisible to clients).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from ktstore.server.config import USAGE, UsageError, parse_args

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 after a signal-requested stop)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        cfg = parse_args(args)
    except UsageError as e:
        print(f"ktstore-server: {e}", file=sys.stderr)
        print(USAGE, file=sys.stderr, end="")
        return 1
    if cfg.show_help:
        print(USAGE, end="")
        return 0
    if cfg.show_version:
        from ktstore.server.rpc import KT_VERSION

        print(f"ktstore-server (Kyoto Tycoon compatible {KT_VERSION})")
        return 0
    from ktstore.server.core import Server
    from ktstore.server.database import DatabaseOpenError

    sharing = None
    if cfg.shared is not None:
        from ktstore.server.sharing import SharedServerLocks

        sharing = SharedServerLocks(cfg.shared)
    try:
        server = Server(config=cfg)
    except (DatabaseOpenError, OSError) as e:
        print(f"ktstore-server: {e}", file=sys.stderr)
        return 1
    done = threading.Event()
    if cfg.lifeline:
        from ktstore.server.sharing import watch_lifeline

        watch_lifeline(done.set)

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    reload = threading.Event()

    def on_usr1(signum: int, frame: object) -> None:
        reload.set()
        done.set()  # wake the main loop, which then only reloads

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, on_usr1)
    if cfg.pid_file:  # before listening, so whoever sees the port sees the pid file
        try:
            with open(cfg.pid_file, "w") as f:
                f.write(f"{os.getpid()}\n")
        except OSError as e:
            print(f"ktstore-server: cannot write the pid file: {e}", file=sys.stderr)
            for db in server.dbs:
                db.close()
            return 1
    try:
        server.start()
    except OSError as e:
        print(f"ktstore-server: cannot listen on {cfg.host}:{cfg.port}: {e}", file=sys.stderr)
        for db in server.dbs:
            db.close()
        if cfg.pid_file:
            os.remove(cfg.pid_file)
        return 1
    server.log("system", f"================ [START]: pid={os.getpid()}")
    if sharing is not None:
        sharing.publish(cfg.host, server.port)
        sharing.watch(done.set)
    try:
        while True:
            done.wait(1.0)
            if reload.is_set():
                reload.clear()
                done.clear()
                server.reload()
                continue
            if done.is_set():
                break
    finally:
        server.log("system", "================ [FINISH]")
        if sharing is not None:
            sharing.unpublish()
            sharing.close()
        server.stop()
        if cfg.pid_file:
            try:
                os.remove(cfg.pid_file)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

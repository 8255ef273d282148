"""``python -m ktstore.lifeline -- CMD ARGS...``: run CMD and end it when our stdin closes.

Why: :class:`~ktstore.embedded.EmbeddedServer` promises that a server never outlives
the process that started it, however that process ends (SIGKILL included).  Our own
server has ``-lifeline`` for that; a real ``ktserver`` has no such option, so it runs
under this small guard instead: the owner holds the write end of the guard's stdin,
the kernel closes it when the owner dies, and the guard then stops the server
(SIGTERM, then SIGKILL after a grace period).  SIGTERM/SIGINT sent to the guard are
passed on; the guard exits with the server's status.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

GRACE = 10.0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m ktstore.lifeline -- command [args...]", file=sys.stderr)
        return 2
    try:
        child = subprocess.Popen(args, stdin=subprocess.DEVNULL)
    except OSError as e:
        print(f"ktstore.lifeline: {args[0]}: {e}", file=sys.stderr)
        return 127

    def stop_child(*_: object) -> None:
        if child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, stop_child)
    signal.signal(signal.SIGINT, stop_child)

    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        stop_child()
        try:
            child.wait(GRACE)
        except subprocess.TimeoutExpired:
            child.kill()

    threading.Thread(target=watch, daemon=True).start()
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:  # pragma: no cover - SIGINT is handled above
            continue


if __name__ == "__main__":
    sys.exit(main())

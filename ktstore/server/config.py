"""ktserver's command line, parsed into a :class:`ServerConfig`.

We take ktserver's own options (so scripts and harnesses written for the real
server work unchanged) and its rule that the first non-option argument ends the
options: everything after it is a database spec.  Options that only make sense
for the real server's C++ engine (``-oat``, ``-asi``, ``-bgs``...) are accepted
and ignored; the value-taking ones still consume their value.

Our own additions:

* ``-scr-unsafe``: give the Lua script the unsafe standard libraries (``os``,
  ``io``, ``require``...).  Off by default: a script can then only touch the
  databases, like a sandboxed real server.
* ``-ulog DIR -sid N [-ulim SIZE]`` keep an update log in ktserver's format
  (``ulog_list``, ``ulog_remove`` and binary replication read it).
* ``-mhost H -mport N -rts FILE -riv S``: follow a master as its replication slave
  (:mod:`ktstore.server.slave`); ``-mhost`` needs ``-sid`` and ``-rts``, as in ktserver.
* ``-port`` accepts any valid TCP port (1-65535).  ktserver itself rejects ports
  above 32767; we do not, and document it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ServerConfig", "UsageError", "parse_args", "USAGE"]

DEFAULT_PORT = 1978

USAGE = """\
usage: ktstore-server [-host str] [-port num] [-tout num] [-th num] [-log file]
                      [-li|-ls|-le|-lz] [-ulog dir] [-sid num] [-pid file]
                      [-scr file] [-scr-unsafe] [-mhost str] [-mport num]
                      [-rts file] [-riv num] [--version] [db...]

  databases: * % : - + or file paths (casket.kch, casket.kct), each optionally
  followed by #name=value tuning parameters; default ':'.
"""


class UsageError(Exception):
    """Bad command line (the CLI prints it with the usage and exits 1)."""


@dataclass
class ServerConfig:
    """Everything the command line says about one server."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    timeout: float = 30.0
    threads: int = 16
    log_file: str | None = None  # None = stdout
    log_level: str = "debug"  # debug, info, system, error, none
    pid_file: str | None = None
    script: str | None = None
    script_unsafe: bool = False
    ulog: str | None = None
    ulim: int = 256 << 20
    sid: int | None = None
    master_host: str | None = None  # -mhost: follow this master (replication slave)
    master_port: int = DEFAULT_PORT
    rts_path: str | None = None  # -rts: the replication time stamp file
    riv: float = 0.04  # -riv: replication throttle, ktserver's default
    read_only: bool = False
    databases: list[str] = field(default_factory=list)
    show_version: bool = False


# Options that take a value we ignore, and flags we ignore.
_IGNORED_WITH_VALUE = {
    "-uasi",
    "-asi",
    "-bgs",
    "-bgsi",
    "-bgsc",
    "-cmd",
    "-plsv",
    "-plex",
    "-pldb",
}
_IGNORED_FLAGS = {"-oat", "-oas", "-onl", "-otl", "-onr", "-ash", "-dmn", "-ord"}


def _number(opt: str, text: str, kind: type = int) -> float:
    try:
        return kind(text)
    except ValueError:
        raise UsageError(f"{opt}: not a number: {text!r}") from None


def parse_args(argv: list[str]) -> ServerConfig:
    """Parse ktserver-style arguments (without the program name)."""
    cfg = ServerConfig()
    i = 0
    n = len(argv)

    def value(opt: str) -> str:
        nonlocal i
        i += 1
        if i >= n:
            raise UsageError(f"{opt}: missing value")
        return argv[i]

    while i < n:
        arg = argv[i]
        if not arg.startswith("-") or arg in ("-", "+") or arg.startswith("-#"):
            break
        if arg == "-host":
            cfg.host = value(arg)
        elif arg == "-port":
            port = int(_number(arg, value(arg)))
            if not 1 <= port <= 65535:
                raise UsageError(f"-port: out of range: {port}")
            cfg.port = port
        elif arg == "-tout":
            t = float(_number(arg, value(arg), float))
            cfg.timeout = t if t > 0 else 30.0
        elif arg == "-th":
            th = int(_number(arg, value(arg)))
            cfg.threads = max(1, min(th, 64))
        elif arg == "-log":
            cfg.log_file = value(arg)
        elif arg == "-li":
            cfg.log_level = "info"
        elif arg == "-ls":
            cfg.log_level = "system"
        elif arg == "-le":
            cfg.log_level = "error"
        elif arg == "-lz":
            cfg.log_level = "none"
        elif arg == "-pid":
            cfg.pid_file = value(arg)
        elif arg == "-scr":
            cfg.script = value(arg)
        elif arg == "-scr-unsafe":
            cfg.script_unsafe = True
        elif arg == "-ulog":
            cfg.ulog = value(arg)
        elif arg == "-sid":
            sid = int(_number(arg, value(arg)))
            if not 0 <= sid <= 65535:
                raise UsageError(f"-sid: out of range: {sid}")
            cfg.sid = sid
        elif arg == "-ulim":
            from ktstore.server.database import _atoix

            cfg.ulim = _atoix(value(arg))
        elif arg == "-mhost":
            cfg.master_host = value(arg)
        elif arg == "-mport":
            mport = int(_number(arg, value(arg)))
            if not 1 <= mport <= 65535:
                raise UsageError(f"-mport: out of range: {mport}")
            cfg.master_port = mport
        elif arg == "-rts":
            cfg.rts_path = value(arg)
        elif arg == "-riv":
            riv = float(_number(arg, value(arg), float))
            if not riv >= 0 or riv == float("inf"):
                raise UsageError(f"-riv: not a usable interval: {riv}")
            cfg.riv = riv
        elif arg == "--version":
            cfg.show_version = True
        elif arg in _IGNORED_WITH_VALUE:
            value(arg)
        elif arg in _IGNORED_FLAGS:
            if arg == "-ord":
                cfg.read_only = True
        else:
            raise UsageError(f"unknown option: {arg}")
        i += 1
    cfg.databases = list(argv[i:]) or [":"]
    if cfg.ulog is not None and cfg.sid is None:
        raise UsageError("-ulog needs a server id (-sid)")
    if cfg.master_host is not None:  # ktserver's two refusals, in its order
        if cfg.sid is None:
            raise UsageError("replication requires the server ID (-sid)")
        if cfg.rts_path is None:
            raise UsageError("replication requires the replication time stamp file (-rts)")
    if len(cfg.databases) > 200:
        raise UsageError("too many databases (at most 200)")
    return cfg

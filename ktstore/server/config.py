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
* ``-ktlua`` loads the ``kt.lua`` that ships with ktstore (the procedures the
  client's containers and models call) without knowing where it is installed.
* ``-maxconn N`` caps the connections served at once (default 1024); further
  clients wait until one ends.  (``-th`` is ktserver's worker count; we run one
  thread per connection, so capping connections at ``-th`` would lock out every
  client beyond the 16th.)
* ``--help`` (also ``-help``, ``-h``) prints the usage.
* ``-scr-mem NUM`` bounds the memory of all Lua states together (default 1 GiB;
  :mod:`ktstore.server.scripting.host`).
* ``-lifeline``: stop when standard input reaches end-of-file; ``-shared PREFIX``:
  serve the processes that hold a shared lock on ``PREFIX.users`` and stop when none
  is left (:mod:`ktstore.server.sharing`).  ``EmbeddedServer`` and ``Store(path)``
  use them so a server never outlives the processes it serves.

Every value is checked here, at start: a number that is not one, a negative
or out-of-range count, a timeout that is not a finite positive number are a
:class:`UsageError` with the usage text, never a server that starts and then
misbehaves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["ServerConfig", "UsageError", "parse_args", "USAGE"]

DEFAULT_PORT = 1978

USAGE = """\
usage: ktstore-server [-host str] [-port num] [-tout num] [-th num] [-maxconn num]
                      [-log file] [-li|-ls|-le|-lz] [-ulog dir -sid num [-ulim num]]
                      [-pid file] [-scr file | -ktlua] [-scr-unsafe] [-scr-mem num]
                      [-mhost str -mport num -rts file [-riv num]]
                      [-lifeline] [-shared prefix]
                      [--version] [--help] [db...]

  -host str      bind address (default 127.0.0.1)
  -port num      TCP port, 1-65535 (default 1978)
  -tout num      seconds a socket operation or a request head may take (default 30,
                 0.001 to 1000000); a body must also keep 16 KiB/s after that
  -th num        ktserver's worker count (accepted, reported; default 16)
  -maxconn num   connections served at once (default 1024); others wait
  -scr file      Lua script with the server-side procedures
  -ktlua         load the kt.lua that ships with ktstore (what the client's
                 containers and models call)
  -scr-mem num   total memory of all Lua states, e.g. 512m (default 1g)
  -ulog dir      keep an update log (needs -sid); -ulim: its file size
  -mhost str     follow this master as a replication slave (needs -sid, -rts)
  -mport num     the master's port (default 1978)
  -rts file      the replication time stamp file (where a restart resumes)
  -riv num       replication throttle, ktserver's (default 0.04)
  -lifeline      stop when standard input closes (the owner process is gone)
  -shared prefix serve the processes holding a shared lock on prefix.users and
                 stop when none is left; publish the address in prefix.addr

  databases: * % : - + or file paths (casket.kch, casket.kct), each optionally
  followed by #name=value tuning parameters; default ':'.
"""
MAX_TIMEOUT = 1_000_000.0
MIN_TIMEOUT = 0.001


class UsageError(Exception):
    """Bad command line (the CLI prints it with the usage and exits 1)."""


@dataclass
class ServerConfig:
    """Everything the command line says about one server."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    timeout: float = 30.0
    threads: int = 16
    max_conns: int = 1024
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
    show_help: bool = False
    script_memory: int = 1 << 30  # -scr-mem: total memory of all Lua states
    lifeline: bool = False  # -lifeline: stop at end-of-file on stdin
    shared: str | None = None  # -shared PREFIX: stop when no process uses us


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


def _count(opt: str, text: str, low: int, high: int) -> int:
    n = int(_number(opt, text))
    if not low <= n <= high:
        raise UsageError(f"{opt}: out of range ({low}-{high}): {n}")
    return n


def _timeout(opt: str, text: str) -> float:
    """``-tout``: a finite number of seconds; 0 keeps the default (30 s)."""
    t = float(_number(opt, text, float))
    if t == 0:
        return 30.0
    if not math.isfinite(t) or not MIN_TIMEOUT <= t <= MAX_TIMEOUT:
        raise UsageError(
            f"{opt}: not a timeout between {MIN_TIMEOUT} and {MAX_TIMEOUT:.0f} s: {text!r}"
        )
    return t


def bundled_script() -> str:
    """The path of the ``kt.lua`` that ships with ktstore (``-ktlua``)."""
    from ktstore.resources import kt_lua_path

    try:
        return str(kt_lua_path())
    except FileNotFoundError as e:
        raise UsageError(f"-ktlua: {e}") from None


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
            cfg.port = _count(arg, value(arg), 1, 65535)
        elif arg == "-tout":
            cfg.timeout = _timeout(arg, value(arg))
        elif arg == "-th":
            cfg.threads = min(_count(arg, value(arg), 1, 1_000_000), 64)
        elif arg == "-maxconn":
            cfg.max_conns = _count(arg, value(arg), 1, 1_000_000)
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
        elif arg == "-ktlua":
            cfg.script = bundled_script()
        elif arg == "-scr-unsafe":
            cfg.script_unsafe = True
        elif arg == "-scr-mem":
            from ktstore.server.database import _atoix

            text = value(arg)
            cfg.script_memory = _atoix(text)
            if cfg.script_memory < (1 << 20):
                raise UsageError(f"-scr-mem: at least 1m (1 MiB), not {text!r}")
        elif arg == "-lifeline":
            cfg.lifeline = True
        elif arg == "-shared":
            cfg.shared = value(arg)
        elif arg == "-ulog":
            cfg.ulog = value(arg)
        elif arg == "-sid":
            cfg.sid = _count(arg, value(arg), 0, 65535)
        elif arg == "-ulim":
            from ktstore.server.database import _atoix

            cfg.ulim = _atoix(value(arg))
            if cfg.ulim <= 0:
                raise UsageError("-ulim: not a positive size")
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
        elif arg in ("--help", "-help", "-h"):
            cfg.show_help = True
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

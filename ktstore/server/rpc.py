"""The TSV-RPC procedures of ktserver (``/rpc/<name>``), over decoded parameters.

:func:`dispatch` takes the procedure name and the input map (``bytes -> bytes``,
already URL/TSV-decoded by the HTTP layer) and returns ``(rv, outputs)`` where
``rv`` is KT's RV code (0 success, 1 not implemented, 2 invalid, 3 logic,
4 timeout, 5 internal) and ``outputs`` a list of ``(key, value)`` pairs.  The
HTTP layer turns the RV into a status and encodes the pairs.

The common parameters (``DB``, ``CUR``, ``WAIT``/``WAITTIME``,
``SIGNAL``/``SIGNALBROAD``) are handled here in ktserver's order: resolve the
database and the cursor, wait, run the procedure, signal.  Error texts are the
real server's (docs/protocol.md, "Return values"), because clients show them and tests
compare them.
"""

from __future__ import annotations

import math
import os
import platform
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ktstore.protocol.expire import kt_atoi, resolve_xt
from ktstore.protocol.limits import INT64MAX, INT64MIN, XTMAX
from ktstore.protocol.rpc import (
    ERR_INVALID_PARAMETERS,
    ERR_NO_SUCH_CURSOR,
    ERR_NO_SUCH_DATABASE,
    ERR_NO_SUCH_PROCEDURE,
    ERR_NO_ULOG,
    ERR_RTS_NOT_SET,
    ERR_SCRIPT_DISABLED,
    ERR_SCRIPT_FAILED,
    ERR_TIMED_OUT,
    KC_INVALID,
    RVEINTERNAL,
    RVEINVALID,
    RVELOGIC,
    RVENOIMPL,
    RVETIMEOUT,
    RVSUCCESS,
    rv_for_kc_error,
)
from ktstore.server.database import Database, DBCursor, request_scope

if TYPE_CHECKING:
    from ktstore.server.context import ServerContext
    from ktstore.server.session import Session

__all__ = ["dispatch", "resolve_db", "PROCEDURES", "KT_VERSION"]

KT_VERSION = "0.9.56b (ktstore)"

Pairs = list[tuple[bytes, bytes]]
Params = dict[bytes, bytes]


class _Call:
    """One RPC invocation: the resolved database/cursor and the output list."""

    __slots__ = ("server", "session", "params", "db", "dbidx", "cur", "out")

    def __init__(self, server: ServerContext, session: Session, params: Params) -> None:
        self.server = server
        self.session = session
        self.params = params
        self.db: Database | None = None
        self.dbidx = -1
        self.cur: DBCursor | None = None
        self.out: Pairs = []


def _fail(call: _Call, text: bytes, rv: int) -> int:
    call.out.append((b"ERROR", text))
    return rv


_E_INVALID = ERR_INVALID_PARAMETERS.encode()
_E_NO_DB = ERR_NO_SUCH_DATABASE.encode()
_E_NO_CURSOR = ERR_NO_SUCH_CURSOR.encode()


def _invalid(call: _Call) -> int:
    return _fail(call, _E_INVALID, RVEINVALID)


def _db_error(call: _Call, db: Database) -> int:
    """Report the database's last error as ``DB: code: name: message`` with KT's RV
    (an invalid operation is RVEINVALID here, unlike :func:`rv_for_kc_error`)."""
    code = db.error()[0]
    rv = RVEINVALID if code == KC_INVALID else rv_for_kc_error(code)
    return _fail(call, db.error_text().encode(), rv)


def _xt(call: _Call) -> int:
    """The ``xt`` parameter as an absolute time (absent = never)."""
    raw = call.params.get(b"xt")
    if raw is None:
        return XTMAX
    return resolve_xt(kt_atoi(raw), int(time.time()))


_FLOAT_RE = re.compile(rb"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan))", re.I)


def _atof(data: bytes) -> float:
    """KC's atof: leading number, garbage ignored, nothing -> 0."""
    m = _FLOAT_RE.match(data)
    if not m:
        return 0.0
    try:
        return float(m.group(1))
    except ValueError:
        return 0.0


def _fmt_float(x: float) -> bytes:
    """C's ``%f``."""
    if math.isnan(x):
        return b"nan" if math.copysign(1, x) > 0 else b"-nan"
    if math.isinf(x):
        return b"inf" if x > 0 else b"-inf"
    text = b"%f" % x
    # KC's own printf keeps at most 127 characters of a number and marks the cut
    return text if len(text) <= 127 else text[:127] + b"*"


def _fmt_int(n: int) -> bytes:
    return str(n).encode()


def _xt_out(call: _Call, xt: int) -> None:
    if xt < XTMAX:
        call.out.append((b"xt", str(xt).encode()))


# ----------------------------------------------------------------------- procedures


def _void(call: _Call) -> int:
    return RVSUCCESS


def _echo(call: _Call) -> int:
    call.out.extend(call.params.items())
    return RVSUCCESS


def _sysinfo() -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    try:
        import resource

        ru = resource.getrusage(resource.RUSAGE_SELF)
        rows += [("sys_ru_utime", f"{ru.ru_utime:.6f}"), ("sys_ru_stime", f"{ru.ru_stime:.6f}")]
        rows.append(("sys_mem_peak", str(ru.ru_maxrss * 1024)))
    except Exception:
        pass
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    rows.append(("sys_mem_size", str(int(line.split()[1]) * 1024)))
                elif line.startswith("VmRSS:"):
                    rows.append(("sys_mem_rss", str(int(line.split()[1]) * 1024)))
        with open("/proc/meminfo") as f:
            for line in f:
                name, _, rest = line.partition(":")
                key = {
                    "MemTotal": "sys_mem_total",
                    "MemFree": "sys_mem_free",
                    "Cached": "sys_mem_cached",
                }.get(name)
                if key:
                    rows.append((key, str(int(rest.split()[0]) * 1024)))
    except OSError:
        pass
    return rows


def _report(call: _Call) -> int:
    server = call.server
    rows: list[tuple[str, str]] = []
    total_count = total_size = 0
    for i, db in enumerate(server.dbs):
        c, s = db.count(), db.size()
        total_count += c
        total_size += s
        rows.append((f"db_{i}", f"count={c} size={s} path={db.path}"))
    st = server.stats
    rows += [
        ("db_total_count", str(total_count)),
        ("db_total_size", str(total_size)),
        ("serv_conn_count", str(server.connection_count())),
        ("serv_task_count", "0"),
        ("serv_thread_count", str(server.config.threads)),
        ("serv_current_time", f"{time.time():.6f}"),
        ("serv_running_term", "%.6f" % (time.time() - server.started_at)),
        ("serv_proc_id", str(os.getpid())),
        ("cnt_set", str(st["set"])),
        ("cnt_set_misses", str(st["set_misses"])),
        ("cnt_remove", str(st["remove"])),
        ("cnt_remove_misses", str(st["remove_misses"])),
        ("cnt_get", str(st["get"])),
        ("cnt_get_misses", str(st["get_misses"])),
        ("cnt_script", str(st["script"])),
        ("cnt_misc", str(st["misc"])),
        ("conf_kt_version", KT_VERSION),
        ("conf_kt_features", "(ktstore)(python)" + ("(lua)" if server.script_path else "")),
        ("conf_kc_version", "ktstore"),
        ("conf_kc_features", "(lmdb)"),
        ("conf_os_name", platform.system() or "unknown"),
    ]
    rows += _sysinfo()
    rows += _replication_rows(server)
    call.out.extend((k.encode(), v.encode()) for k, v in rows)
    return RVSUCCESS


def _play_script(call: _Call) -> int:
    server = call.server
    host = server.script_host()
    if host is None:
        server.script_missing()
        return _fail(call, ERR_SCRIPT_DISABLED.encode(), RVENOIMPL)
    name = call.params.get(b"name")
    if not name or not name.isalnum() or not name.isascii():
        return _invalid(call)
    params = [(k[1:], v) for k, v in call.params.items() if k[:1] == b"_"]
    server.stats["script"] += 1
    try:
        from ktstore.server.scripting.cancel import client_gone  # loaded with the host

        sock = call.session.sock
        cancel = client_gone(sock) if sock is not None else None  # stop if the client left
        with request_scope(server.dbs):  # one Lua call = one commit per file database
            rv, outputs = host.call(name, params, cancel=cancel)
    except Exception:
        server.log("error", f"[SCRIPT]: {name.decode('utf-8', 'replace')}: host failure")
        rv, outputs = RVEINTERNAL, []
    if rv == RVSUCCESS:
        call.out.extend((b"_" + k, v) for k, v in outputs)
        return RVSUCCESS
    if rv == RVENOIMPL:
        return _fail(call, ERR_NO_SUCH_PROCEDURE.encode(), RVENOIMPL)
    rv = rv if rv in (RVEINVALID, RVELOGIC, RVETIMEOUT) else RVEINTERNAL
    return _fail(call, ERR_SCRIPT_FAILED.encode(), rv)


def _tune_replication(call: _Call) -> int:
    slave = call.server.slave
    if slave is None:
        return _fail(call, ERR_RTS_NOT_SET.encode(), RVENOIMPL)
    params = call.params
    host = params.get(b"host", b"").decode("utf-8", "surrogateescape")
    raw = params.get(b"port")
    port = kt_atoi(raw) if raw is not None else 0
    if port < 1:
        port = 1978
    raw = params.get(b"ts")
    ts: int | None = None
    if raw is not None:
        ts = _clock_pure() if raw == b"now" else kt_atoi(raw) & ((1 << 64) - 1)
    raw = params.get(b"iv")
    iv = _atof(raw) if raw is not None else None
    call.server.log(
        "system",
        f"replication setting was modified: host={host} port={port} "
        f"ts={'*' if ts is None else ts} iv={'*' if iv is None or iv < 0 else f'{iv:.6f}'}",
    )
    slave.set_master(host, port, ts, iv)
    return RVSUCCESS


def _clock_pure() -> int:
    return time.time_ns() // 1_000_000 * 1_000_000


def _replication_rows(server: Any) -> list[tuple[str, str]]:
    """ktserver's ``repl_*`` report lines, present while a master is set."""
    slave = server.slave
    if slave is None or not slave.host:
        return []
    rts = slave.rts
    delay = max(_clock_pure() - rts, 0)
    return [
        ("repl_master_host", slave.host),
        ("repl_master_port", str(slave.port)),
        ("repl_timestamp", str(rts)),
        ("repl_interval", f"{slave.riv:.6f}"),
        ("repl_delay", f"{delay / 1e9:.6f}"),
    ]


def _ulog_ts(call: _Call) -> int:
    raw = call.params.get(b"ts")
    if raw is None:
        return (1 << 64) - 1
    if raw == b"now":
        return call.server.ulog.clock_pure()
    return kt_atoi(raw)


def _ulog_list(call: _Call) -> int:
    ulog = call.server.ulog
    if ulog is None:
        return _fail(call, ERR_NO_ULOG.encode(), RVEINVALID)
    for path, size, ts in ulog.list_files():
        call.out.append((path.encode(), f"{size}:{ts}".encode()))
    return RVSUCCESS


def _ulog_remove(call: _Call) -> int:
    ulog = call.server.ulog
    if ulog is None:
        return _fail(call, ERR_NO_ULOG.encode(), RVEINVALID)
    if ulog.remove_files(_ulog_ts(call)):
        return RVSUCCESS
    return _fail(call, b"removing a file failed", RVEINTERNAL)


# ---------------------------------------------------------------- database procedures
#
# Each takes the call and its database (``DB``, resolved by :func:`dispatch`); the
# wrapper answers "no such database" when there is none.

DBProc = Callable[[_Call, Database], int]


def _needing(attr: str, missing: bytes, fn: Callable[[_Call, Any], int]) -> Callable[[_Call], int]:
    """``fn(call, call.<attr>)``, or RVEINVALID with ``missing`` when there is none."""

    def proc(call: _Call) -> int:
        obj = getattr(call, attr)
        if obj is None:
            return _fail(call, missing, RVEINVALID)
        return fn(call, obj)

    return proc


def _db_proc(fn: DBProc) -> Callable[[_Call], int]:
    return _needing("db", _E_NO_DB, fn)


def _status(call: _Call, db: Database) -> int:
    call.server.stats["misc"] += 1
    call.out.extend((k.encode(), v.encode()) for k, v in db.status())
    return RVSUCCESS


def _clear(call: _Call, db: Database) -> int:
    call.server.stats["misc"] += 1
    db.clear()
    return RVSUCCESS


def _synchronize(call: _Call, db: Database) -> int:
    call.server.stats["misc"] += 1
    db.synchronize(b"hard" in call.params)
    if call.params.get(b"command"):
        # ktserver runs <-cmd dir>/<command> after syncing; we run no commands, and
        # answer as ktserver does when the command fails
        return _fail(call, b"DB: 8: logical inconsistency: postprocessing failed", RVEINTERNAL)
    return RVSUCCESS


def _vacuum(call: _Call, db: Database) -> int:
    call.server.stats["misc"] += 1
    raw = call.params.get(b"step")
    db.vacuum(kt_atoi(raw) if raw is not None else 0)
    return RVSUCCESS


def _store(method: str) -> DBProc:
    """set / add / replace / append: ``key``, ``value``, optional ``xt``."""

    def proc(call: _Call, db: Database) -> int:
        p = call.params
        key = p.get(b"key")
        value = p.get(b"value")
        if key is None or value is None:
            return _invalid(call)
        stats = call.server.stats
        stats["set"] += 1
        if getattr(db, method)(key, value, _xt(call)):
            return RVSUCCESS
        stats["set_misses"] += 1
        return _db_error(call, db)

    return proc


def _counter(
    method: str, atof: bool, try_orig: float, set_orig: float, fmt: Callable[[Any], bytes]
) -> DBProc:
    """increment / increment_double: ``key``, ``num``, ``orig`` (a number, ``try`` or
    ``set``), optional ``xt``; the answer is the new value as ``num``."""
    parse: Callable[[bytes], Any] = _atof if atof else kt_atoi
    zero = 0.0 if atof else 0

    def proc(call: _Call, db: Database) -> int:
        p = call.params
        key = p.get(b"key")
        num = p.get(b"num")
        if key is None or num is None:
            return _invalid(call)
        raw = p.get(b"orig")
        if raw is None:
            orig = zero
        elif raw == b"try":
            orig = try_orig
        elif raw == b"set":
            orig = set_orig
        else:
            orig = parse(raw)
        stats = call.server.stats
        stats["set"] += 1
        result = getattr(db, method)(key, parse(num), orig, _xt(call))
        if result is None:
            stats["set_misses"] += 1
            return _db_error(call, db)
        call.out.append((b"num", fmt(result)))
        return RVSUCCESS

    return proc


def _cas(call: _Call, db: Database) -> int:
    p = call.params
    key = p.get(b"key")
    if key is None:
        return _invalid(call)
    call.server.stats["set"] += 1
    if db.cas(key, p.get(b"oval"), p.get(b"nval"), _xt(call)):
        return RVSUCCESS
    call.server.stats["set_misses"] += 1
    return _db_error(call, db)


def _remove(call: _Call, db: Database) -> int:
    key = call.params.get(b"key")
    if key is None:
        return _invalid(call)
    call.server.stats["remove"] += 1
    if db.remove(key):
        return RVSUCCESS
    call.server.stats["remove_misses"] += 1
    return _db_error(call, db)


def _read(method: str, field: bytes, stat: str) -> DBProc:
    """get / check / seize: ``key``; answers ``field`` (the value, or ``vsiz``) and ``xt``."""

    def proc(call: _Call, db: Database) -> int:
        key = call.params.get(b"key")
        if key is None:
            return _invalid(call)
        stats = call.server.stats
        stats[stat] += 1
        rec = getattr(db, method)(key)
        if rec is None:
            stats[stat + "_misses"] += 1
            return _db_error(call, db)
        first = rec[0]
        call.out.append((field, first if type(first) is bytes else str(first).encode()))
        _xt_out(call, rec[1])
        return RVSUCCESS

    return proc


def _bulk_keys(call: _Call) -> list[bytes]:
    return [k[1:] for k in call.params if k[:1] == b"_"]


def _set_bulk(call: _Call, db: Database) -> int:
    xt = _xt(call)
    recs = [(k[1:], v) for k, v in call.params.items() if k[:1] == b"_"]
    n = db.set_bulk(recs, xt)
    call.server.stats["set"] += n
    call.out.append((b"num", str(n).encode()))
    return RVSUCCESS


def _remove_bulk(call: _Call, db: Database) -> int:
    keys = _bulk_keys(call)
    n = db.remove_bulk(keys)
    st = call.server.stats
    st["remove"] += len(keys)
    st["remove_misses"] += len(keys) - n
    call.out.append((b"num", str(n).encode()))
    return RVSUCCESS


def _get_bulk(call: _Call, db: Database) -> int:
    keys = _bulk_keys(call)
    recs = db.get_bulk(keys)
    st = call.server.stats
    st["get"] += len(keys)
    st["get_misses"] += len(keys) - len(recs)
    call.out.extend((b"_" + k, v) for k, v, _ in recs)
    call.out.append((b"num", str(len(recs)).encode()))
    return RVSUCCESS


def _max(call: _Call) -> int:
    raw = call.params.get(b"max")
    if raw is None:
        return -1
    n = kt_atoi(raw)
    return n if n >= 0 else -1


def _match(param: bytes, search: Callable[[_Call, Database, bytes], list[bytes] | None]) -> DBProc:
    """match_prefix / match_regex / match_similar: the keys found as ``_key=index``."""

    def proc(call: _Call, db: Database) -> int:
        arg = call.params.get(param)
        if arg is None:
            return _invalid(call)
        call.server.stats["misc"] += 1
        keys = search(call, db, arg)
        if keys is None:
            return _db_error(call, db)
        call.out.extend((b"_" + k, str(i).encode()) for i, k in enumerate(keys))
        call.out.append((b"num", str(len(keys)).encode()))
        return RVSUCCESS

    return proc


def _similar(call: _Call, db: Database, origin: bytes) -> list[bytes]:
    raw = call.params.get(b"range")
    rng = kt_atoi(raw) if raw is not None else 1
    return db.match_similar(origin, rng if rng >= 0 else 1, b"utf" in call.params, _max(call))


# ------------------------------------------------------------------------- cursors

CurProc = Callable[[_Call, DBCursor], int]


def _cur_proc(fn: CurProc) -> Callable[[_Call], int]:
    return _needing("cur", _E_NO_CURSOR, fn)


def _cur_move(method: str, with_key: bool) -> CurProc:
    """cur_jump / cur_jump_back (optional ``key``), cur_step / cur_step_back, cur_remove."""

    def proc(call: _Call, cur: DBCursor) -> int:
        move = getattr(cur, method)
        if move(call.params.get(b"key")) if with_key else move():
            return RVSUCCESS
        return _db_error(call, cur.db)

    return proc


def _cur_set_value(call: _Call, cur: DBCursor) -> int:
    value = call.params.get(b"value")
    if value is None:
        return _invalid(call)
    if cur.set_value(value, _xt(call), b"step" in call.params):
        return RVSUCCESS
    return _db_error(call, cur.db)


def _cur_read(fields: str, seize: bool = False) -> CurProc:
    """cur_get_key (``k``), cur_get_value (``v``), cur_get (``kvx``), cur_seize (``kvx``)."""

    def proc(call: _Call, cur: DBCursor) -> int:
        rec = cur.seize() if seize else cur.get(b"step" in call.params)
        if rec is None:
            return _db_error(call, cur.db)
        if "k" in fields:
            call.out.append((b"key", rec[0]))
        if "v" in fields:
            call.out.append((b"value", rec[1]))
        if "x" in fields:
            _xt_out(call, rec[2])
        return RVSUCCESS

    return proc


PROCEDURES: dict[bytes, Callable[[_Call], int]] = {
    b"void": _void,
    b"echo": _echo,
    b"report": _report,
    b"play_script": _play_script,
    b"tune_replication": _tune_replication,
    b"ulog_list": _ulog_list,
    b"ulog_remove": _ulog_remove,
    b"status": _db_proc(_status),
    b"clear": _db_proc(_clear),
    b"synchronize": _db_proc(_synchronize),
    b"set": _db_proc(_store("set")),
    b"add": _db_proc(_store("add")),
    b"replace": _db_proc(_store("replace")),
    b"append": _db_proc(_store("append")),
    b"increment": _db_proc(_counter("increment", False, INT64MIN, INT64MAX, _fmt_int)),
    b"increment_double": _db_proc(
        _counter("increment_double", True, -math.inf, math.inf, _fmt_float)
    ),
    b"cas": _db_proc(_cas),
    b"remove": _db_proc(_remove),
    b"get": _db_proc(_read("get", b"value", "get")),
    b"check": _db_proc(_read("check", b"vsiz", "get")),
    b"seize": _db_proc(_read("seize", b"value", "get")),
    b"set_bulk": _db_proc(_set_bulk),
    b"remove_bulk": _db_proc(_remove_bulk),
    b"get_bulk": _db_proc(_get_bulk),
    b"vacuum": _db_proc(_vacuum),
    b"match_prefix": _db_proc(
        _match(b"prefix", lambda call, db, arg: db.match_prefix(arg, _max(call)))
    ),
    b"match_regex": _db_proc(
        _match(b"regex", lambda call, db, arg: db.match_regex(arg, _max(call)))
    ),
    b"match_similar": _db_proc(_match(b"origin", _similar)),
    b"cur_jump": _cur_proc(_cur_move("jump", True)),
    b"cur_jump_back": _cur_proc(_cur_move("jump_back", True)),
    b"cur_step": _cur_proc(_cur_move("step", False)),
    b"cur_step_back": _cur_proc(_cur_move("step_back", False)),
    b"cur_set_value": _cur_proc(_cur_set_value),
    b"cur_remove": _cur_proc(_cur_move("remove", False)),
    b"cur_get_key": _cur_proc(_cur_read("k")),
    b"cur_get_value": _cur_proc(_cur_read("v")),
    b"cur_get": _cur_proc(_cur_read("kvx")),
    b"cur_seize": _cur_proc(_cur_read("kvx", seize=True)),
}


def resolve_db(server: ServerContext, raw: bytes | None) -> int:
    """The index named by a ``DB`` value (digit first = atoi index, else a name); -1 if none."""
    if not raw:
        return 0
    if 48 <= raw[0] <= 57:
        idx = kt_atoi(raw)
    else:
        idx = server.db_index_by_name(raw)
    return idx if 0 <= idx < len(server.dbs) else -1


def dispatch(
    server: ServerContext, session: Session, name: bytes, params: Params
) -> tuple[int, Pairs]:
    """Run procedure ``name`` with ``params``; returns ``(rv, outputs)``.

    ktserver's order: WAIT first (a timeout ends the request), then the DB and
    the cursor are resolved (a new cursor id is created on first use when the DB
    is valid; ``cur_delete`` of an existing id is answered right there), then the
    procedure runs, then SIGNAL is sent even if the procedure failed.
    """
    call = _Call(server, session, params)
    wait = params.get(b"WAIT")
    if wait is not None:
        raw = params.get(b"WAITTIME")
        wsec = _atof(raw) if raw is not None else 0.0
        if wsec <= 0:
            wsec = 30.0
        # As ktserver: NaN times out at once (no clock comparison succeeds) and
        # ``inf`` waits for a signal without limit.  Unlike ktserver, a wait also
        # ends when its client disconnects, so no wait outlives its request.
        if (
            math.isnan(wsec)
            or not server.conditions.wait(wait, wsec, session.alive)
            or server.stopping
        ):
            call.out.append((b"ERROR", ERR_TIMED_OUT.encode()))
            return RVETIMEOUT, call.out
    idx = resolve_db(server, params.get(b"DB"))
    if idx >= 0:
        call.db = server.dbs[idx]
        call.dbidx = idx
    raw_cur = params.get(b"CUR")
    if raw_cur and 48 <= raw_cur[0] <= 57:
        curid = kt_atoi(raw_cur)
        cursors = session.cursors
        cur = cursors.get(curid)
        if cur is None:
            if call.db is not None:
                cur = cursors[curid] = call.db.cursor()
        elif name == b"cur_delete":
            del cursors[curid]
            cur.disable()
            return RVSUCCESS, call.out
        call.cur = cur
    proc = PROCEDURES.get(name)
    if proc is not None:
        try:
            rv = proc(call)
        except Exception as e:  # never let one request kill the connection thread
            server.log("error", f"rpc {name!r} failed: {e!r}")
            call.out = [(b"ERROR", b"internal error")]
            rv = RVEINTERNAL
    else:
        # ktserver formats the name as a C string: it ends at a NUL
        rv = _fail(call, b"not implemented: " + name.partition(b"\0")[0], RVENOIMPL)
    signal = params.get(b"SIGNAL")
    if signal is not None:
        n = server.conditions.signal(signal, b"SIGNALBROAD" in params)
        call.out.append((b"SIGNALED", str(n).encode()))
    return rv, call.out

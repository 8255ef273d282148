"""The TSV-RPC procedures of ktserver (``/rpc/<name>``), over decoded parameters.

:func:`dispatch` takes the procedure name and the input map (``bytes -> bytes``,
already URL/TSV-decoded by the HTTP layer) and returns ``(rv, outputs)`` where
``rv`` is KT's RV code (0 success, 1 not implemented, 2 invalid, 3 logic,
4 timeout, 5 internal) and ``outputs`` a list of ``(key, value)`` pairs.  The
HTTP layer turns the RV into a status and encodes the pairs.

The common parameters (``DB``, ``CUR``, ``WAIT``/``WAITTIME``,
``SIGNAL``/``SIGNALBROAD``) are handled here in ktserver's order: resolve the
database and the cursor, wait, run the procedure, signal.  Error texts are the
real server's (kt-protocol.md §3.4), because clients show them and tests
compare them.
"""

from __future__ import annotations

import math
import os
import platform
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ktstore.protocol.expire import kt_atoi, resolve_xt
from ktstore.protocol.limits import INT64MAX, INT64MIN, XTMAX
from ktstore.server.database import (
    ERR_DUPREC,
    ERR_INVALID,
    ERR_LOGIC,
    ERR_NOIMPL,
    ERR_NOREC,
    Database,
    DBCursor,
)

if TYPE_CHECKING:
    from ktstore.server.core import Server, Session

__all__ = [
    "dispatch",
    "RV_SUCCESS",
    "RV_NOIMPL",
    "RV_INVALID",
    "RV_LOGIC",
    "RV_TIMEOUT",
    "RV_INTERNAL",
]

RV_SUCCESS = 0
RV_NOIMPL = 1
RV_INVALID = 2
RV_LOGIC = 3
RV_TIMEOUT = 4
RV_INTERNAL = 5

KT_VERSION = "0.9.56b (ktstore)"

Pairs = list[tuple[bytes, bytes]]
Params = dict[bytes, bytes]


class _Call:
    """One RPC invocation: the resolved database/cursor and the output list."""

    __slots__ = ("server", "session", "params", "db", "dbidx", "cur", "out")

    def __init__(self, server: Server, session: Session, params: Params) -> None:
        self.server = server
        self.session = session
        self.params = params
        self.db: Database | None = None
        self.dbidx = -1
        self.cur: DBCursor | None = None
        self.out: Pairs = []


def _invalid(call: _Call) -> int:
    call.out.append((b"ERROR", b"invalid parameters"))
    return RV_INVALID


def _no_db(call: _Call) -> int:
    call.out.append((b"ERROR", b"no such database"))
    return RV_INVALID


def _db_error(call: _Call, db: Database) -> int:
    """Report the database's last error as ``DB: code: name: message`` with KT's RV."""
    code = db.error()[0]
    call.out.append((b"ERROR", db.error_text().encode()))
    if code == ERR_NOIMPL:
        return RV_NOIMPL
    if code == ERR_INVALID:
        return RV_INVALID
    if code in (ERR_DUPREC, ERR_NOREC, ERR_LOGIC):
        return RV_LOGIC
    return RV_INTERNAL


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


def _xt_out(call: _Call, xt: int) -> None:
    if xt < XTMAX:
        call.out.append((b"xt", str(xt).encode()))


# ----------------------------------------------------------------------- procedures


def _void(call: _Call) -> int:
    return RV_SUCCESS


def _echo(call: _Call) -> int:
    call.out.extend(call.params.items())
    return RV_SUCCESS


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
        ("conf_kc_features", "(sqlite3)"),
        ("conf_os_name", platform.system() or "unknown"),
    ]
    rows += _sysinfo()
    call.out.extend((k.encode(), v.encode()) for k, v in rows)
    return RV_SUCCESS


def _play_script(call: _Call) -> int:
    server = call.server
    host = server.script_host()
    if host is None:
        call.out.append((b"ERROR", b"the scripting extention is disabled"))
        return RV_NOIMPL
    name = call.params.get(b"name")
    if not name or not name.isalnum() or not name.isascii():
        return _invalid(call)
    params = [(k[1:], v) for k, v in call.params.items() if k[:1] == b"_"]
    server.stats["script"] += 1
    try:
        rv, outputs = host.call(name, params)
    except Exception:
        server.log("error", f"[SCRIPT]: {name.decode('utf-8', 'replace')}: host failure")
        rv, outputs = RV_INTERNAL, []
    if rv == RV_SUCCESS:
        call.out.extend((b"_" + k, v) for k, v in outputs)
        return RV_SUCCESS
    if rv == RV_NOIMPL:
        call.out.append((b"ERROR", b"no such scripting procedure"))
        return RV_NOIMPL
    call.out.append((b"ERROR", b"the scripting procedure failed"))
    return rv if rv in (RV_INVALID, RV_LOGIC, RV_TIMEOUT) else RV_INTERNAL


def _tune_replication(call: _Call) -> int:
    call.out.append((b"ERROR", b"the RTS file is not set"))
    return RV_NOIMPL


def _no_ulog(call: _Call) -> int:
    call.out.append((b"ERROR", b"no update log allows no replication"))
    return RV_INVALID


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
        return _no_ulog(call)
    for path, size, ts in ulog.list_files():
        call.out.append((path.encode(), f"{size}:{ts}".encode()))
    return RV_SUCCESS


def _ulog_remove(call: _Call) -> int:
    ulog = call.server.ulog
    if ulog is None:
        return _no_ulog(call)
    if ulog.remove_files(_ulog_ts(call)):
        return RV_SUCCESS
    call.out.append((b"ERROR", b"removing a file failed"))
    return RV_INTERNAL


def _status(call: _Call) -> int:
    db = call.db
    if db is None:
        return _no_db(call)
    call.server.stats["misc"] += 1
    call.out.extend((k.encode(), v.encode()) for k, v in db.status())
    return RV_SUCCESS


def _clear(call: _Call) -> int:
    db = call.db
    if db is None:
        return _no_db(call)
    call.server.stats["misc"] += 1
    db.clear()
    return RV_SUCCESS


def _synchronize(call: _Call) -> int:
    db = call.db
    if db is None:
        return _no_db(call)
    call.server.stats["misc"] += 1
    db.synchronize(b"hard" in call.params)
    if call.params.get(b"command"):
        # ktserver runs <-cmd dir>/<command> after syncing; we run no commands, and
        # answer as ktserver does when the command fails
        call.out.append((b"ERROR", b"DB: 8: logical inconsistency: postprocessing failed"))
        return RV_INTERNAL
    return RV_SUCCESS


def _make_store(method: str) -> Callable[[_Call], int]:
    def proc(call: _Call) -> int:
        db = call.db
        if db is None:
            return _no_db(call)
        p = call.params
        key = p.get(b"key")
        value = p.get(b"value")
        if key is None or value is None:
            return _invalid(call)
        stats = call.server.stats
        stats["set"] += 1
        if getattr(db, method)(key, value, _xt(call)):
            return RV_SUCCESS
        stats["set_misses"] += 1
        return _db_error(call, db)

    return proc


def _increment(call: _Call) -> int:
    db = call.db
    if db is None:
        return _no_db(call)
    p = call.params
    key = p.get(b"key")
    num = p.get(b"num")
    if key is None or num is None:
        return _invalid(call)
    raw = p.get(b"orig")
    if raw is None:
        orig = 0
    elif raw == b"try":
        orig = INT64MIN
    elif raw == b"set":
        orig = INT64MAX
    else:
        orig = kt_atoi(raw)
    call.server.stats["set"] += 1
    result = db.increment(key, kt_atoi(num), orig, _xt(call))
    if result is None:
        call.server.stats["set_misses"] += 1
        return _db_error(call, db)
    call.out.append((b"num", str(result).encode()))
    return RV_SUCCESS


def _increment_double(call: _Call) -> int:
    db = call.db
    if db is None:
        return _no_db(call)
    p = call.params
    key = p.get(b"key")
    num = p.get(b"num")
    if key is None or num is None:
        return _invalid(call)
    raw = p.get(b"orig")
    if raw is None:
        orig = 0.0
    elif raw == b"try":
        orig = -math.inf
    elif raw == b"set":
        orig = math.inf
    else:
        orig = _atof(raw)
    call.server.stats["set"] += 1
    result = db.increment_double(key, _atof(num), orig, _xt(call))
    if result is None:
        call.server.stats["set_misses"] += 1
        return _db_error(call, db)
    call.out.append((b"num", _fmt_float(result)))
    return RV_SUCCESS


def _cas(call: _Call) -> int:
    db = call.db
    if db is None:
        return _no_db(call)
    p = call.params
    key = p.get(b"key")
    if key is None:
        return _invalid(call)
    call.server.stats["set"] += 1
    if db.cas(key, p.get(b"oval"), p.get(b"nval"), _xt(call)):
        return RV_SUCCESS
    call.server.stats["set_misses"] += 1
    return _db_error(call, db)


def _remove(call: _Call) -> int:
    db = call.db
    if db is None:
        return _no_db(call)
    key = call.params.get(b"key")
    if key is None:
        return _invalid(call)
    call.server.stats["remove"] += 1
    if db.remove(key):
        return RV_SUCCESS
    call.server.stats["remove_misses"] += 1
    return _db_error(call, db)


def _get(call: _Call) -> int:
    db = call.db
    if db is None:
        return _no_db(call)
    key = call.params.get(b"key")
    if key is None:
        return _invalid(call)
    call.server.stats["get"] += 1
    rec = db.get(key)
    if rec is None:
        call.server.stats["get_misses"] += 1
        return _db_error(call, db)
    call.out.append((b"value", rec[0]))
    _xt_out(call, rec[1])
    return RV_SUCCESS


def _check(call: _Call) -> int:
    db = call.db
    if db is None:
        return _no_db(call)
    key = call.params.get(b"key")
    if key is None:
        return _invalid(call)
    call.server.stats["get"] += 1
    rec = db.check(key)
    if rec is None:
        call.server.stats["get_misses"] += 1
        return _db_error(call, db)
    call.out.append((b"vsiz", str(rec[0]).encode()))
    _xt_out(call, rec[1])
    return RV_SUCCESS


def _seize(call: _Call) -> int:
    db = call.db
    if db is None:
        return _no_db(call)
    key = call.params.get(b"key")
    if key is None:
        return _invalid(call)
    call.server.stats["get"] += 1
    rec = db.seize(key)
    if rec is None:
        call.server.stats["get_misses"] += 1
        return _db_error(call, db)
    call.out.append((b"value", rec[0]))
    _xt_out(call, rec[1])
    return RV_SUCCESS


def _bulk_keys(call: _Call) -> list[bytes]:
    return [k[1:] for k in call.params if k[:1] == b"_"]


def _set_bulk(call: _Call) -> int:
    db = call.db
    if db is None:
        return _no_db(call)
    xt = _xt(call)
    recs = [(k[1:], v) for k, v in call.params.items() if k[:1] == b"_"]
    n = db.set_bulk(recs, xt)
    call.server.stats["set"] += n
    call.out.append((b"num", str(n).encode()))
    return RV_SUCCESS


def _remove_bulk(call: _Call) -> int:
    db = call.db
    if db is None:
        return _no_db(call)
    keys = _bulk_keys(call)
    n = db.remove_bulk(keys)
    st = call.server.stats
    st["remove"] += len(keys)
    st["remove_misses"] += len(keys) - n
    call.out.append((b"num", str(n).encode()))
    return RV_SUCCESS


def _get_bulk(call: _Call) -> int:
    db = call.db
    if db is None:
        return _no_db(call)
    keys = _bulk_keys(call)
    recs = db.get_bulk(keys)
    st = call.server.stats
    st["get"] += len(keys)
    st["get_misses"] += len(keys) - len(recs)
    call.out.extend((b"_" + k, v) for k, v, _ in recs)
    call.out.append((b"num", str(len(recs)).encode()))
    return RV_SUCCESS


def _vacuum(call: _Call) -> int:
    db = call.db
    if db is None:
        return _no_db(call)
    call.server.stats["misc"] += 1
    raw = call.params.get(b"step")
    db.vacuum(kt_atoi(raw) if raw is not None else 0)
    return RV_SUCCESS


def _max(call: _Call) -> int:
    raw = call.params.get(b"max")
    if raw is None:
        return -1
    n = kt_atoi(raw)
    return n if n >= 0 else -1


def _matched(call: _Call, keys: list[bytes]) -> int:
    call.out.extend((b"_" + k, str(i).encode()) for i, k in enumerate(keys))
    call.out.append((b"num", str(len(keys)).encode()))
    return RV_SUCCESS


def _match_prefix(call: _Call) -> int:
    db = call.db
    if db is None:
        return _no_db(call)
    prefix = call.params.get(b"prefix")
    if prefix is None:
        return _invalid(call)
    call.server.stats["misc"] += 1
    return _matched(call, db.match_prefix(prefix, _max(call)))


def _match_regex(call: _Call) -> int:
    db = call.db
    if db is None:
        return _no_db(call)
    regex = call.params.get(b"regex")
    if regex is None:
        return _invalid(call)
    call.server.stats["misc"] += 1
    keys = db.match_regex(regex, _max(call))
    if keys is None:
        return _db_error(call, db)
    return _matched(call, keys)


def _match_similar(call: _Call) -> int:
    db = call.db
    if db is None:
        return _no_db(call)
    p = call.params
    origin = p.get(b"origin")
    if origin is None:
        return _invalid(call)
    raw = p.get(b"range")
    rng = kt_atoi(raw) if raw is not None else 1
    if rng < 0:
        rng = 1
    call.server.stats["misc"] += 1
    return _matched(call, db.match_similar(origin, rng, b"utf" in p, _max(call)))


# ------------------------------------------------------------------------- cursors


def _no_cursor(call: _Call) -> int:
    call.out.append((b"ERROR", b"no such cursor"))
    return RV_INVALID


def _cur_proc(fn: Callable[[_Call, DBCursor], int]) -> Callable[[_Call], int]:
    def proc(call: _Call) -> int:
        cur = call.cur
        if cur is None:
            return _no_cursor(call)
        return fn(call, cur)

    return proc


def _cur_jump(call: _Call, cur: DBCursor) -> int:
    if cur.jump(call.params.get(b"key")):
        return RV_SUCCESS
    return _db_error(call, cur.db)


def _cur_jump_back(call: _Call, cur: DBCursor) -> int:
    if cur.jump_back(call.params.get(b"key")):
        return RV_SUCCESS
    return _db_error(call, cur.db)


def _cur_step(call: _Call, cur: DBCursor) -> int:
    if cur.step():
        return RV_SUCCESS
    return _db_error(call, cur.db)


def _cur_step_back(call: _Call, cur: DBCursor) -> int:
    if cur.step_back():
        return RV_SUCCESS
    return _db_error(call, cur.db)


def _cur_set_value(call: _Call, cur: DBCursor) -> int:
    value = call.params.get(b"value")
    if value is None:
        return _invalid(call)
    if cur.set_value(value, _xt(call), b"step" in call.params):
        return RV_SUCCESS
    return _db_error(call, cur.db)


def _cur_remove(call: _Call, cur: DBCursor) -> int:
    if cur.remove():
        return RV_SUCCESS
    return _db_error(call, cur.db)


def _cur_get_key(call: _Call, cur: DBCursor) -> int:
    rec = cur.get(b"step" in call.params)
    if rec is None:
        return _db_error(call, cur.db)
    call.out.append((b"key", rec[0]))
    return RV_SUCCESS


def _cur_get_value(call: _Call, cur: DBCursor) -> int:
    rec = cur.get(b"step" in call.params)
    if rec is None:
        return _db_error(call, cur.db)
    call.out.append((b"value", rec[1]))
    return RV_SUCCESS


def _cur_get(call: _Call, cur: DBCursor) -> int:
    rec = cur.get(b"step" in call.params)
    if rec is None:
        return _db_error(call, cur.db)
    call.out.append((b"key", rec[0]))
    call.out.append((b"value", rec[1]))
    _xt_out(call, rec[2])
    return RV_SUCCESS


def _cur_seize(call: _Call, cur: DBCursor) -> int:
    rec = cur.seize()
    if rec is None:
        return _db_error(call, cur.db)
    call.out.append((b"key", rec[0]))
    call.out.append((b"value", rec[1]))
    _xt_out(call, rec[2])
    return RV_SUCCESS


PROCEDURES: dict[bytes, Callable[[_Call], int]] = {
    b"void": _void,
    b"echo": _echo,
    b"report": _report,
    b"play_script": _play_script,
    b"tune_replication": _tune_replication,
    b"ulog_list": _ulog_list,
    b"ulog_remove": _ulog_remove,
    b"status": _status,
    b"clear": _clear,
    b"synchronize": _synchronize,
    b"set": _make_store("set"),
    b"add": _make_store("add"),
    b"replace": _make_store("replace"),
    b"append": _make_store("append"),
    b"increment": _increment,
    b"increment_double": _increment_double,
    b"cas": _cas,
    b"remove": _remove,
    b"get": _get,
    b"check": _check,
    b"seize": _seize,
    b"set_bulk": _set_bulk,
    b"remove_bulk": _remove_bulk,
    b"get_bulk": _get_bulk,
    b"vacuum": _vacuum,
    b"match_prefix": _match_prefix,
    b"match_regex": _match_regex,
    b"match_similar": _match_similar,
    b"cur_jump": _cur_proc(_cur_jump),
    b"cur_jump_back": _cur_proc(_cur_jump_back),
    b"cur_step": _cur_proc(_cur_step),
    b"cur_step_back": _cur_proc(_cur_step_back),
    b"cur_set_value": _cur_proc(_cur_set_value),
    b"cur_remove": _cur_proc(_cur_remove),
    b"cur_get_key": _cur_proc(_cur_get_key),
    b"cur_get_value": _cur_proc(_cur_get_value),
    b"cur_get": _cur_proc(_cur_get),
    b"cur_seize": _cur_proc(_cur_seize),
}


def resolve_db(server: Server, raw: bytes | None) -> int:
    """The index named by a ``DB`` value (digit first = atoi index, else a name); -1 if none."""
    if not raw:
        return 0
    if 48 <= raw[0] <= 57:
        idx = kt_atoi(raw)
    else:
        idx = server.db_index_by_name(raw)
    return idx if 0 <= idx < len(server.dbs) else -1


def dispatch(server: Server, session: Session, name: bytes, params: Params) -> tuple[int, Pairs]:
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
        if not server.conditions.wait(wait, wsec) or server.stopping:
            call.out.append((b"ERROR", b"the condition timed out"))
            return RV_TIMEOUT, call.out
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
            return RV_SUCCESS, call.out
        call.cur = cur
    proc = PROCEDURES.get(name)
    if proc is not None:
        try:
            rv = proc(call)
        except Exception as e:  # never let one request kill the connection thread
            server.log("error", f"rpc {name!r} failed: {e!r}")
            call.out = [(b"ERROR", b"internal error")]
            rv = RV_INTERNAL
    else:
        call.out.append((b"ERROR", b"not implemented: " + name))
        rv = RV_NOIMPL
    signal = params.get(b"SIGNAL")
    if signal is not None:
        n = server.conditions.signal(signal, b"SIGNALBROAD" in params)
        call.out.append((b"SIGNALED", str(n).encode()))
    return rv, call.out

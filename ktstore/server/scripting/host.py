"""ScriptHost: ktserver's Lua scripting extension for ktstore-server.

ktserver keeps one Lua state per worker thread.  Our server has no fixed
worker pool, so the host keeps a pool of Lua 5.1 states (lupa runtimes), each
loaded with the script, created lazily and reused; a call checks one out for
its whole duration, so two concurrent calls never share a state (and, like on
ktserver, Lua globals are per state, not shared).

Contract with the server::

    host = ScriptHost(script_path, databases, names, allow_unsafe=False,
                      log=None, timeout=30.0, max_memory=None,
                      total_memory=DEFAULT_TOTAL_MEMORY, runtime=None)
    result = host.call(name, params, cancel=None)   # thread-safe
    rv, outputs = result                 # a CallResult is a 2-tuple
    result.missing                       # True: no such procedure (rv == RV_NOIMPL)
    result.error                         # the Lua error text when rv == RV_INTERNAL
    host.reload()                        # SIGUSR1: new states read the file again
    host.memory_used()                   # bytes held by all states
    host.close()

``rv`` is what the procedure returned, converted like ``lua_tointeger``
(nil = 0 = success; other numbers pass through), or :data:`RV_NOIMPL` when
the procedure does not exist, :data:`RV_INTERNAL` when it raised (logged as
``[SCRIPT]: name: message`` at kind ``error``), :data:`RV_TIMEOUT` when it
ran past ``timeout`` seconds or ``cancel()`` said to stop.  A procedure can
itself return 1 (RVENOIMPL): only ``result.missing`` says "no such scripting
procedure" (HTTP 501 with that text) rather than "the scripting procedure
failed".  ``outputs`` is sorted by key (ktserver collects them in a
``std::map``); it holds what the procedure put in its outmap whatever it
returned (the server shows it only on success) and is empty after an error.

Limits that ktserver does not have but a shared Python process needs:

* time: a call that runs longer than ``timeout`` seconds (``None``: no limit)
  is interrupted, even inside ``pcall`` loops, coroutines, visitors and the C
  functions that could run long (``budget.lua``), and its state is discarded.
  ``cancel`` (the server's "has the client gone?") ends a call the same way.
* memory: all states together hold at most ``total_memory`` bytes (the
  server's ``-scr-mem``; ``None``: no bound), one state at most
  ``max_memory`` (default: the total).  Idle states keep what they hold; the
  rest is shared among the running calls, and idle states are evicted when
  running calls are short of memory.  A call that runs out fails with
  RV_INTERNAL ("not enough memory") and its state is discarded.
* discarded states (time-out, memory error, reload, eviction, close) are
  freed at once: the reference cycle between a state and its primitives is
  cut, so the memory does not wait for Python's cyclic collector.

``runtime`` picks the Lua engine (see :mod:`ktstore.server.scripting.engine`:
LuaJIT's interpreter when present, else Lua 5.1).

``log(kind, message)`` receives ``kind`` in ``debug info system error`` and
the whole message (``[SCRIPT]: ...``); it defaults to the ``logging`` logger
``ktstore.server.script``.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any

from ktstore.protocol.rpc import RVEINTERNAL as RV_INTERNAL
from ktstore.protocol.rpc import RVEINVALID as RV_INVALID
from ktstore.protocol.rpc import RVELOGIC as RV_LOGIC
from ktstore.protocol.rpc import RVENOIMPL as RV_NOIMPL
from ktstore.protocol.rpc import RVETIMEOUT as RV_TIMEOUT
from ktstore.protocol.rpc import RVSUCCESS as RV_SUCCESS
from ktstore.server.database import Database
from ktstore.server.scripting import engine
from ktstore.server.scripting.ktmodule import KT_VERSION, CallState, Primitives

__all__ = [
    "DEFAULT_TOTAL_MEMORY",
    "ScriptHost",
    "CallResult",
    "RV_SUCCESS",
    "RV_NOIMPL",
    "RV_INVALID",
    "RV_LOGIC",
    "RV_TIMEOUT",
    "RV_INTERNAL",
]


_LOG = logging.getLogger("ktstore.server.script")
_PY_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "system": logging.WARNING,
    "error": logging.ERROR,
}


def _default_log(kind: str, message: str) -> None:
    _LOG.log(_PY_LEVELS.get(kind, logging.INFO), message)


def _lua_source(name: str) -> bytes:
    return resources.files("ktstore.server.scripting").joinpath(name).read_bytes()


_SANDBOX = _lua_source("sandbox.lua")
_PRELUDE = _lua_source("prelude.lua")
_BUDGET = _lua_source("budget.lua")
_PATTERNS = _lua_source("patterns.lua")


#: A state holding more than this is collected before it goes back to the pool.
_COLLECT_ABOVE = 8 << 20
#: Below twice this much free memory, a starting call makes all limits be recomputed.
_GRANT_MIN = 16 << 20


def _free(states: list[_Runtime]) -> None:
    for rt in states:
        rt.close()


def _deny(*_args: Any) -> Any:
    """Attribute access on Python objects from Lua is never allowed."""
    raise AttributeError("access to Python objects is not allowed")


class CallResult(tuple):  # type: ignore[type-arg]
    """``(rv, outputs)`` plus why it failed: ``missing`` and ``error``."""

    missing: bool
    error: str | None

    def __new__(
        cls,
        rv: int,
        outputs: list[tuple[bytes, bytes]],
        missing: bool = False,
        error: str | None = None,
    ) -> CallResult:
        self = super().__new__(cls, (rv, outputs))
        self.missing = missing
        self.error = error
        return self

    @property
    def rv(self) -> int:
        return self[0]  # type: ignore[no-any-return]

    @property
    def outputs(self) -> list[tuple[bytes, bytes]]:
        return self[1]  # type: ignore[no-any-return]


def _outstr(v: Any) -> bytes | None:
    """ktserver's conversion of an outmap key or value (StringBuilder)."""
    if isinstance(v, bytes):
        return v
    if isinstance(v, bool):
        return b"true" if v else b"false"
    if isinstance(v, int):
        return b"%d" % v
    if isinstance(v, float):
        if math.isfinite(v) and v == math.floor(v):
            return b"%d" % int(v)
        return b"%f" % v
    return None


def _tointeger(v: Any) -> int:
    """``lua_tointeger`` of the procedure's first result."""
    if isinstance(v, tuple):
        v = v[0] if v else None
    if isinstance(v, bool) or v is None:
        return 0
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v) if math.isfinite(v) else 0
    if isinstance(v, bytes):
        try:
            f = float(v.strip())
        except ValueError:
            try:
                return int(v.strip(), 16) if v.strip().lower().startswith(b"0x") else 0
            except ValueError:
                return 0
        return int(f) if math.isfinite(f) else 0
    return 0


class _Runtime:
    """One Lua state with the sandbox, the kt module and the script loaded."""

    def __init__(self, host: ScriptHost, thid: int, source: bytes, generation: int) -> None:
        self.generation = generation
        self.thid = thid
        #: memory in use when the state last went idle (the pool's accounting)
        self.idle_used = 0
        lua = host.lua_module.LuaRuntime(
            encoding=None,
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            attribute_handlers=(_deny, _deny),
            overflow_handler=float,
            max_memory=host.state_memory or 0,  # 0: no limit, but a limit can be set later
        )
        self.lua = lua
        #: the most this state may ever hold, counting lupa's own base usage
        self.cap: int | None = lua.get_max_memory(total=True) if host.state_memory else None
        self.prims = Primitives(lua, host.databases, host.names, host._log, host.allow_unsafe)
        self.prims.max_output = host.state_memory
        self.state: CallState = self.prims.state
        try:
            self._load(host, thid, source)
        except BaseException:
            self.close()
            raise

    def _load(self, host: ScriptHost, thid: int, source: bytes) -> None:
        lua = self.lua
        h = self.prims.table()
        loader = lua.eval("loadstring")
        # LuaJIT: compiled code never runs the time budget's hook.  With a time
        # limit and a safe script, every function is barred from the compiler
        # (jit.off(f, true) on each chunk before it runs) except the dump codecs,
        # whose loops are bounded by their input and charged to the budget; an
        # unsafe script can load unbarred code, so there the compiler is off.
        jit = lua.globals()[b"jit"] if host.timeout is not None else None
        selective = jit is not None and not host.allow_unsafe
        nojit = None
        if selective:
            nojit = lua.execute("local off = jit.off; return function(f) off(f, true) end")

        def chunk(source: bytes, name: bytes) -> Any:
            fn = loader(source, name)
            if nojit is not None and not isinstance(fn, tuple):
                nojit(fn)
            return fn

        prelude = chunk(_PRELUDE, b"=ktstore-prelude")
        conf = lua.table_from({b"version": KT_VERSION.encode(), b"thid": thid})
        # the prelude must see the untouched libraries it captures; run it first
        kt_module, timeout_token = prelude(h, conf)
        if selective:
            jit_on = jit[b"on"]  # type: ignore[index]
            for name in (b"mapload", b"mapdump", b"arrayload", b"arraydump"):
                jit_on(kt_module[name])
        lua.globals()[b"__kyototycoon__"] = kt_module
        patterns = chunk(_PATTERNS, b"=ktstore-patterns")()
        max_string = host.state_memory or (1 << 62)
        budget = chunk(_BUDGET, b"=ktstore-budget")
        self.invoke = budget(
            h[b"expired"], timeout_token, host.timeout is not None, patterns, max_string
        )
        jit_mode = None if jit is None else ("selective" if selective else "off")
        chunk(_SANDBOX, b"=ktstore-sandbox")(host.allow_unsafe, jit_mode, nojit)
        self.load_error: str | None = None
        chunk_name = b"@" + os.path.basename(host.script_path).encode("utf-8", "surrogateescape")
        script = chunk(source, chunk_name)
        if isinstance(script, tuple):  # (nil, message): a syntax error
            self.load_error = _text(script[1]) if len(script) > 1 else "syntax error"
            return
        try:
            self._run(host.timeout, script)
        except Exception as e:  # noqa: BLE001 - any failure is reported as the script's
            self.load_error = _error_text(host.lua_module, e)

    def used(self) -> int:
        """Bytes this state holds now."""
        return int(self.lua.get_memory_used(total=True) or 0)

    def close(self) -> None:
        """Free the Lua state now rather than at Python's next cyclic collection.

        The state's registry holds the primitives' bound methods, which hold
        the runtime: a reference cycle.  Cutting it here lets the last
        reference free the whole state (lua_close) at once.
        """
        prims = self.__dict__.pop("prims", None)
        if prims is not None:
            prims.lua = None
            prims.dbs = []
        self.__dict__.pop("invoke", None)
        self.__dict__.pop("lua", None)

    def _run(
        self, timeout: float | None, fn: Any, *args: Any, cancel: Callable[[], bool] | None = None
    ) -> Any:
        st = self.state
        st.timed_out = False
        st.cancel = cancel
        st.deadline = None if timeout is None else time.monotonic() + timeout
        limit = math.inf if st.deadline is None else st.deadline
        try:
            return self.invoke(limit, cancel is not None, fn, *args)
        finally:
            st.deadline = None
            st.cancel = None
            for db in reversed(st.transactions):
                try:
                    db.end_transaction(False)
                except Exception:  # pragma: no cover - never leave the lock held
                    pass
            st.transactions.clear()


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def _error_text(lua_module: Any, e: BaseException) -> str:
    if isinstance(e, (lua_module.LuaMemoryError, MemoryError)):
        return "not enough memory"
    if isinstance(e, lua_module.LuaError):
        arg = e.args[0] if e.args else ""
        return _text(arg)
    return f"{type(e).__name__}: {e}"


#: Default bound on the memory of all Lua states of one host together.
DEFAULT_TOTAL_MEMORY = 1 << 30


class ScriptHost:
    """The Lua host of one server (see the module docstring for the contract)."""

    def __init__(
        self,
        script_path: str,
        databases: list[Database],
        names: list[str],
        allow_unsafe: bool = False,
        *,
        log: Callable[[str, str], None] | None = None,
        timeout: float | None = 30.0,
        max_memory: int | None = None,
        total_memory: int | None = DEFAULT_TOTAL_MEMORY,
        runtime: str | None = None,
    ) -> None:
        self.lua_module = engine.load(runtime)
        self.script_path = str(script_path)
        self.databases: list[Database] = list(databases)
        self.names: list[str] = list(names)
        self.allow_unsafe = allow_unsafe
        self.timeout = timeout
        self.max_memory = max_memory
        self.total_memory = total_memory
        #: the limit of one state: max_memory, never more than the total
        self.state_memory: int | None = min(
            (m for m in (max_memory, total_memory) if m), default=None
        )
        self._log = log or _default_log
        self._lock = threading.Lock()
        self._idle: list[_Runtime] = []
        self._idle_used = 0
        self._running: dict[_Runtime, int] = {}  # running state -> its memory limit
        self._granted = 0  # the sum of those limits
        self._next_thid = 0
        self._generation = 0
        self._closed = False
        self._source = self._read()
        # load one state now so a broken script is reported at start-up
        rt = self._new_runtime()
        self._checkin(rt)

    # --------------------------------------------------------------- states

    def _read(self) -> bytes:
        with open(self.script_path, "rb") as f:
            return f.read()

    def _new_runtime(self) -> _Runtime:
        with self._lock:
            thid = self._next_thid
            self._next_thid += 1
            source, generation = self._source, self._generation
        rt = _Runtime(self, thid, source, generation)
        if rt.load_error is not None:
            self._log("error", f"[SCRIPT]: (init): {rt.load_error}")
        return rt

    def _checkout(self) -> _Runtime:
        with self._lock:
            if self._closed:
                raise RuntimeError("the script host is closed")
            rt = self._idle.pop() if self._idle else None
            if rt is not None:
                self._idle_used -= rt.idle_used
                evicted = self._start(rt)
        if rt is None:
            rt = self._new_runtime()
            with self._lock:
                evicted = self._start(rt)
        _free(evicted)
        return rt

    def _checkin(self, rt: _Runtime) -> None:
        """Return a state to the pool (or free it when it is stale).

        A state that grew large is collected first: what the call left as
        garbage would otherwise count against the total while it sits idle.
        """
        used = rt.used()
        if used > _COLLECT_ABOVE:
            rt.lua.gccollect()
            used = rt.used()
        with self._lock:
            self._granted -= self._running.pop(rt, 0)
            if not self._closed and rt.generation == self._generation:
                rt.idle_used = used
                self._idle.append(rt)
                self._idle_used += rt.idle_used
                return
        rt.close()

    def _discard(self, rt: _Runtime) -> None:
        """Drop a state that must not be reused, freeing its memory now."""
        with self._lock:
            self._granted -= self._running.pop(rt, 0)
        rt.close()

    # The memory bound (with the lock held).  Invariant: what idle states hold
    # plus the limits of the running states never exceeds the total, and a
    # running state's limit is never below what it holds.  A call starting
    # while plenty is free gets its usage plus half of the free memory (all of
    # it when it runs alone), in O(1); otherwise every running state's limit
    # is recomputed (_rebalance).

    def _start(self, rt: _Runtime) -> list[_Runtime]:
        total = self.total_memory
        if not total:
            self._running[rt] = 0
            return []
        used = rt.used()
        free = total - self._idle_used - self._granted - used
        if not self._running and (free >= total // 2 or not self._idle):
            self._grant(rt, used + max(free, 0))
            return []
        if self._running and free >= 2 * min(_GRANT_MIN, total // 16):
            self._grant(rt, used + free // 2)
            return []
        return self._rebalance(rt, used)

    def _grant(self, rt: _Runtime, limit: int) -> None:
        if rt.cap is not None:
            limit = min(limit, rt.cap)
        rt.lua.set_max_memory(max(limit, 1), total=True)
        self._running[rt] = limit
        self._granted += limit

    def _rebalance(self, starting: _Runtime, used: int) -> list[_Runtime]:
        """Share the memory the idle states leave evenly among the running states
        and ``starting`` (which holds ``used`` bytes).

        Each gets an equal part as its limit, or what it already holds when that
        is more (water-filling, smallest users first).  A running state may grow
        while its limit is lowered, so after the new limit is set its usage is
        read again and it keeps whichever is larger; ``starting`` (not running
        yet) gets what the others leave.  While less than half the total is
        free, idle states are evicted (largest first); the caller frees them
        after releasing the lock.
        """
        total = self.total_memory or 0
        running = [(rt, rt.used()) for rt in self._running]
        free = total - self._idle_used - used - sum(u for _, u in running)
        evicted: list[_Runtime] = []
        if free < total // 2 and self._idle:
            self._idle.sort(key=lambda r: r.idle_used)
            while free < total // 2 and self._idle:
                victim = self._idle.pop()
                self._idle_used -= victim.idle_used
                free += victim.idle_used
                evicted.append(victim)
        everyone = sorted([*running, (starting, used)], key=lambda item: item[1])
        remaining = total - self._idle_used
        targets: dict[_Runtime, int] = {}
        for left, (rt, u) in zip(range(len(everyone), 0, -1), everyone, strict=True):
            targets[rt] = max(u, remaining // left)
            remaining -= targets[rt]
        self._granted = 0
        for rt, _ in running:
            target = targets[rt]
            if rt.cap is not None:
                target = min(target, rt.cap)
            rt.lua.set_max_memory(max(target, 1), total=True)
            committed = max(target, rt.used())
            self._running[rt] = committed
            self._granted += committed
        room = total - self._idle_used - self._granted
        self._grant(starting, max(used, min(targets[starting], room)))
        return evicted

    @property
    def pool_size(self) -> int:
        """Idle Lua states kept for reuse (for tests and status)."""
        with self._lock:
            return len(self._idle)

    def memory_used(self) -> int:
        """Bytes held by all Lua states of this host, idle and running."""
        with self._lock:
            return self._idle_used + sum(rt.used() for rt in self._running)

    def reload(self) -> bool:
        """Read the script again; calls from now on run in fresh states.

        Returns ``False`` (and keeps the old script) when the file cannot be read.
        """
        try:
            source = self._read()
        except OSError as e:
            self._log("error", f"[SCRIPT]: reloading {self.script_path} failed: {e}")
            return False
        with self._lock:
            self._source = source
            self._generation += 1
            stale, self._idle, self._idle_used = self._idle, [], 0
        _free(stale)
        return True

    def close(self) -> None:
        """Drop every Lua state; later calls raise ``RuntimeError``."""
        with self._lock:
            self._closed = True
            stale, self._idle, self._idle_used = self._idle, [], 0
        _free(stale)

    # ---------------------------------------------------------------- calls

    def has_procedure(self, name: bytes) -> bool:
        """Whether the script defines a global function ``name`` (in a pooled state)."""
        rt = self._checkout()
        try:
            return self.lua_module.lua_type(rt.lua.globals()[name]) == "function"
        finally:
            self._checkin(rt)

    def call(
        self,
        name: bytes,
        params: Iterable[tuple[bytes, bytes]],
        cancel: Callable[[], bool] | None = None,
    ) -> CallResult:
        """Run the global function ``name(inmap, outmap)``; see the module docstring.

        ``cancel``, when given, is asked about every millisecond of Lua work
        whether the call should end (the server passes "the client has gone");
        a cancelled call ends like a timed-out one.
        """
        if isinstance(name, str):
            name = name.encode("utf-8")
        name = bytes(name).split(b"\0", 1)[0]  # ktserver looks the name up as a C string
        rt = self._checkout()
        keep = True
        try:
            lua = rt.lua
            fn = lua.globals()[name]
            if self.lua_module.lua_type(fn) != "function":
                return CallResult(RV_NOIMPL, [], missing=True)
            inmap = lua.table_from({bytes(k): bytes(v) for k, v in params})
            outmap = lua.table()
            try:
                ret = rt._run(self.timeout, fn, inmap, outmap, cancel=cancel)
            except Exception as e:  # noqa: BLE001 - a script failure must not kill the server
                if rt.state.timed_out:
                    keep = False  # the state was interrupted anywhere: do not reuse it
                    if rt.state.cancelled:
                        msg = "the procedure was cancelled: the client has gone"
                    else:
                        msg = "the procedure ran past the time limit"
                    self._log("error", f"[SCRIPT]: {_text(name)}: {msg}")
                    return CallResult(RV_TIMEOUT, [], error=msg)
                if isinstance(e, (self.lua_module.LuaMemoryError, MemoryError)):
                    keep = False  # an allocation failed somewhere: start afresh
                msg = _error_text(self.lua_module, e)
                self._log("error", f"[SCRIPT]: {_text(name)}: {msg}")
                return CallResult(RV_INTERNAL, [], error=msg)
            rv = _tointeger(ret)
            outputs = self._outputs(outmap)
            return CallResult(rv, outputs)
        finally:
            inmap = outmap = fn = lua = None  # the state is freed with its last reference
            if keep:
                self._checkin(rt)
            else:
                self._discard(rt)

    @staticmethod
    def _outputs(outmap: Any) -> list[tuple[bytes, bytes]]:
        out: dict[bytes, bytes] = {}
        for k, v in outmap.items():
            ks, vs = _outstr(k), _outstr(v)
            if ks is not None and vs is not None:
                out[ks] = vs
        return sorted(out.items())

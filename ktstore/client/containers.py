"""Container types stored in the database and driven by ``lua/kt.lua``.

``Hash``, ``List`` and ``Set`` keep a whole container in one record (KT's Lua
``mapdump``/``arraydump`` formats, so :meth:`Hash.get_raw`/``set_raw`` and the client's
``serialize_dict``/``serialize_list`` interoperate) and every operation is one atomic
read-modify-write on the server: O(n) in the container's size, like ukt's.  A record's
expire time survives the update.

``Queue`` and ``Schedule`` keep one index record plus one record per item, so popping is
cheap and two clients popping the same queue never receive the same item (see the
"Queue: score groups" and "Sorted index" sections of kt.lua).  :meth:`Queue.bpop` blocks on the server's
``WAIT``/``SIGNAL`` conditions instead of polling.

Values go through the client's serializer (``encode_values``/``decode_values`` on the
containers that have them); hash fields are keys (``str``/``bytes``), not values.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ktstore.client.command import Command, Program
from ktstore.client.interface import ClientInterface
from ktstore.client.params import integer_arg, number_arg, script_value
from ktstore.client.scriptcheck import ensure_script
from ktstore.errors import InvalidArgument, ScriptError
from ktstore.protocol import dumps as _dumps_module
from ktstore.protocol.expire import to_wire_xt

__all__ = ["Hash", "List", "Queue", "Schedule", "Set", "SignalQueue"]


def _dumps() -> Any:
    return _dumps_module


def _integer(value: Any, what: str) -> bytes:
    return integer_arg(value, what)


def _number(value: Any, what: str) -> bytes:
    return number_arg(value, what)


_raw = script_value


def _field_int(name: bytes) -> Any:
    """A finish: the integer output ``name``."""
    return lambda out: int(out[name])


def _is_one(out: dict[bytes, bytes]) -> bool:
    return out[b"num"] == b"1"


def _value_or_none(dec: Any) -> Any:
    """A finish: the ``value`` output decoded, or ``None`` when there is none."""

    def finish(out: dict[bytes, bytes]) -> Any:
        value = out.get(b"value")
        return None if value is None else dec(value)

    return finish


def _index_error(exc: BaseException) -> Any:
    """A ScriptError 450 of a List procedure means "index out of range"."""
    if isinstance(exc, ScriptError) and exc.status == 450:
        raise IndexError(exc.message) from None
    raise exc


class _Keyed:
    """Shared plumbing of every container: its client, key and database, and the call
    of a kt.lua procedure on it (one binary ``PLAY_SCRIPT`` round trip).

    A container works with any client that offers the documented client interface
    (docs/architecture.md): with the sync client a method returns its value, with
    the asyncio client a coroutine, in a pipeline it queues the call.  Methods
    written as programs (several round trips) cannot be pipelined."""

    def __init__(self, kt: ClientInterface, key: Any, db: int | None = None) -> None:
        self.kt = kt
        self.key = key
        self.db = db

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key!r} db={self.db}>"

    @property
    def _bkey(self) -> bytes:
        return self.kt.encode_key(self.key)

    def _command(self, proc: str, *params: tuple[bytes, bytes]) -> Command:
        return self.kt.lua_command(proc, [(b"key", self._bkey), *params], self.db)

    def _run(self, runnable: Command | Program) -> Any:
        """Run a command or program of this container; the client's first one is
        preceded by the check that the server runs ktstore's kt.lua
        (:mod:`ktstore.client.scriptcheck`)."""
        return self.kt.execute_command(ensure_script(self.kt, runnable, type(self).__name__))

    def _call(self, proc: str, *params: tuple[bytes, bytes], then: Any = None) -> Any:
        """Run ``proc`` on this container; the value is ``then(outputs)``."""
        cmd = self._command(proc, *params)
        return self._run(cmd if then is None else cmd.then(then))

    def _items(self, out: dict[bytes, bytes]) -> list[Any]:
        """The values of a ``data`` output (an arraydump), deserialized."""
        data = out.get(b"data")
        if not data:
            return []
        dec = self.kt.decode_value
        return [dec(v) for v in _dumps().arrayload(data)]

    def _load_data(self, out: dict[bytes, bytes]) -> Any:
        return self._load(out.get(b"data"))  # type: ignore[attr-defined]


class _Container(_Keyed):
    """A container kept in one record, with optional (de)serialization of values."""

    def __init__(
        self,
        kt: Any,
        key: Any,
        encode_values: bool = True,
        decode_values: bool = True,
        db: int | None = None,
    ) -> None:
        super().__init__(kt, key, db)
        self.encode_values = encode_values
        self.decode_values = decode_values

    def _enc(self, value: Any) -> bytes:
        return self.kt.encode_value(value) if self.encode_values else _raw(value)

    def _dec(self, data: bytes) -> Any:
        return self.kt.decode_value(data) if self.decode_values else data

    def _other_key(self, other: Any) -> bytes:
        if isinstance(other, _Container):
            return other._bkey
        return self.kt.encode_key(other)

    def clear(self) -> int | None:
        """Remove the whole container (its record)."""
        return self.kt.remove(self.key, db=self.db)


# ----------------------------------------------------------------------------------
# Hash
# ----------------------------------------------------------------------------------


class Hash(_Container):
    """A dict stored in one record (a ``mapdump`` of field -> serialized value)."""

    def _fields(self, keys: Iterable[Any]) -> bytes:
        ek = self.kt.encode_key
        return _dumps().arraydump([ek(k) for k in keys])

    def _load(self, data: bytes | None) -> dict[Any, Any]:
        if not data:
            return {}
        dk = self.kt.decode_key
        return {dk(k): self._dec(v) for k, v in _dumps().mapload(data)}

    def set_bulk(self, __data: Mapping[Any, Any] | None = None, **kwargs: Any) -> int:
        """Set several fields; return how many were written."""
        if __data is not None:
            kwargs = {**dict(__data), **kwargs}
        ek = self.kt.encode_key
        data = _dumps().mapdump([(ek(k), self._enc(v)) for k, v in kwargs.items()])
        return self._call("hmset", (b"data", data), then=_field_int(b"num"))

    update = set_bulk

    def get_bulk(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The requested fields that exist, as a dict."""
        return self._call("hmget", (b"fields", self._fields(keys)), then=self._load_data)

    def remove_bulk(self, keys: Iterable[Any]) -> int:
        """Remove several fields; return how many existed."""
        return self._call("hmdel", (b"fields", self._fields(keys)), then=_field_int(b"num"))

    def get_all(self) -> dict[Any, Any]:
        """The whole hash (an empty dict when it does not exist)."""
        return self._call("hgetall", then=self._load_data)

    def set(self, key: Any, value: Any) -> int:
        """Set one field; returns 1."""
        params = (b"field", self.kt.encode_key(key)), (b"value", self._enc(value))
        return self._call("hset", *params, then=_field_int(b"num"))

    def setnx(self, key: Any, value: Any) -> int:
        """Set one field only if it is absent: 1 when set, 0 when it existed."""
        params = (b"field", self.kt.encode_key(key)), (b"value", self._enc(value))
        return self._call("hsetnx", *params, then=_field_int(b"num"))

    def get(self, key: Any) -> Any:
        """The field's value, or ``None``."""
        field = (b"field", self.kt.encode_key(key))
        return self._call("hget", field, then=_value_or_none(self._dec))

    def remove(self, key: Any) -> int:
        """Remove one field: 1 when it existed, else 0."""
        return self._call("hdel", (b"field", self.kt.encode_key(key)), then=_field_int(b"num"))

    def length(self) -> int:
        """Number of fields."""
        return self._call("hlen", then=_field_int(b"num"))

    def contains(self, key: Any) -> bool:
        """Whether the field exists."""
        return self._call("hcontains", (b"field", self.kt.encode_key(key)), then=_is_one)

    def unpack(self, prefix: Any = None) -> int:
        """Write every field as a top-level record ``prefix + field`` (default prefix:
        the hash's key and ``:``); return how many were written."""
        params = [] if prefix is None else [(b"prefix", self.kt.encode_key(prefix))]
        return self._call("hunpack", *params, then=_field_int(b"num"))

    def pack(self, start: Any = None, stop: Any = None, count: int | None = None) -> int:
        """Copy the records ``start <= key < stop`` (at most ``count``) into the hash; on a
        hash database (no key order) every record is examined."""
        params = _range_params(self.kt, start, stop, count)
        return self._call("hpack", *params, then=_field_int(b"num"))

    def pack_keys(self, key: Any) -> int:
        """Store the fields (raw key bytes) as a :class:`List` at ``key``."""
        return self._call("hpackkeys", (b"dest", self._other_key(key)), then=_field_int(b"num"))

    def pack_values(self, key: Any) -> int:
        """Store the values as a :class:`List` at ``key``."""
        return self._call("hpackvalues", (b"dest", self._other_key(key)), then=_field_int(b"num"))

    def get_raw(self) -> dict[Any, Any] | None:
        """The whole hash read directly (no Lua), or ``None`` when it does not exist."""
        cmd = self.kt.get_bytes_command(self.key, self.db)
        return self._run(cmd.then(lambda data: None if data is None else self._load(data)))

    def set_raw(self, d: Mapping[Any, Any]) -> Any:
        """Replace the whole hash with ``d`` directly (no Lua; drops its expire time)."""
        ek = self.kt.encode_key
        data = _dumps().mapdump([(ek(k), self._enc(v)) for k, v in d.items()])
        return self.kt.set_bytes(self.key, data, db=self.db)

    def __len__(self) -> int:
        return self.length()

    def __contains__(self, key: Any) -> bool:
        return self.contains(key)

    def __getitem__(self, key: Any) -> Any:
        return self.get(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.set(key, value)

    def __delitem__(self, key: Any) -> None:
        self.remove(key)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.get_all())

    def items(self) -> list[tuple[Any, Any]]:
        """The (field, value) pairs."""
        return list(self.get_all().items())


def _range_params(kt: Any, start: Any, stop: Any, count: int | None) -> list[tuple[bytes, bytes]]:
    params = []
    if start is not None:
        params.append((b"start", kt.encode_key(start)))
    if stop is not None:
        params.append((b"stop", kt.encode_key(stop)))
    if count is not None:
        params.append((b"count", _integer(count, "count")))
    return params


# ----------------------------------------------------------------------------------
# List
# ----------------------------------------------------------------------------------


def _none_if_450(exc: BaseException) -> None:
    """``List.pop(index)``: an index out of range gives ``None``."""
    if isinstance(exc, ScriptError) and exc.status == 450:
        return None
    raise exc


def _nothing(_: Any) -> None:
    return None


def _found(out: dict[bytes, bytes]) -> int | None:
    idx = int(out[b"index"])
    return idx if idx >= 0 else None


class List(_Container):
    """A list stored in one record (an ``arraydump`` of serialized values).

    Indexes are 0-based and may be negative, as in Python.
    """

    def _load(self, data: bytes | None) -> list[Any]:
        if not data:
            return []
        dec = self._dec
        return [dec(v) for v in _dumps().arrayload(data)]

    def _indexed(
        self, proc: str, index: Any, *params: tuple[bytes, bytes], then: Any = None
    ) -> Any:
        cmd = self._command(proc, (b"index", _integer(index, "index")), *params)
        cmd.catch(ScriptError, _index_error)
        return self._run(cmd if then is None else cmd.then(then))

    def appendleft(self, value: Any) -> int:
        """Add at the head; return the new length."""
        return self._call("llpush", (b"value", self._enc(value)), then=_field_int(b"length"))

    def appendright(self, value: Any) -> int:
        """Add at the tail; return the new length."""
        return self._call("lrpush", (b"value", self._enc(value)), then=_field_int(b"length"))

    append = appendright

    def extend(self, values: Iterable[Any]) -> int:
        """Add several values at the tail; return the new length."""
        data = _dumps().arraydump([self._enc(v) for v in values])
        return self._call("lextend", (b"data", data), then=_field_int(b"length"))

    def get_range(self, start: int | None = None, stop: int | None = None) -> list[Any]:
        """``list[start:stop]`` with Python's slice rules."""
        params = []
        if start is not None:
            params.append((b"start", _integer(start, "start")))
        if stop is not None:
            params.append((b"stop", _integer(stop, "stop")))
        return self._call("lrange", *params, then=self._load_data)

    def index(self, index: int) -> Any:
        """The item at ``index``; IndexError when out of range."""
        return self._indexed("lindex", index, then=lambda out: self._dec(out[b"value"]))

    def insert(self, index: int, value: Any) -> int:
        """Insert before ``index`` (``index == len`` appends); return the new length.
        IndexError when out of range."""
        value_param = (b"value", self._enc(value))
        return self._indexed("linsert", index, value_param, then=_field_int(b"length"))

    def remove(self, index: int) -> Any:
        """Remove and return the item at ``index``; IndexError when out of range."""
        return self._indexed("lrem", index, then=lambda out: self._dec(out[b"value"]))

    def remove_range(self, start: int | None = None, stop: int | None = None) -> int:
        """``del list[start:stop]``; return the new length."""
        params = []
        if start is not None:
            params.append((b"start", _integer(start, "start")))
        if stop is not None:
            params.append((b"stop", _integer(stop, "stop")))
        return self._call("lremrange", *params, then=_field_int(b"length"))

    def popleft(self) -> Any:
        """Remove and return the head, or ``None`` when empty."""
        return self._call("llpop", then=_value_or_none(self._dec))

    def popright(self) -> Any:
        """Remove and return the tail, or ``None`` when empty."""
        return self._call("lrpop", then=_value_or_none(self._dec))

    def pop(self, index: int | None = None) -> Any:
        """Remove and return the item at ``index`` (default: the tail), or ``None`` when
        the list is empty or the index is out of range."""
        if index is None:
            return self.popright()
        cmd = self._command("lrem", (b"index", _integer(index, "index")))
        cmd.then(lambda out: self._dec(out[b"value"]))
        return self._run(cmd.catch(ScriptError, _none_if_450))

    def _poppush(self, proc: str, dest: Any) -> Any:
        params = [] if dest is None else [(b"dest", self._other_key(dest))]
        cmd = self._command(proc, *params).then(lambda out: self._dec(out[b"value"]))
        return self._run(cmd.catch(ScriptError, _index_error))

    def lpoprpush(self, dest: Any = None) -> Any:
        """Move the head to the tail of ``dest`` (default: this list, a rotation) and
        return it; IndexError when this list is empty."""
        return self._poppush("llpoprpush", dest)

    def rpoplpush(self, dest: Any = None) -> Any:
        """Move the tail to the head of ``dest`` (default: this list) and return it;
        IndexError when this list is empty."""
        return self._poppush("lrpoplpush", dest)

    def length(self) -> int:
        """Number of items."""
        return self._call("llen", then=_field_int(b"num"))

    def set(self, index: int, value: Any) -> None:
        """Replace the item at ``index``; IndexError when out of range."""
        return self._indexed("lset", index, (b"value", self._enc(value)), then=_nothing)

    def find(self, value: Any) -> int | None:
        """Index of the first occurrence of ``value``, or ``None``."""
        return self._call("lfind", (b"value", self._enc(value)), then=_found)

    def rfind(self, value: Any) -> int | None:
        """Index of the last occurrence of ``value``, or ``None``."""
        return self._call("lrfind", (b"value", self._enc(value)), then=_found)

    def unpack(
        self,
        start: int | None = None,
        stop: int | None = None,
        prefix: Any = None,
        fmt: str | None = None,
    ) -> int:
        """Write ``list[start:stop]`` as records ``prefix + fmt % i`` (i from 0; default
        prefix: the list's key and ``:``, default fmt ``%04d``); return how many."""
        params = []
        if start is not None:
            params.append((b"start", _integer(start, "start")))
        if stop is not None:
            params.append((b"stop", _integer(stop, "stop")))
        if prefix is not None:
            params.append((b"prefix", self.kt.encode_key(prefix)))
        if fmt is not None:
            params.append((b"format", _raw(fmt)))
        return self._call("lunpack", *params, then=_field_int(b"num"))

    def pack(self, start: Any = None, stop: Any = None, count: int | None = None) -> int:
        """Append the values of the records ``start <= key < stop`` (at most ``count``)."""
        params = _range_params(self.kt, start, stop, count)
        return self._call("lpack", *params, then=_field_int(b"num"))

    def get_raw(self) -> list[Any] | None:
        """The whole list read directly (no Lua), or ``None`` when it does not exist."""
        cmd = self.kt.get_bytes_command(self.key, self.db)
        return self._run(cmd.then(lambda data: None if data is None else self._load(data)))

    def set_raw(self, values: Iterable[Any]) -> Any:
        """Replace the whole list directly (no Lua; drops its expire time)."""
        data = _dumps().arraydump([self._enc(v) for v in values])
        return self.kt.set_bytes(self.key, data, db=self.db)

    def __len__(self) -> int:
        return self.length()

    def __contains__(self, value: Any) -> bool:
        return self.find(value) is not None

    def __iter__(self) -> Iterator[Any]:
        return iter(self.get_range())

    def __getitem__(self, item: int | slice) -> Any:
        if isinstance(item, slice):
            values = self.get_range(item.start, item.stop)
            return values if item.step in (None, 1) else values[:: item.step]
        return self.index(item)

    def __setitem__(self, index: int, value: Any) -> None:
        self.set(index, value)

    def __delitem__(self, item: int | slice) -> None:
        if isinstance(item, slice):
            if item.step not in (None, 1):
                raise InvalidArgument("List does not support deleting an extended slice")
            self.remove_range(item.start, item.stop)
        else:
            self.remove(item)


# ----------------------------------------------------------------------------------
# Set
# ----------------------------------------------------------------------------------


class Set(_Container):
    """A set of serialized values stored in one record (a ``mapdump`` whose keys are
    the members)."""

    def _members(self, values: Iterable[Any]) -> bytes:
        return _dumps().arraydump([self._enc(v) for v in values])

    def _load(self, data: bytes | None) -> set[Any]:
        if not data:
            return set()
        dec = self._dec
        return {dec(v) for v in _dumps().arrayload(data)}

    def add(self, *values: Any) -> int:
        """Add members; return how many were new."""
        return self.add_bulk(values)

    def add_bulk(self, values: Iterable[Any]) -> int:
        """Add an iterable of members; return how many were new."""
        return self._call("sadd", (b"data", self._members(values)), then=_field_int(b"num"))

    def remove(self, *values: Any) -> int:
        """Remove members; return how many existed."""
        return self.remove_bulk(values)

    def remove_bulk(self, values: Iterable[Any]) -> int:
        """Remove an iterable of members; return how many existed."""
        return self._call("srem", (b"data", self._members(values)), then=_field_int(b"num"))

    def pop(self) -> Any:
        """Remove and return an arbitrary member, or ``None`` when empty."""
        return self._call("spop", then=_value_or_none(self._dec))

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a member."""
        return self._call("sismember", (b"value", self._enc(value)), then=_is_one)

    def count(self) -> int:
        """Number of members."""
        return self._call("scard", then=_field_int(b"num"))

    def members(self) -> set[Any]:
        """All members as a Python set."""
        return self._call("smembers", then=self._load_data)

    def _op(self, proc: str, other: Any, dest: Any) -> set[Any]:
        params = [(b"keys", _dumps().arraydump([self._other_key(other)]))]
        if dest is not None:
            params.append((b"dest", self._other_key(dest)))
        return self._call(proc, *params, then=self._load_data)

    def union(self, other: Any, dest: Any = None) -> set[Any]:
        """Members of this set or of ``other`` (a Set or a key); stored at ``dest``
        (replacing it, removed when empty) when given."""
        return self._op("sunion", other, dest)

    def intersection(self, other: Any, dest: Any = None) -> set[Any]:
        """Members of both this set and ``other``; stored at ``dest`` when given."""
        return self._op("sinter", other, dest)

    def difference(self, other: Any, dest: Any = None) -> set[Any]:
        """Members of this set that are not in ``other``; stored at ``dest`` when given."""
        return self._op("sdiff", other, dest)

    def __len__(self) -> int:
        return self.count()

    def __contains__(self, value: Any) -> bool:
        return self.contains(value)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.members())

    def __and__(self, other: Any) -> set[Any]:
        return self.intersection(other)

    def __or__(self, other: Any) -> set[Any]:
        return self.union(other)

    def __sub__(self, other: Any) -> set[Any]:
        return self.difference(other)


# ----------------------------------------------------------------------------------
# Queue and Schedule
# ----------------------------------------------------------------------------------

#: Longest single server-side wait of :meth:`Queue.bpop`.  A wake-up signal that
#: races with the start of a wait is lost; bounding each wait bounds that delay.
BPOP_SLICE = 1.0


class Queue(_Keyed):
    """A priority queue: higher scores come out first, equal scores in arrival order.

    Items are serialized with the client's serializer.
    """

    @property
    def _condition(self) -> bytes:
        """The server condition that blocked readers of this queue wait on."""
        return b"ktstore.queue:%d:" % self.kt.resolve_db(self.db) + self._bkey

    def _signal_then(self, out: dict[bytes, bytes]) -> Program:
        """Wake blocked readers when the procedure says one is registered."""
        if out.get(b"signal") == b"1":
            yield self.kt.signal_command(self._condition, self.db)

    @staticmethod
    def _one_or_list(items: list[Any], n: int) -> Any:
        if n == 1:
            return items[0] if items else None
        return items

    def add(self, item: Any, score: int | float | None = None) -> int:
        """Enqueue ``item`` with ``score`` (default 0); return its id."""
        params = [(b"key", self._bkey), (b"value", self.kt.encode_value(item))]
        if score is not None:
            params.append((b"score", _number(score, "score")))
        return self._run(self._add(params))

    def _add(self, params: list[tuple[bytes, bytes]]) -> Program:
        out = yield self.kt.lua_command("queueadd", params, self.db)
        if b"signal" in out:
            yield from self._signal_then(out)
        return int(out[b"id"])

    def extend(self, items: Iterable[Any], score: int | float | None = None) -> int:
        """Enqueue several items with one score; return how many were added."""
        enc = self.kt.encode_value
        params = [(b"data", _dumps().arraydump([enc(i) for i in items]))]
        if score is not None:
            params.append((b"score", _number(score, "score")))
        return self._run(self._extend(params))

    def _extend(self, params: list[tuple[bytes, bytes]]) -> Program:
        out = yield self._command("queueadd", *params)
        yield from self._signal_then(out)
        return int(out[b"num"])

    def _read(self, n: int, min_score: Any, tail: bool, peek: bool) -> Any:
        params = [(b"key", self._bkey)]
        if type(n) is not int or n != 1:  # 1 is the procedure's default
            params.append((b"n", _integer(n, "n")))
            if n < 1:
                raise InvalidArgument(f"n must be at least 1, not {n}")
        if min_score is not None:
            params.append((b"minscore", _number(min_score, "min_score")))
        if tail:
            params.append((b"tail", b""))
        if peek:
            params.append((b"peek", b""))
        cmd = self.kt.lua_command("queuepop", params, self.db)
        return self._run(cmd.then(lambda out: self._one_or_list(self._items(out), n)))

    def pop(self, n: int = 1, min_score: Any = None) -> Any:
        """Remove and return the head item (``n == 1``: the item or ``None``; else a list
        of up to ``n``), considering only items scored at least ``min_score``."""
        return self._read(n, min_score, tail=False, peek=False)

    def rpop(self, n: int = 1, min_score: Any = None) -> Any:
        """Like :meth:`pop` from the other end (lowest score, newest first)."""
        return self._read(n, min_score, tail=True, peek=False)

    def peek(self, n: int = 1, min_score: Any = None) -> Any:
        """Like :meth:`pop` without removing."""
        return self._read(n, min_score, tail=False, peek=True)

    def rpeek(self, n: int = 1, min_score: Any = None) -> Any:
        """Like :meth:`rpop` without removing."""
        return self._read(n, min_score, tail=True, peek=True)

    def bpop(self, timeout: float | None = None, min_score: Any = None) -> Any:
        """Pop the head item, waiting up to ``timeout`` seconds (``None``: forever) for
        one to arrive; ``None`` on timeout.

        Waiting happens on the server: the pop registers this reader in the queue's
        index, then waits on the queue's condition over HTTP (``WAIT``); adders that see
        a registered reader send ``SIGNAL``.  Each wait lasts at most
        :data:`BPOP_SLICE` seconds, after which the pop is retried.
        """
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
                raise InvalidArgument(
                    f"timeout must be a non-negative number or None, not {timeout!r}"
                )
        return self._run(self._bpop(timeout, min_score))

    def _bpop(self, timeout: float | None, min_score: Any) -> Program:
        deadline = None if timeout is None else time.monotonic() + timeout
        base = [(b"n", b"1")]
        if min_score is not None:
            base.append((b"minscore", _number(min_score, "min_score")))
        slice_ = BPOP_SLICE
        client_timeout = getattr(self.kt, "timeout", None)
        if client_timeout:
            slice_ = min(slice_, client_timeout / 2)
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                items = self._items((yield self._command("queuepop", *base)))
                return items[0] if items else None
            wait = slice_ if remaining is None else min(slice_, remaining)
            register = (b"wait", b"%d" % (math.ceil(wait) + 1))
            items = self._items((yield self._command("queuepop", *base, register)))
            if items:
                return items[0]
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            wait = slice_ if remaining is None else min(slice_, remaining)
            extra = [(b"WAIT", self._condition), (b"WAITTIME", b"%.3f" % max(wait, 0.001))]
            params = [(b"key", self._bkey), *base]
            # The call may legitimately stay silent for the whole wait: its deadline
            # is the wait plus the client's own timeout.
            call_timeout = wait + (client_timeout or 60.0)
            cmd = self.kt.http_script_command("queuepop", params, self.db, extra, call_timeout)
            out = yield cmd
            if out is not None:
                items = self._items(out)
                if items:
                    return items[0]

    def count(self) -> int:
        """Number of items."""
        return self._call("queuecount", then=_field_int(b"num"))

    __len__ = count

    def _remove(self, proc_tail: bool, data: Any, n: int | None, min_score: Any) -> int:
        params = [(b"value", self.kt.encode_value(data))]
        if n is not None:
            params.append((b"n", _integer(n, "n")))
        if min_score is not None:
            params.append((b"minscore", _number(min_score, "min_score")))
        if proc_tail:
            params.append((b"tail", b""))
        return self._call("queueremove", *params, then=_field_int(b"num"))

    def remove(self, data: Any, n: int | None = None, min_score: Any = None) -> int:
        """Remove up to ``n`` (default: all) items equal to ``data``, from the head;
        return how many were removed."""
        return self._remove(False, data, n, min_score)

    def rremove(self, data: Any, n: int | None = None, min_score: Any = None) -> int:
        """Like :meth:`remove`, searching from the tail."""
        return self._remove(True, data, n, min_score)

    def transfer(self, dest: Any, n: int = 1) -> Any:
        """Move up to ``n`` items from the head to ``dest`` (a Queue or a key), keeping
        their scores; return the item (``n == 1``; ``None`` if empty) or the list."""
        dkey = dest._bkey if isinstance(dest, Queue) else self.kt.encode_key(dest)
        return self._run(self._transfer(dest, dkey, n))

    def _transfer(self, dest: Any, dkey: bytes, n: int) -> Program:
        out = yield self._command("queuetransfer", (b"dest", dkey), (b"n", _integer(n, "n")))
        if out.get(b"signal") == b"1":
            target = dest if isinstance(dest, Queue) else Queue(self.kt, dest, self.db)
            yield self.kt.signal_command(target._condition, self.db)
        return self._one_or_list(self._items(out), n)

    def set_priority(self, data: Any, score: int | float, n: int | None = None) -> int:
        """Give up to ``n`` (default: all) items equal to ``data`` the new ``score``;
        return how many changed."""
        params = [(b"value", self.kt.encode_value(data)), (b"score", _number(score, "score"))]
        if n is not None:
            params.append((b"n", _integer(n, "n")))
        return self._call("queuesetscore", *params, then=_field_int(b"num"))

    def clear(self) -> int:
        """Remove every item; return how many there were."""
        return self._call("queueclear", then=_field_int(b"num"))


class Schedule(_Keyed):
    """Items ordered by a score such as an arrival time, lowest first (equal scores in
    arrival order); :meth:`read` takes the items that are due."""

    def add(self, item: Any, score: int | float = 0) -> int:
        """Schedule ``item`` at ``score``; return its id."""
        return self._call(
            "scheduleadd",
            (b"value", self.kt.encode_value(item)),
            (b"score", _number(score, "score")),
            then=_field_int(b"id"),
        )

    def read(self, score: int | float | None = None, n: int | None = None) -> list[Any]:
        """Remove and return up to ``n`` items scored at most ``score`` (default: any),
        lowest first."""
        params = []
        if score is not None:
            params.append((b"score", _number(score, "score")))
        if n is not None:
            params.append((b"n", _integer(n, "n")))
        return self._call("scheduleread", *params, then=self._items)

    def items(self, n: int | None = None) -> list[Any]:
        """Up to ``n`` items in score order, without removing them."""
        params = [(b"peek", b"")]
        if n is not None:
            params.append((b"n", _integer(n, "n")))
        return self._call("scheduleread", *params, then=self._items)

    def clear(self) -> int:
        """Remove every item; return how many there were."""
        return self._call("scheduleclear", then=_field_int(b"num"))

    def count(self) -> int:
        """Number of items."""
        return self._call("schedulecount", then=_field_int(b"num"))

    __len__ = count


# ----------------------------------------------------------------------------------
# SignalQueue (ukt's name): plain records + a server-side condition, no script
# ----------------------------------------------------------------------------------


_STAMPS = itertools.count()


def _signal_queue_stamp() -> str:
    """A SignalQueue item's key suffix: the time (so keys sort in production order, as
    ukt's ``key:<time.time()>`` do), then the process and a counter, so two items
    produced in the same microsecond never share a key (``add`` would refuse one)."""
    return f"{time.time():.6f}.{os.getpid() % 100000:05d}{next(_STAMPS) % 1000000:06d}"


class SignalQueue(_Keyed):
    """ukt's ``SignalQueue``: a FIFO of plain records ``key:<time>`` that wakes
    consumers with the server's ``SIGNAL``/``WAIT`` conditions instead of polling.

    It needs no script, but an ordered (tree) database, as in ukt: items come out in
    key order, i.e. in production order.  :meth:`produce` adds the record and signals
    ``signal``; :meth:`consume` takes the first item (an atomic ``seize``, so two
    consumers never get the same one) or waits on the condition up to ``wait``
    seconds.  A signal sent between a consumer's look and its wait is missed, as in
    ukt: the consumer looks once more when its wait ends, then returns ``None``.

    ``cursor`` is accepted for ukt's signature; ktstore uses no server-side cursor.
    """

    def __init__(
        self,
        client: Any,
        key: str,
        signal: str = "q",
        db: int | None = None,
        wait: float = 10,
        cursor: int | None = None,
    ) -> None:
        super().__init__(client, key, db)
        self.client = client  # ukt's attribute name
        self.signal = signal
        self.wait = wait
        self.cursor_id = cursor

    def __repr__(self) -> str:
        return f"<SignalQueue {self.key!r} signal={self.signal!r} db={self.db}>"

    @property
    def _prefix(self) -> bytes:
        return self.client.encode_key(self.key + ":")

    def produce(self, value: Any, expire_time: Any = None, encode_value: bool = True) -> Any:
        """Add ``value``; return ``(added, number of consumers woken)``."""
        kt = self.client
        params = [
            (b"key", kt.encode_key(f"{self.key}:{_signal_queue_stamp()}")),
            (b"value", kt.encode_value(value) if encode_value else script_value(value)),
            (b"SIGNAL", kt.encode_key(self.signal)),
            (b"SIGNALBROAD", b""),
        ]
        if expire_time is not None:
            params.insert(2, (b"xt", b"%d" % to_wire_xt(expire_time, time.time())))

        def finish(r: tuple[int, dict[bytes, bytes]]) -> tuple[bool, int]:
            status, out = r
            if status == 450:
                return False, 0
            return True, int(out.get(b"SIGNALED", b"0") or 0)

        return kt.execute_command(kt.rpc_command("add", params, self.db, (450,)).then(finish))

    def consume(self, wait: float | None = None) -> Any:
        """Take the first item, waiting up to ``wait`` seconds (default: the queue's
        ``wait``) for one to be produced; ``None`` when none came."""
        wait = self.wait if wait is None else wait
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or wait < 0:
            raise InvalidArgument(f"wait must be a non-negative number, not {wait!r}")
        return self.client.execute_command(self._consume(float(wait)))

    def _first_key(self) -> Command:
        params = [(b"prefix", self._prefix), (b"max", b"1")]

        def finish(r: tuple[int, dict[bytes, bytes]]) -> bytes | None:
            keys = sorted(k[1:] for k in r[1] if k[:1] == b"_")
            return keys[0] if keys else None

        return self.client.rpc_command("match_prefix", params, self.db, (), True).then(finish)

    def _consume(self, wait: float) -> Program:
        kt = self.client
        waited = False
        while True:
            key = yield self._first_key()
            if key is not None:
                status, out = yield kt.rpc_command("seize", [(b"key", key)], self.db, (450,))
                if status == 200:
                    return kt.decode_value(out[b"value"])
                continue  # another consumer took it: look again
            if waited or wait <= 0:
                return None
            params = [(b"WAIT", kt.encode_key(self.signal)), (b"WAITTIME", b"%.3f" % wait)]
            call_timeout = wait + (getattr(kt, "timeout", None) or 60.0)
            status, _ = yield kt.rpc_command("void", params, self.db, (503,), False, call_timeout)
            waited = status == 503  # timed out: one last look

"""A client over several servers that hold the same data: failover.

Why: with replication (docs/deployment.md) the data is on more than one server, but a
client that speaks to one host fails with it.  :class:`FailoverKyotoTycoon` has the
whole :class:`~ktstore.client.sync.KyotoTycoon` API (containers, cursors, ``Store``
and models included) and sends each request where it can be served:

* **reads** go to the preferred server (the primary, or the first master); when it is
  down they go to the next server that answers.  A read is safe to send again, so a
  read that failed on the network is simply tried on the next server.
* **writes** go only where a write can land: the primary (``primary=`` and
  ``replicas=``), or either master of a dual-master pair (``masters=``).  A write is
  moved to another master only when *none of its bytes were sent* (the connection was
  refused or broke before the request went out); if it may have reached a server, the
  error is raised, because sending it again elsewhere could apply it twice.
* a server that failed is skipped for ``recheck`` seconds, then tried again first if
  it is the preferred one: the client returns to the primary as soon as it is back.
* when no server that could take a request answers (the primary restarting, say), the
  request waits up to ``wait`` seconds (default 5), trying again, before it raises:
  a write made during a primary restart lands once the primary is back.

Which requests are reads: those the client marks safe to repeat (``get``,
``get_bulk``, ``check``, ``match_*``, ``count``, ``status``...) and the read-only
procedures of ``kt.lua`` (:data:`READ_PROCEDURES`).  Anything else is a write.  A
cursor stays on the server it was opened on (a cursor lives in one server's memory);
a pipeline goes to the current writer.  The asyncio form is
:class:`ktstore.client.failover_aio.AsyncFailoverKyotoTycoon`.

Replication is asynchronous, so a read served by a replica may miss the latest writes
(a few milliseconds behind, usually).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

from ktstore.client.command import Command, Program, run_program
from ktstore.client.sync import KyotoTycoon
from ktstore.errors import InvalidArgument, KTConnectionError

__all__ = [
    "FailoverKyotoTycoon",
    "FailoverRouting",
    "READ_PROCEDURES",
    "Member",
    "parse_address",
]

#: Procedures of lua/kt.lua that only read: served by any server.
READ_PROCEDURES = frozenset(
    {
        "expiretime",
        "hcontains",
        "hget",
        "hgetall",
        "hlen",
        "hmget",
        "lfind",
        "llen",
        "lrange",
        "lrfind",
        "scard",
        "sismember",
        "smembers",
        "queuecount",
        "schedulecount",
        "modelscan",
        "modelsearch",
    }
)


def parse_address(address: Any, default_port: int = 1978) -> tuple[str, int]:
    """``"host:port"``, ``"host"``, ``(host, port)`` or a client -> ``(host, port)``."""
    if isinstance(address, KyotoTycoon):
        return address.host, address.port
    if isinstance(address, tuple) and len(address) == 2:
        return str(address[0]), int(address[1])
    if isinstance(address, str) and address:
        if address.startswith("kt://"):
            address = address[5:].split("/", 1)[0]
        host, sep, port = address.rpartition(":")
        if sep and port.isdigit() and host:
            return host.strip("[]"), int(port)
        return address, default_port
    raise InvalidArgument(f"not a server address: {address!r}")


class Member:
    """One server of the group: its client and whether it is believed down."""

    __slots__ = ("client", "writable", "down_until")

    def __init__(self, client: Any, writable: bool) -> None:
        self.client = client
        self.writable = writable
        self.down_until = 0.0

    def __repr__(self) -> str:
        role = "rw" if self.writable else "ro"
        return f"<Member {self.client.host}:{self.client.port} {role}>"


class FailoverRouting:
    """Where each request goes, for both clients (no I/O here).

    ``members``: the servers, writable ones first in preference order.  Subclasses run a
    request on a member with ``member.client.pool.run(cmd)``.
    """

    members: list[Member]
    recheck: float
    wait: float
    client_class: type  # the client of each member (blocking or asyncio)

    def __init__(
        self,
        primary: Any = None,
        replicas: Sequence[Any] = (),
        *,
        masters: Sequence[Any] = (),
        recheck: float = 1.0,
        wait: float = 5.0,
        **kwargs: Any,
    ) -> None:
        writers, readers = self._setup(primary, replicas, masters, recheck, wait)
        kwargs.pop("host", None)
        kwargs.pop("port", None)
        super().__init__(*writers[0], **kwargs)  # type: ignore[call-arg]  # the client class
        make = self.client_class
        self.members = [Member(make(h, p, **kwargs), True) for h, p in writers]
        self.members += [Member(make(h, p, **kwargs), False) for h, p in readers]

    def _setup(
        self,
        primary: Any,
        replicas: Sequence[Any],
        masters: Sequence[Any],
        recheck: float,
        wait: float,
    ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        if (primary is None) == (not masters):
            raise InvalidArgument("give either primary= (and replicas=) or masters=")
        if masters and replicas:
            raise InvalidArgument("a dual master takes masters= only")
        if not wait >= 0:
            raise InvalidArgument(f"wait must be a number of seconds >= 0, not {wait!r}")
        self.recheck = recheck
        self.wait = wait
        if masters:
            return [parse_address(m) for m in masters], []
        return [parse_address(primary)], [parse_address(r) for r in replicas]

    @staticmethod
    def is_read(cmd: Command) -> bool:
        """Whether ``cmd`` only reads (any server holding the data may answer it)."""
        return bool(cmd.idempotent) or cmd.name in READ_PROCEDURES

    def _candidates(self, write: bool) -> list[Member]:
        """Members to try, best first: the ones believed up in preference order, then
        the ones believed down (a last resort, so a whole-group outage still tries)."""
        now = time.monotonic()
        pool = [m for m in self.members if m.writable] if write else self.members
        up = [m for m in pool if m.down_until <= now]
        down = [m for m in pool if m.down_until > now]
        return up + down

    def _failed(self, member: Member, exc: KTConnectionError, write: bool) -> None:
        """Note a network failure; re-raise it if trying elsewhere could apply a write
        twice (some of its bytes may have reached the server)."""
        member.down_until = time.monotonic() + self.recheck
        if write and getattr(exc, "sent", True):
            raise exc

    @staticmethod
    def _succeeded(member: Member) -> None:
        member.down_until = 0.0

    def _pause(self, deadline: float, attempt: int) -> float | None:
        """Seconds to sleep before trying every server again, or ``None`` past the
        deadline (backs off from 50 ms to 0.5 s)."""
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        return min(0.05 * (2**attempt), 0.5, left)

    @staticmethod
    def _exhausted(write: bool, last: KTConnectionError | None) -> KTConnectionError:
        kind = "write" if write else "read"
        err = KTConnectionError(f"no server could take this {kind}: {last}")
        err.__cause__ = last
        return err

    def current(self, write: bool = False) -> Any:
        """The client of the server requests would go to now."""
        return self._candidates(write)[0].client


class FailoverKyotoTycoon(FailoverRouting, KyotoTycoon):
    """The :class:`KyotoTycoon` API over a primary and its replicas, or a dual master.

    ``FailoverKyotoTycoon(primary="a:1978", replicas=["b:1978", "c:1978"])`` or
    ``FailoverKyotoTycoon(masters=["a:1978", "b:1978"])``; the other keyword
    arguments are :class:`KyotoTycoon`'s (serializer, timeout, default_db...) and
    apply to every server.  ``recheck``: seconds a failed server is skipped;
    ``wait``: seconds a request keeps trying while no server can take it.
    """

    client_class = KyotoTycoon

    def __repr__(self) -> str:
        return f"<FailoverKyotoTycoon {self.members!r}>"

    def _run_one(self, cmd: Command) -> Any:
        write = not self.is_read(cmd)
        last: KTConnectionError | None = None
        deadline = time.monotonic() + self.wait
        for attempt in itertools.count():
            for member in self._candidates(write):
                try:
                    reply = member.client.pool.run(cmd)
                except KTConnectionError as e:
                    self._failed(member, e, write)
                    last = e
                    continue
                self._succeeded(member)
                return cmd.finish(reply)
            pause = self._pause(deadline, attempt)
            if pause is None:
                break
            time.sleep(pause)
        raise self._exhausted(write, last)

    def execute_command(self, runnable: Command | Program) -> Any:
        if runnable.__class__ is Command:
            return self._run_one(runnable)  # type: ignore[arg-type]
        return run_program(runnable, self._run_one)  # type: ignore[arg-type]

    @property
    def pool(self) -> Any:
        """The pool of the preferred reader (cursors open there and stay there)."""
        return self.current(False).pool

    def pipeline(self) -> Any:
        """A pipeline on the current writer (no failover inside a pipeline)."""
        return self.current(True).pipeline()

    def close_all(self) -> int:
        return sum(m.client.close_all() for m in self.members)

    close = close_all

"""The client interface: what containers, cursors, ``Store``/``AsyncStore`` and the
model layer may use of a client (docs/architecture.md, "The client interface").

Both clients and the pipelines provide it (through
:class:`~ktstore.client.commands.Commands`).  Everything else on a client is either
public API or private to the client package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ktstore.client.command import Command, Program

__all__ = ["ClientInterface"]


class ClientInterface(Protocol):
    """Keys, values and databases, command builders, and the runner."""

    decode_keys: bool
    timeout: float | None
    encode_value: Callable[[Any], bytes]
    decode_value: Callable[[bytes], Any]

    def encode_key(self, key: Any) -> bytes: ...

    def decode_key(self, data: bytes) -> Any: ...

    def resolve_db(self, db: Any) -> int: ...

    def with_xt(
        self, params: list[tuple[bytes, bytes]], expire_time: Any
    ) -> list[tuple[bytes, bytes]]: ...

    def script_command(
        self, name: str | bytes, params: list[tuple[bytes, bytes]], no_reply: bool = False
    ) -> Command: ...

    def lua_command(
        self,
        proc: str,
        params: list[tuple[bytes, bytes]],
        db: int | None = None,
        no_reply: bool = False,
    ) -> Command: ...

    def rpc_command(
        self,
        name: str,
        params: list[tuple[bytes, bytes]],
        db: Any = None,
        allowed: tuple[int, ...] = (),
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> Command: ...

    def http_script_command(
        self,
        proc: str,
        params: list[tuple[bytes, bytes]],
        db: int | None,
        extra: list[tuple[bytes, bytes]],
        timeout: float | None = None,
    ) -> Command: ...

    def signal_command(self, condition: bytes, db: int | None) -> Command: ...

    def get_bytes_command(self, key: Any, db: int | None = None) -> Command: ...

    def execute_command(self, runnable: Command | Program) -> Any: ...

    # two methods of the public API the containers' get_raw/set_raw/clear use
    def set_bytes(
        self,
        key: Any,
        value: bytes,
        db: int | None = None,
        expire_time: Any = None,
        no_reply: bool = False,
    ) -> Any: ...

    def remove(self, key: Any, db: int | None = None, no_reply: bool = False) -> Any: ...

"""Server URLs: ``kt://host:port/db?serializer=...&timeout=...`` as a pure parser.

One string names a server, a default database and the client's options, so a
command line (``ktstore --url``, ``KTSTORE_URL``), a configuration file or an
environment variable can carry everything a client needs.  The parser does no I/O
and builds no client: :func:`parse_url` returns a :class:`KtURL` whose
:meth:`~KtURL.client_kwargs` are the keyword arguments of
:class:`~ktstore.client.KyotoTycoon`.

Form (every part optional)::

    kt://HOST:PORT/DB?serializer=S&timeout=T&decode_keys=B&max_age=A

* ``HOST`` default ``127.0.0.1``; an IPv6 address goes in brackets (``[::1]``).
* ``PORT`` default 1978 (ktserver's default).
* ``DB`` the default database index (default 0).
* ``serializer`` one of ``binary json msgpack pickle none`` (default binary).
* ``timeout`` seconds (a positive number), ``max_age`` seconds a pooled
  connection is reused, or ``none`` for no limit; ``decode_keys`` ``true``/``false``.

A string without ``://`` is read as ``kt://`` plus that string, so ``localhost:1978``
works too.  Anything else (another scheme, a user name, an unknown option, a bad
number) raises :class:`~ktstore.errors.InvalidArgument` naming the offending part:
a typo in a URL must not silently connect somewhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from ktstore.errors import InvalidArgument

__all__ = ["DEFAULT_PORT", "KtURL", "parse_url"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1978
SERIALIZERS = ("binary", "json", "msgpack", "pickle", "none")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class KtURL:
    """A parsed server URL (see the module docstring for the syntax)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    db: int = 0
    serializer: str | None = None
    timeout: float | None = None
    decode_keys: bool | None = None
    max_age: float | None = None
    # which of the optional settings the URL named (so defaults stay the client's)
    given: frozenset[str] = field(default=frozenset(), compare=False)

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``KyotoTycoon(**kwargs)``: host, port, default_db,
        and only the options the URL set (the client's defaults apply otherwise)."""
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port, "default_db": self.db}
        for name in ("serializer", "timeout", "decode_keys", "max_age"):
            if name in self.given:
                kwargs[name] = getattr(self, name)
        return kwargs

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "&".join(
            f"{name}={_show(getattr(self, name))}"
            for name in ("serializer", "timeout", "decode_keys", "max_age")
            if name in self.given
        )
        return f"kt://{quote(host, safe='[]:')}:{self.port}/{self.db}" + (
            f"?{query}" if query else ""
        )


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)


def _seconds(name: str, text: str, allow_none: bool) -> float | None:
    if allow_none and text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgument(f"URL option {name}={text!r}: not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgument(f"URL option {name}={text!r}: must be a positive number")
    return value


def parse_url(url: str) -> KtURL:
    """Parse a ``kt://`` server URL; :class:`~ktstore.errors.InvalidArgument` when it
    is not one (the message says which part is wrong)."""
    if not isinstance(url, str):
        raise InvalidArgument(f"a server URL must be a str, not {type(url).__name__}")
    text = url.strip()
    if not text:
        raise InvalidArgument("empty server URL")
    if "://" not in text:
        text = "kt://" + text
    parts = urlsplit(text)
    if parts.scheme.lower() != "kt":
        raise InvalidArgument(f"{url!r}: the scheme must be kt://, not {parts.scheme}://")
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument(f"{url!r}: Kyoto Tycoon has no user names or passwords")
    if parts.fragment:
        raise InvalidArgument(f"{url!r}: a server URL has no #fragment")
    try:
        port_value = parts.port
    except ValueError:
        raise InvalidArgument(f"{url!r}: the port must be a number in 1..65535") from None
    host = unquote(parts.hostname or "") or DEFAULT_HOST
    port = DEFAULT_PORT if port_value is None else port_value
    if not 0 < port < 65536:
        raise InvalidArgument(f"{url!r}: the port must be a number in 1..65535")
    db = 0
    path = parts.path.strip("/")
    if path:
        if not path.isdigit() or not 0 <= int(path) <= 0xFFFF:
            raise InvalidArgument(
                f"{url!r}: the path must be a database index in 0..65535, not {path!r}"
            )
        db = int(path)
    values: dict[str, Any] = {}
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise InvalidArgument(f"{url!r}: malformed query string {parts.query!r}") from None
    for name, raw in pairs:
        if name in values:
            raise InvalidArgument(f"{url!r}: option {name!r} given twice")
        if name == "serializer":
            if raw.lower() not in SERIALIZERS:
                raise InvalidArgument(
                    f"URL option serializer={raw!r}: use one of {', '.join(SERIALIZERS)}"
                )
            values[name] = raw.lower()
        elif name == "timeout":
            values[name] = _seconds(name, raw, allow_none=True)
        elif name == "max_age":
            values[name] = _seconds(name, raw, allow_none=True)
        elif name == "decode_keys":
            low = raw.lower()
            if low not in _TRUE + _FALSE:
                raise InvalidArgument(f"URL option decode_keys={raw!r}: use true or false")
            values[name] = low in _TRUE
        else:
            raise InvalidArgument(
                f"{url!r}: unknown option {name!r} (known: serializer, timeout, "
                "decode_keys, max_age)"
            )
    return KtURL(host=host, port=port, db=db, given=frozenset(values), **values)

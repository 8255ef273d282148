"""The exception hierarchy shared by the protocol core, the client and the model layer.

Everything ktstore raises on purpose derives from :class:`KyotoTycoonError` (the name
ukt users already catch), so ``except KyotoTycoonError`` is always enough.  The
subclasses let callers tell apart what went wrong:

* the arguments were wrong before anything was sent (``InvalidArgument``),
* the network failed or the server went away (``KTConnectionError``),
* the server did not answer in time (``KTTimeoutError``),
* the bytes that came back were not Kyoto Tycoon's protocol (``ProtocolError``),
* the server answered with an error (``ServerError``, carrying the status and the
  server's ``ERROR`` text; ``ScriptError`` for a failed Lua procedure),
* a value could not be (de)serialized (``SerializationError``).

ukt's own names work too, with ukt's meaning: ``ServerConnectionError`` (base of
``KTConnectionError``), ``ServerTimeoutError`` (base of ``KTTimeoutError``),
``SignalTimeout``, ``ImproperlyConfigured`` (a kind of ``InvalidArgument``), and
``ProtocolError``, which in ukt is what a refused request raises
-- so here ``ServerError`` (a 450 from ``increment``, a 0xBF reply...) is a
``ProtocolError`` too, next to malformed bytes.

This module imports nothing from the rest of the package so every layer can use it.
"""

from __future__ import annotations


class KyotoTycoonError(Exception):
    """Base class of every error ktstore raises."""


KTError = KyotoTycoonError


class InvalidArgument(KyotoTycoonError, ValueError):
    """A bad argument was rejected before anything was sent (wrong key type,
    value too large for the protocol, unknown serializer, unknown database...)."""


class ImproperlyConfigured(InvalidArgument):
    """ukt's name: the client was configured wrongly (an unknown serializer, or one
    whose package is not installed)."""


class ServerConnectionError(KyotoTycoonError, ConnectionError):
    """ukt's name: the connection could not be made or broke during a request."""


class KTConnectionError(ServerConnectionError):
    """The connection could not be made or broke during a request."""


class ServerTimeoutError(KTConnectionError, TimeoutError):
    """ukt's name: the server did not answer within the client's timeout."""


KTTimeoutError = ServerTimeoutError


class ProtocolError(KyotoTycoonError):
    """The exchange failed at the protocol level: the peer sent bytes that are not
    valid Kyoto Tycoon protocol, or (subclass :class:`ServerError`) the server refused
    the request, which is what ukt's ``ProtocolError`` means."""


class Incomplete(ProtocolError):
    """More bytes are needed before a frame or message can be parsed.

    ``need`` is the total number of bytes (counted from the position the parse
    started at) known to be required; the caller reads at least that many and
    tries again.  Raised by the pure parsers in :mod:`ktstore.protocol`, never
    seen by users of the client.
    """

    def __init__(self, need: int) -> None:
        super().__init__(f"incomplete: need {need} bytes")
        self.need = need


class ServerError(ProtocolError):
    """The server answered with an error.

    ``status`` is the HTTP status (450 logical inconsistency, 400 invalid, 501 not
    implemented, 500 internal, 503 timeout) or ``None`` for a binary-protocol error
    reply, which carries no detail.  ``message`` is the server's ``ERROR`` text.
    """

    def __init__(self, message: str, status: int | None = None, procedure: str | None = None):
        self.message = message
        self.status = status
        self.procedure = procedure
        where = f"{procedure}: " if procedure else ""
        code = f" ({status})" if status is not None else ""
        super().__init__(f"{where}{message}{code}")


class ScriptError(ServerError):
    """A Lua procedure failed on the server (or scripting is not enabled)."""


class SignalTimeout(KyotoTycoonError):
    """ukt's name: a wait for a server-side signal timed out."""


class SerializationError(KyotoTycoonError, ValueError):
    """A value could not be encoded or decoded by the configured serializer."""


class ReplicationError(KyotoTycoonError):
    """A replication stream could not be had or broke: the server keeps no update log
    (started without ``-ulog``), or it sent something that is not the stream."""

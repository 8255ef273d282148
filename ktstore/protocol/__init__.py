"""Kyoto Tycoon's wire formats as pure functions over bytes (no sockets, threads or clocks).

Shared by the client, the built-in server and any future asyncio client:

* :mod:`~ktstore.protocol.limits` -- size and time limits (DATA_MAX_SIZE, LINE_MAX, XTMAX...)
* :mod:`~ktstore.protocol.binary` -- binary frames 0xB4/0xB8/0xB9/0xBA/0xBF, both sides
* :mod:`~ktstore.protocol.tsv` -- TSV bodies, colenc B/Q/U, form decoding, the server's colenc choice
* :mod:`~ktstore.protocol.http` -- HTTP heads and bodies, ktserver-style responses
* :mod:`~ktstore.protocol.expire` -- xt rules, expire_time conversion, strmktime
* :mod:`~ktstore.protocol.dumps` -- KC varints, mapdump/arraydump, counter values
* :mod:`~ktstore.protocol.rpc` -- RV codes, HTTP statuses, ktserver's ERROR texts

Parsers follow one convention: ``parse_x(buf, pos) -> (result, end)``, raising
:class:`~ktstore.errors.Incomplete` (with the bytes needed from ``pos``) until the
message is complete and :class:`~ktstore.errors.ProtocolError` for malformed input.
Submodules are imported on demand; this package itself loads nothing.
"""

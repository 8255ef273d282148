"""Size and time limits of Kyoto Tycoon's protocols, in one place.

The values are ktserver's own (KT 0.9.56 / KC 1.2.76), so that our server refuses
exactly what the real one refuses and the client can reject an argument before
sending something the server would drop the connection over.
"""

from __future__ import annotations

#: Largest key, value or script name the binary protocol accepts (``DATAMAXSIZ``).
#: A larger size field is an error, not a reason to allocate.
DATA_MAX_SIZE = 1 << 28

#: Largest HTTP body ktserver reads (``RECVMAXSIZ``); beyond that it answers 413.
HTTP_BODY_MAX = 1 << 28

#: Longest HTTP line (request/status line or header) ktserver reads (``LINEBUFSIZ`` - 1).
LINE_MAX = 8191

#: Largest expiration time a record can store (5 bytes); reaching it means "never".
XTMAX = (1 << 40) - 1

#: Signed 64-bit bounds: INT64MAX is the "no expiration" xt on the wire.
INT64MAX = (1 << 63) - 1
INT64MIN = -(1 << 63)

#: Below this many seconds a client expire_time is relative, at or above an epoch time
#: (180 days, the convention of the ukt client).
RELATIVE_XT_LIMIT = 180 * 24 * 3600

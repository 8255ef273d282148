"""The Lua 5.1 scripting host of ktstore-server (ktserver's ``-scr`` option).

See :mod:`ktstore.server.scripting.host` for the contract with the server.
"""

from ktstore.server.scripting.cancel import client_gone
from ktstore.server.scripting.host import (
    DEFAULT_TOTAL_MEMORY,
    RV_INTERNAL,
    RV_INVALID,
    RV_LOGIC,
    RV_NOIMPL,
    RV_SUCCESS,
    RV_TIMEOUT,
    CallResult,
    ScriptHost,
)

__all__ = [
    "client_gone",
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

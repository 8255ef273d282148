"""Client methods that run as Lua procedures of ``lua/kt.lua`` on the server.

``KyotoTycoon`` inherits them; see docs/architecture.md for the members of the client
this mixin relies on.
"""

from __future__ import annotations


class LuaMethods:
    """Mixin of the Lua-backed client methods (script, touch, Hash, Queue, ...)."""

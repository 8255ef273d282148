"""Old import path of :mod:`ktstore.client.lua` (kept working)."""

from ktstore.client.lua import *  # noqa: F401,F403
from ktstore.client.lua import _integer, _number, _raw  # noqa: F401

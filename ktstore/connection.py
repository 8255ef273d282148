"""Old import path of :mod:`ktstore.client.connection` (kept working)."""

from ktstore.client.connection import *  # noqa: F401,F403
from ktstore.client.connection import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, _fork_gen  # noqa: F401

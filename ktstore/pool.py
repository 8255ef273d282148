"""Old import path of :mod:`ktstore.client.pool` (kept working)."""

from ktstore.client.pool import *  # noqa: F401,F403
from ktstore.client.pool import FRESH  # noqa: F401

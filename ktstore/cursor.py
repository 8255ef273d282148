"""Old import path of :mod:`ktstore.client.cursor` (kept working)."""

from ktstore.client.cursor import *  # noqa: F401,F403

"""Old import path of :mod:`ktstore.client.containers` (kept working)."""

from ktstore.client.containers import *  # noqa: F401,F403
from ktstore.client.containers import BPOP_SLICE  # noqa: F401

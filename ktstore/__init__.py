"""ktstore: a fast, robust Python client, server and model layer for Kyoto Tycoon."""

__version__ = "0.1.0"

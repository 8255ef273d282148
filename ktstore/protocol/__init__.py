"""Kyoto Tycoon's wire formats as pure functions over bytes (no sockets, no threads)."""

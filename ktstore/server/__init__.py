"""ktstore-server: a Kyoto Tycoon compatible server."""

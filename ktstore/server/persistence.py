"""The file side of file databases: format checks, the single-server lock, the LMDB
environment, and the converter from the old ``ktstore-sqlite-1`` format.

Why a module of its own: what a file *is* (ours, Kyoto Cabinet's, our old SQLite
mirror, something else), who may open it, and how it is opened are questions
the engine (:mod:`ktstore.server.filedb`) should not mix with record logic.

File format ``ktstore-lmdb-1``: one LMDB environment in a single file at the
database path (no ``-lock`` file: the server is the only user, which
:class:`FileLock` enforces), with three named tables: ``records`` (the stored
key, see :mod:`ktstore.server.filedb`, to a 5-byte big-endian xt plus the
value), ``expiry`` (see :mod:`ktstore.server.expiry`) and ``meta``
(``format``, ``kind``, ``count``, ``size``).

Convert an old file with the server stopped::

    python -m ktstore.server.persistence convert PATH

which keeps the old file as ``PATH.sqlite-1.bak``.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shlex
import sys
import time
from typing import Any

import lmdb

from ktstore.server.dbspec import DatabaseOpenError

__all__ = ["FORMAT", "LEGACY_FORMAT", "FileLock", "open_environment", "convert_sqlite", "main"]

FORMAT = "ktstore-lmdb-1"
LEGACY_FORMAT = "ktstore-sqlite-1"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_KC_MAGIC = b"KC\n"
_LMDB_MAGIC = (0xBEEFC0DE).to_bytes(4, sys.byteorder)  # MDB_meta.mm_magic after the page header
#: The address space reserved for a file (the file itself grows only as needed).
MAP_SIZE = (1 << 40) if sys.maxsize > 2**32 else (1 << 30)


def convert_command(path: str) -> str:
    """The exact shell command that converts an old-format file at ``path``."""
    return f"python -m ktstore.server.persistence convert {shlex.quote(path)}"


def check_file(path: str) -> bool:
    """Whether ``path`` holds a database of ours (``False``: absent or empty, to be
    created).  Raises :class:`DatabaseOpenError` for any other file."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise DatabaseOpenError(f"{path}: cannot open: {e.strerror}") from e
    if not head:
        return False
    if head.startswith(_KC_MAGIC):
        raise DatabaseOpenError(
            f"{path}: this is a Kyoto Cabinet database file; ktstore-server keeps file "
            "databases in its own format and cannot open it (export it with "
            "kctreemgr/kchashmgr and load it through a client)"
        )
    if head.startswith(_SQLITE_MAGIC):
        raise DatabaseOpenError(
            f"{path}: this file is in the old {LEGACY_FORMAT} format; stop the server and "
            f"convert it with: {convert_command(path)}"
        )
    if len(head) < 20 or head[16:20] != _LMDB_MAGIC:
        raise DatabaseOpenError(f"{path}: not a ktstore database file")
    return True


def _lock_holder(fd: int) -> str:
    """Who holds the lock on the file of ``fd``: ``pid N (command)``, read from
    /proc/locks (Linux); ``another process`` where that cannot be told."""
    st = os.fstat(fd)
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return "another process"
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == dev:
            pid = parts[4]
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            except OSError:
                cmd = ""
            return f"pid {pid}" + (f" ({cmd})" if cmd else "")
    return "another process"


class FileLock:
    """An exclusive ``flock`` on the database file, held while the database is open.

    ktserver locks its file too: a second server on the same file must be
    refused at start, not corrupt it.  ``flock`` locks belong to the open file,
    so a second open in the same process is refused as well.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _lock_holder(self.fd)
            os.close(self.fd)
            raise DatabaseOpenError(
                f"{path}: the database file is locked by {holder}; "
                "another server already has it open"
            ) from e

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = -1


def open_environment(path: str) -> Any:
    """Open (or create) the LMDB environment of a database file.

    ``lock=False``: no lock file, the server is the file's only user and
    serializes access with the database lock.  ``sync=False``: a commit reaches
    the OS page cache, so it survives a crash of the process (SIGKILL) but not of
    the machine, as ktserver without ``-oas``; ``synchronize`` flushes.
    ``writemap=False``: pages are written with ``pwrite``, so a full disk makes
    the commit fail cleanly instead of faulting the process.
    """
    return lmdb.open(
        path,
        subdir=False,
        map_size=MAP_SIZE,
        max_dbs=4,
        lock=False,
        sync=False,
        metasync=False,
        writemap=False,
        readahead=False,
        meminit=False,
    )


def convert_sqlite(path: str) -> int:
    """Convert a ``ktstore-sqlite-1`` file at ``path`` into the current format, in
    place (expired records are dropped); the old file is kept as ``PATH.sqlite-1.bak``.
    Returns the record count."""
    import sqlite3

    from ktstore.server.filedb import FileDatabase

    with open(path, "rb") as f:
        if not f.read(16).startswith(_SQLITE_MAGIC):
            raise DatabaseOpenError(f"{path}: not a {LEGACY_FORMAT} file")
    src = sqlite3.connect(path)
    try:
        meta = dict(src.execute("SELECT name, value FROM meta").fetchall())
        if meta.get("format") != LEGACY_FORMAT:
            raise DatabaseOpenError(f"{path}: unknown format {meta.get('format')!r}")
        kind = meta.get("kind", "tree")
        tmp = path + ".converting"
        for leftover in (tmp,):
            if os.path.exists(leftover):
                os.remove(leftover)
        db = FileDatabase(tmp + "#type=" + kind)
        n = 0
        batch: list[tuple[bytes, bytes, int]] = []
        now = int(time.time())
        for key, value, xt in src.execute("SELECT key, value, xt FROM records"):
            if now > xt:
                continue  # expired: the old engine dropped these when it loaded the file
            batch.append((bytes(key), bytes(value), int(xt)))
            if len(batch) >= 10_000:
                n += db.set_bulk_xt(batch)
                batch = []
        n += db.set_bulk_xt(batch)
        db.synchronize(hard=True)
        db.close()
    finally:
        src.close()
    backup = path + ".sqlite-1.bak"
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, backup + suffix)
    os.replace(path, backup)
    os.replace(tmp, path)
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ktstore.server.persistence",
        description="Convert ktstore-server file databases to the current format.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help=f"convert a {LEGACY_FORMAT} file in place")
    conv.add_argument("path", nargs="+")
    args = parser.parse_args(argv)
    status = 0
    for path in args.path:
        try:
            n = convert_sqlite(path)
        except (DatabaseOpenError, OSError) as e:
            print(f"{path}: {e}", file=sys.stderr)
            status = 1
            continue
        print(f"{path}: {n} records converted to {FORMAT} (old file: {path}.sqlite-1.bak)")
    return status


if __name__ == "__main__":
    sys.exit(main())

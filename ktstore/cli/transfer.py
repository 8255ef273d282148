"""``ktstore export`` and ``ktstore import``: JSON-lines dumps of one or all databases.

The line format is :mod:`ktstore.cli.jsonl` (exact bytes, expiry kept).

Export lists the keys of a database (``match_prefix``), then reads them in batches
with ``get_bulk_details`` (one binary round trip per batch, value and xt together);
a key that expires or is removed between the two steps is simply not exported.

Import reads the whole input once to validate it (a damaged line is reported by its
number and *nothing* is written), then writes it in batches with
``set_bulk_details``.  Input that cannot be read twice (a pipe) is spooled to a
temporary file first.
"""

from __future__ import annotations

import io
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import IO, Any

import click

from ktstore.cli.errors import BAD_INPUT, USAGE, CliFailure
from ktstore.cli.jsonl import BadLine, Record, dump_record, load_record
from ktstore.cli.main import App, db_option, handles_errors, main, pass_app
from ktstore.cli.progress import meter, note

BATCH = 1000


def _batches(keys: list[bytes], size: int) -> Iterator[list[bytes]]:
    for i in range(0, len(keys), size):
        yield keys[i : i + size]


@main.command(name="export")
@click.argument("output", type=click.Path(dir_okay=False, allow_dash=True), default="-")
@db_option
@click.option("--all", "all_dbs", is_flag=True, help="Every database (the default without --db).")
@click.option("--prefix", "-p", default=None, help="Only keys starting with this prefix.")
@click.option("--batch", type=click.IntRange(1, 100000), default=BATCH, show_default=True)
@pass_app
@handles_errors
def export(
    app: App, output: str, db: int | None, all_dbs: bool, prefix: str | None, batch: int
) -> None:
    """Write records as JSON lines to OUTPUT (default: stdout).

    Every database unless --db is given.  Keys and values that are not UTF-8 are
    written base64-encoded (key64/value64), so any data round-trips exactly.
    """
    if db is not None and all_dbs:
        raise CliFailure("give --db or --all, not both", USAGE)
    kt = app.client
    dbs = list(range(len(kt.databases))) if db is None else [db]
    bprefix = (prefix or "").encode("utf-8", "surrogateescape")
    stream: IO[str]
    stream = (
        io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n", write_through=False)
        if output == "-"
        else open(output, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
    )
    try:
        keys_by_db = [(d, kt.match_prefix(bprefix, db=d)) for d in dbs]
        total = sum(len(k) for _, k in keys_by_db)
        with meter(total, "export", app.show_progress) as m:
            for d, keys in keys_by_db:
                for chunk in _batches(keys, batch):
                    rows = kt.get_bulk_details([(d, k) for k in chunk], decode_values=False)
                    nbytes = 0
                    for rdb, k, v, xt in rows:
                        line = dump_record(Record(rdb, k, v, xt))
                        stream.write(line + "\n")
                        nbytes += len(k) + len(v)
                    m.advance(len(rows), nbytes)
            stream.flush()
        note(
            m.summary("exported") + f" from {len(dbs)} database{'s' if len(dbs) > 1 else ''}",
            app.quiet,
        )
    finally:
        if output == "-":
            stream.detach()  # leave sys.stdout usable
        else:
            stream.close()


def _seekable_input(path: str) -> IO[bytes]:
    """The input as a binary file that can be read twice (standard input is spooled
    to a temporary file, removed when closed)."""
    if path != "-":
        try:
            return open(path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise CliFailure(f"cannot read {path}: {exc.strerror}", USAGE) from None
    spool = tempfile.TemporaryFile()
    shutil.copyfileobj(sys.stdin.buffer, spool)
    spool.seek(0)
    return spool


def _records(stream: IO[bytes]) -> Iterator[Record]:
    for lineno, line in enumerate(stream, 1):
        record = load_record(line, lineno)
        if record is not None:
            yield record


def _validate(stream: IO[bytes], ndbs: int, target: int | None) -> int:
    """Parse every line; the number of records.  BadLine on the first bad line."""
    n = 0
    for lineno, line in enumerate(stream, 1):
        record = load_record(line, lineno)
        if record is None:
            continue
        db = record.db if target is None else target
        if db >= ndbs:
            raise BadLine(lineno, f"database {db} does not exist (the server has {ndbs})")
        n += 1
    return n


@main.command(name="import")
@click.argument("input_path", metavar="INPUT", default="-")
@db_option
@click.option("--batch", type=click.IntRange(1, 100000), default=BATCH, show_default=True)
@click.option("--check", is_flag=True, help="Only validate the input; write nothing.")
@pass_app
@handles_errors
def import_(app: App, input_path: str, db: int | None, batch: int, check: bool) -> None:
    """Load JSON-lines records (as written by export) from INPUT (default: stdin).

    Records go to the database they came from, or all to --db.  The whole input is
    validated before anything is written: a bad line is reported by its number
    (exit code 5) and the server is left unchanged.
    """
    kt = app.client
    stream = _seekable_input(input_path)
    try:
        ndbs = len(kt.databases)
        try:
            total = _validate(stream, ndbs, db)
        except BadLine as exc:
            raise CliFailure(f"{input_path}: {exc} (nothing was imported)", BAD_INPUT) from None
        if check:
            note(f"{input_path}: {total} valid records", app.quiet)
            return
        stream.seek(0)
        with meter(total, "import", app.show_progress) as m:
            pending: list[tuple[int, bytes, bytes, Any]] = []
            nbytes = 0
            for r in _records(stream):
                # export writes absolute times; a negative xt is absolute on the wire
                pending.append(
                    (r.db if db is None else db, r.key, r.value, None if r.xt is None else -r.xt)
                )
                nbytes += len(r.key) + len(r.value)
                if len(pending) >= batch:
                    kt.set_bulk_details(pending, encode_values=False)
                    m.advance(len(pending), nbytes)
                    pending, nbytes = [], 0
            if pending:
                kt.set_bulk_details(pending, encode_values=False)
                m.advance(len(pending), nbytes)
        note(m.summary("imported"), app.quiet)
    finally:
        stream.close()

"""Progress bars and throughput figures for long-running commands.

tqdm draws the bar: one small pure-Python wheel with no dependencies of its own,
which prints a rate and an ETA out of the box and degrades to nothing when stderr is
not a terminal (so logs of cron jobs stay clean).  The bar always goes to stderr:
stdout may be carrying an export.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from tqdm import tqdm


class Meter:
    """Counts items and bytes for the closing throughput line."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.items = 0
        self.nbytes = 0
        self.started = time.perf_counter()

    def advance(self, items: int, nbytes: int = 0) -> None:
        self.items += items
        self.nbytes += nbytes
        self.bar.update(items)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def summary(self, verb: str, unit: str = "records") -> str:
        secs = self.elapsed
        rate = self.items / secs if secs > 0 else 0.0
        text = f"{verb} {self.items} {unit} in {secs:.2f} s ({rate:,.0f} {unit}/s"
        if self.nbytes:
            text += f", {self.nbytes / secs / 1e6 if secs > 0 else 0.0:.1f} MB/s"
        return text + ")"


@contextmanager
def meter(total: int | None, desc: str, enabled: bool | None) -> Iterator[Meter]:
    """A progress bar over ``total`` items (``enabled=None``: only on a terminal)."""
    show = sys.stderr.isatty() if enabled is None else enabled
    bar = tqdm(
        total=total,
        desc=desc,
        unit=" rec",
        disable=not show,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
    )
    try:
        yield Meter(bar)
    finally:
        bar.close()


def note(message: str, quiet: bool) -> None:
    """A status line on stderr (not with ``--quiet``)."""
    if not quiet:
        click.echo(message, err=True)

"""Exit codes of the ``ktstore`` command and the mapping of failures to them.

Scripts can rely on these numbers (they are also listed by ``ktstore --help`` and in
docs/cli.md):

====  =====================================================================
0     success
1     the server answered with an error, or the operation failed there
2     bad usage: unknown option, bad argument, bad ``--url`` / ``KTSTORE_URL``
3     the server cannot be reached (refused, unknown host, timed out)
4     not found: ``get`` or ``rm`` of a key that does not exist
5     bad input data: an ``import`` file line that is not a record
6     a model check found damage, or a rebuild could not complete
====  =====================================================================
"""

from __future__ import annotations

import click

OK = 0
FAILED = 1
USAGE = 2
UNREACHABLE = 3
NOT_FOUND = 4
BAD_INPUT = 5
DAMAGED = 6

EXIT_CODES_HELP = (
    "Exit codes: 0 success, 1 server error, 2 bad usage or URL, 3 server unreachable, "
    "4 key not found, 5 bad import data, 6 model check found damage."
)


class CliFailure(click.ClickException):
    """A failure reported as ``Error: message`` (plus an optional hint) with its exit
    code, and no traceback: the user did nothing a traceback would explain."""

    def __init__(self, message: str, exit_code: int = FAILED, hint: str | None = None) -> None:
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance

"""The ``ktstore`` command line (``ktstore --help``).

:func:`main` is the click group; the console script calls :func:`run`.  Commands live
in :mod:`ktstore.cli.main` (server and records), :mod:`ktstore.cli.transfer`
(export/import) and :mod:`ktstore.cli.models` (model maintenance); exit codes are in
:mod:`ktstore.cli.errors`.
"""

from ktstore.cli.main import main, run

__all__ = ["main", "run"]

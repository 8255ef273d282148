"""``python -m ktstore.cli``: the ``ktstore`` command without the console script."""

from ktstore.cli.main import run

run()

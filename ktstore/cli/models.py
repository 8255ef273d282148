"""``ktstore model check|sweep|rebuild``: index maintenance of models from the shell.

Models are named ``package.module:Class`` (the current directory is importable, as
with ``python -m``).  Each is bound to the server of ``--url`` (records in ``--db``,
index entries in ``--index-db``) and handed to :mod:`ktstore.models.maintenance`.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from ktstore.cli.errors import DAMAGED, USAGE, CliFailure
from ktstore.cli.main import App, handles_errors, main, pass_app
from ktstore.cli.progress import meter, note


def load_model(spec: str) -> Any:
    """The model class named ``module:Class`` (``Class`` may be dotted)."""
    from ktstore.models import Model

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CliFailure(f"{spec!r}: name a model as module:Class", USAGE)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliFailure(f"{spec!r}: cannot import {module_name}: {exc}", USAGE) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliFailure(f"{spec!r}: {module_name} has no {attr}", USAGE) from None
    if not (isinstance(obj, type) and issubclass(obj, Model)):
        raise CliFailure(f"{spec!r} is not a ktstore model class", USAGE)
    return obj


def _bind(app: App, models: list[Any], db: int | None, index_db: int | None) -> None:
    from ktstore.client import KyotoTycoon
    from ktstore.store import Store

    kwargs = app.url.client_kwargs()
    kwargs.setdefault("timeout", 30.0)
    client = KyotoTycoon(**kwargs)
    store = Store(client, db=app.db(db), index_db=index_db)
    for model in models:
        model.bind(store)


_db = click.option("--db", "-d", type=click.IntRange(0, 0xFFFF), default=None, help="Records db.")
_index_db = click.option(
    "--index-db", type=click.IntRange(0, 0xFFFF), default=None, help="Index db (default: --db)."
)
_models = click.argument("specs", nargs=-1, required=True, metavar="MODULE:CLASS...")


@main.group()
def model() -> None:
    """Check, sweep and rebuild the indexes of models (named module:Class)."""


def _run(app: App, specs: tuple[str, ...], db: Any, index_db: Any) -> list[Any]:
    """Import the models and bind them to the server of ``--url``."""
    models = [load_model(s) for s in specs]
    _bind(app, models, db, index_db)
    return models


@model.command()
@_models
@_db
@_index_db
@click.option("--show", type=click.IntRange(min=0), default=10, help="Damaged keys to list.")
@pass_app
@handles_errors
def check(app: App, specs: tuple[str, ...], db: Any, index_db: Any, show: int) -> None:
    """Report damaged indexes (read-only); exit code 6 when something is wrong."""
    from ktstore.models.maintenance import check as check_model

    models = _run(app, specs, db, index_db)
    damaged = 0
    with meter(len(models), "check", app.show_progress) as m:
        for cls in models:
            r = check_model(cls)
            m.advance(1)
            state = "ok" if r.ok else "DAMAGED"
            click.echo(
                f"{cls.__name__}: {state}: {r.records} records, {r.entries} index entries, "
                f"{len(r.orphan_entries)} orphan entries, {len(r.missing_entries)} missing, "
                f"{len(r.unreadable)} unreadable, {len(r.orphan_containers)} orphan containers"
            )
            for key in r.orphan_entries[:show]:
                click.echo(f"  orphan entry {key!r}")
            for pk, key in r.missing_entries[:show]:
                click.echo(f"  record {pk!r} lacks {key!r}")
            for pk in r.unreadable[:show]:
                click.echo(f"  record {pk!r} does not decode")
            damaged += not r.ok
    if damaged:
        raise CliFailure(
            f"{damaged} of {len(models)} models damaged",
            DAMAGED,
            "`ktstore model sweep` removes orphans, `ktstore model rebuild` restores entries",
        )


@model.command()
@_models
@_db
@_index_db
@pass_app
@handles_errors
def sweep(app: App, specs: tuple[str, ...], db: Any, index_db: Any) -> None:
    """Remove index entries and containers whose record is gone."""
    from ktstore.models.maintenance import sweep as sweep_model

    models = _run(app, specs, db, index_db)
    with meter(len(models), "sweep", app.show_progress) as m:
        for cls in models:
            n = sweep_model(cls)
            m.advance(1)
            click.echo(f"{cls.__name__}: removed {n} orphaned entries")
    note(m.summary("swept", "models"), app.quiet)


@model.command()
@_models
@_db
@_index_db
@pass_app
@handles_errors
def rebuild(app: App, specs: tuple[str, ...], db: Any, index_db: Any) -> None:
    """Rewrite every record's index entries, then sweep; exit code 6 when some record
    could not be indexed (undecodable, or a unique value held twice)."""
    from ktstore.models.maintenance import rebuild as rebuild_model

    models = _run(app, specs, db, index_db)
    failed = 0
    with meter(len(models), "rebuild", app.show_progress) as m:
        for cls in models:
            r = rebuild_model(cls)
            m.advance(1)
            click.echo(
                f"{cls.__name__}: {'ok' if r.ok else 'INCOMPLETE'}: {r.records} records, "
                f"{r.rewritten} rewritten, {r.removed_entries} orphaned entries removed, "
                f"{len(r.unreadable)} unreadable, {len(r.unique_conflicts)} unique conflicts"
            )
            for pk, fieldname in r.unique_conflicts:
                click.echo(f"  record {pk!r}: {fieldname} value is taken by another record")
            failed += not r.ok
    note(m.summary("rebuilt", "models"), app.quiet)
    if failed:
        raise CliFailure(f"{failed} of {len(models)} models could not be fully rebuilt", DAMAGED)

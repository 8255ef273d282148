"""The ``ktstore`` command: the group, its global options and failure handling.

click parses the arguments: it is the de-facto standard (used by Flask, pip-tools,
black...), a pure-Python wheel with no dependencies, and gives subcommands, ``--help``
on every level, environment-variable defaults (``KTSTORE_URL``) and a test runner
for free.  typer would add a dependency on top of click for type-hint sugar we do
not need.

The commands use only the public :class:`~ktstore.client.KyotoTycoon` API, so the
client can change inside without breaking them.  Every ktstore error is turned into a
one-line message and a documented exit code (see :mod:`ktstore.cli.errors`).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ktstore.cli.errors import (
    EXIT_CODES_HELP,
    FAILED,
    NOT_FOUND,
    UNREACHABLE,
    USAGE,
    CliFailure,
)
from ktstore.errors import (
    InvalidArgument,
    KTConnectionError,
    KyotoTycoonError,
    ScriptError,
    ServerError,
)
from ktstore.urls import KtURL, parse_url

DEFAULT_URL = "kt://127.0.0.1:1978/0"

F = TypeVar("F", bound=Callable[..., Any])


class App:
    """What every command needs: the parsed URL and a client made on first use."""

    def __init__(self, url: KtURL, quiet: bool, progress: bool | None) -> None:
        self.url = url
        self.quiet = quiet
        self.progress = progress
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from ktstore.client import KyotoTycoon

            kwargs = self.url.client_kwargs()
            # the command line deals in exact bytes: keys and values are never decoded
            kwargs["decode_keys"] = False
            kwargs.setdefault("timeout", 10.0)
            self._client = KyotoTycoon(**kwargs)
        return self._client

    @property
    def show_progress(self) -> bool | None:
        """Whether to draw progress bars: never with --quiet, else as --progress says,
        else (None) only when stderr is a terminal."""
        return False if self.quiet else self.progress

    def db(self, db: int | None) -> int:
        return self.url.db if db is None else db

    def close(self) -> None:
        if self._client is not None:
            self._client.close_all()


def _friendly(exc: KyotoTycoonError, url: KtURL) -> CliFailure:
    """The message and exit code a user sees for a ktstore error."""
    if isinstance(exc, KTConnectionError):
        return CliFailure(
            f"cannot reach the server at {url}: {exc}",
            UNREACHABLE,
            "is it running? Point --url or KTSTORE_URL at it (kt://host:port/db)",
        )
    if isinstance(exc, ScriptError):
        return CliFailure(
            f"the server's script failed: {exc}",
            FAILED,
            "ktstore's procedures need its kt.lua on the server: ktstore-server -ktlua, or "
            "ktserver -scr PATH, where PATH is printed by: "
            "python -c 'import ktstore.resources as r; print(r.kt_lua_path())'",
        )
    if isinstance(exc, ServerError):
        return CliFailure(f"the server answered with an error: {exc}", FAILED)
    if isinstance(exc, InvalidArgument):
        return CliFailure(str(exc), USAGE)
    return CliFailure(f"{type(exc).__name__}: {exc}", FAILED)


def handles_errors(fn: F) -> F:
    """Run a command with ktstore errors turned into friendly failures."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        app = click.get_current_context().find_object(App)
        try:
            return fn(*args, **kwargs)
        except KyotoTycoonError as exc:
            raise _friendly(exc, app.url if app else parse_url(DEFAULT_URL)) from None
        except BrokenPipeError:
            # `ktstore ls | head`: the reader left; nothing is wrong
            sys.stderr.close()
            raise SystemExit(0) from None

    return wrapper  # type: ignore[return-value]


pass_app = click.make_pass_decorator(App)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES_HELP,
)
@click.option(
    "--url",
    envvar="KTSTORE_URL",
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help="Server as kt://host:port/db?serializer=...&timeout=... (env: KTSTORE_URL).",
)
@click.option("--timeout", type=float, default=None, help="Seconds to wait for the server.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or status lines.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Force progress bars on or off (default: only on a terminal).",
)
@click.version_option(package_name="ktstore", prog_name="ktstore")
@click.pass_context
def main(
    ctx: click.Context, url: str, timeout: float | None, quiet: bool, progress: bool | None
) -> None:
    """Look at a Kyoto Tycoon server, dump and load its data, check models.

    Works with a real ktserver and with ktstore-server.  Keys and values are handled
    as exact bytes; text on the command line is UTF-8.
    """
    try:
        parsed = parse_url(url)
    except InvalidArgument as exc:
        raise CliFailure(f"bad server URL: {exc}", USAGE) from None
    if timeout is not None:
        if timeout <= 0:
            raise CliFailure("--timeout must be a positive number of seconds", USAGE)
        parsed = KtURL(
            **{**parsed.__dict__, "timeout": timeout, "given": parsed.given | {"timeout"}}
        )
    app = App(parsed, quiet, progress)
    ctx.obj = app
    ctx.call_on_close(app.close)


def _db_exists(app: App, db: int) -> None:
    """After a miss on the binary protocol (which reports no error for a database
    that does not exist): fail clearly if ``db`` is not one of the server's."""
    n = len(app.client.databases)
    if db >= n:
        raise CliFailure(f"database {db} does not exist (the server has {n}: 0..{n - 1})", USAGE)


def _key(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _out(data: bytes, newline: bool = True) -> None:
    stream = sys.stdout.buffer
    stream.write(data + (b"\n" if newline else b""))
    stream.flush()


def _json_safe(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


db_option = click.option(
    "--db", "-d", type=click.IntRange(0, 0xFFFF), default=None, help="Database index."
)


# -- looking at a server ----------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
@handles_errors
def info(app: App, as_json: bool) -> None:
    """Summary of the server: version, databases, records, script."""
    kt = app.client
    report = kt.report()
    dbs = []
    for i, path in enumerate(kt.databases):
        status = kt.status(i)
        dbs.append(
            {
                "db": i,
                "path": path,
                "count": status.get("count"),
                "size": status.get("size"),
                "type": status.get("realtype", status.get("type")),
            }
        )
    script = _script_version(kt)
    summary = {
        "url": str(app.url),
        "version": report.get("version") or report.get("conf_kt_version"),
        "databases": dbs,
        "ktstore_script": script,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    click.echo(f"server   {summary['url']}  version {summary['version']}")
    click.echo(
        "script   "
        + (f"ktstore kt.lua (version {script})" if script else "no ktstore kt.lua loaded")
    )
    for d in dbs:
        click.echo(f"db {d['db']:<5} {d['count']:>10} records {d['size']:>12} bytes  {d['path']}")


def _script_version(kt: Any) -> str | None:
    """The version ktstore's kt.lua reports, or None when another (or no) script runs."""
    try:
        out = kt.raw_script("ktstoreversion")
    except ServerError:
        return None
    version = (out or {}).get(b"version")
    return None if version is None else version.decode("ascii", "replace")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
@handles_errors
def report(app: App, as_json: bool) -> None:
    """The server's full report (every counter, one per line)."""
    data = app.client.report()
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    for k in sorted(data):
        click.echo(f"{k}\t{data[k]}")


# -- records ----------------------------------------------------------------------------


@main.command()
@click.argument("key")
@db_option
@click.option("-n", "--raw", is_flag=True, help="Exact bytes, no newline added.")
@pass_app
@handles_errors
def get(app: App, key: str, db: int | None, raw: bool) -> None:
    """Print the value of KEY (exit code 4 when it does not exist)."""
    value = app.client.get_bytes(_key(key), db=app.db(db))
    if value is None:
        _db_exists(app, app.db(db))
        raise CliFailure(f"no such key: {key!r}", NOT_FOUND)
    _out(value, newline=not raw)


@main.command(name="set")
@click.argument("key")
@click.argument("value", required=False)
@db_option
@click.option(
    "--expire", "-x", type=click.IntRange(min=1), default=None, help="Expire in N seconds."
)
@pass_app
@handles_errors
def set_(app: App, key: str, value: str | None, db: int | None, expire: int | None) -> None:
    """Store VALUE at KEY (VALUE omitted or '-': read the bytes from stdin)."""
    data = sys.stdin.buffer.read() if value in (None, "-") else _key(value)
    if not app.client.set_bytes(_key(key), data, db=app.db(db), expire_time=expire):
        _db_exists(app, app.db(db))
        raise CliFailure(f"the server did not store {key!r}", FAILED)


@main.command()
@click.argument("keys", nargs=-1, required=True)
@db_option
@click.option("-f", "--force", is_flag=True, help="No error when a key does not exist.")
@pass_app
@handles_errors
def rm(app: App, keys: tuple[str, ...], db: int | None, force: bool) -> None:
    """Remove KEYS (exit code 4 when one did not exist, unless --force)."""
    removed = app.client.remove_bulk([_key(k) for k in keys], db=app.db(db))
    if removed != len(set(keys)):
        _db_exists(app, app.db(db))
    if removed != len(set(keys)) and not force:
        raise CliFailure(f"removed {removed} of {len(set(keys))} keys: not found", NOT_FOUND)


def _matching(app: App, prefix: str | None, regex: str | None, db: int, limit: int | None) -> Any:
    if prefix is not None and regex is not None:
        raise CliFailure("give a prefix or --regex, not both", 2)
    if regex is not None:
        return app.client.match_regex(_key(regex), max_keys=limit, db=db)
    return app.client.match_prefix(_key(prefix or ""), max_keys=limit, db=db)


@main.command(name="ls")
@click.argument("prefix", required=False)
@click.option("--regex", "-r", default=None, help="POSIX extended regex instead of a prefix.")
@click.option("--limit", "-l", type=click.IntRange(min=1), default=None, help="At most N keys.")
@click.option("-0", "--null", "nul", is_flag=True, help="End keys with NUL (for xargs -0).")
@db_option
@pass_app
@handles_errors
def ls(
    app: App, prefix: str | None, regex: str | None, limit: int | None, nul: bool, db: int | None
) -> None:
    """List keys starting with PREFIX (default: all), or matching --regex."""
    end = b"\0" if nul else b"\n"
    stream = sys.stdout.buffer
    for k in _matching(app, prefix, regex, app.db(db), limit):
        stream.write(k + end)
    stream.flush()


main.add_command(ls, name="keys")


@main.command()
@click.argument("prefix", required=False)
@click.option("--regex", "-r", default=None, help="Count keys matching this regex.")
@db_option
@pass_app
@handles_errors
def count(app: App, prefix: str | None, regex: str | None, db: int | None) -> None:
    """Number of records (or of keys with PREFIX / matching --regex)."""
    if prefix is None and regex is None:
        click.echo(app.client.count(db=app.db(db)))
    else:
        click.echo(len(_matching(app, prefix, regex, app.db(db), None)))


@main.command()
@click.argument("name")
@click.argument("inputs", nargs=-1, metavar="[NAME=VALUE]...")
@click.option("--json", "as_json", is_flag=True, help="Print the outputs as a JSON object.")
@pass_app
@handles_errors
def script(app: App, name: str, inputs: tuple[str, ...], as_json: bool) -> None:
    """Call the server's Lua procedure NAME with inputs NAME=VALUE; print its outputs."""
    data: dict[bytes, bytes] = {}
    for item in inputs:
        k, sep, v = item.partition("=")
        if not sep:
            raise CliFailure(f"input {item!r} is not NAME=VALUE", 2)
        data[_key(k)] = _key(v)
    out = app.client.raw_script(name, data) or {}
    if as_json:
        click.echo(
            json.dumps({_json_safe(k): _json_safe(v) for k, v in sorted(out.items())}, indent=2)
        )
        return
    for k, v in sorted(out.items()):
        _out(k + b"\t" + v)


def _register() -> None:
    # imported for their side effect: the commands attach themselves to `main`
    from ktstore.cli import models, transfer  # noqa: F401


_register()


def run() -> None:
    """Console-script entry point."""
    main(prog_name="ktstore")


__all__ = ["App", "DEFAULT_URL", "FAILED", "handles_errors", "main", "pass_app", "run"]

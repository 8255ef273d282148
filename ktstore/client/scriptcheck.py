"""Does the server run ktstore's ``lua/kt.lua``?  Asked once per client, before its
first container call.

Why: a server may run another script under the same procedure names (ukt's own
``kt.lua``, which every ukt deployment loads), and some of those calls *succeed* with
another meaning: ``lextend`` answers 0 and stores nothing, ``sadd`` reports 2 members
added where ktstore's ``Set`` will never find them.  Only the script can say whose it
is, so the first container call of a client is preceded by one ``ktstoreversion`` call
(answered by every version of our script, also after the ukt procedures were added);
a failed or foreign answer raises :class:`ScriptNotLoaded`, which says what to load.
A server without any script gets the same error.  The answer is cached on the client
(``_ktstore_script``), so the check costs one round trip per client.

Written as a command wrapper (:func:`ensure_script`), so the sync client, the asyncio
client and the failover client run it through their own ``execute_command``.  A
pipeline cannot make the extra round trip: its container calls go unchecked (a
client's first container call normally comes before its first pipeline).
"""

from __future__ import annotations

from typing import Any

from ktstore.client.command import Command, Program
from ktstore.errors import ScriptError

__all__ = ["ScriptNotLoaded", "HINT", "ensure_script", "script_version_command"]

#: The procedure every version of ktstore's kt.lua answers with a ``version`` output.
VERSION_PROCEDURE = "ktstoreversion"

HINT = (
    "load ktstore's script: `ktserver -scr <path>` where <path> is "
    "ktstore.resources.kt_lua_path() (lua/kt.lua in a source checkout), or run "
    "`ktstore-server -ktlua`"
)


class ScriptNotLoaded(ScriptError):
    """The server does not run ktstore's ``kt.lua`` (no script, or another one such
    as ukt's): container calls would fail or, worse, do something else."""


def script_version_command(kt: Any) -> Command:
    """``ktstoreversion``: its value is the script's version (``str``), or ``None``
    when the server has no such procedure (no script, or someone else's)."""

    def finish(out: Any) -> str | None:
        version = dict(out or ()).get(b"version")
        return None if version is None else version.decode("utf-8", "replace")

    return kt.script_command(VERSION_PROCEDURE, []).then(finish).catch(ScriptError, _none)


def _none(exc: BaseException) -> None:
    return None


def _is_pipeline(kt: Any) -> bool:
    from ktstore.client.pipeline import _PipelineBase

    return isinstance(kt, _PipelineBase)


def ensure_script(kt: Any, runnable: Command | Program, what: str = "") -> Command | Program:
    """``runnable`` as is once ``kt`` is known to run ktstore's script; before that, a
    program that asks the server first and raises :class:`ScriptNotLoaded` if not."""
    if getattr(kt, "_ktstore_script", None) is not None or _is_pipeline(kt):
        return runnable
    return _checked(kt, runnable, what)


def _checked(kt: Any, runnable: Command | Program, what: str) -> Program:
    try:
        version = yield script_version_command(kt)
        if version is None:
            call = f"{what}: " if what else ""
            raise ScriptNotLoaded(
                f"{call}the server does not run ktstore's kt.lua (no `ktstoreversion` "
                f"procedure: no script, or another one such as ukt's); {HINT}",
                501,
                VERSION_PROCEDURE,
            )
        kt._ktstore_script = version
    except BaseException:
        if runnable.__class__ is not Command:
            runnable.close()  # type: ignore[union-attr]
        raise
    if runnable.__class__ is Command:
        return (yield runnable)  # type: ignore[misc]
    return (yield from runnable)  # type: ignore[misc]

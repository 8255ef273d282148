"""The ``ktstore`` command, run for real in a subprocess against a server.

The servers come from ktstore's own pytest plugin (``ktstore_server``,
``ktstore_server_factory``), so these tests also check the fixtures users get.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ktstore import KyotoTycoon
from ktstore.embedded import find_free_port
from ktstore.protocol.limits import XTMAX
from ktstore.testing import ThrowawayServer

_SCRIPT = Path(sys.executable).with_name("ktstore")
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "ktstore.cli"]


def ktstore(
    url: str | None, *args: str, input: bytes | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "KTSTORE_URL"}
    if url is not None:
        env["KTSTORE_URL"] = url
    return subprocess.run(
        [*COMMAND, *args], env=env, input=input, capture_output=True, timeout=60, cwd=cwd
    )


def ok(result: subprocess.CompletedProcess[bytes]) -> bytes:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def test_help_lists_commands_and_exit_codes() -> None:
    out = ok(ktstore(None, "--help")).decode()
    for command in ("info", "report", "get", "set", "rm", "ls", "keys", "count", "export"):
        assert command in out
    for command in ("import", "script", "model"):
        assert command in out
    assert "KTSTORE_URL" in out and "Exit codes" in out
    assert "check" in ok(ktstore(None, "model", "--help")).decode()


def test_get_set_rm_ls_count(ktstore_server: ThrowawayServer) -> None:
    url = ktstore_server.url
    ok(ktstore(url, "set", "user:1", "Ada"))
    ok(ktstore(url, "set", "user:2", "-", input=b"\x00\xffbinary"))
    ok(ktstore(url, "--url", url.replace("/0", "/1"), "set", "other", "x"))
    ok(ktstore(url, "set", "--db", "1", "tmp", "y", "--expire", "60"))
    assert ok(ktstore(url, "get", "user:1")) == b"Ada\n"
    assert ok(ktstore(url, "get", "--raw", "user:2")) == b"\x00\xffbinary"
    # database 0 is a hash database: no key order
    assert sorted(ok(ktstore(url, "ls")).splitlines()) == [b"user:1", b"user:2"]
    assert ok(ktstore(url, "keys", "user:", "--limit", "1")) in (b"user:1\n", b"user:2\n")
    assert ok(ktstore(url, "ls", "--regex", "2$")) == b"user:2\n"
    assert ok(ktstore(url, "ls", "-d", "1", "-0")).split(b"\0") in (
        [b"other", b"tmp", b""],
        [b"tmp", b"other", b""],
    )
    assert ok(ktstore(url, "count")) == b"2\n"
    assert ok(ktstore(url, "count", "user:")) == b"2\n"
    assert ok(ktstore(url, "count", "--db", "1")) == b"2\n"
    kt = ktstore_server.client()
    assert kt.expire_time("other", db=1) == XTMAX
    assert kt.expire_time("tmp", db=1) < XTMAX
    ok(ktstore(url, "rm", "user:1"))
    assert ok(ktstore(url, "ls")) == b"user:2\n"


def test_exit_codes(ktstore_server: ThrowawayServer) -> None:
    url = ktstore_server.url
    missing = ktstore(url, "get", "nope")
    assert missing.returncode == 4 and b"no such key" in missing.stderr
    assert ktstore(url, "rm", "nope").returncode == 4
    assert ktstore(url, "rm", "--force", "nope").returncode == 0
    bad_url = ktstore("http://localhost", "count")
    assert bad_url.returncode == 2 and b"scheme" in bad_url.stderr
    assert ktstore(url, "count", "--db", "x").returncode == 2
    assert b"Traceback" not in bad_url.stderr
    for args in (["get", "k"], ["set", "k", "v"], ["rm", "-f", "k"], ["count"]):
        no_db = ktstore(url, "--url", url.replace("/0", "/7"), *args)
        assert no_db.returncode in (1, 2) and b"database" in no_db.stderr, args


def test_unreachable_server_exit_code_3(
    ktstore_server_factory: Callable[..., ThrowawayServer],
) -> None:
    server = ktstore_server_factory(["*"])
    url = server.url
    # a free port: nothing listens there
    result = ktstore(f"kt://127.0.0.1:{find_free_port()}/0?timeout=2", "count")
    assert result.returncode == 3, result.stderr
    assert b"cannot reach" in result.stderr and b"KTSTORE_URL" in result.stderr
    assert ok(ktstore(url, "count")) == b"0\n"


def test_info_report_script(ktstore_server: ThrowawayServer) -> None:
    url = ktstore_server.url
    info = json.loads(ok(ktstore(url, "info", "--json")))
    assert [d["db"] for d in info["databases"]] == [0, 1]
    assert info["ktstore_script"] is not None
    assert b"ktstore kt.lua" in ok(ktstore(url, "info"))
    report = json.loads(ok(ktstore(url, "report", "--json")))
    assert "db_0" in report
    out = ok(ktstore(url, "script", "ktstoreversion"))
    outputs = dict(line.split(b"\t", 1) for line in out.splitlines())
    assert outputs[b"ukt"] == b"0.4.8" and outputs[b"version"]
    ok(ktstore(url, "script", "hset", "key=h", "field=f", "value=v"))
    kt = ktstore_server.client()
    assert kt.Hash("h").get_all() == {"f": "v"}
    failed = ktstore(url, "script", "nosuchprocedure")
    assert failed.returncode == 1 and b"kt.lua" in failed.stderr
    assert ktstore(url, "script", "hset", "novalue").returncode == 2


def test_info_without_script(ktstore_server_factory: Callable[..., ThrowawayServer]) -> None:
    server = ktstore_server_factory(["*"], script=False)
    assert json.loads(ok(ktstore(server.url, "info", "--json")))["ktstore_script"] is None


# -- export / import -----------------------------------------------------------------------


def _fill(kt: KyotoTycoon, db: int) -> dict[bytes, tuple[bytes, Any]]:
    """Text, binary and empty keys/values, with and without expiry."""
    records: dict[bytes, tuple[bytes, Any]] = {
        b"text": (b"plain value", None),
        "ключ".encode(): ("значение".encode(), None),
        b"\x00\xff\xfe bin": (bytes(range(256)), None),
        b"empty": (b"", None),
        b"line\nbreak\ttab": (b'{"json": "looking"}\n', None),
        b"expiring": (b"soon", 3600),
    }
    fixed: dict[bytes, tuple[bytes, Any]] = {}
    for k, v in records.items():
        value, xt = v
        kt.set(k, value, db=db, expire_time=xt, encode_value=False)
        fixed[k] = (value, xt)
    kt.set_bulk({b"bulk%04d" % i: b"v%d" % i for i in range(2500)}, db=db, encode_values=False)
    return fixed


def _dump(kt: KyotoTycoon, db: int) -> dict[bytes, tuple[bytes, int]]:
    keys = kt.match_prefix(b"", db=db)
    return {k: (v, xt) for _, k, v, xt in kt.get_bulk_details([(db, k) for k in keys], False)}


@pytest.mark.parametrize("kind", ["*", "%", ".kch", ".kct"])
def test_export_import_round_trip(
    kind: str, tmp_path: Path, ktstore_server_factory: Callable[..., ThrowawayServer]
) -> None:
    def spec(name: str) -> str:
        return str(tmp_path / f"{name}{kind}") if kind.startswith(".") else kind

    source = ktstore_server_factory([spec("a0"), spec("a1")])
    kt = source.client(decode_keys=False)
    _fill(kt, 0)
    kt.set(b"only-in-1", b"x", db=1, encode_value=False)
    before = [_dump(kt, 0), _dump(kt, 1)]
    assert len(before[0]) == 2506 and before[0][b"expiring"][1] < 2**40 - 1

    dump = tmp_path / "dump.jsonl"
    result = ktstore(source.url, "export", str(dump))
    ok(result)
    assert b"exported 2507 records" in result.stderr and b"records/s" in result.stderr
    lines = dump.read_text("utf-8").splitlines()
    assert len(lines) == 2507

    target = ktstore_server_factory([spec("b0"), spec("b1")])
    result = ktstore(target.url, "import", str(dump))
    ok(result)
    assert b"imported 2507 records" in result.stderr
    kt2 = target.client(decode_keys=False)
    assert [_dump(kt2, 0), _dump(kt2, 1)] == before

    # one database, through a pipe, into another database index
    one = ok(ktstore(source.url, "export", "--db", "1"))
    assert json.loads(one) == {"db": 1, "key": "only-in-1", "value": "x", "xt": None}
    third = ktstore_server_factory([spec("c0")])
    ok(ktstore(third.url, "import", "--db", "0", input=one))
    assert third.client().get("only-in-1") == "x"


def test_export_prefix_to_stdout(ktstore_server: ThrowawayServer) -> None:
    kt = ktstore_server.client()
    kt.set_bulk({"a:1": "1", "a:2": "2", "b:1": "3"})
    out = ok(ktstore(ktstore_server.url, "--quiet", "export", "--prefix", "a:", "--db", "0"))
    assert sorted(json.loads(line)["key"] for line in out.splitlines()) == ["a:1", "a:2"]


def test_import_corrupt_line_writes_nothing(ktstore_server: ThrowawayServer) -> None:
    good = [json.dumps({"db": 0, "key": f"k{i}", "value": "v"}) for i in range(2500)]
    data = "\n".join([*good[:1200], '{"db": 0, "key": "half", "val', *good[1200:]]) + "\n"
    result = ktstore(ktstore_server.url, "import", "--batch", "100", input=data.encode())
    assert result.returncode == 5
    assert b"line 1201" in result.stderr and b"nothing was imported" in result.stderr
    assert ktstore_server.client().count() == 0


def test_import_checks_databases_and_check_mode(
    ktstore_server: ThrowawayServer, tmp_path: Path
) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"db": 0, "key": "a", "value": "1"}\n\n{"db": 5, "key": "b", "value": "2"}\n')
    result = ktstore(ktstore_server.url, "import", str(path))
    assert result.returncode == 5 and b"line 3: database 5 does not exist" in result.stderr
    assert ktstore_server.client().count() == 0
    assert ok(ktstore(ktstore_server.url, "import", "--db", "1", "--check", str(path))) == b""
    assert ktstore_server.client().count(db=1) == 0
    missing = ktstore(ktstore_server.url, "import", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and b"cannot read" in missing.stderr


# -- models ----------------------------------------------------------------------------------

MODELS = """
from ktstore.models import Model, fields


class Person(Model, prefix="person"):
    name = fields.Text()
    email = fields.Text(unique=True)
    age = fields.Integer(index=True)
"""


def test_model_check_sweep_rebuild(ktstore_server: ThrowawayServer, tmp_path: Path) -> None:
    (tmp_path / "climodels.py").write_text(textwrap.dedent(MODELS))
    sys.path.insert(0, str(tmp_path))
    try:
        import climodels  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    person = climodels.Person
    store = ktstore_server.store(db=1)
    person.bind(store)
    for i in range(30):
        person.create(name=f"p{i}", email=f"p{i}@x", age=i)

    url = ktstore_server.url
    args = ["climodels:Person", "--db", "1"]
    out = ok(ktstore(url, "model", "check", *args, cwd=tmp_path))
    assert b"Person: ok: 30 records" in out

    # damage: a record removed behind the model's back leaves orphan index entries
    kt = ktstore_server.client()
    record_key = next(k for k in kt.match_prefix("person:", db=1) if "\x00" not in k)
    kt.remove(record_key, db=1)
    damaged = ktstore(url, "model", "check", *args, cwd=tmp_path)
    assert damaged.returncode == 6 and b"DAMAGED" in damaged.stdout
    assert b"orphan entry" in damaged.stdout and b"model sweep" in damaged.stderr

    orphans = int(damaged.stdout.split(b" orphan entries")[0].rsplit(b" ", 1)[1])
    assert orphans > 0
    swept = ok(ktstore(url, "model", "sweep", *args, cwd=tmp_path))
    assert b"removed %d orphaned entries" % orphans in swept
    ok(ktstore(url, "model", "check", *args, cwd=tmp_path))
    rebuilt = ok(ktstore(url, "model", "rebuild", *args, cwd=tmp_path))
    assert b"Person: ok: 29 records, 29 rewritten" in rebuilt

    bad = ktstore(url, "model", "check", "climodels:Nope", cwd=tmp_path)
    assert bad.returncode == 2 and b"has no Nope" in bad.stderr
    assert ktstore(url, "model", "check", "json:dumps", cwd=tmp_path).returncode == 2
    assert ktstore(url, "model", "check", "no_such_module:X", cwd=tmp_path).returncode == 2


def test_progress_bar_when_forced_and_module_entry(ktstore_server: ThrowawayServer) -> None:
    ktstore_server.client().set_bulk({f"k{i}": "v" for i in range(50)})
    result = ktstore(ktstore_server.url, "--progress", "export", "--db", "0")
    assert len(ok(result).splitlines()) == 50
    assert b"export:" in result.stderr and b"/50 " in result.stderr  # tqdm draws the bar
    quiet = ktstore(ktstore_server.url, "--quiet", "export", "--db", "0")
    assert ok(quiet) == result.stdout and quiet.stderr == b""
    module = subprocess.run(
        [sys.executable, "-m", "ktstore.cli", "--help"], capture_output=True, timeout=60
    )
    assert module.returncode == 0 and b"Usage: " in module.stdout

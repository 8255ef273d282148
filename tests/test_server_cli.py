"""ktstore-server's command line and process life cycle (real subprocesses, real signals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port, wait_for_port
from replay import RawClient

from ktstore.server.config import UsageError, parse_args


def test_parse_ktserver_options() -> None:
    cfg = parse_args(
        ["-host", "0.0.0.0", "-port", "40000", "-tout", "2.5", "-th", "100", "-le", "-oat",
         "-asi", "10", "-pid", "p", "-scr", "x.lua", "-scr-unsafe", "*#bnum=10", "casket.kct",
         "-port"]
    )  # fmt: skip
    assert cfg.host == "0.0.0.0" and cfg.port == 40000 and cfg.timeout == 2.5
    assert cfg.threads == 64 and cfg.log_level == "error" and cfg.pid_file == "p"
    assert cfg.script == "x.lua" and cfg.script_unsafe
    # the first non-option ends the options: "-port" is a database spec here
    assert cfg.databases == ["*#bnum=10", "casket.kct", "-port"]
    assert parse_args([]).databases == [":"]
    assert parse_args(["-", "+"]).databases == ["-", "+"]
    assert parse_args([]).host == "127.0.0.1" and parse_args([]).port == 1978
    for bad in (["-port", "0"], ["-port", "70000"], ["-port", "x"], ["-bogus"], ["-host"]):
        with pytest.raises(UsageError):
            parse_args(bad)


def _run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ktstore.server", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_errors(tmp_path: Path) -> None:
    r = _run("-bogus")
    assert r.returncode == 1 and "unknown option" in r.stderr and "usage" in r.stderr
    kc = tmp_path / "real.kch"
    kc.write_bytes(b"KC\n\x00" + bytes(64))
    r = _run("-port", str(free_port()), str(kc))
    assert r.returncode == 1 and "Kyoto Cabinet" in r.stderr
    r = _run("-port", str(free_port()), "casket.weird")
    assert r.returncode == 1 and "unknown database type" in r.stderr
    r = _run("--version")
    assert r.returncode == 0 and "ktstore" in r.stdout


_LIVE: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_leaked_servers():
    """Kill any server subprocess a failed test left running."""
    yield
    while _LIVE:
        proc = _LIVE.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Proc:
    """A ``python -m ktstore.server`` subprocess on a free port."""

    def __init__(self, *args: str, log: Path | None = None) -> None:
        self.port = free_port()
        extra = ["-log", str(log)] if log else ["-lz"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ktstore.server", "-port", str(self.port), *extra, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _LIVE.append(self.proc)
        try:
            wait_for_port("127.0.0.1", self.port, timeout=20)
        except OSError:
            self.proc.kill()
            raise AssertionError(self.proc.communicate()[1].decode()) from None

    def client(self) -> RawClient:
        return RawClient("127.0.0.1", self.port)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(15)
        finally:
            if self.proc.poll() is None:  # pragma: no cover
                self.proc.kill()
                self.proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["SIGTERM", "SIGINT", "SIGKILL"]
)
def test_file_databases_survive_restart(tmp_path: Path, sig: int) -> None:
    hash_path = tmp_path / "casket.kch"
    tree_path = tmp_path / "casket.kct#ktcapcnt=1000"
    pid_file = tmp_path / "server.pid"
    p = Proc("-pid", str(pid_file), str(hash_path), str(tree_path))
    assert pid_file.read_text() == f"{p.proc.pid}\n"
    c = p.client()
    assert c.rpc("set", {"key": "h", "value": "hash-value"})[0] == 200
    assert c.rpc("set_bulk", {"DB": "1", "_b": "2", "_a": "1", "_c": "3"})[1] == {b"num": b"3"}
    assert c.rpc("remove", {"DB": "casket.kct", "key": "c"})[0] == 200
    assert c.rpc("increment", {"key": "n", "num": "41"})[0] == 200
    assert c.rpc("increment", {"key": "n", "num": "1"})[1] == {b"num": b"42"}
    assert c.rpc("set", {"key": "x", "value": "expiring", "xt": "1000"})[0] == 200
    c.close()
    code = p.stop(sig)
    if sig != signal.SIGKILL:
        assert code == 0 and not pid_file.exists()
    p = Proc(str(hash_path), str(tree_path))
    c = p.client()
    assert c.rpc("get", {"key": "h"})[1] == {b"value": b"hash-value"}
    assert c.rpc("increment", {"key": "n", "num": "0"})[1] == {b"num": b"42"}
    status, out = c.rpc("get", {"key": "x"})
    assert out[b"value"] == b"expiring" and abs(int(out[b"xt"]) - time.time() - 1000) < 30
    status, out = c.rpc("match_prefix", {"DB": "1", "prefix": ""})
    assert out == {b"_a": b"0", b"_b": b"1", b"num": b"2"}
    assert c.rpc("cur_jump_back", {"DB": "1", "CUR": "1"})[0] == 200
    assert c.rpc("cur_get_key", {"CUR": "1"})[1] == {b"key": b"b"}
    c.close()
    assert p.stop() == 0


@pytest.mark.slow
def test_log_file_and_default_db(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    p = Proc(log=log)  # no database: one stash DB ':'
    c = p.client()
    status, out = c.rpc("report")
    assert out[b"db_0"].endswith(b"path=:") and b"db_1" not in out
    c.close()
    assert p.stop() == 0
    text = log.read_text()
    assert "[SYSTEM]" in text and "listening on" in text
    assert os.path.getsize(log) > 0


@pytest.mark.slow
def test_sigusr1_reloads_script(tmp_path: Path) -> None:
    pytest.importorskip("ktstore.server.scripting")
    script = tmp_path / "s.lua"
    script.write_text('function ver(i, o) o.v = "one" end\n')
    p = Proc("-scr", str(script), "*")
    c = p.client()
    assert c.rpc("play_script", {"name": "ver"}) == (200, {b"_v": b"one"})
    script.write_text('function ver(i, o) o.v = "two" end\n')
    p.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while c.rpc("play_script", {"name": "ver"})[1] != {b"_v": b"two"}:
        assert time.monotonic() < deadline, "script not reloaded"
        time.sleep(0.05)
    c.close()
    assert p.stop() == 0


def test_cli_help_and_bad_values(tmp_path: Path) -> None:
    r = _run("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: ktstore-server") and not r.stderr
    for args in (["-tout", "nan"], ["-th", "0"], ["-maxconn", "x"], ["-port", "1e3"]):
        r = _run(*args)
        assert r.returncode == 1 and "usage" in r.stderr, args
    r = _run("-port", str(free_port()), "-pid", str(tmp_path / "no" / "such" / "dir" / "pid"))
    assert r.returncode == 1 and "pid file" in r.stderr

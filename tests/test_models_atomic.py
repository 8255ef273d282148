"""Atomicity of save and delete: concurrent writers on one instance never leave a stale
index entry, and killing the server (SIGKILL) in the middle of a stream of saves and
deletes never leaves an index entry without its record nor a record missing from an
index."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from ktstore.client import KyotoTycoon
from ktstore.errors import KyotoTycoonError
from ktstore.models import ConflictError, Model, UniqueViolation, fields
from ktstore.store import Store

sys.path.insert(0, os.path.dirname(__file__))
from conftest import KT_LUA, REAL_SERVER, free_port, wait_for_port  # noqa: E402


def make(store):
    class Account(Model, store=store, prefix="acct"):
        owner = fields.Text(unique=True)
        balance = fields.Integer(index=True, default=0)
        tier = fields.Text(index=True, default="basic")
        log = fields.ListField()

    return Account


def test_concurrent_saves_of_one_instance_leave_no_stale_entries(kt_server):
    clients = [KyotoTycoon(port=kt_server.port) for _ in range(4)]
    Account = make(Store(clients[0], db=1))
    acct = Account.create(owner="o", balance=0)
    errors = []

    def writer(i, client):
        A = make(Store(client, db=1))
        rnd = random.Random(i)
        try:
            for _ in range(40):
                copy = A[acct.id]
                copy.balance = rnd.randint(-50, 50)
                copy.tier = rnd.choice(["basic", "gold", "silver"])
                copy.owner = rnd.choice(["o", f"o{i}"])
                try:
                    copy.save()
                except UniqueViolation:
                    pass
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    final = Account[acct.id]
    assert Account.check().ok
    # exactly one entry per index, and it is the stored value's
    assert [a.id for a in Account.query(Account.balance == final.balance)] == [acct.id]
    assert Account.query(Account.balance != final.balance).count() == 0
    assert Account.query(Account.tier == final.tier).count() == 1
    assert Account.query(Account.owner == final.owner).count() == 1
    for c in clients:
        c.close_all()


def test_concurrent_creates_race_for_a_unique_value(kt_server):
    clients = [KyotoTycoon(port=kt_server.port) for _ in range(4)]
    won, lost = [], []

    def racer(client):
        A = make(Store(client, db=1))
        for n in range(20):
            try:
                won.append(A.create(owner=f"name{n}").id)
            except UniqueViolation:
                lost.append(n)

    threads = [threading.Thread(target=racer, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    Account = make(Store(clients[0], db=1))
    assert len(won) == 20 and len(lost) == 60
    assert Account.count() == 20 and Account.check().ok
    for c in clients:
        c.close_all()


def test_version_conflicts_under_concurrency(kt_server):
    clients = [KyotoTycoon(port=kt_server.port) for _ in range(3)]

    def model(client):
        class Doc(Model, store=Store(client, db=1), prefix="doc"):
            n = fields.Integer(index=True, default=0)
            version = fields.Version()

        return Doc

    doc = model(clients[0]).create()
    applied = []

    def bump(client):
        Doc = model(client)
        for _ in range(20):
            while True:
                d = Doc[doc.id]
                d.n += 1
                try:
                    d.save()
                    applied.append(1)
                    break
                except ConflictError:
                    continue

    threads = [threading.Thread(target=bump, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    Doc = model(clients[0])
    final = Doc[doc.id]
    assert final.n == 60 == len(applied) and final.version == 60  # no lost update
    assert Doc.check().ok
    for c in clients:
        c.close_all()


def _start(path, port):
    exe = [REAL_SERVER] if REAL_SERVER else [sys.executable, "-m", "ktstore.server"]
    proc = subprocess.Popen(
        [
            *exe,
            "-le",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-scr",
            str(KT_LUA),
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port("127.0.0.1", port, timeout=20)
    return proc


@pytest.mark.slow
def test_sigkill_during_writes_never_breaks_indexes(tmp_path):
    path = tmp_path / "models.kct"
    port = free_port()
    rnd = random.Random(11)
    proc = _start(path, port)
    try:
        for round_ in range(3):
            client = KyotoTycoon(port=port, timeout=5)
            Account = make(Store(client, db=0))
            stop = threading.Event()
            done = [0]

            def writer(round_=round_, stop=stop, Account=Account, done=done):
                r = random.Random(round_)
                while not stop.is_set():
                    try:
                        pick = r.random()
                        existing = Account.query().paged(20).limit(20).all()
                        if pick < 0.5 or not existing:
                            Account.create(owner=f"{round_}-{r.random()}", balance=r.randint(-9, 9))
                        elif pick < 0.8:
                            a = r.choice(existing)
                            a.balance = r.randint(-99, 99)
                            a.tier = r.choice(["gold", "basic"])
                            a.save()
                        else:
                            r.choice(existing).delete()
                        done[0] += 1
                    except KyotoTycoonError:
                        if stop.is_set():
                            return
                        time.sleep(0.01)

            t = threading.Thread(target=writer)
            t.start()
            # kill at a random moment once the writer is busy (on a loaded machine the
            # first writes may take a while: wait for them rather than for a fixed time)
            deadline = time.monotonic() + 30
            while done[0] <= 5 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rnd.random() * 0.4)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            stop.set()
            t.join(10)
            assert done[0] > 5, "the writer made no progress before the kill"
            client.close_all()
            port = free_port()
            proc = _start(path, port)
            client = KyotoTycoon(port=port, timeout=5)
            Account = make(Store(client, db=0))
            report = Account.check()
            assert report.ok, report
            assert report.records == Account.count()
            client.close_all()
    finally:
        proc.kill()
        proc.wait()


_CLIENT_SCRIPT = """
import sys, random
sys.path.insert(0, {tests!r})
from test_models_atomic import make
from ktstore.client import KyotoTycoon
from ktstore.store import Store
Account = make(Store(KyotoTycoon(port={port}), db=1))
r = random.Random(5)
print("ready", flush=True)
while True:
    a = Account.create(owner=str(r.random()), balance=r.randint(-5, 5))
    a.balance += 1
    a.save()
    if r.random() < 0.3:
        a.delete()
"""


@pytest.mark.slow
def test_killing_the_client_mid_stream_leaves_consistent_indexes(kt_server):
    code = _CLIENT_SCRIPT.format(tests=os.path.dirname(__file__), port=kt_server.port)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    client = KyotoTycoon(port=kt_server.port)
    Account = make(Store(client, db=1))
    report = Account.check()
    assert report.ok and report.records > 0
    client.close_all()

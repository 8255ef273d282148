"""Crash atomicity of the Models 2.0 writes: the server is SIGKILLed while cascades
(in pages), search-indexed saves and query.update run; after a restart check() is
clean for every model (indexes, uniques, search postings and counters)."""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time

import pytest

from ktstore.client import KyotoTycoon
from ktstore.errors import KyotoTycoonError
from ktstore.models import CASCADE, SET_NULL, Model, fields
from ktstore.store import Store

sys.path.insert(0, os.path.dirname(__file__))
from conftest import free_port  # noqa: E402
from test_models_atomic import _start  # noqa: E402


def make(store):
    class Author(Model, store=store, prefix="cauthor"):
        name = fields.Text(unique=True)

    class Post(Model, store=store, prefix="cpost"):
        author = fields.ForeignKey(Author, on_delete=CASCADE, related_name="posts")
        title = fields.Text(search=True, default="")
        views = fields.Integer(index=True, default=0)
        by_views = fields.Index("author_id", "-views")

    class Like(Model, store=store, prefix="clike"):
        post = fields.ForeignKey(Post, on_delete=CASCADE)
        fan = fields.ForeignKey(Author, on_delete=SET_NULL)

    Author.cascade_page = 40
    return Author, Post, Like


WORDS = ["kyoto", "tycoon", "cabinet", "lua", "tree", "hash", "page", "index"]


@pytest.mark.slow
def test_sigkill_during_cascades_search_writes_and_updates(tmp_path):
    path = tmp_path / "models2.kct"
    port = free_port()
    rnd = random.Random(7)
    proc = _start(path, port)
    try:
        for round_ in range(4):
            client = KyotoTycoon(port=port, timeout=5)
            Author, Post, Like = make(Store(client, db=0))
            stop = threading.Event()
            done = [0]

            def writer(round_=round_, stop=stop, models=(Author, Post, Like), done=done):
                A, P, L = models
                r = random.Random(round_)
                while not stop.is_set():
                    try:
                        pick = r.random()
                        if pick < 0.35:
                            a = A.create(name=f"{round_}-{r.random()}")
                            P.create_many(
                                [
                                    {
                                        "author_id": a.id,
                                        "title": " ".join(r.choices(WORDS, k=4)),
                                        "views": r.randint(0, 50),
                                    }
                                    for _ in range(r.randint(50, 200))
                                ]
                            )
                            post = P.query(P.author == a).first()
                            if post is not None:
                                L.create(post=post, fan=a)
                        elif pick < 0.6:
                            a = A.query().first()
                            if a is not None:
                                a.delete()  # a cascade of pages
                        elif pick < 0.85:
                            P.query(P.views < 25).paged(50).limit(300).update(views=P.views + 30)
                        else:
                            p = P.query().first()
                            if p is not None:
                                p.title = " ".join(r.choices(WORDS, k=6))
                                p.save()
                        done[0] += 1
                    except KyotoTycoonError:
                        if stop.is_set():
                            return
                        time.sleep(0.01)

            t = threading.Thread(target=writer)
            t.start()
            deadline = time.monotonic() + 40
            while done[0] <= 4 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rnd.random() * 0.5)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            stop.set()
            t.join(10)
            assert done[0] > 4, "the writer made no progress before the kill"
            client.close_all()
            port = free_port()
            proc = _start(path, port)
            client = KyotoTycoon(port=port, timeout=5)
            Author, Post, Like = make(Store(client, db=0))
            for model in (Author, Post, Like):
                report = model.check()
                assert report.ok, (model.__name__, report)
            # no child outlives its parent, and the search index answers
            for p in Post.query().paged(500):
                assert Author.exists(p.author_id)
            if Post.count():
                assert Post.search("kyoto").count() == sum(
                    "kyoto" in p.title.split() for p in Post.query().paged(500)
                )
            client.close_all()
    finally:
        proc.kill()
        proc.wait()

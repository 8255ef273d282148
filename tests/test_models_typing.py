"""Model classes are understood by type checkers: mypy runs on a small user module
that declares typed models and uses them (constructor, get, queries, search,
containers, relations), and must pass; a module with wrong calls must be reported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("mypy")

GOOD = """
from __future__ import annotations

import datetime as dt

from typing_extensions import assert_type

from ktstore.models import CASCADE, Field, Model, Query, fields
from ktstore.models.search import SearchQuery
from ktstore.models.views import HashView, SetView


class Author(Model, prefix="typed_author"):
    name: Field[str] = fields.Text(unique=True)
    born: Field[dt.date | None] = fields.Date(optional=True, default=None)
    karma: Field[int] = fields.Integer(index=True, default=0)
    tags: fields.SetField[str] = fields.SetField(default=())
    props: fields.HashField[str, int] = fields.HashField(default={})
    nick: str | None = None


class Post(Model, prefix="typed_post"):
    title: Field[str] = fields.Text(search=True)
    author: fields.ForeignKey[Author] = fields.ForeignKey(Author, on_delete=CASCADE)


def use() -> None:
    a = Author(name="ada", born=dt.date(1815, 12, 10))
    assert_type(a, Author)
    assert_type(a.name, str)
    assert_type(a.born, dt.date | None)
    assert_type(a.nick, str | None)
    assert_type(a.tags, SetView[str])
    assert_type(a.props, HashView[str, int])
    name_field: Field[str] = Author.name
    assert name_field is not None
    assert_type(a.save(), Author)
    assert_type(Author.create(name="bob"), Author)
    assert_type(Author.get("x"), Author)
    assert_type(Author.get("x", None), Author | None)
    q = Author.query(Author.karma >= 3).order_by(Author.karma.desc())
    assert_type(q, Query[Author])
    for x in q:
        assert_type(x, Author)
    assert_type(q.first(), Author | None)
    assert_type(q[0], Author)
    assert_type(q[1:3], Query[Author])
    assert_type(q.all(), list[Author])
    assert_type(Author.get_many(["a"]), list[Author])
    assert_type(Author.get_or_create(name="c"), tuple[Author, bool])
    assert_type(Author.from_dict({"name": "d"}), Author)
    post = Post(title="t", author=a)
    assert_type(post.author, Author)
    Post(title="t", author="an-author-pk")
    s = Post.search("kyoto")
    assert_type(s, SearchQuery[Post])
    for p in s:
        assert_type(p, Post)


async def use_async() -> None:
    a = await Author.aget("x")
    assert_type(a, Author)
    assert_type(await Author.aget("x", None), Author | None)
    assert_type(await a.asave(), Author)
    assert_type(await Author.acreate(name="bob"), Author)
    assert_type(await Author.aget_many(["a"]), list[Author])
    assert_type(await Author.aget_or_create(name="c"), tuple[Author, bool])
    q = Author.query(Author.name == "ada")
    async for x in q:
        assert_type(x, Author)
    assert_type(await q.afirst(), Author | None)
    assert_type(await q.aall(), list[Author])
    async for p in Post.search("kyoto"):
        assert_type(p, Post)
"""

BAD = """
from __future__ import annotations

from ktstore.models import Field, Model, fields


class Author(Model, prefix="typed_author"):
    name: Field[str] = fields.Text(unique=True)
    karma: Field[int] = fields.Integer(default=0)


Author(name=1)
Author(nme="ada")
Author(karma=3)
x: int = Author.get("a").name


class Post(Model, prefix="typed_post"):
    author: fields.ForeignKey[Author] = fields.ForeignKey(Author)


Post(author=3.5)
"""


def run_mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "usercode.py").write_text(textwrap.dedent(source))
    env = dict(os.environ, MYPYPATH=str(ROOT))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            "usercode.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def user_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stdout.splitlines() if line.startswith("usercode.py")]


@pytest.mark.slow
def test_typed_models_pass_mypy(tmp_path):
    proc = run_mypy(tmp_path, GOOD)
    assert user_lines(proc) == [], proc.stdout + proc.stderr


@pytest.mark.slow
def test_wrong_calls_are_reported(tmp_path):
    proc = run_mypy(tmp_path, BAD)
    lines = user_lines(proc)
    text = "\n".join(lines)
    assert 'Argument "name" to "Author" has incompatible type "int"' in text, text
    assert 'Unexpected keyword argument "nme"' in text, text
    assert 'Missing named argument "name"' in text, text
    assert "usercode.py:15:" in text and "incompatible types in assignment" in text.lower(), text
    assert 'Argument "author" to "Post" has incompatible type "float"' in text, text

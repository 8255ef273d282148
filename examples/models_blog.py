"""Models in a script: a tiny blog with unique slugs, indexed dates, tags, TTL drafts.

    python examples/models_blog.py

Runs on the embedded default store (the built-in server, started for this process
and stopped at exit): no setup.
"""

from __future__ import annotations

import datetime as dt

from ktstore.models import Model, UniqueViolation, fields

UTC = dt.timezone.utc


class Author(Model, prefix="author"):
    handle = fields.Text(primary_key=True)
    name = fields.Text()


class Post(Model, prefix="post"):
    id = fields.Integer(primary_key=True, auto=True)  # server-side counter
    slug = fields.Text(unique=True)
    author = fields.Text(index=True)
    published = fields.DateTime(index=True, optional=True)  # None = draft
    score = fields.Integer(index=True, default=0)
    title = fields.Text()
    tags = fields.SetField()


def main() -> None:
    Author.create(handle="ada", name="Ada Lovelace")
    Author.create(handle="alan", name="Alan Turing")
    start = dt.datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    posts = Post.create_many(
        [
            {
                "slug": f"note-{i}",
                "author": "ada" if i % 2 else "alan",
                "title": f"Note {i}",
                "published": start + dt.timedelta(days=i),
                "score": (i * 7) % 11 - 5,
            }
            for i in range(10)
        ]
    )
    posts[0].tags.add("intro")
    posts[0].tags.add("math")
    print("created posts", [p.id for p in posts])

    try:
        Post.create(slug="note-3", author="ada", title="duplicate")
    except UniqueViolation as exc:
        print("refused:", exc)

    draft = Post.create(slug="draft", author="ada", title="Work in progress", ttl=3600)
    print(f"draft {draft.id} expires in {draft.ttl:.0f}s")

    print("Ada's posts:", [p.slug for p in Post.query(Post.author == "ada")])
    march_5 = dt.datetime(2024, 3, 5, tzinfo=UTC)
    recent = Post.query(Post.published >= march_5).order_by(Post.published.desc()).limit(3)
    print("latest three:", [(p.slug, p.published.date().isoformat()) for p in recent])
    print(
        "negative scores, lowest first:",
        [p.score for p in Post.query(Post.score < 0).order_by(Post.score)],
    )
    print("drafts:", [p.slug for p in Post.query(Post.published == None)])  # noqa: E711

    p = Post[posts[0].id]
    print("tags of", p.slug, "=", sorted(p.tags))
    p.incr("score", 2)
    p.incr("score")
    print("score after two atomic increments:", p.score)
    print("deleted", Post.query(Post.author == "alan").delete(), "of Alan's posts")
    print("posts left:", Post.count(), "| index check ok:", Post.check().ok)


if __name__ == "__main__":
    main()

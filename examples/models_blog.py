"""Models in a script: a tiny blog with authors (a foreign key that cascades), unique
slugs, indexed dates, a composite index, full-text search, tags and TTL drafts.

    python examples/models_blog.py

Runs on the embedded default store (the built-in server, started for this process
and stopped at exit): no setup.
"""

from __future__ import annotations

import datetime as dt

from ktstore.models import CASCADE, Model, UniqueViolation, fields

UTC = dt.timezone.utc


class Author(Model, prefix="author"):
    handle = fields.Text(primary_key=True)
    name = fields.Text()


class Post(Model, prefix="post"):
    id = fields.Integer(primary_key=True, auto=True)  # server-side counter
    slug = fields.Text(unique=True)
    author = fields.ForeignKey(Author, on_delete=CASCADE, related_name="posts")
    published = fields.DateTime(index=True, optional=True)  # None = draft
    score = fields.Integer(index=True, default=0)
    title = fields.Text(search=True)
    tags = fields.SetField()
    by_author = fields.Index("author_id", "-published")  # an author's latest first


def main() -> None:
    ada = Author.create(handle="ada", name="Ada Lovelace")
    Author.create(handle="alan", name="Alan Turing")
    start = dt.datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    posts = Post.create_many(
        [
            {
                "slug": f"note-{i}",
                "author_id": "ada" if i % 2 else "alan",
                "title": f"Note {i} on {'engines' if i % 3 else 'machines'}",
                "published": start + dt.timedelta(days=i),
                "score": (i * 7) % 11 - 5,
            }
            for i in range(10)
        ]
    )
    posts[0].tags.add("intro", "math")
    print("created posts", [p.id for p in posts])

    try:
        Post.create(slug="note-3", author_id="ada", title="duplicate")
    except UniqueViolation as exc:
        print("refused:", exc)

    draft = Post.create(slug="draft", author=ada, title="Work in progress", ttl=3600)
    print(f"draft {draft.id} expires in {draft.ttl:.0f}s")

    print("Ada's posts, latest first:", [p.slug for p in ada.posts.order_by(Post.published.desc())])
    print("by", Post[posts[1].id].author.name)  # the author, loaded on first access
    print("search 'machines':", [p.slug for p in Post.search("machines")])
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
    Author["alan"].delete()  # his posts go in the same server call (CASCADE)
    print("posts left after deleting Alan:", Post.count(), "| check ok:", Post.check().ok)


if __name__ == "__main__":
    main()

"""Relations: ForeignKey with a lazy accessor and a reverse query, referential checks
at save, and on_delete (PROTECT, CASCADE, SET_NULL) applied on the server in the same
call as the delete, in atomic pages for thousands of children."""

from __future__ import annotations

import threading

import pytest

from ktstore.client import KyotoTycoon
from ktstore.models import (
    CASCADE,
    PROTECT,
    SET_NULL,
    DoesNotExist,
    Model,
    ModelDefinitionError,
    ProtectedError,
    RelationError,
    fields,
)
from ktstore.store import Store


@pytest.fixture
def store(client_factory):
    """A Store on the sync client, and on the asyncio client driven through the test
    bridge: every model operation runs as the same program under either runner."""
    return Store(client_factory(), db=1)


def make(store):
    class Author(Model, store=store, prefix="author"):
        name = fields.Text(unique=True)

    class Post(Model, store=store, prefix="post"):
        title = fields.Text(default="")
        author = fields.ForeignKey(Author, on_delete=CASCADE, related_name="posts")
        tags = fields.SetField()

    class Comment(Model, store=store, prefix="comment"):
        post = fields.ForeignKey(Post, on_delete=CASCADE, related_name="comments")
        by = fields.ForeignKey(Author, on_delete=SET_NULL, related_name="comments")
        text = fields.Text(default="")

    class Badge(Model, store=store, prefix="badge"):
        holder = fields.ForeignKey(Author, on_delete=PROTECT, optional=True, unique=True)

    return Author, Post, Comment, Badge


def test_accessor_reverse_query_and_referential_check(store):
    Author, Post, Comment, Badge = make(store)
    ada = Author.create(name="ada")
    p = Post.create(title="hello", author=ada)
    assert p.author_id == ada.id and p.author is ada  # given: cached
    loaded = Post[p.id]
    assert loaded.author_id == ada.id and loaded.author == ada  # lazy load
    assert [x.id for x in ada.posts] == [p.id] and ada.posts.count() == 1
    assert Post.query(Post.author == ada).first() == p
    assert Post.query(Post.author_id == ada.id).first() == p
    assert p.to_dict()["author_id"] == ada.id
    bob = Author.create(name="bob")
    loaded.author = bob
    loaded.save()
    assert Post[p.id].author == bob and ada.posts.count() == 0
    with pytest.raises(RelationError):
        Post.create(title="x", author_id="no-such-author")
    with pytest.raises(RelationError):
        Comment.create(post=p, by_id="nobody")
    assert Post.count() == 1 and Comment.count() == 0
    assert Comment.create(post=p, by=None).by is None


def test_cascade_set_null_and_protect_in_one_call(store):
    Author, Post, Comment, Badge = make(store)
    ada, bob = Author.create(name="ada"), Author.create(name="bob")
    posts = [Post.create(title=f"p{i}", author=ada, tags={"t"}) for i in range(3)]
    other = Post.create(title="bob's", author=bob)
    for p in posts:
        Comment.create(post=p, by=bob, text="c")
    kept = Comment.create(post=other, by=ada, text="on bob's post")
    badge = Badge.create(holder=bob)
    with pytest.raises(ProtectedError, match="PROTECT"):
        bob.delete()
    assert Author.exists(bob.id) and Post.exists(other.id)  # nothing changed
    calls = []
    real = Author._binding().delete

    def spy(*a, **kw):  # delete is a program: wrap it in one
        calls.append(1)
        return (yield from real(*a, **kw))

    Author._binding().delete = spy
    assert ada.delete()
    del Author._binding().delete
    assert len(calls) == 1  # one server call for the author, its posts and their comments
    assert Post.count() == 1 and [c.id for c in Comment.query()] == [kept.id]
    assert Comment[kept.id].by_id is None and Comment.query(Comment.by == None).count() == 1  # noqa: E711
    assert store.client.get_bytes(Post._binding().container_key(posts[0].id, "tags"), db=1) is None
    badge.delete()
    bob.delete()
    assert Author.count() == 0 and Post.count() == 0 and Comment.count() == 0  # via bob's post
    for m in (Author, Post, Comment, Badge):
        assert m.check().ok, m


def test_cascade_of_thousands_in_atomic_pages(store):
    Author, Post, Comment, Badge = make(store)
    ada = Author.create(name="ada")
    Post.create_many([{"title": f"p{i}", "author_id": ada.id} for i in range(2500)])
    calls = []
    real = Author._binding().delete

    def spy(*a, **kw):
        out = yield from real(*a, **kw)
        calls.append(out.get(b"more"))
        return out

    Author._binding().delete = spy
    Author.cascade_page = 1000
    try:
        assert ada.delete()
    finally:
        del Author._binding().delete
    assert calls == [b"1", b"1", None]
    assert Post.count() == 0 and Author.count() == 0 and Post.check().ok


def test_self_reference_and_cycles(store):
    class Node(Model, store=store, prefix="node"):
        parent = fields.ForeignKey("self", on_delete=CASCADE, optional=True, related_name="kids")

    root = Node.create()
    a = Node.create(parent=root)
    Node.create(parent=a)
    Node.create(parent=a)
    assert a.kids.count() == 2 and root.kids.first() == a
    me = Node.create()
    me.parent = me
    me.save()
    root.delete()
    assert Node.count() == 1
    me.delete()
    assert Node.count() == 0 and Node.check().ok


def test_definition_errors(store):
    Author, *_ = make(store)
    with pytest.raises(ModelDefinitionError):

        class Bad(Model, store=store):
            a = fields.ForeignKey(Author, on_delete="explode")

    with pytest.raises(ModelDefinitionError):

        class Bad2(Model, store=store):
            a = fields.ForeignKey(Author, on_delete=SET_NULL)
            n = fields.Integer()
            ix = fields.Index("a_id", "n")


def test_concurrent_children_never_outlive_their_parent(kt_server):
    """A writer creating children while the parent is deleted either fails (the parent
    is gone, checked in the save's transaction) or its child is cascaded."""
    clients = [KyotoTycoon(port=kt_server.port) for _ in range(3)]
    Author, Post, *_ = make(Store(clients[0], db=1))
    for round_ in range(5):
        ada = Author.create(name=f"ada{round_}")
        Post.create_many([{"author_id": ada.id} for _ in range(300)])
        made, refused = [], []

        def writer(client, ada=ada, made=made, refused=refused):
            A, P, *_ = make(Store(client, db=1))
            for _ in range(30):
                try:
                    made.append(P.create(author_id=ada.id).id)
                except RelationError:
                    refused.append(1)

        threads = [threading.Thread(target=writer, args=(c,)) for c in clients[1:]]
        for t in threads:
            t.start()
        Author.cascade_page = 50
        ada.delete()
        for t in threads:
            t.join()
        survivors = [pk for pk in made if Post.exists(pk)]
        if not Author.exists(ada.id):
            assert survivors == [] or all(Post[pk].author_id != ada.id for pk in survivors)
        assert Post.query(Post.author_id == ada.id).count() == 0 or Author.exists(ada.id)
    # whatever happened, nothing refers to a missing author
    for p in Post.query():
        try:
            assert p.author is not None
        except DoesNotExist:
            pytest.fail(f"post {p.id} outlived its author")
    assert Post.check().ok
    for c in clients:
        c.close_all()


def test_check_reports_references_to_missing_instances(store):
    Author, Post, Comment, Badge = make(store)
    ada = Author.create(name="ada")
    p = Post.create(author=ada)
    assert Post.check().ok
    store.client.remove(Author._binding().record_key(ada.id), db=1)  # around the model layer
    report = Post.check()
    assert not report.ok and report.dangling_refs == [(p.id, "author_id", ada.id)]

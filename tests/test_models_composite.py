"""Composite indexes and ordering by several fields: one range scan for an equality
prefix plus a range, the index's order (or its reverse), and a bounded in-memory sort
(or an error naming the index to declare) when no index fits."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ktstore.client import KyotoTycoon
from ktstore.models import Model, ModelDefinitionError, ModelError, fields, keycodec
from ktstore.models.query import Compare
from ktstore.store import Store


@pytest.fixture
def store(client_factory):
    """A Store on the sync client, and on the asyncio client driven through the test
    bridge: every model operation runs as the same program under either runner."""
    return Store(client_factory(), db=1)


def make_task(store):
    class Task(Model, store=store, prefix="task"):
        owner = fields.Text(index=True)
        done = fields.Boolean(default=False)
        due = fields.Date()
        prio = fields.Integer(default=0)
        title = fields.Text(default="")
        by_done_due = fields.Index(done, due.desc())
        by_owner = fields.Index("owner", "prio", "-due")

    return Task


def fill(Task, n=120, seed=3):
    rnd = random.Random(seed)
    base = dt.date(2026, 1, 1)
    rows = [
        dict(
            owner=rnd.choice(["ada", "bob", "cy"]),
            done=rnd.random() < 0.4,
            due=base + dt.timedelta(days=rnd.randint(0, 60)),
            prio=rnd.randint(-3, 3),
            title=f"t{i}",
        )
        for i in range(n)
    ]
    return Task.create_many(rows)


def _spy(monkeypatch, binding):
    calls = []
    real = binding.scan

    def spy(db, lo, hi, **kw):
        calls.append((lo, hi))
        return (yield from real(db, lo, hi, **kw))

    monkeypatch.setattr(binding, "scan", spy)
    return calls


def test_order_by_two_fields_uses_the_composite_index(store, monkeypatch):
    Task = make_task(store)
    tasks = fill(Task)
    want = sorted(tasks, key=lambda t: (t.done, -t.due.toordinal(), t.id))
    q = Task.query().order_by(Task.done, Task.due.desc())
    assert not q.sorts_in_memory()
    assert q.plan()[0][0] is Task.by_done_due
    assert [t.id for t in q.paged(17)] == [t.id for t in want]
    # all directions reversed: the same index walked backwards
    rev = Task.query().order_by(Task.done.desc(), Task.due)
    assert rev.plan()[0][0] is Task.by_done_due and not rev.sorts_in_memory()
    got = [(t.done, t.due) for t in rev]
    assert got == sorted(got, key=lambda x: (not x[0], x[1]))
    assert [(t.done, t.due) for t in q.limit(5)] == [(t.done, t.due) for t in want[:5]]


def test_equality_prefix_plus_range_is_one_range_scan(store, monkeypatch):
    Task = make_task(store)
    tasks = fill(Task)
    lo, hi = dt.date(2026, 1, 10), dt.date(2026, 1, 30)
    q = Task.query(Task.done == False, Task.due.between(lo, hi))  # noqa: E712
    ((index, ranges, _),) = q.plan()
    assert index is Task.by_done_due and len(ranges) == 1
    calls = _spy(monkeypatch, Task._binding())
    got = [t.id for t in q.order_by(Task.due.desc()).paged(1000)]
    want = [
        t.id
        for t in sorted(tasks, key=lambda t: (-t.due.toordinal(), t.id))
        if not t.done and lo <= t.due <= hi
    ]
    assert got == want and len(calls) == 1
    # three parts: equality on two, range on the third, in index order
    q2 = Task.query(Task.owner == "ada", Task.prio == 1, Task.due >= dt.date(2026, 1, 20))
    assert q2.plan()[0][0] is Task.by_owner
    want2 = [
        t.id
        for t in sorted(tasks, key=lambda t: (-t.due.toordinal(), t.id))
        if t.owner == "ada" and t.prio == 1 and t.due >= dt.date(2026, 1, 20)
    ]
    assert [t.id for t in q2] == want2
    assert [t.id for t in q2.order_by(Task.due.desc())] == want2
    # equality on the prefix, ordering by the next parts
    q3 = Task.query(owner="bob").order_by(Task.prio, Task.due.desc())
    assert q3.plan()[0][0] is Task.by_owner and not q3.sorts_in_memory()
    want3 = sorted(
        (t for t in tasks if t.owner == "bob"), key=lambda t: (t.prio, -t.due.toordinal(), t.id)
    )
    assert [t.id for t in q3] == [t.id for t in want3]
    assert q3.count() == len(want3)


def test_index_moves_with_saves_and_deletes(store):
    Task = make_task(store)
    t = Task.create(owner="ada", due=dt.date(2026, 3, 1))
    assert Task.query(Task.done == False, Task.due < dt.date(2026, 4, 1)).count() == 1  # noqa: E712
    t.done = True
    t.save()
    assert Task.query(Task.done == False, Task.due < dt.date(2026, 4, 1)).count() == 0  # noqa: E712
    assert Task.query(Task.done == True, Task.due < dt.date(2026, 4, 1)).first() == t  # noqa: E712
    t.delete()
    assert Task.check().ok and Task.check().entries == 0


def test_without_a_fitting_index_a_bounded_sort_or_an_error_naming_the_index(store):
    Task = make_task(store)
    tasks = fill(Task, n=60)
    q = Task.query(Task.owner == "cy").order_by(Task.title, Task.prio.desc())
    assert q.sorts_in_memory()
    want = sorted((t for t in tasks if t.owner == "cy"), key=lambda t: (t.title, -t.prio))
    assert [t.id for t in q] == [t.id for t in want]
    items, token = q.page(3)
    more, _ = q.page(3, token)
    assert [t.id for t in items + more] == [t.id for t in want[:6]]
    with pytest.raises(ModelError, match=r"fields\.Index\('title', '-prio'\)"):
        q.sort_limit(5).all()
    with pytest.raises(ModelError, match="index=True"):
        Task.query().order_by(Task.title)


def test_composite_declaration_errors_and_repr(store):
    with pytest.raises(ModelDefinitionError):

        class Bad(Model, store=store):
            a = fields.Integer()
            ix = fields.Index("a", "nope")

    with pytest.raises(ModelDefinitionError):

        class Bad2(Model, store=store):
            a = fields.JSON()
            ix = fields.Index(a)

    Task = make_task(store)
    assert "by_done_due (done, -due)" in repr(Task.by_done_due)
    q = Task.query(Task.done == True).order_by(Task.done, "-due").limit(3).offset(2)  # noqa: E712
    r = repr(q)
    assert "order_by=(done, due desc)" in r and "limit=3" in r and "offset=2" in r


def test_rebuild_fills_a_composite_index_declared_later(store):
    class V1(Model, store=store, prefix="v"):
        a = fields.Integer()
        b = fields.Integer()

    V1.create_many([{"a": i % 3, "b": i} for i in range(9)])

    class V2(Model, store=store, prefix="v"):
        a = fields.Integer()
        b = fields.Integer()
        ab = fields.Index("a", "-b")

    with pytest.raises(ModelError, match="rebuild"):
        V2.query().order_by(V2.a, V2.b.desc()).all()
    assert V2.rebuild().ok
    assert [(v.a, v.b) for v in V2.query().order_by(V2.a, V2.b.desc())] == sorted(
        [(i % 3, i) for i in range(9)], key=lambda x: (x[0], -x[1])
    )
    assert V2.check().ok


values = st.tuples(
    st.one_of(st.none(), st.integers(-(2**70), 2**70)),
    st.text(max_size=6),
    st.floats(allow_nan=False),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=2, max_size=8), st.lists(st.booleans(), min_size=3, max_size=3))
def test_composite_keys_keep_the_declared_order(rows, descs):
    """Byte order of composite keys is the declared order: each part ascending or
    descending, the first part first."""
    enc = [keycodec.encode_int, keycodec.encode_text, keycodec.encode_float]

    def key(row):
        out = b""
        for v, e, d in zip(row, enc, descs, strict=True):
            k = keycodec.NONE if v is None else e(v)
            out += keycodec.invert(k) if d else k
        return out

    def sort_key(row):
        parts = []
        for v, d in zip(row, descs, strict=True):
            rank = (0, 0) if v is None else (1, v if v != 0 else 0.0)
            parts.append(_Rev(rank) if d else rank)
        return parts

    by_bytes = sorted(rows, key=key)
    by_value = sorted(rows, key=sort_key)
    assert [key(r) for r in by_bytes] == [key(r) for r in by_value]


class _Rev:
    def __init__(self, v):
        self.v = v

    def __lt__(self, other):
        return other.v < self.v

    def __gt__(self, other):
        return self.v < other.v

    def __eq__(self, other):
        return self.v == other.v


@given(st.integers(-(2**40), 2**40), st.integers(-(2**40), 2**40), st.integers(-(2**40), 2**40))
def test_invert_range_matches_exactly_the_inverted_codes(a, lo, hi):
    code = keycodec.encode_int(a)
    klo, khi = keycodec.encode_int(lo), keycodec.prefix_successor(keycodec.encode_int(hi))
    inside = klo <= code and (khi is None or code < khi)
    r = keycodec.invert_range(klo, khi)
    inv = keycodec.invert(code)
    got = r is not None and r[0] <= inv and (r[1] is None or inv < r[1])
    assert got == inside


@pytest.fixture
def planner_model(kt_server):
    client = KyotoTycoon(port=kt_server.port)

    class Row(Model, store=Store(client, db=1), prefix="prow"):
        a = fields.Integer()
        b = fields.Text(optional=True)
        c = fields.Integer()
        ac = fields.Index("a", "-c")
        bac = fields.Index("b", "a", "c")

    rnd = random.Random(8)
    rows = Row.create_many(
        [
            {
                "a": rnd.randint(0, 3),
                "b": rnd.choice([None, "x", "y", "z"]),
                "c": rnd.randint(-5, 5),
            }
            for _ in range(150)
        ]
    )
    yield Row, rows
    client.close_all()


ops = st.sampled_from(["<", "<=", ">", ">=", "between"])


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    eq_a=st.one_of(st.none(), st.integers(0, 3)),
    eq_b=st.one_of(st.none(), st.sampled_from(["x", "y", "nope"])),
    rng=st.one_of(st.none(), st.tuples(ops, st.integers(-6, 6), st.integers(-6, 6))),
    order=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.booleans()),
        max_size=3,
        unique_by=lambda o: o[0],
    ),
)
def test_planner_agrees_with_python(planner_model, eq_a, eq_b, rng, order):
    """Any mix of equalities, a range and an ordering gives the matches Python finds,
    in the order asked for, whichever plan (composite scan, reversed, in memory)."""
    Row, rows = planner_model
    preds = []
    if eq_a is not None:
        preds.append(Row.a == eq_a)
    if eq_b is not None:
        preds.append(Row.b == eq_b)
    if rng is not None:
        op, v, w = rng
        preds.append(
            Row.c.between(min(v, w), max(v, w)) if op == "between" else Compare(Row.c, op, v)
        )
    q = Row.query(*preds)
    if order:
        q = q.order_by(
            *[getattr(Row, name).desc() if d else getattr(Row, name) for name, d in order]
        )

    def match(r):
        if eq_a is not None and r.a != eq_a:
            return False
        if eq_b is not None and r.b != eq_b:
            return False
        if rng is not None:
            op, v, w = rng
            lo, hi = min(v, w), max(v, w)
            ok = {
                "<": r.c < v,
                "<=": r.c <= v,
                ">": r.c > v,
                ">=": r.c >= v,
                "between": lo <= r.c <= hi,
            }[op]
            if not ok:
                return False
        return True

    want = [r for r in rows if match(r)]
    got = q.paged(13).all()
    assert sorted(r.id for r in got) == sorted(r.id for r in want)

    def okey(r):
        out = []
        for name, d in order:
            v = getattr(r, name)
            rank = (0, "") if v is None else (1, v)
            out.append(_Rev(rank) if d else rank)
        return out

    keys = [okey(r) for r in got]
    assert all(not (keys[i + 1] < keys[i]) for i in range(len(keys) - 1)), q

"""Queries: every operator, & | ~, ordering (negative numbers, floats, datetimes, text),
limit/offset/count/first/exists, delete-by-query, lazy paging, unindexed scans.
Each result is compared with the same filter applied in Python."""

from __future__ import annotations

import datetime as dt
import decimal
import random

import pytest

from ktstore.client import KyotoTycoon
from ktstore.models import Model, ModelError, ValidationError, fields
from ktstore.store import Store

UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def env(server_factory_module):
    srv = server_factory_module
    client = KyotoTycoon(port=srv.port)
    store = Store(client, db=1)

    class Item(Model, store=store, prefix="item"):
        n = fields.Integer(index=True)
        x = fields.Float(index=True, optional=True)
        name = fields.Text(index=True)
        when = fields.DateTime(index=True)
        price = fields.Decimal(index=True)
        flag = fields.Boolean(index=True)
        color = fields.Text(default="red")  # not indexed

    rnd = random.Random(7)
    zones = [UTC, dt.timezone(dt.timedelta(hours=9)), dt.timezone(-dt.timedelta(hours=7))]
    names = ["apple", "apricot", "banana", "Banana", "cherry", "ça", "é", "", "a\x00b"]
    rows = []
    for i in range(300):
        rows.append(
            dict(
                n=rnd.randint(-1000, 1000),
                x=None if i % 10 == 0 else rnd.uniform(-1e6, 1e6) * rnd.choice([1, 1e-9]),
                name=rnd.choice(names) + str(i % 3),
                when=dt.datetime(2024, 1, 1, tzinfo=rnd.choice(zones))
                + dt.timedelta(minutes=rnd.randint(-5000, 5000)),
                price=decimal.Decimal(rnd.randint(-100000, 100000)) / 100,
                flag=rnd.random() < 0.5,
                color=rnd.choice(["red", "blue"]),
            )
        )
    Item.create_many(rows)
    yield Item, rows
    client.close_all()


@pytest.fixture(scope="module")
def server_factory_module():
    from conftest import KT_LUA, start_server

    srv = start_server(["*", "%"], script=KT_LUA)
    yield srv
    srv.stop()


def _key(row_or_inst):
    get = row_or_inst.get if isinstance(row_or_inst, dict) else lambda k: getattr(row_or_inst, k)
    return (get("n"), get("name"), str(get("price")), get("when"))


@pytest.mark.parametrize(
    "make,pred",
    [
        (lambda M: M.n == 5, lambda r: r["n"] == 5),
        (lambda M: M.n != 5, lambda r: r["n"] != 5),
        (lambda M: M.n < -10, lambda r: r["n"] < -10),
        (lambda M: M.n <= 0, lambda r: r["n"] <= 0),
        (lambda M: M.n > 900, lambda r: r["n"] > 900),
        (lambda M: M.n >= -3, lambda r: r["n"] >= -3),
        (lambda M: M.n.between(-50, 50), lambda r: -50 <= r["n"] <= 50),
        (lambda M: M.x < 0.0, lambda r: r["x"] is not None and r["x"] < 0),
        (lambda M: M.x == None, lambda r: r["x"] is None),  # noqa: E711
        (lambda M: M.x != None, lambda r: r["x"] is not None),  # noqa: E711
        (lambda M: M.name.startswith("ap"), lambda r: r["name"].startswith("ap")),
        (lambda M: M.name.startswith("a\x00"), lambda r: r["name"].startswith("a\x00")),
        (lambda M: M.name >= "b", lambda r: r["name"] >= "b"),
        (lambda M: M.name.in_(["é1", "banana0", "nope"]), lambda r: r["name"] in ("é1", "banana0")),
        (
            lambda M: M.when < dt.datetime(2024, 1, 1, tzinfo=UTC),
            lambda r: r["when"] < dt.datetime(2024, 1, 1, tzinfo=UTC),
        ),
        (
            lambda M: M.price > decimal.Decimal("-0.5"),
            lambda r: r["price"] > decimal.Decimal("-0.5"),
        ),
        (lambda M: M.flag == True, lambda r: r["flag"]),  # noqa: E712
        (lambda M: (M.n > 0) & (M.flag == False), lambda r: r["n"] > 0 and not r["flag"]),  # noqa: E712
        (
            lambda M: (M.n < -900) | (M.n > 900) | M.name.startswith("ch"),
            lambda r: r["n"] < -900 or r["n"] > 900 or r["name"].startswith("ch"),
        ),
        (lambda M: (M.n > 0) | (M.color == "blue"), lambda r: r["n"] > 0 or r["color"] == "blue"),
        (lambda M: ~(M.n > 0), lambda r: not r["n"] > 0),
        (lambda M: M.color == "blue", lambda r: r["color"] == "blue"),
        (
            lambda M: (M.color == "blue") & M.n.between(0, 500),
            lambda r: r["color"] == "blue" and 0 <= r["n"] <= 500,
        ),
        (lambda M: (M.n >= -10) & (M.n < 10), lambda r: -10 <= r["n"] < 10),
        (lambda M: (M.n != 5) & (M.n != -5), lambda r: r["n"] not in (5, -5)),
        (lambda M: (M.n < 10) | (M.n < 20) | (M.n == 15), lambda r: r["n"] < 20),
        (
            lambda M: ((M.n < -500) | M.name.startswith("b")) & (M.color == "red"),
            lambda r: (r["n"] < -500 or r["name"].startswith("b")) and r["color"] == "red",
        ),
        (lambda M: M.n.in_([]), lambda r: False),
        (lambda M: M.x.in_([None, 0.0]), lambda r: r["x"] is None or r["x"] == 0.0),
    ],
)
def test_operators_match_python(env, make, pred):
    Item, rows = env
    q = Item.query(make(Item)).paged(37)
    got = sorted(map(_key, q))
    want = sorted(_key(r) for r in rows if pred(r))
    assert got == want
    assert q.count() == len(want)
    assert q.exists() == bool(want)


@pytest.mark.parametrize("field", ["n", "x", "name", "when", "price"])
@pytest.mark.parametrize("desc", [False, True])
def test_order_by_is_value_order(env, field, desc):
    Item, rows = env
    fld = getattr(Item, field)
    got = [getattr(i, field) for i in Item.query().order_by(fld.desc() if desc else fld).paged(50)]
    want = sorted(
        (r[field] for r in rows),
        key=lambda v: (v is not None, v),
        reverse=desc,
    )
    assert got == want


def test_order_with_range_limit_offset(env):
    Item, rows = env
    q = Item.query(Item.n >= -100).order_by("-n").paged(7)
    want = sorted((r["n"] for r in rows if r["n"] >= -100), reverse=True)
    assert [i.n for i in q.limit(20)] == want[:20]
    assert [i.n for i in q.offset(15).limit(10)] == want[15:25]
    assert [i.n for i in q[30:33]] == want[30:33]
    assert q[0].n == want[0]
    assert q.first().n == want[0]
    assert q.limit(0).all() == []
    assert Item.query(Item.n > 5000).first() is None
    # ordering by one field while filtering on another
    q2 = Item.query(Item.flag == True).order_by(Item.price)  # noqa: E712
    want2 = sorted(r["price"] for r in rows if r["flag"])
    assert [i.price for i in q2] == want2


def test_query_values_must_fit_the_field(env):
    Item, _rows = env
    for bad, says in [
        (Item.n == "5", "expects int, got str"),
        (Item.n > 1.5, "expects int, got float"),
        (Item.when > dt.datetime(2024, 1, 1), "timezone-aware"),
        (Item.when > dt.date(2024, 1, 1), "expects datetime, got date"),
        (Item.color == 3, "expects str, got int"),  # unindexed: checked while filtering
    ]:
        with pytest.raises(ValidationError, match=says):
            Item.query(bad).first()
    with pytest.raises(ValidationError, match="startswith needs text"):
        Item.name.startswith(b"a")
    assert Item.query(Item.x > 1).count() == Item.query(Item.x > 1.0).count()  # int -> float
    assert Item.query(Item.price == "0").count() == Item.query(Item.price == 0).count()


def test_query_by_keywords_and_unknown(env):
    Item, rows = env
    assert Item.query(color="blue").count() == sum(r["color"] == "blue" for r in rows)
    with pytest.raises(ModelError):
        Item.query(nope=1)
    with pytest.raises(ModelError):
        Item.query().order_by(Item.color)  # not indexed
    assert Item.query(Item.color == "blue").uses_full_scan()
    assert not Item.query(Item.n == 1).uses_full_scan()
    with pytest.raises(TypeError):
        bool(Item.n == 1)


def _spy_scans(monkeypatch, binding):
    calls: list[int] = []
    real = binding.scan

    def spy(*a, **kw):  # scan is a program: wrap it in one
        page = yield from real(*a, **kw)
        calls.append(len(page.entries))
        return page

    monkeypatch.setattr(binding, "scan", spy)
    return calls


def test_paging_is_lazy(env, monkeypatch):
    Item, rows = env
    calls = _spy_scans(monkeypatch, Item._binding())
    it = iter(Item.query().paged(10))
    next(it)
    assert calls == [10]  # one page read for the first result
    for _ in range(15):
        next(it)
    assert calls == [10, 10]
    assert max(calls) <= 10


@pytest.mark.parametrize(
    "make",
    [
        lambda M: M.n != 5,
        lambda M: M.n.in_(range(-1000, 1000)),
        lambda M: (M.n < 0) | (M.n >= 0),
        lambda M: (M.n < 0) | M.name.startswith("a"),
        lambda M: M.color != "green",  # unindexed: a scan, but still paged
        lambda M: (M.flag == True) | (M.color == "blue"),  # noqa: E712
    ],
)
def test_large_results_stay_lazy_and_paged(env, monkeypatch, make):
    """!=, in_ and | over most of the data read one page at a time, never the whole set."""
    Item, rows = env
    calls = _spy_scans(monkeypatch, Item._binding())
    it = iter(Item.query(make(Item)).paged(10))
    for _ in range(5):
        next(it)
    assert sum(calls) <= 20 and max(calls) <= 10, calls


def test_count_reads_keys_only_when_the_index_answers_alone(env, monkeypatch):
    Item, rows = env
    b = Item._binding()
    seen = []
    real = b.scan

    def spy(*a, **kw):
        seen.append((kw.get("join", False), kw.get("limit")))
        return (yield from real(*a, **kw))

    monkeypatch.setattr(b, "scan", spy)
    exact = [
        (Item.n >= 0, lambda r: r["n"] >= 0),
        ((Item.n > -50) & (Item.n != 3), lambda r: r["n"] > -50 and r["n"] != 3),
        ((Item.n < -900) | (Item.n > 900), lambda r: abs(r["n"]) > 900),
        (Item.x == None, lambda r: r["x"] is None),  # noqa: E711
        (Item.name.startswith("ap"), lambda r: r["name"].startswith("ap")),
    ]
    for expr, pred in exact:
        seen.clear()
        want = sum(1 for r in rows if pred(r))
        assert Item.query(expr).count() == want
        assert Item.query(expr).order_by(Item.price).count() == want
        assert Item.query(expr).offset(3).limit(5).count() == max(0, min(5, want - 3))
        assert seen and not any(join for join, _ in seen), expr  # no record was read
    for expr in [(Item.n >= 0) & (Item.flag == True), Item.color == "red"]:  # noqa: E712
        seen.clear()
        assert Item.query(expr).count() > 0
        assert any(join for join, _ in seen)  # records must be read to decide
    seen.clear()
    assert Item.query(Item.n >= 0).first() is not None
    assert seen == [(True, 1)]  # first() asks for one record, not a page
    seen.clear()
    rare = Item.query(Item.color == "red").order_by("-n").paged(50).limit(2).all()
    assert len(rare) == 2 and seen[0] == (True, 2)  # then full pages while filtering drops
    assert all(limit == 50 for _join, limit in seen[1:])


def test_plans_narrow_as_far_as_the_indexes_allow(env):
    Item, _rows = env
    # two bounds on one field: one range [lo, hi), not [lo, end)
    ((field, ranges, _),) = Item.query((Item.n >= 10) & (Item.n < 20)).plan()
    assert field is Item.n and len(ranges) == 1 and ranges[0][1] is not None
    # an equality wins over a range on another field
    ((field, _r, _),) = Item.query((Item.n > 0) & (Item.name == "apple0")).plan()
    assert field is Item.name
    # | on one field: one scan of the merged ranges, in index order
    ((field, ranges, _),) = Item.query((Item.n < 10) | (Item.n < 20)).plan()
    assert field is Item.n and len(ranges) == 1
    # | over two indexes inside an &: one scan per branch, not a full scan
    q = Item.query(((Item.n < -900) | (Item.flag == True)) & (Item.color == "red"))  # noqa: E712
    assert [p[0] for p in q.plan()] == [Item.n, Item.flag] and not q.uses_full_scan()
    # ordering by one field while filtering on another scans the order field's index
    q = Item.query(Item.flag == True).order_by(Item.n.desc())  # noqa: E712
    assert [p[0] for p in q.plan()] == [Item.n]


def test_delete_by_query(kt_server):
    client = KyotoTycoon(port=kt_server.port)
    store = Store(client, db=1)

    class Row(Model, store=store):
        n = fields.Integer(index=True)
        tag = fields.Text(unique=True)

    Row.create_many([{"n": i, "tag": f"t{i}"} for i in range(-20, 20)])
    assert Row.query(Row.n < 0).paged(6).delete() == 20
    assert sorted(r.n for r in Row) == list(range(20))
    assert Row.check().ok
    Row.create(n=-1, tag="t-1")  # unique value free again
    client.close_all()


# ---- property: whatever values are stored, index order is value order -----------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@pytest.fixture(scope="module")
def prop_model(server_factory_module):
    client = KyotoTycoon(port=server_factory_module.port)

    class Prop(Model, store=Store(client, db=1), prefix="prop"):
        i = fields.Integer(index=True)
        f = fields.Float(index=True)
        t = fields.Text(index=True)

    yield Prop
    client.close_all()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-(2**70), max_value=2**70),
            st.floats(allow_nan=False),
            st.text(max_size=8),
        ),
        max_size=15,
    ),
    st.integers(min_value=-5, max_value=5),
)
def test_stored_order_is_value_order(prop_model, values, pivot):
    Prop = prop_model
    Prop.query().delete()
    Prop.create_many([{"i": i, "f": f, "t": t} for i, f, t in values])
    assert [p.i for p in Prop.query().order_by(Prop.i)] == sorted(v[0] for v in values)
    assert [p.f for p in Prop.query().order_by(Prop.f.desc())] == sorted(
        (v[1] for v in values), reverse=True
    )
    assert [p.t for p in Prop.query().order_by(Prop.t)] == sorted(v[2] for v in values)
    assert sorted(p.i for p in Prop.query(Prop.i < pivot)) == sorted(
        v[0] for v in values if v[0] < pivot
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda M: M.query(M.n >= 0).order_by(M.n.desc()),
        lambda M: M.query((M.n < -500) | (M.name.startswith("b"))),
        lambda M: M.query(M.n.in_([1, 5, 7, 9, -3])),
        lambda M: M.query(M.color == "red"),
        lambda M: M.query(((M.n < -500) | (M.flag == True)) & (M.color == "red")),  # noqa: E712
        lambda M: M.query((M.n < 0) | (M.n < 100)).order_by(M.n.desc()),
        lambda M: M.query((M.n != 3) & (M.n.in_(range(-200, 200)))).order_by("-n"),
    ],
)
def test_page_tokens_walk_the_whole_result(env, make):
    Item, rows = env
    q = make(Item)
    want = [_key(i) for i in q]
    got, token, pages = [], None, 0
    while True:
        items, token = q.page(13, token)
        got.extend(_key(i) for i in items)
        pages += 1
        assert len(items) <= 13
        if token is None:
            break
        assert len(items) == 13
    assert got == want and pages >= len(want) // 13


def test_page_token_is_stable_under_inserts(kt_server):
    client = KyotoTycoon(port=kt_server.port)

    class Log(Model, store=Store(client, db=1)):
        seq = fields.Integer(index=True)

    Log.create_many([{"seq": i} for i in range(0, 40, 2)])
    q = Log.query().order_by(Log.seq)
    first, token = q.page(5)
    assert [x.seq for x in first] == [0, 2, 4, 6, 8]
    Log.create(seq=1)  # lands before the token: not repeated, nothing shifts
    Log.create(seq=11)  # lands after it: seen on the next page
    second, token = q.page(5, token)
    assert [x.seq for x in second] == [10, 11, 12, 14, 16]
    with pytest.raises(ValueError):
        q.page(5, "garbage!")
    client.close_all()

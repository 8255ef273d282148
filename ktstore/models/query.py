"""Query expressions and their lazy, paged execution.

A predicate (``User.age >= 18``, ``User.name.startswith("a")``, ``User.id.in_(...)``,
combined with ``&`` and ``|``, negated with ``~``) is evaluated two ways:

* **as key ranges** of an index (``ranges()``), when its field is indexed: that is
  what the server scans, one page at a time, in the index's order;
* **on a loaded instance** (``matches()``), always: every record a scan yields is
  checked against the *whole* expression before it is returned, so a stale index
  entry can never produce a wrong result.  Comparisons use the same encoding as the
  index, so both agree on order (``None`` is smallest and only equals ``None``;
  ranges never match ``None``).

Planning is deliberately simple and predictable:

* ``order_by(a, b.desc(), ...)`` scans the index whose parts, after those fixed by
  equalities of the filter, are these fields in these directions (or all reversed):
  a field's own index or a composite :class:`~ktstore.models.fields.Index`; with no
  such index the matches are sorted in memory, up to ``max_sort`` of them, beyond
  which the query raises an error naming the index to declare;
* without an ordering, equality on a prefix of a composite index plus a range on its
  next part is one range scan of it (when it narrows two parts or more);
* ``order_by(field)`` scans that field's index (narrowed by every range on the same
  field at the top level of an ``&``), in ascending or descending order; the other
  predicates filter what it yields;
* otherwise an ``&`` scans one index: an equality (``==``, ``in_``) if there is
  one, else the first indexed predicate, narrowed by every other predicate on the
  same field (``(a >= 10) & (a < 20)`` reads ``[10, 20)``);
* an ``|`` whose branches all use one index is one scan of the union of their
  ranges; an ``|`` over different indexes (at the top, or inside an ``&`` that
  nothing else narrows) scans each branch in turn (an instance is yielded by the
  first branch it matches, so nothing comes twice and nothing is held in memory);
* a predicate on an **unindexed** field, a ``~``, or an ``|`` with an unindexed
  branch, is answered by scanning every instance of the model (through the primary
  key index) and filtering -- correct, but it reads the whole model: index fields
  you query often.  ``uses_full_scan()`` tells.

Iteration holds one page (``page_size`` records, default 100) in memory whatever
the size of the result; ``limit``/``offset`` are applied while iterating, so there
is no cap on how far you can page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from ktstore.client.command import Program
from ktstore.models import keycodec
from ktstore.models.backend import END, Binding, Emit, Pull, Stream, adrive
from ktstore.models.errors import ModelError, ValidationError
from ktstore.models.fields import Index

if TYPE_CHECKING:
    from ktstore.models.base import Model
    from ktstore.models.fields import Field

Range = tuple[bytes, "bytes | None"]  # [lo, hi) inside one index, relative to its base

_PRESENT_LO = b"\x02"  # every non-None value key starts at or above this byte


class Expr:
    """Base of query expressions."""

    def __and__(self, other: Expr) -> Expr:
        return And([self, other])

    def __or__(self, other: Expr) -> Expr:
        return Or([self, other])

    def __invert__(self) -> Expr:
        return Not(self)

    def matches(self, instance: Any) -> bool:
        raise NotImplementedError

    def ranges(self) -> tuple[Field, list[Range]] | None:
        """``(field, ranges)`` when an index can narrow this predicate, else ``None``."""
        return None

    def exact(self) -> bool:
        """True when the index entries in ``ranges()`` are exactly the matches (no record
        needs reading to decide), so counting keys counts results."""
        return False

    def __bool__(self) -> bool:
        raise TypeError(
            "query expressions have no truth value: combine them with & and | "
            "(not 'and'/'or'), and compare fields with == only inside queries"
        )


def _key(field: Field, value: Any) -> bytes:
    return field.encode_key(value)


def _cmp_keys(field: Field, a: Any, b: Any) -> int:
    ka, kb = _key(field, a), _key(field, b)
    return (ka > kb) - (ka < kb)


class Compare(Expr):
    def __init__(self, field: Field, op: str, value: Any) -> None:
        self.field, self.op, self.value = field, op, value
        if op not in ("==", "!=") and value is None:
            raise ValidationError(f"{field!r} {op} None has no meaning; use == None")
        if op not in ("==", "!=") and not field.indexable:
            pass  # evaluated by Python comparison in matches()

    def __repr__(self) -> str:
        return f"({self.field.name} {self.op} {self.value!r})"

    def matches(self, instance: Any) -> bool:
        v = getattr(instance, self.field.name)
        op = self.op
        if not self.field.indexable:
            if op == "==":
                return bool(v == self.value)
            if op == "!=":
                return bool(v != self.value)
            try:
                return bool(
                    {
                        "<": v < self.value,
                        "<=": v <= self.value,
                        ">": v > self.value,
                        ">=": v >= self.value,
                    }[op]
                )
            except TypeError:
                return False
        if op == "==":
            return (
                v is None
                if self.value is None
                else (v is not None and _cmp_keys(self.field, v, self.value) == 0)
            )
        if op == "!=":
            return not (
                v is None
                if self.value is None
                else (v is not None and _cmp_keys(self.field, v, self.value) == 0)
            )
        if v is None:
            return False
        c = _cmp_keys(self.field, v, self.value)
        return {"<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0}[op]

    def exact(self) -> bool:
        return self.field.index  # values compare like their index keys

    def ranges(self) -> tuple[Field, list[Range]] | None:
        return self.key_ranges() if self.field.index else None

    def key_ranges(self) -> tuple[Field, list[Range]] | None:
        """The key ranges of the field's values that match, indexed or not (a composite
        index part uses them)."""
        f = self.field
        if not f.indexable:
            return None
        k = _key(f, self.value)
        succ = keycodec.prefix_successor(k)
        op = self.op
        if op == "==":
            return f, [(k, succ)]
        if op == "!=":
            return f, [(b"", k), (succ or b"\xff", None)] if succ else [(b"", k)]
        if op == "<":
            return f, [(_PRESENT_LO, k)]
        if op == "<=":
            return f, [(_PRESENT_LO, succ)]
        if op == ">":
            return f, [(succ, None)] if succ else []
        return f, [(k, None)]


class Between(Expr):
    def __init__(self, field: Field, low: Any, high: Any) -> None:
        if low is None or high is None:
            raise ValidationError("between() needs two values")
        self.field, self.low, self.high = field, low, high

    def __repr__(self) -> str:
        return f"({self.field.name} between {self.low!r} and {self.high!r})"

    def matches(self, instance: Any) -> bool:
        v = getattr(instance, self.field.name)
        if v is None:
            return False
        if not self.field.indexable:
            try:
                return bool(self.low <= v <= self.high)
            except TypeError:
                return False
        return _cmp_keys(self.field, v, self.low) >= 0 and _cmp_keys(self.field, v, self.high) <= 0

    def exact(self) -> bool:
        return self.field.index  # values compare like their index keys

    def ranges(self) -> tuple[Field, list[Range]] | None:
        return self.key_ranges() if self.field.index else None

    def key_ranges(self) -> tuple[Field, list[Range]] | None:
        if not self.field.indexable:
            return None
        lo = _key(self.field, self.low)
        hi = keycodec.prefix_successor(_key(self.field, self.high))
        return self.field, [(lo, hi)] if (hi is None or lo < hi) else []


class StartsWith(Expr):
    def __init__(self, field: Field, prefix: Any) -> None:
        self.field, self.prefix = field, prefix
        self._pkey = field.prefix_key(prefix)

    def __repr__(self) -> str:
        return f"({self.field.name} startswith {self.prefix!r})"

    def matches(self, instance: Any) -> bool:
        v = getattr(instance, self.field.name)
        return v is not None and v.startswith(self.prefix)

    def exact(self) -> bool:
        return self.field.index  # values compare like their index keys

    def ranges(self) -> tuple[Field, list[Range]] | None:
        return self.key_ranges() if self.field.index else None

    def key_ranges(self) -> tuple[Field, list[Range]] | None:
        return self.field, [(self._pkey, keycodec.prefix_successor(self._pkey))]


class In(Expr):
    def __init__(self, field: Field, values: list[Any]) -> None:
        self.field, self.values = field, values
        self._eqs = [Compare(field, "==", v) for v in values]

    def __repr__(self) -> str:
        return f"({self.field.name} in {self.values!r})"

    def matches(self, instance: Any) -> bool:
        return any(e.matches(instance) for e in self._eqs)

    def exact(self) -> bool:
        return self.field.index  # values compare like their index keys

    def ranges(self) -> tuple[Field, list[Range]] | None:
        if not self.field.index:
            return None
        keys = sorted({_key(self.field, v) for v in self.values})
        return self.field, [(k, keycodec.prefix_successor(k)) for k in keys]


class _Combined(Expr):
    """``&`` / ``|`` of several expressions, flattened (``a & (b & c)`` has three parts)."""

    symbol = ""

    def __init__(self, parts: list[Expr]) -> None:
        self.parts: list[Expr] = []
        for p in parts:
            self.parts.extend(p.parts if isinstance(p, type(self)) else [p])

    def __repr__(self) -> str:
        return "(" + f" {self.symbol} ".join(map(repr, self.parts)) + ")"


class And(_Combined):
    symbol = "&"

    def matches(self, instance: Any) -> bool:
        return all(p.matches(instance) for p in self.parts)

    def ranges(self) -> tuple[Field, list[Range]] | None:
        # Prefer the most selective kind of predicate (equality, then the others), and
        # narrow its ranges by every other predicate on the same field: a >= 10 & a < 20
        # scans [10, 20), not [10, end).
        narrowing = [(p, r) for p in self.parts if (r := p.ranges()) is not None]
        if not narrowing:
            return None
        best = min(narrowing, key=lambda pr: 0 if _is_equality(pr[0]) else 1)
        field = best[1][0]
        ranges: list[Range] = [(b"", None)]
        for _p, (f, rs) in narrowing:
            if f is field:
                ranges = _intersect(ranges, rs)
        return field, ranges

    def exact(self) -> bool:
        r = self.ranges()
        return r is not None and all(p.exact() and p.ranges()[0] is r[0] for p in self.parts)  # type: ignore[index]


def _is_equality(expr: Expr) -> bool:
    return isinstance(expr, In) or getattr(expr, "op", "") == "=="


class Or(_Combined):
    symbol = "|"

    def matches(self, instance: Any) -> bool:
        return any(p.matches(instance) for p in self.parts)

    def ranges(self) -> tuple[Field, list[Range]] | None:
        # Every branch narrowed by the same index: one scan of the union of their ranges
        # (merged, so an instance in two branches is read once), in index order.
        branches = [p.ranges() for p in self.parts]
        if not branches or any(b is None for b in branches):
            return None
        field = branches[0][0]  # type: ignore[index]
        if any(b[0] is not field for b in branches):  # type: ignore[index]
            return None
        return field, _union([r for b in branches for r in b[1]])  # type: ignore[index]

    def exact(self) -> bool:
        return self.ranges() is not None and all(p.exact() for p in self.parts)


class Not(Expr):
    def __init__(self, part: Expr) -> None:
        self.part = part

    def __repr__(self) -> str:
        return f"~{self.part!r}"

    def matches(self, instance: Any) -> bool:
        return not self.part.matches(instance)


class UpdateExpr:
    """A value computed from an instance's own fields, for ``Query.update``:
    ``Post.views + 1``, ``F("price") * 2``, ``F("name") + "!"``."""

    def evaluate(self, instance: Any) -> Any:
        raise NotImplementedError

    def _op(self, op: str, other: Any, swap: bool = False) -> UpdateExpr:
        return Arith(op, other, self) if swap else Arith(op, self, other)

    def __add__(self, other: Any) -> UpdateExpr:
        return self._op("+", other)

    def __radd__(self, other: Any) -> UpdateExpr:
        return self._op("+", other, True)

    def __sub__(self, other: Any) -> UpdateExpr:
        return self._op("-", other)

    def __rsub__(self, other: Any) -> UpdateExpr:
        return self._op("-", other, True)

    def __mul__(self, other: Any) -> UpdateExpr:
        return self._op("*", other)

    def __rmul__(self, other: Any) -> UpdateExpr:
        return self._op("*", other, True)

    def __truediv__(self, other: Any) -> UpdateExpr:
        return self._op("/", other)

    def __floordiv__(self, other: Any) -> UpdateExpr:
        return self._op("//", other)


class F(UpdateExpr):
    """The current value of the field ``name`` of the instance being updated."""

    def __init__(self, name: str) -> None:
        self.name = name

    def evaluate(self, instance: Any) -> Any:
        if self.name not in type(instance)._kt.fields:
            raise ModelError(f"{type(instance).__name__} has no field {self.name!r}")
        return getattr(instance, self.name)

    def __repr__(self) -> str:
        return f"F({self.name!r})"


_OPS: dict[str, Any] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "//": lambda a, b: a // b,
}


class Arith(UpdateExpr):
    def __init__(self, op: str, left: Any, right: Any) -> None:
        self.op, self.left, self.right = op, left, right

    def evaluate(self, instance: Any) -> Any:
        a = self.left.evaluate(instance) if isinstance(self.left, UpdateExpr) else self.left
        b = self.right.evaluate(instance) if isinstance(self.right, UpdateExpr) else self.right
        if a is None or b is None:
            return None  # as SQL: arithmetic on NULL is NULL
        try:
            return _OPS[self.op](a, b)
        except TypeError as exc:
            raise ValidationError(f"cannot compute {self!r}: {exc}") from None

    def __repr__(self) -> str:
        return f"({self.left!r} {self.op} {self.right!r})"


class Order:
    """``User.age.desc()`` / ``User.age.asc()`` for ``order_by``."""

    def __init__(self, field: Field, descending: bool) -> None:
        self.field, self.descending = field, descending

    def __repr__(self) -> str:
        return f"{self.field.name}{' desc' if self.descending else ''}"


def _encode_token(pos: tuple[int, int, bytes]) -> str:
    import base64

    import msgpack

    return base64.urlsafe_b64encode(msgpack.packb(list(pos), use_bin_type=True)).decode()


def _decode_token(token: str) -> tuple[int, int, bytes]:
    import base64

    import msgpack

    try:
        pi, ri, key = msgpack.unpackb(base64.urlsafe_b64decode(token.encode()))
        return int(pi), int(ri), bytes(key)
    except Exception:
        raise ValidationError(f"not a page token of this query: {token!r}") from None


def _intersect(a: list[Range], b: list[Range]) -> list[Range]:
    out = []
    for lo1, hi1 in a:
        for lo2, hi2 in b:
            lo = max(lo1, lo2)
            if hi1 is None:
                hi = hi2
            elif hi2 is None:
                hi = hi1
            else:
                hi = min(hi1, hi2)
            if hi is None or lo < hi:
                out.append((lo, hi))
    return sorted(out)


def _union(ranges: list[Range]) -> list[Range]:
    """Sorted, non-overlapping ranges covering the same keys as ``ranges``."""
    out: list[Range] = []
    for lo, hi in sorted(ranges):
        if out and (out[-1][1] is None or lo <= out[-1][1]):  # type: ignore[operator]
            plo, phi = out[-1]
            out[-1] = (plo, None if hi is None or phi is None else max(phi, hi))
        else:
            out.append((lo, hi))
    return out


_M = TypeVar("_M", bound="Model")


class Query(Generic[_M]):
    """A lazy query over one model (``Query[User]`` iterates ``User`` instances).
    Immutable: every method returns a new query."""

    def __init__(
        self,
        model: type[_M],
        where: Expr | None = None,
        order: tuple[Order, ...] = (),
        limit: int | None = None,
        offset: int = 0,
        page_size: int = 100,
        max_sort: int = 10_000,
    ) -> None:
        self.model = model
        self.where = where
        self.order = order
        self._limit = limit
        self._offset = offset
        self.page_size = page_size
        self.max_sort = max_sort

    def _copy(self, **kw: Any) -> Query[_M]:
        args: dict[str, Any] = dict(
            where=self.where,
            order=self.order,
            limit=self._limit,
            offset=self._offset,
            page_size=self.page_size,
            max_sort=self.max_sort,
        )
        args.update(kw)
        return Query(self.model, **args)

    def __repr__(self) -> str:
        out = [f"<Query {self.model.__name__}"]
        if self.where is not None:
            out.append(f"where={self.where!r}")
        if self.order:
            out.append("order_by=(" + ", ".join(map(repr, self.order)) + ")")
        if self._offset:
            out.append(f"offset={self._offset}")
        if self._limit is not None:
            out.append(f"limit={self._limit}")
        if self.page_size != 100:
            out.append(f"page_size={self.page_size}")
        return " ".join(out) + ">"

    # ---- building ---------------------------------------------------------------------

    def filter(self, *exprs: Expr, **equals: Any) -> Query[_M]:
        """Narrow the query (``&`` of everything given); keywords mean equality."""
        parts = list(exprs)
        fields = self.model._kt.fields
        for name, value in equals.items():
            if name not in fields:
                raise ModelError(f"{self.model.__name__} has no field {name!r}")
            parts.append(Compare(fields[name], "==", value))
        for p in parts:
            if not isinstance(p, Expr):
                raise ModelError(f"not a query expression: {p!r}")
        if self.where is not None:
            parts.insert(0, self.where)
        if not parts:
            return self
        return self._copy(where=parts[0] if len(parts) == 1 else And(parts))

    where_ = filter

    def order_by(self, *orders: Any) -> Query[_M]:
        """Order by one or several fields: ``order_by(User.age)``,
        ``order_by(Task.done, Task.due.desc())``, ``order_by("done", "-due")``.

        One field needs its index (``index=True``) or a composite index starting with
        it.  Several fields use a composite index (:class:`~ktstore.models.fields.Index`)
        whose parts, after those fixed by equalities of the filter, are these fields in
        this order and these directions (or all reversed).  Without one, the matches are
        sorted in memory, but only up to ``max_sort`` of them (see :meth:`sort_limit`):
        beyond that the query raises :class:`ModelError` naming the index to declare.
        ``order_by()`` with no argument removes the ordering."""
        out: list[Order] = []
        for order in orders:
            if isinstance(order, str):
                desc = order.startswith("-")
                name = order.lstrip("-+")
                field = self.model._kt.fields.get(name)
                if field is None:
                    raise ModelError(f"{self.model.__name__} has no field {name!r}")
                order = Order(field, desc)
            elif not isinstance(order, Order):
                order = Order(order, False)
            out.append(order)
        in_index = {f.name for _ix, cols in self._candidates_indexes() for f, _d in cols}
        if len(out) == 1 and out[0].field.name not in in_index:
            f = out[0].field
            raise ModelError(
                f"ordering needs an index: declare {f.name} with index=True "
                f"(or a fields.Index starting with {f.name!r})"
            )
        return self._copy(order=tuple(out))

    def sort_limit(self, n: int) -> Query[_M]:
        """How many matches a multi-field ordering without a fitting index may sort in
        memory (default 10,000) before raising instead."""
        return self._copy(max_sort=max(0, int(n)))

    def limit(self, n: int | None) -> Query[_M]:
        if n is not None and n < 0:
            raise ValidationError("limit must be >= 0")
        return self._copy(limit=n)

    def offset(self, n: int) -> Query[_M]:
        if n < 0:
            raise ValidationError("offset must be >= 0")
        return self._copy(offset=n)

    def paged(self, page_size: int) -> Query[_M]:
        """How many records one server round trip brings (memory held while iterating)."""
        return self._copy(page_size=max(1, int(page_size)))

    # ---- planning ---------------------------------------------------------------------

    def plan(self) -> list[tuple[Any, list[Range], Expr | None]]:
        """The scans that answer the query: ``[(index, ranges, branch)]`` (the index is
        a field or a composite :class:`~ktstore.models.fields.Index`).  With several
        scans (an ``|``), an instance is taken from the first branch it matches.
        Raises :class:`ModelError` when an index it needs is not built yet (``index=True``
        added after records were stored: run ``rebuild()``)."""
        plan = self._plan()
        info = self.model._kt
        if info.store is not None or info.astore is None:
            self.model._run(lambda b: self._check_built(b, plan))
        return plan

    def _check_built(self, b: Binding, plan: list[tuple[Any, list[Range], Expr | None]]) -> Program:
        if b.unbuilt:
            yield from b.require_built(self.model.__name__, [p[0].name for p in plan], "index=True")

    def _checked_plan(self, b: Binding) -> Program:
        """:meth:`plan`, checked on ``b`` (a program)."""
        plan = self._plan()
        yield from self._check_built(b, plan)
        return plan

    def sorts_in_memory(self) -> bool:
        """True when the ordering has no fitting index (matches are sorted in memory,
        up to ``max_sort`` of them)."""
        return bool(self.order) and self._fitting(self._top_parts(), self.order) is None

    def _top_parts(self) -> list[Expr]:
        where = self.where
        return where.parts if isinstance(where, And) else [where] if where is not None else []

    def _candidates_indexes(self) -> list[tuple[Any, list[tuple[Field, bool]]]]:
        meta = self.model._kt
        out: list[tuple[Any, list[tuple[Field, bool]]]] = [
            (f, [(f, False)]) for f in meta.fields.values() if f.index
        ]
        out.extend((ix, ix.parts) for ix in meta.indexes.values())
        return out

    def _fitting(
        self, parts: list[Expr], order: tuple[Order, ...]
    ) -> tuple[int, Any, list[Range], bool] | None:
        """The best index for an equality prefix + range (+ ordering): ``(score, index,
        ranges, reversed)`` with score = parts narrowed, or ``None`` when no index gives
        the ordering asked for."""
        eqs: dict[str, Any] = {}
        for p in parts:
            if isinstance(p, Compare) and p.op == "==" and p.field.indexable:
                eqs.setdefault(p.field.name, p.value)
        best: tuple[int, Any, list[Range], bool] | None = None
        best_len = 0
        for index, cols in self._candidates_indexes():
            j = 0
            prefix = b""
            while j < len(cols) and cols[j][0].name in eqs:
                f, desc = cols[j]
                k = f.encode_key(eqs[f.name])
                prefix += keycodec.invert(k) if desc else k
                j += 1
            reverse = False
            if order:
                fixed = {c[0].name for c in cols[:j]}
                wanted = [o for o in order if o.field.name not in fixed]
                rest = cols[j : j + len(wanted)]
                if len(rest) < len(wanted) or any(
                    o.field is not f for o, (f, _d) in zip(wanted, rest, strict=False)
                ):
                    continue
                same = [o.descending == d for o, (_f, d) in zip(wanted, rest, strict=False)]
                if wanted and not (all(same) or not any(same)):
                    continue
                reverse = bool(wanted) and not same[0]
            score = j
            comp: list[Range] = [(b"", None)]
            if j < len(cols):
                f, desc = cols[j]
                narrowed = False
                for p in parts:
                    if isinstance(p, In) or _is_equality(p):
                        continue
                    kr = getattr(p, "key_ranges", None)
                    r = kr() if kr is not None and getattr(p, "field", None) is f else None
                    if r is None:
                        continue
                    rs = r[1]
                    if desc:
                        rs = sorted(x for lo, hi in rs if (x := keycodec.invert_range(lo, hi)))
                    comp = _intersect(comp, rs)
                    narrowed = True
                score += 1 if narrowed else 0
            ranges: list[Range] = []
            for lo, hi in comp:
                if hi is None:
                    ranges.append(
                        (prefix + lo, keycodec.prefix_successor(prefix) if prefix else None)
                    )
                else:
                    ranges.append((prefix + lo, prefix + hi))
            # most parts narrowed first; on a tie the shorter index (smaller keys)
            if best is None or (score, -len(cols)) > (best[0], -best_len):
                best, best_len = (score, index, ranges, reverse), len(cols)
        return best

    def _reverse(self) -> bool:
        """Whether the scans walk their index backwards."""
        if not self.order:
            return False
        fit = self._fitting(self._top_parts(), self.order)
        return fit is not None and fit[3]

    def _plan(self) -> list[tuple[Any, list[Range], Expr | None]]:
        meta = self.model._kt
        where = self.where
        parts = self._top_parts()
        if self.order:
            fit = self._fitting(parts, self.order)
            if fit is not None:
                return [(fit[1], fit[2], None)]
            return self._copy(order=())._plan()  # sorted in memory
        if meta.indexes and len(parts) > 1:
            fit = self._fitting(parts, ())
            if fit is not None and fit[0] >= 2 and isinstance(fit[1], Index):
                return [(fit[1], fit[2], None)]
        if where is not None:
            r = where.ranges()
            if r is not None:
                return [(r[0], r[1], None)]
            # an | over different indexes (at the top, or inside an & that nothing else
            # narrows): one scan per branch, each instance taken from the first it matches
            for part in parts:
                if isinstance(part, Or):
                    branches = [(p, p.ranges()) for p in part.parts]
                    if all(br is not None for _, br in branches):
                        return [(br[0], br[1], p) for p, br in branches]  # type: ignore[index]
        return [(meta.pk, [(b"", None)], None)]

    def uses_full_scan(self) -> bool:
        """True when the query reads every instance (no index narrows it)."""
        plan = self.plan()
        return len(plan) == 1 and plan[0][1] == [(b"", None)] and self.where is not None

    # ---- execution --------------------------------------------------------------------

    def _candidates(
        self, b: Binding, start: tuple[int, int, bytes] | None = None, page: int | None = None
    ) -> Stream:
        """A stream of ``(position, instance)`` for every match; a position (scan,
        range, index key) can resume the query right after that instance (see
        :meth:`page`).  ``page`` sizes the first server page of each scan (later pages
        are ``page_size``)."""
        if self.sorts_in_memory():
            yield from self._sorted(b, start)
            return
        desc = self._reverse()
        plan = yield from self._checked_plan(b)
        earlier: list[Expr] = []
        for pi, (field, ranges, branch) in enumerate(plan):
            base = b.index_base(field.name)
            todo = list(reversed(ranges)) if desc else ranges
            for ri, (lo, hi) in enumerate(todo):
                after = None
                if start is not None:
                    if (pi, ri) < start[:2]:
                        continue
                    if (pi, ri) == start[:2]:
                        after = start[2]
                klo = base + lo
                khi = base + hi if hi is not None else keycodec.prefix_successor(base)
                entries = Pull(
                    b.scan_all(
                        b.idb,
                        klo,
                        khi,
                        reverse=desc,
                        page=self.page_size,
                        join=True,
                        after=after,
                        first_page=page,
                    )
                )
                while (entry := (yield from entries.next())) is not END:
                    key, _pk, rec, xt = entry
                    if rec is None:
                        continue  # record gone (expired or deleted since): not a result
                    inst = self.model._from_record(rec, xt)
                    if self.where is not None and not self.where.matches(inst):
                        continue
                    if any(e.matches(inst) for e in earlier):
                        continue  # already yielded by an earlier branch of the |
                    yield Emit(((pi, ri, key), inst))
            if branch is not None:
                earlier.append(branch)

    def _sorted(self, b: Binding, start: tuple[int, int, bytes] | None) -> Stream:
        """The matches sorted in memory by the ordering (no index gives it): at most
        ``max_sort`` of them, else :class:`ModelError` naming the index to declare.
        Positions are ``(-1, rank, b"")``."""
        pk = self.model._kt.pk
        found: list[tuple[list[bytes], _M]] = []
        matches = Pull(self._copy(order=())._candidates(b))
        while (item := (yield from matches.next())) is not END:
            inst = item[1]
            if len(found) >= self.max_sort:
                matches.close()
                spec = ", ".join(
                    repr(("-" if o.descending else "") + o.field.name) for o in self.order
                )
                raise ModelError(
                    f"{self.model.__name__}: more than {self.max_sort} matches to sort in "
                    f"memory; declare fields.Index({spec}) on {self.model.__name__} (then "
                    "rebuild()) so the order comes from an index, or narrow the query"
                )
            key = []
            for o in self.order:
                k = o.field.encode_key(getattr(inst, o.field.name))
                key.append(keycodec.invert(k) if o.descending else k)
            key.append(pk.encode_key(getattr(inst, pk.name)))
            found.append((key, inst))
        found.sort(key=lambda item: item[0])
        skip = start[1] + 1 if start is not None and start[0] == -1 else 0
        for rank in range(skip, len(found)):
            yield Emit(((-1, rank, b""), found[rank][1]))

    def page(self, size: int, token: str | None = None) -> tuple[list[_M], str | None]:
        """One page of results and a token for the next one (``None`` at the end).

        Tokens are stateless ("continue after this index key"): nothing is kept on the
        server, they never expire, and records added or removed meanwhile neither shift
        nor repeat the results (unlike offsets).  A token belongs to the query that made
        it; ``offset`` and ``limit`` are ignored when paging.
        """
        if size < 1:
            raise ValidationError("page size must be >= 1")
        return self.model._run(lambda b: self._page(b, size, token))  # type: ignore[no-any-return]

    async def apage(self, size: int, token: str | None = None) -> tuple[list[_M], str | None]:
        """:meth:`page` on the model's AsyncStore."""
        if size < 1:
            raise ValidationError("page size must be >= 1")
        return await self.model._arun(lambda b: self._page(b, size, token))  # type: ignore[no-any-return]

    def _page(self, b: Binding, size: int, token: str | None) -> Program:
        start = _decode_token(token) if token else None
        items: list[_M] = []
        last: tuple[int, int, bytes] | None = start
        q = self.paged(min(size + 1, 1000)) if self.page_size < size else self
        matches = Pull(q._candidates(b, start))
        try:
            while (item := (yield from matches.next())) is not END:
                pos, inst = item
                if len(items) == size and last is not None:
                    return items, _encode_token(last)  # one more exists: a next page
                items.append(inst)
                last = pos
        finally:
            matches.close()
        return items, None

    def _stream(self, b: Binding) -> Stream:
        """A stream of the matching instances (offset and limit applied)."""
        skip = self._offset
        left = self._limit
        if left == 0:
            return
        # first() needs one record, not a page of 100: ask for no more than the limit
        # (later pages, when filtering drops some, are full size)
        first_page = min(self.page_size, skip + left) if left is not None else None
        matches = Pull(self._candidates(b, page=first_page))
        try:
            while (item := (yield from matches.next())) is not END:
                if skip:
                    skip -= 1
                    continue
                yield Emit(item[1])
                if left is not None:
                    left -= 1
                    if left == 0:
                        return
        finally:
            matches.close()

    def __iter__(self) -> Iterator[_M]:
        b = self.model._binding()
        return b.iterate(self._stream(b))

    async def __aiter__(self) -> AsyncIterator[_M]:
        """``async for inst in query``: the same results through the AsyncStore."""
        b = await self.model._abinding()
        async for inst in adrive(b.client, self._stream(b)):
            yield inst

    def all(self) -> list[_M]:
        return [inst for inst in self]  # not list(self): that would call __len__ (a count)

    async def aall(self) -> list[_M]:
        """:meth:`all` on the model's AsyncStore."""
        return [inst async for inst in self]

    def __len__(self) -> int:
        """``count()``.  Note that ``list(q)``, ``tuple(q)`` and ``sorted(q)`` ask
        ``len()`` first (a size hint), so they count before iterating; ``q.all()``
        does not."""
        return self.count()

    def values(self, *names: str, json_safe: bool = False) -> Iterator[dict[str, Any]]:
        """A projection: ``{name: value}`` of the fields named (all without names) for
        each match, lazily (``json_safe`` as in ``Model.to_dict``)."""
        only = self._projection(names)
        for inst in self:
            yield inst.to_dict(only=only, json_safe=json_safe)

    async def avalues(self, *names: str, json_safe: bool = False) -> AsyncIterator[dict[str, Any]]:
        """:meth:`values` on the model's AsyncStore (``async for row in q.avalues()``)."""
        only = self._projection(names)
        async for inst in self:
            yield inst.to_dict(only=only, json_safe=json_safe)

    def _projection(self, names: tuple[str, ...]) -> list[str] | None:
        fields = self.model._kt.fields
        for name in names:
            if name not in fields:
                raise ModelError(f"{self.model.__name__} has no field {name!r}")
        return list(names) or None

    def values_list(self, *names: str, flat: bool = False) -> Iterator[Any]:
        """Tuples of the fields named for each match; ``flat=True`` with one name yields
        the bare values."""
        if flat and len(names) != 1:
            raise ValidationError("values_list(flat=True) takes exactly one field")
        for row in self.values(*names):
            yield row[names[0]] if flat else tuple(row.values())

    async def avalues_list(self, *names: str, flat: bool = False) -> AsyncIterator[Any]:
        """:meth:`values_list` on the model's AsyncStore."""
        if flat and len(names) != 1:
            raise ValidationError("values_list(flat=True) takes exactly one field")
        async for row in self.avalues(*names):
            yield row[names[0]] if flat else tuple(row.values())

    def update(self, **changes: Any) -> int:
        """Apply ``changes`` to every match; the number of instances changed.

        Values are plain values or expressions of the instance's own fields
        (``Post.views + 1``, ``F("price") * 2``).  Each page of matches (``page_size``)
        is **one** atomic server call: every record of the page is rewritten with its
        index entries moved, only if none changed since it was read (compare-and-swap);
        if one did, the page is read again and re-applied, so no concurrent change is
        lost.  Pages are independent: a failure (a unique violation...) leaves the
        earlier pages applied and raises.  An instance whose change moves it further
        along the index being scanned is not changed twice."""
        self._check_update(changes)
        return self.model._run(lambda b: self._update(b, changes), writable=True)  # type: ignore[no-any-return]

    async def aupdate(self, **changes: Any) -> int:
        """:meth:`update` on the model's AsyncStore."""
        self._check_update(changes)
        return await self.model._arun(lambda b: self._update(b, changes), writable=True)  # type: ignore[no-any-return]

    def _check_update(self, changes: dict[str, Any]) -> None:
        model = self.model
        meta = model._kt
        for name in changes:
            f = meta.fields.get(name)
            if f is None:
                raise ModelError(f"{model.__name__} has no field {name!r}")
            if f is meta.pk or f is meta.version:
                raise ModelError(f"{model.__name__}.{name} cannot be changed by update()")

    def _update(self, b: Binding, changes: dict[str, Any]) -> Program:
        from ktstore.models.base import Model as _Model

        plan_fields: set[str] = set()
        for index, _ranges, _branch in self._copy(limit=None, offset=0)._plan():
            cols = getattr(index, "parts", None) or [(index, False)]
            plan_fields.update(f.name for f, _d in cols)
        track = bool(plan_fields & set(changes))
        seen: set[str] = set()
        total = 0
        page: list[_Model] = []
        matches = Pull(self._stream(b))
        try:
            while (inst := (yield from matches.next())) is not END:
                if track:
                    pk = inst._pkstr()
                    if pk in seen:
                        continue
                    seen.add(pk)
                page.append(inst)
                if len(page) >= self.page_size:
                    total += yield from self._update_page(b, page, changes)
                    page = []
        finally:
            matches.close()
        if page:
            total += yield from self._update_page(b, page, changes)
        return total

    def _update_page(self, binding: Binding, page: list[Any], changes: dict[str, Any]) -> Program:
        from ktstore.models.base import backoff

        model = self.model
        for attempt in range(50):
            specs, records, fresh = [], [], []
            for inst in page:
                new = model.__new__(model)  # a copy of the loaded state (no decoding)
                new.__dict__.update(
                    (k, v) for k, v in inst.__dict__.items() if k not in ("_kt_rel", "_kt_pending")
                )
                for name, value in changes.items():
                    v = value.evaluate(inst) if isinstance(value, UpdateExpr) else value
                    setattr(new, name, v)  # validated and converted by attrs
                spec, record = new._spec(binding, mode="update", cas=inst._kt_raw)
                specs.append(spec)
                records.append(record)
                fresh.append(new)
            if not specs:
                return 0
            out = yield from binding.save(specs)
            if out.get(b"err") in (b"conflict", b"missing"):
                # one record changed (or went) since it was read: read the page again
                keys = [binding.record_key(i._pkstr()) for i in page]
                found = yield from binding.get_records(keys)
                page = [
                    inst
                    for k in keys
                    if k in found
                    and (inst := model._from_record(*found[k])) is not None
                    and (self.where is None or self.where.matches(inst))
                ]
                backoff(binding, attempt + 1)
                continue
            fresh[0]._raise_for(out, fresh)
            for i, (new, record) in enumerate(zip(fresh, records, strict=True), 1):
                new._after_save(record, out.get(b"xt%d" % i))
            return len(fresh)
        raise ModelError(f"{model.__name__}.query().update(): too much contention, gave up")

    def first(self) -> _M | None:
        return self.model._run(self._first)  # type: ignore[no-any-return]

    async def afirst(self) -> _M | None:
        """:meth:`first` on the model's AsyncStore."""
        return await self.model._arun(self._first)  # type: ignore[no-any-return]

    def _first(self, b: Binding) -> Program:
        matches = Pull(self.limit(1)._stream(b))
        inst = yield from matches.next()
        matches.close()
        return None if inst is END else inst

    def exists(self) -> bool:
        return self.first() is not None

    async def aexists(self) -> bool:
        """:meth:`exists` on the model's AsyncStore."""
        return await self.afirst() is not None

    def count(self) -> int:
        """Number of matching instances.  When the index answers the whole filter
        (``exact()``: every predicate on one indexed field) only index keys are read
        (exact unless the data was damaged behind the model layer's back, as for
        ``Model.count()``); otherwise the records are, page by page (nothing is kept)."""
        return self.model._run(self._count)  # type: ignore[no-any-return]

    async def acount(self) -> int:
        """:meth:`count` on the model's AsyncStore."""
        return await self.model._arun(self._count)  # type: ignore[no-any-return]

    def _count(self, b: Binding) -> Program:
        if self.where is not None and not self.where.exact():
            matches = Pull(self._stream(b))
            n = 0
            while (yield from matches.next()) is not END:
                n += 1
            return n
        ((field, ranges, _),) = yield from self._copy(order=())._checked_plan(b)
        base = b.index_base(field.name)
        n = 0
        for lo, hi in ranges:
            khi = base + hi if hi is not None else keycodec.prefix_successor(base)
            n += yield from b.count_range(b.idb, base + lo, khi)
        n = max(0, n - self._offset)
        return n if self._limit is None else min(n, self._limit)

    def delete(self) -> int:
        """Delete every matching instance (atomically each, one page at a time)."""
        return self.model._run(self._delete)  # type: ignore[no-any-return]

    async def adelete(self) -> int:
        """:meth:`delete` on the model's AsyncStore."""
        return await self.model._arun(self._delete)  # type: ignore[no-any-return]

    def _delete(self, b: Binding) -> Program:
        n = 0
        batch: list[Model] = []
        matches = Pull(self._stream(b))
        while (inst := (yield from matches.next())) is not END:
            batch.append(inst)
            if len(batch) >= self.page_size:
                n += yield from self.model._delete_many(b, batch)
                batch = []
        if batch:
            n += yield from self.model._delete_many(b, batch)
        return n

    @overload
    def __getitem__(self, item: int) -> _M: ...

    @overload
    def __getitem__(self, item: slice) -> Query[_M]: ...

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, slice):
            if item.step not in (None, 1) or (item.start or 0) < 0 or (item.stop or 0) < 0:
                raise ValidationError("query slices need non-negative start/stop and no step")
            start = item.start or 0
            q = self.offset(self._offset + start)
            if item.stop is not None:
                q = q.limit(max(0, item.stop - start))
            return q
        if isinstance(item, int) and item >= 0:
            found = self.offset(self._offset + item).first()
            if found is None:
                raise IndexError(item)
            return found
        if isinstance(item, int):
            if self.order and self._limit is None and not self._offset:
                # the ordering reversed: q[-1] is the first of the reversed query
                flipped = tuple(Order(o.field, not o.descending) for o in self.order)
                found = self._copy(order=flipped).offset(-item - 1).first()
            else:
                n = self.count()
                found = self.offset(self._offset + n + item).first() if n + item >= 0 else None
            if found is None:
                raise IndexError(item)
            return found
        raise TypeError("queries take int indexes and non-negative slices")

"""Full-text search over the ``Text(search=True)`` fields of a model.

Tokens are Unicode words: the text is NFKC-normalised, case-folded (``str.casefold``:
"Straße" matches "STRASSE") and stripped of diacritics ("Kyōto" matches "kyoto"), then
split into runs of word characters (``\\w``: letters, digits and ``_`` of every
script).  A record's search
fields form one document.

The inverted index lives in the index database, next to the model's other entries::

    posting   P\\0s\\0<term>\\0<pk key>  =  <pk>\\0<term frequency>
    length    P\\0d\\0<pk key>           =  <pk>\\0<number of terms>
    counters  P\\0sn (documents), P\\0sl (terms in all documents)

The entries are in the record's memo like every index entry, so ``modelsave`` and
``modeldelete`` (``lua/kt.lua``) change them in the same transaction as the record,
and keep the counters in step; ``check``/``sweep``/``rebuild`` cover them.

:meth:`Model.search` runs ``modelsearch`` on the server: it walks the posting range
of each term (a term ending in ``*`` is a prefix: every term starting with it),
keeps the documents holding all of them (AND), scores them with **BM25** (k1 = 1.2,
b = 0.75; idf = ln(1 + (N - df + 0.5) / (df + 0.5))) and answers one page in
(score descending, pk key) order, with the records read in the same call.  Ties
break on the primary key, so the ranking does not depend on insertion order.
Other predicates filter the ranked instances on the client.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ktstore.client.command import Program
from ktstore.models.backend import END, Binding, Emit, Pull, Stream, adrive
from ktstore.models.errors import ModelError, ValidationError

if TYPE_CHECKING:
    from ktstore.models.query import Expr

__all__ = ["tokenize", "parse_query", "entries", "SearchQuery", "K1", "B"]

K1 = 1.2
B = 0.75
_WORD = re.compile(r"\w+")
MAX_TERM = 128  # longer tokens are cut (keys stay small)


def tokenize(text: str) -> list[str]:
    """The search terms of ``text``, in order (repeats kept): NFKC, case folding,
    diacritics removed (as SQLite's unicode61 tokenizer: "Kyōto" is "kyoto")."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    if not folded.isascii():
        decomposed = unicodedata.normalize("NFKD", folded)
        stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
        folded = unicodedata.normalize("NFC", stripped)
    return [t[:MAX_TERM] for t in _WORD.findall(folded)]


def parse_query(text: str) -> list[tuple[str, bool]]:
    """``[(term, is_prefix)]`` of a query: its tokens, AND-ed; a word ending in ``*``
    is a prefix term (``"tyc*"`` matches "tycoon")."""
    if not isinstance(text, str):
        raise ValidationError(f"search text must be str, not {type(text).__name__}")
    out: list[tuple[str, bool]] = []
    for word in text.split():
        prefix = word.endswith("*")
        tokens = tokenize(word.rstrip("*"))
        for i, t in enumerate(tokens):
            item = (t, prefix and i == len(tokens) - 1)
            if item not in out:
                out.append(item)
    if not out:
        raise ValidationError(f"nothing to search for in {text!r}")
    return out


def posting_base(binding: Binding) -> bytes:
    return binding.prefix + b"\x00s\x00"


def length_base(binding: Binding) -> bytes:
    return binding.prefix + b"\x00d\x00"


def entries(
    binding: Binding, texts: list[str | None], pkstr: str, pk_key: bytes
) -> dict[bytes, bytes]:
    """The index-db entries of one document (its search fields' texts)."""
    counts: Counter[str] = Counter()
    for text in texts:
        if text:
            counts.update(tokenize(text))
    pk = pkstr.encode("utf-8")
    out = {
        posting_base(binding) + term.encode("utf-8") + b"\x00" + pk_key: pk + b"\x00%d" % tf
        for term, tf in counts.items()
    }
    out[length_base(binding) + pk_key] = pk + b"\x00%d" % sum(counts.values())
    return out


_M = TypeVar("_M")


class SearchQuery(Generic[_M]):
    """A lazy, paged full-text query (``Model.search(...)``; ``SearchQuery[User]``
    iterates ``User`` instances); immutable."""

    def __init__(
        self,
        model: type[_M],
        text: str,
        where: Expr | None = None,
        limit: int | None = None,
        page_size: int = 100,
    ) -> None:
        if not getattr(model, "_kt").search:  # noqa: B009 - type[_M] is any model
            raise ModelError(f"{model.__name__} has no Text(search=True) field")
        self.model: Any = model
        self.text = text
        self.terms = parse_query(text)
        self.where = where
        self._limit = limit
        self.page_size = page_size

    def _copy(self, **kw: Any) -> SearchQuery[_M]:
        args: dict[str, Any] = dict(where=self.where, limit=self._limit, page_size=self.page_size)
        args.update(kw)
        return SearchQuery(self.model, self.text, **args)

    def __repr__(self) -> str:
        out = f"<SearchQuery {self.model.__name__} {self.text!r}"
        if self.where is not None:
            out += f" where={self.where!r}"
        if self._limit is not None:
            out += f" limit={self._limit}"
        return out + ">"

    def filter(self, *exprs: Expr, **equals: Any) -> SearchQuery[_M]:
        """Keep only the matches of these predicates too (checked on the client)."""
        q = self.model.query(*exprs, **equals)
        where = q.where
        if self.where is not None and where is not None:
            where = self.where & where
        return self._copy(where=where if where is not None else self.where)

    def limit(self, n: int | None) -> SearchQuery[_M]:
        if n is not None and n < 0:
            raise ValidationError("limit must be >= 0")
        return self._copy(limit=n)

    def paged(self, page_size: int) -> SearchQuery[_M]:
        return self._copy(page_size=max(1, int(page_size)))

    # ---- execution --------------------------------------------------------------------

    def _call(self, b: Binding, n: int, after: tuple[str, bytes] | None) -> Program:
        """One page from the server (a program): ``([(score, pk key, instance)], done,
        matches)``."""
        model = self.model
        if b.unbuilt:
            yield from b.require_built(model.__name__, ["__search__"], "search=True")
        params: dict[bytes, bytes] = {
            b"db": str(b.idb).encode(),
            b"sp": posting_base(b),
            b"dp": length_base(b),
            b"base": b.prefix,
            b"nt": str(len(self.terms)).encode(),
            b"n": str(n).encode(),
            b"jdb": str(b.rdb).encode(),
            b"jp": b.record_prefix,
        }
        for i, (term, prefix) in enumerate(self.terms, 1):
            params[b"t%d" % i] = term.encode("utf-8")
            if prefix:
                params[b"p%d" % i] = b"1"
        if after is not None:
            params[b"as"] = after[0].encode()
            params[b"ak"] = after[1]
        out = yield from b.call("modelsearch", params)
        if b"err" in out:
            raise ModelError(f"search failed on the server: {out[b'err'].decode(errors='replace')}")
        rows = []
        for i in range(1, int(out.get(b"n", b"0")) + 1):
            rec = out.get(b"r%d" % i)
            xt = out.get(b"x%d" % i)
            inst = None if rec is None else model._from_record(rec, int(xt) if xt else None)
            rows.append((out[b"s%d" % i].decode(), out[b"k%d" % i], inst))
        return rows, out.get(b"done") == b"1", int(out.get(b"m", b"0"))

    def _scored(self, b: Binding) -> Stream:
        """A stream of ``(instance, score)`` pairs, best first."""
        left = self._limit
        if left == 0:
            return
        after: tuple[str, bytes] | None = None
        n = self.page_size if left is None else min(self.page_size, left)
        while True:
            rows, done, _m = yield from self._call(b, n, after)
            for score, key, inst in rows:
                after = (score, key)
                if inst is None or (self.where is not None and not self.where.matches(inst)):
                    continue
                yield Emit((inst, float(score)))
                if left is not None:
                    left -= 1
                    if left == 0:
                        return
            if done or not rows:
                return
            n = self.page_size

    def scored(self) -> Iterator[tuple[_M, float]]:
        """``(instance, score)`` pairs, best first."""
        b = self.model._binding()
        return b.iterate(self._scored(b))  # type: ignore[no-any-return]

    async def ascored(self) -> AsyncIterator[tuple[_M, float]]:
        """:meth:`scored` on the model's AsyncStore (``async for inst, score in ...``)."""
        b = await self.model._abinding()
        async for pair in adrive(b.client, self._scored(b)):
            yield pair

    def __iter__(self) -> Iterator[_M]:
        for inst, _score in self.scored():
            yield inst

    async def __aiter__(self) -> AsyncIterator[_M]:
        """``async for inst in Model.search(...)``: through the model's AsyncStore."""
        async for inst, _score in self.ascored():
            yield inst

    def all(self) -> list[_M]:
        return [inst for inst in self]

    async def aall(self) -> list[_M]:
        """:meth:`all` on the model's AsyncStore."""
        return [inst async for inst in self]

    def first(self) -> _M | None:
        for inst in self.limit(1):
            return inst
        return None

    async def afirst(self) -> _M | None:
        """:meth:`first` on the model's AsyncStore."""
        async for inst in self.limit(1):
            return inst
        return None

    def count(self) -> int:
        """Number of matches (without filters: the server's count, one call)."""
        return self.model._run(self._count)  # type: ignore[no-any-return]

    async def acount(self) -> int:
        """:meth:`count` on the model's AsyncStore."""
        return await self.model._arun(self._count)  # type: ignore[no-any-return]

    def _count(self, b: Binding) -> Program:
        if self.where is not None:
            matches = Pull(self.limit(None)._scored(b))
            n = 0
            while (yield from matches.next()) is not END:
                n += 1
        else:
            _rows, _done, n = yield from self._call(b, 1, None)
        return n if self._limit is None else min(n, self._limit)

    def __len__(self) -> int:
        return self.count()

    def page(self, size: int, token: str | None = None) -> tuple[list[_M], str | None]:
        """One page of results and a stateless token for the next (``None`` at the
        end): "continue after this score and primary key"."""
        if size < 1:
            raise ValidationError("page size must be >= 1")
        return self.model._run(lambda b: self._page(b, size, token))  # type: ignore[no-any-return]

    async def apage(self, size: int, token: str | None = None) -> tuple[list[_M], str | None]:
        """:meth:`page` on the model's AsyncStore."""
        if size < 1:
            raise ValidationError("page size must be >= 1")
        return await self.model._arun(lambda b: self._page(b, size, token))  # type: ignore[no-any-return]

    def _page(self, b: Binding, size: int, token: str | None) -> Program:
        import base64

        import msgpack

        after: tuple[str, bytes] | None = None
        if token:
            try:
                s, k = msgpack.unpackb(base64.urlsafe_b64decode(token.encode()))
                after = (str(s), bytes(k))
            except Exception:
                raise ValidationError(f"not a page token of this search: {token!r}") from None
        items: list[_M] = []
        last = after
        while True:
            rows, done, _m = yield from self._call(b, max(size + 1, self.page_size), after)
            for score, key, inst in rows:
                after = (score, key)
                if inst is None or (self.where is not None and not self.where.matches(inst)):
                    continue
                if len(items) == size and last is not None:
                    tok = base64.urlsafe_b64encode(msgpack.packb(list(last), use_bin_type=True))
                    return items, tok.decode()
                items.append(inst)
                last = after
            if done or not rows:
                return items, None

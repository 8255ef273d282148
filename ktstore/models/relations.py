"""Relations between models: :class:`ForeignKey`, its lazy accessor and reverse query,
and the ``on_delete`` rules applied on the server.

::

    class Post(Model):
        author = fields.ForeignKey(Author, on_delete=CASCADE, related_name="posts")

    post.author_id          # the stored value: the author's primary key
    post.author             # the Author, loaded on first access (then cached)
    ada.posts               # Post.query(Post.author == ada), lazy and paged
    Post(author=ada) / Post(author_id=ada.id)

The field is stored as ``author_id`` (the name given, with ``_id`` added unless it
already ends so; the accessor is the name without ``_id``), always indexed: the
entries ``P\\0i\\0author_id\\0<author pk><post pk>`` are how a delete finds the
children.  A save checks, in its transaction, that every referenced record exists
(:class:`RelationError` otherwise).

Deleting an author applies each foreign key's rule **in the same server call** as
the delete (``modeldelete`` in ``lua/kt.lua``): ``PROTECT`` refuses (nothing is
written) while a child exists, ``CASCADE`` deletes the children (recursively, by
their own rules), ``SET_NULL`` sets their field to ``None`` (moving its index entry).
More than ``cascade_page`` (1000) children are handled in several calls, each
atomic; the author goes with the last one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, overload

from ktstore.models.errors import ModelDefinitionError, ModelError, ValidationError
from ktstore.models.fields import Field, TypeVar

if TYPE_CHECKING:
    from typing_extensions import Self

    from ktstore.models.backend import Binding

# the referenced model as type checkers see it: ``author: ForeignKey[Author]``
# (``ForeignKey[Author | None]`` for an optional one)
_R = TypeVar("_R", default=Any)

__all__ = ["ForeignKey", "CASCADE", "PROTECT", "SET_NULL", "Related", "Reverse"]

CASCADE = "cascade"
PROTECT = "protect"
SET_NULL = "set_null"
_RULES = {CASCADE: "c", PROTECT: "p", SET_NULL: "n"}


class ForeignKey(Field[Any], Generic[_R]):
    """A reference to an instance of ``to`` (a model class, or ``"self"``), stored as
    its primary key.  ``on_delete``: ``PROTECT`` (default), ``CASCADE`` or ``SET_NULL``
    (which makes the field optional).  ``related_name`` names the reverse query on
    ``to`` (default ``<model>_set``).  For type checkers, annotate it
    ``author: fields.ForeignKey[Author] = fields.ForeignKey(Author)``: ``post.author``
    is then an ``Author`` and the constructor takes an ``Author`` (or its pk)."""

    if TYPE_CHECKING:

        @overload  # type: ignore[override]
        def __get__(self, instance: None, owner: Any = None) -> Self: ...

        @overload
        def __get__(self, instance: object, owner: Any = None) -> _R: ...

        def __get__(self, instance: Any, owner: Any = None) -> Any: ...

        def __set__(self, instance: object, value: _R | str | int) -> None: ...  # type: ignore[override]

    kind = "fk"

    def __init__(
        self,
        to: Any,
        *,
        on_delete: str = PROTECT,
        related_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if on_delete not in _RULES:
            raise ModelDefinitionError(
                f"on_delete must be CASCADE, PROTECT or SET_NULL, not {on_delete!r}"
            )
        if kwargs.get("primary_key"):
            raise ModelDefinitionError("a ForeignKey cannot be the primary key")
        kwargs["index"] = True
        if on_delete == SET_NULL:
            kwargs["optional"] = True
        super().__init__(**kwargs)
        self.to = to
        self.on_delete = on_delete
        self.related_name = related_name
        self.accessor = ""
        self.python_types = (str, int)

    @property
    def target(self) -> Any:
        return self.model if self.to == "self" else self.to

    def setup(self, model: type) -> None:
        """Called once the model class exists: resolve the target, take its pk's type,
        register the reverse query and the delete rule on it."""
        target = self.target
        if not hasattr(target, "_kt"):
            raise ModelDefinitionError(f"{self._where()}: {target!r} is not a model class")
        pk = target._kt.pk
        self.python_types = pk.python_types
        children = target._kt.children
        target._kt.children = [
            c
            for c in children
            if not (c.name == self.name and c.model._kt.prefix == model._kt.prefix)  # type: ignore[union-attr,attr-defined]
        ] + [self]
        name = self.related_name or f"{model.__name__.lower()}_set"
        existing = target.__dict__.get(name)
        if existing is not None and not isinstance(existing, Reverse):
            raise ModelDefinitionError(
                f"{self._where()}: related_name {name!r} is taken on {target.__name__}"
            )
        setattr(target, name, Reverse(self))

    def convert(self, value: Any) -> Any:
        if hasattr(value, "_kt") and not isinstance(value, type):
            pk = getattr(value, value._kt.pk.name)
            if pk is None:
                raise ValidationError(f"{self._where()}: save the {type(value).__name__} first")
            return pk
        return value

    def _encode_key(self, value: Any) -> bytes:
        return self.target._kt.pk._encode_key(value)  # type: ignore[no-any-return]

    def to_storage(self, value: Any) -> Any:
        return self.target._kt.pk.to_storage(value)

    def prefix_key(self, value: Any) -> bytes:
        return self.target._kt.pk.prefix_key(value)  # type: ignore[no-any-return]


class Related:
    """``post.author``: the referenced instance, loaded on first access and cached
    while ``author_id`` does not change; assigning an instance or a pk sets
    ``author_id``.  On the class, it is the field (``Post.author == ada``)."""

    def __init__(self, fk: ForeignKey) -> None:
        self.fk = fk

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self.fk
        pk = instance.__dict__.get(self.fk.name)
        if pk is None:
            return None
        cache = instance.__dict__.setdefault("_kt_rel", {})
        hit = cache.get(self.fk.name)
        if hit is not None and getattr(hit, hit._kt.pk.name) == pk:
            return hit
        obj = self.fk.target.get(pk)
        cache[self.fk.name] = obj
        return obj

    async def aload(self, instance: Any) -> Any:
        """The referenced instance through the model's AsyncStore (cached as above):
        ``await post.arelated("author")``."""
        pk = instance.__dict__.get(self.fk.name)
        if pk is None:
            return None
        cache = instance.__dict__.setdefault("_kt_rel", {})
        hit = cache.get(self.fk.name)
        if hit is not None and getattr(hit, hit._kt.pk.name) == pk:
            return hit
        obj = await self.fk.target.aget(pk)
        cache[self.fk.name] = obj
        return obj

    def __set__(self, instance: Any, value: Any) -> None:
        setattr(instance, self.fk.name, value)  # converted (instance -> pk), validated
        if hasattr(value, "_kt"):
            instance.__dict__.setdefault("_kt_rel", {})[self.fk.name] = value


class Reverse:
    """``author.posts``: the query of the instances whose foreign key refers to it."""

    def __init__(self, fk: ForeignKey) -> None:
        self.fk = fk

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        pk = getattr(instance, instance._kt.pk.name)
        return self.fk.model.query(self.fk == pk)  # type: ignore[union-attr]

    def __repr__(self) -> str:
        return f"<reverse of {self.fk!r}>"


def delete_plan(model: type, binding: Binding) -> tuple[list[bytes], list[int]]:
    """The ``rels`` of ``modeldelete`` for deleting instances of ``model`` (every
    foreign key that refers to it, and below CASCADE ones, to their models...), and
    the numbers of those referring to ``model`` itself."""
    from ktstore.models.backend import arraydump, mapdump

    specs: list[dict[bytes, bytes]] = []
    subs: list[list[int]] = []
    seen: dict[int, list[int]] = {}

    def roots(m: Any) -> list[int]:
        if id(m) in seen:
            return seen[id(m)]
        out: list[int] = []
        seen[id(m)] = out
        for fk in m._kt.children:
            child = fk.model
            from ktstore.models.backend import Binding as _Binding
            from ktstore.models.base import same_store

            if not same_store(child, binding):
                hint = " (bind the AsyncStore to every related model)" if binding.is_async else ""
                raise ModelError(
                    f"{child.__name__}.{fk.name} refers to {m.__name__} from another store: "
                    f"related models must share one store for on_delete to be atomic{hint}"
                )
            cb = _Binding(binding.store, child._kt.prefix)  # its keys (no server call)
            spec = {
                b"ib": cb.index_base(fk.name),
                b"rp": cb.record_prefix,
                b"rule": _RULES[fk.on_delete].encode(),
                b"f": fk.name.encode(),
                b"cn": arraydump([n.encode() for n in child._kt.containers]),
            }
            if fk.unique:
                spec[b"ub"] = cb.unique_base(fk.name)
            specs.append(spec)
            subs.append([])
            here = len(specs)  # 1-based number of this rel (recursion appends more)
            out.append(here)
            if fk.on_delete == CASCADE:
                subs[here - 1] = roots(child)
        return out

    top = roots(model)
    rels = []
    for spec, sub in zip(specs, subs, strict=True):
        spec[b"sub"] = ",".join(map(str, sub)).encode()
        rels.append(mapdump(spec))
    return rels, top


def check_definition(model: Any) -> None:
    """Refuse what the server-side rules cannot keep right: a SET_NULL key inside a
    composite index (the server moves the key's own entry only)."""
    for ix in model._kt.indexes.values():
        for f, _d in ix.parts:
            if isinstance(f, ForeignKey) and f.on_delete == SET_NULL:
                raise ModelDefinitionError(
                    f"{f._where()}: a SET_NULL foreign key cannot be part of the composite "
                    f"index {ix.name!r}"
                )

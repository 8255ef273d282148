"""The :class:`Model` base class: attrs classes stored as one Hash record each.

Declare a model by subclassing, with the store and options as class keywords::

    class User(Model, store=store, prefix="user", ttl=None):
        email = fields.Text(unique=True)
        age = fields.Integer(index=True, default=0)
        tags = fields.SetField()

(plain annotations such as ``name: str`` or ``note: str | None = None`` work too).
The class is turned into an ``attrs`` class (keyword-only ``__init__``, ``__repr__``,
``__eq__``, validation on construction *and* assignment).  A model without a
``primary_key`` field gets ``id``: a sortable unique id (time first, so ids sort by
creation), generated client-side; ``Integer(primary_key=True, auto=True)`` draws
ids from a counter on the server instead.

Every change is one Lua call on the server (see :mod:`ktstore.models.backend`):
the record, its index entries, its unique claims and its containers' expiry change
together or not at all.

Every operation that talks to the server is written once, as a *program* over the
binding (``_save``, ``_get``, ``_atomic``...: a generator yielding the client's
commands), and has two thin entry points: the sync one (``save``) runs the program on
the model's ``Store``, the awaitable one (``asave``) on its ``AsyncStore``.  So both
have the same checks, retries and errors.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

import attrs

from ktstore.client.command import Program
from ktstore.models import fields as fields_mod
from ktstore.models import keycodec
from ktstore.models.backend import (
    MEMO,
    XTMAX,
    Binding,
    arraydump,
    mapdump,
    mapload,
    pack_memo,
)
from ktstore.models.errors import (
    AlreadyExists,
    ConflictError,
    DoesNotExist,
    ModelDefinitionError,
    ModelError,
    ProtectedError,
    RelationError,
    UniqueViolation,
    ValidationError,
)
from ktstore.models.fields import (
    ContainerField,
    Decimal,
    Field,
    Float,
    Index,
    Integer,
    Text,
    Version,
    field_for_annotation,
)
from ktstore.models.query import Expr, Query
from ktstore.models.relations import ForeignKey, Related, delete_plan
from ktstore.models.relations import check_definition as check_relations
from ktstore.models.views import python_value, raw_record, view_for

__all__ = ["Model", "new_id"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_id_lock = threading.Lock()
_last_id = [0, 0]


def new_id() -> str:
    """A 26-character sortable unique id (48-bit milliseconds + 80 random bits, Crockford
    base32, ULID layout).  Ids made in the same millisecond by this process increase
    monotonically, so creation order is id order."""
    with _id_lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_id[0]:
            ms = _last_id[0]
            rnd = _last_id[1] + 1
        else:
            rnd = int.from_bytes(os.urandom(10), "big") >> 1  # room to increment
        _last_id[0], _last_id[1] = ms, rnd
    n = (ms << 80) | (rnd & ((1 << 80) - 1))
    out = []
    for _ in range(26):
        out.append(_CROCKFORD[n & 31])
        n >>= 5
    return "".join(reversed(out))


class ModelInfo:
    """What the model layer knows about a model class (``Model._kt``)."""

    def __init__(self) -> None:
        self.fields: dict[str, Field] = {}
        self.containers: dict[str, ContainerField] = {}
        self.indexes: dict[str, Index] = {}  # composite indexes, by name
        self.children: list[Any] = []  # ForeignKeys of other models referring to this one
        self.accessors: dict[str, str] = {}  # relation accessor -> its foreign key field
        self.pk: Field = None  # type: ignore[assignment]
        self.version: Field | None = None
        self.store: Any = None
        self.prefix: str = ""
        self.ttl: float | None = None
        self.binding: Binding | None = None
        self.binding_store: Any = None
        self.astore: Any = None  # an AsyncStore: what the awaitable forms use
        self.abinding: Binding | None = None
        self.abinding_store: Any = None
        self.abstract = False

    @property
    def indexed(self) -> list[Field]:
        return [f for f in self.fields.values() if f.index]

    @property
    def index_names(self) -> list[str]:
        """Every index's name: indexed fields and composite indexes."""
        names = [f.name for f in self.indexed] + list(self.indexes)
        return names + ["__search__"] if self.search else names

    @property
    def search(self) -> list[Field]:
        """The fields of the full-text index."""
        return [f for f in self.fields.values() if getattr(f, "search", False)]

    @property
    def unique(self) -> list[Field]:
        return [f for f in self.fields.values() if f.unique]


if TYPE_CHECKING:
    from typing_extensions import Self, dataclass_transform

    from ktstore.models.search import SearchQuery
else:
    try:
        from typing import dataclass_transform
    except ImportError:  # Python 3.10: type checkers read typing_extensions' anyway

        def dataclass_transform(**_kwargs: Any) -> Any:
            return lambda cls: cls


_Default = TypeVar("_Default")


@dataclass_transform(
    kw_only_default=True,
    field_specifiers=(
        Field,
        Text,
        Integer,
        Float,
        Decimal,
        Version,
        fields_mod.Bytes,
        fields_mod.Boolean,
        fields_mod.DateTime,
        fields_mod.Date,
        fields_mod.JSON,
        fields_mod.UUID,
        fields_mod.Enum,
        ForeignKey,
        ContainerField,
        fields_mod.ListField,
        fields_mod.SetField,
        fields_mod.HashField,
    ),
)
class ModelType(type):
    """Metaclass: makes the model class itself a mapping of its instances by primary
    key (``User[pk]``, ``del User[pk]``, ``pk in User``, ``len(User)``)."""

    def __getitem__(cls, pk: Any) -> Any:
        return cls.get(pk)  # type: ignore[attr-defined]

    def __delitem__(cls, pk: Any) -> None:
        if not cls.delete_pk(pk):  # type: ignore[attr-defined]
            raise DoesNotExist(f"{cls.__name__} {pk!r} does not exist")

    def __contains__(cls, pk: Any) -> bool:
        return cls.exists(pk)  # type: ignore[attr-defined]

    def __iter__(cls) -> Iterator[Any]:
        return iter(cls.query())  # type: ignore[attr-defined]

    def __len__(cls) -> int:
        return cls.count()  # type: ignore[attr-defined]

    def __aiter__(cls) -> Any:
        """``async for inst in User``: every instance, through the AsyncStore."""
        return cls.query().__aiter__()  # type: ignore[attr-defined]

    def __bool__(cls) -> bool:
        # a class is always true; without this, ``if User:`` would count instances
        return True


def _seconds(ttl: Any) -> float:
    import datetime as _dt

    if isinstance(ttl, _dt.timedelta):
        return ttl.total_seconds()
    return float(ttl)


def _abs_xt(ttl: Any) -> int:
    """A TTL (seconds or timedelta) or an aware datetime as the negative absolute xt the
    server takes."""
    import datetime as _dt

    if isinstance(ttl, _dt.datetime):
        if ttl.tzinfo is None:
            raise ValidationError("expiry datetimes must be timezone-aware")
        return -int(ttl.timestamp())
    return -int(time.time() + _seconds(ttl))


class Model(metaclass=ModelType):
    """Base class of models; see the module docstring."""

    _kt: ClassVar[ModelInfo]
    _kt_xt: int | None = None  # absolute expiry of the stored record (None: never)
    _kt_raw: bytes | None = None  # the record as last read/written (for atomic updates)

    def __init_subclass__(
        cls,
        *,
        store: Any = None,
        prefix: str | None = None,
        ttl: Any = None,
        abstract: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        parent: ModelInfo | None = getattr(cls, "_kt", None)
        info = ModelInfo()
        if parent is not None:
            info.fields.update(parent.fields)
            info.containers.update(parent.containers)
            info.indexes.update(parent.indexes)
            info.store = parent.store
            info.astore = parent.astore
            info.ttl = parent.ttl
        if store is not None:
            _set_store(info, store)
        if ttl is not None:
            info.ttl = _seconds(ttl)
        info.prefix = prefix or cls.__name__.lower()
        if ":" in info.prefix or "\x00" in info.prefix:
            raise ModelDefinitionError("a model prefix must not contain ':' or NUL")
        info.abstract = abstract

        these: dict[str, Any] = {}
        own: dict[str, Field] = {}
        annotations = cls.__dict__.get("__annotations__", {})
        for name, value in list(cls.__dict__.items()):
            if isinstance(value, Field):
                own[name] = value
            elif isinstance(value, ContainerField):
                value.name, value.model = name, cls
                info.containers[name] = value
            elif isinstance(value, Index):
                value.name, value.model = name, cls
                info.indexes[name] = value
        for name, ann in annotations.items():
            if name in own or name.startswith("_") or name in info.containers:
                continue
            if isinstance(ann, str):
                ann = _eval_annotation(cls, ann)
            if ann is None or getattr(ann, "__origin__", None) is ClassVar or ann is ClassVar:
                continue
            f = field_for_annotation(ann)
            if f is None:
                raise ModelDefinitionError(
                    f"{cls.__name__}.{name}: cannot store {ann!r}; use a ktstore.models field"
                )
            if name in cls.__dict__:
                f.default = cls.__dict__[name]
            own[name] = f
            setattr(cls, name, f)

        for name, f in list(own.items()):
            if isinstance(f, ForeignKey):
                # stored as <name>_id; <name> is the lazy accessor of the instance
                store_name = name if name.endswith("_id") else name + "_id"
                accessor = store_name[:-3]
                if store_name != name and store_name in own:
                    raise ModelDefinitionError(f"{cls.__name__}.{store_name} is declared twice")
                own = {(store_name if k == name else k): v for k, v in own.items()}
                setattr(cls, store_name, f)
                f.accessor = accessor
                info.accessors[accessor] = store_name
        for name in [*own, *info.containers, *info.indexes, *info.accessors]:
            if name in _RESERVED or name.startswith("_kt"):
                raise ModelDefinitionError(
                    f"{cls.__name__}.{name}: the name is taken by the Model API; rename the field"
                )
        for name, f in own.items():
            f.name, f.model = name, cls
            info.fields[name] = f

        for ix in info.indexes.values():
            ix.resolve(info.fields)

        pks = [f for f in info.fields.values() if f.primary_key]
        if not pks:
            f = Text(primary_key=True, factory=new_id)
            f.name, f.model = "id", cls
            info.fields = {"id": f, **info.fields}
            own = {"id": f, **own}
            setattr(cls, "id", f)  # noqa: B010 - mypy: Model declares no id
            pks = [f]
        if len(pks) > 1:
            raise ModelDefinitionError(f"{cls.__name__} declares {len(pks)} primary keys")
        pk = pks[0]
        if not isinstance(pk, (Text, Integer)) or isinstance(pk, Version):
            raise ModelDefinitionError("the primary key must be a Text or Integer field")
        if pk.optional:
            raise ModelDefinitionError("the primary key cannot be optional")
        pk.index = True  # the pk index lists every instance, in pk order
        info.pk = pk
        versions = [f for f in info.fields.values() if isinstance(f, Version)]
        if len(versions) > 1:
            raise ModelDefinitionError("at most one Version field")
        info.version = versions[0] if versions else None
        if not pk.has_default and not getattr(pk, "auto", False):
            pass  # a required pk: the caller gives it

        for name, f in own.items():
            these[name] = f.attrs_field()
            if isinstance(pk, Integer) and getattr(pk, "auto", False) and f is pk:

                def check_auto(_inst: Any, _attr: Any, value: Any, f: Field = f) -> None:
                    f.check(value)

                these[name] = attrs.field(
                    default=None, kw_only=True, metadata={"ktstore": f}, validator=check_auto
                )
        cls._kt = info
        attrs.define(cls, these=these, slots=False, kw_only=True, eq=True, repr=True)
        for f in own.values():
            if isinstance(f, ForeignKey):
                setattr(cls, f.accessor, Related(f))
                f.setup(cls)
        check_relations(cls)
        if info.containers or info.accessors:
            _accept_containers(cls)

    # ---- binding ----------------------------------------------------------------------

    @classmethod
    def _binding(cls) -> Binding:
        """The binding of the sync API (set up on first use: one or two calls)."""
        info = cls._kt
        if info.abstract:
            raise ModelError(f"{cls.__name__} is abstract")
        store = info.store
        if store is None:
            if info.astore is not None:
                raise ModelError(
                    f"{cls.__name__} is bound to an AsyncStore only: use the awaitable "
                    f"forms (await {cls.__name__}.aget(pk), await obj.asave()...), or "
                    f"also bind a Store ({cls.__name__}.bind(Store(...)))"
                )
            from ktstore.store import Store

            store = info.store = Store.default()
        if info.binding is None or info.binding_store is not store:
            binding = Binding(store, info.prefix)
            binding.run(binding.setup(cls.__name__, info.index_names))
            info.binding = binding
            info.binding_store = store
        return info.binding

    @classmethod
    async def _abinding(cls) -> Binding:
        """The binding of the awaitable API: the model's AsyncStore."""
        info = cls._kt
        if info.abstract:
            raise ModelError(f"{cls.__name__} is abstract")
        store = info.astore
        if store is None:
            raise ModelError(
                f"{cls.__name__} has no AsyncStore for its awaitable forms: bind one "
                f"(class keyword store=AsyncStore(...), or {cls.__name__}.bind(AsyncStore(...)))"
            )
        if info.abinding is None or info.abinding_store is not store:
            binding = Binding(store, info.prefix)
            await binding.run(binding.setup(cls.__name__, info.index_names))
            info.abinding = binding
            info.abinding_store = store
        return info.abinding

    @classmethod
    def _prepared(cls, b: Binding, make: Callable[[Binding], Program], writable: bool) -> Program:
        if writable and b.unbuilt:
            # unique checks must see every stored value
            yield from b.require_built(
                cls.__name__, [f.name for f in cls._kt.unique], "unique=True"
            )
        return (yield from make(b))

    @classmethod
    def _run(cls, make: Callable[[Binding], Program], writable: bool = False) -> Any:
        """Run the program ``make(binding)`` on the sync store."""
        b = cls._binding()
        return b.run(cls._prepared(b, make, writable))

    @classmethod
    async def _arun(cls, make: Callable[[Binding], Program], writable: bool = False) -> Any:
        """Run the program ``make(binding)`` on the AsyncStore."""
        b = await cls._abinding()
        return await b.run(cls._prepared(b, make, writable))

    @classmethod
    def bind(cls, store: Any) -> None:
        """Use ``store`` for this model from now on (e.g. per test, or once the
        configuration is known).  A ``Store`` (or a sync client, for its default
        database) serves the sync API; an ``AsyncStore`` (or an ``AsyncKyotoTycoon``)
        serves the awaitable forms (``aget``, ``asave``, ``async for``...).  A model
        may be bound to one of each at once."""
        _set_store(cls._kt, store)

    # ---- encoding ---------------------------------------------------------------------

    def _pkstr(self) -> str:
        pk = getattr(self, self._kt.pk.name)
        if pk is None:
            raise ModelError(f"{type(self).__name__} has no primary key yet (save it first)")
        return type(self)._pk_to_str(pk)

    @classmethod
    def _pk_to_str(cls, pk: Any) -> str:
        field = cls._kt.pk
        if isinstance(field, Integer):
            if isinstance(pk, bool) or not isinstance(pk, int):
                raise ValidationError(f"{cls.__name__} primary keys are ints, not {pk!r}")
            return str(pk)
        if not isinstance(pk, str):
            raise ValidationError(f"{cls.__name__} primary keys are str, not {pk!r}")
        if "\x00" in pk:
            raise ValidationError("primary keys must not contain NUL")
        return pk

    def _search_entries(self, binding: Binding, pkstr: str) -> dict[bytes, bytes]:
        """The full-text entries of this instance (none without search fields)."""
        fields = self._kt.search
        if not fields:
            return {}
        from ktstore.models.search import entries

        pk_key = self._kt.pk.encode_key(getattr(self, self._kt.pk.name))
        return entries(binding, [getattr(self, f.name) for f in fields], pkstr, pk_key)

    def _index_keys(
        self, binding: Binding, pkstr: str, search: dict[bytes, bytes] | None = None
    ) -> tuple[list[bytes], list[bytes], list[str]]:
        # the pk suffix keeps entries with equal values in primary key order (numeric
        # for int keys), and makes every entry key unique
        pk_key = self._kt.pk.encode_key(getattr(self, self._kt.pk.name))
        ix, ux, uf = [], [], []
        for f in self._kt.indexed:
            value = getattr(self, f.name)
            vkey = f.encode_key(value)
            ix.append(binding.index_base(f.name) + vkey + pk_key)
            if f.unique and value is not None and f is not self._kt.pk:
                ux.append(binding.unique_base(f.name) + vkey)
                uf.append(f.name)
        for cx in self._kt.indexes.values():
            values = [getattr(self, f.name) for f, _desc in cx.parts]
            ix.append(binding.index_base(cx.name) + cx.encode(values) + pk_key)
        ix.extend(self._search_entries(binding, pkstr) if search is None else search)
        return ix, ux, uf

    def _record(self, ix: list[bytes], ux: list[bytes], overrides: dict[str, Any]) -> bytes:
        fields = {}
        for name, f in self._kt.fields.items():
            value = overrides[name] if name in overrides else getattr(self, name)
            fields[name.encode("utf-8")] = f.pack(value)
        fields[MEMO] = pack_memo(ix + ux)
        return mapdump(fields)

    @classmethod
    def _from_record(cls, raw: bytes, xt: int | None = None) -> Any:
        data = mapload(raw)
        values: dict[str, Any] = {}
        for name, f in cls._kt.fields.items():
            blob = data.get(name.encode("utf-8"))
            if blob is None:
                if f.has_default:
                    continue  # a field added after this record was written
                if f.optional:
                    values[name] = None
                    continue
                raise ModelError(f"stored {cls.__name__} lacks required field {name!r}")
            values[name] = f.unpack(blob)
        # Stored values were validated when they were saved: build the instance without
        # running validators again (loading is the hot path of every query page).
        inst = cls.__new__(cls)
        d = inst.__dict__
        for name, f in cls._kt.fields.items():
            d[name] = values[name] if name in values else f.make_default()
        inst._kt_raw = bytes(raw)
        inst._kt_xt = None if xt is None or xt >= XTMAX else int(xt)
        return inst

    def _spec(
        self,
        binding: Binding,
        *,
        ttl: Any = None,
        mode: str | None = None,
        cas: bytes | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> tuple[dict[bytes, bytes], bytes]:
        info = self._kt
        pkstr = self._pkstr()
        sx = self._search_entries(binding, pkstr)
        ix, ux, uf = self._index_keys(binding, pkstr, sx)
        overrides = dict(overrides or {})
        spec: dict[bytes, bytes] = {
            b"k": binding.record_key(pkstr),
            b"p": pkstr.encode("utf-8"),
            b"ix": arraydump(ix),
        }
        if sx:
            spec[b"sx"] = mapdump(sx)
        if ux:
            spec[b"ux"] = arraydump(ux)
            spec[b"uf"] = arraydump([n.encode() for n in uf])
        if info.version is not None:
            vf = info.version
            current = getattr(self, vf.name) or 0
            spec[b"vf"] = vf.name.encode()
            if self._kt_raw is not None:
                spec[b"vold"] = vf.pack(current)
            if vf.name not in overrides:
                overrides[vf.name] = current + 1 if self._kt_raw is not None else current
        record = self._record(ix, ux, overrides)
        spec[b"r"] = record
        if ttl is not None:
            spec[b"xt"] = str(_abs_xt(ttl)).encode()
        elif info.ttl is not None:
            spec[b"dxt"] = str(_abs_xt(info.ttl)).encode()
        if mode:
            spec[b"mode"] = mode.encode()
        if cas is not None:
            spec[b"cas"] = cas
        fks = [
            (f, getattr(self, f.name))
            for f in info.fields.values()
            if isinstance(f, ForeignKey) and getattr(self, f.name) is not None
        ]
        if fks:
            keys = []
            for f, value in fks:
                if not same_store(f.target, binding, indexes=False):
                    hint = " (bind the AsyncStore to both)" if binding.is_async else ""
                    raise ModelError(
                        f"{f._where()}: {f.target.__name__} lives in another store; related "
                        f"models must share one store{hint}"
                    )
                target_prefix = f.target._kt.prefix.encode("utf-8") + b":"
                keys.append(target_prefix + f.target._pk_to_str(value).encode("utf-8"))
            spec[b"fk"] = arraydump(keys)
            spec[b"fkf"] = arraydump([f.name.encode() for f, _v in fks])
        if info.containers:
            spec[b"cx"] = arraydump([binding.container_key(pkstr, n) for n in info.containers])
            pending = self.__dict__.get("_kt_pending")
            if pending:
                spec[b"cw"] = mapdump(
                    {
                        binding.container_key(pkstr, n): raw_record(
                            binding.client, info.containers[n], v
                        )
                        for n, v in pending.items()
                    }
                )
        return spec, record

    def _assign_pk(self, binding: Binding) -> Program:
        pk = self._kt.pk
        if getattr(self, pk.name) is None and getattr(pk, "auto", False):
            object.__setattr__(self, pk.name, (yield from binding.next_id()))

    def _raise_for(self, out: dict[bytes, bytes], instances: Sequence[Model] | None = None) -> None:
        err = out.get(b"err")
        if err is None:
            return
        at = int(out.get(b"at", b"1"))
        inst = instances[at - 1] if instances else self
        name = type(inst).__name__
        if err == b"unique":
            field = out.get(b"field", b"").decode()
            raise UniqueViolation(
                name, field, getattr(inst, field, None), out.get(b"owner", b"").decode() or None
            )
        if err == b"exists":
            raise AlreadyExists(f"{name} {inst._pkstr()!r} already exists")
        if err == b"missing":
            raise DoesNotExist(f"{name} {inst._pkstr()!r} does not exist")
        if err == b"fk":
            field = out.get(b"field", b"").decode()
            fk: Any = inst._kt.fields[field]
            raise RelationError(
                f"{name}.{field}: {fk.target.__name__} {getattr(inst, field)!r} does not exist"
            )
        if err == b"protected":
            field = out.get(b"field", b"").decode()
            child = out.get(b"rp", b":").decode(errors="replace")[:-1]
            raise ProtectedError(
                f"{name} {inst._pkstr()!r} is referred to by {child}.{field} of "
                f"{out.get(b'owner', b'').decode()!r} (on_delete=PROTECT): nothing deleted"
            )
        if err == b"conflict":
            raise ConflictError(
                f"{name} {inst._pkstr()!r} changed since it was read: reload and retry"
            )
        raise ModelError(f"the server refused the change: {err.decode(errors='replace')}")

    def _after_save(self, record: bytes, xt: bytes | None) -> None:
        self.__dict__.pop("_kt_pending", None)  # the containers given are stored now
        vf = self._kt.version
        if vf is not None and self._kt_raw is not None:
            object.__setattr__(self, vf.name, (getattr(self, vf.name) or 0) + 1)
        self._kt_raw = record
        xt_i = int(xt) if xt is not None else XTMAX
        self._kt_xt = None if xt_i >= XTMAX else xt_i

    # ---- instance API -----------------------------------------------------------------

    def save(self, ttl: Any = None, *, only_if_new: bool = False) -> Self:
        """Store this instance with its index entries, atomically.

        ``ttl`` (seconds, timedelta or aware datetime) sets a new expiry for the record,
        its index entries and its containers; without it an existing record keeps its
        expiry and a new one gets the model's default ``ttl``.  Raises
        :class:`UniqueViolation` (nothing written), :class:`ConflictError` when a version
        field shows a newer stored copy, :class:`AlreadyExists` with ``only_if_new``.
        """
        return type(self)._run(lambda b: self._save(b, ttl, only_if_new), writable=True)

    async def asave(self, ttl: Any = None, *, only_if_new: bool = False) -> Self:
        """:meth:`save` on the model's AsyncStore."""
        return await type(self)._arun(lambda b: self._save(b, ttl, only_if_new), writable=True)

    def _save(self, b: Binding, ttl: Any, only_if_new: bool) -> Program:
        yield from self._assign_pk(b)
        spec, record = self._spec(b, ttl=ttl, mode="create" if only_if_new else None)
        out = yield from b.save([spec])
        self._raise_for(out)
        self._after_save(record, out.get(b"xt1"))
        return self

    def delete(self) -> bool:
        """Remove the instance, its index entries and its containers, atomically.
        With a version field, a stale copy raises :class:`ConflictError`."""
        return type(self)._run(self._delete)  # type: ignore[no-any-return]

    async def adelete(self) -> bool:
        """:meth:`delete` on the model's AsyncStore."""
        return await type(self)._arun(self._delete)  # type: ignore[no-any-return]

    def _delete(self, b: Binding) -> Program:
        spec = self._delete_spec(b)
        out = yield from type(self)._delete_specs(b, [spec], [self])
        self._kt_raw = None
        return out != 0

    def _delete_spec(self, b: Binding) -> dict[bytes, bytes]:
        pkstr = self._pkstr()
        spec = {b"k": b.record_key(pkstr), b"p": pkstr.encode()}
        vf = self._kt.version
        if vf is not None and self._kt_raw is not None:
            spec[b"vf"] = vf.name.encode()
            spec[b"vold"] = vf.pack(getattr(self, vf.name))
        if self._kt.containers:
            spec[b"cx"] = arraydump([b.container_key(pkstr, n) for n in self._kt.containers])
        return spec

    def reload(self) -> Self:
        """Read the stored state again (raises :class:`DoesNotExist` if it is gone)."""
        return type(self)._run(self._reload)  # type: ignore[no-any-return]

    async def areload(self) -> Self:
        """:meth:`reload` on the model's AsyncStore."""
        return await type(self)._arun(self._reload)  # type: ignore[no-any-return]

    def _reload(self, b: Binding) -> Program:
        fresh = yield from type(self)._get(b, getattr(self, self._kt.pk.name), attrs.NOTHING)
        for name in self._kt.fields:
            object.__setattr__(self, name, getattr(fresh, name))
        self._kt_raw, self._kt_xt = fresh._kt_raw, fresh._kt_xt
        return self

    refresh = reload
    arefresh = areload

    def expire(self, ttl: Any) -> None:
        """Give the instance (and its index entries and containers) a new expiry:
        seconds, timedelta or aware datetime; ``None`` removes the expiry."""
        type(self)._run(lambda b: self._expire(b, ttl))

    async def aexpire(self, ttl: Any) -> None:
        """:meth:`expire` on the model's AsyncStore."""
        await type(self)._arun(lambda b: self._expire(b, ttl))

    def _expire(self, b: Binding, ttl: Any) -> Program:
        pkstr = self._pkstr()
        xt = _abs_xt(ttl) if ttl is not None else 2**62
        out = yield from b.expire(
            b.record_key(pkstr), xt, [b.container_key(pkstr, n) for n in self._kt.containers]
        )
        if out.get(b"missing"):
            raise DoesNotExist(f"{type(self).__name__} {pkstr!r} does not exist")
        xt_i = int(out.get(b"xt", str(XTMAX).encode()))
        self._kt_xt = None if xt_i >= XTMAX else xt_i

    def persist(self) -> None:
        """Remove the expiry."""
        self.expire(None)

    async def apersist(self) -> None:
        """:meth:`persist` on the model's AsyncStore."""
        await self.aexpire(None)

    @property
    def expires_at(self) -> float | None:
        """Absolute expiry (epoch seconds) of the stored record, ``None`` for never."""
        return self._kt_xt

    @property
    def ttl(self) -> float | None:
        """Seconds left before the stored record expires (``None``: never)."""
        return None if self._kt_xt is None else max(0.0, self._kt_xt - time.time())

    def update(self, **changes: Any) -> Self:
        """Apply ``changes`` to the *stored* record atomically (read, change, write back
        only if nobody changed it meanwhile, else retry) and return self, refreshed."""
        for name in changes:
            self._field_named(name)
        return type(self)._run(lambda b: self._atomic(b, lambda fresh: changes), writable=True)

    async def aupdate(self, **changes: Any) -> Self:
        """:meth:`update` on the model's AsyncStore."""
        for name in changes:
            self._field_named(name)
        return await type(self)._arun(
            lambda b: self._atomic(b, lambda fresh: changes), writable=True
        )

    def _field_named(self, name: str) -> Field:
        try:
            return self._kt.fields[name]
        except KeyError:
            raise ModelError(f"{type(self).__name__} has no field {name!r}") from None

    def incr(self, field: str | Field, n: int | float = 1) -> Any:
        """Atomically add ``n`` to a numeric field (re-indexing it) and return the new
        value; concurrent increments never lose an update."""
        return type(self)._run(lambda b: self._incr(b, field, n), writable=True)

    async def aincr(self, field: str | Field, n: int | float = 1) -> Any:
        """:meth:`incr` on the model's AsyncStore."""
        return await type(self)._arun(lambda b: self._incr(b, field, n), writable=True)

    def decr(self, field: str | Field, n: int | float = 1) -> Any:
        return self.incr(field, -n)

    async def adecr(self, field: str | Field, n: int | float = 1) -> Any:
        return await self.aincr(field, -n)

    def _incr(self, b: Binding, field: str | Field, n: int | float) -> Program:
        name = field if isinstance(field, str) else field.name
        f = self._field_named(name)
        if not isinstance(f, (Integer, Float, Decimal)) or isinstance(f, Version):
            raise ModelError(
                f"{f._where()} is not a number field: incr needs Integer/Float/Decimal"
            )
        yield from self._atomic(b, lambda fresh: {name: (getattr(fresh, name) or 0) + n})
        return getattr(self, name)

    def _atomic(self, b: Binding, change: Any, retries: int = 100) -> Program:
        cls = type(self)
        pkstr = self._pkstr()
        key = b.record_key(pkstr)
        for attempt in range(retries):
            got = (yield from b.get_records([key])).get(key)
            if got is None:
                raise DoesNotExist(f"{cls.__name__} {pkstr!r} does not exist")
            fresh = cls._from_record(*got)
            for name, value in change(fresh).items():
                setattr(fresh, name, value)  # validated and converted by attrs
            spec, record = fresh._spec(b, mode="update", cas=got[0])
            out = yield from b.save([spec])
            if out.get(b"err") == b"conflict":
                backoff(b, attempt)
                continue
            fresh._raise_for(out)
            fresh._after_save(record, out.get(b"xt1"))
            for name in self._kt.fields:
                object.__setattr__(self, name, getattr(fresh, name))
            self._kt_raw, self._kt_xt = fresh._kt_raw, fresh._kt_xt
            return self
        raise ConflictError(f"{cls.__name__} {pkstr!r}: too much contention, gave up")

    def _kt_container(self, field: ContainerField) -> Any:
        pending = self.__dict__.get("_kt_pending")
        if pending and field.name in pending:
            return pending[field.name]  # given, not saved yet: a plain list/set/dict
        b = type(self)._binding()
        key = b.container_key(self._pkstr(), field.name)
        factory = getattr(b.client, field.container)
        return view_for(self, field, factory(key, db=b.rdb), key)

    async def acontainer(self, name: str) -> Any:
        """A container field on the AsyncStore: the asyncio client's List / Set / Hash
        of this instance (its methods are coroutines: ``await (await
        u.acontainer("tags")).add("x")``).  Unlike the sync view, a write through it
        does not copy the record's expiry onto the container: on a model with a
        ``ttl``, call ``aexpire`` after writing."""
        field = self._kt.containers.get(name)
        if field is None:
            raise ModelError(f"{type(self).__name__} has no container field {name!r}")
        b = await type(self)._abinding()
        key = b.container_key(self._pkstr(), name)
        return getattr(b.client, field.container)(key, db=b.rdb)

    async def arelated(self, name: str) -> Any:
        """The instance a foreign key refers to, read through the AsyncStore
        (``await post.arelated("author")``; ``post.author`` reads it on the sync store);
        ``None`` when the key is ``None``.  Cached like the sync accessor."""
        if name not in self._kt.accessors:
            raise ModelError(f"{type(self).__name__} has no foreign key {name!r}")
        related = type(self).__dict__.get(name) or next(
            c.__dict__[name] for c in type(self).__mro__ if name in c.__dict__
        )
        return await related.aload(self)

    def _kt_set_container(self, field: ContainerField, value: Any) -> None:
        """``inst.tags = {...}``: replaces the container's contents at the next save(),
        in the same atomic call as the record."""
        pending = self.__dict__.setdefault("_kt_pending", {})
        pending[field.name] = python_value(field, value)

    # ---- export -----------------------------------------------------------------------

    def to_dict(
        self,
        *,
        json_safe: bool = False,
        only: Iterable[str] | None = None,
        containers: bool = False,
    ) -> dict[str, Any]:
        """The field values by name.  ``json_safe=True`` gives forms ``json.dumps``
        takes (datetime/date as ISO text, Decimal and UUID as text, bytes as base64,
        enums as their value, non-finite floats as ``"nan"``/``"inf"``); ``only``
        picks fields; ``containers=True`` also reads the container fields (one call
        each) as a list / list (sets, sorted when possible, in JSON) / dict."""
        fields = self._kt.fields
        names = list(fields) if only is None else list(only)
        out: dict[str, Any] = {}
        for name in names:
            f = self._field_named(name) if name not in fields else fields[name]
            value = getattr(self, name)
            out[name] = f.to_json(value) if json_safe and value is not None else value
        if containers:
            for name, cf in self._kt.containers.items():
                value = self._kt_container(cf)
                value = value.copy() if hasattr(value, "copy") else value
                if json_safe and isinstance(value, set):
                    try:
                        value = sorted(value)
                    except TypeError:
                        value = list(value)
                out[name] = value
        return out

    def to_json(self, **kwargs: Any) -> str:
        """``json.dumps`` of ``to_dict(json_safe=True)``; keywords go to ``json.dumps``
        except ``only`` and ``containers``, which go to ``to_dict``."""
        import json

        own = {k: kwargs.pop(k) for k in ("only", "containers") if k in kwargs}
        return json.dumps(self.to_dict(json_safe=True, **own), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """A new, unsaved instance from ``to_dict()`` output (plain or JSON-safe forms
        are both taken; containers too).  Unknown keys raise :class:`ModelError`."""
        info = cls._kt
        values: dict[str, Any] = {}
        for name, value in data.items():
            f = info.fields.get(name)
            if f is not None:
                values[name] = None if value is None else f.from_json(value)
            elif name in info.containers:
                values[name] = value
            else:
                raise ModelError(f"{cls.__name__} has no field {name!r}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        """``from_dict(json.loads(text))``."""
        import json

        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValidationError(f"{cls.__name__}.from_json needs a JSON object")
        return cls.from_dict(data)

    # ---- class API --------------------------------------------------------------------

    @classmethod
    def create(cls, ttl: Any = None, **values: Any) -> Self:
        """Make and save a new instance; :class:`AlreadyExists` if the pk is taken."""
        inst = cls(**values)
        return inst.save(ttl=ttl, only_if_new=True)

    @classmethod
    async def acreate(cls, ttl: Any = None, **values: Any) -> Self:
        """:meth:`create` on the model's AsyncStore."""
        inst = cls(**values)
        return await inst.asave(ttl=ttl, only_if_new=True)

    if TYPE_CHECKING:

        @overload
        @classmethod
        def get(cls, pk: Any) -> Self: ...

        @overload
        @classmethod
        def get(cls, pk: Any, default: _Default) -> Self | _Default: ...

        @classmethod
        def get(cls, pk: Any, default: Any = ...) -> Any: ...

        @overload
        @classmethod
        async def aget(cls, pk: Any) -> Self: ...

        @overload
        @classmethod
        async def aget(cls, pk: Any, default: _Default) -> Self | _Default: ...

        @classmethod
        async def aget(cls, pk: Any, default: Any = ...) -> Any: ...

    @classmethod  # type: ignore[no-redef]
    def get(cls, pk: Any, default: Any = attrs.NOTHING) -> Any:
        """The instance with primary key ``pk``; :class:`DoesNotExist` (a KeyError) if
        there is none (or it expired), unless a ``default`` is given."""
        return cls._run(lambda b: cls._get(b, pk, default))

    @classmethod  # type: ignore[no-redef]
    async def aget(cls, pk: Any, default: Any = attrs.NOTHING) -> Any:
        """:meth:`get` on the model's AsyncStore."""
        return await cls._arun(lambda b: cls._get(b, pk, default))

    @classmethod
    def _get(cls, b: Binding, pk: Any, default: Any) -> Program:
        key = b.record_key(cls._pk_to_str(pk))
        got = (yield from b.get_records([key])).get(key)
        if got is None:
            if default is not attrs.NOTHING:
                return default
            raise DoesNotExist(f"{cls.__name__} {pk!r} does not exist")
        return cls._from_record(*got)

    @classmethod
    def get_or_create(
        cls, defaults: dict[str, Any] | None = None, **lookup: Any
    ) -> tuple[Self, bool]:
        """``(instance, created)``: the first instance whose fields equal ``lookup``, or
        a new one created from ``lookup`` and ``defaults``.  Two callers racing on a
        unique field or the primary key end with the same instance (the loser's
        create is refused atomically and it reads the winner's)."""
        return cls._run(lambda b: cls._get_or_create(b, defaults, lookup), writable=True)  # type: ignore[no-any-return]

    @classmethod
    async def aget_or_create(
        cls, defaults: dict[str, Any] | None = None, **lookup: Any
    ) -> tuple[Self, bool]:
        """:meth:`get_or_create` on the model's AsyncStore."""
        return await cls._arun(lambda b: cls._get_or_create(b, defaults, lookup), writable=True)  # type: ignore[no-any-return]

    @classmethod
    def _get_or_create(
        cls, b: Binding, defaults: dict[str, Any] | None, lookup: dict[str, Any]
    ) -> Program:
        q = cls.query(**lookup)
        for _attempt in range(3):
            found = yield from q._first(b)
            if found is not None:
                return found, False
            try:
                inst = cls(**{**(defaults or {}), **lookup})
                yield from inst._save(b, None, True)
                return inst, True
            except (UniqueViolation, AlreadyExists):
                continue  # somebody else created it meanwhile: read theirs
        found = yield from q._first(b)
        if found is None:
            raise ModelError(
                f"{cls.__name__}.get_or_create: the create is refused but no instance "
                f"matches {lookup!r} (a unique value held by an instance that does not match?)"
            )
        return found, False

    @classmethod
    def exists(cls, pk: Any) -> bool:
        return cls._run(lambda b: cls._exists(b, pk))  # type: ignore[no-any-return]

    @classmethod
    async def aexists(cls, pk: Any) -> bool:
        """:meth:`exists` on the model's AsyncStore."""
        return await cls._arun(lambda b: cls._exists(b, pk))  # type: ignore[no-any-return]

    @classmethod
    def _exists(cls, b: Binding, pk: Any) -> Program:
        key = b.record_key(cls._pk_to_str(pk))
        return key in (yield from b.get_records([key]))

    @classmethod
    def get_many(cls, pks: Iterable[Any]) -> list[Self]:
        """The instances that exist among ``pks``, in that order, in one get_bulk."""
        pks = list(pks)
        return cls._run(lambda b: cls._get_many(b, pks))  # type: ignore[no-any-return]

    @classmethod
    async def aget_many(cls, pks: Iterable[Any]) -> list[Self]:
        """:meth:`get_many` on the model's AsyncStore."""
        pks = list(pks)
        return await cls._arun(lambda b: cls._get_many(b, pks))  # type: ignore[no-any-return]

    @classmethod
    def _get_many(cls, b: Binding, pks: list[Any]) -> Program:
        keys = [b.record_key(cls._pk_to_str(pk)) for pk in pks]
        found = yield from b.get_records(keys)
        return [cls._from_record(*found[k]) for k in keys if k in found]

    @classmethod
    def create_many(cls, items: Iterable[Any], ttl: Any = None) -> list[Self]:
        """Create many instances (models or dicts of values) in **one** atomic server
        call: if any is refused (unique violation, existing pk), none is written."""
        insts = [i if isinstance(i, cls) else cls(**i) for i in items]
        if not insts:
            return []
        return cls._run(lambda b: cls._create_many(b, insts, ttl), writable=True)  # type: ignore[no-any-return]

    @classmethod
    async def acreate_many(cls, items: Iterable[Any], ttl: Any = None) -> list[Self]:
        """:meth:`create_many` on the model's AsyncStore."""
        insts = [i if isinstance(i, cls) else cls(**i) for i in items]
        if not insts:
            return []
        return await cls._arun(lambda b: cls._create_many(b, insts, ttl), writable=True)  # type: ignore[no-any-return]

    @classmethod
    def _create_many(cls, b: Binding, insts: list[Any], ttl: Any) -> Program:
        specs, records = [], []
        auto = [i for i in insts if getattr(i, cls._kt.pk.name) is None]
        if auto and getattr(cls._kt.pk, "auto", False):
            last = yield from b.next_id(len(auto))  # one counter call for the whole batch
            for n, inst in enumerate(auto):
                object.__setattr__(inst, cls._kt.pk.name, last - len(auto) + 1 + n)
        seen: dict[tuple[str, bytes], Model] = {}
        for inst in insts:
            spec, record = inst._spec(b, ttl=ttl, mode="create")
            # two instances of the same batch claiming one unique value
            for ukey in (spec.get(b"ux") and _arrayload(spec[b"ux"])) or []:
                if ("u", ukey) in seen:
                    f = ukey[len(b.unique_prefix) :].split(b"\x00", 1)[0].decode()
                    raise UniqueViolation(cls.__name__, f, getattr(inst, f))
                seen[("u", ukey)] = inst
            specs.append(spec)
            records.append(record)
        out = yield from b.save(specs)
        insts[0]._raise_for(out, insts)
        for i, (inst, record) in enumerate(zip(insts, records, strict=False), 1):
            inst._after_save(record, out.get(b"xt%d" % i))
        return insts

    @classmethod
    def delete_pk(cls, pk: Any) -> bool:
        """Delete by primary key; ``False`` if there was nothing to delete."""
        return cls._run(lambda b: cls._delete_pk(b, pk))  # type: ignore[no-any-return]

    @classmethod
    async def adelete_pk(cls, pk: Any) -> bool:
        """:meth:`delete_pk` on the model's AsyncStore."""
        return await cls._arun(lambda b: cls._delete_pk(b, pk))  # type: ignore[no-any-return]

    @classmethod
    def _delete_pk(cls, b: Binding, pk: Any) -> Program:
        inst = yield from cls._get(b, pk, None)
        if inst is None:
            return False
        inst._kt_raw = None  # no version check: deleting by key means "whatever it is"
        return (yield from inst._delete(b))

    @classmethod
    def delete_many(cls, instances: Iterable[Model]) -> int:
        """Delete instances in one atomic server call; the number removed."""
        insts = list(instances)
        if not insts:
            return 0
        return cls._run(lambda b: cls._delete_many(b, insts))  # type: ignore[no-any-return]

    @classmethod
    async def adelete_many(cls, instances: Iterable[Model]) -> int:
        """:meth:`delete_many` on the model's AsyncStore."""
        insts = list(instances)
        if not insts:
            return 0
        return await cls._arun(lambda b: cls._delete_many(b, insts))  # type: ignore[no-any-return]

    @classmethod
    def _delete_many(cls, b: Binding, insts: list[Any]) -> Program:
        return (yield from cls._delete_specs(b, [i._delete_spec(b) for i in insts], insts))

    cascade_page: ClassVar[int] = 1000

    @classmethod
    def _delete_specs(
        cls, b: Binding, specs: list[dict[bytes, bytes]], insts: list[Any]
    ) -> Program:
        """Run ``modeldelete``; with relations, again from where a page of children
        stopped until every instance is gone (each call atomic).  Records removed."""
        extra: dict[bytes, bytes] = {}
        if cls._kt.children:
            rels, roots = delete_plan(cls, b)
            extra = {
                b"rels": arraydump(rels),
                b"budget": str(cls.cascade_page).encode(),
            }
            rr = ",".join(map(str, roots)).encode()
            for spec, inst in zip(specs, insts, strict=True):
                spec[b"rr"] = rr
                spec[b"pkk"] = cls._kt.pk.encode_key(getattr(inst, cls._kt.pk.name))
        removed = 0
        while True:
            out = yield from b.delete(specs, extra)
            if out.get(b"more") != b"1":
                insts[0]._raise_for(out, insts)
                return removed + int(out.get(b"d", b"0"))
            removed += int(out.get(b"d", b"0"))
            at = int(out.get(b"at", b"1"))
            specs, insts = specs[at - 1 :], insts[at - 1 :]

    @classmethod
    def query(cls, *exprs: Expr, **equals: Any) -> Query[Self]:
        """A lazy, paged query (see :mod:`ktstore.models.query`); with no arguments,
        every instance in primary key order.  Predicates on indexed fields are answered
        by index range scans; a predicate on an **unindexed** field is answered by
        scanning every instance of the model and filtering (``uses_full_scan()``)."""
        return Query(cls).filter(*exprs, **equals)

    filter = query

    @classmethod
    def search(cls, text: str, *exprs: Expr, **equals: Any) -> SearchQuery[Self]:
        """Instances whose ``Text(search=True)`` fields hold every term of ``text``
        (``"tyc*"`` is a prefix term), best BM25 score first, lazily and paged; other
        predicates filter them (see :mod:`ktstore.models.search`)."""
        from ktstore.models.search import SearchQuery

        q = SearchQuery(cls, text)
        return q.filter(*exprs, **equals) if exprs or equals else q

    @classmethod
    def all(cls) -> Query[Self]:
        return Query(cls)

    @classmethod
    def count(cls) -> int:
        """Number of live instances, from the primary key index alone (keys only, no
        record is read; exact unless the data was damaged behind the model layer's
        back -- see :meth:`check`)."""
        return cls._run(cls._count)  # type: ignore[no-any-return]

    @classmethod
    async def acount(cls) -> int:
        """:meth:`count` on the model's AsyncStore."""
        return await cls._arun(cls._count)  # type: ignore[no-any-return]

    @classmethod
    def _count(cls, b: Binding) -> Program:
        base = b.index_base(cls._kt.pk.name)
        return (yield from b.count_range(b.idb, base, keycodec.prefix_successor(base)))

    # ---- maintenance ------------------------------------------------------------------

    @classmethod
    def check(cls) -> Any:
        from ktstore.models.maintenance import check

        return check(cls)

    @classmethod
    def rebuild(cls) -> Any:
        from ktstore.models.maintenance import rebuild

        return rebuild(cls)

    @classmethod
    def sweep(cls) -> int:
        from ktstore.models.maintenance import sweep

        return sweep(cls)

    @classmethod
    async def acheck(cls) -> Any:
        """:meth:`check` on the model's AsyncStore (records in a tree database)."""
        from ktstore.models.maintenance import _check

        return await cls._arun(lambda b: _check(cls, b))

    @classmethod
    async def arebuild(cls) -> Any:
        """:meth:`rebuild` on the model's AsyncStore (records in a tree database)."""
        from ktstore.models.maintenance import _rebuild

        return await cls._arun(lambda b: _rebuild(cls, b))

    @classmethod
    async def asweep(cls) -> int:
        """:meth:`sweep` on the model's AsyncStore (records in a tree database)."""
        from ktstore.models.maintenance import _sweep

        return await cls._arun(lambda b: _sweep(cls, b))  # type: ignore[no-any-return]


_RESERVED = frozenset(
    "save delete reload refresh expire persist expires_at ttl update incr decr create get "
    "get_or_create to_dict to_json from_dict from_json search "
    "exists get_many create_many delete_pk delete_many query filter all count check "
    "rebuild sweep bind "
    "asave adelete areload arefresh aexpire apersist aupdate aincr adecr acreate aget "
    "aget_or_create aexists aget_many acreate_many adelete_pk adelete_many acount "
    "acontainer arelated acheck arebuild asweep".split()
)


def _accept_containers(cls: Any) -> None:
    """Let the constructor take container fields (``User(tags={"a"})``) and relation
    accessors (``Post(author=ada)``) too: attrs' ``__init__`` knows only the stored
    scalar fields."""
    attrs_init = cls.__init__

    def __init__(self: Any, **kwargs: Any) -> None:
        info = type(self)._kt
        containers = info.containers
        given = {n: kwargs.pop(n) for n in list(kwargs) if n in containers}
        for name, cf in containers.items():
            if name not in given and cf.default:
                given[name] = cf.default  # copied by python_value
        related = {}
        for accessor, store_name in info.accessors.items():
            if accessor in kwargs:
                if store_name in kwargs:
                    raise ModelError(f"give {accessor} or {store_name}, not both")
                value = kwargs.pop(accessor)
                kwargs[store_name] = value
                if hasattr(value, "_kt"):
                    related[store_name] = value
        attrs_init(self, **kwargs)
        if related:
            self.__dict__["_kt_rel"] = related
        for name, value in given.items():
            self._kt_set_container(containers[name], value)

    __init__.__doc__ = attrs_init.__doc__
    cls.__init__ = __init__


def _as_store(store: Any) -> Any:
    """A Store or an AsyncStore, given one or a client (whose default database is
    used)."""
    from ktstore.async_store import AsyncStore
    from ktstore.errors import InvalidArgument
    from ktstore.models.backend import is_async_client
    from ktstore.store import ShardedStore, Store

    if isinstance(store, ShardedStore) or type(store).__name__.startswith("Sharded"):
        raise InvalidArgument(
            "a model cannot live on shards: its save is one atomic Lua call on one "
            "server; bind it to one server or a replicated pair (FailoverKyotoTycoon)"
        )
    if isinstance(store, (Store, AsyncStore)) or not hasattr(store, "script_command"):
        return store
    if is_async_client(store):
        return AsyncStore(store)
    return Store(store)


def _set_store(info: ModelInfo, store: Any) -> None:
    """Bind ``store`` to the slot of its kind (sync or asyncio)."""
    from ktstore.models.backend import is_async_client

    store = _as_store(store)
    if is_async_client(getattr(store, "client", None)):
        info.astore = store
        info.abinding = None
    else:
        info.store = store
        info.binding = None


def same_store(model: Any, b: Binding, indexes: bool = True) -> bool:
    """Whether ``model`` lives in the store of ``b`` (the same client and database,
    and index database with ``indexes``): related models must, for their rules to be
    applied in one atomic server call."""
    info = model._kt
    store = info.astore if b.is_async else info.store
    if store is None and not b.is_async:
        store = model._binding().store  # the default store, set up on first use
    if store is None or store.client is not b.client or store.db != b.rdb:
        return False
    return not indexes or store.index_db == b.idb


def backoff(b: Binding, attempt: int) -> None:
    """Pause before retrying a compare-and-swap that lost a race (sync client only:
    the asyncio client's coroutines give way at every await already, and sleeping
    here would block the event loop)."""
    if not b.is_async and attempt:
        time.sleep(min(0.001 * attempt, 0.02))


def _arrayload(data: bytes) -> list[bytes]:
    from ktstore.models.backend import arrayload

    return arrayload(data)


def _eval_annotation(cls: type, ann: str) -> Any:
    import sys

    module = sys.modules.get(cls.__module__)
    ns = dict(vars(module)) if module else {}
    ns.update(vars(cls))
    try:
        return eval(ann, ns)  # noqa: S307 - annotations of the user's own class
    except Exception:
        raise ModelDefinitionError(f"{cls.__name__}: cannot resolve annotation {ann!r}") from None

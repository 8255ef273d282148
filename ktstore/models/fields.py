"""Field declarations of the model layer.

A field object does three jobs:

* it becomes an ``attrs`` attribute of the model class (with our type check and
  conversion first, then the user's own ``validator``/``converter``), so
  construction and assignment are validated the attrs way;
* it knows how its value is stored (one msgpack blob per field inside the
  record's mapdump, with ``None`` stored explicitly as msgpack nil) and how it is
  encoded into an order-preserving index key (:mod:`ktstore.models.keycodec`);
* on the class it is a query builder: ``User.age >= 18`` makes a predicate.

Container fields (:class:`ListField`, :class:`SetField`, :class:`HashField`) are
not attributes: they are records of their own next to the instance, reached
lazily through the client's ``List``/``Set``/``Hash`` containers.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import enum as _enum
import math
import uuid as _uuid
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, overload

import attrs
import msgpack

from ktstore.models import keycodec
from ktstore.models.errors import ModelDefinitionError, ValidationError

__all__ = [
    "Field",
    "Text",
    "Bytes",
    "Integer",
    "Float",
    "Boolean",
    "DateTime",
    "Date",
    "Decimal",
    "JSON",
    "UUID",
    "Enum",
    "Version",
    "ContainerField",
    "ListField",
    "SetField",
    "HashField",
    "Index",
    "NOTHING",
]

NOTHING = attrs.NOTHING

# Type parameters of the fields, for type checkers (see "Typed models" in
# docs/models.md): ``email: Field[str] = fields.Text()`` makes ``User.email`` a
# ``Field[str]`` (the query builder) and ``user.email`` a ``str``.  Each field class's
# parameter is bound to its value type (``| None`` for optional fields) and defaults to
# it, so an unannotated ``fields.Text()`` is a ``Text[str]``.
if TYPE_CHECKING:
    from typing_extensions import Self, TypeVar

    from ktstore.models.views import HashView, ListView, SetView
else:
    from typing import TypeVar as _TypeVar

    def TypeVar(name: str, *constraints: Any, default: Any = None, **kw: Any) -> Any:  # noqa: N802
        return _TypeVar(name, *constraints, **kw)  # the default matters to checkers only


_T = TypeVar("_T")
_S = TypeVar("_S", bound="str | None", default=str)
_By = TypeVar("_By", bound="bytes | None", default=bytes)
_I = TypeVar("_I", bound="int | None", default=int)
_Fl = TypeVar("_Fl", bound="float | None", default=float)
_Bo = TypeVar("_Bo", bound="bool | None", default=bool)
_DT = TypeVar("_DT", bound="_dt.datetime | None", default=_dt.datetime)
_D = TypeVar("_D", bound="_dt.date | None", default=_dt.date)
_Dec = TypeVar("_Dec", bound="_decimal.Decimal | None", default=_decimal.Decimal)
_U = TypeVar("_U", bound="_uuid.UUID | None", default=_uuid.UUID)
_J = TypeVar("_J", default=Any)
_E = TypeVar("_E", default=Any)
_V = TypeVar("_V", default=Any)
_K = TypeVar("_K", default=Any)


class Field(Generic[_T]):
    """Base class of scalar fields.

    ``index=True`` keeps an ordered index (equality and range queries, ordering);
    ``unique=True`` also refuses a second instance with the same value, atomically
    (it implies an index).  ``optional=True`` allows ``None`` (stored explicitly,
    indexed as the smallest value).  ``default``/``factory`` as in attrs; a field
    without either is required.  ``validator``/``converter`` are attrs'; ours run
    first so yours see a value of the right type.
    """

    kind = "any"
    python_types: tuple[type, ...] = (object,)
    indexable = True

    def __init__(
        self,
        *,
        index: bool = False,
        unique: bool = False,
        optional: bool = False,
        default: Any = NOTHING,
        factory: Callable[[], Any] | None = None,
        primary_key: bool = False,
        validator: Any = None,
        converter: Any = None,
        doc: str | None = None,
    ) -> None:
        if default is not NOTHING and factory is not None:
            raise ModelDefinitionError("give either default or factory, not both")
        self.index = bool(index or unique)
        self.unique = bool(unique)
        self.optional = bool(optional)
        if default is NOTHING and factory is None and optional:
            default = None
        self.default = default
        self.factory = factory
        self.primary_key = bool(primary_key)
        self.user_validator = validator
        self.user_converter = converter
        self.doc = doc
        self.name: str = ""
        self.model: type | None = None
        if self.index and not self.indexable:
            raise ModelDefinitionError(f"{type(self).__name__} fields cannot be indexed")

    # ---- attrs integration ------------------------------------------------------------

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @property
    def has_default(self) -> bool:
        return self.default is not NOTHING or self.factory is not None

    def make_default(self) -> Any:
        if self.factory is not None:
            return self.factory()
        if self.default is NOTHING:
            raise ValidationError(f"field {self.name!r} has no default")
        if isinstance(self.default, attrs.Factory):  # type: ignore[arg-type]
            fac = self.default
            return fac.factory(None) if fac.takes_self else fac.factory()
        return self.default

    def convert(self, value: Any) -> Any:
        """Coerce harmless inputs (an int for a float field...); never guesses more."""
        return value

    def check(self, value: Any) -> None:
        if value is None:
            if not self.optional:
                raise ValidationError(f"{self._where()} must not be None (declare optional=True)")
            return
        if not isinstance(value, self.python_types) or (
            isinstance(value, bool) and bool not in self.python_types
        ):
            names = "/".join(t.__name__ for t in self.python_types)
            raise ValidationError(f"{self._where()} expects {names}, got {type(value).__name__}")

    def _where(self) -> str:
        owner = self.model.__name__ + "." if self.model is not None else ""
        return f"field {owner}{self.name}"

    def attrs_field(self) -> Any:
        """The ``attrs.field`` this declaration becomes on the model class."""

        def convert(value: Any) -> Any:
            if self.user_converter is not None and value is not None:
                value = self.user_converter(value)
            if value is None:
                return None
            return self.convert(value)

        def validate(_inst: Any, _attr: Any, value: Any) -> None:
            self.check(value)

        validators: list[Any] = [validate]
        if self.user_validator is not None:
            uv = self.user_validator
            validators.extend(uv if isinstance(uv, (list, tuple)) else [uv])
        kwargs: dict[str, Any] = {
            "validator": validators,
            "converter": convert,
            "kw_only": True,
            "metadata": {"ktstore": self},
        }
        if self.factory is not None:
            kwargs["factory"] = self.factory
        elif self.default is not NOTHING:
            kwargs["default"] = self.default
        return attrs.field(**kwargs)

    # ---- storage ----------------------------------------------------------------------

    def to_storage(self, value: Any) -> Any:
        """A msgpack-able form of a (non-None) value."""
        return value

    def from_storage(self, obj: Any) -> Any:
        return obj

    def to_json(self, value: Any) -> Any:
        """A JSON-safe form of a (non-None) value (``json.dumps`` takes it as is)."""
        return value

    def from_json(self, obj: Any) -> Any:
        """The value of a JSON-safe form (or of the value itself: both are taken)."""
        return self.convert(obj)

    def pack(self, value: Any) -> bytes:
        if value is None:
            return b"\xc0"
        try:
            return msgpack.packb(self.to_storage(value), use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValidationError(f"{self._where()}: cannot store {value!r}: {exc}") from None

    def unpack(self, data: bytes) -> Any:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_ext_hook)
        return None if obj is None else self.from_storage(obj)

    # ---- index keys -------------------------------------------------------------------

    def encode_key(self, value: Any) -> bytes:
        """Order-preserving key bytes of a value (``None`` sorts first)."""
        if value is None:
            return keycodec.NONE
        value = self.convert(value)
        self.check(value)  # a query value is held to the field's type, like a stored one
        try:
            return self._encode_key(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValidationError(f"{self._where()}: cannot index {value!r}: {exc}") from None

    def _encode_key(self, value: Any) -> bytes:
        raise NotImplementedError

    def prefix_key(self, value: Any) -> bytes:
        """Key prefix for ``startswith`` (text and bytes only)."""
        raise ValidationError(f"{self._where()}: startswith needs a text or bytes field")

    # ---- the class-level query builder ------------------------------------------------

    @overload
    def __get__(self, instance: None, owner: Any = None) -> Self: ...

    @overload
    def __get__(self, instance: object, owner: Any = None) -> _T: ...

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        # Non-data descriptor: attrs stores instance values in __dict__, which wins, so
        # this is reached only for class access (User.age) -- or for a field a loaded
        # instance lacks, which cannot happen since __init__ sets every field.
        if instance is None:
            return self
        raise AttributeError(self.name)

    if TYPE_CHECKING:  # for type checkers only: at run time attrs sets the value

        def __set__(self, instance: object, value: _T) -> None: ...

    def _pred(self, op: str, value: Any) -> Any:
        from ktstore.models.query import Compare

        return Compare(self, op, value)

    def __eq__(self, value: Any) -> Any:  # type: ignore[override]
        return self._pred("==", value)

    def __ne__(self, value: Any) -> Any:  # type: ignore[override]
        return self._pred("!=", value)

    def __lt__(self, value: Any) -> Any:
        return self._pred("<", value)

    def __le__(self, value: Any) -> Any:
        return self._pred("<=", value)

    def __gt__(self, value: Any) -> Any:
        return self._pred(">", value)

    def __ge__(self, value: Any) -> Any:
        return self._pred(">=", value)

    __hash__ = object.__hash__

    # ---- update expressions (Query.update(views=Post.views + 1)) ----------------------

    def _arith(self, op: str, other: Any, swap: bool = False) -> Any:
        from ktstore.models.query import F

        return F(self.name)._op(op, other, swap)

    def __add__(self, other: Any) -> Any:
        return self._arith("+", other)

    def __radd__(self, other: Any) -> Any:
        return self._arith("+", other, True)

    def __sub__(self, other: Any) -> Any:
        return self._arith("-", other)

    def __rsub__(self, other: Any) -> Any:
        return self._arith("-", other, True)

    def __mul__(self, other: Any) -> Any:
        return self._arith("*", other)

    def __rmul__(self, other: Any) -> Any:
        return self._arith("*", other, True)

    def __truediv__(self, other: Any) -> Any:
        return self._arith("/", other)

    def __floordiv__(self, other: Any) -> Any:
        return self._arith("//", other)

    def between(self, low: Any, high: Any) -> Any:
        """``low <= value <= high`` (both ends included)."""
        from ktstore.models.query import Between

        return Between(self, low, high)

    def startswith(self, prefix: Any) -> Any:
        from ktstore.models.query import StartsWith

        return StartsWith(self, prefix)

    def in_(self, values: Any) -> Any:
        from ktstore.models.query import In

        return In(self, list(values))

    def asc(self) -> Any:
        from ktstore.models.query import Order

        return Order(self, False)

    def desc(self) -> Any:
        from ktstore.models.query import Order

        return Order(self, True)

    def __repr__(self) -> str:
        owner = self.model.__name__ if self.model is not None else "?"
        return f"<{type(self).__name__} {owner}.{self.name}>"


class _Binary(Field[_T]):
    """Text and bytes: indexed as their bytes (UTF-8 for text, whose byte order is code
    point order), which also gives ``startswith`` a key prefix."""

    def _raw(self, value: Any) -> bytes:
        return value  # type: ignore[no-any-return]

    def _encode_key(self, value: Any) -> bytes:
        return keycodec.encode_bytes(self._raw(value))

    def prefix_key(self, value: Any) -> bytes:
        value = self.convert(value)
        if not isinstance(value, self.python_types):
            raise ValidationError(f"{self._where()}: startswith needs {self.kind}, got {value!r}")
        return keycodec.encode_bytes_prefix(self._raw(value))


class Text(_Binary[_S]):
    """Text.  ``search=True`` puts it in the model's full-text index
    (:mod:`ktstore.models.search`, ``Model.search(...)``)."""

    kind = "text"
    python_types = (str,)

    def __init__(self, *, search: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.search = bool(search)

    def _raw(self, value: Any) -> bytes:
        return value.encode("utf-8")  # type: ignore[no-any-return]


class Bytes(_Binary[_By]):
    """Bytes; JSON form: base64 text."""

    kind = "bytes"
    python_types = (bytes,)

    def convert(self, value: Any) -> Any:
        return bytes(value) if isinstance(value, (bytearray, memoryview)) else value

    def to_json(self, value: Any) -> Any:
        import base64

        return base64.b64encode(value).decode("ascii")

    def from_json(self, obj: Any) -> Any:
        import base64
        import binascii

        if isinstance(obj, str):
            try:
                return base64.b64decode(obj.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                raise ValidationError(f"{self._where()}: not base64: {obj!r}") from None
        return self.convert(obj)


class Integer(Field[_I]):
    """An int.  ``primary_key=True, auto=True`` draws ids from a server-side counter."""

    kind = "int"
    python_types = (int,)

    def __init__(self, *, auto: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.auto = bool(auto)
        if self.auto and not self.primary_key:
            raise ModelDefinitionError("auto=True is only for the primary key")

    def check(self, value: Any) -> None:
        if value is None and self.primary_key and self.auto:
            return  # assigned at save time
        super().check(value)

    def to_storage(self, value: int) -> Any:
        if -(2**63) <= value < 2**64:
            return value
        return msgpack.ExtType(_EXT_BIGINT, str(value).encode("ascii"))  # beyond msgpack ints

    def _encode_key(self, value: Any) -> bytes:
        return keycodec.encode_int(value)


_EXT_BIGINT = 1


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_BIGINT:
        return int(data)
    return msgpack.ExtType(code, data)


class Version(Integer[int]):
    """Optimistic locking: incremented by every save; saving a copy whose version is
    not the stored one raises :class:`~ktstore.models.errors.ConflictError`."""

    kind = "version"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("default", 0)
        super().__init__(**kwargs)


class Float(Field[_Fl]):
    """A float; JSON form: the number, or ``"nan"``/``"inf"``/``"-inf"`` (which JSON
    has no number for)."""

    kind = "float"
    python_types = (float,)

    def convert(self, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    def to_json(self, value: Any) -> Any:
        return value if math.isfinite(value) else str(value)

    def from_json(self, obj: Any) -> Any:
        if isinstance(obj, str) and obj in ("nan", "inf", "-inf"):
            return float(obj)
        return self.convert(obj)

    def _encode_key(self, value: Any) -> bytes:
        return keycodec.encode_float(value)


class Boolean(Field[_Bo]):
    kind = "bool"
    python_types = (bool,)

    def _encode_key(self, value: Any) -> bytes:
        return keycodec.encode_bool(value)


class DateTime(Field[_DT]):
    """A timezone-aware datetime.  Stored as (UTC microseconds, utc offset seconds), so
    it reads back in the offset it was written in; naive datetimes are refused (which
    zone would they be in?)."""

    kind = "datetime"
    python_types = (_dt.datetime,)

    def check(self, value: Any) -> None:
        super().check(value)
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise ValidationError(f"{self._where()} needs a timezone-aware datetime")

    def to_storage(self, value: _dt.datetime) -> Any:
        offset = value.utcoffset()
        assert offset is not None
        delta = value - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
        micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
        return [micros, int(offset.total_seconds())]

    def from_storage(self, obj: Any) -> Any:
        micros, off = obj
        tz = _dt.timezone.utc if off == 0 else _dt.timezone(_dt.timedelta(seconds=off))
        utc = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(microseconds=micros)
        return utc.astimezone(tz)

    def _encode_key(self, value: Any) -> bytes:
        return keycodec.encode_datetime(value)

    def to_json(self, value: Any) -> Any:
        return value.isoformat()  # with its offset

    def from_json(self, obj: Any) -> Any:
        if isinstance(obj, str):
            try:
                return _dt.datetime.fromisoformat(obj.replace("Z", "+00:00"))
            except ValueError:
                raise ValidationError(f"{self._where()}: not an ISO datetime: {obj!r}") from None
        return obj


class Date(Field[_D]):
    kind = "date"
    python_types = (_dt.date,)

    def check(self, value: Any) -> None:
        super().check(value)
        if isinstance(value, _dt.datetime):
            raise ValidationError(f"{self._where()} expects a date, not a datetime")

    def to_storage(self, value: _dt.date) -> Any:
        return value.toordinal()

    def from_storage(self, obj: Any) -> Any:
        return _dt.date.fromordinal(obj)

    def _encode_key(self, value: Any) -> bytes:
        return keycodec.encode_date(value)

    def to_json(self, value: Any) -> Any:
        return value.isoformat()

    def from_json(self, obj: Any) -> Any:
        if isinstance(obj, str):
            try:
                return _dt.date.fromisoformat(obj)
            except ValueError:
                raise ValidationError(f"{self._where()}: not an ISO date: {obj!r}") from None
        return obj


class Decimal(Field[_Dec]):
    """A :class:`decimal.Decimal`, stored as its exact string."""

    kind = "decimal"
    python_types = (_decimal.Decimal,)

    def convert(self, value: Any) -> Any:
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            try:
                return _decimal.Decimal(value)
            except _decimal.InvalidOperation:
                raise ValidationError(f"{self._where()}: not a decimal: {value!r}") from None
        return value

    def to_storage(self, value: _decimal.Decimal) -> Any:
        return str(value)

    def from_storage(self, obj: Any) -> Any:
        return _decimal.Decimal(obj)

    def _encode_key(self, value: Any) -> bytes:
        return keycodec.encode_decimal(value)

    def to_json(self, value: Any) -> Any:
        return str(value)  # exact, unlike a JSON number


class UUID(Field[_U]):
    """A :class:`uuid.UUID` (its text form is converted), stored and indexed as its 16
    bytes (so the order is the bytes' order); JSON form: the canonical text."""

    kind = "uuid"
    python_types = (_uuid.UUID,)

    def convert(self, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return _uuid.UUID(value)
            except ValueError:
                raise ValidationError(f"{self._where()}: not a UUID: {value!r}") from None
        return value

    def to_storage(self, value: _uuid.UUID) -> Any:
        return value.bytes

    def from_storage(self, obj: Any) -> Any:
        return _uuid.UUID(bytes=bytes(obj))

    def _encode_key(self, value: Any) -> bytes:
        return keycodec.encode_fixed(value.bytes)  # fixed length: prefix-free

    def to_json(self, value: Any) -> Any:
        return str(value)


class Enum(Field[_E]):
    """A member of an :class:`enum.Enum` whose values are all ``int`` or all ``str``.
    Stored, indexed and ordered by its value (a member's value is converted: ``"red"``
    -> ``Color.RED``); JSON form: the value."""

    kind = "enum"

    def __init__(self, enum: type[_enum.Enum], **kwargs: Any) -> None:
        if not (isinstance(enum, type) and issubclass(enum, _enum.Enum)):
            raise ModelDefinitionError(f"fields.Enum needs an Enum class, got {enum!r}")
        kinds = {type(m.value) for m in enum}
        if not (kinds <= {int} or kinds <= {str}) or not kinds:
            raise ModelDefinitionError(
                f"fields.Enum({enum.__name__}): member values must be all int or all str"
            )
        self.enum = enum
        self.python_types = (enum,)
        self._text = kinds == {str}
        super().__init__(**kwargs)

    def convert(self, value: Any) -> Any:
        if isinstance(value, self.enum):
            return value
        try:
            return self.enum(value)
        except ValueError:
            raise ValidationError(
                f"{self._where()}: {value!r} is not a value of {self.enum.__name__}"
            ) from None

    def to_storage(self, value: Any) -> Any:
        return value.value

    def from_storage(self, obj: Any) -> Any:
        return self.enum(obj)

    def _encode_key(self, value: Any) -> bytes:
        v = value.value
        return keycodec.encode_text(v) if self._text else keycodec.encode_int(v)

    def to_json(self, value: Any) -> Any:
        return value.value


class JSON(Field[_J]):
    """JSON-able data (dicts, lists, str, numbers, bools, None), stored with msgpack.
    Not indexable: what would its order be?"""

    kind = "json"
    python_types = (object,)
    indexable = False

    def check(self, value: Any) -> None:
        super().check(value)
        if value is not None:
            _check_jsonable(value, self._where())


def _check_jsonable(value: Any, where: str) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{where}: {value!r} is not JSON")
        return
    if isinstance(value, (list, tuple)):
        for v in value:
            _check_jsonable(v, where)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValidationError(f"{where}: JSON object keys must be str, got {k!r}")
            _check_jsonable(v, where)
        return
    raise ValidationError(f"{where}: {type(value).__name__} is not JSON-able")


# ---- composite indexes ---------------------------------------------------------------


class Index:
    """An index over several fields, each ascending or descending::

        class Task(Model):
            done = fields.Boolean(default=False)
            due = fields.Date()
            by_done_due = fields.Index(done, due.desc())   # or Index("done", "-due")

    Its entries are ``P\\0i\\0<name>\\0<part codes><pk>`` (a descending part's code
    inverted), so one range scan answers equality on a prefix of the parts plus a range
    on the next part, in the order of the parts that follow (``order_by(Task.done,
    Task.due.desc())``, or all of them reversed).  The attribute name names the index.
    """

    index = True
    unique = False

    def __init__(self, *parts: Any) -> None:
        if len(parts) < 1:
            raise ModelDefinitionError("Index() needs at least one field")
        self.spec = parts
        self.parts: list[tuple[Field, bool]] = []
        self.name = ""
        self.model: type | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def resolve(self, fields: dict[str, Field]) -> None:
        """Turn the declared parts (names, ``"-name"``, fields, ``field.desc()``) into
        ``(field, descending)`` pairs once the model's fields are known."""
        from ktstore.models.query import Order

        out: list[tuple[Field, bool]] = []
        for part in self.spec:
            if isinstance(part, str):
                desc = part.startswith("-")
                f = fields.get(part.lstrip("+-"))
            elif isinstance(part, Order):
                f, desc = part.field, part.descending
            else:
                f, desc = part, False
            if not isinstance(f, Field) or fields.get(f.name) is not f:
                raise ModelDefinitionError(
                    f"Index {self.name!r}: {part!r} is not a field of the model"
                )
            if not f.indexable:
                raise ModelDefinitionError(f"Index {self.name!r}: {f._where()} cannot be indexed")
            out.append((f, desc))
        if len({f.name for f, _ in out}) != len(out):
            raise ModelDefinitionError(f"Index {self.name!r} names a field twice")
        self.parts = out

    def encode(self, values: list[Any]) -> bytes:
        """The parts' codes of ``values`` (one per part), concatenated."""
        out = []
        for (f, desc), v in zip(self.parts, values, strict=True):
            k = f.encode_key(v)
            out.append(keycodec.invert(k) if desc else k)
        return b"".join(out)

    def __repr__(self) -> str:
        owner = self.model.__name__ if self.model is not None else "?"
        cols = ", ".join(("-" if d else "") + f.name for f, d in self.parts) or "?"
        return f"<Index {owner}.{self.name} ({cols})>"


# ---- container fields ----------------------------------------------------------------


class ContainerField:
    """A collection stored as its own record at ``<prefix>:<pk>\\x00<name>`` (tree order
    puts it right after the instance), loaded lazily, deleted and expired with it.

    Reading it gives a view that behaves like the Python type it mirrors
    (:mod:`ktstore.models.views`); assigning it, or giving it to the constructor,
    replaces the contents at the next ``save()``, in the same atomic call as the
    record.  ``default`` is the contents a new instance starts with (empty unless
    given; type checkers need ``default=`` to see the field as optional)."""

    container = "Hash"

    def __init__(self, doc: str | None = None, *, default: Any = None) -> None:
        self.doc = doc
        self.default = default
        self.name = ""
        self.model: type | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        return instance._kt_container(self)

    def __set__(self, instance: Any, value: Any) -> None:
        # the whole contents, written by the next save() in the same atomic call
        instance._kt_set_container(self, value)

    def __repr__(self) -> str:
        owner = self.model.__name__ if self.model is not None else "?"
        return f"<{type(self).__name__} {owner}.{self.name}>"


class ListField(ContainerField, Generic[_V]):
    """A list (``ListView``: a ``MutableSequence``)."""

    container = "List"

    if TYPE_CHECKING:

        @overload
        def __get__(self, instance: None, owner: Any = None) -> Self: ...

        @overload
        def __get__(self, instance: object, owner: Any = None) -> ListView[_V]: ...

        def __get__(self, instance: Any, owner: Any = None) -> Any: ...

        def __set__(self, instance: object, value: Iterable[_V]) -> None: ...


class SetField(ContainerField, Generic[_V]):
    """A set (``SetView``: a ``MutableSet``)."""

    container = "Set"

    if TYPE_CHECKING:

        @overload
        def __get__(self, instance: None, owner: Any = None) -> Self: ...

        @overload
        def __get__(self, instance: object, owner: Any = None) -> SetView[_V]: ...

        def __get__(self, instance: Any, owner: Any = None) -> Any: ...

        def __set__(self, instance: object, value: Iterable[_V]) -> None: ...


class HashField(ContainerField, Generic[_K, _V]):
    """A dict (``HashView``: a ``MutableMapping``)."""

    container = "Hash"

    if TYPE_CHECKING:

        @overload
        def __get__(self, instance: None, owner: Any = None) -> Self: ...

        @overload
        def __get__(self, instance: object, owner: Any = None) -> HashView[_K, _V]: ...

        def __get__(self, instance: Any, owner: Any = None) -> Any: ...

        def __set__(self, instance: object, value: Mapping[_K, _V]) -> None: ...


# ---- annotations -> fields -----------------------------------------------------------

_BY_TYPE: dict[Any, type[Field]] = {
    str: Text,
    bytes: Bytes,
    int: Integer,
    float: Float,
    bool: Boolean,
    _dt.datetime: DateTime,
    _dt.date: Date,
    _decimal.Decimal: Decimal,
    _uuid.UUID: UUID,
    dict: JSON,
    list: JSON,
}


def field_for_annotation(annotation: Any) -> Field | None:
    """A field for a bare annotation (``name: str``, ``age: int | None = None``), or
    ``None`` when the annotation names no storable type."""
    import types
    import typing

    optional = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, getattr(types, "UnionType", None)):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            return None
        annotation = args[0]
        origin = typing.get_origin(annotation)
    if origin in (list, dict):
        annotation = origin
    if isinstance(annotation, type) and issubclass(annotation, _enum.Enum):
        return Enum(annotation, optional=optional)
    cls = _BY_TYPE.get(annotation)
    if cls is None:
        return None
    return cls(optional=optional)


from ktstore.models.relations import CASCADE, PROTECT, SET_NULL, ForeignKey  # noqa: E402

__all__ += ["ForeignKey", "CASCADE", "PROTECT", "SET_NULL"]

"""Container fields of an instance, seen as the Python type they mirror.

``u.props`` (a :class:`~ktstore.models.fields.HashField`) is a ``MutableMapping``,
``u.tags`` (``SetField``) a ``MutableSet`` and ``u.notes`` (``ListField``) a
``MutableSequence``: ``dict(u.props)``, ``u.tags | {"x"}``, ``u.notes[-1]``,
``sorted(u.tags)`` and ``==`` against a plain ``dict``/``set``/``list`` all work.
Each call is a server call on the container record (the containers of
:mod:`ktstore.containers`); whole-container reads (iteration, ``items()``,
comparison) fetch it once.  Methods of the underlying container that the Python
type lacks (``Hash.setnx``, ``List.rpoplpush``...) are passed through.

After each call that may write, the container's expiry is put back in step with its
instance's (the container procedures rewrite the record, which resets its expiry).

:func:`raw_record` builds the stored form of a whole container, so ``save()`` can
write the containers given at creation in the same atomic call as the record.
"""

from __future__ import annotations

from collections.abc import (
    Iterable,
    Iterator,
    MutableMapping,
    MutableSequence,
    MutableSet,
)
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ktstore.models.base import Model
    from ktstore.models.fields import ContainerField

__all__ = ["HashView", "SetView", "ListView", "raw_record", "view_for", "python_value"]

_K = TypeVar("_K")
_V = TypeVar("_V")


class _View:
    """What the three views share: the instance, the container, the expiry sync."""

    _READS = frozenset(
        "get get_all get_raw get_bulk length contains index get_range find rfind "
        "count items keys values members".split()
    )

    def __init__(self, instance: Model, field: ContainerField, container: Any, key: bytes) -> None:
        self._inst = instance
        self._field = field
        self._c = container
        self._key = key

    def _sync(self) -> None:
        inst = self._inst
        if inst._kt_xt is not None:
            b = type(inst)._binding()
            b.run(b.expire(b.record_key(inst._pkstr()), None, [self._key]))

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._c, name)
        if not callable(attr) or name in self._READS or name.startswith("_"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            self._sync()
            return result

        return call

    def __repr__(self) -> str:
        return (
            f"<{self._field.container} {type(self._inst).__name__}.{self._field.name} "
            f"{self.copy()!r}>"
        )

    def copy(self) -> Any:
        """A plain Python copy of the contents (one read)."""
        raise NotImplementedError


class HashView(_View, MutableMapping[_K, _V]):
    """A ``HashField`` as a ``MutableMapping``."""

    def copy(self) -> dict[Any, Any]:
        return dict(self._c.get_all())

    def __getitem__(self, key: Any) -> Any:
        found = self._c.get_bulk([key])
        if key not in found:
            raise KeyError(key)
        return found[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._c.set(key, value)
        self._sync()

    def __delitem__(self, key: Any) -> None:
        if not self._c.remove(key):
            raise KeyError(key)
        self._sync()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.copy())

    def __len__(self) -> int:
        return int(self._c.length())

    def __contains__(self, key: Any) -> bool:
        return bool(self._c.contains(key))

    def items(self) -> Any:
        return self.copy().items()

    def values(self) -> Any:
        return self.copy().values()

    def keys(self) -> Any:
        return self.copy().keys()

    def update(self, other: Any = (), /, **kwargs: Any) -> None:  # type: ignore[override]
        data = dict(other.items() if hasattr(other, "items") else other, **kwargs)
        if data:
            self._c.set_bulk(data)
            self._sync()

    def clear(self) -> None:
        self._c.clear()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HashView):
            other = other.copy()
        return isinstance(other, dict) and self.copy() == other

    __hash__ = None  # type: ignore[assignment]


class SetView(_View, MutableSet[_V]):
    """A ``SetField`` as a ``MutableSet``."""

    @classmethod
    def _from_iterable(cls, it: Iterable[Any]) -> set[Any]:
        return set(it)  # set operators return plain sets

    def copy(self) -> set[Any]:
        return set(self._c.members())

    def __contains__(self, value: Any) -> bool:
        return bool(self._c.contains(value))

    def __iter__(self) -> Iterator[Any]:
        return iter(self.copy())

    def __len__(self) -> int:
        return int(self._c.count())

    def add(self, *values: Any) -> None:  # type: ignore[override]
        """Add one member (or several, in one call)."""
        if values:
            self._c.add(*values)
            self._sync()

    def update(self, *others: Iterable[Any]) -> None:
        values = [v for other in others for v in other]
        if values:
            self._c.add_bulk(values)
            self._sync()

    def discard(self, value: Any) -> None:
        self._c.remove(value)
        self._sync()

    def remove(self, *values: Any) -> None:  # type: ignore[override]
        """Remove members; ``KeyError`` when one was not there (as ``set.remove``)."""
        n = self._c.remove(*values)
        self._sync()
        if n != len(set(values)):
            raise KeyError(values[0] if len(values) == 1 else values)

    def pop(self) -> Any:
        if not len(self):
            raise KeyError("pop from an empty set")
        value = self._c.pop()
        self._sync()
        return value

    def clear(self) -> None:
        self._c.clear()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SetView):
            other = other.copy()
        return isinstance(other, (set, frozenset)) and self.copy() == other

    __hash__ = None  # type: ignore[assignment]


class ListView(_View, MutableSequence[_V]):
    """A ``ListField`` as a ``MutableSequence`` (negative indexes and slices work)."""

    def copy(self) -> list[Any]:
        return list(self._c.get_range())

    def __getitem__(self, item: Any) -> Any:
        return self._c[item]

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            raise TypeError("assign a slice of a ListField through a plain list and save()")
        self._c[index] = value
        self._sync()

    def __delitem__(self, item: Any) -> None:
        del self._c[item]
        self._sync()

    def __len__(self) -> int:
        return int(self._c.length())

    def __iter__(self) -> Iterator[Any]:
        return iter(self.copy())

    def __contains__(self, value: Any) -> bool:
        return self._c.find(value) is not None

    def insert(self, index: int, value: Any) -> None:
        n = len(self)
        if index >= n:
            self._c.appendright(value)
        elif index <= -n or index == 0:
            self._c.appendleft(value)
        else:
            self._c.insert(index, value)
        self._sync()

    def append(self, value: Any) -> None:
        self._c.appendright(value)
        self._sync()

    def extend(self, values: Iterable[Any]) -> None:
        values = list(values)
        if values:
            self._c.extend(values)
            self._sync()

    def pop(self, index: int = -1) -> Any:
        value = self._c.pop(index)
        self._sync()
        return value

    def clear(self) -> None:
        self._c.clear()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ListView):
            other = other.copy()
        return isinstance(other, list) and self.copy() == other

    __hash__ = None  # type: ignore[assignment]


_VIEWS: dict[str, type[_View]] = {"Hash": HashView, "Set": SetView, "List": ListView}


def view_for(instance: Model, field: ContainerField, container: Any, key: bytes) -> Any:
    return _VIEWS[field.container](instance, field, container, key)


def python_value(field: ContainerField, value: Any) -> Any:
    """A given container value as the Python type the field mirrors (a copy)."""
    from ktstore.models.errors import ValidationError

    kind = field.container
    try:
        if kind == "Hash":
            return dict(value.items() if hasattr(value, "items") else value)
        if isinstance(value, (str, bytes, dict)):
            raise TypeError(type(value).__name__)
        return set(value) if kind == "Set" else list(value)
    except (TypeError, ValueError) as exc:
        want = {"Hash": "a mapping", "Set": "an iterable", "List": "an iterable"}[kind]
        raise ValidationError(
            f"{field!r} takes {want} of values, not {type(value).__name__}: {exc}"
        ) from None


def raw_record(client: Any, field: ContainerField, value: Any) -> bytes:
    """The stored form of a whole container (the record its container procedures
    read): Hash a mapdump of key -> value, Set a mapdump of member -> "", List an
    arraydump; values through the client's serializer.  Empty: ``b""`` (no record)."""
    from ktstore.protocol import dumps

    enc = client.encode_value
    kind = field.container
    if not value:
        return b""
    if kind == "Hash":
        return dumps.mapdump([(client.encode_key(k), enc(v)) for k, v in value.items()])
    if kind == "Set":
        return dumps.mapdump([(enc(v), b"") for v in value])
    return dumps.arraydump([enc(v) for v in value])

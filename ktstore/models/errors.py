"""Errors of the model layer.

They all derive from :class:`ktstore.errors.KyotoTycoonError`, so one ``except``
still catches everything ktstore raises; the subclasses say what a caller can do
about it (retry on a conflict, pick another value on a unique violation...).
"""

from __future__ import annotations

from ktstore.errors import InvalidArgument, KyotoTycoonError


class ModelError(KyotoTycoonError):
    """Something about a model or its use is wrong (bad declaration, unbound model,
    query on a field that cannot answer it...)."""


class ModelDefinitionError(ModelError, TypeError):
    """The model class itself is declared wrongly (raised at class creation)."""


class DoesNotExist(ModelError, KeyError):
    """No instance has that primary key (or it expired).  Also a ``KeyError`` so
    ``User[pk]`` behaves like a mapping."""

    def __str__(self) -> str:  # KeyError's repr-quoting hides the message
        return str(self.args[0]) if self.args else "does not exist"


class UniqueViolation(ModelError):
    """A ``unique=True`` field already holds this value in another instance.  Nothing
    of the refused save was written."""

    def __init__(self, model: str, field: str, value: object, owner: str | None = None) -> None:
        self.model = model
        self.field = field
        self.value = value
        self.owner = owner
        who = f" (instance {owner!r})" if owner else ""
        super().__init__(f"{model}.{field} must be unique: {value!r} is already taken{who}")


class ConflictError(ModelError):
    """The stored instance changed since this copy was read (optimistic locking):
    reload it and apply the change again.  Nothing was written."""


class AlreadyExists(ConflictError):
    """``create()`` found an instance with the same primary key."""


class ValidationError(ModelError, InvalidArgument):
    """A value does not fit its field (type, naive datetime, NaN in an index...)."""


class RelationError(ModelError):
    """A foreign key refers to an instance that does not exist (nothing was written)."""


class ProtectedError(RelationError):
    """A delete was refused: instances refer to this one through a foreign key declared
    with ``on_delete=PROTECT``.  Nothing was deleted by the refused call."""

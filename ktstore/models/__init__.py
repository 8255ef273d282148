"""ktstore's model layer: typed, validated (attrs) classes stored in Kyoto Tycoon.

>>> from ktstore.models import Model, fields
>>> class User(Model):
...     email = fields.Text(unique=True)
...     age = fields.Integer(index=True, default=0)
>>> u = User.create(email="ada@example.com", age=36)
>>> User.query(User.age >= 18).order_by(User.age.desc()).first()

The same classes serve asyncio code once bound to an ``AsyncStore``:
``await User.aget(pk)``, ``await u.asave()``, ``async for u in User.query(...)``
(docs/models.md, "Async models").

See :mod:`ktstore.models.base` (models), :mod:`ktstore.models.fields` (fields),
:mod:`ktstore.models.query` (queries), :mod:`ktstore.models.maintenance` (check,
sweep, rebuild) and the key layout in :mod:`ktstore.models.backend`; the user guide is
docs/models.md.
"""

from ktstore.models import fields
from ktstore.models.base import Model, new_id
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
    CASCADE,
    JSON,
    PROTECT,
    SET_NULL,
    UUID,
    Boolean,
    Bytes,
    Date,
    DateTime,
    Decimal,
    Enum,
    Field,
    Float,
    ForeignKey,
    HashField,
    Index,
    Integer,
    ListField,
    SetField,
    Text,
    Version,
)
from ktstore.models.maintenance import CheckReport, RebuildReport
from ktstore.models.query import F, Query

__all__ = [
    "Model",
    "Query",
    "F",
    "fields",
    "new_id",
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
    "Index",
    "Version",
    "ListField",
    "SetField",
    "HashField",
    "ModelError",
    "ModelDefinitionError",
    "DoesNotExist",
    "UniqueViolation",
    "ConflictError",
    "AlreadyExists",
    "ValidationError",
    "RelationError",
    "ProtectedError",
    "ForeignKey",
    "CASCADE",
    "PROTECT",
    "SET_NULL",
    "CheckReport",
    "RebuildReport",
]

"""A graphql-core fast path for leaf fields that Strawberry resolves by plain attribute access.

Most fields of the API are scalars or enums read from an attribute (``Balance.available``,
``Order.paidFen``, ``Member.id``, ...). For each of them graphql-core builds a ``ResolveInfo``,
calls Strawberry's default-resolver wrapper, checks the result for awaitability and walks
``complete_value`` (non-null → list → leaf) — several microseconds per field, which on a page of
100 members with nested balances and orders (≈3,000 leaf fields) is most of the execution time.

:class:`FastLeafExecutionContext` answers those fields directly: ``getattr`` and the scalar's
``coerce_output_value``, i.e. exactly what the normal path computes on success. Anything else —
a ``None`` for a non-null field, a value that is not a plain scalar (an awaitable, an exception),
a failing getattr or coercion, middleware (a schema extension with a ``resolve`` hook) — goes
through graphql-core's ordinary ``execute_field``, so errors, their paths and masking are
unchanged. Fields with a resolver, arguments, permission classes or field extensions are never
on the fast path: only fields Strawberry itself compiled to its basic (no-``Info``) resolver are.
"""

from __future__ import annotations

import decimal
import uuid
from datetime import date, datetime, time
from enum import Enum
from typing import Any, ClassVar

from graphql import (
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    get_named_type,
    is_leaf_type,
    is_object_type,
)
from graphql.pyutils import Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField

# Values of these exact types are never awaitable nor exceptions: safe to coerce directly.
_PLAIN = frozenset({str, int, float, bool, datetime, date, time, decimal.Decimal, uuid.UUID})

LeafPlan = tuple[str, GraphQLLeafType, bool]
"""(python attribute, leaf type, nullable)"""


class FastLeafExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context with the leaf-field fast path (see the module doc).

    ``leaf_plans`` maps ``(object type name, field name)`` to a :data:`LeafPlan`; it is filled by
    :func:`install_fast_leaves` once the schema is built (a subclass per schema holds it).
    """

    leaf_plans: ClassVar[dict[tuple[str, str], LeafPlan]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        mm = self.middleware_manager
        self._fast = bool(self.leaf_plans) and (mm is None or not mm.middlewares)

    def execute_field(  # type: ignore[override]
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any,
    ) -> Any:
        if self._fast:
            plan = self.leaf_plans.get((parent_type.name, field_details_list[0].node.name.value))
            if plan is not None:
                attr, leaf_type, nullable = plan
                try:
                    value = getattr(source, attr)
                except Exception:  # the normal path raises it, located
                    value = Undefined
                if value is None:
                    if nullable:
                        return None
                elif type(value) in _PLAIN or isinstance(value, Enum):
                    try:
                        coerced = leaf_type.coerce_output_value(value)
                    except Exception:  # the normal path reports it
                        coerced = None
                    if coerced is not None and coerced is not Undefined:
                        return coerced
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )


def _basic_field(resolve: Any) -> StrawberryField | None:
    """The field behind Strawberry's basic resolver (``_get_basic_result``), else ``None``.

    That resolver is a closure over its ``StrawberryField`` and returns
    ``field.get_result(source, ...)``, i.e. the default resolver on ``field.python_name``.
    """
    if getattr(resolve, "__name__", "") != "_get_basic_result" or not getattr(
        resolve, "_is_default", False
    ):
        return None
    try:
        cell = resolve.__closure__[resolve.__code__.co_freevars.index("field")]
        field = cell.cell_contents
    except (AttributeError, TypeError, ValueError, IndexError):
        return None
    if not isinstance(field, StrawberryField) or not field.is_basic_field:
        return None
    return field


def install_fast_leaves(schema: Any) -> None:
    """Fill the schema's execution context class with the plans of its basic leaf fields."""
    ctx_class = schema.execution_context_class
    if not (isinstance(ctx_class, type) and issubclass(ctx_class, FastLeafExecutionContext)):
        return
    if schema.config.default_resolver is not getattr:
        return  # a custom default resolver: attribute access would not be equivalent
    plans: dict[tuple[str, str], LeafPlan] = {}
    for name, gql_type in schema._schema.type_map.items():
        if name.startswith("__") or not is_object_type(gql_type):
            continue
        for field_name, field_def in gql_type.fields.items():
            field = _basic_field(field_def.resolve)
            if field is None or field_def.args:
                continue
            named = get_named_type(field_def.type)
            nullable = not isinstance(field_def.type, GraphQLNonNull)
            inner = field_def.type if nullable else field_def.type.of_type
            if not is_leaf_type(named) or inner is not named:
                continue  # objects and lists keep the normal completion
            plans[(name, field_name)] = (field.python_name, named, nullable)  # type: ignore[assignment]
    ctx_class.leaf_plans = plans


def fast_execution_context() -> type[FastLeafExecutionContext]:
    """A fresh subclass, so each schema keeps its own plans."""
    return type("MemberhubExecutionContext", (FastLeafExecutionContext,), {"leaf_plans": {}})

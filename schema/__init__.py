"""The Strawberry GraphQL schema of memberhub (see ARCHITECTURE.md §8).

``build_schema(settings)`` returns the schema with the hardening extensions configured from
settings; ``sdl()`` prints it (``memberhub export-schema``; ``schema/schema.graphql`` is the
committed export and ``tests/test_schema_sdl.py`` fails when it is stale).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import strawberry
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from gateway.settings import Settings
from schema.errors import ERROR_TYPES
from schema.execution import fast_execution_context, install_fast_leaves
from schema.extensions import MaskUnexpectedErrors
from schema.mutations import Mutation
from schema.queries import Query
from schema.relay import MAX_PAGE
from schema.types import Member, Order, PointsHold, PointsTransfer

SDL_PATH = Path(__file__).with_name("schema.graphql")


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    """The schema with limits from ``settings`` (defaults when ``None``: export, tests)."""
    s = settings or Settings()
    # Factories, not instances: Strawberry builds fresh extensions per request. The parser and
    # validation caches live at module level (keyed by maxsize, schema and rules), so they are
    # shared across requests — without them parse + validate dominates small requests.
    # The depth and alias limiters are validation rules. Their classes are created ONCE here:
    # a limiter constructed per request would mint new rule classes every time, and the
    # validation cache (keyed by the rules) would never hit — validation would then cost ~5 ms
    # on every request.
    rules = [
        *QueryDepthLimiter(max_depth=s.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=s.max_aliases).validation_rules,
    ]
    extensions: list[Callable[[], SchemaExtension] | type[SchemaExtension]] = [
        lambda: AddValidationRules(rules),
        lambda: MaxTokensLimiter(max_token_count=s.max_query_tokens),
        lambda: ParserCache(maxsize=1024),
        lambda: ValidationCache(maxsize=1024),
        MaskUnexpectedErrors,
    ]
    if not s.introspection:
        extensions.append(DisableIntrospection)
    schema = strawberry.Schema(
        query=Query,
        mutation=Mutation,
        types=[Member, Order, PointsHold, PointsTransfer, *ERROR_TYPES],
        extensions=extensions,
        config=StrawberryConfig(relay_max_results=MAX_PAGE),
        # Scalar/enum fields read from an attribute skip graphql-core's per-field machinery
        # (ResolveInfo, resolver wrapper, complete_value): see schema/execution.py.
        execution_context_class=fast_execution_context(),
    )
    install_fast_leaves(schema)
    return schema


def sdl() -> str:
    """The SDL as committed in ``schema/schema.graphql`` (trailing newline included)."""
    return str(build_schema()).rstrip("\n") + "\n"


__all__ = ["SDL_PATH", "build_schema", "sdl"]

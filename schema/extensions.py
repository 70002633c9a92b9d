"""Schema hardening: error masking that keeps expected errors readable.

Masked: anything unexpected (a bug, a database failure) — the client sees "Unexpected error." and
the server log keeps the traceback. Kept: GraphQL syntax/validation/coercion errors (they carry
no original exception, or a GraphQLError one) and domain errors, which also gain
``extensions.code`` (and ``extensions.field``) so clients can branch on them.
"""

from __future__ import annotations

import logging

from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors

from gateway.errors import DomainError, InvalidInput
from schema.errors import camel

log = logging.getLogger("memberhub.graphql")


def should_mask(error: GraphQLError) -> bool:
    original = error.original_error
    if original is None or isinstance(original, GraphQLError | DomainError):
        return False
    log.error("unexpected error in GraphQL execution", exc_info=original)
    return True


class MaskUnexpectedErrors(MaskErrors):
    """:class:`MaskErrors` plus machine-readable codes on the domain errors it lets through."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=should_mask, error_message="Unexpected error.")

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        out: list[GraphQLError] = []
        for error in super()._process_errors(errors):
            original = error.original_error
            if isinstance(original, DomainError):
                ext = {"code": original.code}
                if isinstance(original, InvalidInput) and original.field:
                    ext["field"] = camel(original.field) or original.field
                error = GraphQLError(
                    original.message,
                    nodes=error.nodes,
                    source=error.source,
                    positions=error.positions,
                    path=error.path,
                    original_error=original,
                    extensions={**(error.extensions or {}), **ext},
                )
            out.append(error)
        return out

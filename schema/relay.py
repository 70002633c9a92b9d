"""Opaque global ids and keyset cursors.

Global ids are Strawberry's Relay ``GlobalID`` (base64 of ``TypeName:uuid``). Decoding never
raises: a malformed id, an id of another type or one that is not a uuid decodes to ``None``, which
resolvers treat exactly like a missing object (``null`` / ``NotFoundError``) — the same answer
another tenant's id gets.

Cursors are base64 of ``<kind>:<keyset value>`` so a client cannot mistake one connection's
cursor for another's; a cursor that does not decode is an ``InvalidInput`` on ``after``.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import strawberry
from strawberry.relay import GlobalID, GlobalIDValueError, PageInfo
from strawberry.relay.utils import to_base64

from gateway.errors import InvalidInput

MAX_PAGE = 100
"""Largest page any connection returns (mirrors ``StrawberryConfig.relay_max_results``)."""

T = TypeVar("T")


def global_id(type_name: str, value: uuid.UUID) -> str:
    """``str(GlobalID(type_name, str(value)))`` without building the GlobalID object."""
    return to_base64(type_name, str(value))


def decode_id(raw: object, *type_names: str) -> uuid.UUID | None:
    """The uuid inside a global id of one of ``type_names``, or ``None`` for anything else."""
    if not isinstance(raw, str) or len(raw) > 200:
        return None
    try:
        gid = GlobalID.from_id(raw)
        if gid.type_name not in type_names:
            return None
        return uuid.UUID(gid.node_id)
    except (GlobalIDValueError, ValueError, TypeError, binascii.Error):
        return None


def decode_type(raw: object) -> tuple[str, uuid.UUID] | None:
    """``(type name, uuid)`` of any well-formed global id (for ``node(id:)``)."""
    if not isinstance(raw, str) or len(raw) > 200:
        return None
    try:
        gid = GlobalID.from_id(raw)
        return gid.type_name, uuid.UUID(gid.node_id)
    except (GlobalIDValueError, ValueError, TypeError, binascii.Error):
        return None


def encode_cursor(kind: str, value: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode()


def decode_cursor(kind: str, cursor: str | None) -> str | None:
    """The keyset value inside ``cursor`` (``None`` when no cursor was given)."""
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise InvalidInput("after is not a cursor from this connection", field="after") from exc
    prefix, sep, value = text.partition(":")
    if not sep or prefix != kind or not value:
        raise InvalidInput("after is not a cursor from this connection", field="after")
    return value


def decode_uuid_cursor(kind: str, cursor: str | None) -> uuid.UUID | None:
    value = decode_cursor(kind, cursor)
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise InvalidInput("after is not a cursor from this connection", field="after") from exc


def check_first(first: int, *, field: str = "first", maximum: int = MAX_PAGE) -> int:
    """Page sizes are 0..100: larger pages are refused rather than silently truncated."""
    if first < 0 or first > maximum:
        raise InvalidInput(f"{field} must be between 0 and {maximum}", field=field)
    return first


@strawberry.type(description="An edge in a connection: a node and the cursor that points at it.")
class Edge(Generic[T]):
    cursor: str = strawberry.field(description="Opaque keyset cursor; pass it as `after`.")
    node: T = strawberry.field(description="The item at the end of the edge.")


@strawberry.type(description="A page of a keyset-paginated list (Relay connection).")
class Connection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(description="The items of this page with cursors.")
    page_info: PageInfo = strawberry.field(description="Where this page sits in the list.")

    @strawberry.field(description="The items of this page without cursors (shortcut).")
    def nodes(self) -> list[T]:
        return [e.node for e in self.edges]


def build_connection(
    rows: Sequence[object],
    first: int,
    *,
    wrap: Callable[[object], T],
    cursor_of: Callable[[object], str],
    has_previous: bool,
) -> Connection[T]:
    """A connection from up to ``first + 1`` rows (the extra row only signals a next page)."""
    has_next = len(rows) > first
    page = rows[:first]
    edges = [Edge(cursor=cursor_of(r), node=wrap(r)) for r in page]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next,
            has_previous_page=has_previous,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )

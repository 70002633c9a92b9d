"""Enums shared by types, inputs and errors (kept apart so those modules never import each other).

Values are the domain's lowercase strings; GraphQL shows the names (``PAID``), as frontends expect.
"""

from __future__ import annotations

from enum import StrEnum

import strawberry


@strawberry.enum(
    description="Order status. Moves only forward: CREATED → PAID → COMPLETED, CREATED → "
    "CANCELLED; refunds make it PARTIALLY_REFUNDED, then REFUNDED."
)
class OrderStatus(StrEnum):
    CREATED = "created"
    PAID = "paid"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


@strawberry.enum(
    description="Points hold status: ACTIVE until captured, released, or expired at its TTL "
    "(each happens at most once)."
)
class PointsHoldStatus(StrEnum):
    ACTIVE = "active"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"


@strawberry.enum(description="MERGED, or UNMERGED once undone by unmergeMembers.")
class MergeStatus(StrEnum):
    MERGED = "merged"
    UNMERGED = "unmerged"

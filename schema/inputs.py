"""Input types. Every mutation takes exactly one ``input``; writes accept ``idempotencyKey``.

Inputs are plain data: validation lives in the services (``gateway``), which raise
``InvalidInput`` naming the field, so the API and the CLI/connectors enforce the same rules.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

import strawberry
from strawberry.scalars import JSON

from schema.enums import OrderStatus

IDEMPOTENCY_DOC = (
    "Client-chosen key (1-96 printable ASCII). Repeating a request with the same key returns "
    "the original result without writing again; reusing it for a different request is an "
    "IdempotencyKeyReusedError."
)


@strawberry.input(description="Filters for `members`; all given filters must match.")
class MemberFilterInput:
    name_contains: str | None = strawberry.field(
        default=None, description="Case-insensitive substring of the name."
    )
    channel: str | None = strawberry.field(
        default=None, description="Has an identity first reported by this channel."
    )
    identifier_kind: str | None = strawberry.field(
        default=None, description="Has an identity of this kind."
    )
    created_after: datetime | None = strawberry.field(default=None, description="Created after.")
    created_before: datetime | None = strawberry.field(default=None, description="Created before.")
    segment: JSON | None = strawberry.field(
        default=None,
        description="A segment filter document (the language of `createSegment` / "
        "`previewSegment`: tiers, tags, channels, spend, lastOrder, orderCount, birthdayMonth, "
        "joined), evaluated now. An invalid one is a FILTER_INVALID error listing the problems.",
    )
    in_segment: str | None = strawberry.field(
        default=None,
        description="Only current members of this segment (code or id), as of its last build "
        "or refresh.",
    )


@strawberry.input(description="A raw identifier as a channel reports it.")
class IdentifierInput:
    kind: str = strawberry.field(description="Identifier kind, see `identifierKinds`.")
    value: str = strawberry.field(description="Raw value, e.g. a phone number or an openid.")
    scope: str | None = strawberry.field(
        default=None,
        description="Platform scope (appid, shop id, brand); omit for global kinds (phone).",
    )


@strawberry.input(description="Profile facts from one channel.")
class ProfileInput:
    name: str | None = strawberry.field(default=None, description="Display name.")
    gender: str | None = strawberry.field(default=None, description="Gender.")
    birthday: date | None = strawberry.field(default=None, description="Birthday.")
    city: str | None = strawberry.field(default=None, description="City.")
    verified: bool = strawberry.field(
        default=False, description="The channel verified these facts (e.g. real-name check)."
    )
    observed_at: datetime | None = strawberry.field(
        default=None, description="When the channel observed them (default: now)."
    )


@strawberry.enum(
    description="How a person joined: STORE_QR (a store's QR code), GUIDE (a shopping guide), "
    "LIVE (a live-stream room), CAMPAIGN (a marketing campaign), OTHER."
)
class JoinSceneKind(StrEnum):
    STORE_QR = "store_qr"
    GUIDE = "guide"
    LIVE = "live"
    CAMPAIGN = "campaign"
    OTHER = "other"


@strawberry.input(description="The scene a member joined by (入会场景).")
class JoinSceneInput:
    kind: JoinSceneKind = strawberry.field(description="The kind of scene.")
    ref: str | None = strawberry.field(
        default=None,
        description="The store code, guide code, live-room id or campaign code (≤ 55 characters).",
    )


@strawberry.input(
    description="Resolve a channel record to one member (ONE ID): creates, "
    "attaches or merges as the identifiers require."
)
class UpsertMemberInput:
    channel: str = strawberry.field(description="Reporting channel, e.g. tmall, wechat, pos.")
    identifiers: list[IdentifierInput] = strawberry.field(description="At least one identifier.")
    profile: ProfileInput | None = strawberry.field(default=None, description="Profile facts.")
    scene: JoinSceneInput | None = strawberry.field(
        default=None,
        description="How the person joined; a member created now gets its tags (scene:<kind>, "
        "store:/guide:/live:/campaign:/ref:<ref>) and member.joined carries it.",
    )
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_DOC)


@strawberry.input(description="One order line; amounts in fen.")
class OrderLineInput:
    sku: str = strawberry.field(description="Stock-keeping unit.")
    name: str = strawberry.field(description="Product name.")
    quantity: int = strawberry.field(description="Quantity (negative for a return line).")
    unit_price_fen: int = strawberry.field(description="Unit price in fen.")
    amount_fen: int = strawberry.field(description="Line amount in fen.")
    category: str | None = strawberry.field(default=None, description="Product category.")


@strawberry.input(
    description="Create or update an order by (channel, externalId). Status only "
    "moves forward; paying an order earns points through the tenant's rules."
)
class RecordOrderInput:
    channel: str = strawberry.field(description="Sales channel.")
    external_id: str = strawberry.field(description="The channel's order id.")
    status: OrderStatus = strawberry.field(
        description="CREATED, PAID, COMPLETED or CANCELLED (refund statuses come from refundOrder)."
    )
    total_fen: int = strawberry.field(description="Order total in fen.")
    placed_at: datetime = strawberry.field(description="When the order was placed.")
    member_id: strawberry.ID | None = strawberry.field(
        default=None, description="The member's id (from upsertMember)."
    )
    paid_fen: int = strawberry.field(default=0, description="Amount paid in fen.")
    lines: list[OrderLineInput] = strawberry.field(
        default_factory=list, description="Order lines; their amounts must add up to totalFen."
    )
    store_code: str | None = strawberry.field(default=None, description="Store code.")
    guide_code: str | None = strawberry.field(default=None, description="Shopping guide code.")
    paid_at: datetime | None = strawberry.field(default=None, description="When it was paid.")
    coupons: list[str] | None = strawberry.field(
        default=None,
        description="Coupon codes the order used (at most 10), redeemed atomically with it "
        "against totalFen and the lines before discounts; one refused code refuses the whole "
        "order (CouponRefusedError) and nothing is written. Re-sending the order is idempotent.",
    )
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_DOC)


@strawberry.input(
    description="Refund part or all of an order; points earned on it are reversed "
    "in proportion (what was already spent is recorded as shortfall)."
)
class RefundOrderInput:
    order_id: strawberry.ID = strawberry.field(description="The order.")
    refund_id: str = strawberry.field(description="The channel's refund id (idempotent).")
    amount_fen: int = strawberry.field(description="Amount refunded in fen (> 0).")
    reason: str | None = strawberry.field(default=None, description="Why.")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_DOC)


@strawberry.input(
    description="Manual points correction (admin): a positive amount credits, a "
    "negative one debits (never below zero)."
)
class AdjustPointsInput:
    member_id: strawberry.ID = strawberry.field(description="The member.")
    amount: int = strawberry.field(description="Signed amount, not 0.")
    reason: str = strawberry.field(description="Why (shown in the member's history).")
    account: str = strawberry.field(default="points", description="points, growth, stored_value.")
    expires_at: datetime | None = strawberry.field(
        default=None, description="Credits only: lot expiry (default: the account's policy)."
    )
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_DOC)


@strawberry.input(
    description="Reserve points for a POS sale or an exchange; capture or release "
    "it later (each exactly once). Unresolved holds release themselves at expiry."
)
class HoldPointsInput:
    member_id: strawberry.ID = strawberry.field(description="The member.")
    amount: int = strawberry.field(description="Amount to reserve (> 0).")
    reason: str = strawberry.field(description="Why.")
    account: str = strawberry.field(default="points", description="A spendable account.")
    ttl_seconds: int = strawberry.field(default=900, description="Lifetime of the hold.")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_DOC)


@strawberry.input(description="Spend a hold (all of it, or part: the rest returns to the member).")
class CapturePointsHoldInput:
    hold_id: strawberry.ID = strawberry.field(description="The hold.")
    reason: str = strawberry.field(description="Why (shown in the history).")
    amount: int | None = strawberry.field(
        default=None, description="Amount to spend, ≤ the held amount; default all."
    )
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_DOC)


@strawberry.input(description="Give every held point back.")
class ReleasePointsHoldInput:
    hold_id: strawberry.ID = strawberry.field(description="The hold.")
    reason: str = strawberry.field(description="Why.")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_DOC)


@strawberry.input(description="Merge two members that are the same person (admin).")
class MergeMembersInput:
    survivor_id: strawberry.ID = strawberry.field(description="The member that remains.")
    loser_id: strawberry.ID = strawberry.field(description="The member merged away.")
    reason: str = strawberry.field(description="Why they are the same person.")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_DOC)


@strawberry.input(description="Undo a merge exactly (admin).")
class UnmergeMembersInput:
    merge_id: strawberry.ID = strawberry.field(description="The merge (Merge.id).")
    reason: str = strawberry.field(description="Why the merge was wrong.")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_DOC)

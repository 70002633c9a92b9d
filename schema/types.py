"""Object types of the API: members (ONE ID), their identities, balances, history and orders.

Design for speed (see PERFORMANCE.md): scalar fields are plain attributes; relations are sync
resolvers that return the loader's cached value when a parent primed it and a pending load
otherwise (:func:`schema.loaders.peek`). Types keep the request context as a private attribute so
resolvers need no ``Info`` argument, which graphql-core would otherwise build per field.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import strawberry
from strawberry import relay

from gateway import ledger, orders
from gateway.errors import InvalidInput
from gateway.members import IdentityRow, MemberRow, MergeInfo
from schema.context import RequestContext
from schema.coupons import MEMBER_COUPONS
from schema.enums import MergeStatus, OrderStatus, PointsHoldStatus
from schema.loaders import peek
from schema.mall import MEMBER_EXCHANGE_OPTIONS, MEMBER_REDEMPTIONS
from schema.relay import (
    Connection,
    build_connection,
    check_first,
    decode_cursor,
    decode_uuid_cursor,
    encode_cursor,
    global_id,
)
from schema.rules import MEMBER_GRANTS, MEMBER_TASKS, MEMBER_TIER, MEMBER_TIER_HISTORY
from schema.segments import MEMBER_SEGMENTS, MEMBER_TAGS

A = TypeVar("A")
B = TypeVar("B")

MAX_LATEST_ORDERS = 20
MAX_EXPIRY_WINDOW_DAYS = 3660


def node_id_field() -> Any:
    """The Relay ``id`` as a plain attribute holding the global id.

    ``relay.Node`` resolves ``id`` through a resolver that takes ``Info`` — per object, on every
    list item. Our nodes are built from rows whose uuid is known, so ``from_row``/``from_result``
    store the encoded global id once and the field resolves by attribute access (same SDL: the
    name and description are Node's).
    """
    return strawberry.field(name="id", description="The Globally Unique ID of this object")


def then(value: A | Awaitable[A], fn: Callable[[A], B]) -> B | Awaitable[B]:
    """Apply ``fn`` now when ``value`` is ready, or after awaiting it (keeps hot paths sync)."""
    if inspect.isawaitable(value):

        async def later() -> B:
            return fn(await value)  # type: ignore[misc]

        return later()
    return fn(value)  # type: ignore[arg-type]


@strawberry.enum(
    description="Lifecycle of a member record: ACTIVE (a current person) or MERGED (merged "
    "into another member, see `mergedInto`; kept for history)."
)
class MemberStatus(StrEnum):
    ACTIVE = "active"
    MERGED = "merged"


@strawberry.type(description="Where one profile field came from (provenance).")
class ProfileSource:
    field: str = strawberry.field(description="Profile field: name, gender, birthday or city.")
    value: str = strawberry.field(description="The value that channel reported.")
    channel: str = strawberry.field(description="Channel that reported it, e.g. tmall, wechat.")
    verified: bool = strawberry.field(
        description="True when the channel verified it (e.g. real-name check). Verified values "
        "win over unverified ones; otherwise the latest observation wins."
    )
    observed_at: datetime = strawberry.field(description="When the channel observed the value.")


@strawberry.type(description="A member's profile: the winning value of each field.")
class Profile:
    name: str | None = strawberry.field(description="Display name.")
    gender: str | None = strawberry.field(description="Gender as reported by a channel.")
    birthday: date | None = strawberry.field(description="Birthday (calendar date).")
    city: str | None = strawberry.field(description="City.")
    member_id: strawberry.Private[uuid.UUID]
    ctx: strawberry.Private[RequestContext]

    @strawberry.field(description="Provenance of each field: channel, verification, time.")
    def sources(self) -> list[ProfileSource]:
        return peek(self.ctx.loaders.attributes, self.member_id)  # type: ignore[return-value]


@strawberry.type(
    description="One identifier linked to a member (ONE ID). Only the masked form "
    "is ever shown; phones and emails are matched on keyed hashes."
)
class Identity:
    kind: str = strawberry.field(description="Identifier kind, see `identifierKinds`.")
    scope: str = strawberry.field(description="Platform scope (appid, shop, brand) or `*`.")
    display: str = strawberry.field(description="Masked display form, e.g. 138****0000.")
    channel: str = strawberry.field(description="Channel that first reported it.")
    strong: bool = strawberry.field(
        description="Strong identifiers identify one person and merge members that share them."
    )
    created_at: datetime = strawberry.field(description="When it was linked.")


@strawberry.type(
    description="Balance of one ledger account: points (积分), growth value (成长值) "
    "or stored value (fen)."
)
class Balance:
    account: str = strawberry.field(description="Account: points, growth or stored_value.")
    available: int = strawberry.field(description="Spendable now (expired lots excluded).")
    held: int = strawberry.field(description="Reserved by active holds (not spendable).")
    expiring: int = strawberry.field(
        description="Part of `available` that expires within the requested window."
    )
    next_expiry: datetime | None = strawberry.field(description="Earliest upcoming lot expiry.")


@strawberry.type(description="One line of the append-only ledger (积分流水).")
class PointsTransfer(relay.Node):
    id: relay.NodeID[uuid.UUID]
    _id: strawberry.ID = node_id_field()
    account: str = strawberry.field(description="Account: points, growth or stored_value.")
    kind: str = strawberry.field(
        description="What happened: earn, spend, adjust, reversal, expire, merge_in, ..."
    )
    amount: int = strawberry.field(
        description="Signed change of the member's total (positive: credit, negative: debit)."
    )
    reason: str = strawberry.field(description="Human-readable reason.")
    source: str = strawberry.field(description="Who wrote it: rules, api, merge, expiry, ...")
    source_ref: str | None = strawberry.field(description="Reference, e.g. the order id.")
    remaining: int | None = strawberry.field(
        description="For credits (lots): the part not yet spent or expired."
    )
    expires_at: datetime | None = strawberry.field(description="For credits: lot expiry.")
    shortfall: int = strawberry.field(
        description="For reversals: what could not be taken back because it was already spent."
    )
    created_at: datetime = strawberry.field(description="When it was written.")

    @classmethod
    def from_result(cls, r: ledger.TransferResult) -> PointsTransfer:
        return cls(
            id=r.id,
            _id=global_id("PointsTransfer", r.id),
            account=r.account,
            kind=r.kind,
            amount=r.amount,
            reason=r.reason,
            source=r.source,
            source_ref=r.source_ref,
            remaining=r.remaining,
            expires_at=r.expires_at,
            shortfall=r.shortfall,
            created_at=r.created_at,
        )


@strawberry.type(description="A two-phase reservation of points: hold → capture | release.")
class PointsHold(relay.Node):
    id: relay.NodeID[uuid.UUID]
    _id: strawberry.ID = node_id_field()
    account: str = strawberry.field(description="Account the points are held on.")
    amount: int = strawberry.field(description="Amount reserved.")
    captured: int = strawberry.field(description="Amount actually spent by the capture.")
    status: PointsHoldStatus = strawberry.field(description="Where the hold is in its life.")
    reason: str = strawberry.field(description="Reason given when the hold was placed.")
    expires_at: datetime = strawberry.field(description="When an active hold releases itself.")
    created_at: datetime = strawberry.field(description="When the hold was placed.")
    member_id: strawberry.Private[uuid.UUID]
    ctx: strawberry.Private[RequestContext]

    @strawberry.field(description="The member whose points are held.")
    def member(self) -> Member | None:
        return then(peek(self.ctx.loaders.member, self.member_id), self._wrap)  # type: ignore[return-value]

    def _wrap(self, row: MemberRow | None) -> Member | None:
        return None if row is None else Member.from_row(row, self.ctx)

    @classmethod
    def from_result(cls, h: ledger.HoldResult, ctx: RequestContext) -> PointsHold:
        return cls(
            id=h.id,
            _id=global_id("PointsHold", h.id),
            account=h.account,
            amount=h.amount,
            captured=h.captured,
            status=PointsHoldStatus(h.status),
            reason=h.reason,
            expires_at=h.expires_at,
            created_at=h.created_at,
            member_id=h.member_id,
            ctx=ctx,
        )


@strawberry.type(description="One line of an order.")
class OrderLine:
    line_no: int = strawberry.field(description="Position in the order, from 1.")
    sku: str = strawberry.field(description="Stock-keeping unit.")
    name: str = strawberry.field(description="Product name.")
    category: str | None = strawberry.field(description="Product category.")
    quantity: int = strawberry.field(description="Quantity (negative for return lines).")
    unit_price_fen: int = strawberry.field(description="Unit price in fen (分).")
    amount_fen: int = strawberry.field(description="Line amount in fen.")


@strawberry.type(
    description="An order from any channel, upserted idempotently by "
    "(channel, externalId). Money is integer fen (1 yuan = 100 fen)."
)
class Order(relay.Node):
    id: relay.NodeID[uuid.UUID]
    _id: strawberry.ID = node_id_field()
    channel: str = strawberry.field(description="Sales channel, e.g. tmall, jd, pos.")
    external_id: str = strawberry.field(description="The channel's order id.")
    status: OrderStatus = strawberry.field(description="Where the order is in its life.")
    total_fen: int = strawberry.field(description="Order total in fen.")
    paid_fen: int = strawberry.field(description="Amount paid in fen.")
    refunded_fen: int = strawberry.field(description="Amount refunded so far in fen.")
    store_code: str | None = strawberry.field(description="Store, for offline orders.")
    guide_code: str | None = strawberry.field(description="Shopping guide (导购) credited.")
    placed_at: datetime = strawberry.field(description="When the order was placed.")
    paid_at: datetime | None = strawberry.field(description="When it was paid.")
    member_id: strawberry.Private[uuid.UUID | None]
    ctx: strawberry.Private[RequestContext]

    @strawberry.field(description="Order lines.")
    def lines(self) -> list[OrderLine]:
        return peek(self.ctx.loaders.lines, self.id)  # type: ignore[return-value]

    @strawberry.field(description="The member the order belongs to, if known.")
    def member(self) -> Member | None:
        if self.member_id is None:
            return None
        return then(peek(self.ctx.loaders.member, self.member_id), self._wrap)  # type: ignore[return-value]

    def _wrap(self, row: MemberRow | None) -> Member | None:
        return None if row is None else Member.from_row(row, self.ctx)

    @classmethod
    def from_row(cls, o: orders.OrderRow, ctx: RequestContext) -> Order:
        return cls(
            id=o.id,
            _id=global_id("Order", o.id),
            channel=o.channel,
            external_id=o.external_id,
            status=OrderStatus(o.status),
            total_fen=o.total_fen,
            paid_fen=o.paid_fen,
            refunded_fen=o.refunded_fen,
            store_code=o.store_code,
            guide_code=o.guide_code,
            placed_at=o.placed_at,
            paid_at=o.paid_at,
            member_id=o.member_id,
            ctx=ctx,
        )


@strawberry.type(description="A merge of two members (ONE ID); `unmergeMembers` undoes it.")
class Merge:
    id: strawberry.ID = strawberry.field(description="Opaque id; pass it to unmergeMembers.")
    reason: str = strawberry.field(description="Why the members were merged.")
    status: MergeStatus = strawberry.field(description="MERGED, or UNMERGED once undone.")
    created_at: datetime = strawberry.field(description="When the merge happened.")
    undone_at: datetime | None = strawberry.field(description="When it was undone, if it was.")
    survivor_id: strawberry.Private[uuid.UUID]
    loser_id: strawberry.Private[uuid.UUID]
    ctx: strawberry.Private[RequestContext]

    @strawberry.field(description="The member that absorbed the other (the older one).")
    def survivor(self) -> Member | None:
        return then(peek(self.ctx.loaders.member, self.survivor_id), self._wrap)  # type: ignore[return-value]

    @strawberry.field(description="The member that was merged away.")
    def loser(self) -> Member | None:
        return then(peek(self.ctx.loaders.member, self.loser_id), self._wrap)  # type: ignore[return-value]

    def _wrap(self, row: MemberRow | None) -> Member | None:
        return None if row is None else Member.from_row(row, self.ctx)

    @classmethod
    def from_info(cls, m: MergeInfo, ctx: RequestContext) -> Merge:
        return cls(
            id=strawberry.ID(global_id("Merge", m.id)),
            reason=m.reason,
            status=MergeStatus(m.status),
            created_at=m.created_at,
            undone_at=m.undone_at,
            survivor_id=m.survivor_id,
            loser_id=m.loser_id,
            ctx=ctx,
        )


def _available(account: str) -> Callable[[list[ledger.BalanceView]], int]:
    def pick(balances: list[ledger.BalanceView]) -> int:
        for b in balances:
            if b.account == account:
                return b.available
        return 0

    return pick


def transfer_cursor(t: Any) -> str:
    return encode_cursor("transfer", f"{t.created_at.isoformat()}|{t.id}")


def decode_transfer_cursor(after: str | None) -> tuple[datetime, uuid.UUID] | None:
    value = decode_cursor("transfer", after)
    if value is None:
        return None
    try:
        ts, _, tid = value.partition("|")
        return datetime.fromisoformat(ts), uuid.UUID(tid)
    except ValueError as exc:
        raise InvalidInput("after is not a cursor from this connection", field="after") from exc


def order_cursor(o: Any) -> str:
    return encode_cursor("order", str(o.id))


@strawberry.type(
    description="A person across every channel (ONE ID): profile, identities, "
    "points (积分), growth value (成长值) and orders."
)
class Member(relay.Node):
    id: relay.NodeID[uuid.UUID]
    _id: strawberry.ID = node_id_field()
    status: MemberStatus = strawberry.field(description="active, or merged into another member.")
    created_at: datetime = strawberry.field(description="When the member was first seen.")
    updated_at: datetime = strawberry.field(description="Last change to the member record.")
    # Built with the member (a few attribute copies) so the field resolves by attribute access
    # instead of through a resolver call per member.
    profile: Profile = strawberry.field(
        description="Profile: the winning value per field, with provenance."
    )
    row: strawberry.Private[MemberRow]
    ctx: strawberry.Private[RequestContext]

    @classmethod
    def from_row(cls, row: MemberRow, ctx: RequestContext) -> Member:
        return cls(
            id=row.id,
            _id=global_id("Member", row.id),
            status=row.status,  # type: ignore[arg-type]
            created_at=row.created_at,
            updated_at=row.updated_at,
            profile=Profile(
                name=row.name,
                gender=row.gender,
                birthday=row.birthday,
                city=row.city,
                member_id=row.id,
                ctx=ctx,
            ),
            row=row,
            ctx=ctx,
        )

    def _wrap(self, row: MemberRow | None) -> Member | None:
        return None if row is None else Member.from_row(row, self.ctx)

    @strawberry.field(description="For a merged member: the member it was merged into.")
    def merged_into(self) -> Member | None:
        if self.row.merged_into is None:
            return None
        return then(peek(self.ctx.loaders.member, self.row.merged_into), self._wrap)  # type: ignore[return-value]

    @strawberry.field(description="Identifiers linked to this member (masked).")
    def identities(self) -> list[Identity]:
        return peek(self.ctx.loaders.identities, self.id)  # type: ignore[return-value]

    @strawberry.field(description="One balance per ledger account (points, growth, stored_value).")
    def balances(
        self,
        expiring_within_days: Annotated[
            int, strawberry.argument(description="Window for `expiring`, in days (0-3660).")
        ] = 30,
    ) -> list[Balance]:
        if not 0 <= expiring_within_days <= MAX_EXPIRY_WINDOW_DAYS:
            raise InvalidInput(
                f"expiringWithinDays must be between 0 and {MAX_EXPIRY_WINDOW_DAYS}",
                field="expiringWithinDays",
            )
        return peek(self.ctx.loaders.balances(expiring_within_days), self.id)  # type: ignore[return-value]

    @strawberry.field(description="Available points (积分): shortcut for balances → points.")
    def points(self) -> int:
        return then(peek(self.ctx.loaders.balances(30), self.id), _available("points"))  # type: ignore[return-value]

    @strawberry.field(
        description="Available growth value (成长值): shortcut for balances → growth."
    )
    def growth(self) -> int:
        return then(peek(self.ctx.loaders.balances(30), self.id), _available("growth"))  # type: ignore[return-value]

    @strawberry.field(description="Ledger history, newest first (keyset-paginated, ≤ 100 a page).")
    def points_history(
        self,
        account: Annotated[
            str | None,
            strawberry.argument(description="Account to list; null lists every account."),
        ] = "points",
        first: Annotated[int, strawberry.argument(description="Page size, 0-100.")] = 20,
        after: Annotated[
            str | None, strawberry.argument(description="endCursor of the previous page.")
        ] = None,
    ) -> Connection[PointsTransfer]:
        check_first(first)
        before = decode_transfer_cursor(after)
        if account is not None and account not in ledger.ACCOUNTS:
            raise InvalidInput(f"unknown account {account!r}", field="account")
        if first == 0:
            return build_connection(
                [],
                0,
                wrap=PointsTransfer.from_result,
                cursor_of=transfer_cursor,
                has_previous=after is not None,
            )
        loader = self.ctx.loaders.history(account, first, before)
        return then(  # type: ignore[return-value]
            peek(loader, self.id),
            lambda rows: build_connection(
                rows,
                first,
                wrap=PointsTransfer.from_result,  # type: ignore[arg-type]
                cursor_of=transfer_cursor,
                has_previous=after is not None,
            ),
        )

    @strawberry.field(
        description="Orders, newest first (keyset-paginated, ≤ 100 a page). In a "
        "list of members prefer `latestOrders`, which is batched."
    )
    async def orders(
        self,
        first: Annotated[int, strawberry.argument(description="Page size, 0-100.")] = 20,
        after: Annotated[
            str | None, strawberry.argument(description="endCursor of the previous page.")
        ] = None,
    ) -> Connection[Order]:
        check_first(first)
        cursor = decode_uuid_cursor("order", after)
        rows = await self.ctx.read(orders.orders_page, self.id, first=first, after=cursor)
        ctx = self.ctx
        return build_connection(
            rows,
            first,
            wrap=lambda o: Order.from_row(o, ctx),  # type: ignore[arg-type]
            cursor_of=order_cursor,
            has_previous=after is not None,
        )

    @strawberry.field(description="The most recent orders, newest first (batched across members).")
    def latest_orders(
        self, limit: Annotated[int, strawberry.argument(description="How many, 0-20.")] = 5
    ) -> list[Order]:
        if not 0 <= limit <= MAX_LATEST_ORDERS:
            raise InvalidInput(f"limit must be between 0 and {MAX_LATEST_ORDERS}", field="limit")
        if limit == 0:
            return []
        ctx = self.ctx
        return then(  # type: ignore[return-value]
            peek(ctx.loaders.latest_orders(limit), self.id),
            lambda rows: [Order.from_row(o, ctx) for o in rows],
        )

    @strawberry.field(description="Merges this member took part in (as survivor or loser).")
    def merges(self) -> list[Merge]:
        ctx = self.ctx
        return then(  # type: ignore[return-value]
            peek(ctx.loaders.merges, self.id),
            lambda infos: [Merge.from_info(m, ctx) for m in infos],
        )

    # Tier, tasks and grants (schema/rules.py); the points mall (schema/mall.py).
    tier = MEMBER_TIER
    tier_history = MEMBER_TIER_HISTORY
    tasks = MEMBER_TASKS
    grants = MEMBER_GRANTS
    coupons = MEMBER_COUPONS  # schema/coupons.py
    exchange_options = MEMBER_EXCHANGE_OPTIONS
    redemptions = MEMBER_REDEMPTIONS
    # Tags and segments (schema/segments.py).
    tags = MEMBER_TAGS
    segments = MEMBER_SEGMENTS


@strawberry.type(description="The brand (tenant) the API key belongs to.")
class Tenant:
    slug: str = strawberry.field(description="URL-safe short name.")
    name: str = strawberry.field(description="Brand name.")
    timezone: str = strawberry.field(description="IANA timezone for calendar notions.")
    currency: str = strawberry.field(description="ISO 4217 currency, e.g. CNY.")


@strawberry.type(description="Who is calling: the tenant and the API key's scopes.")
class Viewer:
    tenant: Tenant = strawberry.field(description="The brand this key belongs to.")
    scopes: list[str] = strawberry.field(description="Scopes: admin, read, pos, connector.")


@strawberry.type(description="An identifier kind accepted by upsertMember and memberByIdentifier.")
class IdentifierKind:
    name: str = strawberry.field(description="Kind name, e.g. phone, wechat_unionid.")
    strong: bool = strawberry.field(description="Strong kinds merge members that share them.")
    pii: bool = strawberry.field(description="Personal data: stored only as a keyed hash.")
    is_global: bool = strawberry.field(
        name="global", description="Global kinds use scope `*`; others need a platform scope."
    )
    description: str = strawberry.field(description="What the identifier is.")


__all__ = [
    "Balance",
    "Identity",
    "IdentityRow",
    "Member",
    "Merge",
    "Order",
    "OrderLine",
    "PointsHold",
    "PointsTransfer",
    "Profile",
    "ProfileSource",
    "Tenant",
    "Viewer",
]

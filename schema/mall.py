"""GraphQL for the points mall (积分商城): the catalog, a member's exchange options and
redemptions, and ``redeemReward`` / ``confirmRedemptionPayment`` / ``cancelRedemption``.

The service is :mod:`gateway.mall.service`; this module only maps it. Wiring is the mixin pattern
of :mod:`schema.sync`: ``Member`` gets :data:`MEMBER_EXCHANGE_OPTIONS` and
:data:`MEMBER_REDEMPTIONS` (attached in ``schema/types.py``), ``Query`` mixes in
:class:`MallQueries`, ``Mutation`` mixes in :class:`MallMutations`.

Exchange options price every mode for one member (tier prices, exchange rule sets, limits, stock,
points) and are read per member: ask for them on one member, not on a list of 100. The normal way
to complete a points + cash or cash exchange is the brand payment service's signed HTTP callback
(``POST /mall/{tenant}/payments``); ``confirmRedemptionPayment`` is the same step for admin and
POS keys.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from sqlalchemy import select
from strawberry import relay
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from gateway import idempotency
from gateway.errors import NotFound
from gateway.mall import service as mall
from gateway.mall.catalog import MODES, Reward
from gateway.storage.db import Tx
from gateway.storage.tables import MemberGrant
from gateway.tenancy import Scope
from schema.context import RequestContext, ctx_of
from schema.errors import (
    Error,
    InsufficientBalanceError,
    InvalidTransitionError,
    NotEligibleError,
)
from schema.inputs import IDEMPOTENCY_DOC
from schema.loaders import peek
from schema.relay import check_first, decode_id, global_id
from schema.rules import (
    COMMON,
    MemberRef,
    MemberRewardGrant,
    Result,
    active_config,
    grant_from_row,
    member_ref,
    resolve_member,
    result_union,
    run_mutation,
    without_key,
)

if TYPE_CHECKING:
    from schema.types import PointsHold

G: Any = MemberGrant.__table__  # type: ignore[attr-defined]
MAX_REDEMPTIONS = 100

PointsHoldRef = Annotated["PointsHold", strawberry.lazy("schema.types")]


@strawberry.enum(
    description="How a reward is paid: POINTS only, POINTS_CASH (points plus a cash part) or "
    "CASH only. Cash parts are paid through the brand's payment service."
)
class ExchangeMode(StrEnum):
    POINTS = "points"
    POINTS_CASH = "points_cash"
    CASH = "cash"


@strawberry.enum(
    description="Where a redemption is: AWAITING_PAYMENT (points held, stock taken, cash part "
    "unpaid) → COMPLETED (points spent, grant issued) | CANCELLED | EXPIRED (payment window "
    "passed; points and stock returned). All-points exchanges complete at once."
)
class RedemptionStatus(StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


# ---- catalog -------------------------------------------------------------------------------


@strawberry.type(description="A price for one tier (overrides the base price of a mode).")
class TierPrice:
    tier: str = strawberry.field(description="Tier code.")
    points: int = strawberry.field(description="Points per unit.")
    cash_fen: int = strawberry.field(description="Cash per unit in fen.")


@strawberry.type(description="One exchange mode of a catalog reward and its base price.")
class RewardPrice:
    mode: ExchangeMode = strawberry.field(description="The exchange mode.")
    points: int = strawberry.field(description="Points per unit.")
    cash_fen: int = strawberry.field(description="Cash per unit in fen.")
    tier_prices: list[TierPrice] = strawberry.field(description="Prices for particular tiers.")


@strawberry.type(
    name="Reward",
    description="A reward in the tenant's points-mall catalog (part of the rule config).",
)
class CatalogReward:
    code: str = strawberry.field(description="Stable code; what redemptions refer to.")
    title: str = strawberry.field(description="Display title.")
    description: str = strawberry.field(description="Longer text (may be empty).")
    kind: str = strawberry.field(description="Reward kind: coupon, gift, physical, …")
    item: str = strawberry.field(description="The fulfilling system's code (coupon template).")
    stock: int | None = strawberry.field(description="Units in total (null: unlimited).")
    per_member: int | None = strawberry.field(description="Units per member, ever.")
    per_period: int | None = strawberry.field(description="Units per member per `period`.")
    period: str = strawberry.field(description="day, week, month or year (tenant time).")
    valid_from: datetime | None = strawberry.field(description="Exchangeable from.")
    valid_until: datetime | None = strawberry.field(description="Exchangeable until.")
    tiers: list[str] | None = strawberry.field(
        description="Only members of these tiers may exchange it (null: everyone)."
    )
    options: list[RewardPrice] = strawberry.field(description="Exchange modes and base prices.")


def _catalog_reward(r: Reward) -> CatalogReward:
    return CatalogReward(
        code=r.code,
        title=r.title,
        description=r.description,
        kind=r.kind,
        item=r.item,
        stock=r.stock,
        per_member=r.per_member,
        per_period=r.per_period,
        period=r.period,
        valid_from=r.valid_from,
        valid_until=r.valid_until,
        tiers=None if r.tiers is None else list(r.tiers),
        options=[
            RewardPrice(
                mode=ExchangeMode(mode),
                points=r.options[mode].points,
                cash_fen=r.options[mode].cash_fen,
                tier_prices=[
                    TierPrice(tier=t, points=p, cash_fen=c)
                    for t, (p, c) in r.options[mode].tier_prices.items()
                ],
            )
            for mode in MODES
            if mode in r.options
        ],
    )


# ---- a member's offers ---------------------------------------------------------------------


@strawberry.type(description="One exchange mode of a reward, priced for one member.")
class ExchangeOption:
    mode: ExchangeMode = strawberry.field(description="The exchange mode.")
    points: int = strawberry.field(description="Points per unit for this member.")
    cash_fen: int = strawberry.field(description="Cash per unit in fen for this member.")
    eligible: bool = strawberry.field(description="The member may exchange one unit now.")
    reason: str | None = strawberry.field(
        description="Why not, as a stable code: OUT_OF_STOCK, NOT_STARTED, ENDED, "
        "TIER_NOT_ALLOWED, MEMBER_LIMIT, PERIOD_LIMIT, INSUFFICIENT_POINTS, RULE."
    )
    message: str | None = strawberry.field(description="Why not, in words (English).")
    rule_set: str | None = strawberry.field(
        description="The exchange rule set that repriced or refused it, if any."
    )


@strawberry.type(description="A catalog reward as one member can exchange it.")
class RewardOffer:
    reward: CatalogReward = strawberry.field(description="The catalog reward.")
    stock_left: int | None = strawberry.field(description="Units left (null: unlimited).")
    member_remaining: int | None = strawberry.field(
        description="Units this member may still exchange under its limits (null: no limit)."
    )
    options: list[ExchangeOption] = strawberry.field(
        description="Each mode with this member's price and eligibility."
    )

    @strawberry.field(description="At least one mode is eligible now.")
    def available(self) -> bool:
        return any(o.eligible for o in self.options)


def _offer(o: mall.RewardOffer) -> RewardOffer:
    return RewardOffer(
        reward=_catalog_reward(o.reward),
        stock_left=o.stock_left,
        member_remaining=o.member_remaining,
        options=[
            ExchangeOption(
                mode=ExchangeMode(x.mode),
                points=x.points,
                cash_fen=x.cash_fen,
                eligible=x.eligible,
                reason=x.reason,
                message=x.message,
                rule_set=x.rule,
            )
            for x in o.options
        ],
    )


# ---- redemptions ---------------------------------------------------------------------------


@strawberry.type(
    description="One exchange in the points mall (积分兑换). `points` and `cashFen` are totals "
    "for the quantity."
)
class Redemption(relay.Node):
    id: relay.NodeID[uuid.UUID]
    _id: strawberry.ID = strawberry.field(
        name="id", description="The Globally Unique ID of this object"
    )
    reward: str = strawberry.field(description="The catalog reward's code.")
    mode: ExchangeMode = strawberry.field(description="The exchange mode.")
    quantity: int = strawberry.field(description="Units exchanged.")
    points: int = strawberry.field(description="Points in total (held, then spent).")
    cash_fen: int = strawberry.field(description="Cash part in total, in fen.")
    status: RedemptionStatus = strawberry.field(description="Where it is.")
    payment_ref: str | None = strawberry.field(
        description="The payment service's reference for the cash part, once paid."
    )
    created_at: datetime = strawberry.field(description="When it was made.")
    expires_at: datetime | None = strawberry.field(
        description="Awaiting payment: when the payment window closes."
    )
    resolved_at: datetime | None = strawberry.field(
        description="When it completed, was cancelled or expired."
    )
    member_id: strawberry.Private[uuid.UUID]
    hold_id: strawberry.Private[uuid.UUID | None]
    grant_id: strawberry.Private[uuid.UUID | None]
    ctx: strawberry.Private[RequestContext]

    @strawberry.field(description="The member (a merged member's survivor follows).")
    def member(self) -> MemberRef | None:
        return member_ref(self.ctx, self.member_id)

    @strawberry.field(description="The points hold behind it (null when no points are involved).")
    async def points_hold(self) -> PointsHoldRef | None:
        if self.hold_id is None:
            return None
        from schema.types import PointsHold

        h = await self.ctx.loaders.hold.load(self.hold_id)
        return None if h is None else PointsHold.from_result(h, self.ctx)

    @strawberry.field(description="The grant it issued once completed (what gets fulfilled).")
    def grant(self) -> MemberRewardGrant | None:
        if self.grant_id is None:
            return None
        return peek(grant_loader(self.ctx), self.grant_id)  # type: ignore[return-value]

    @classmethod
    def from_result(cls, r: mall.Redemption, ctx: RequestContext) -> Redemption:
        return cls(
            id=r.id,
            _id=strawberry.ID(global_id("Redemption", r.id)),
            reward=r.reward,
            mode=ExchangeMode(r.mode),
            quantity=r.quantity,
            points=r.points,
            cash_fen=r.cash_fen,
            status=RedemptionStatus(r.status),
            payment_ref=r.payment_ref,
            created_at=r.created_at,
            expires_at=r.expires_at,
            resolved_at=r.resolved_at,
            member_id=r.member_id,
            hold_id=r.hold_id,
            grant_id=r.grant_id,
            ctx=ctx,
        )


_UUID_FIELDS = frozenset({"id", "member_id", "hold_id", "grant_id"})
_TIME_FIELDS = frozenset({"created_at", "expires_at", "resolved_at"})


def _dump(r: mall.Redemption) -> dict[str, Any]:
    """A redemption as plain JSON (stored with an idempotency key; dry runs exist only here)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(r):
        v = getattr(r, f.name)
        out[f.name] = (
            str(v) if isinstance(v, uuid.UUID) else v.isoformat() if isinstance(v, datetime) else v
        )
    return out


def _load(d: Mapping[str, Any]) -> mall.Redemption:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(mall.Redemption):
        if f.name not in d:
            continue
        v = d[f.name]
        if v is not None and f.name in _UUID_FIELDS:
            v = uuid.UUID(v)
        elif v is not None and f.name in _TIME_FIELDS:
            v = datetime.fromisoformat(v)
        kwargs[f.name] = v
    return mall.Redemption(**kwargs)


# ---- loaders -------------------------------------------------------------------------------


def redemption_loader(ctx: RequestContext) -> DataLoader[uuid.UUID, mall.Redemption | None]:
    def factory(c: RequestContext) -> DataLoader[uuid.UUID, mall.Redemption | None]:
        async def load(keys: list[uuid.UUID]) -> list[mall.Redemption | None]:
            found = await c.read(mall.get_redemptions, keys)
            return [found.get(k) for k in keys]

        return DataLoader(load)

    return ctx.loaders.named("mall:redemption", factory)


async def _grants_by_id(tx: Tx, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
    rows = await tx.conn.execute(
        select(G).where(G.c.tenant_id == tx.tenant_id, G.c.id.in_(list(ids)))
    )
    return {r.id: r for r in rows}


def grant_loader(ctx: RequestContext) -> DataLoader[uuid.UUID, MemberRewardGrant | None]:
    def factory(c: RequestContext) -> DataLoader[uuid.UUID, MemberRewardGrant | None]:
        async def load(keys: list[uuid.UUID]) -> list[MemberRewardGrant | None]:
            found = await c.read(_grants_by_id, keys)
            return [None if k not in found else grant_from_row(found[k]) for k in keys]

        return DataLoader(load)

    return ctx.loaders.named("mall:grant", factory)


async def redemption_by_id(ctx: RequestContext, rid: uuid.UUID) -> Redemption | None:
    r = await redemption_loader(ctx).load(rid)
    return None if r is None else Redemption.from_result(r, ctx)


# ---- Member fields (attached to ``Member`` in schema/types.py) ------------------------------


async def _member_exchange_options(
    root: Any,
    reward: Annotated[
        str | None, strawberry.argument(description="Only this reward code (default: all).")
    ] = None,
) -> list[RewardOffer]:
    ctx: RequestContext = root.ctx
    offers = await ctx.read(mall.offers, root.id, registry=ctx.hub.rules, reward=reward)
    return [_offer(o) for o in offers]


async def _member_redemptions(
    root: Any,
    first: Annotated[int, strawberry.argument(description="How many, newest first, 1-100.")] = 20,
) -> list[Redemption]:
    check_first(first, maximum=MAX_REDEMPTIONS)
    if first == 0:
        return []
    ctx: RequestContext = root.ctx
    rows = await ctx.read(mall.redemptions_for, root.id, limit=first)
    return [Redemption.from_result(r, ctx) for r in rows]


MEMBER_EXCHANGE_OPTIONS: Any = strawberry.field(
    resolver=_member_exchange_options,
    description="The points-mall catalog priced for this member: every mode of every reward "
    "with its points / cash price, whether the member may exchange it now and why not. "
    "Read per member (not batched): ask on one member, not on a list.",
)
MEMBER_REDEMPTIONS: Any = strawberry.field(
    resolver=_member_redemptions,
    description="The member's points-mall redemptions, newest first (including those made "
    "under ids since merged into it).",
)


# ---- root queries --------------------------------------------------------------------------


@strawberry.type
class MallQueries:
    @strawberry.field(
        description="The tenant's points-mall catalog (empty when its rule config has none). "
        "Use Member.exchangeOptions for prices and eligibility of one member."
    )
    async def rewards(self, info: Info) -> list[CatalogReward]:
        ctx = ctx_of(info)
        ctx.require(Scope.READ)
        cfg, _ = await active_config(ctx)
        if cfg.mall is None:
            return []
        return [_catalog_reward(r) for r in cfg.mall.rewards.values()]

    @strawberry.field(description="A points-mall redemption by id.")
    async def redemption(self, info: Info, id: strawberry.ID) -> Redemption | None:
        ctx = ctx_of(info)
        ctx.require(Scope.READ)
        rid = decode_id(id, "Redemption")
        return None if rid is None else await redemption_by_id(ctx, rid)


# ---- inputs and payloads -------------------------------------------------------------------


@strawberry.input(
    description="Exchange units of a catalog reward for a member. All-points exchanges complete "
    "at once; with a cash part the points are held until the payment is confirmed."
)
class RedeemRewardInput:
    member_id: strawberry.ID = strawberry.field(description="The member.")
    reward: str = strawberry.field(description="The catalog reward's code.")
    mode: ExchangeMode = strawberry.field(description="The exchange mode (one the reward offers).")
    quantity: int = strawberry.field(default=1, description="Units, 1-100.")
    idempotency_key: str | None = strawberry.field(
        default=None,
        description=IDEMPOTENCY_DOC + " Strongly recommended: a retry then never redeems twice.",
    )
    dry_run: bool = strawberry.field(
        default=False,
        description="Check price, limits, stock and balance and report the redemption that "
        "would be made, without making it (the idempotencyKey is not used up).",
    )


@strawberry.input(
    description="The cash part of a redemption was paid (normally reported by the payment "
    "service's signed callback)."
)
class ConfirmRedemptionPaymentInput:
    redemption_id: strawberry.ID = strawberry.field(description="The redemption.")
    payment_ref: str = strawberry.field(
        description="The payment service's reference (a replay with the same one is a no-op)."
    )
    amount_fen: int = strawberry.field(description="Amount paid in fen; must equal cashFen.")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_DOC)


@strawberry.input(description="Give up a redemption awaiting payment: points and stock go back.")
class CancelRedemptionInput:
    redemption_id: strawberry.ID = strawberry.field(description="The redemption.")
    reason: str = strawberry.field(description="Why (kept on the points release).")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_DOC)


@strawberry.type(description="A redemption after redeeming, paying or cancelling.")
class RedemptionPayload:
    dry_run: bool = strawberry.field(description="Nothing was written (a dry run).")
    replayed: bool = strawberry.field(
        description="The request was a repeat: the redemption is the one made (or paid, or "
        "cancelled) before, in its current state."
    )
    redemption: Redemption = strawberry.field(
        description="The redemption (for a dry run: as it would have been made)."
    )
    member_id: strawberry.Private[uuid.UUID]
    ctx: strawberry.Private[RequestContext]

    @strawberry.field(description="The member, with fresh balances.")
    def member(self) -> MemberRef | None:
        return member_ref(self.ctx, self.member_id)


REDEEM_ERRORS = (*COMMON, NotEligibleError, InsufficientBalanceError, InvalidTransitionError)
RESOLVE_ERRORS = (*COMMON, InvalidTransitionError)
RedeemRewardResult = result_union(
    "RedeemRewardResult",
    RedemptionPayload,
    REDEEM_ERRORS,
    "redeemReward result (NotEligibleError.reason says why the member may not have it).",
)
ConfirmRedemptionPaymentResult = result_union(
    "ConfirmRedemptionPaymentResult",
    RedemptionPayload,
    RESOLVE_ERRORS,
    "confirmRedemptionPayment result (InvalidTransitionError: cancelled, expired or paid by "
    "another payment — refund it).",
)
CancelRedemptionResult = result_union(
    "CancelRedemptionResult",
    RedemptionPayload,
    RESOLVE_ERRORS,
    "cancelRedemption result (InvalidTransitionError: it was completed).",
)

MALL = (Scope.POS,)


def _redemption_id(raw: object) -> uuid.UUID:
    rid = decode_id(raw, "Redemption")
    if rid is None:
        raise NotFound("no Redemption with this id", field="redemptionId")
    return rid


def _result(r: mall.Redemption, *, dry_run: bool = False) -> Result:
    return {"typename": "RedemptionPayload", "dry_run": dry_run, "redemption": _dump(r)}


async def _payload(ctx: RequestContext, r: Result) -> RedemptionPayload:
    """First answer and replay alike: a real redemption is re-read (its current state); a dry
    run's exists only in the stored result."""
    stored = _load(r["redemption"])
    current = None if r["dry_run"] else await redemption_loader(ctx).load(stored.id)
    shown = stored if current is None else current
    return RedemptionPayload(
        dry_run=bool(r["dry_run"]),
        replayed=stored.replayed,
        redemption=Redemption.from_result(shown, ctx),
        member_id=shown.member_id,
        ctx=ctx,
    )


# ---- mutations -----------------------------------------------------------------------------


@strawberry.type
class MallMutations:
    @strawberry.mutation(
        description="Exchange a catalog reward for a member in one mode (POINTS, POINTS_CASH, "
        "CASH): checks validity window, tier, limits, stock and points; all-points completes "
        "at once, otherwise the points are held until confirmRedemptionPayment (or the "
        "payment callback). Scopes: admin, pos."
    )
    async def redeem_reward(self, info: Info, input: RedeemRewardInput) -> RedeemRewardResult:
        ctx = ctx_of(info)

        async def execute(tx: Tx, _ledger_key: str) -> Result:
            member_id = await resolve_member(tx, input.member_id, "memberId")
            r = await mall.redeem(
                tx,
                member_id=member_id,
                reward=input.reward,
                mode=input.mode.value,
                quantity=input.quantity,
                # The same key with or without dryRun names the same redemption.
                idem_key=idempotency.ledger_key("redeemReward", input.idempotency_key),
                registry=ctx.hub.rules,
                dry_run=input.dry_run,
            )
            return _result(r, dry_run=input.dry_run)

        ctx, r = await run_mutation(
            info,
            operation="redeemReward",
            scopes=MALL,
            inp=without_key(input) if input.dry_run else input,
            execute=execute,
            allowed=REDEEM_ERRORS,
        )
        return r if isinstance(r, Error) else await _payload(ctx, r)

    @strawberry.mutation(
        description="Record that the cash part of a redemption was paid: the held points are "
        "spent and the grant issued. The payment service's signed callback "
        "(POST /mall/{tenant}/payments) is the normal path. Scopes: admin, pos."
    )
    async def confirm_redemption_payment(
        self, info: Info, input: ConfirmRedemptionPaymentInput
    ) -> ConfirmRedemptionPaymentResult:
        async def execute(tx: Tx, _ledger_key: str) -> Result:
            r = await mall.confirm_payment(
                tx,
                redemption_id=_redemption_id(input.redemption_id),
                payment_ref=input.payment_ref,
                amount_fen=input.amount_fen,
            )
            return _result(r)

        ctx, r = await run_mutation(
            info,
            operation="confirmRedemptionPayment",
            scopes=MALL,
            inp=input,
            execute=execute,
            allowed=RESOLVE_ERRORS,
        )
        return r if isinstance(r, Error) else await _payload(ctx, r)

    @strawberry.mutation(
        description="Cancel a redemption awaiting payment: stock back, held points released. "
        "Cancelling again changes nothing; a completed one cannot be cancelled. Scopes: admin, "
        "pos."
    )
    async def cancel_redemption(
        self, info: Info, input: CancelRedemptionInput
    ) -> CancelRedemptionResult:
        async def execute(tx: Tx, _ledger_key: str) -> Result:
            r = await mall.cancel(
                tx, redemption_id=_redemption_id(input.redemption_id), reason=input.reason
            )
            return _result(r)

        ctx, r = await run_mutation(
            info,
            operation="cancelRedemption",
            scopes=MALL,
            inp=input,
            execute=execute,
            allowed=RESOLVE_ERRORS,
        )
        return r if isinstance(r, Error) else await _payload(ctx, r)


__all__ = [
    "MEMBER_EXCHANGE_OPTIONS",
    "MEMBER_REDEMPTIONS",
    "MallMutations",
    "MallQueries",
    "Redemption",
    "redemption_by_id",
]

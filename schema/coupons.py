"""GraphQL for coupons (issue #5 scope 1): templates and issuance (admin), validation and
redemption against an order at the till (pos).

Idempotency lives in the domain: ``issueCoupon`` and ``redeemCoupon`` carry their own keys (and a
coupon redeemed again for the same order answers the original discount), so a retried request is
safe without the generic idempotency store. Another tenant's code is indistinguishable from a
missing one (``CouponNotEligibleError`` with reason ``NOT_FOUND``). Every refusal of the coupon
system is one type, ``CouponNotEligibleError { reason }``, whose ``reason`` enum lists them all
(:data:`gateway.coupons.REASONS`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from gateway import coupons
from gateway.coupons import reads as coupon_reads
from gateway.errors import DomainError, NotEligible, NotFound
from gateway.storage.types import utcnow
from gateway.tenancy import Scope
from schema.context import RequestContext, ctx_of
from schema.errors import (
    Error,
    IdempotencyKeyReusedError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    PermissionDeniedError,
    allowed_error,
)
from schema.loaders import peek
from schema.relay import check_first, decode_id, global_id
from schema.rules import _actor, resolve_member, result_union

log = logging.getLogger(__name__)


@strawberry.enum(
    description="What a coupon gives: AMOUNT_OFF (offFen once thresholdFen is reached), "
    "PERCENT_OFF (percent, at most capFen), GIFT (a giftSku), SHIPPING (the order's shipping)."
)
class CouponKind(StrEnum):
    AMOUNT_OFF = "amount_off"
    PERCENT_OFF = "percent_off"
    GIFT = "gift"
    SHIPPING = "shipping"


@strawberry.enum(
    description="FIXED: valid from startsAt to endsAt; RELATIVE: validDays from issue."
)
class CouponValidity(StrEnum):
    FIXED = "fixed"
    RELATIVE = "relative"


@strawberry.enum(description="ISSUED (usable), REDEEMED (used on an order), EXPIRED, VOID.")
class CouponStatus(StrEnum):
    ISSUED = "issued"
    REDEEMED = "redeemed"
    EXPIRED = "expired"
    VOID = "void"


@strawberry.enum(
    description="Why a coupon cannot be issued, used or given back (CouponNotEligibleError). "
    "Issuing: INACTIVE (template not being issued), EXPIRED (its fixed window is over), "
    "MEMBER_LIMIT, TOTAL_LIMIT. Validating and redeeming: NOT_FOUND (no such code in this "
    "brand), EXPIRED, NOT_STARTED, VOID, WRONG_CHANNEL, WRONG_STORE, CATEGORY_NOT_COVERED, "
    "THRESHOLD_NOT_MET, ALREADY_REDEEMED, NOT_YOURS, NOT_STACKABLE. Returning on refund: "
    "NOT_RETURNABLE."
)
class CouponRefusal(StrEnum):
    NOT_FOUND = "NOT_FOUND"
    EXPIRED = "EXPIRED"
    NOT_STARTED = "NOT_STARTED"
    WRONG_CHANNEL = "WRONG_CHANNEL"
    WRONG_STORE = "WRONG_STORE"
    THRESHOLD_NOT_MET = "THRESHOLD_NOT_MET"
    ALREADY_REDEEMED = "ALREADY_REDEEMED"
    NOT_YOURS = "NOT_YOURS"
    CATEGORY_NOT_COVERED = "CATEGORY_NOT_COVERED"
    VOID = "VOID"
    NOT_STACKABLE = "NOT_STACKABLE"
    NOT_RETURNABLE = "NOT_RETURNABLE"
    INACTIVE = "INACTIVE"
    TOTAL_LIMIT = "TOTAL_LIMIT"
    MEMBER_LIMIT = "MEMBER_LIMIT"


assert {r.value for r in CouponRefusal} == set(coupons.REASONS)


@strawberry.type(
    description="The coupon cannot be issued, used or given back; `reason` says why (code "
    "NOT_ELIGIBLE). Nothing was written."
)
class CouponNotEligibleError(Error):
    reason: CouponRefusal = strawberry.field(description="Why, as a stable code.")


@strawberry.type(description="Redemptions on one channel or in one store.")
class CouponStatsSlice:
    key: str | None = strawberry.field(
        description="The channel (byChannel) or store code (byStore; null: orders without a store)."
    )
    redeemed: int = strawberry.field(description="Coupons redeemed there.")
    orders: int = strawberry.field(description="Distinct orders they were used on.")
    revenue_fen: int = strawberry.field(
        description="Sum of those orders' totals before discounts, each order once."
    )
    discount_fen: int = strawberry.field(description="What the coupons took off.")


@strawberry.type(
    description="Figures of one coupon template, optionally for a window [from, to). A coupon "
    "given back on refund is not redeemed (nor is its order counted)."
)
class CouponStats:
    issued: int = strawberry.field(description="Coupons issued (issuedAt in the window).")
    redeemed: int = strawberry.field(
        description="Coupons currently redeemed (redeemedAt in the window)."
    )
    redemption_rate: float = strawberry.field(
        description="redeemed / issued of the window (0 when none were issued; a window's "
        "rate can exceed 1 when earlier coupons are redeemed in it)."
    )
    expired: int = strawberry.field(
        description="Unused coupons that ended (validUntil in the window): swept by the "
        "expiry job, or past their end and not swept yet."
    )
    orders: int = strawberry.field(description="Distinct orders the redeemed coupons drove.")
    revenue_fen: int = strawberry.field(
        description="Sum of those orders' totals before discounts (each order once)."
    )
    discount_fen: int = strawberry.field(description="What the redeemed coupons took off.")
    by_channel: list[CouponStatsSlice] = strawberry.field(
        description="Redemption figures per channel."
    )
    by_store: list[CouponStatsSlice] = strawberry.field(
        description="Redemption figures per store (key null: orders without a store)."
    )


def _stats(st: coupons.TemplateStats) -> CouponStats:
    def slices(items: list[coupons.Slice]) -> list[CouponStatsSlice]:
        return [
            CouponStatsSlice(
                key=x.key,
                redeemed=x.redeemed,
                orders=x.orders,
                revenue_fen=x.revenue_fen,
                discount_fen=x.discount_fen,
            )
            for x in items
        ]

    return CouponStats(
        issued=st.issued,
        redeemed=st.redeemed,
        redemption_rate=st.redemption_rate,
        expired=st.expired,
        orders=st.orders,
        revenue_fen=st.revenue_fen,
        discount_fen=st.discount_fen,
        by_channel=slices(st.by_channel),
        by_store=slices(st.by_store),
    )


@strawberry.type(description="A kind of coupon the brand issues.")
class CouponTemplate:
    row: strawberry.Private[coupons.Template]

    @strawberry.field(description="Global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(global_id("CouponTemplate", self.row.id))

    @strawberry.field(description="The brand's code for the template (unique per brand).")
    def code(self) -> str:
        return self.row.code

    @strawberry.field(description="Display title, e.g. 'Spend ¥30 save ¥6'.")
    def title(self) -> str:
        return self.row.title

    @strawberry.field(description="What the coupon gives.")
    def kind(self) -> CouponKind:
        return CouponKind(self.row.kind)

    @strawberry.field(description="Minimum covered spend in fen (0: none).")
    def threshold_fen(self) -> int:
        return self.row.threshold_fen

    @strawberry.field(description="AMOUNT_OFF: fen taken off.")
    def off_fen(self) -> int | None:
        return self.row.off_fen

    @strawberry.field(description="PERCENT_OFF: percent taken off (1-99).")
    def percent(self) -> int | None:
        return self.row.percent

    @strawberry.field(description="PERCENT_OFF: the most taken off, in fen (null: no cap).")
    def cap_fen(self) -> int | None:
        return self.row.cap_fen

    @strawberry.field(description="GIFT: the SKU given.")
    def gift_sku(self) -> str | None:
        return self.row.gift_sku

    @strawberry.field(description="How the validity window is set.")
    def validity(self) -> CouponValidity:
        return CouponValidity(self.row.validity)

    @strawberry.field(description="FIXED: first valid instant.")
    def starts_at(self) -> datetime | None:
        return self.row.starts_at

    @strawberry.field(description="FIXED: end of validity (exclusive).")
    def ends_at(self) -> datetime | None:
        return self.row.ends_at

    @strawberry.field(description="RELATIVE: days of validity from issue.")
    def valid_days(self) -> int | None:
        return self.row.valid_days

    @strawberry.field(description="Channels where it can be used (null: all).")
    def channels(self) -> list[str] | None:
        return self.row.channels

    @strawberry.field(description="Store codes where it can be used (null: all).")
    def store_codes(self) -> list[str] | None:
        return self.row.store_codes

    @strawberry.field(description="Product categories it covers (null: the whole order).")
    def categories(self) -> list[str] | None:
        return self.row.categories

    @strawberry.field(description="Whether it combines with other coupons on one order.")
    def stackable(self) -> bool:
        return self.row.stackable

    @strawberry.field(description="Most coupons ever issued (null: unlimited).")
    def total_limit(self) -> int | None:
        return self.row.total_limit

    @strawberry.field(description="Most coupons one member may hold (null: unlimited).")
    def per_member_limit(self) -> int | None:
        return self.row.per_member_limit

    @strawberry.field(description="Whether a refund of the order gives the coupon back.")
    def returnable_on_refund(self) -> bool:
        return self.row.returnable_on_refund

    @strawberry.field(description="Whether coupons are being issued.")
    def active(self) -> bool:
        return self.row.active

    @strawberry.field(description="Coupons issued so far.")
    def issued(self) -> int:
        return self.row.issued

    @strawberry.field(
        description="Issued, redeemed, redemption rate, expired, orders and revenue driven, "
        "discount given, by channel and by store; for the window [from, to) when given. "
        "Scope: admin."
    )
    async def stats(
        self,
        info: Info,
        from_: Annotated[
            datetime | None,
            strawberry.argument(name="from", description="Window start (inclusive)."),
        ] = None,
        to: Annotated[
            datetime | None, strawberry.argument(description="Window end (exclusive).")
        ] = None,
    ) -> CouponStats:
        ctx = ctx_of(info)
        ctx.require()
        st = await ctx.read(
            coupons.template_stats, self.row.id, since=from_, until=to, now=utcnow()
        )
        return _stats(st)


@strawberry.type(description="One coupon issued to a member.")
class Coupon:
    row: strawberry.Private[coupons.Coupon]

    @strawberry.field(description="Global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(global_id("Coupon", self.row.id))

    @strawberry.field(description="The code to show or type at the till, e.g. K7QX-9M2P-4D8R-T.")
    def code(self) -> str:
        return self.row.code

    @strawberry.field(description="The CouponTemplate id.")
    def template_id(self) -> strawberry.ID:
        return strawberry.ID(global_id("CouponTemplate", self.row.template_id))

    @strawberry.field(
        description="The template: title, kind, threshold and amount — what a member's coupon "
        "list shows. Batched across every coupon of the request."
    )
    async def template(self, info: Info) -> CouponTemplate | None:
        def factory(c: RequestContext) -> DataLoader[uuid.UUID, CouponTemplate | None]:
            async def load(keys: list[uuid.UUID]) -> list[CouponTemplate | None]:
                found = await c.read(coupon_reads.templates_by_id, keys)
                return [CouponTemplate(row=found[k]) if k in found else None for k in keys]

            return DataLoader(load)

        loader = ctx_of(info).loaders.named("coupons:template", factory)
        return await loader.load(self.row.template_id)

    @strawberry.field(description="The Member id it was issued to.")
    def member_id(self) -> strawberry.ID:
        return strawberry.ID(global_id("Member", self.row.member_id))

    @strawberry.field(description="Where the coupon is in its life.")
    def status(self) -> CouponStatus:
        return CouponStatus(self.row.status)

    @strawberry.field(description="First valid instant.")
    def valid_from(self) -> datetime:
        return self.row.valid_from

    @strawberry.field(description="End of validity (exclusive).")
    def valid_until(self) -> datetime:
        return self.row.valid_until

    @strawberry.field(description="When it was issued.")
    def issued_at(self) -> datetime:
        return self.row.issued_at

    @strawberry.field(description="Why it was issued (campaign, service, ...).")
    def source(self) -> str:
        return self.row.source

    @strawberry.field(description="When it was redeemed (null unless REDEEMED).")
    def redeemed_at(self) -> datetime | None:
        return self.row.redeemed_at

    @strawberry.field(description="The order it was redeemed on (null unless REDEEMED).")
    def order_ref(self) -> str | None:
        return self.row.order_ref

    @strawberry.field(description="What it took off that order, in fen.")
    def discount_fen(self) -> int | None:
        return self.row.discount_fen


@strawberry.type(description="What a coupon takes off an order.")
class CouponDiscount:
    code: str = strawberry.field(description="The coupon code (canonical form).")
    template_code: str = strawberry.field(description="The template's code.")
    kind: CouponKind = strawberry.field(description="What the coupon gives.")
    discount_fen: int = strawberry.field(
        description="Fen taken off (integers; percentages round up, in the member's favour)."
    )
    eligible_fen: int = strawberry.field(
        description="The part of the order the coupon covers (its categories), in fen."
    )
    gift_sku: str | None = strawberry.field(description="GIFT: the SKU to hand over.")
    order_ref: str | None = strawberry.field(description="The order it was redeemed on.")
    replayed: bool = strawberry.field(
        description="True when this repeats an earlier redemption (same key or same order)."
    )


def _discount(d: coupons.Discount) -> CouponDiscount:
    return CouponDiscount(
        code=d.code,
        template_code=d.template_code,
        kind=CouponKind(d.kind),
        discount_fen=d.discount_fen,
        eligible_fen=d.eligible_fen,
        gift_sku=d.gift_sku,
        order_ref=d.order_ref,
        replayed=d.replayed,
    )


@strawberry.input(description="A new coupon template; fields not used by the kind stay null.")
class CreateCouponTemplateInput:
    code: str = strawberry.field(description="Unique per brand, 1-64 characters.")
    title: str = strawberry.field(description="Display title, 1-200 characters.")
    kind: CouponKind = strawberry.field(description="What the coupon gives.")
    validity: CouponValidity = strawberry.field(description="How the window is set.")
    threshold_fen: int = strawberry.field(default=0, description="Minimum covered spend.")
    off_fen: int | None = strawberry.field(default=None, description="AMOUNT_OFF: fen off.")
    percent: int | None = strawberry.field(default=None, description="PERCENT_OFF: 1-99.")
    cap_fen: int | None = strawberry.field(default=None, description="PERCENT_OFF: cap in fen.")
    gift_sku: str | None = strawberry.field(default=None, description="GIFT: the SKU.")
    starts_at: datetime | None = strawberry.field(default=None, description="FIXED: start.")
    ends_at: datetime | None = strawberry.field(default=None, description="FIXED: end.")
    valid_days: int | None = strawberry.field(default=None, description="RELATIVE: days.")
    channels: list[str] | None = strawberry.field(default=None, description="Null: all.")
    store_codes: list[str] | None = strawberry.field(default=None, description="Null: all.")
    categories: list[str] | None = strawberry.field(
        default=None, description="Null: the whole order."
    )
    stackable: bool = strawberry.field(default=False, description="Combines with others.")
    total_limit: int | None = strawberry.field(default=None, description="Null: unlimited.")
    per_member_limit: int | None = strawberry.field(default=None, description="Null: unlimited.")
    returnable_on_refund: bool = strawberry.field(
        default=False, description="A refund of the order gives the coupon back."
    )
    active: bool = strawberry.field(default=True, description="Issue coupons now.")


@strawberry.input(description="Issue one coupon to a member.")
class IssueCouponInput:
    template_code: str = strawberry.field(description="The CouponTemplate code.")
    member_id: strawberry.ID = strawberry.field(description="The Member id.")
    source: str = strawberry.field(description="Why (campaign, service, ...), 1-64 characters.")
    idempotency_key: str = strawberry.field(
        description="Same key + same request answers the same coupon; 1-128 characters."
    )


@strawberry.input(description="One line of an order, as the till sees it.")
class CouponOrderLineInput:
    amount_fen: int = strawberry.field(description="What the line costs, in fen.")
    category: str | None = strawberry.field(default=None, description="Product category.")
    sku: str | None = strawberry.field(default=None, description="The SKU.")


@strawberry.input(description="The order a coupon is checked against.")
class CouponOrderInput:
    channel: str = strawberry.field(description="Where the order is placed, e.g. pos.")
    store_code: str | None = strawberry.field(default=None, description="The store, if any.")
    lines: list[CouponOrderLineInput] = strawberry.field(description="The order lines.")
    total_fen: int = strawberry.field(description="The order total before the coupon, in fen.")
    shipping_fen: int = strawberry.field(default=0, description="Shipping charged, in fen.")


@strawberry.input(description="Use a coupon on an order.")
class RedeemCouponInput:
    code: str = strawberry.field(description="The coupon code as typed (case, dashes ignored).")
    order: CouponOrderInput = strawberry.field(description="The order.")
    order_ref: str = strawberry.field(description="The order's reference, 1-128 characters.")
    member_id: strawberry.ID | None = strawberry.field(
        default=None, description="The member paying (null: a bearer coupon)."
    )
    idempotency_key: str = strawberry.field(description="Retry key, 1-128 characters.")


@strawberry.type(description="The new template.")
class CreateCouponTemplatePayload:
    template: CouponTemplate = strawberry.field(description="The template.")


@strawberry.type(description="The issued coupon.")
class IssueCouponPayload:
    coupon: Coupon = strawberry.field(description="The coupon.")
    replayed: bool = strawberry.field(description="True when the key was seen before.")


COUPON_ERRORS: tuple[type[Error], ...] = (
    NotFoundError,
    InvalidInputError,
    PermissionDeniedError,
    CouponNotEligibleError,
    IdempotencyKeyReusedError,
    InvalidTransitionError,
)
CreateCouponTemplateResult = result_union(
    "CreateCouponTemplateResult",
    CreateCouponTemplatePayload,
    COUPON_ERRORS,
    "createCouponTemplate result.",
)
IssueCouponResult = result_union(
    "IssueCouponResult",
    IssueCouponPayload,
    COUPON_ERRORS,
    "issueCoupon result (CouponNotEligibleError.reason: INACTIVE, EXPIRED, MEMBER_LIMIT, "
    "TOTAL_LIMIT).",
)
ValidateCouponResult = result_union(
    "ValidateCouponResult",
    CouponDiscount,
    COUPON_ERRORS,
    "validateCoupon result (CouponNotEligibleError.reason says why the coupon does not apply).",
)
RedeemCouponResult = result_union(
    "RedeemCouponResult",
    CouponDiscount,
    COUPON_ERRORS,
    "redeemCoupon result (CouponNotEligibleError.reason says why the coupon does not apply).",
)


# ---- bulk issuance to a segment ------------------------------------------------------------


@strawberry.enum(
    description="PENDING (created, not started), RUNNING (batches committed so far; also a run "
    "cut short — `memberhub coupons run-jobs` resumes it), DONE, FAILED (see error; running it "
    "again resumes), CANCELLED."
)
class CouponIssueJobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@strawberry.type(description="Members a bulk issue skipped for one reason.")
class CouponSkipCount:
    reason: str = strawberry.field(
        description="ALREADY_ISSUED, NOT_ACTIVE (merged since), MEMBER_LIMIT or TOTAL_LIMIT."
    )
    count: int = strawberry.field(description="How many members.")


@strawberry.type(description="Issuing one coupon template to every member of a segment.")
class CouponIssueJob:
    row: strawberry.Private[coupons.Job]

    @strawberry.field(description="Global id (couponIssueJob(id:), cancelCouponIssueJob).")
    def id(self) -> strawberry.ID:
        return strawberry.ID(global_id("CouponIssueJob", self.row.id))

    @strawberry.field(description="The CouponTemplate id.")
    def template_id(self) -> strawberry.ID:
        return strawberry.ID(global_id("CouponTemplate", self.row.template_id))

    @strawberry.field(description="The Segment id.")
    def segment_id(self) -> strawberry.ID:
        return strawberry.ID(global_id("Segment", self.row.segment_id))

    @strawberry.field(description="Where the job is.")
    def status(self) -> CouponIssueJobStatus:
        return CouponIssueJobStatus(self.row.status)

    @strawberry.field(description="Segment members when the job was created.")
    def total(self) -> int:
        return self.row.total

    @strawberry.field(description="Segment members visited so far.")
    def processed(self) -> int:
        return self.row.processed

    @strawberry.field(description="Coupons issued so far.")
    def issued(self) -> int:
        return self.row.issued

    @strawberry.field(description="Members skipped so far (see skipReasons).")
    def skipped(self) -> int:
        return self.row.skipped

    @strawberry.field(description="Skipped members by reason.")
    def skip_reasons(self) -> list[CouponSkipCount]:
        return [
            CouponSkipCount(reason=k, count=n) for k, n in sorted(self.row.skip_reasons.items())
        ]

    @strawberry.field(description="Why it failed (FAILED), e.g. `INACTIVE: …`.")
    def error(self) -> str | None:
        return self.row.error

    @strawberry.field(description="Who started it.")
    def created_by(self) -> str:
        return self.row.created_by

    @strawberry.field(description="When it was started.")
    def created_at(self) -> datetime | None:
        return self.row.created_at

    @strawberry.field(description="Last progress.")
    def updated_at(self) -> datetime | None:
        return self.row.updated_at

    @strawberry.field(description="When it ended (DONE, CANCELLED, or the template ended).")
    def finished_at(self) -> datetime | None:
        return self.row.finished_at


@strawberry.input(description="Issue a coupon template to every member of a segment.")
class IssueCouponsToSegmentInput:
    template_code: str = strawberry.field(description="The CouponTemplate code.")
    segment: str = strawberry.field(description="The segment's code (or Segment id).")
    idempotency_key: str = strawberry.field(
        description="Same key + same template and segment answers the same job; 1-128 characters."
    )


@strawberry.type(description="The bulk issue job (it runs in the background).")
class IssueCouponsToSegmentPayload:
    job: CouponIssueJob = strawberry.field(description="The job; poll couponIssueJob(id:).")
    replayed: bool = strawberry.field(description="True when the key was seen before.")


@strawberry.type(description="The cancelled job.")
class CancelCouponIssueJobPayload:
    job: CouponIssueJob = strawberry.field(description="The job.")


IssueCouponsToSegmentResult = result_union(
    "IssueCouponsToSegmentResult",
    IssueCouponsToSegmentPayload,
    COUPON_ERRORS,
    "issueCouponsToSegment result (NotFoundError: template or segment; CouponNotEligibleError: "
    "INACTIVE, EXPIRED).",
)
CancelCouponIssueJobResult = result_union(
    "CancelCouponIssueJobResult",
    CancelCouponIssueJobPayload,
    COUPON_ERRORS,
    "cancelCouponIssueJob result (InvalidTransitionError: it already finished).",
)


def run_in_background(ctx: Any, job: coupons.Job) -> None:
    """Continue ``job`` in this process (the hub keeps the task; shutdown cancels it and the
    batch in flight rolls back). A process that dies leaves it RUNNING for
    ``memberhub coupons run-jobs``; two runners of one job take turns, never double-issue."""
    if job.status not in coupons.bulk.RUNNABLE:
        return
    tenant_id, db = ctx.tenant_id, ctx.hub.db

    async def run() -> None:
        try:
            await coupons.run_job(db, tenant_id, job.id)
        except Exception:  # recorded on the job (FAILED, error); the log keeps the trace
            log.exception("bulk coupon issue %s failed", job.id)

    ctx.hub.keep(asyncio.create_task(run()))


# ---- Member.coupons --------------------------------------------------------------------------

MAX_MEMBER_COUPONS = 100


def coupons_loader(
    ctx: RequestContext, first: int, status: str | None
) -> DataLoader[uuid.UUID, list[Coupon]]:
    def factory(c: RequestContext) -> DataLoader[uuid.UUID, list[Coupon]]:
        async def load(keys: list[uuid.UUID]) -> list[list[Coupon]]:
            found = await c.read(coupon_reads.coupons_of, keys, limit=first, status=status)
            return [[Coupon(row=x) for x in found.get(k, [])] for k in keys]

        return DataLoader(load)

    return ctx.loaders.named(("coupons:member", first, status), factory)


async def prefetch(ctx: RequestContext, ids: Sequence[uuid.UUID], args: Any) -> None:
    """Prime ``Member.coupons`` for a page of members (``schema.lookahead``): one statement."""
    first = (args or {}).get("first", 20)
    status = (args or {}).get("status")
    if not isinstance(first, int) or not 0 < first <= MAX_MEMBER_COUPONS:
        return
    if status is not None:
        status = str(getattr(status, "value", status)).lower()
        if status not in coupons.model.STATUSES:
            return
    loader = coupons_loader(ctx, first, status)
    missing = [k for k in dict.fromkeys(ids) if loader.cache_map.get(k) is None]
    if missing:
        values = await loader.load_fn(missing)  # type: ignore[call-arg]
        loader.prime_many(dict(zip(missing, values, strict=True)))


def _member_coupons(
    root: Any,
    status: Annotated[
        CouponStatus | None, strawberry.argument(description="Only coupons in this state.")
    ] = None,
    first: Annotated[int, strawberry.argument(description="How many, newest first, 0-100.")] = 20,
) -> list[Coupon]:
    # Codes are bearer secrets: a till (pos) or a reader may see them; a connector key that
    # reached this member through upsertMember may not.
    root.ctx.require(Scope.READ, Scope.POS)
    check_first(first, maximum=MAX_MEMBER_COUPONS)
    if first == 0:
        return []
    loader = coupons_loader(root.ctx, first, None if status is None else status.value)
    return peek(loader, root.id)  # type: ignore[return-value]


MEMBER_COUPONS: Any = strawberry.field(
    resolver=_member_coupons,
    description="The member's coupons, newest first (codes included: show them to the member "
    "only). Batched across members. Scope: read or pos.",
)


def _error(exc: DomainError) -> Any:
    if isinstance(exc, NotEligible) and exc.reason in coupons.REASONS:
        return CouponNotEligibleError(
            message=exc.message, code=exc.code, reason=CouponRefusal(exc.reason)
        )
    return allowed_error(exc, COUPON_ERRORS)


def _order(o: CouponOrderInput) -> coupons.Order:
    return coupons.Order(
        channel=o.channel,
        store_code=o.store_code,
        lines=[coupons.OrderLine(x.category, x.amount_fen, x.sku) for x in o.lines],
        total_fen=o.total_fen,
        shipping_fen=o.shipping_fen,
    )


async def _member(tx: Any, raw: strawberry.ID | None) -> Any:
    return None if raw is None else await resolve_member(tx, raw, "memberId", lock=False)


@strawberry.type
class CouponQueries:
    @strawberry.field(
        description="What a coupon would take off an order, or why it does not apply. A "
        "mistyped code is InvalidInputError(field: code) before any lookup. Scopes: admin, pos."
    )
    async def validate_coupon(
        self,
        info: Info,
        code: Annotated[str, strawberry.argument(description="The coupon code as typed.")],
        order: Annotated[CouponOrderInput, strawberry.argument(description="The order.")],
        member_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="The member paying (null: a bearer coupon)."),
        ] = None,
    ) -> ValidateCouponResult:
        ctx = ctx_of(info)
        try:
            ctx.require(Scope.POS)
            async with ctx.hub.db.tenant_tx(ctx.tenant_id, write=False) as tx:
                mid = await _member(tx, member_id)
                d = await coupons.validate(tx, code, _order(order), member_id=mid, now=utcnow())
        except DomainError as exc:
            return _error(exc)
        return _discount(d)

    @strawberry.field(description="A coupon template by code (null if none). Scope: admin.")
    async def coupon_template(
        self,
        info: Info,
        code: Annotated[str, strawberry.argument(description="The template's code.")],
    ) -> CouponTemplate | None:
        ctx = ctx_of(info)
        ctx.require()
        try:
            row = await ctx.read(coupons.get_template, code)
        except DomainError:
            return None
        return CouponTemplate(row=row)

    @strawberry.field(description="A bulk coupon issue job by id (null if none). Scope: admin.")
    async def coupon_issue_job(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The CouponIssueJob id.")],
    ) -> CouponIssueJob | None:
        ctx = ctx_of(info)
        ctx.require()
        jid = decode_id(id, "CouponIssueJob")
        if jid is None:
            return None
        try:
            job = await ctx.read(coupons.get_job, jid)
        except DomainError:
            return None
        return CouponIssueJob(row=job)


@strawberry.type
class CouponMutations:
    @strawberry.mutation(description="Create a coupon template. Scope: admin.")
    async def create_coupon_template(
        self, info: Info, input: CreateCouponTemplateInput
    ) -> CreateCouponTemplateResult:
        ctx = ctx_of(info)
        try:
            ctx.require()
            fields = {k: getattr(input, k) for k in CreateCouponTemplateInput.__annotations__}
            fields["kind"], fields["validity"] = input.kind.value, input.validity.value
            async with ctx.hub.db.tenant_tx(ctx.tenant_id) as tx:
                t = await coupons.create_template(tx, now=utcnow(), **fields)
        except DomainError as exc:
            return _error(exc)
        await ctx.after_write()
        return CreateCouponTemplatePayload(template=CouponTemplate(row=t))

    @strawberry.mutation(
        description="Issue a coupon to a member (idempotent on idempotencyKey). Scope: admin."
    )
    async def issue_coupon(self, info: Info, input: IssueCouponInput) -> IssueCouponResult:
        ctx = ctx_of(info)
        try:
            ctx.require()
            async with ctx.hub.db.tenant_tx(ctx.tenant_id) as tx:
                mid = await resolve_member(tx, input.member_id, "memberId", lock=False)
                c = await coupons.issue(
                    tx,
                    input.template_code,
                    mid,
                    source=input.source,
                    idem_key=input.idempotency_key,
                    now=utcnow(),
                )
        except DomainError as exc:
            return _error(exc)
        await ctx.after_write()
        return IssueCouponPayload(coupon=Coupon(row=c), replayed=c.replayed)

    @strawberry.mutation(
        description="Use a coupon on an order: exactly once, whatever the concurrency; the same "
        "code again for the same orderRef (or the same key) answers the original discount. "
        "Scopes: admin, pos."
    )
    async def redeem_coupon(self, info: Info, input: RedeemCouponInput) -> RedeemCouponResult:
        ctx = ctx_of(info)
        try:
            ctx.require(Scope.POS)
            async with ctx.hub.db.tenant_tx(ctx.tenant_id) as tx:
                mid = await _member(tx, input.member_id)
                d = await coupons.redeem(
                    tx,
                    input.code,
                    _order(input.order),
                    order_ref=input.order_ref,
                    idem_key=input.idempotency_key,
                    member_id=mid,
                    now=utcnow(),
                )
        except DomainError as exc:
            return _error(exc)
        await ctx.after_write()
        return _discount(d)

    @strawberry.mutation(
        description="Issue a coupon template to every member of a segment, at most once per "
        "member (idempotent on idempotencyKey). Returns the job at once; it runs in the "
        "background in batches — poll couponIssueJob(id:) for progress. Scope: admin."
    )
    async def issue_coupons_to_segment(
        self, info: Info, input: IssueCouponsToSegmentInput
    ) -> IssueCouponsToSegmentResult:
        ctx = ctx_of(info)
        try:
            ctx.require()
            async with ctx.hub.db.tenant_tx(ctx.tenant_id) as tx:
                job = await coupons.start_job(
                    tx,
                    input.template_code,
                    input.segment,
                    idem_key=input.idempotency_key,
                    actor=_actor(ctx),
                    now=utcnow(),
                )
        except DomainError as exc:
            return _error(exc)
        await ctx.after_write()
        run_in_background(ctx, job)
        return IssueCouponsToSegmentPayload(job=CouponIssueJob(row=job), replayed=job.replayed)

    @strawberry.mutation(
        description="Stop a bulk coupon issue between batches (coupons already issued stay). "
        "Idempotent. Scope: admin."
    )
    async def cancel_coupon_issue_job(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The CouponIssueJob id.")],
    ) -> CancelCouponIssueJobResult:
        ctx = ctx_of(info)
        try:
            ctx.require()
            jid = decode_id(id, "CouponIssueJob")
            if jid is None:
                raise NotFound("no CouponIssueJob with this id", field="id")
            async with ctx.hub.db.tenant_tx(ctx.tenant_id) as tx:
                job = await coupons.cancel_job(tx, jid, now=utcnow())
        except DomainError as exc:
            return _error(exc)
        await ctx.after_write()
        return CancelCouponIssueJobPayload(job=CouponIssueJob(row=job))

"""GraphQL for coupons (issue #5 scope 1): templates and issuance (admin), validation and
redemption against an order at the till (pos).

Idempotency lives in the domain: ``issueCoupon`` and ``redeemCoupon`` carry their own keys (and a
coupon redeemed again for the same order answers the original discount), so a retried request is
safe without the generic idempotency store. Another tenant's code is indistinguishable from a
missing one (``NotEligibleError`` with reason ``NOT_FOUND``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from gateway import coupons
from gateway.errors import DomainError
from gateway.storage.types import utcnow
from gateway.tenancy import Scope
from schema.context import ctx_of
from schema.errors import (
    Error,
    IdempotencyKeyReusedError,
    InvalidInputError,
    InvalidTransitionError,
    NotEligibleError,
    NotFoundError,
    PermissionDeniedError,
    to_graphql_error,
)
from schema.relay import global_id
from schema.rules import resolve_member, result_union


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
    NotEligibleError,
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
    "issueCoupon result (NotEligibleError.reason: INACTIVE, EXPIRED, MEMBER_LIMIT, TOTAL_LIMIT).",
)
ValidateCouponResult = result_union(
    "ValidateCouponResult",
    CouponDiscount,
    COUPON_ERRORS,
    "validateCoupon result (NotEligibleError.reason says why the coupon does not apply).",
)
RedeemCouponResult = result_union(
    "RedeemCouponResult",
    CouponDiscount,
    COUPON_ERRORS,
    "redeemCoupon result (NotEligibleError.reason says why the coupon does not apply).",
)


def _error(exc: DomainError) -> Any:
    err = to_graphql_error(exc)
    return (
        err
        if isinstance(err, COUPON_ERRORS)
        else InvalidInputError(message=exc.message, code=exc.code)
    )


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

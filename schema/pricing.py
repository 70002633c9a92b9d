"""GraphQL ``memberPrice``: an order draft priced for one member (the tier discount,
``gateway.pricing``), for the till and the storefront.

The member's tier comes from the same batched loader as ``Member.tier``, so the rate a till is
quoted is the ``discountBp`` the member centre shows, and several ``memberPrice`` fields in one
request (aliases) load their tiers in one batch. Scopes: ``pos`` or ``read`` (``admin``).
"""

from __future__ import annotations

from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from gateway import members, pricing
from gateway.errors import DomainError, NotFound
from gateway.rules.hookspecs import TierView
from gateway.tenancy import Scope
from schema.context import ctx_of
from schema.errors import (
    Error,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    allowed_error,
)
from schema.relay import decode_id, global_id
from schema.rules import result_union, tier_loader


@strawberry.input(description="One line of the order being priced.")
class MemberPriceLineInput:
    amount_fen: int = strawberry.field(
        description="The line's price before the member's discount, in fen (0 … 10⁹)."
    )
    sku: str | None = strawberry.field(default=None, description="The SKU, echoed back.")
    category: str | None = strawberry.field(default=None, description="Product category.")


@strawberry.input(description="An order draft: where it is placed and its lines.")
class MemberPriceOrderInput:
    lines: list[MemberPriceLineInput] = strawberry.field(description="1-500 lines.")
    channel: str | None = strawberry.field(
        default=None,
        description="Where the order is placed (pos, miniapp, …); the tier rate applies on "
        "every channel.",
    )
    store_code: str | None = strawberry.field(default=None, description="The store, if any.")


@strawberry.type(description="One line at the member's price.")
class MemberPriceLine:
    sku: str | None = strawberry.field(description="The SKU, as sent.")
    category: str | None = strawberry.field(description="The category, as sent.")
    amount_fen: int = strawberry.field(description="The price before the discount, in fen.")
    member_amount_fen: int = strawberry.field(
        description="What this member pays: floor(amountFen × discountBp / 10000) — fractions "
        "of a fen go to the member; never negative, never above amountFen."
    )


@strawberry.type(description="An order draft priced for one member (the tier discount).")
class MemberPrice:
    member_id: strawberry.ID = strawberry.field(
        description="The member priced for (a merged member's id gives its survivor)."
    )
    tier_code: str | None = strawberry.field(
        description="The member's effective tier now (null: the tenant runs no tiers)."
    )
    tier_name: str | None = strawberry.field(description="Its display name.")
    discount_bp: int = strawberry.field(
        description="The price rate applied, in basis points (9500 = 95 %; 10000 = full "
        "price). Equals Member.tier.discountBp."
    )
    lines: list[MemberPriceLine] = strawberry.field(description="The lines, in order.")
    total_fen: int = strawberry.field(description="Σ amountFen.")
    member_total_fen: int = strawberry.field(description="Σ memberAmountFen.")
    saved_fen: int = strawberry.field(description="totalFen − memberTotalFen (≥ 0).")


PRICE_ERRORS: tuple[type[Error], ...] = (NotFoundError, InvalidInputError, PermissionDeniedError)
MemberPriceResult = result_union(
    "MemberPriceResult",
    MemberPrice,
    PRICE_ERRORS,
    "memberPrice result (NotFoundError: no such member; InvalidInputError: the lines).",
)


def _out(p: pricing.MemberPrice) -> MemberPrice:
    return MemberPrice(
        member_id=strawberry.ID(global_id("Member", p.member_id)),
        tier_code=None if p.tier is None else p.tier.code,
        tier_name=None if p.tier is None else p.tier.name,
        discount_bp=p.discount_bp,
        lines=[
            MemberPriceLine(
                sku=x.sku,
                category=x.category,
                amount_fen=x.amount_fen,
                member_amount_fen=x.member_amount_fen,
            )
            for x in p.lines
        ],
        total_fen=p.total_fen,
        member_total_fen=p.member_total_fen,
        saved_fen=p.saved_fen,
    )


@strawberry.type
class PricingQueries:
    @strawberry.field(
        description="Price an order draft for a member: the discount of their effective tier "
        "(discountBp), per line and in total. Coupons are checked with validateCoupon. "
        "Scopes: pos, read."
    )
    async def member_price(
        self,
        info: Info,
        member_id: Annotated[strawberry.ID, strawberry.argument(description="The Member id.")],
        order: Annotated[
            MemberPriceOrderInput, strawberry.argument(description="The order draft.")
        ],
    ) -> MemberPriceResult:
        ctx = ctx_of(info)
        try:
            ctx.require(Scope.POS, Scope.READ)
            lines = [pricing.DraftLine(x.amount_fen, x.sku, x.category) for x in order.lines]
            pricing.check_lines(lines)
            mid = decode_id(member_id, "Member")
            survivor = None if mid is None else await ctx.read(members.resolve, mid)
            if survivor is None:
                raise NotFound("no Member with this id", field="memberId")
            status: Any = await tier_loader(ctx).load(survivor)
            tier = (
                None
                if status is None
                else TierView(
                    status.code, status.name, status.rank, status.multiplier_pct, status.discount_bp
                )
            )
            return _out(pricing.price(survivor, tier, lines))
        except DomainError as exc:
            return allowed_error(exc, PRICE_ERRORS)

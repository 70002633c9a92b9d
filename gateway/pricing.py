""" "Price for this member": the tier discount on an order draft, for the till and the storefront.

The only price rule the rule framework expresses is the tier ladder's ``discount_bp`` (the price
rate of the member's *effective* tier: 9500 = pay 95 %); benefits and exchange rule sets answer
events and mall quotes, not order prices, so this module applies nothing else — coupons are
checked separately (``validateCoupon``), points are earned when the order is recorded.

Rounding: per line, the member pays ``floor(amount_fen × discount_bp / 10000)`` — fractions of a
fen go to the member, as coupons' percentages do (``gateway.coupons``). So for every line
``0 ≤ member_amount_fen ≤ amount_fen``, and the totals are the sums of the lines.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gateway.errors import InvalidInput, NotFound
from gateway.identity.reads import resolve
from gateway.ledger import validation as v
from gateway.ledger.accounts import MAX_AMOUNT
from gateway.rules import config as rule_config
from gateway.rules.hookspecs import TierView
from gateway.rules.manager import RuleRegistry, default_registry
from gateway.rules.tiers import tier_view
from gateway.storage.db import Tx

FULL_PRICE_BP = 10_000
MAX_LINES = 500


@dataclass(frozen=True)
class DraftLine:
    """One line of the order being priced."""

    amount_fen: int  # the line's price before the member's discount
    sku: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class PricedLine:
    sku: str | None
    category: str | None
    amount_fen: int
    member_amount_fen: int


@dataclass(frozen=True)
class MemberPrice:
    """An order draft priced for one member."""

    member_id: uuid.UUID
    tier: TierView | None  # None: the tenant runs no tier rule set
    discount_bp: int
    lines: tuple[PricedLine, ...]

    @property
    def total_fen(self) -> int:
        return sum(line.amount_fen for line in self.lines)

    @property
    def member_total_fen(self) -> int:
        return sum(line.member_amount_fen for line in self.lines)

    @property
    def saved_fen(self) -> int:
        return self.total_fen - self.member_total_fen


def discounted(amount_fen: int, discount_bp: int) -> int:
    """What the member pays for ``amount_fen`` at ``discount_bp`` (rounded down, in the
    member's favour)."""
    return amount_fen * discount_bp // FULL_PRICE_BP


def check_lines(lines: Sequence[DraftLine]) -> None:
    """``InvalidInput`` (field ``lines``) unless 1..500 lines of 0..MAX_AMOUNT fen each."""
    if not 1 <= len(lines) <= MAX_LINES:
        raise InvalidInput(f"an order has 1..{MAX_LINES} lines", field="lines")
    for i, line in enumerate(lines):
        a = line.amount_fen
        if type(a) is not int or not 0 <= a <= MAX_AMOUNT:
            raise InvalidInput(
                f"lines[{i}].amountFen must be an integer number of fen in 0..{MAX_AMOUNT}",
                field="lines",
            )


def price(member_id: uuid.UUID, tier: TierView | None, lines: Sequence[DraftLine]) -> MemberPrice:
    """Pure: the draft at the tier's rate (full price without a tier)."""
    check_lines(lines)
    bp = tier.discount_bp if tier is not None else FULL_PRICE_BP
    priced = tuple(
        PricedLine(line.sku, line.category, line.amount_fen, discounted(line.amount_fen, bp))
        for line in lines
    )
    return MemberPrice(member_id, tier, bp, priced)


async def member_price(
    tx: Tx,
    member_id: uuid.UUID,
    lines: Sequence[DraftLine],
    *,
    registry: RuleRegistry | None = None,
    now: datetime | None = None,
) -> MemberPrice:
    """Price ``lines`` for the member (a merged id prices for its survivor) at the rate of the
    tier they have *now* — the same effective tier the mall prices with, computed without
    writing (read-only transactions are fine). ``NotFound`` for an unknown member."""
    from gateway.mall.service import effective_tier  # the mall owns "the tier as of now"

    check_lines(lines)
    now = v.now_or(now)
    registry = registry if registry is not None else default_registry()
    survivor = await resolve(tx, member_id)
    if survivor is None:
        raise NotFound("member not found", member_id=str(member_id))
    cfg, timezone = await rule_config.active(tx, registry)
    tier = None
    if cfg.tier_policy is not None:
        code = await effective_tier(tx, cfg, timezone, survivor, now)
        tier = tier_view(cfg.tier_policy, code)
    return price(survivor, tier, lines)


__all__ = [
    "DraftLine",
    "MemberPrice",
    "PricedLine",
    "check_lines",
    "discounted",
    "member_price",
    "price",
]

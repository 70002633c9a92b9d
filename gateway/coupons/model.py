"""Coupon value objects and the table handles shared by the coupon modules."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.storage.tables import Coupon as CouponRow
from gateway.storage.tables import CouponTemplate as TemplateRow

T: Any = TemplateRow.__table__  # type: ignore[attr-defined]
C: Any = CouponRow.__table__  # type: ignore[attr-defined]

KINDS = ("amount_off", "percent_off", "gift", "shipping")
VALIDITIES = ("fixed", "relative")
STATUSES = ("issued", "redeemed", "expired", "void")
REASONS = (
    "NOT_FOUND",
    "EXPIRED",
    "NOT_STARTED",
    "WRONG_CHANNEL",
    "WRONG_STORE",
    "THRESHOLD_NOT_MET",
    "ALREADY_REDEEMED",
    "NOT_YOURS",
    "CATEGORY_NOT_COVERED",
    "VOID",
    "NOT_STACKABLE",
    "NOT_RETURNABLE",
    "INACTIVE",
    "TOTAL_LIMIT",
    "MEMBER_LIMIT",
)
"""Stable :attr:`NotEligible.reason` codes of issuance, validation, redemption and return."""


@dataclass(frozen=True)
class Template:
    id: uuid.UUID
    code: str
    title: str
    kind: str
    threshold_fen: int
    off_fen: int | None
    percent: int | None
    cap_fen: int | None
    gift_sku: str | None
    validity: str
    starts_at: datetime | None
    ends_at: datetime | None
    valid_days: int | None
    channels: list[str] | None
    store_codes: list[str] | None
    categories: list[str] | None
    stackable: bool
    total_limit: int | None
    per_member_limit: int | None
    returnable_on_refund: bool
    active: bool
    issued: int
    created_at: datetime


def template_from_row(row: Any) -> Template:
    m = row._mapping
    return Template(**{f: m[f] for f in Template.__dataclass_fields__})


@dataclass(frozen=True)
class Coupon:
    id: uuid.UUID
    template_id: uuid.UUID
    member_id: uuid.UUID
    code: str
    status: str
    valid_from: datetime
    valid_until: datetime
    issued_at: datetime
    source: str
    redeemed_at: datetime | None
    order_ref: str | None
    discount_fen: int | None
    replayed: bool = False


def coupon_from_row(row: Any, *, replayed: bool = False) -> Coupon:
    m = row._mapping
    fields = {f: m[f] for f in Coupon.__dataclass_fields__ if f != "replayed"}
    return Coupon(**fields, replayed=replayed)


@dataclass(frozen=True)
class OrderLine:
    category: str | None
    amount_fen: int
    sku: str | None = None


@dataclass(frozen=True)
class Order:
    """The order a coupon is checked against: where it is placed and what it contains."""

    channel: str
    store_code: str | None
    lines: list[OrderLine]
    total_fen: int
    shipping_fen: int = 0
    discounted_fen: int = 0
    """What coupons applied before this one already took off the order: the coupon covers (and
    checks its threshold against) at most ``total_fen − discounted_fen``, so stacked coupons
    never take more than the order. ``total_fen`` stays the order's total (statistics)."""


@dataclass(frozen=True)
class Discount:
    """What a coupon takes off an order. ``eligible_fen`` is the part of the order the coupon
    covers (its categories, capped by the order total); ``gift_sku`` is set for gift coupons."""

    coupon_id: uuid.UUID
    code: str
    template_code: str
    kind: str
    discount_fen: int
    eligible_fen: int
    gift_sku: str | None = None
    order_ref: str | None = None
    replayed: bool = False

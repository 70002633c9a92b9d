"""Order value types, validation and table handles.

Validation happens before anything is written; every rule here protects either the ledger (fen
amounts that add up, so earning and refund reversal are computed from consistent numbers) or the
idempotency of the upsert (bounded, well-formed external ids).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.errors import InvalidInput
from gateway.identity.model import check_aware, check_channel
from gateway.storage.tables import Order, OrderLine, OrderRefund

ORD: Any = Order.__table__  # type: ignore[attr-defined]
LINE: Any = OrderLine.__table__  # type: ignore[attr-defined]
REF: Any = OrderRefund.__table__  # type: ignore[attr-defined]

MAX_FEN = 10**11
MAX_LINES = 500
MAX_QUANTITY = 10**6
INPUT_STATUSES = frozenset({"created", "paid", "completed", "cancelled"})
REFUND_STATUSES = frozenset({"partially_refunded", "refunded"})
PAID_STATUSES = frozenset({"paid", "completed"})
FORWARD: dict[str, frozenset[str]] = {
    "created": frozenset({"paid", "completed", "cancelled"}),
    "paid": frozenset({"completed"}),
}
_EXTERNAL = re.compile(r"^[A-Za-z0-9_.:#/-]{1,64}$")


@dataclass(frozen=True)
class OrderLineInput:
    sku: str
    name: str
    category: str | None
    quantity: int
    unit_price_fen: int
    amount_fen: int


@dataclass(frozen=True)
class OrderInput:
    channel: str
    external_id: str
    member_id: uuid.UUID | None
    status: str
    lines: list[OrderLineInput]
    total_fen: int
    paid_fen: int
    store_code: str | None = None
    guide_code: str | None = None
    # Required, keyword-only: the contract lists it after the optional codes.
    placed_at: datetime = field(kw_only=True)
    paid_at: datetime | None = None


@dataclass(frozen=True)
class RecordResult:
    order_id: uuid.UUID
    created: bool
    status: str
    status_changed: bool
    events: list[uuid.UUID] = field(default_factory=list)
    # gateway.coupons.Discount of every code given with the order (replays included)
    coupons: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class RefundResult:
    order_id: uuid.UUID
    refund_id: str
    amount_fen: int
    status: str
    replayed: bool
    reversed: dict[str, int] = field(default_factory=dict)
    shortfall: dict[str, int] = field(default_factory=dict)
    returned_coupons: list[str] = field(default_factory=list)  # codes given back (full refund)


@dataclass(frozen=True)
class OrderRow:
    id: uuid.UUID
    channel: str
    external_id: str
    member_id: uuid.UUID | None
    status: str
    total_fen: int
    paid_fen: int
    refunded_fen: int
    store_code: str | None
    guide_code: str | None
    placed_at: datetime
    paid_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class LineRow:
    line_no: int
    sku: str
    name: str
    category: str | None
    quantity: int
    unit_price_fen: int
    amount_fen: int


def order_row(r: Any) -> OrderRow:
    return OrderRow(
        id=r.id,
        channel=r.channel,
        external_id=r.external_id,
        member_id=r.member_id,
        status=r.status,
        total_fen=r.total_fen,
        paid_fen=r.paid_fen,
        refunded_fen=r.refunded_fen,
        store_code=r.store_code,
        guide_code=r.guide_code,
        placed_at=r.placed_at,
        paid_at=r.paid_at,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def line_row(r: Any) -> LineRow:
    return LineRow(r.line_no, r.sku, r.name, r.category, r.quantity, r.unit_price_fen, r.amount_fen)


def check_int(value: object, name: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise InvalidInput(f"{name} must be an integer between {lo} and {hi}", field=name)
    return value


def check_code(value: object, name: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not _EXTERNAL.match(value):
        raise InvalidInput(f"{name} must be 1-64 letters, digits or _.:#/-", field=name)
    return value


def _text(value: object, name: str, limit: int, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidInput(f"{name} must be 1-{limit} characters", field=name)
    return value.strip()


def check_line(line: OrderLineInput, i: int) -> OrderLineInput:
    """Return lines (negative quantity) carry a non-positive amount; sale lines a non-negative."""
    p = f"lines[{i}]"
    qty = check_int(line.quantity, f"{p}.quantity", -MAX_QUANTITY, MAX_QUANTITY)
    if qty == 0:
        raise InvalidInput("quantity must not be 0", field=f"{p}.quantity")
    unit = check_int(line.unit_price_fen, f"{p}.unit_price_fen", 0, MAX_FEN)
    lo, hi = (-MAX_FEN, 0) if qty < 0 else (0, MAX_FEN)
    amount = check_int(line.amount_fen, f"{p}.amount_fen", lo, hi)
    return OrderLineInput(
        sku=check_code(line.sku, f"{p}.sku") or "",
        name=_text(line.name, f"{p}.name", 200) or "",
        category=_text(line.category, f"{p}.category", 100, optional=True),
        quantity=qty,
        unit_price_fen=unit,
        amount_fen=amount,
    )


def validate_order(inp: OrderInput) -> OrderInput:
    """A cleaned copy of ``inp``; raises ``InvalidInput`` naming the first bad field."""
    check_channel(inp.channel)
    check_code(inp.external_id, "external_id")
    if inp.status in REFUND_STATUSES:
        raise InvalidInput("refund statuses are set by refund_order only", field="status")
    if inp.status not in INPUT_STATUSES:
        raise InvalidInput("status must be created, paid, completed or cancelled", field="status")
    total = check_int(inp.total_fen, "total_fen", 0, MAX_FEN)
    paid = check_int(inp.paid_fen, "paid_fen", 0, MAX_FEN)
    if paid > total:
        raise InvalidInput("paid_fen cannot exceed total_fen", field="paid_fen")
    if not isinstance(inp.lines, list | tuple) or len(inp.lines) > MAX_LINES:
        raise InvalidInput(f"lines must be a list of at most {MAX_LINES}", field="lines")
    lines = [check_line(line, i) for i, line in enumerate(inp.lines)]
    if lines and sum(line.amount_fen for line in lines) != total:
        raise InvalidInput("line amounts must add up to total_fen", field="total_fen")
    if inp.placed_at is None:
        raise InvalidInput("placed_at is required", field="placed_at")
    placed_at = check_aware(inp.placed_at, "placed_at")
    paid_at = None if inp.paid_at is None else check_aware(inp.paid_at, "paid_at")
    if inp.member_id is not None and not isinstance(inp.member_id, uuid.UUID):
        raise InvalidInput("member_id must be a UUID", field="member_id")
    return OrderInput(
        channel=inp.channel,
        external_id=inp.external_id,
        member_id=inp.member_id,
        status=inp.status,
        lines=lines,
        total_fen=total,
        paid_fen=paid,
        store_code=check_code(inp.store_code, "store_code", optional=True),
        guide_code=check_code(inp.guide_code, "guide_code", optional=True),
        placed_at=placed_at,
        paid_at=paid_at,
    )

"""Record an order: idempotent upsert by ``(tenant, channel, external_id)``.

Channels re-send orders all the time (incremental syncs overlap, webhooks retry), often out of
order. So:

- the same order with the same data changes nothing;
- status only moves forward (created → paid → completed, created → cancelled); a backward move
  is stale data: ``InvalidTransition`` with ``on_backward="error"``, silently ignored (the whole
  record) with ``"ignore"``;
- amounts, lines and timestamps may change only while the order is ``created``; once paid they
  are what earning and refund reversal were computed from, so changing them is refused the same
  way (refunds go through ``refund_order``);
- the first time an order with a member is paid/completed, one ``order.paid`` event with a
  derived id is recorded and the earning rules run. The event id and the ledger's idempotency
  keys make a re-sent or replayed order earn exactly once;
- ``coupons`` (codes the order used) are redeemed in the same transaction, before earning; a
  refused code raises ``CouponRefused`` and the whole order is refused (see
  :mod:`gateway.commerce.order_coupons`). An order recorded or moved to ``cancelled`` redeems
  nothing and gives its returnable coupons back.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, insert, select, update

from gateway.commerce import order_coupons
from gateway.commerce.model import (
    FORWARD,
    LINE,
    ORD,
    PAID_STATUSES,
    REFUND_STATUSES,
    OrderInput,
    OrderLineInput,
    RecordResult,
    validate_order,
)
from gateway.coupons.model import Discount
from gateway.errors import InvalidInput, InvalidTransition, NotFound
from gateway.events import record_event
from gateway.identity.model import check_aware
from gateway.identity.reads import resolve
from gateway.ids import derived_id, uuid7
from gateway.rules.engine import process_event
from gateway.rules.hookspecs import EventView
from gateway.rules.manager import RuleRegistry
from gateway.sql import upsert_insert
from gateway.storage.db import Tx
from gateway.storage.types import utcnow

OnBackward = Literal["ignore", "error"]


def _line_values(tx: Tx, order_id: uuid.UUID, lines: list[OrderLineInput]) -> list[dict[str, Any]]:
    return [
        {
            "tenant_id": tx.tenant_id,
            "order_id": order_id,
            "line_no": i + 1,
            "sku": line.sku,
            "name": line.name,
            "category": line.category,
            "quantity": line.quantity,
            "unit_price_fen": line.unit_price_fen,
            "amount_fen": line.amount_fen,
        }
        for i, line in enumerate(lines)
    ]


def _line_key(line: Any) -> tuple[Any, ...]:
    return (
        line.sku,
        line.name,
        line.category,
        line.quantity,
        line.unit_price_fen,
        line.amount_fen,
    )


async def _existing(tx: Tx, inp: OrderInput) -> Any:
    return (
        await tx.conn.execute(
            select(ORD)
            .where(
                ORD.c.tenant_id == tx.tenant_id,
                ORD.c.channel == inp.channel,
                ORD.c.external_id == inp.external_id,
            )
            .with_for_update()
        )
    ).first()


async def _insert(tx: Tx, inp: OrderInput, member_id: uuid.UUID | None, now: datetime) -> Any:
    """Insert unless a concurrent writer got there first (then the caller updates instead)."""
    order_id = uuid7()
    ins = upsert_insert(tx, ORD).values(
        tenant_id=tx.tenant_id,
        id=order_id,
        channel=inp.channel,
        external_id=inp.external_id,
        member_id=member_id,
        status=inp.status,
        total_fen=inp.total_fen,
        paid_fen=inp.paid_fen,
        refunded_fen=0,
        store_code=inp.store_code,
        guide_code=inp.guide_code,
        placed_at=inp.placed_at,
        paid_at=inp.paid_at,
        created_at=now,
        updated_at=now,
    )
    row = (
        await tx.conn.execute(
            ins.on_conflict_do_nothing(
                index_elements=[ORD.c.tenant_id, ORD.c.channel, ORD.c.external_id]
            ).returning(ORD)
        )
    ).first()
    if row is not None and inp.lines:
        await tx.conn.execute(insert(LINE).values(_line_values(tx, order_id, inp.lines)))
    return row


def _conflict(on_backward: OnBackward, message: str) -> None:
    if on_backward == "error":
        raise InvalidTransition(message)


async def _update(
    tx: Tx,
    cur: Any,
    inp: OrderInput,
    member_id: uuid.UUID | None,
    on_backward: OnBackward,
    now: datetime,
) -> tuple[Any, bool]:
    """Apply a re-sent order to the stored one; returns (row after, status changed)."""
    status = cur.status
    if inp.status != cur.status and not (
        cur.status in REFUND_STATUSES and inp.status in PAID_STATUSES
    ):
        # A refund status already implies paid; a channel still saying "completed" is not news.
        if inp.status not in FORWARD.get(cur.status, frozenset()):
            _conflict(on_backward, f"order status cannot go from {cur.status} to {inp.status}")
            return cur, False
        status = inp.status

    values: dict[str, Any] = {}
    if status != cur.status:
        values["status"] = status

    if member_id is not None and member_id != cur.member_id:
        current_member = None if cur.member_id is None else await resolve(tx, cur.member_id)
        if current_member is None:
            values["member_id"] = member_id
        elif current_member != member_id:
            if on_backward == "error":
                raise InvalidInput("the order belongs to another member", field="member_id")
            return cur, False

    lines_changed = False
    money = {
        "total_fen": inp.total_fen,
        "paid_fen": inp.paid_fen,
        "placed_at": inp.placed_at,
        "paid_at": inp.paid_at if inp.paid_at is not None else cur.paid_at,
    }
    money_changed = {k: v for k, v in money.items() if v != getattr(cur, k)}
    if inp.lines or money_changed:
        stored = (
            await tx.conn.execute(
                select(LINE)
                .where(LINE.c.tenant_id == tx.tenant_id, LINE.c.order_id == cur.id)
                .order_by(LINE.c.line_no)
            )
        ).all()
        lines_changed = bool(inp.lines) and [_line_key(x) for x in stored] != [
            _line_key(x) for x in inp.lines
        ]
    if money_changed or lines_changed:
        if cur.status != "created":
            _conflict(on_backward, "amounts of a paid order cannot change; record a refund")
            return cur, False
        values.update(money_changed)

    for key in ("store_code", "guide_code"):
        new = getattr(inp, key)
        if new is not None and new != getattr(cur, key):
            values[key] = new

    if not values and not lines_changed:
        return cur, False
    values["updated_at"] = now
    row = (
        await tx.conn.execute(
            update(ORD)
            .where(ORD.c.tenant_id == tx.tenant_id, ORD.c.id == cur.id)
            .values(**values)
            .returning(ORD)
        )
    ).first()
    if lines_changed:
        await tx.conn.execute(
            delete(LINE).where(LINE.c.tenant_id == tx.tenant_id, LINE.c.order_id == cur.id)
        )
        await tx.conn.execute(insert(LINE).values(_line_values(tx, cur.id, inp.lines)))
    return row, status != cur.status


def paid_payload(row: Any, lines: list[OrderLineInput]) -> dict[str, Any]:
    return {
        "order_id": str(row.id),
        "channel": row.channel,
        "external_id": row.external_id,
        "paid_fen": row.paid_fen,
        "total_fen": row.total_fen,
        "store_code": row.store_code,
        "guide_code": row.guide_code,
        "lines": [
            {
                "sku": line.sku,
                "category": line.category,
                "quantity": line.quantity,
                "amount_fen": line.amount_fen,
            }
            for line in lines
        ],
    }


async def _lines_of(tx: Tx, order_id: uuid.UUID) -> list[Any]:
    return list(
        (
            await tx.conn.execute(
                select(LINE)
                .where(LINE.c.tenant_id == tx.tenant_id, LINE.c.order_id == order_id)
                .order_by(LINE.c.line_no)
            )
        ).all()
    )


async def _earn_if_paid(
    tx: Tx, row: Any, registry: RuleRegistry | None, now: datetime
) -> list[uuid.UUID]:
    if row.member_id is None or row.status not in PAID_STATUSES:
        return []
    event_id = derived_id(tx.tenant_id, "order", row.id, "paid")
    occurred_at = row.paid_at or now
    payload = paid_payload(row, await _lines_of(tx, row.id))
    inserted = await record_event(
        tx,
        event_id=event_id,
        member_id=row.member_id,
        type="order.paid",
        payload=payload,
        occurred_at=occurred_at,
    )
    if not inserted:
        return []
    event = EventView(event_id, "order.paid", row.member_id, occurred_at, payload)
    await process_event(tx, event, registry, now=now)
    return [event_id]


async def record_order(
    tx: Tx,
    inp: OrderInput,
    *,
    on_backward: OnBackward = "error",
    now: datetime | None = None,
    registry: RuleRegistry | None = None,
    coupons: Sequence[str] | None = None,
) -> RecordResult:
    """Create or update an order from a channel record (see the module docstring).

    ``registry`` defaults to the installed rule plugins; ``member_id``, when given, must be a
    member of this tenant (a merged id is resolved to its survivor) or ``NotFound`` is raised.
    ``coupons``: codes the order used, redeemed with it (``CouponRefused`` refuses the order).
    """
    if on_backward not in ("ignore", "error"):
        raise InvalidInput("on_backward must be 'ignore' or 'error'", field="on_backward")
    now = check_aware(now, "now") if now is not None else utcnow()
    inp = validate_order(inp)
    codes = order_coupons.check_codes(coupons)
    member_id = None
    if inp.member_id is not None:
        member_id = await resolve(tx, inp.member_id, lock=True)
        if member_id is None:
            raise NotFound("member not found", id=str(inp.member_id))

    created = False
    status_changed = False
    row = await _existing(tx, inp)
    if row is None:
        row = await _insert(tx, inp, member_id, now)
        if row is not None:
            created = status_changed = True
        else:
            row = await _existing(tx, inp)
    changed = created
    if not created:
        before = row
        row, status_changed = await _update(tx, row, inp, member_id, on_backward, now)
        changed = row is not before
    used: list[Discount] = []
    if row.status == "cancelled":
        if status_changed:
            await order_coupons.return_for_order(tx, row, now)
    elif codes:
        lines = inp.lines if inp.lines or created else await _lines_of(tx, row.id)
        used = await order_coupons.redeem_for_order(
            tx, row, lines, codes, member_id=row.member_id, now=now
        )
    # Reaching "paid with a member" is monotone, so an unchanged re-send has nothing to earn.
    events = await _earn_if_paid(tx, row, registry, now) if changed else []
    return RecordResult(row.id, created, row.status, status_changed, events, used)

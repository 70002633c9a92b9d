"""Refunds and proportional reversal of what an order earned.

A refund is idempotent on ``(order, refund_id)``: the same id with the same amount returns the
original outcome, with another amount it is ``IdempotencyKeyReused``. For every account the order
credited (points, growth, ...), the member gives back
``floor(earned × refunded_total / paid_fen)`` minus what earlier refunds of the order already
asked back. Computing against the cumulative refunded total (not per refund) means rounding never
drifts: refunding an order in any number of parts reverses exactly what one full refund would.

What the member already spent cannot be taken back; the debit takes what is there and records the
rest as ``shortfall`` (the balance never goes negative). That shortfall is written off: later
refunds do not try to recover it again.

Coupons: the refund that makes the order fully refunded (one full refund, or the last of several
partial ones) gives back every coupon redeemed on the order whose template allows it
(``returnable_on_refund``), in the same transaction; a partial refund keeps them — the order still
happened, and the coupon's threshold may have been met by what was kept. The codes given back are
stored with the refund, so a replay answers the same.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from gateway import ledger
from gateway.commerce import order_coupons
from gateway.commerce.model import (
    MAX_FEN,
    ORD,
    PAID_STATUSES,
    REF,
    REFUND_STATUSES,
    RefundResult,
    check_int,
)
from gateway.errors import IdempotencyKeyReused, InvalidInput, InvalidTransition, NotFound
from gateway.events import record_event
from gateway.identity.model import check_aware
from gateway.identity.reads import resolve
from gateway.ids import derived_id
from gateway.rules.engine import add_growth_fact
from gateway.storage.db import Tx
from gateway.storage.types import utcnow

_REFUND_ID = re.compile(r"^[A-Za-z0-9_.:#/-]{1,64}$")


def _requested_before(refunds: list[Any]) -> dict[str, int]:
    """Per account, what earlier refunds asked back (taken + written-off shortfall)."""
    out: dict[str, int] = {}
    for r in refunds:
        result = r.result or {}
        for part in ("reversed", "shortfall"):
            for account, amount in (result.get(part) or {}).items():
                out[account] = out.get(account, 0) + int(amount)
    return out


async def _reverse(
    tx: Tx,
    order: Any,
    refund_id: str,
    refunded_total: int,
    earlier: list[Any],
    now: datetime,
    registry: Any = None,
) -> tuple[dict[str, int], dict[str, int]]:
    member_id = await resolve(tx, order.member_id, lock=True)
    if member_id is None:
        return {}, {}
    earned: dict[str, int] = {}
    for (account, kind), amount in (await ledger.amounts_by_source(tx, str(order.id))).items():
        if kind != "reversal" and amount > 0:
            earned[account] = earned.get(account, 0) + amount
    before = _requested_before(earlier)
    reversed_: dict[str, int] = {}
    shortfall: dict[str, int] = {}
    for account in sorted(earned):
        target = earned[account] * refunded_total // order.paid_fen
        due = target - before.get(account, 0)
        if due <= 0:
            continue
        result = await ledger.debit(
            tx,
            member_id=member_id,
            account=account,
            amount=due,
            reason=f"refund reversal {refund_id}",
            source="refund",
            idem_key=str(derived_id(tx.tenant_id, "refund", order.id, refund_id, account)),
            source_ref=str(order.id),
            kind="reversal",
            allow_shortfall=True,
            now=now,
        )
        reversed_[account] = -result.amount
        shortfall[account] = result.shortfall
        if account == "growth" and await _tiers_configured(tx, registry):
            # Tier periods count growth in business time, and a refund undoes the purchase: its
            # negative fact is dated at the payment, so it leaves a sliding window together
            # with the growth it cancels (never at an instant no event marks).
            fact_id = derived_id(tx.tenant_id, "refund", order.id, refund_id, "growth-fact")
            at = order.paid_at or now
            await add_growth_fact(tx, fact_id, member_id, -due, at, "refund")
    return reversed_, shortfall


async def _tiers_configured(tx: Tx, registry: Any) -> bool:
    from gateway.rules.config import active
    from gateway.rules.manager import default_registry

    cfg, _ = await active(tx, registry if registry is not None else default_registry())
    return cfg.tier_policy is not None


async def refund_order(
    tx: Tx,
    *,
    order_id: uuid.UUID,
    refund_id: str,
    amount_fen: int,
    reason: str | None = None,
    now: datetime | None = None,
    registry: Any = None,
) -> RefundResult:
    """Record a refund of ``amount_fen`` (≤ paid − refunded) and reverse its share of earnings."""
    now = check_aware(now, "now") if now is not None else utcnow()
    if not isinstance(refund_id, str) or not _REFUND_ID.match(refund_id):
        raise InvalidInput("refund_id must be 1-64 letters, digits or _.:#/-", field="refund_id")
    amount_fen = check_int(amount_fen, "amount_fen", 1, MAX_FEN)
    if reason is not None and (not isinstance(reason, str) or len(reason) > 200):
        raise InvalidInput("reason must be at most 200 characters", field="reason")
    t = tx.tenant_id
    order = (
        await tx.conn.execute(
            select(ORD).where(ORD.c.tenant_id == t, ORD.c.id == order_id).with_for_update()
        )
    ).first()
    if order is None:
        raise NotFound("order not found", id=str(order_id))
    refunds = (
        await tx.conn.execute(
            select(REF)
            .where(REF.c.tenant_id == t, REF.c.order_id == order_id)
            .order_by(REF.c.created_at)
        )
    ).all()
    for r in refunds:
        if r.refund_id == refund_id:
            if r.amount_fen != amount_fen:
                raise IdempotencyKeyReused(
                    f"refund {refund_id} was recorded with another amount ({r.amount_fen})"
                )
            result = r.result or {}
            return RefundResult(
                order_id,
                refund_id,
                amount_fen,
                order.status,
                True,
                dict(result.get("reversed") or {}),
                dict(result.get("shortfall") or {}),
                list(result.get("returned_coupons") or []),
            )
    if order.status not in PAID_STATUSES | REFUND_STATUSES:
        raise InvalidTransition(f"a {order.status} order cannot be refunded")
    if amount_fen > order.paid_fen - order.refunded_fen:
        raise InvalidInput(
            f"amount_fen exceeds the refundable {order.paid_fen - order.refunded_fen}",
            field="amount_fen",
        )
    refunded_total = order.refunded_fen + amount_fen
    status = "refunded" if refunded_total == order.paid_fen else "partially_refunded"
    reversed_: dict[str, int] = {}
    shortfall: dict[str, int] = {}
    if order.member_id is not None:
        reversed_, shortfall = await _reverse(
            tx, order, refund_id, refunded_total, refunds, now, registry
        )
    returned = await order_coupons.return_for_order(tx, order, now) if status == "refunded" else []
    result: dict[str, Any] = {"reversed": reversed_, "shortfall": shortfall}
    if returned:
        result["returned_coupons"] = returned
    await tx.conn.execute(
        insert(REF).values(
            tenant_id=t,
            order_id=order_id,
            refund_id=refund_id,
            amount_fen=amount_fen,
            reason=reason,
            result=result,
            created_at=now,
        )
    )
    await tx.conn.execute(
        update(ORD)
        .where(ORD.c.tenant_id == t, ORD.c.id == order_id)
        .values(refunded_fen=refunded_total, status=status, updated_at=now)
    )
    if order.member_id is not None:
        await record_event(
            tx,
            event_id=derived_id(t, "order", order_id, "refund", refund_id),
            member_id=order.member_id,
            type="order.refunded",
            payload={
                "order_id": str(order_id),
                "channel": order.channel,
                "external_id": order.external_id,
                "refund_id": refund_id,
                "amount_fen": amount_fen,
                "refunded_fen": refunded_total,
                "paid_fen": order.paid_fen,
                "reversed": reversed_,
                "shortfall": shortfall,
            },
            occurred_at=now,
        )
    return RefundResult(
        order_id, refund_id, amount_fen, status, False, reversed_, shortfall, returned
    )

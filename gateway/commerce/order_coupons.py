"""Coupons used on a recorded order: redeemed with the order, given back when it is undone.

Why here: a POS or storefront reports "this order used these codes" in the same call that
records the order, and the two must not drift apart — an order stored without its coupon being
spent (the member could use it again), or a coupon spent on an order that was never stored. So
``record_order`` redeems the codes in its own transaction, and any refusal raises
:class:`~gateway.errors.CouponRefused` (the code and the reason), which rolls the whole order back.

- **order_ref** of a recorded order is ``"<channel>:<external_id>"`` (stable: the order's natural
  key, known to the POS before the gateway assigns an id). Coupon statistics and ``coupon.*``
  events carry it.
- **idempotency**: each code is redeemed with ``idem_key = derived_id(tenant, "order-coupon",
  order_ref, code)``, so re-sending the order (a POS retry, an overlapping sync) answers the
  original discount; a code this order used and got back on a refund is skipped on a re-send (it
  must not be spent again by a stale copy of the order).
- **the order the coupon is checked against** is the recorded one: channel, store, ``total_fen``
  (before coupon discounts — ``paid_fen`` is what was paid after them) and the sale lines with
  their categories (return lines, with negative amounts, are left out). Recorded orders carry no
  shipping fee, so a ``shipping`` coupon takes 0 off here.
- **the owner**: the order's member must own the coupon (or be merged with its owner); a guest
  order (no member) checks the code as a bearer coupon, as ``validateCoupon`` does without one.
- **given back** (:func:`return_for_order`): when the order is fully refunded or cancelled, every
  coupon redeemed on it whose template allows (``returnable_on_refund``) is issued again; the
  others stay used. A partial refund keeps them: the order still happened.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from gateway import coupons
from gateway.commerce.model import REFUND_STATUSES
from gateway.coupons.model import C
from gateway.coupons.model import T as TEMPLATE
from gateway.errors import CouponRefused, InvalidInput, NotEligible
from gateway.ids import derived_id
from gateway.storage.db import Tx

MAX_COUPONS = 10


def order_ref(channel: str, external_id: str) -> str:
    """The reference a recorded order's coupons are redeemed under."""
    return f"{channel}:{external_id}"


def check_codes(codes: Sequence[str] | None) -> list[str]:
    """The codes as given (dropping exact repeats); at most :data:`MAX_COUPONS` strings."""
    if codes is None:
        return []
    if isinstance(codes, str) or not isinstance(codes, Sequence) or len(codes) > MAX_COUPONS:
        raise InvalidInput(f"coupons must be a list of at most {MAX_COUPONS} codes", "coupons")
    if not all(isinstance(c, str) for c in codes):
        raise InvalidInput("coupon codes must be strings", field="coupons")
    return list(dict.fromkeys(codes))


def coupon_order(row: Any, lines: Sequence[Any]) -> coupons.Order:
    """What the coupon rules see of a recorded order (see the module docstring)."""
    return coupons.Order(
        channel=row.channel,
        store_code=row.store_code,
        lines=[
            coupons.OrderLine(category=ln.category, amount_fen=ln.amount_fen, sku=ln.sku)
            for ln in lines
            if ln.amount_fen >= 0
        ],
        total_fen=row.total_fen,
    )


async def redeem_for_order(
    tx: Tx,
    row: Any,
    lines: Sequence[Any],
    codes: list[str],
    *,
    member_id: uuid.UUID | None,
    now: datetime,
) -> list[coupons.Discount]:
    """Redeem ``codes`` on the recorded order ``row``; raises ``CouponRefused`` on the first
    code that cannot be used (the caller's transaction must then roll back — every API path
    does). Returns the discounts in input order, replays included."""
    if not codes:
        return []
    ref = order_ref(row.channel, row.external_id)
    canonical_codes: list[str] = []
    for code in codes:
        try:
            canonical_codes.append(coupons.parse_code(code))
        except InvalidInput as exc:
            raise CouponRefused(
                f"coupon {code!r}: no such coupon", coupon_code=code, reason="NOT_FOUND"
            ) from exc
    # Read by code (the unique index), never by order_ref alone (a scan of every coupon).
    state = {
        r.code: r
        for r in await tx.conn.execute(
            select(C.c.code, C.c.status, C.c.order_ref, C.c.returned_from).where(
                C.c.tenant_id == tx.tenant_id, C.c.code.in_(canonical_codes)
            )
        )
    }
    # Skipped, not spent: a code this order used and got back on a refund (a stale re-send);
    # and, once the order is (partly) refunded, any code not still redeemed on it — a re-send
    # must not spend a coupon the member has since used elsewhere and had returned again.
    given_back = {
        code
        for code, r in state.items()
        if r.returned_from == ref
        or (row.status in REFUND_STATUSES and not (r.status == "redeemed" and r.order_ref == ref))
    }
    full = coupon_order(row, lines)
    out: list[coupons.Discount] = []
    seen: set[str] = set()
    taken = 0
    for code, canonical in zip(codes, canonical_codes, strict=True):
        if canonical in seen or canonical in given_back:
            continue
        seen.add(canonical)
        # Stacked coupons apply one after another: each sees the order less what the earlier
        # ones took (its threshold too), so together they never take more than the order.
        order = dataclasses.replace(full, discounted_fen=min(taken, full.total_fen))
        try:
            found = await coupons.redeem(
                tx,
                canonical,
                order,
                order_ref=ref,
                idem_key=str(derived_id(tx.tenant_id, "order-coupon", ref, canonical)),
                member_id=member_id,
                now=now,
            )
        except NotEligible as exc:
            raise CouponRefused(
                f"coupon {code!r}: {exc.message}", coupon_code=code, reason=exc.reason
            ) from exc
        taken += found.discount_fen
        out.append(found)
    return out


async def return_for_order(tx: Tx, row: Any, now: datetime) -> list[str]:
    """Give back every coupon redeemed on ``row`` whose template allows it; returns their codes
    (sorted). Idempotent: a coupon already given back is no longer redeemed on the order."""
    ref = order_ref(row.channel, row.external_id)
    used = (
        await tx.conn.execute(
            select(C.c.code, TEMPLATE.c.returnable_on_refund)
            .join_from(
                C,
                TEMPLATE,
                (TEMPLATE.c.tenant_id == C.c.tenant_id) & (TEMPLATE.c.id == C.c.template_id),
            )
            .where(C.c.tenant_id == tx.tenant_id, C.c.order_ref == ref, C.c.status == "redeemed")
            .order_by(C.c.code)
        )
    ).all()
    returned: list[str] = []
    for code, returnable in used:
        if returnable and await coupons.return_on_refund(tx, code, ref, now=now):
            returned.append(code)
    return returned


__all__ = ["MAX_COUPONS", "check_codes", "order_ref", "redeem_for_order", "return_for_order"]

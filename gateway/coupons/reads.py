"""Batch reads for the API: many members' coupons, or many templates, in one statement."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select

from gateway.coupons.model import (
    STATUSES,
    C,
    Coupon,
    T,
    Template,
    coupon_from_row,
    template_from_row,
)
from gateway.errors import InvalidInput
from gateway.storage.db import Tx

MAX_PER_MEMBER = 100


async def coupons_of(
    tx: Tx, member_ids: Sequence[uuid.UUID], *, limit: int = 20, status: str | None = None
) -> dict[uuid.UUID, list[Coupon]]:
    """Each member's newest ``limit`` coupons (optionally only in ``status``), newest first —
    one ``ROW_NUMBER()`` statement for the whole list (``Member.coupons`` on a page of
    members)."""
    if type(limit) is not int or not 1 <= limit <= MAX_PER_MEMBER:
        raise InvalidInput(f"limit must be an integer in 1..{MAX_PER_MEMBER}", field="first")
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", field="status")
    keys = list(dict.fromkeys(member_ids))
    out: dict[uuid.UUID, list[Coupon]] = {k: [] for k in keys}
    if not keys:
        return out
    cond = [C.c.tenant_id == tx.tenant_id, C.c.member_id.in_(keys)]
    if status is not None:
        cond.append(C.c.status == status)
    rn = (
        func.row_number()
        .over(partition_by=C.c.member_id, order_by=(C.c.issued_at.desc(), C.c.id.desc()))
        .label("rn")
    )
    inner = select(C, rn).where(*cond).subquery()
    rows = await tx.conn.execute(
        select(inner).where(inner.c.rn <= limit).order_by(inner.c.member_id, inner.c.rn)
    )
    for r in rows:
        out.setdefault(r.member_id, []).append(coupon_from_row(r))
    return out


async def templates_by_id(tx: Tx, template_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Template]:
    """Templates by id (absent ids are left out) — ``Coupon.template`` on a list of coupons."""
    keys = list(dict.fromkeys(template_ids))
    if not keys:
        return {}
    rows = await tx.conn.execute(select(T).where(T.c.tenant_id == tx.tenant_id, T.c.id.in_(keys)))
    return {r.id: template_from_row(r) for r in rows}

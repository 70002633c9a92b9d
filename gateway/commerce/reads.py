"""Batch reads of orders for the API's DataLoaders: one statement per batch."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import and_, func, or_, select

from gateway.commerce.model import LINE, ORD, LineRow, OrderRow, line_row, order_row
from gateway.errors import InvalidInput
from gateway.storage.db import Tx

MAX_PAGE = 1000


def _ids(ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    return list(dict.fromkeys(ids))


async def get_orders(tx: Tx, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, OrderRow]:
    wanted = _ids(ids)
    if not wanted:
        return {}
    rows = await tx.conn.execute(
        select(ORD).where(ORD.c.tenant_id == tx.tenant_id, ORD.c.id.in_(wanted))
    )
    return {r.id: order_row(r) for r in rows}


async def lines_for(tx: Tx, order_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[LineRow]]:
    wanted = _ids(order_ids)
    out: dict[uuid.UUID, list[LineRow]] = {o: [] for o in wanted}
    if not wanted:
        return out
    rows = await tx.conn.execute(
        select(LINE)
        .where(LINE.c.tenant_id == tx.tenant_id, LINE.c.order_id.in_(wanted))
        .order_by(LINE.c.order_id, LINE.c.line_no)
    )
    for r in rows:
        out[r.order_id].append(line_row(r))
    return out


async def latest_orders_for(
    tx: Tx, member_ids: Iterable[uuid.UUID], *, limit_per_member: int = 5
) -> dict[uuid.UUID, list[OrderRow]]:
    """Each member's newest orders (by ``placed_at``), in one ``ROW_NUMBER()`` statement."""
    wanted = _ids(member_ids)
    if not isinstance(limit_per_member, int) or not 1 <= limit_per_member <= 100:
        raise InvalidInput("limit_per_member must be 1-100", field="limit_per_member")
    out: dict[uuid.UUID, list[OrderRow]] = {m: [] for m in wanted}
    if not wanted:
        return out
    rn = (
        func.row_number()
        .over(partition_by=ORD.c.member_id, order_by=(ORD.c.placed_at.desc(), ORD.c.id.desc()))
        .label("rn")
    )
    ranked = (
        select(ORD, rn)
        .where(ORD.c.tenant_id == tx.tenant_id, ORD.c.member_id.in_(wanted))
        .subquery()
    )
    rows = await tx.conn.execute(
        select(ranked)
        .where(ranked.c.rn <= limit_per_member)
        .order_by(ranked.c.member_id, ranked.c.rn)
    )
    for r in rows:
        out[r.member_id].append(order_row(r))
    return out


async def orders_page(
    tx: Tx, member_id: uuid.UUID, *, first: int, after: uuid.UUID | None
) -> list[OrderRow]:
    """A member's orders newest first, keyset-paged after the order ``after``; up to
    ``first + 1`` rows so the caller knows whether there is a next page."""
    if not isinstance(first, int) or not 0 <= first <= MAX_PAGE:
        raise InvalidInput(f"first must be between 0 and {MAX_PAGE}", field="first")
    conds = [ORD.c.tenant_id == tx.tenant_id, ORD.c.member_id == member_id]
    if after is not None:
        cursor = select(ORD.c.placed_at).where(ORD.c.tenant_id == tx.tenant_id, ORD.c.id == after)
        placed = cursor.scalar_subquery()
        conds.append(
            or_(ORD.c.placed_at < placed, and_(ORD.c.placed_at == placed, ORD.c.id < after))
        )
    rows = await tx.conn.execute(
        select(ORD).where(*conds).order_by(ORD.c.placed_at.desc(), ORD.c.id.desc()).limit(first + 1)
    )
    return [order_row(r) for r in rows]

"""Batch reads of orders for the API's DataLoaders: one statement per batch."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from sqlalchemy import Integer, and_, bindparam, func, or_, select

from gateway.commerce.model import LINE, ORD, LineRow, OrderRow, order_row
from gateway.errors import InvalidInput
from gateway.sql import BatchRead, in_ids
from gateway.storage.db import Tx

MAX_PAGE = 1000


def _ids(ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    return list(dict.fromkeys(ids))


_ORDER_FIELDS = tuple(f.name for f in fields(OrderRow))
"""Orders are selected in ``OrderRow`` field order, so a row (either backend) is
``OrderRow(*row)``."""

_GET_ORDERS = BatchRead(
    lambda d: select(*[ORD.c[n] for n in _ORDER_FIELDS]).where(
        ORD.c.tenant_id == bindparam("tenant_id"), in_ids(ORD.c.id, d)
    )
)


async def get_orders(tx: Tx, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, OrderRow]:
    wanted = _ids(ids)
    if not wanted:
        return {}
    rows = await _GET_ORDERS.fetch(tx, tenant_id=tx.tenant_id, ids=wanted)
    return {r[0]: OrderRow(*r) for r in rows}


_LINES_FOR = BatchRead(
    lambda d: (
        select(LINE.c.order_id, *[LINE.c[f.name] for f in fields(LineRow)])
        .where(LINE.c.tenant_id == bindparam("tenant_id"), in_ids(LINE.c.order_id, d))
        .order_by(LINE.c.order_id, LINE.c.line_no)
    )
)
"""``order_id`` then the columns in ``LineRow`` field order."""


async def lines_for(tx: Tx, order_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[LineRow]]:
    wanted = _ids(order_ids)
    out: dict[uuid.UUID, list[LineRow]] = {o: [] for o in wanted}
    if not wanted:
        return out
    for r in await _LINES_FOR.fetch(tx, tenant_id=tx.tenant_id, ids=wanted):
        out[r[0]].append(LineRow(*r[1:]))
    return out


def _latest_orders(dialect: str) -> Any:
    rn = (
        func.row_number()
        .over(partition_by=ORD.c.member_id, order_by=(ORD.c.placed_at.desc(), ORD.c.id.desc()))
        .label("rn")
    )
    ranked = (
        select(*[ORD.c[n] for n in _ORDER_FIELDS], rn)
        .where(ORD.c.tenant_id == bindparam("tenant_id"), in_ids(ORD.c.member_id, dialect))
        .subquery()
    )
    return (
        select(*[ranked.c[n] for n in _ORDER_FIELDS])
        .where(ranked.c.rn <= bindparam("limit", type_=Integer))
        .order_by(ranked.c.member_id, ranked.c.rn)
    )


_LATEST_ORDERS_FOR = BatchRead(_latest_orders)


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
    rows = await _LATEST_ORDERS_FOR.fetch(
        tx, tenant_id=tx.tenant_id, ids=wanted, limit=limit_per_member
    )
    for r in rows:
        order = OrderRow(*r)
        out[order.member_id].append(order)  # type: ignore[index]
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

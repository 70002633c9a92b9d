"""Statistics per coupon template (what the coupon dashboard reads), from the coupon rows alone.

Definitions (all money in fen; a window ``[since, until)`` is optional on both ends):

- ``issued``: coupons issued (``issued_at`` in the window);
- ``redeemed``: coupons *currently* redeemed (``redeemed_at`` in the window) — a coupon given
  back on refund is not counted, nor is its order;
- ``redemption_rate``: ``redeemed / issued`` of the same window (0.0 when nothing was issued); a
  window's rate can exceed 1 when coupons issued before it are redeemed in it;
- ``expired``: unused coupons that ended (``valid_until`` in the window): marked ``expired`` by
  the sweeper, or still ``issued`` with ``valid_until`` before ``now`` (not swept yet);
- ``orders``: distinct orders (``order_ref``) the redeemed coupons were used on;
- ``revenue_fen``: the sum of those orders' totals before discounts (``order.total_fen`` as the
  redeemer reported it), each order once even when it used two coupons of the template;
- ``discount_fen``: what the redeemed coupons took off;
- ``by_channel`` / ``by_store``: the redemption figures split by where the order was placed
  (``store`` ``None``: orders without a store, e.g. online).

Two grouped statements: one over the template's coupons, one over its redemptions grouped per
(channel, store, order) and then per (channel, store); the channel and store splits are sums of
the second's few rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, true

from gateway.coupons.model import C
from gateway.coupons.templates import get_template
from gateway.errors import InvalidInput
from gateway.ledger import validation as v
from gateway.storage.db import Tx


@dataclass(frozen=True)
class Slice:
    """Redemptions on one channel or in one store (``key``)."""

    key: str | None
    redeemed: int
    orders: int
    revenue_fen: int
    discount_fen: int


@dataclass(frozen=True)
class TemplateStats:
    template_id: uuid.UUID
    template_code: str
    since: datetime | None
    until: datetime | None
    issued: int
    redeemed: int
    redemption_rate: float
    expired: int
    orders: int
    revenue_fen: int
    discount_fen: int
    by_channel: list[Slice]
    by_store: list[Slice]


def _within(column: Any, since: datetime | None, until: datetime | None) -> Any:
    cond = []
    if since is not None:
        cond.append(column >= since)
    if until is not None:
        cond.append(column < until)
    return and_(*cond) if cond else true()


def _count(cond: Any) -> Any:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


def _slices(groups: dict[str | None, list[int]]) -> list[Slice]:
    return [
        Slice(k, *g) for k, g in sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    ]


async def template_stats(
    tx: Tx,
    template: uuid.UUID | str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> TemplateStats:
    """The figures of one template (id or code), optionally for the window ``[since, until)``.
    ``NotFound`` for an unknown template; ``InvalidInput`` for a naive or empty window."""
    now = v.now_or(now)
    if since is not None:
        v.aware(since, "from")
    if until is not None:
        v.aware(until, "to")
    if since is not None and until is not None and until <= since:
        raise InvalidInput("the window must end after it starts", field="to")
    t = await get_template(tx, template)
    mine = (C.c.tenant_id == tx.tenant_id, C.c.template_id == t.id)

    ended = or_(C.c.status == "expired", and_(C.c.status == "issued", C.c.valid_until <= now))
    totals = (
        await tx.conn.execute(
            select(
                _count(_within(C.c.issued_at, since, until)),
                _count(and_(C.c.status == "redeemed", _within(C.c.redeemed_at, since, until))),
                _count(and_(ended, _within(C.c.valid_until, since, until))),
            ).where(*mine)
        )
    ).one()
    issued, redeemed, expired = (int(x) for x in totals)

    per_order = (
        select(
            C.c.redeemed_channel.label("channel"),
            C.c.redeemed_store.label("store"),
            func.count().label("coupons"),
            func.coalesce(func.sum(C.c.discount_fen), 0).label("discount"),
            func.coalesce(func.max(C.c.order_total_fen), 0).label("total"),
        )
        .where(*mine, C.c.status == "redeemed", _within(C.c.redeemed_at, since, until))
        .group_by(C.c.redeemed_channel, C.c.redeemed_store, C.c.order_ref)
        .subquery()
    )
    rows = await tx.conn.execute(
        select(
            per_order.c.channel,
            per_order.c.store,
            func.sum(per_order.c.coupons),
            func.count(literal(1)),
            func.sum(per_order.c.total),
            func.sum(per_order.c.discount),
        ).group_by(per_order.c.channel, per_order.c.store)
    )
    by_channel: dict[str | None, list[int]] = {}
    by_store: dict[str | None, list[int]] = {}
    orders = revenue = discount = 0
    for channel, store, n, o, rev, disc in rows:
        figures = [int(n), int(o), int(rev or 0), int(disc or 0)]
        for groups, key in ((by_channel, channel), (by_store, store)):
            acc = groups.setdefault(key, [0, 0, 0, 0])
            for i, x in enumerate(figures):
                acc[i] += x
        orders += figures[1]
        revenue += figures[2]
        discount += figures[3]
    return TemplateStats(
        template_id=t.id,
        template_code=t.code,
        since=since,
        until=until,
        issued=issued,
        redeemed=redeemed,
        redemption_rate=redeemed / issued if issued else 0.0,
        expired=expired,
        orders=orders,
        revenue_fen=revenue,
        discount_fen=discount,
        by_channel=_slices(by_channel),
        by_store=_slices(by_store),
    )

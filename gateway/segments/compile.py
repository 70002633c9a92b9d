"""Compile a :class:`~gateway.segments.filter.Filter` to ONE set-based SQL query.

The query selects the ids of the tenant's *active* members matching the filter (SQLAlchemy Core,
the same statement on SQLite and PostgreSQL). Conditions become ``IN`` / ``EXISTS`` subqueries on
the member row; order-based conditions (spend, recency, order count) share one grouped aggregate
over ``orders`` that is LEFT-joined, so members without orders take part (``never``, ``max``).

Semantics (documented in gateway/README.md):

- tier: the *effective* stored tier — an unexpired override, else the natural tier
  (``member_tier``); members without tier state match no tier;
- tags: read through merges (a survivor has the tags of members merged into it);
- orders count when paid, completed or (partially) refunded; an order's time is its ``paid_at``
  (or ``placed_at``); spend is Σ(paid − refunded) fen; order count excludes fully refunded
  orders; ``last_order`` looks at orders that are not fully refunded;
- channels ``via identity``: an identifier was reported by the channel; ``via order``: an order
  counted above on that channel; ``via any``: either;
- birthday month: the stored birthday's month; joined: ``member.created_at`` in ``[from, to)``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, extract, func, literal, or_, select

from gateway.commerce.model import ORD
from gateway.segments.filter import Filter
from gateway.storage.tables import Identity, MemberTier
from gateway.tags.store import M, owned_tags

IDN: Any = Identity.__table__  # type: ignore[attr-defined]
TIER: Any = MemberTier.__table__  # type: ignore[attr-defined]
COUNTED = ("paid", "completed", "partially_refunded", "refunded")
NOT_REFUNDED = ("paid", "completed", "partially_refunded")


def _cutoff(now: datetime, days: int | None) -> datetime | None:
    return now - timedelta(days=days) if days is not None else None


def _orders_agg(tenant_id: uuid.UUID, f: Filter, now: datetime) -> Any:
    at = func.coalesce(ORD.c.paid_at, ORD.c.placed_at)
    net = ORD.c.paid_fen - ORD.c.refunded_fen
    kept = ORD.c.status.in_(NOT_REFUNDED)
    cols: list[Any] = [ORD.c.member_id.label("member_id")]
    if f.spend is not None:
        cut = _cutoff(now, f.spend.within_days)
        expr = net if cut is None else case((at >= cut, net), else_=0)
        cols.append(func.sum(expr).label("spend"))
    if f.order_count is not None:
        cut = _cutoff(now, f.order_count.within_days)
        cond = kept if cut is None else and_(kept, at >= cut)
        cols.append(func.sum(case((cond, 1), else_=0)).label("n"))
    if f.last_order is not None:
        cols.append(func.max(case((kept, at), else_=None)).label("last"))
    return (
        select(*cols)
        .where(
            ORD.c.tenant_id == tenant_id,
            ORD.c.member_id.isnot(None),
            ORD.c.status.in_(COUNTED),
        )
        .group_by(ORD.c.member_id)
        .subquery("agg")
    )


def member_ids_query(tenant_id: uuid.UUID, f: Filter, now: datetime) -> Any:
    """``SELECT member.id …`` for the active members of ``tenant_id`` matching ``f`` at ``now``."""
    conds: list[Any] = [M.c.tenant_id == tenant_id, M.c.status == "active"]
    source: Any = M
    if f.tiers is not None:
        live = and_(
            TIER.c.override.isnot(None),
            or_(TIER.c.override_until.is_(None), TIER.c.override_until > now),
        )
        effective = case((live, TIER.c.override), else_=TIER.c.tier)
        conds.append(
            M.c.id.in_(
                select(TIER.c.member_id).where(
                    TIER.c.tenant_id == tenant_id, effective.in_(list(f.tiers))
                )
            )
        )
    if f.tags is not None:
        owned = owned_tags(tenant_id).subquery("owned")
        if f.tags.any:
            conds.append(M.c.id.in_(select(owned.c.owner).where(owned.c.tag.in_(f.tags.any))))
        if f.tags.all:
            conds.append(
                M.c.id.in_(
                    select(owned.c.owner)
                    .where(owned.c.tag.in_(f.tags.all))
                    .group_by(owned.c.owner)
                    .having(func.count(owned.c.tag.distinct()) == len(f.tags.all))
                )
            )
        if f.tags.none:
            conds.append(
                M.c.id.not_in(
                    select(owned.c.owner).where(
                        owned.c.tag.in_(f.tags.none), owned.c.owner.isnot(None)
                    )
                )
            )
    if f.channels is not None:
        chans = list(f.channels.any)
        by_identity = exists().where(
            IDN.c.tenant_id == tenant_id, IDN.c.member_id == M.c.id, IDN.c.channel.in_(chans)
        )
        by_order = exists().where(
            ORD.c.tenant_id == tenant_id,
            ORD.c.member_id == M.c.id,
            ORD.c.channel.in_(chans),
            ORD.c.status.in_(COUNTED),
        )
        via = f.channels.via
        conds.append(
            by_identity
            if via == "identity"
            else by_order
            if via == "order"
            else or_(by_identity, by_order)
        )
    if f.birthday_month is not None:
        conds.append(M.c.birthday.isnot(None))
        conds.append(extract("month", M.c.birthday).in_(list(f.birthday_month)))
    if f.joined is not None:
        if f.joined.start is not None:
            conds.append(M.c.created_at >= f.joined.start)
        if f.joined.end is not None:
            conds.append(M.c.created_at < f.joined.end)
    if f.needs_orders:
        agg = _orders_agg(tenant_id, f, now)
        source = M.outerjoin(agg, agg.c.member_id == M.c.id)
        if f.spend is not None:
            spend = func.coalesce(agg.c.spend, 0)
            if f.spend.min_fen is not None:
                conds.append(spend >= f.spend.min_fen)
            if f.spend.max_fen is not None:
                conds.append(spend <= f.spend.max_fen)
        if f.order_count is not None:
            n = func.coalesce(agg.c.n, 0)
            if f.order_count.min is not None:
                conds.append(n >= f.order_count.min)
            if f.order_count.max is not None:
                conds.append(n <= f.order_count.max)
        lo = f.last_order
        if lo is not None:
            if lo.never:
                conds.append(agg.c.last.is_(None))
            elif lo.within_days is not None:
                conds.append(agg.c.last >= now - timedelta(days=lo.within_days))
            elif lo.over_days is not None:
                conds.append(agg.c.last < now - timedelta(days=lo.over_days))
    return select(M.c.id.label("member_id")).select_from(source).where(*conds)


def count_query(tenant_id: uuid.UUID, f: Filter, now: datetime) -> Any:
    """``SELECT count(*)`` of :func:`member_ids_query`."""
    q = member_ids_query(tenant_id, f, now).subquery("matched")
    return select(func.count()).select_from(q).where(literal(True))

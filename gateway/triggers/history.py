"""Set-based reads the state triggers share: member batches and each member's paid orders.

A member's orders are the paid orders of the member *and of every member merged into it* (a merge
moves orders to the survivor, but an order synced under a loser's id in between still counts).
The order time is ``paid_at`` (``placed_at`` when the channel gave none); "paid" means the order
was paid and is not wholly refunded (``paid``, ``completed``, ``partially_refunded``).

Each function reads one batch of members with a fixed number of statements — never one per
member — so a 100k-member tenant is a few hundred short reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, extract, func, select, text

from gateway.sql import in_ids
from gateway.storage.db import Tx
from gateway.storage.tables import Member, Order
from gateway.triggers.base import Candidate, ScanRun

M: Any = Member.__table__  # type: ignore[attr-defined]
ORD: Any = Order.__table__  # type: ignore[attr-defined]
PAID = ("paid", "completed", "partially_refunded")
"""Order statuses that count as a purchase."""
DAY_SECONDS = 86400


async def custom_plans(tx: Tx) -> None:
    """PostgreSQL: plan this read transaction's statements for their actual parameters.

    The scans run the same prepared statements hundreds of times; after five, PostgreSQL may
    switch to a generic plan that cannot see how few members a batch's ``ids`` array holds and
    windows over the tenant's whole order table — measured 0.5 s instead of 30 ms per batch of
    500 at 100k members."""
    if tx.dialect == "postgresql":
        await tx.conn.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


async def member_batch(tx: Tx, after: uuid.UUID | None, limit: int) -> Sequence[Any]:
    """The next ``limit`` active members after ``after`` (``id``, ``created_at``), by id."""
    cond = [M.c.tenant_id == tx.tenant_id, M.c.status == "active"]
    if after is not None:
        cond.append(M.c.id > after)
    stmt = select(M.c.id, M.c.created_at).where(*cond).order_by(M.c.id).limit(limit)
    return (await tx.conn.execute(stmt)).all()


async def with_merged(tx: Tx, run: ScanRun, ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """``ids`` plus the members merged into them (the tenant's merges are read once per run).
    Pass the result to :func:`last_orders` / :func:`rhythms`: a batch without merged members
    (the common case) reads ``orders`` alone, without joining ``member``."""
    losers: dict[uuid.UUID, list[uuid.UUID]] | None = run.memo.get("losers")
    if losers is None:
        losers = {}
        rows = await tx.conn.execute(
            select(M.c.id, M.c.merged_into).where(
                M.c.tenant_id == tx.tenant_id, M.c.merged_into.is_not(None)
            )
        )
        for loser, survivor in rows:
            losers.setdefault(survivor, []).append(loser)
        run.memo["losers"] = losers
    out = list(ids)
    for i in ids:
        out.extend(losers.get(i, ()))
    return out


class MemberScan:
    """A state trigger that walks the tenant's active members themselves (dormant, purchase
    slowing): each batch reads the next members (:func:`member_batch`), widens them with the
    members merged into them (:func:`with_merged`) and asks :meth:`candidates` which fire."""

    async def scan(
        self, tx: Tx, run: ScanRun, after: uuid.UUID | None, limit: int
    ) -> tuple[list[Candidate], uuid.UUID | None]:
        await custom_plans(tx)
        members = await member_batch(tx, after, limit)
        if not members:
            return [], None
        ids = await with_merged(tx, run, [m.id for m in members])
        out = await self.candidates(tx, run, members, ids)
        return out, members[-1].id if len(members) == limit else None

    async def candidates(
        self, tx: Tx, run: ScanRun, members: Sequence[Any], ids: list[uuid.UUID]
    ) -> list[Candidate]:
        """The batch's candidates in member id order: ``members`` as :func:`member_batch` reads
        them, ``ids`` their ids then the merged ones' (for :func:`last_orders` / :func:`rhythms`,
        with ``len(members)`` as the batch size)."""
        raise NotImplementedError


def _orders(tx: Tx, merged: bool) -> Any:
    """CTE ``o(owner, oid, at)``: paid orders of the members bound to ``ids``, by survivor.

    Without merged members among ``ids`` the owner is the order's member: no join (PostgreSQL
    would hash-join the whole ``member`` table for a batch of 500)."""
    at = func.coalesce(ORD.c.paid_at, ORD.c.placed_at)
    if merged:
        m2 = M.alias("om")
        owner = func.coalesce(m2.c.merged_into, m2.c.id)
        source = ORD.join(m2, and_(m2.c.tenant_id == ORD.c.tenant_id, m2.c.id == ORD.c.member_id))
    else:
        owner, source = ORD.c.member_id, ORD
    return (
        select(owner.label("owner"), ORD.c.id.label("oid"), at.label("at"))
        .select_from(source)
        .where(
            ORD.c.tenant_id == tx.tenant_id,
            ORD.c.status.in_(PAID),
            in_ids(ORD.c.member_id, tx.dialect),
        )
        .cte("o")
    )


async def last_orders(
    tx: Tx, ids: Sequence[uuid.UUID], batch: int
) -> dict[uuid.UUID, tuple[uuid.UUID, Any]]:
    """member → (id, time) of its latest paid order (ties: the greater id), for ``ids`` — the
    first ``batch`` are the members, any further ones merged into them (:func:`with_merged`)."""
    o = _orders(tx, len(ids) > batch)
    rn = func.row_number().over(partition_by=o.c.owner, order_by=(o.c.at.desc(), o.c.oid.desc()))
    ranked = select(o.c.owner, o.c.oid, o.c.at, rn.label("rn")).subquery()
    stmt = select(ranked.c.owner, ranked.c.oid, ranked.c.at).where(ranked.c.rn == 1)
    rows = await tx.conn.execute(stmt, {"ids": list(ids)})
    return {r.owner: (r.oid, r.at) for r in rows}


async def rhythms(tx: Tx, ids: Sequence[uuid.UUID], batch: int) -> list[Any]:
    """Each member's purchase rhythm, computed by the database with window functions.

    Rows ``(owner, oid, at, median, k)``: the latest paid order (``oid``, ``at``) and the median
    ``median`` (seconds) of the ``k`` gaps between consecutive paid orders that are at least a day
    long — a split order or a second purchase the same afternoon is one visit, not a rhythm. Only
    members with ``k ≥ 1`` appear. The median is the middle gap (odd ``k``) or the mean of the two
    middle ones, picked by ``2·rn ∈ [k, k+2]`` so both backends use integer arithmetic only.
    """
    o = _orders(tx, len(ids) > batch)
    order_asc = (o.c.at, o.c.oid)
    g = select(
        o.c.owner,
        o.c.oid,
        o.c.at,
        func.lag(o.c.at).over(partition_by=o.c.owner, order_by=order_asc).label("prev"),
        func.row_number()
        .over(partition_by=o.c.owner, order_by=(o.c.at.desc(), o.c.oid.desc()))
        .label("recency"),
    ).cte("g")
    if tx.dialect == "postgresql":
        seconds = func.round(extract("epoch", g.c.at - g.c.prev))
    else:
        seconds = func.round((func.julianday(g.c.at) - func.julianday(g.c.prev)) * DAY_SECONDS)
    gaps = select(g.c.owner, seconds.label("gap")).where(g.c.prev.is_not(None)).cte("gaps")
    ranked = (
        select(
            gaps.c.owner,
            gaps.c.gap,
            func.row_number().over(partition_by=gaps.c.owner, order_by=gaps.c.gap).label("rn"),
            func.count().over(partition_by=gaps.c.owner).label("k"),
        )
        .where(gaps.c.gap >= DAY_SECONDS)
        .cte("ranked")
    )
    med = (
        select(
            ranked.c.owner,
            func.avg(ranked.c.gap).label("median"),
            func.max(ranked.c.k).label("k"),
        )
        .where(ranked.c.rn * 2 >= ranked.c.k, ranked.c.rn * 2 <= ranked.c.k + 2)
        .group_by(ranked.c.owner)
        .cte("med")
    )
    last = select(g.c.owner, g.c.oid, g.c.at).where(g.c.recency == 1).cte("last")
    stmt = select(last.c.owner, last.c.oid, last.c.at, med.c.median, med.c.k).join_from(
        last, med, med.c.owner == last.c.owner
    )
    return list((await tx.conn.execute(stmt, {"ids": list(ids)})).all())

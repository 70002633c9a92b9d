"""Behaviour tags derived from orders, incrementally and set-based.

``category:<name>`` for every product category a member has bought and ``channel:<code>`` for
every sales channel they have bought on (paid, completed or partially refunded orders; a later
refund does not remove the tag — it says "has bought", not "owns"). Tags are normalised and cut
to 64 characters (:func:`gateway.tags.normalise.sql_normal`), source ``behaviour``, author
``derive``.

Why a job and not inline on order recording: the order path is the hot path (one short
transaction, a fixed handful of statements, the set-based sync batch path); tagging there would
add a statement per order and couple every order writer to tagging. The job is two
``INSERT … SELECT … ON CONFLICT DO NOTHING`` statements per run, whatever the number of orders, so
running it every few minutes from cron costs little. Tags therefore lag orders by up to one run.

Incremental: the ``job_cursor`` row ``tags.derive`` keeps the highest ``orders.updated_at`` seen.
A run covers orders updated after ``cursor − OVERLAP`` (a transaction that committed late with an
earlier timestamp is still seen; re-tagging is a no-op) up to the newest ``updated_at`` at the
start of the run. Orders are stored on the survivor on merge; a tag on a member merged since is
read through ``merged_into`` anyway (:mod:`gateway.tags.store`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, literal, select

from gateway.commerce.model import LINE, ORD
from gateway.sql import upsert_insert
from gateway.storage.db import Database, Tx
from gateway.storage.tables import JobCursor
from gateway.storage.types import utcnow
from gateway.tags.normalise import sql_normal
from gateway.tags.store import MT

JC: Any = JobCursor.__table__  # type: ignore[attr-defined]
JOB = "tags.derive"
OVERLAP = timedelta(minutes=10)
BOUGHT = ("paid", "completed", "partially_refunded")


@dataclass
class DeriveReport:
    """What one derivation run did for one tenant."""

    since: datetime | None
    upto: datetime | None
    added: int = 0


async def _cursor(tx: Tx) -> datetime | None:
    row = (
        await tx.conn.execute(
            select(JC.c.value).where(JC.c.tenant_id == tx.tenant_id, JC.c.name == JOB)
        )
    ).first()
    if row is None or not row.value.get("updated_at"):
        return None
    return datetime.fromisoformat(row.value["updated_at"])


async def _save_cursor(tx: Tx, upto: datetime, now: datetime) -> None:
    ins = upsert_insert(tx, JC).values(
        tenant_id=tx.tenant_id, name=JOB, value={"updated_at": upto.isoformat()}, updated_at=now
    )
    await tx.conn.execute(
        ins.on_conflict_do_update(
            index_elements=[JC.c.tenant_id, JC.c.name],
            set_={"value": ins.excluded.value, "updated_at": ins.excluded.updated_at},
        )
    )


def _insert(tx: Tx, prefix: str, value: Any, source: Any, conds: list[Any], now: datetime) -> Any:
    rows = (
        select(
            ORD.c.tenant_id,
            ORD.c.member_id,
            sql_normal(tx.dialect, prefix, value).label("tag"),
            literal("behaviour").label("source"),
            literal("derive").label("created_by"),
            literal(now, MT.c.created_at.type).label("created_at"),
        )
        .select_from(source)
        .where(*conds, value.isnot(None), func.trim(value) != "")
        .distinct()
    )
    cols = ["tenant_id", "member_id", "tag", "source", "created_by", "created_at"]
    return upsert_insert(tx, MT).from_select(cols, rows).on_conflict_do_nothing()


async def derive_in(tx: Tx, *, now: datetime | None = None, full: bool = False) -> DeriveReport:
    """One derivation run inside ``tx`` (see the module docstring); ``full`` ignores the cursor."""
    now = now or utcnow()
    cursor = None if full else await _cursor(tx)
    since = cursor - OVERLAP if cursor is not None else None
    base = [ORD.c.tenant_id == tx.tenant_id]
    if since is not None:
        base.append(ORD.c.updated_at > since)
    upto = (await tx.conn.execute(select(func.max(ORD.c.updated_at)).where(*base))).scalar()
    report = DeriveReport(since, upto)
    if upto is None:
        return report
    conds = [
        *base,
        ORD.c.updated_at <= upto,
        ORD.c.member_id.isnot(None),
        ORD.c.status.in_(BOUGHT),
    ]
    lines = ORD.join(LINE, and_(LINE.c.tenant_id == ORD.c.tenant_id, LINE.c.order_id == ORD.c.id))
    for stmt in (
        _insert(tx, "category:", LINE.c.category, lines, conds, now),
        _insert(tx, "channel:", ORD.c.channel, ORD, conds, now),
    ):
        report.added += (await tx.conn.execute(stmt)).rowcount or 0
    if cursor is None or upto > cursor:
        await _save_cursor(tx, upto, now)
    return report


async def derive_tags(
    db: Database, tenant_id: uuid.UUID, *, now: datetime | None = None, full: bool = False
) -> DeriveReport:
    """Derive behaviour tags for one tenant in one transaction."""
    async with db.tenant_tx(tenant_id) as tx:
        return await derive_in(tx, now=now, full=full)

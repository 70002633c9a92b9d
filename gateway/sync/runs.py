"""Reads of sync runs (for GraphQL ``syncRuns`` and the CLI): newest first, keyset by id."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from gateway.storage.db import Tx
from gateway.sync.runner import RUN


@dataclass(frozen=True)
class RunRow:
    id: uuid.UUID
    channel: str
    connector: str
    status: str
    trigger: str
    started_at: datetime
    until: datetime
    heartbeat_at: datetime
    finished_at: datetime | None
    stats: dict[str, Any]
    errors: list[dict[str, Any]]


def _row(r: Any) -> RunRow:
    return RunRow(
        r.id,
        r.channel,
        r.connector,
        r.status,
        r.trigger,
        r.started_at,
        r.until,
        r.heartbeat_at,
        r.finished_at,
        dict(r.stats or {}),
        list(r.errors or []),
    )


async def list_runs(
    tx: Tx,
    *,
    first: int,
    after: uuid.UUID | None = None,
    channel: str | None = None,
    status: str | None = None,
) -> list[RunRow]:
    """Up to ``first + 1`` runs, newest first (run ids are time-ordered UUIDv7)."""
    q = select(RUN).where(RUN.c.tenant_id == tx.tenant_id)
    if channel is not None:
        q = q.where(RUN.c.channel == channel)
    if status is not None:
        q = q.where(RUN.c.status == status)
    if after is not None:
        q = q.where(RUN.c.id < after)
    rows = (await tx.conn.execute(q.order_by(RUN.c.id.desc()).limit(first + 1))).all()
    return [_row(r) for r in rows]


async def get_run(tx: Tx, run_id: uuid.UUID) -> RunRow | None:
    r = (
        await tx.conn.execute(
            select(RUN).where(RUN.c.tenant_id == tx.tenant_id, RUN.c.id == run_id)
        )
    ).first()
    return None if r is None else _row(r)

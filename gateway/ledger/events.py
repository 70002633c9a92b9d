"""``points.changed``: one member event per ledger write that changes a member's balance.

Why here and not in a caller: every balance change goes through the ledger, so emitting at the
write is the only place that cannot miss one (earning, spending, holds, refunds, expiry, merges,
the mall, bulk backfills). The event is inserted in the same transaction as the balance change, so
the webhook outbox (``member_event``) can neither lose one nor announce a change that rolled back.

Rules of the game (see ``gateway/README.md``, "Events"):

- one event per write and (member, account) whose ``available`` or ``held`` changed; a write that
  moves nothing (a debit with ``allow_shortfall`` that found nothing to take) emits none;
- ``delta`` is the change of ``available``, ``available`` the balance row's value right after the
  change (it may still count expired lots the sweeper has not reached);
- ``kind`` is what moved it: the transfer's kind (``earn``, ``spend``, ``reversal``, ``capture``,
  ``expire``, ``merge_in`` / ``merge_out``, …) or, for holds, ``hold`` / ``release`` /
  ``hold_expired``; ``transfer_id`` is that transfer's id (the hold's id for hold writes);
- the event id is ``derived_id(tenant, "points.changed", transfer_id, kind)``: an idempotent replay
  of the write never reaches the emit (it returns the original transfer), and recording the same
  change twice is a no-op anyway.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite

from gateway.events import E
from gateway.ids import derived_id
from gateway.storage.db import Tx
from gateway.storage.types import utcnow

POINTS_CHANGED = "points.changed"

_PG_INSERT = (
    "INSERT INTO member_event (tenant_id, id, member_id, type, payload, occurred_at, created_at) "
    "VALUES ($1, $2, $3, 'points.changed', $4::json, $5, $6) ON CONFLICT DO NOTHING"
)
"""Sent straight to asyncpg (a prepared statement in its cache), like the credit statement."""


@dataclass(frozen=True)
class Change:
    """One balance change to announce."""

    member_id: uuid.UUID
    account: str
    delta: int
    available: int
    kind: str
    transfer_id: uuid.UUID


def event_id(tenant_id: uuid.UUID, transfer_id: uuid.UUID, kind: str) -> uuid.UUID:
    """The id of the ``points.changed`` event of ``transfer_id`` (stable: re-recording no-ops)."""
    return derived_id(tenant_id, POINTS_CHANGED, transfer_id, kind)


def payload(c: Change) -> dict[str, Any]:
    return {
        "account": c.account,
        "delta": c.delta,
        "available": c.available,
        "kind": c.kind,
        "transfer_id": str(c.transfer_id),
    }


async def emit(tx: Tx, changes: Sequence[Change], now: datetime) -> None:
    """Record ``points.changed`` for ``changes`` (one statement; executemany for several).

    ``occurred_at`` is the ledger's business time ``now``; ``created_at`` is the wall clock, which
    is what the webhook outbox orders and settles by."""
    if not changes:
        return
    created = utcnow()
    tid = tx.tenant_id
    if tx.driver is not None:
        args = [
            (
                tid,
                event_id(tid, c.transfer_id, c.kind),
                c.member_id,
                json.dumps(payload(c)),
                now,
                created,
            )
            for c in changes
        ]
        if len(args) == 1:
            await tx.driver.execute(_PG_INSERT, *args[0])
        else:
            await tx.driver.executemany(_PG_INSERT, args)
        return
    rows = [
        {
            "tenant_id": tid,
            "id": event_id(tid, c.transfer_id, c.kind),
            "member_id": c.member_id,
            "type": POINTS_CHANGED,
            "payload": payload(c),
            "occurred_at": now,
            "created_at": created,
        }
        for c in changes
    ]
    await tx.conn.execute(_statement(tx.dialect), rows)


@cache
def _statement(dialect: str) -> Any:
    """The SQLAlchemy path's insert, built once per dialect (SQLite; PostgreSQL without driver)."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(
        E
    ).on_conflict_do_nothing()


__all__ = ["POINTS_CHANGED", "Change", "emit", "event_id", "payload"]

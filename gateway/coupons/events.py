"""Coupon events (``coupon.issued``, ``.redeemed``, ``.returned``, ``.expiring``, ``.expired``).

They are ordinary member events (``member_event``), so the webhook outbox delivers them with
the rest. Ids are derived from what happened (:func:`event_id`), so a replayed or resumed write
records nothing twice. Payloads follow the event table in ``plugins/README.md`` and never carry
the coupon code: a code is a bearer secret, and webhook subscribers get the coupon id instead.

Bulk writers (the issuing job, the expiry sweeper) insert many events in one statement with
:func:`insert_many`: on PostgreSQL one ``INSERT … SELECT FROM unnest(…)`` on the asyncpg
connection, on SQLite an ``executemany``.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.dialects import sqlite

from gateway.ids import derived_id
from gateway.sql import unnest_insert_sql
from gateway.storage.db import Tx
from gateway.storage.tables import MemberEvent

E: Any = MemberEvent.__table__  # type: ignore[attr-defined]
COLUMNS = ("tenant_id", "id", "member_id", "type", "payload", "occurred_at", "created_at")


def event_id(tenant_id: uuid.UUID, coupon_id: uuid.UUID, what: str, *parts: object) -> uuid.UUID:
    """The id of a coupon event: ``what`` happened to ``coupon_id`` (plus what tells two such
    happenings apart, e.g. the redemption key for ``redeemed``)."""
    return derived_id(tenant_id, "coupon", coupon_id, what, *parts)


def iso(at: datetime) -> str:
    return at.isoformat()


def issued_payload(
    coupon_id: uuid.UUID,
    template_code: str,
    source: str,
    valid_from: datetime,
    valid_until: datetime,
) -> dict[str, Any]:
    return {
        "coupon_id": str(coupon_id),
        "template_code": template_code,
        "source": source,
        "valid_from": iso(valid_from),
        "valid_until": iso(valid_until),
    }


def row(
    tx: Tx,
    *,
    event: uuid.UUID,
    member_id: uuid.UUID,
    type: str,
    payload: dict[str, Any],
    occurred_at: datetime,
    created_at: datetime,
) -> dict[str, Any]:
    """One ``member_event`` row for :func:`insert_many`."""
    return {
        "tenant_id": tx.tenant_id,
        "id": event,
        "member_id": member_id,
        "type": type,
        "payload": payload,
        "occurred_at": occurred_at,
        "created_at": created_at,
    }


_SQLITE = sqlite.insert(E).on_conflict_do_nothing()


async def insert_many(tx: Tx, rows: list[dict[str, Any]]) -> None:
    """Insert events, skipping ids that exist (events are immutable; the first recording wins)."""
    if not rows:
        return
    if tx.driver is not None:
        args = [
            [json.dumps(r[c]) for r in rows] if c == "payload" else [r[c] for r in rows]
            for c in COLUMNS
        ]
        await tx.driver.execute(unnest_insert_sql(E, COLUMNS, "ON CONFLICT DO NOTHING"), *args)
        return
    await tx.conn.execute(_SQLITE, rows)

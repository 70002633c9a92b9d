"""The outbox side of webhooks: fan-out, claiming due deliveries, results, replay and listing.

The transactional outbox is ``member_event`` itself — every event is committed with the data it
describes — so nothing here can lose or invent an event. Per subscription:

1. **Fan-out** (:func:`fan_out`): read the events after the subscription's cursor, in
   ``(created_at, id)`` order, whose type matches; insert one ``webhook_delivery`` each
   (idempotent: unique per subscription and event) and advance the cursor — in one transaction.
   ``created_at`` is stamped when an event is inserted, not when its transaction commits, so a
   slow transaction can commit an event *behind* a cursor. The cursor therefore only moves up to
   ``now - settle`` (default 30 s); younger events are fanned out at once as well, and simply
   re-read (and skipped) on the next pass until the cursor passes them.
2. **Claim** (:func:`claim_due`): pick pending deliveries that are due **and** are the oldest
   pending delivery of their (subscription, member) — so one member's events go out one at a
   time, in order; a dead delivery no longer blocks. Claimed rows get a lease (their
   ``next_attempt_at`` moves past the send timeout), and on PostgreSQL the pick skips rows other
   dispatchers hold (``FOR UPDATE SKIP LOCKED``), so concurrent dispatchers never double-send.
3. **Result** (:func:`record_result`): 2xx → ``delivered``; anything else → ``attempts + 1`` and
   exponential backoff with jitter, ``dead`` after ``max_attempts``.

:func:`replay` puts delivered or dead deliveries back to ``pending`` with a fresh attempt cycle.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, not_, or_, select, update

from gateway.errors import InvalidInput, NotFound
from gateway.ids import derived_id
from gateway.sql import upsert_insert
from gateway.storage.db import Tx
from gateway.storage.tables import MemberEvent, WebhookDelivery, WebhookSubscription
from gateway.storage.types import utcnow
from gateway.webhooks import subscriptions

E: Any = MemberEvent.__table__  # type: ignore[attr-defined]
D: Any = WebhookDelivery.__table__  # type: ignore[attr-defined]
S: Any = WebhookSubscription.__table__  # type: ignore[attr-defined]
MAX_ID = uuid.UUID(int=(1 << 128) - 1)
STATUSES = ("pending", "delivered", "dead")


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard to try. Tests shrink the waits; production keeps the defaults."""

    max_attempts: int = 8
    backoff_base: float = 10.0  # seconds before the 2nd attempt (doubling each time)
    backoff_cap: float = 3600.0
    timeout: float = 10.0  # per HTTP request
    settle: float = 30.0  # the cursor stays this far behind now (see the module docstring)
    batch: int = 100  # deliveries claimed per round
    concurrency: int = 16  # requests in flight per dispatcher

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.timeout + 30)

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failure: capped doubling, equal jitter."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** max(0, attempts - 1))
        return ceiling / 2 + random.random() * ceiling / 2


@dataclass(frozen=True)
class Delivery:
    id: uuid.UUID
    subscription_id: uuid.UUID
    event_id: uuid.UUID
    member_id: uuid.UUID
    event_type: str
    event_created_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True)
class Due:
    """A claimed delivery with what the sender needs to build the request."""

    delivery: Delivery
    url: str
    occurred_at: datetime
    payload: dict[str, Any]


def _delivery(r: Any) -> Delivery:
    return Delivery(**{f: getattr(r, f) for f in Delivery.__dataclass_fields__})


def _after(at_col: Any, id_col: Any, at: datetime, id_: uuid.UUID) -> Any:
    return or_(at_col > at, and_(at_col == at, id_col > id_))


# ---- 1. fan-out -----------------------------------------------------------------------------


async def fan_out(
    tx: Tx,
    subscription_id: uuid.UUID,
    *,
    now: datetime | None = None,
    settle: float = DeliveryPolicy.settle,
    page: int = 500,
    max_pages: int = 20,
) -> int:
    """Insert deliveries for the subscription's new matching events; returns how many."""
    now = now or utcnow()
    q = select(S).where(S.c.tenant_id == tx.tenant_id, S.c.id == subscription_id)
    if tx.is_postgres:
        q = q.with_for_update()  # one fan-out per subscription at a time
    row = (await tx.conn.execute(q)).first()
    if row is None or not row.active:
        return 0
    horizon = now - timedelta(seconds=settle)
    cursor = pos = (row.cursor_at, row.cursor_id)
    already = exists().where(
        D.c.tenant_id == E.c.tenant_id,
        D.c.subscription_id == subscription_id,
        D.c.event_id == E.c.id,
    )
    where = [E.c.tenant_id == tx.tenant_id, E.c.created_at >= row.created_at, not_(already)]
    type_cond = subscriptions.type_filter(E.c.type, row.event_types)
    if type_cond is not None:
        where.append(type_cond)
    inserted = 0
    complete = False
    for _ in range(max_pages):
        rows = (
            await tx.conn.execute(
                select(E.c.id, E.c.member_id, E.c.type, E.c.created_at)
                .where(*where, _after(E.c.created_at, E.c.id, *pos))
                .order_by(E.c.created_at, E.c.id)
                .limit(page)
            )
        ).all()
        if rows:
            values = [
                {
                    "tenant_id": tx.tenant_id,
                    "id": derived_id(tx.tenant_id, "webhook", subscription_id, r.id),
                    "subscription_id": subscription_id,
                    "event_id": r.id,
                    "member_id": r.member_id,
                    "event_type": r.type,
                    "event_created_at": r.created_at,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for r in rows
            ]
            stmt = upsert_insert(tx, D).values(values).on_conflict_do_nothing().returning(D.c.id)
            result = await tx.conn.execute(stmt)
            inserted += len(result.all())
            for r in rows:
                if r.created_at <= horizon:
                    cursor = (r.created_at, r.id)
            pos = (rows[-1].created_at, rows[-1].id)
        if len(rows) < page:
            complete = True
            break
    if complete and horizon > cursor[0]:
        cursor = (horizon, MAX_ID)  # everything up to the horizon has been seen
    if cursor != (row.cursor_at, row.cursor_id):
        await tx.conn.execute(
            update(S)
            .where(S.c.tenant_id == tx.tenant_id, S.c.id == subscription_id)
            .values(cursor_at=cursor[0], cursor_id=cursor[1])
        )
    return inserted


# ---- 2. claim and 3. result -----------------------------------------------------------------


async def claim_due(
    tx: Tx, *, now: datetime | None = None, policy: DeliveryPolicy | None = None
) -> list[Due]:
    """Lease the deliveries to send now: due, of an active subscription, and each the oldest
    pending delivery of its (subscription, member)."""
    policy = policy or DeliveryPolicy()
    now = now or utcnow()
    d, d2 = D.alias("d"), D.alias("d2")
    earlier = exists().where(
        d2.c.tenant_id == d.c.tenant_id,
        d2.c.subscription_id == d.c.subscription_id,
        d2.c.member_id == d.c.member_id,
        d2.c.status == "pending",
        or_(
            d2.c.event_created_at < d.c.event_created_at,
            and_(d2.c.event_created_at == d.c.event_created_at, d2.c.event_id < d.c.event_id),
        ),
    )
    q = (
        select(d, S.c.url)
        .join(S, and_(S.c.tenant_id == d.c.tenant_id, S.c.id == d.c.subscription_id))
        .where(
            d.c.tenant_id == tx.tenant_id,
            d.c.status == "pending",
            d.c.next_attempt_at <= now,
            S.c.active.is_(True),
            not_(earlier),
        )
        .order_by(d.c.event_created_at, d.c.event_id)
        .limit(policy.batch)
    )
    if tx.is_postgres:
        q = q.with_for_update(of=d, skip_locked=True)
    rows = (await tx.conn.execute(q)).all()
    if not rows:
        return []
    ids = [r.id for r in rows]
    await tx.conn.execute(
        update(D)
        .where(D.c.tenant_id == tx.tenant_id, D.c.id.in_(ids))
        .values(next_attempt_at=now + policy.lease, updated_at=now)
    )
    events = {
        e.id: e
        for e in (
            await tx.conn.execute(
                select(E.c.id, E.c.occurred_at, E.c.payload).where(
                    E.c.tenant_id == tx.tenant_id, E.c.id.in_([r.event_id for r in rows])
                )
            )
        ).all()
    }
    out = []
    for r in rows:
        e = events[r.event_id]
        payload = e.payload
        if isinstance(payload, str):  # defensive: JSON read back as text
            payload = json.loads(payload)
        out.append(
            Due(delivery=_delivery(r), url=r.url, occurred_at=e.occurred_at, payload=payload)
        )
    return out


async def record_result(
    tx: Tx,
    delivery: Delivery,
    *,
    ok: bool,
    status_code: int | None,
    error: str | None,
    now: datetime | None = None,
    policy: DeliveryPolicy | None = None,
) -> str:
    """Store one attempt's outcome; returns the new status (unchanged when a replay or another
    dispatcher changed the row meanwhile)."""
    policy = policy or DeliveryPolicy()
    now = now or utcnow()
    attempts = delivery.attempts + 1
    values: dict[str, Any] = {
        "attempts": attempts,
        "last_status": status_code,
        "last_error": None if ok else (error or "failed")[:500],
        "updated_at": now,
    }
    if ok:
        values.update(status="delivered", delivered_at=now)
    elif attempts >= policy.max_attempts:
        values.update(status="dead")
    else:
        values.update(next_attempt_at=now + timedelta(seconds=policy.backoff(attempts)))
    result = await tx.conn.execute(
        update(D)
        .where(
            D.c.tenant_id == tx.tenant_id,
            D.c.id == delivery.id,
            D.c.status == "pending",
            D.c.attempts == delivery.attempts,
        )
        .values(**values)
    )
    return str(values.get("status", "pending")) if result.rowcount else delivery.status


# ---- replay and reads -------------------------------------------------------------------------


async def replay(
    tx: Tx,
    subscription_id: uuid.UUID,
    *,
    since: datetime | None = None,
    event_ids: Sequence[uuid.UUID] | None = None,
    now: datetime | None = None,
) -> int:
    """Reset the subscription's delivered and dead deliveries (of events recorded at or after
    ``since`` and/or with these ids) to ``pending`` with a fresh attempt cycle; returns how
    many. They go out again in order per member, like new ones."""
    if since is not None and (since.tzinfo is None or since.utcoffset() is None):
        raise InvalidInput("since must be timezone-aware", field="since")
    if await subscriptions.get(tx, subscription_id) is None:
        raise NotFound("webhook subscription not found", id=str(subscription_id))
    now = now or utcnow()
    q = update(D).where(
        D.c.tenant_id == tx.tenant_id,
        D.c.subscription_id == subscription_id,
        D.c.status.in_(("delivered", "dead")),
    )
    if since is not None:
        q = q.where(D.c.event_created_at >= since)
    if event_ids is not None:
        if not event_ids:
            return 0
        q = q.where(D.c.event_id.in_(list(event_ids)))
    result = await tx.conn.execute(
        q.values(
            status="pending",
            attempts=0,
            next_attempt_at=now,
            last_error=None,
            delivered_at=None,
            updated_at=now,
        )
    )
    return int(result.rowcount or 0)


async def list_deliveries(
    tx: Tx,
    subscription_id: uuid.UUID,
    *,
    status: str | None = None,
    first: int = 20,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[Delivery]:
    """Up to ``first + 1`` deliveries of a subscription, newest event first (keyset on
    ``(event_created_at, id)``)."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", field="status")
    q = select(D).where(D.c.tenant_id == tx.tenant_id, D.c.subscription_id == subscription_id)
    if status is not None:
        q = q.where(D.c.status == status)
    if after is not None:
        at, id_ = after
        q = q.where(or_(D.c.event_created_at < at, and_(D.c.event_created_at == at, D.c.id < id_)))
    rows = (
        await tx.conn.execute(
            q.order_by(D.c.event_created_at.desc(), D.c.id.desc()).limit(first + 1)
        )
    ).all()
    return [_delivery(r) for r in rows]


async def counts(tx: Tx, subscription_id: uuid.UUID) -> dict[str, int]:
    """Deliveries of a subscription per status."""
    rows = (
        await tx.conn.execute(
            select(D.c.status, func.count())
            .where(D.c.tenant_id == tx.tenant_id, D.c.subscription_id == subscription_id)
            .group_by(D.c.status)
        )
    ).all()
    return {s: 0 for s in STATUSES} | {r[0]: int(r[1]) for r in rows}

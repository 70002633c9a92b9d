"""The expiry sweeper: unused coupons past their end become ``expired``, and members hear about
coupons ending soon — once each.

Both halves are set-based and batched (one transaction per batch of at most ``batch`` coupons):

- **expire**: ``UPDATE coupon SET status = 'expired' … WHERE status = 'issued' AND valid_until
  <= now`` for a batch, recording ``coupon.expired`` for each (event id derived from the coupon,
  so a re-run never duplicates). Redemption already refuses a coupon past ``valid_until``
  whether or not the sweeper has run; the status makes it visible and final.
- **notify**: coupons still unused that end within ``notify_days`` get ``expiry_notified_at``
  and one ``coupon.expiring`` event (``days_left``: tenant-local calendar days from today to
  the coupon's last valid day; 0 = it ends today).

Idempotent and safe to run concurrently with itself and with redemptions: on PostgreSQL each
batch picks its rows ``FOR UPDATE SKIP LOCKED`` (a coupon being redeemed right now is left for
the next run), and the guarded ``UPDATE`` never touches a coupon that changed meanwhile.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from gateway.coupons import events
from gateway.coupons.model import C, T
from gateway.errors import InvalidInput, NotFound
from gateway.ledger import validation as v
from gateway.sql import in_ids
from gateway.storage.db import Database, Tx
from gateway.storage.types import utcnow

DEFAULT_NOTIFY_DAYS = 3
MAX_NOTIFY_DAYS = 60
DEFAULT_BATCH = 1000


@dataclass(frozen=True)
class ExpiryReport:
    expired: int
    notified: int


async def _template_codes(tx: Tx, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await tx.conn.execute(
        select(T.c.id, T.c.code).where(T.c.tenant_id == tx.tenant_id, in_ids(T.c.id, tx.dialect)),
        {"ids": list(ids)},
    )
    return {r[0]: r[1] for r in rows}


def _pick(tx: Tx, *cond: Any, batch: int) -> Any:
    pick = (
        select(C.c.id)
        .where(C.c.tenant_id == tx.tenant_id, C.c.status == "issued", *cond)
        .order_by(C.c.valid_until)
        .limit(batch)
    )
    if tx.is_postgres:
        pick = pick.with_for_update(skip_locked=True)
    return pick.scalar_subquery()


async def _mark(tx: Tx, pick: Any, values: dict[str, Any], *guard: Any) -> Sequence[Any]:
    """The guarded ``UPDATE`` of both halves: ``values`` on the coupons ``pick`` chose that are
    still unused (and still match ``guard``), returning what their events need."""
    return (
        await tx.conn.execute(
            update(C)
            .where(C.c.tenant_id == tx.tenant_id, C.c.status == "issued", *guard, C.c.id.in_(pick))
            .values(**values)
            .returning(C.c.id, C.c.member_id, C.c.template_id, C.c.valid_until)
        )
    ).all()


async def _record(
    tx: Tx,
    rows: Sequence[Any],
    kind: str,
    occurred_at: Callable[[Any], datetime],
    extra: Callable[[Any], dict[str, Any]] = lambda r: {},
) -> int:
    """One ``coupon.<kind>`` event per marked coupon (id derived from the coupon and ``kind``,
    so a re-run never duplicates); returns how many."""
    if not rows:
        return 0
    names = await _template_codes(tx, {r.template_id for r in rows})
    created = utcnow()
    await events.insert_many(
        tx,
        [
            events.row(
                tx,
                event=events.event_id(tx.tenant_id, r.id, kind),
                member_id=r.member_id,
                type=f"coupon.{kind}",
                payload={
                    "coupon_id": str(r.id),
                    "template_code": names.get(r.template_id, ""),
                    "valid_until": events.iso(r.valid_until),
                    **extra(r),
                },
                occurred_at=occurred_at(r),
                created_at=created,
            )
            for r in rows
        ],
    )
    return len(rows)


async def expire_batch(tx: Tx, *, now: datetime, batch: int = DEFAULT_BATCH) -> int:
    """Expire up to ``batch`` unused coupons past their end; returns how many."""
    rows = await _mark(
        tx,
        _pick(tx, C.c.valid_until <= now, batch=batch),
        {"status": "expired", "updated_at": now},
    )
    return await _record(tx, rows, "expired", occurred_at=lambda r: r.valid_until)


def days_left(valid_until: datetime, now: datetime, timezone: str) -> int:
    """Calendar days (in ``timezone``) from ``now``'s day to the last day the coupon is valid
    (``valid_until`` is exclusive, so a coupon ending at local midnight was last valid the day
    before)."""
    tz = ZoneInfo(timezone)
    last = (valid_until - timedelta(microseconds=1)).astimezone(tz).date()
    return max(0, (last - now.astimezone(tz).date()).days)


async def notify_batch(
    tx: Tx,
    *,
    now: datetime,
    notify_days: int = DEFAULT_NOTIFY_DAYS,
    timezone: str = "UTC",
    batch: int = DEFAULT_BATCH,
) -> int:
    """Record ``coupon.expiring`` for up to ``batch`` unused coupons ending within
    ``notify_days`` that were not notified yet; returns how many."""
    horizon = now + timedelta(days=notify_days)
    pick = _pick(
        tx,
        C.c.expiry_notified_at.is_(None),
        C.c.valid_until > now,
        C.c.valid_until <= horizon,
        batch=batch,
    )
    values = {"expiry_notified_at": now, "updated_at": now}
    rows = await _mark(tx, pick, values, C.c.expiry_notified_at.is_(None))
    return await _record(
        tx,
        rows,
        "expiring",
        occurred_at=lambda r: now,
        extra=lambda r: {"days_left": days_left(r.valid_until, now, timezone)},
    )


async def sweep(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    now: datetime | None = None,
    notify_days: int = DEFAULT_NOTIFY_DAYS,
    batch: int = DEFAULT_BATCH,
) -> ExpiryReport:
    """Expire what is due and notify what ends soon for one tenant, batch by batch
    (``notify_days`` 0 turns the notices off)."""
    from gateway.tenants import get_tenant

    now = v.now_or(now)
    if type(notify_days) is not int or not 0 <= notify_days <= MAX_NOTIFY_DAYS:
        raise InvalidInput(
            f"notify_days must be an integer in 0..{MAX_NOTIFY_DAYS}", field="notify_days"
        )
    if type(batch) is not int or not 1 <= batch <= 10_000:
        raise InvalidInput("batch must be an integer in 1..10000", field="batch")
    tenant = await get_tenant(db, tenant_id)
    if tenant is None:
        raise NotFound("no such tenant", tenant=str(tenant_id))
    expired = notified = 0
    while True:
        async with db.tenant_tx(tenant_id) as tx:
            n = await expire_batch(tx, now=now, batch=batch)
        expired += n
        if n < batch:
            break
    while notify_days:
        async with db.tenant_tx(tenant_id) as tx:
            n = await notify_batch(
                tx, now=now, notify_days=notify_days, timezone=tenant.timezone, batch=batch
            )
        notified += n
        if n < batch:
            break
    return ExpiryReport(expired=expired, notified=notified)

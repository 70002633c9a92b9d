"""The sweeper: releases holds past their TTL, then expires lots past their expiry.

Holds go first because a released hold may give points back to a lot that has expired meanwhile;
that lot is then expired in the same sweep. Each expired lot gets its own ``expire`` transfer
(counterparty ``sys:expiry``, ``related_id`` = the lot) with an allocation on that lot, so the
history says exactly which earn expired, and ``verify`` checks expiries like any other debit.

Events: one ``points.changed`` per member and account per sweep (``kind`` ``expire``, the whole
amount that expired, ``transfer_id`` = the first of that member's ``expire`` transfers in the
sweep) — a subscriber sends one "your points expired" message, not one per lot — and one per
expired hold (``kind`` ``hold_expired``, ``transfer_id`` = the hold).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from gateway.ids import uuid7
from gateway.ledger import validation as v
from gateway.ledger.events import Change, emit
from gateway.ledger.holds import give_back
from gateway.ledger.models import ExpireReport
from gateway.ledger.store import (
    A,
    H,
    T,
    add_to_balance,
    chunks,
    lock_balances,
)
from gateway.storage.db import Tx

EXPIRY = "sys:expiry"


async def expire_due(tx: Tx, *, now: datetime | None = None) -> ExpireReport:
    """Expire everything due at ``now`` for the transaction's tenant. Safe to run repeatedly."""
    now = v.now_or(now)
    tid = tx.tenant_id
    due_lot = (
        T.c.tenant_id == tid,
        T.c.remaining > 0,
        T.c.expires_at.is_not(None),
        T.c.expires_at <= now,
    )
    # Hold rows first (lock order: hold → balance → lot).
    expired_holds = list(
        await tx.conn.execute(
            update(H)
            .where(H.c.tenant_id == tid, H.c.status == "active", H.c.expires_at <= now)
            .values(status="expired", resolved_at=now)
            .returning(H.c.id, H.c.member_id, H.c.account, H.c.amount)
        )
    )
    lot_pairs = list(
        await tx.conn.execute(select(T.c.member_id, T.c.account).where(*due_lot).distinct())
    )
    pairs = {(h.member_id, h.account) for h in expired_holds}
    pairs |= {(p.member_id, p.account) for p in lot_pairs}
    if not pairs:
        return ExpireReport(0, 0, 0)
    await lock_balances(tx, pairs)
    if expired_holds:
        await give_back(tx, expired_holds, now, kind="hold_expired")

    # Read the due lots only now: under the balance locks, after the holds gave points back.
    lots = list(
        await tx.conn.execute(
            select(T.c.id, T.c.member_id, T.c.account, T.c.remaining)
            .where(*due_lot)
            .order_by(T.c.member_id, T.c.account, T.c.expires_at, T.c.id)
        )
    )
    if lots:
        await _expire_lots(tx, lots, now)
    return ExpireReport(
        lots_expired=len(lots),
        amount_expired=sum(lot.remaining for lot in lots),
        holds_expired=len(expired_holds),
    )


async def _expire_lots(tx: Tx, lots: list[Any], now: datetime) -> None:
    transfers: list[dict[str, Any]] = []
    allocations: list[dict[str, Any]] = []
    per_balance: dict[tuple[uuid.UUID, str], int] = defaultdict(int)
    first_transfer: dict[tuple[uuid.UUID, str], uuid.UUID] = {}
    for lot in lots:
        transfer_id = uuid7()
        first_transfer.setdefault((lot.member_id, lot.account), transfer_id)
        transfers.append(
            {
                "tenant_id": tx.tenant_id,
                "id": transfer_id,
                "journal_id": transfer_id,
                "member_id": lot.member_id,
                "account": lot.account,
                "kind": "expire",
                "amount": -lot.remaining,
                "counterparty": EXPIRY,
                "reason": "expired",
                "source": EXPIRY,
                "source_ref": None,
                "idem_key": f"expire:{transfer_id}",
                "request_hash": v.request_hash(op="expire", lot=lot.id, amount=lot.remaining),
                "remaining": None,
                "expires_at": None,
                "related_id": lot.id,
                "shortfall": 0,
                "created_at": now,
            }
        )
        allocations.append(
            {
                "tenant_id": tx.tenant_id,
                "owner_id": transfer_id,
                "lot_id": lot.id,
                "amount": lot.remaining,
            }
        )
        per_balance[(lot.member_id, lot.account)] += lot.remaining
    for part in chunks(transfers):
        await tx.conn.execute(T.insert(), list(part))
    for part in chunks(allocations):
        await tx.conn.execute(A.insert(), list(part))
    for part in chunks([lot.id for lot in lots]):
        await tx.conn.execute(
            update(T).where(T.c.tenant_id == tx.tenant_id, T.c.id.in_(part)).values(remaining=0)
        )
    changes: list[Change] = []
    for (member_id, account), total in sorted(per_balance.items(), key=lambda i: str(i[0])):
        after = await add_to_balance(tx, member_id, account, now, available=-total)
        first = first_transfer[(member_id, account)]
        changes.append(Change(member_id, account, -total, after, "expire", first))
    await emit(tx, changes, now)

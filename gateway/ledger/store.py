"""Shared storage steps for the write paths: lots, allocations, balance rows, idempotency lookups.

Lock order, everywhere (so concurrent writers cannot deadlock on PostgreSQL): hold row → balance
rows (sorted by member, account) → lot rows. Every change to a lot's ``remaining`` happens while
the owning balance row is locked, so the balance row is the single serialisation point per
(member, account); SQLite serialises all writers with ``BEGIN IMMEDIATE`` anyway.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, bindparam, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import Insert

from gateway.storage.db import Tx
from gateway.storage.tables import LedgerAllocation, LedgerBalance, LedgerHold, LedgerTransfer

T: Table = LedgerTransfer.__table__  # type: ignore[attr-defined]
B: Table = LedgerBalance.__table__  # type: ignore[attr-defined]
H: Table = LedgerHold.__table__  # type: ignore[attr-defined]
A: Table = LedgerAllocation.__table__  # type: ignore[attr-defined]

CHUNK = 500  # ids per IN (...) list: far below SQLite's and asyncpg's parameter limits


def upsert(tx: Tx, table: Table) -> Any:
    """The dialect's INSERT with ``ON CONFLICT`` support (PostgreSQL and SQLite share the API)."""
    return (pg_insert if tx.is_postgres else sqlite_insert)(table)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def unexpired(now: datetime) -> Any:
    return or_(T.c.expires_at.is_(None), T.c.expires_at > now)


@dataclass(frozen=True)
class Lot:
    id: uuid.UUID
    remaining: int
    expires_at: datetime | None


Draw = tuple[uuid.UUID, int]  # (lot id, amount taken from it)


async def transfer_by_key(tx: Tx, idem_key: str) -> Any:
    return (
        await tx.conn.execute(
            select(T).where(T.c.tenant_id == tx.tenant_id, T.c.idem_key == idem_key)
        )
    ).first()


async def hold_row(tx: Tx, hold_id: uuid.UUID) -> Any:
    return (
        await tx.conn.execute(select(H).where(H.c.tenant_id == tx.tenant_id, H.c.id == hold_id))
    ).first()


async def lock_balances(tx: Tx, pairs: Iterable[tuple[uuid.UUID, str]]) -> dict[Any, Any]:
    """Lock balance rows in (member, account) order; returns the rows that exist.

    On SQLite ``FOR UPDATE`` compiles to nothing: the write transaction already holds the lock.
    """
    ordered = sorted(set(pairs), key=lambda p: (str(p[0]), p[1]))
    found: dict[Any, Any] = {}
    for part in chunks(ordered):
        stmt = (
            select(B.c.member_id, B.c.account, B.c.available, B.c.held)
            .where(B.c.tenant_id == tx.tenant_id, tuple_(B.c.member_id, B.c.account).in_(part))
            .order_by(B.c.member_id, B.c.account)
            .with_for_update()
        )
        for row in await tx.conn.execute(stmt):
            found[(row.member_id, row.account)] = row
    return found


async def spendable_lots(tx: Tx, member_id: uuid.UUID, account: str, now: datetime) -> list[Lot]:
    """Unexpired lots with something left, in spending order: soonest expiry first, never-expiring
    last, then oldest first (uuid7 ids break ties in creation order)."""
    stmt = (
        select(T.c.id, T.c.remaining, T.c.expires_at)
        .where(
            T.c.tenant_id == tx.tenant_id,
            T.c.member_id == member_id,
            T.c.account == account,
            T.c.remaining > 0,
            unexpired(now),
        )
        .order_by(T.c.expires_at.asc().nulls_last(), T.c.created_at, T.c.id)
    )
    return [Lot(r.id, r.remaining, r.expires_at) for r in await tx.conn.execute(stmt)]


def plan(lots: Sequence[Lot], amount: int) -> tuple[list[Draw], int]:
    """Take ``amount`` from ``lots`` in order; returns the draws and what could not be covered."""
    draws: list[Draw] = []
    left = amount
    for lot in lots:
        if left == 0:
            break
        take = min(left, lot.remaining)
        draws.append((lot.id, take))
        left -= take
    return draws, left


def _lot() -> Any:
    return bindparam("lot", type_=T.c.id.type)


def _take() -> Any:
    return bindparam("take", type_=T.c.remaining.type)


async def draw_lots(tx: Tx, draws: Sequence[Draw]) -> None:
    """Decrement lots; the ``remaining >= take`` guard plus the CHECK constraint make a negative
    lot impossible even if a caller broke the lock order."""
    stmt = (
        update(T)
        .where(T.c.tenant_id == tx.tenant_id, T.c.id == _lot(), T.c.remaining >= _take())
        .values(remaining=T.c.remaining - _take())
    )
    for lot_id, amount in draws:
        result = await tx.conn.execute(stmt, {"lot": lot_id, "take": amount})
        if result.rowcount != 1:
            raise RuntimeError(f"ledger lot {lot_id} changed under a held lock")


async def return_to_lots(tx: Tx, draws: Sequence[Draw]) -> None:
    """Give reserved amounts back to the lots they came from (hold release / partial capture)."""
    if not draws:
        return
    stmt = (
        update(T)
        .where(T.c.tenant_id == tx.tenant_id, T.c.id == _lot())
        .values(remaining=T.c.remaining + _take())
    )
    await tx.conn.execute(stmt, [{"lot": lot_id, "take": amount} for lot_id, amount in draws])


async def add_allocations(tx: Tx, owner_id: uuid.UUID, draws: Sequence[Draw]) -> None:
    if draws:
        await tx.conn.execute(
            A.insert(),
            [
                {"tenant_id": tx.tenant_id, "owner_id": owner_id, "lot_id": lot, "amount": amt}
                for lot, amt in draws
            ],
        )


async def allocations_of(tx: Tx, owner_ids: Sequence[uuid.UUID]) -> list[Any]:
    """Allocations of the given owners joined with their lot's expiry, soonest-expiring first."""
    rows: list[Any] = []
    for part in chunks(list(owner_ids)):
        stmt = (
            select(A.c.owner_id, A.c.lot_id, A.c.amount, T.c.expires_at)
            .join(T, and_(T.c.tenant_id == A.c.tenant_id, T.c.id == A.c.lot_id))
            .where(A.c.tenant_id == tx.tenant_id, A.c.owner_id.in_(part))
            .order_by(A.c.owner_id, T.c.expires_at.asc().nulls_last(), T.c.created_at, T.c.id)
        )
        rows.extend(await tx.conn.execute(stmt))
    return rows


async def shift_balance(
    tx: Tx,
    member_id: uuid.UUID,
    account: str,
    now: datetime,
    *,
    available: int = 0,
    held: int = 0,
    min_available: int | None = None,
) -> int | None:
    """``UPDATE`` an existing balance row by these deltas (never inserts); its ``available``
    after the change, or ``None`` when no row matched: there is none or — the guarded decrement
    of debits and holds, ``min_available`` — it had less than that available (nothing changed)."""
    cond = [B.c.tenant_id == tx.tenant_id, B.c.member_id == member_id, B.c.account == account]
    if min_available is not None:
        cond.append(B.c.available >= min_available)
    stmt = (
        update(B)
        .where(*cond)
        .values(available=B.c.available + available, held=B.c.held + held, updated_at=now)
        .returning(B.c.available)
    )
    row = (await tx.conn.execute(stmt)).first()
    return None if row is None else int(row[0])


async def add_to_balance(
    tx: Tx,
    member_id: uuid.UUID,
    account: str,
    now: datetime,
    *,
    available: int = 0,
    held: int = 0,
) -> int:
    """Add to a balance row; returns its ``available`` after the change (for ``points.changed``).

    Increments upsert (a member's first credit creates the row); anything with a decrement is a
    plain UPDATE of a row this transaction has locked — an upsert would have its *insert*
    candidate rejected by the non-negative CHECK constraint."""
    if available < 0 or held < 0:
        after = await shift_balance(tx, member_id, account, now, available=available, held=held)
        if after is None:
            raise RuntimeError(f"ledger balance row missing for {member_id}/{account}")
        return after
    ins = upsert(tx, B).values(
        tenant_id=tx.tenant_id,
        member_id=member_id,
        account=account,
        available=available,
        held=held,
        updated_at=now,
    )
    stmt = ins.on_conflict_do_update(
        index_elements=[B.c.tenant_id, B.c.member_id, B.c.account],
        set_={
            "available": B.c.available + ins.excluded.available,
            "held": B.c.held + ins.excluded.held,
            "updated_at": ins.excluded.updated_at,
        },
    ).returning(B.c.available)
    return int((await tx.conn.execute(stmt)).scalar_one())


async def unexpired_total(tx: Tx, member_id: uuid.UUID, account: str, now: datetime) -> int:
    stmt = select(func.coalesce(func.sum(T.c.remaining), 0)).where(
        T.c.tenant_id == tx.tenant_id,
        T.c.member_id == member_id,
        T.c.account == account,
        T.c.remaining > 0,
        unexpired(now),
    )
    return int((await tx.conn.execute(stmt)).scalar_one())


def insert_transfer(tx: Tx, **values: Any) -> Insert:
    """An INSERT of one transfer that claims its idempotency key: on conflict it inserts nothing
    and returns no row (a concurrent writer of the same key waits on the unique index first)."""
    return (
        upsert(tx, T)
        .values(tenant_id=tx.tenant_id, **values)
        .on_conflict_do_nothing(index_elements=[T.c.tenant_id, T.c.idem_key])
        .returning(*T.c)
    )

"""``verify``: check the ledger's invariants for one tenant (``memberhub ledger verify``).

Each invariant is a grouped query compared in Python, so a full check costs a fixed number of
statements whatever the tenant's size. The checks are the ones the README promises:

- ``available = Σ lot.remaining``; ``held = Σ active hold.amount``;
  ``available + held = Σ transfer.amount`` (per member and account);
- nothing negative; ``0 ≤ remaining ≤ amount`` for every lot;
- every debit's allocations sum to its amount, every hold's to the hold's amount;
- every lot's consumption (``amount − remaining``) equals what transfers drew from it plus what
  active holds reserve on it;
- allocations only draw from the owner's own member and account;
- every member-to-member journal sums to zero.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import and_, func, select

from gateway.ledger.models import Violation
from gateway.ledger.store import A, B, H, T
from gateway.storage.db import Tx

HOLD_STATUSES = frozenset({"active", "captured", "released", "expired"})


async def verify(tx: Tx) -> list[Violation]:
    """All invariant violations of the tenant's ledger; an empty list means clean."""
    out: list[Violation] = []
    await _balances(tx, out)
    await _lots(tx, out)
    await _allocations(tx, out)
    await _holds(tx, out)
    await _journals(tx, out)
    return out


async def _rows(tx: Tx, stmt: Any) -> list[Any]:
    return list(await tx.conn.execute(stmt))


async def _balances(tx: Tx, out: list[Violation]) -> None:
    tid = tx.tenant_id
    key = (T.c.member_id, T.c.account)
    lots = {
        (r[0], r[1]): int(r[2])
        for r in await _rows(
            tx,
            select(*key, func.sum(T.c.remaining))
            .where(T.c.tenant_id == tid, T.c.remaining.is_not(None))
            .group_by(*key),
        )
    }
    totals = {
        (r[0], r[1]): int(r[2])
        for r in await _rows(
            tx, select(*key, func.sum(T.c.amount)).where(T.c.tenant_id == tid).group_by(*key)
        )
    }
    held = {
        (r[0], r[1]): int(r[2])
        for r in await _rows(
            tx,
            select(H.c.member_id, H.c.account, func.sum(H.c.amount))
            .where(H.c.tenant_id == tid, H.c.status == "active")
            .group_by(H.c.member_id, H.c.account),
        )
    }
    rows = {
        (r.member_id, r.account): (int(r.available), int(r.held))
        for r in await _rows(
            tx,
            select(B.c.member_id, B.c.account, B.c.available, B.c.held).where(B.c.tenant_id == tid),
        )
    }
    for pair in sorted(set(lots) | set(totals) | set(held) | set(rows), key=str):
        member, account = pair
        available, on_hold = rows.get(pair, (0, 0))
        if available < 0 or on_hold < 0:
            out.append(Violation("negative_balance", member, f"{account}: {available}/{on_hold}"))
        if available != lots.get(pair, 0):
            out.append(
                Violation(
                    "available_not_lot_sum",
                    member,
                    f"{account}: available {available} != Σ remaining {lots.get(pair, 0)}",
                )
            )
        if on_hold != held.get(pair, 0):
            out.append(
                Violation(
                    "held_not_hold_sum",
                    member,
                    f"{account}: held {on_hold} != Σ active holds {held.get(pair, 0)}",
                )
            )
        if available + on_hold != totals.get(pair, 0):
            out.append(
                Violation(
                    "total_not_transfer_sum",
                    member,
                    f"{account}: {available}+{on_hold} != Σ transfers {totals.get(pair, 0)}",
                )
            )


async def _lots(tx: Tx, out: list[Violation]) -> None:
    bad = await _rows(
        tx,
        select(T.c.id, T.c.member_id, T.c.amount, T.c.remaining).where(
            T.c.tenant_id == tx.tenant_id,
            T.c.remaining.is_not(None),
            (T.c.remaining < 0) | (T.c.remaining > T.c.amount) | (T.c.amount <= 0),
        ),
    )
    for r in bad:
        out.append(
            Violation("lot_out_of_range", r.member_id, f"lot {r.id}: {r.remaining}/{r.amount}")
        )


async def _allocations(tx: Tx, out: list[Violation]) -> None:
    tid = tx.tenant_id
    lot = T.alias("lot")
    owner = T.alias("owner")
    drawn = (
        select(A.c.owner_id, func.sum(A.c.amount).label("total"))
        .where(A.c.tenant_id == tid)
        .group_by(A.c.owner_id)
        .subquery()
    )
    # Every debit (negative transfer) is covered by exactly its allocations, and only debits
    # own transfer allocations.
    for r in await _rows(
        tx,
        select(owner.c.id, owner.c.member_id, owner.c.amount, drawn.c.total)
        .select_from(owner.outerjoin(drawn, drawn.c.owner_id == owner.c.id))
        .where(
            owner.c.tenant_id == tid,
            (owner.c.amount < 0) | drawn.c.total.is_not(None),
        ),
    ):
        if -int(r.amount) != int(r.total or 0):
            out.append(
                Violation(
                    "debit_allocation_mismatch",
                    r.member_id,
                    f"transfer {r.id}: amount {r.amount}, allocated {r.total or 0}",
                )
            )
    # Allocations draw from real lots of the owner's own member and account.
    owners = (
        select(T.c.id, T.c.member_id, T.c.account)
        .where(T.c.tenant_id == tid)
        .union_all(select(H.c.id, H.c.member_id, H.c.account).where(H.c.tenant_id == tid))
        .subquery()
    )
    for r in await _rows(
        tx,
        select(
            A.c.owner_id, A.c.lot_id, A.c.amount, owners.c.member_id, lot.c.member_id.label("lm")
        )
        .select_from(
            A.outerjoin(owners, owners.c.id == A.c.owner_id).outerjoin(
                lot, and_(lot.c.tenant_id == A.c.tenant_id, lot.c.id == A.c.lot_id)
            )
        )
        .where(
            A.c.tenant_id == tid,
            (owners.c.id.is_(None))
            | (lot.c.id.is_(None))
            | (lot.c.remaining.is_(None))
            | (A.c.amount <= 0)
            | (lot.c.member_id != owners.c.member_id)
            | (lot.c.account != owners.c.account),
        ),
    ):
        out.append(
            Violation(
                "bad_allocation",
                r.member_id,
                f"owner {r.owner_id} lot {r.lot_id} amount {r.amount}",
            )
        )
    # Lot accounting: consumed = drawn by transfers + reserved by active holds.
    consumed: dict[uuid.UUID, int] = defaultdict(int)
    for r in await _rows(
        tx,
        select(A.c.lot_id, func.sum(A.c.amount))
        .select_from(A.join(T, and_(T.c.tenant_id == A.c.tenant_id, T.c.id == A.c.owner_id)))
        .where(A.c.tenant_id == tid)
        .group_by(A.c.lot_id),
    ):
        consumed[r[0]] += int(r[1])
    for r in await _rows(
        tx,
        select(A.c.lot_id, func.sum(A.c.amount))
        .select_from(A.join(H, and_(H.c.tenant_id == A.c.tenant_id, H.c.id == A.c.owner_id)))
        .where(A.c.tenant_id == tid, H.c.status == "active")
        .group_by(A.c.lot_id),
    ):
        consumed[r[0]] += int(r[1])
    for r in await _rows(
        tx,
        select(T.c.id, T.c.member_id, T.c.amount, T.c.remaining).where(
            T.c.tenant_id == tid, T.c.remaining.is_not(None)
        ),
    ):
        if int(r.amount) - int(r.remaining) != consumed.get(r.id, 0):
            out.append(
                Violation(
                    "lot_accounting",
                    r.member_id,
                    f"lot {r.id}: used {r.amount - r.remaining}, allocated {consumed.get(r.id, 0)}",
                )
            )


async def _holds(tx: Tx, out: list[Violation]) -> None:
    tid = tx.tenant_id
    reserved = (
        select(A.c.owner_id, func.sum(A.c.amount).label("total"))
        .where(A.c.tenant_id == tid)
        .group_by(A.c.owner_id)
        .subquery()
    )
    for r in await _rows(
        tx,
        select(H.c.id, H.c.member_id, H.c.amount, H.c.captured, H.c.status, reserved.c.total)
        .select_from(H.outerjoin(reserved, reserved.c.owner_id == H.c.id))
        .where(H.c.tenant_id == tid),
    ):
        problems = []
        if r.status not in HOLD_STATUSES:
            problems.append(f"status {r.status!r}")
        if r.amount <= 0 or not 0 <= r.captured <= r.amount:
            problems.append(f"captured {r.captured} of {r.amount}")
        if r.captured and r.status != "captured":
            problems.append(f"{r.status} with captured {r.captured}")
        if int(r.total or 0) != r.amount:
            problems.append(f"reserved {r.total or 0} of {r.amount}")
        if problems:
            out.append(
                Violation("hold_inconsistent", r.member_id, f"hold {r.id}: " + "; ".join(problems))
            )


async def _journals(tx: Tx, out: list[Violation]) -> None:
    for r in await _rows(
        tx,
        select(T.c.journal_id, func.sum(T.c.amount))
        .where(T.c.tenant_id == tx.tenant_id, T.c.counterparty.like("member:%"))
        .group_by(T.c.journal_id)
        .having(func.sum(T.c.amount) != 0),
    ):
        out.append(Violation("journal_unbalanced", None, f"journal {r[0]}: Σ {r[1]}"))

"""Moving balances between members when ONE ID merges two people, and moving them back.

A merge moves every unexpired lot of the loser with something left to the survivor: per account,
one ``merge_out`` line on the loser (allocated to the lots it empties) and one ``merge_in`` lot on
the survivor per source lot (same ``expires_at``, ``related_id`` = the source lot), all sharing a
``journal_id`` whose amounts sum to zero. Open holds stay with the member that placed them;
if one is released or expires after the merge, ``holds.give_back`` forwards its points to the
survivor (``hold_forward`` lines).

Unmerge walks the snapshot and moves back ``min(moved, what the survivor lot still has)`` into new
loser lots with the original expiries (``unmerge_out`` / ``unmerge_in``); the unrecoverable rest
is recorded as ``shortfall`` on the ``unmerge_out`` line. When nothing happened in between, both
members end with exactly their pre-merge balances and per-expiry lot breakdown.

Both are idempotent per ``merge_id``: the idempotency keys are derived from it.

Every move emits ``points.changed`` for both members (``kind`` ``merge_out`` / ``merge_in``,
``unmerge_…``, ``hold_forward_…``; ``transfer_id`` = the move's ``*_out`` line for both sides).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update

from gateway.errors import InvalidInput
from gateway.ids import derived_id, uuid7
from gateway.ledger import validation as v
from gateway.ledger.accounts import ACCOUNTS
from gateway.ledger.events import Change, emit
from gateway.ledger.store import (
    A,
    T,
    add_to_balance,
    chunks,
    lock_balances,
    unexpired,
)
from gateway.storage.db import Tx

SNAPSHOT_VERSION = 1


def _out_key(prefix: str, merge_id: uuid.UUID, account: str) -> str:
    return f"{prefix}:{merge_id}:{account}"


async def merge_balances(
    tx: Tx,
    *,
    loser_id: uuid.UUID,
    survivor_id: uuid.UUID,
    merge_id: uuid.UUID,
    reason: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Move the loser's unexpired lots to the survivor; returns a JSON-able snapshot for unmerge."""
    v.member(loser_id, "loser_id")
    v.member(survivor_id, "survivor_id")
    v.member(merge_id, "merge_id")
    v.text(reason, "reason", 200)
    if loser_id == survivor_id:
        raise InvalidInput("a member cannot merge into itself", field="survivor_id")
    now = v.now_or(now)
    snapshot: dict[str, Any] = {
        "version": SNAPSHOT_VERSION,
        "merge_id": str(merge_id),
        "loser_id": str(loser_id),
        "survivor_id": str(survivor_id),
        "moves": [],
    }
    if await _already(tx, "merge", merge_id):
        snapshot["moves"] = await _stored_moves(tx, merge_id)
        return snapshot

    await lock_balances(tx, [(m, a) for m in (loser_id, survivor_id) for a in ACCOUNTS])
    lots = list(
        await tx.conn.execute(
            select(T.c.id, T.c.account, T.c.remaining, T.c.expires_at)
            .where(
                T.c.tenant_id == tx.tenant_id,
                T.c.member_id == loser_id,
                T.c.remaining > 0,
                unexpired(now),
            )
            .order_by(T.c.account, T.c.expires_at.asc().nulls_last(), T.c.created_at, T.c.id)
        )
    )
    by_account: dict[str, list[Any]] = defaultdict(list)
    for lot in lots:
        by_account[lot.account].append(lot)
    for account, account_lots in sorted(by_account.items()):
        moves = [(lot.id, lot.remaining, lot.expires_at) for lot in account_lots]
        journal = derived_id(tx.tenant_id, "ledger-merge", merge_id, account)
        snapshot["moves"].append(
            await _move(
                tx,
                kind="merge",
                op_id=merge_id,
                journal_id=journal,
                account=account,
                giver=loser_id,
                taker=survivor_id,
                moves=[(lot, amt, amt, exp) for lot, amt, exp in moves],
                reason=reason,
                now=now,
            )
        )
    return snapshot


async def unmerge_balances(
    tx: Tx,
    *,
    merge_id: uuid.UUID,
    snapshot: dict[str, Any],
    reason: str,
    now: datetime | None = None,
) -> None:
    """Move back what is left of the merged lots (see the module docstring)."""
    v.member(merge_id, "merge_id")
    v.text(reason, "reason", 200)
    now = v.now_or(now)
    try:
        if snapshot["version"] != SNAPSHOT_VERSION or snapshot["merge_id"] != str(merge_id):
            raise ValueError("snapshot does not belong to this merge")
        loser_id = uuid.UUID(snapshot["loser_id"])
        survivor_id = uuid.UUID(snapshot["survivor_id"])
        plan = [
            (
                move["account"],
                [
                    (
                        uuid.UUID(lot["to_lot"]),
                        int(lot["amount"]),
                        _parse_ts(lot["expires_at"]),
                    )
                    for lot in move["lots"]
                ],
            )
            for move in snapshot["moves"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"invalid merge snapshot: {exc}", field="snapshot") from exc
    if not plan or await _already(tx, "unmerge", merge_id):
        return
    await lock_balances(tx, [(m, a) for m in (loser_id, survivor_id) for a, _ in plan])
    for account, lots in plan:
        left = {
            r.id: int(r.remaining)
            for part in chunks([lot for lot, _, _ in lots])
            for r in await tx.conn.execute(
                select(T.c.id, T.c.remaining).where(
                    T.c.tenant_id == tx.tenant_id,
                    T.c.member_id == survivor_id,
                    T.c.account == account,
                    T.c.id.in_(part),
                )
            )
        }
        await _move(
            tx,
            kind="unmerge",
            op_id=merge_id,
            journal_id=derived_id(tx.tenant_id, "ledger-unmerge", merge_id, account),
            account=account,
            giver=survivor_id,
            taker=loser_id,
            moves=[(lot, amt, min(amt, left.get(lot, 0)), exp) for lot, amt, exp in lots],
            reason=reason,
            now=now,
        )


async def _move(
    tx: Tx,
    *,
    kind: str,
    op_id: uuid.UUID,
    journal_id: uuid.UUID,
    account: str,
    giver: uuid.UUID,
    taker: uuid.UUID,
    moves: list[tuple[uuid.UUID, int, int, datetime | None]],
    reason: str,
    now: datetime,
) -> dict[str, Any]:
    """One account's paired move: an ``<kind>_out`` line on the giver drawing from its lots and an
    ``<kind>_in`` lot on the taker per source lot. ``moves`` = (lot, wanted, taken, expires_at)."""
    taken_total = sum(m[2] for m in moves)
    shortfall = sum(m[1] - m[2] for m in moves)
    out_id = uuid7()
    # Sorted uuid7s keep the new lots in source order even within one millisecond, so the
    # spending order among equal expiries stays deterministic.
    in_ids = sorted(uuid7() for _ in moves)
    rows: list[dict[str, Any]] = [
        _line(
            tx,
            id=out_id,
            journal_id=journal_id,
            member_id=giver,
            account=account,
            kind=f"{kind}_out",
            amount=-taken_total,
            counterparty=f"member:{taker}",
            reason=reason,
            source_ref=str(op_id),
            idem_key=_out_key(kind, op_id, account),
            related_id=op_id,
            shortfall=shortfall,
            remaining=None,
            expires_at=None,
            now=now,
        )
    ]
    lots_out: list[dict[str, Any]] = []
    for new_id, (lot_id, _wanted, taken, expires_at) in zip(in_ids, moves, strict=True):
        lots_out.append(
            {
                "from_lot": str(lot_id),
                "to_lot": str(new_id),
                "amount": taken,
                "expires_at": expires_at.isoformat() if expires_at else None,
            }
        )
        if taken:
            rows.append(
                _line(
                    tx,
                    id=new_id,
                    journal_id=journal_id,
                    member_id=taker,
                    account=account,
                    kind=f"{kind}_in",
                    amount=taken,
                    counterparty=f"member:{giver}",
                    reason=reason,
                    source_ref=str(op_id),
                    idem_key=f"{kind}:{op_id}:in:{lot_id}",
                    related_id=lot_id,
                    shortfall=0,
                    remaining=taken,
                    expires_at=expires_at,
                    now=now,
                )
            )
    drawn = [(lot_id, taken) for lot_id, _, taken, _ in moves if taken]
    for part in chunks(rows):
        await tx.conn.execute(T.insert(), list(part))
    allocations = [
        {"tenant_id": tx.tenant_id, "owner_id": out_id, "lot_id": lot, "amount": amt}
        for lot, amt in drawn
    ]
    for part in chunks(allocations):
        await tx.conn.execute(A.insert(), list(part))
    decrement = (
        update(T)
        .where(T.c.tenant_id == tx.tenant_id, T.c.id == _bind("lot", T.c.id))
        .values(remaining=T.c.remaining - _bind("take", T.c.remaining))
    )
    if drawn:
        await tx.conn.execute(decrement, [{"lot": lot, "take": amt} for lot, amt in drawn])
    if taken_total:
        first, second = sorted([giver, taker], key=str)
        changes: list[Change] = []
        for member in (first, second):
            delta = -taken_total if member == giver else taken_total
            after = await add_to_balance(tx, member, account, now, available=delta)
            side = "out" if member == giver else "in"
            changes.append(Change(member, account, delta, after, f"{kind}_{side}", out_id))
        await emit(tx, changes, now)
    return {
        "account": account,
        "journal_id": str(journal_id),
        "out_id": str(out_id),
        "amount": taken_total,
        "lots": lots_out,
    }


def _bind(name: str, column: Any) -> Any:
    return bindparam(name, type_=column.type)


def _line(tx: Tx, *, now: datetime, **values: Any) -> dict[str, Any]:
    return {
        "tenant_id": tx.tenant_id,
        "source": "sys:merge",
        "request_hash": v.request_hash(
            op=values["kind"], idem_key=values["idem_key"], amount=values["amount"]
        ),
        "hold_id": None,
        "created_at": now,
        **values,
    }


async def _already(tx: Tx, kind: str, merge_id: uuid.UUID) -> bool:
    keys = [_out_key(kind, merge_id, a) for a in ACCOUNTS]
    stmt = select(T.c.id).where(T.c.tenant_id == tx.tenant_id, T.c.idem_key.in_(keys)).limit(1)
    return (await tx.conn.execute(stmt)).first() is not None


async def _stored_moves(tx: Tx, merge_id: uuid.UUID) -> list[dict[str, Any]]:
    """Rebuild a merge's snapshot moves from its transfers (a replayed merge returns the same)."""
    outs = list(
        await tx.conn.execute(
            select(T)
            .where(
                T.c.tenant_id == tx.tenant_id,
                T.c.idem_key.in_([_out_key("merge", merge_id, a) for a in ACCOUNTS]),
            )
            .order_by(T.c.account)
        )
    )
    moves = []
    for out in outs:
        ins = await tx.conn.execute(
            select(T)
            .where(
                T.c.tenant_id == tx.tenant_id,
                T.c.journal_id == out.journal_id,
                T.c.kind == "merge_in",
            )
            .order_by(T.c.id)
        )
        moves.append(
            {
                "account": out.account,
                "journal_id": str(out.journal_id),
                "out_id": str(out.id),
                "amount": -int(out.amount),
                "lots": [
                    {
                        "from_lot": str(r.related_id),
                        "to_lot": str(r.id),
                        "amount": int(r.amount),
                        "expires_at": r.expires_at.isoformat() if r.expires_at else None,
                    }
                    for r in ins
                ],
            }
        )
    return moves


def _parse_ts(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("naive expiry in snapshot")
    return parsed

"""Two-phase spending: ``hold`` → ``capture(≤ held)`` | ``release`` (POS, exchanges).

A hold reserves lots exactly like a debit (allocations owned by the hold id) and moves the amount
from ``available`` to ``held``. Capture and release each flip the hold's status with a guarded
``UPDATE … WHERE status = 'active'``, so each happens at most once even under concurrency; an
active hold past its TTL can no longer be captured and is released by ``expire_due``.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update

from gateway.errors import (
    HoldNotActive,
    IdempotencyKeyReused,
    InsufficientBalance,
    InvalidInput,
    NotFound,
)
from gateway.ids import uuid7
from gateway.ledger import validation as v
from gateway.ledger.credits import replay
from gateway.ledger.events import Change, emit
from gateway.ledger.merge import _move
from gateway.ledger.models import HoldResult, TransferResult, hold_result, transfer_result
from gateway.ledger.store import (
    Draw,
    H,
    add_allocations,
    add_to_balance,
    allocations_of,
    draw_lots,
    hold_row,
    insert_transfer,
    plan,
    return_to_lots,
    shift_balance,
    spendable_lots,
    transfer_by_key,
    unexpired_total,
    upsert,
)
from gateway.storage.db import Tx
from gateway.storage.tables import Member

MEMBER = Member.__table__  # type: ignore[attr-defined]


async def hold(
    tx: Tx,
    *,
    member_id: uuid.UUID,
    account: str,
    amount: int,
    ttl_seconds: int,
    reason: str,
    idem_key: str,
    now: datetime | None = None,
) -> HoldResult:
    """Reserve ``amount`` of spendable lots for ``ttl_seconds``; idempotent on ``idem_key``."""
    v.member(member_id)
    acct = v.account(account)
    v.amount(amount)
    v.ttl_seconds(ttl_seconds)
    v.common(reason=reason, idem_key=idem_key)
    if not acct.spendable:
        raise InvalidInput(f"account {account!r} is not spendable", field="account")
    now = v.now_or(now)
    fingerprint = v.request_hash(
        op="hold",
        member_id=member_id,
        account=account,
        amount=amount,
        ttl_seconds=ttl_seconds,
        reason=reason,
    )
    hold_id = uuid7()
    # Claim the key first: a concurrent same-key request waits here, then replays.
    claim = (
        upsert(tx, H)
        .values(
            tenant_id=tx.tenant_id,
            id=hold_id,
            member_id=member_id,
            account=account,
            amount=amount,
            captured=0,
            status="active",
            reason=reason,
            idem_key=idem_key,
            request_hash=fingerprint,
            expires_at=now + timedelta(seconds=ttl_seconds),
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=[H.c.tenant_id, H.c.idem_key])
        .returning(*H.c)
    )
    row = (await tx.conn.execute(claim)).first()
    if row is None:
        original = (
            await tx.conn.execute(
                select(H).where(H.c.tenant_id == tx.tenant_id, H.c.idem_key == idem_key)
            )
        ).one()
        if original.request_hash != fingerprint:
            raise IdempotencyKeyReused("idempotency key already used for a different request")
        return hold_result(original, replayed=True)

    reserved = await shift_balance(
        tx, member_id, account, now, available=-amount, held=amount, min_available=amount
    )
    draws: list[Draw] = []
    missing = amount
    if reserved is not None:
        draws, missing = plan(await spendable_lots(tx, member_id, account, now), amount)
        if missing:
            await add_to_balance(tx, member_id, account, now, available=amount, held=-amount)
    if missing:
        # Leave the transaction as we found it (the caller may catch and carry on).
        await tx.conn.execute(delete(H).where(H.c.tenant_id == tx.tenant_id, H.c.id == hold_id))
        raise InsufficientBalance(
            "insufficient balance",
            available=await unexpired_total(tx, member_id, account, now),
            requested=amount,
        )
    await draw_lots(tx, draws)
    await add_allocations(tx, hold_id, draws)
    assert reserved is not None
    await emit(tx, [Change(member_id, account, -amount, reserved, "hold", hold_id)], now)
    return hold_result(row)


async def capture(
    tx: Tx,
    *,
    hold_id: uuid.UUID,
    amount: int | None,
    reason: str,
    idem_key: str,
    now: datetime | None = None,
) -> tuple[HoldResult, TransferResult]:
    """Spend ``amount`` (default: all) of an active, unexpired hold; the rest goes back to the
    latest-expiring lots the hold drew from, so the member keeps the points that live longest."""
    v.member(hold_id, "hold_id")
    if amount is not None:
        v.amount(amount)
    v.common(reason=reason, idem_key=idem_key)
    now = v.now_or(now)
    fingerprint = v.request_hash(op="capture", hold_id=hold_id, amount=amount, reason=reason)
    if await transfer_by_key(tx, idem_key) is not None:
        return await _capture_replay(tx, idem_key, fingerprint)

    wanted = H.c.amount if amount is None else amount
    flipped = (
        await tx.conn.execute(
            update(H)
            .where(
                H.c.tenant_id == tx.tenant_id,
                H.c.id == hold_id,
                H.c.status == "active",
                H.c.expires_at > now,
                H.c.amount >= wanted,
            )
            .values(status="captured", captured=wanted, resolved_at=now)
            .returning(*H.c)
        )
    ).first()
    if flipped is None:
        current = await hold_row(tx, hold_id)
        if current is None:
            raise NotFound("hold not found", hold_id=str(hold_id))
        if await transfer_by_key(tx, idem_key) is not None:  # a concurrent same-key capture won
            return await _capture_replay(tx, idem_key, fingerprint)
        if current.status != "active":
            raise HoldNotActive(f"hold is {current.status}", status=current.status)
        if current.expires_at <= now:
            raise HoldNotActive("hold has expired", status="expired")
        raise InvalidInput("amount exceeds the held amount", field="amount")

    captured: int = flipped.captured
    transfer_id = uuid7()
    row = (
        await tx.conn.execute(
            insert_transfer(
                tx,
                id=transfer_id,
                journal_id=transfer_id,
                member_id=flipped.member_id,
                account=flipped.account,
                kind="capture",
                amount=-captured,
                counterparty="sys:capture",
                reason=reason,
                source="hold",
                source_ref=str(hold_id),
                idem_key=idem_key,
                request_hash=fingerprint,
                remaining=None,
                expires_at=None,
                hold_id=hold_id,
                shortfall=0,
                created_at=now,
            )
        )
    ).first()
    if row is None:
        # A concurrent write of another kind claimed this key first. Undo the flip so the
        # transaction is unchanged even if the caller catches the error.
        await _unflip(tx, hold_id)
        raise IdempotencyKeyReused("idempotency key already used for a different request")

    spent, back = _split(await allocations_of(tx, [hold_id]), captured)
    after = await add_to_balance(
        tx,
        flipped.member_id,
        flipped.account,
        now,
        available=flipped.amount - captured,
        held=-flipped.amount,
    )
    await return_to_lots(tx, back)
    await add_allocations(tx, transfer_id, spent)
    # Always announced, even a full capture (delta 0): the held points are now spent.
    change = Change(
        flipped.member_id, flipped.account, flipped.amount - captured, after, "capture", transfer_id
    )
    await emit(tx, [change], now)
    return hold_result(flipped), transfer_result(row)


def _split(allocations: list[Any], captured: int) -> tuple[list[Draw], list[Draw]]:
    """Split a hold's draws (soonest-expiring first) into the captured part and the rest."""
    spent: list[Draw] = []
    back: list[Draw] = []
    left = captured
    for a in allocations:
        lot, amt = a.lot_id, a.amount
        take = min(left, amt)
        if take:
            spent.append((lot, take))
        if amt - take:
            back.append((lot, amt - take))
        left -= take
    return spent, back


async def _unflip(tx: Tx, hold_id: uuid.UUID) -> None:
    await tx.conn.execute(
        update(H)
        .where(H.c.tenant_id == tx.tenant_id, H.c.id == hold_id)
        .values(status="active", captured=0, resolved_at=None)
    )


async def _capture_replay(
    tx: Tx, idem_key: str, fingerprint: str
) -> tuple[HoldResult, TransferResult]:
    transfer = await replay(tx, idem_key, fingerprint)
    original = await transfer_by_key(tx, idem_key)
    held = await hold_row(tx, original.hold_id)
    return hold_result(held, replayed=True), transfer


async def release(
    tx: Tx,
    *,
    hold_id: uuid.UUID,
    reason: str,
    idem_key: str,
    now: datetime | None = None,
) -> HoldResult:
    """Give every held point back to the lots it came from. Releasing an active hold past its TTL
    is allowed (it is what expiry would do anyway)."""
    v.member(hold_id, "hold_id")
    v.common(reason=reason, idem_key=idem_key)
    now = v.now_or(now)
    fingerprint = v.request_hash(op="release", hold_id=hold_id, reason=reason)
    by_key = select(H).where(H.c.tenant_id == tx.tenant_id, H.c.release_key == idem_key)
    earlier = (await tx.conn.execute(by_key)).first()
    if earlier is not None:
        return _release_replay(earlier, fingerprint)

    flipped = (
        await tx.conn.execute(
            update(H)
            .where(H.c.tenant_id == tx.tenant_id, H.c.id == hold_id, H.c.status == "active")
            .values(
                status="released",
                resolved_at=now,
                release_key=idem_key,
                release_hash=fingerprint,
            )
            .returning(*H.c)
        )
    ).first()
    if flipped is None:
        current = await hold_row(tx, hold_id)
        if current is None:
            raise NotFound("hold not found", hold_id=str(hold_id))
        if current.release_key == idem_key:  # a concurrent same-key release won
            return _release_replay(current, fingerprint)
        raise HoldNotActive(f"hold is {current.status}", status=current.status)
    await give_back(tx, [flipped], now, kind="release")
    return hold_result(flipped)


def _release_replay(row: Any, fingerprint: str) -> HoldResult:
    if row.release_hash != fingerprint:
        raise IdempotencyKeyReused("idempotency key already used for a different request")
    return hold_result(row, replayed=True)


async def give_back(tx: Tx, holds: list[Any], now: datetime, *, kind: str) -> None:
    """Return whole holds to their lots and move them from ``held`` back to ``available``
    (release and expiry; ``kind`` names it in the ``points.changed`` events, one per hold).
    Balance rows are touched in sorted order, before any lot."""
    per_balance: dict[tuple[uuid.UUID, str], list[Any]] = defaultdict(list)
    for h in holds:
        per_balance[(h.member_id, h.account)].append(h)
    changes: list[Change] = []
    for (member_id, account), group in sorted(per_balance.items(), key=lambda i: str(i[0])):
        total = sum(h.amount for h in group)
        after = await add_to_balance(tx, member_id, account, now, available=total, held=-total)
        for h in reversed(group):  # the balance after each hold's share, in hold order
            changes.append(Change(member_id, account, h.amount, after, kind, h.id))
            after -= h.amount
    await emit(tx, changes, now)
    allocations = await allocations_of(tx, [h.id for h in holds])
    await return_to_lots(tx, [(a.lot_id, a.amount) for a in allocations])
    await _forward_to_survivors(tx, holds, allocations, now)


async def _forward_to_survivors(
    tx: Tx, holds: list[Any], allocations: list[Any], now: datetime
) -> None:
    """Hold points that come back to a member merged away since the hold was placed move on to
    the survivor (paired ``hold_forward`` lines, expiry kept).

    A merge moves available lots, not held ones; without this step a POS hold released after a
    ONE ID merge would return its points to a member whose id now resolves elsewhere, where no
    one could see or spend them."""
    member_ids = list({h.member_id for h in holds})
    rows = await tx.conn.execute(
        select(MEMBER.c.id, MEMBER.c.merged_into).where(
            MEMBER.c.tenant_id == tx.tenant_id,
            MEMBER.c.id.in_(member_ids),
            MEMBER.c.status == "merged",
        )
    )
    survivor_of = {r.id: r.merged_into for r in rows if r.merged_into is not None}
    if not survivor_of:
        return
    by_hold: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for a in allocations:
        by_hold[a.owner_id].append(a)
    for h in holds:
        survivor = survivor_of.get(h.member_id)
        if survivor is None or not by_hold.get(h.id):
            continue
        await _move(
            tx,
            kind="hold_forward",
            op_id=h.id,
            journal_id=uuid7(),
            account=h.account,
            giver=h.member_id,
            taker=survivor,
            moves=[(a.lot_id, a.amount, a.amount, a.expires_at) for a in by_hold[h.id]],
            reason="held points returned after a merge, forwarded to the surviving member",
            now=now,
        )

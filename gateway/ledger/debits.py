"""Debits: spend, refund reversal and other corrections that take points away.

A debit first decrements the balance row with a guarded ``UPDATE … WHERE available >= amount``
(on PostgreSQL the row lock serialises concurrent spends of one member; the re-checked WHERE makes
the loser fail cleanly instead of going negative), then draws unexpired lots soonest-expiring
first and records each draw in ``ledger_allocation``. The balance row counts expired lots the
sweeper has not reached yet, so the lot draw can still come up short: then the balance change is
undone before ``InsufficientBalance`` is raised, leaving the transaction exactly as it was.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from gateway.errors import InsufficientBalance, InvalidInput
from gateway.ids import uuid7
from gateway.ledger import validation as v
from gateway.ledger.credits import replay
from gateway.ledger.events import Change, emit
from gateway.ledger.models import TransferResult, transfer_result
from gateway.ledger.store import (
    Draw,
    add_allocations,
    add_to_balance,
    draw_lots,
    insert_transfer,
    lock_balances,
    plan,
    shift_balance,
    spendable_lots,
    transfer_by_key,
    unexpired_total,
)
from gateway.storage.db import Tx

MEMBER_SPEND_KINDS = frozenset({"spend"})
"""Kinds that are a member spending; only allowed on spendable accounts. Reversals and other
corrections may debit any account (e.g. growth value earned by a refunded order)."""


async def debit(
    tx: Tx,
    *,
    member_id: uuid.UUID,
    account: str,
    amount: int,
    reason: str,
    source: str,
    idem_key: str,
    source_ref: str | None = None,
    kind: str = "spend",
    allow_shortfall: bool = False,
    now: datetime | None = None,
) -> TransferResult:
    """Take ``amount`` from the member's unexpired lots.

    Without ``allow_shortfall`` a debit is all or nothing (``InsufficientBalance``). With it, the
    debit takes what is spendable and records the rest as ``shortfall`` on the line, which is
    written even when nothing could be taken, so the history shows why nothing was recovered.
    """
    v.member(member_id)
    acct = v.account(account)
    v.amount(amount)
    v.common(reason=reason, idem_key=idem_key)
    v.text(source, "source", 64)
    v.text(source_ref, "source_ref", 128, optional=True)
    v.text(kind, "kind", 24)
    if kind in MEMBER_SPEND_KINDS and not acct.spendable:
        raise InvalidInput(f"account {account!r} is not spendable", field="account")
    if type(allow_shortfall) is not bool:
        raise InvalidInput("allow_shortfall must be a boolean", field="allow_shortfall")
    now = v.now_or(now)
    fingerprint = v.request_hash(
        op="debit",
        member_id=member_id,
        account=account,
        amount=amount,
        reason=reason,
        source=source,
        source_ref=source_ref,
        kind=kind,
        allow_shortfall=allow_shortfall,
    )
    if await transfer_by_key(tx, idem_key) is not None:
        # A replay must return the original even if the balance has been spent since.
        return await replay(tx, idem_key, fingerprint)

    after: int | None = None
    if allow_shortfall:
        await lock_balances(tx, [(member_id, account)])
        draws, short = plan(await spendable_lots(tx, member_id, account, now), amount)
        taken = amount - short
    else:
        taken, short = amount, 0
        after = await _reserve(tx, member_id, account, amount, now)
        if after is None:
            return await _refuse(tx, member_id, account, amount, now, idem_key, fingerprint)
        draws, missing = plan(await spendable_lots(tx, member_id, account, now), amount)
        if missing:
            # Expired-but-unswept lots made the balance row look big enough: undo and refuse.
            await add_to_balance(tx, member_id, account, now, available=amount)
            return await _refuse(tx, member_id, account, amount, now, idem_key, fingerprint)

    transfer_id = uuid7()
    row = (
        await tx.conn.execute(
            insert_transfer(
                tx,
                id=transfer_id,
                journal_id=transfer_id,
                member_id=member_id,
                account=account,
                kind=kind,
                amount=-taken,
                counterparty=f"sys:{kind}",
                reason=reason,
                source=source,
                source_ref=source_ref,
                idem_key=idem_key,
                request_hash=fingerprint,
                remaining=None,
                expires_at=None,
                shortfall=short,
                created_at=now,
            )
        )
    ).first()
    if row is None:
        # A concurrent request with the same key committed first: undo our reservation.
        if not allow_shortfall:
            await add_to_balance(tx, member_id, account, now, available=amount)
        return await replay(tx, idem_key, fingerprint)
    charged = await _apply_draws(
        tx, transfer_id, member_id, account, draws, now, charge=allow_shortfall
    )
    if taken:
        after = charged if allow_shortfall else after
        assert after is not None
        await emit(tx, [Change(member_id, account, -taken, after, kind, transfer_id)], now)
    return transfer_result(row)


async def _refuse(
    tx: Tx,
    member_id: uuid.UUID,
    account: str,
    amount: int,
    now: datetime,
    idem_key: str,
    fingerprint: str,
) -> TransferResult:
    """Raise ``InsufficientBalance`` — unless a concurrent request with the same key committed
    while we waited for the balance lock (it spent the points): then this is its replay."""
    if await transfer_by_key(tx, idem_key) is not None:
        return await replay(tx, idem_key, fingerprint)
    raise InsufficientBalance(
        "insufficient balance",
        available=await unexpired_total(tx, member_id, account, now),
        requested=amount,
    )


async def _reserve(
    tx: Tx, member_id: uuid.UUID, account: str, amount: int, now: datetime
) -> int | None:
    """The guarded decrement: the new ``available`` if the row had ``amount`` available, else
    ``None`` (nothing changed)."""
    return await shift_balance(tx, member_id, account, now, available=-amount, min_available=amount)


async def _apply_draws(
    tx: Tx,
    owner_id: uuid.UUID,
    member_id: uuid.UUID,
    account: str,
    draws: list[Draw],
    now: datetime,
    *,
    charge: bool,
) -> int | None:
    """Draw the lots; with ``charge``, also take the total off the balance row and return its new
    ``available`` (``None`` when nothing was charged)."""
    await draw_lots(tx, draws)
    await add_allocations(tx, owner_id, draws)
    total = sum(a for _, a in draws)
    if charge and total:
        return await add_to_balance(tx, member_id, account, now, available=-total)
    return None

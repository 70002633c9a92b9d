"""Result types returned by the ledger and the row → result conversions.

Results are frozen dataclasses, not ORM objects: they are safe to hand to DataLoaders, cache and
compare, and a replayed write returns exactly the same shape with ``replayed=True``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class TransferResult:
    id: uuid.UUID
    journal_id: uuid.UUID
    member_id: uuid.UUID
    account: str
    kind: str
    amount: int  # signed change of the member's total (available + held)
    reason: str
    source: str
    source_ref: str | None
    remaining: int | None  # a lot's unspent part (credits only), as stored now
    expires_at: datetime | None
    shortfall: int  # what a debit wanted but could not take (allow_shortfall)
    created_at: datetime
    replayed: bool = False


@dataclass(frozen=True)
class HoldResult:
    id: uuid.UUID
    member_id: uuid.UUID
    account: str
    amount: int
    captured: int
    status: str  # active | captured | released | expired
    reason: str
    expires_at: datetime
    created_at: datetime
    replayed: bool = False


@dataclass(frozen=True)
class BalanceView:
    member_id: uuid.UUID
    account: str
    available: int  # spendable now: excludes expired lots the sweeper has not reached yet
    held: int
    expiring: int  # unexpired lots expiring within the requested window
    next_expiry: datetime | None


@dataclass(frozen=True)
class ExpireReport:
    lots_expired: int
    amount_expired: int
    holds_expired: int


@dataclass(frozen=True)
class Violation:
    code: str
    member_id: uuid.UUID | None
    detail: str


def transfer_result(row: Any, *, replayed: bool = False) -> TransferResult:
    m = row._mapping
    return TransferResult(
        id=m["id"],
        journal_id=m["journal_id"],
        member_id=m["member_id"],
        account=m["account"],
        kind=m["kind"],
        amount=m["amount"],
        reason=m["reason"],
        source=m["source"],
        source_ref=m["source_ref"],
        remaining=m["remaining"],
        expires_at=m["expires_at"],
        shortfall=m["shortfall"],
        created_at=m["created_at"],
        replayed=replayed,
    )


def hold_result(row: Any, *, replayed: bool = False) -> HoldResult:
    m = row._mapping
    return HoldResult(
        id=m["id"],
        member_id=m["member_id"],
        account=m["account"],
        amount=m["amount"],
        captured=m["captured"],
        status=m["status"],
        reason=m["reason"],
        expires_at=m["expires_at"],
        created_at=m["created_at"],
        replayed=replayed,
    )

"""Credits: every credit is a lot.

The hot path (earning) is one statement on PostgreSQL: a data-modifying CTE inserts the transfer
(claiming the idempotency key with ``ON CONFLICT DO NOTHING``), upserts the balance row and records
the ``points.changed`` event (with the balance after the change) only if the insert happened — so
the event costs no extra round trip. SQLite has no DML in CTEs, so it runs the same three steps
back to back inside its already-serialised write transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Final

from sqlalchemy import bindparam
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gateway.errors import IdempotencyKeyReused
from gateway.ids import uuid7
from gateway.ledger import validation as v
from gateway.ledger.events import Change, emit
from gateway.ledger.events import event_id as points_event_id
from gateway.ledger.models import TransferResult, transfer_result
from gateway.ledger.store import T, add_to_balance, transfer_by_key
from gateway.storage.db import Tx


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT_EXPIRY"


DEFAULT_EXPIRY: Final = _Default()
"""Sentinel for ``credit(expires_at=...)``: use the account's default TTL (None means never)."""


async def credit(
    tx: Tx,
    *,
    member_id: uuid.UUID,
    account: str,
    amount: int,
    reason: str,
    source: str,
    idem_key: str,
    source_ref: str | None = None,
    kind: str = "earn",
    expires_at: datetime | _Default | None = DEFAULT_EXPIRY,
    now: datetime | None = None,
) -> TransferResult:
    """Add ``amount`` to the member's account as a new lot; idempotent on ``idem_key``."""
    v.member(member_id)
    acct = v.account(account)
    v.amount(amount)
    v.common(reason=reason, idem_key=idem_key)
    v.text(source, "source", 64)
    v.text(source_ref, "source_ref", 128, optional=True)
    v.text(kind, "kind", 24)
    now = v.now_or(now)
    if isinstance(expires_at, _Default):
        # The fingerprint records "default", not the computed instant: a replay at a later time
        # must still match the original request.
        requested_expiry: object = "default"
        ttl = acct.default_ttl_days if acct.expiring else None
        lot_expiry = now + timedelta(days=ttl) if ttl else None
    else:
        requested_expiry = lot_expiry = v.aware(expires_at, "expires_at")
    fingerprint = v.request_hash(
        op="credit",
        member_id=member_id,
        account=account,
        amount=amount,
        reason=reason,
        source=source,
        source_ref=source_ref,
        kind=kind,
        expires_at=requested_expiry,
    )
    transfer_id = uuid7()
    params: dict[str, Any] = {
        "tenant_id": tx.tenant_id,
        "id": transfer_id,
        "journal_id": transfer_id,
        "member_id": member_id,
        "account": account,
        "kind": kind,
        "amount": amount,
        "counterparty": f"sys:{kind}",
        "reason": reason,
        "source": source,
        "source_ref": source_ref,
        "idem_key": idem_key,
        "request_hash": fingerprint,
        "remaining": amount,
        "expires_at": lot_expiry,
        "hold_id": None,
        "related_id": None,
        "shortfall": 0,
        "created_at": now,
    }
    if tx.driver is not None:
        claimed = await tx.driver.fetchval(
            _PG_CREDIT,
            *(params[c] for c in _PG_COLUMNS),
            points_event_id(tx.tenant_id, transfer_id, kind),
        )
        if claimed is not None:
            return TransferResult(
                id=transfer_id,
                journal_id=transfer_id,
                member_id=member_id,
                account=account,
                kind=kind,
                amount=amount,
                reason=reason,
                source=source,
                source_ref=source_ref,
                remaining=amount,
                expires_at=lot_expiry,
                shortfall=0,
                created_at=now,
            )
        return await replay(tx, idem_key, fingerprint)
    row = (await tx.conn.execute(_credit_statement(tx.dialect), params)).first()
    if row is None:
        return await replay(tx, idem_key, fingerprint)
    after = await add_to_balance(tx, member_id, account, now, available=amount)
    await emit(tx, [Change(member_id, account, amount, after, kind, transfer_id)], now)
    return transfer_result(row)


_PG_COLUMNS = tuple(c.name for c in T.c)
_PG_CREDIT = f"""
WITH ins AS (
    INSERT INTO ledger_transfer ({", ".join(_PG_COLUMNS)})
    VALUES ({", ".join(f"${i}" for i in range(1, len(_PG_COLUMNS) + 1))})
    ON CONFLICT (tenant_id, idem_key) DO NOTHING
    RETURNING id, tenant_id, member_id, account, kind, amount, created_at
), bal AS (
    INSERT INTO ledger_balance (tenant_id, member_id, account, available, held, updated_at)
    SELECT tenant_id, member_id, account, amount, 0, created_at FROM ins
    ON CONFLICT (tenant_id, member_id, account)
    DO UPDATE SET available = ledger_balance.available + excluded.available,
                  updated_at = excluded.updated_at
    RETURNING available
), ev AS (
    INSERT INTO member_event (tenant_id, id, member_id, type, payload, occurred_at, created_at)
    SELECT ins.tenant_id, ${len(_PG_COLUMNS) + 1}, ins.member_id, 'points.changed',
        json_build_object('account', ins.account, 'delta', ins.amount,
            'available', bal.available, 'kind', ins.kind, 'transfer_id', ins.id::text),
        ins.created_at, clock_timestamp()
    FROM ins, bal
    ON CONFLICT DO NOTHING
)
SELECT id FROM ins
"""
"""The PostgreSQL credit as one statement, sent straight to asyncpg (a prepared statement in its
cache): claim the key and, only if claimed, add to the balance row and record ``points.changed``
(the last parameter is its derived id; ``created_at`` is the wall clock, as for every event).
Written as SQL text rather than built with SQLAlchemy: its per-call compile-cache and result
machinery cost more CPU than the round trip itself."""


@cache
def _credit_statement(dialect: str) -> Any:
    """The claiming INSERT of the SQLAlchemy path (SQLite; PostgreSQL without a driver
    connection), built once per dialect: building a statement costs more Python than running it.
    The balance upsert and the event follow as separate statements."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(T)
        .values({c.name: bindparam(c.name, type_=c.type) for c in T.c})
        .on_conflict_do_nothing(index_elements=[T.c.tenant_id, T.c.idem_key])
        .returning(*T.c)
    )


async def replay(tx: Tx, idem_key: str, fingerprint: str) -> TransferResult:
    """The original transfer for a claimed key, or ``IdempotencyKeyReused`` if it differs."""
    original = await transfer_by_key(tx, idem_key)
    if original is None:  # pragma: no cover - the key was claimed by a transaction that committed
        raise RuntimeError(f"idempotency key {idem_key!r} claimed but not visible")
    if original.request_hash != fingerprint:
        raise IdempotencyKeyReused(
            "idempotency key already used for a different request", idem_key=idem_key
        )
    return transfer_result(original, replayed=True)


__all__ = ["DEFAULT_EXPIRY", "credit", "replay"]

"""Client idempotency keys for API mutations (Stripe-style), claimed in the write's transaction.

A mutation that carries ``idempotencyKey`` first claims ``(tenant, key)`` in
``idempotency_record`` with ``INSERT … ON CONFLICT DO NOTHING`` inside the same transaction as
the write itself:

- the insert wins → run the write, then store its result (typename + ids) on the record; the
  commit makes claim and write visible together, and a rollback (domain error) frees the key, so
  a failed attempt can simply be retried;
- the insert conflicts → the key was used before: the same operation with the same canonical input
  returns the stored result (the caller re-reads the objects), anything else is
  :class:`~gateway.errors.IdempotencyKeyReused`.

On PostgreSQL a concurrent duplicate blocks on the unique index until the first transaction ends,
then sees its record; on SQLite writers are serialised by ``BEGIN IMMEDIATE``.

Ledger writes made by the mutation get their own ``idem_key`` derived from the client key
(:func:`ledger_key`), so even a write that bypassed this table could not apply twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any

from sqlalchemy import select, update

from gateway.errors import IdempotencyKeyReused, InvalidInput
from gateway.sql import upsert_insert
from gateway.storage.db import Tx
from gateway.storage.tables import IdempotencyRecord

R: Any = IdempotencyRecord.__table__  # type: ignore[attr-defined]

MAX_KEY_LENGTH = 96
"""Leaves room for the ``api:<operation>:`` prefix inside the ledger's 128-character idem_key."""
_KEY = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


def check_key(key: str | None) -> str | None:
    """Validate a client key: 1-96 printable ASCII characters, or ``None`` for no key."""
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH or not _KEY.match(key):
        raise InvalidInput(
            f"idempotencyKey must be 1-{MAX_KEY_LENGTH} printable ASCII characters without spaces",
            field="idempotencyKey",
        )
    return key


def _canonical(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def request_hash(operation: str, request: Any) -> str:
    """SHA-256 of the operation name and the canonical JSON of its input (sorted keys)."""
    body = json.dumps(
        {"operation": operation, "input": _canonical(request)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def ledger_key(operation: str, client_key: str | None) -> str:
    """The ledger ``idem_key`` for a mutation: derived from the client key, else a fresh uuid."""
    if client_key is None:
        return f"api:{operation}:{uuid.uuid4()}"
    return f"api:{operation}:{client_key}"


async def claim(
    tx: Tx, *, operation: str, key: str, request_fingerprint: str
) -> dict[str, Any] | None:
    """Claim ``key`` for this request. ``None``: claimed, go ahead and :func:`store` the result.
    A dict: the stored result of the identical earlier request (a replay)."""
    stmt = (
        upsert_insert(tx, R)
        .values(
            tenant_id=tx.tenant_id,
            key=key,
            operation=operation,
            request_hash=request_fingerprint,
            result={},
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "key"])
    )
    inserted = await tx.conn.execute(stmt)
    if inserted.rowcount == 1:
        return None
    row = (
        await tx.conn.execute(
            select(R.c.operation, R.c.request_hash, R.c.result).where(
                R.c.tenant_id == tx.tenant_id, R.c.key == key
            )
        )
    ).first()
    if row is None:  # pragma: no cover - the conflicting row cannot vanish inside our transaction
        raise IdempotencyKeyReused("idempotency key is in use by a concurrent request")
    if row.operation != operation or row.request_hash != request_fingerprint:
        raise IdempotencyKeyReused(
            "this idempotencyKey was already used for a different request; use a new key"
        )
    return dict(row.result or {})


async def store(tx: Tx, *, key: str, result: Mapping[str, Any]) -> None:
    """Record the result of the write that claimed ``key`` (same transaction)."""
    await tx.conn.execute(
        update(R)
        .where(R.c.tenant_id == tx.tenant_id, R.c.key == key)
        .values(result=_canonical(dict(result)))
    )

"""Batch reads for DataLoaders: one statement answers any number of ids or members."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, type_coerce

from gateway.errors import InvalidInput
from gateway.ledger import validation as v
from gateway.ledger.models import (
    BalanceView,
    HoldResult,
    TransferResult,
    hold_result,
    transfer_result,
)
from gateway.ledger.store import B, H, T
from gateway.storage.db import Tx
from gateway.storage.types import AwareDateTime

MAX_PAGE = 100


async def get_holds(tx: Tx, hold_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, HoldResult]:
    """Holds by id; another tenant's id is simply absent (indistinguishable from missing)."""
    if not hold_ids:
        return {}
    rows = await tx.conn.execute(
        select(H).where(H.c.tenant_id == tx.tenant_id, H.c.id.in_(list(set(hold_ids))))
    )
    return {r.id: hold_result(r) for r in rows}


async def get_transfers(tx: Tx, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, TransferResult]:
    if not ids:
        return {}
    rows = await tx.conn.execute(
        select(T).where(T.c.tenant_id == tx.tenant_id, T.c.id.in_(list(set(ids))))
    )
    return {r.id: transfer_result(r) for r in rows}


async def balances_for(
    tx: Tx,
    member_ids: Sequence[uuid.UUID],
    *,
    now: datetime | None = None,
    expiring_within: timedelta = timedelta(days=30),
) -> dict[tuple[uuid.UUID, str], BalanceView]:
    """Balances of many members in ONE statement: the balance rows joined with an aggregate over
    their dated lots, so ``available`` can leave out lots that expired but were not swept yet."""
    if not member_ids:
        return {}
    now = v.now_or(now)
    horizon = now + expiring_within
    members = list(set(member_ids))
    expired = case((T.c.expires_at <= now, T.c.remaining), else_=0)
    expiring = case((and_(T.c.expires_at > now, T.c.expires_at <= horizon), T.c.remaining), else_=0)
    lots = (
        select(
            T.c.member_id,
            T.c.account,
            func.sum(expired).label("expired"),
            func.sum(expiring).label("expiring"),
            type_coerce(
                func.min(case((T.c.expires_at > now, T.c.expires_at), else_=None)),
                AwareDateTime,
            ).label("next_expiry"),
        )
        .where(
            T.c.tenant_id == tx.tenant_id,
            T.c.member_id.in_(members),
            T.c.remaining > 0,
            T.c.expires_at.is_not(None),
        )
        .group_by(T.c.member_id, T.c.account)
        .subquery()
    )
    stmt = (
        select(
            B.c.member_id,
            B.c.account,
            B.c.available,
            B.c.held,
            func.coalesce(lots.c.expired, 0).label("expired"),
            func.coalesce(lots.c.expiring, 0).label("expiring"),
            lots.c.next_expiry,
        )
        .select_from(
            B.outerjoin(
                lots, and_(lots.c.member_id == B.c.member_id, lots.c.account == B.c.account)
            )
        )
        .where(B.c.tenant_id == tx.tenant_id, B.c.member_id.in_(members))
    )
    out: dict[tuple[uuid.UUID, str], BalanceView] = {}
    for r in await tx.conn.execute(stmt):
        out[(r.member_id, r.account)] = BalanceView(
            member_id=r.member_id,
            account=r.account,
            available=int(r.available) - int(r.expired),
            held=int(r.held),
            expiring=int(r.expiring),
            next_expiry=r.next_expiry,
        )
    return out


async def transfers_for(
    tx: Tx,
    member_ids: Sequence[uuid.UUID],
    *,
    account: str | None = None,
    limit_per_member: int = 20,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> dict[uuid.UUID, list[TransferResult]]:
    """Each member's newest transfers (keyset on ``(created_at, id)``), in one statement."""
    if type(limit_per_member) is not int or not 1 <= limit_per_member <= MAX_PAGE:
        raise InvalidInput(f"limit must be 1..{MAX_PAGE}", field="limit_per_member")
    if account is not None:
        v.account(account)
    if not member_ids:
        return {}
    conditions: list[Any] = [
        T.c.tenant_id == tx.tenant_id,
        T.c.member_id.in_(list(set(member_ids))),
    ]
    if account is not None:
        conditions.append(T.c.account == account)
    if before is not None:
        ts, tid = before
        conditions.append(or_(T.c.created_at < ts, and_(T.c.created_at == ts, T.c.id < tid)))
    rank = (
        func.row_number()
        .over(partition_by=T.c.member_id, order_by=(T.c.created_at.desc(), T.c.id.desc()))
        .label("rank")
    )
    ranked = select(T, rank).where(*conditions).subquery()
    stmt = (
        select(ranked)
        .where(ranked.c.rank <= limit_per_member)
        .order_by(ranked.c.member_id, ranked.c.created_at.desc(), ranked.c.id.desc())
    )
    out: dict[uuid.UUID, list[TransferResult]] = defaultdict(list)
    for r in await tx.conn.execute(stmt):
        out[r.member_id].append(transfer_result(r))
    return dict(out)


async def amounts_by_source(tx: Tx, source_ref: str) -> dict[tuple[str, str], int]:
    """Σ amount per (account, kind) of the transfers carrying ``source_ref`` (e.g. an order id):
    refund reversal uses it to know what an order earned and what was already reversed."""
    stmt = (
        select(T.c.account, T.c.kind, func.sum(T.c.amount))
        .where(T.c.tenant_id == tx.tenant_id, T.c.source_ref == source_ref)
        .group_by(T.c.account, T.c.kind)
    )
    return {(r[0], r[1]): int(r[2]) for r in await tx.conn.execute(stmt)}

"""Stock: one counter row per reward, taken and given back with guarded single statements.

``take`` is ``UPDATE mall_stock SET taken = taken + n WHERE … AND taken + n <= stock`` — the
row lock PostgreSQL takes for the update serialises concurrent buyers of the same reward, and the
guard makes the 11th of 10 units fail instead of overselling. Unlimited rewards (no ``stock``)
skip the counter bound but still count.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from gateway.mall.catalog import Catalog
from gateway.sql import upsert_insert
from gateway.storage.db import Tx
from gateway.storage.tables import MallStock

S: Any = MallStock.__table__  # type: ignore[attr-defined]


async def ensure_stock_rows(tx: Tx, catalog: Catalog, now: datetime) -> None:
    """Create the counter of every reward in the catalog (existing counters are kept: a new
    config version changes the cap, never what was already taken)."""
    for code in catalog.rewards:
        ins = upsert_insert(tx, S).values(
            tenant_id=tx.tenant_id, reward=code, taken=0, updated_at=now
        )
        await tx.conn.execute(ins.on_conflict_do_nothing())


async def take(tx: Tx, reward: str, quantity: int, stock: int | None, now: datetime) -> bool:
    """Take ``quantity`` units if that many are left; returns whether it did."""
    cond = [S.c.tenant_id == tx.tenant_id, S.c.reward == reward]
    if stock is not None:
        cond.append(S.c.taken + quantity <= stock)
    result = await tx.conn.execute(
        update(S)
        .where(*cond)
        .values(taken=S.c.taken + quantity, updated_at=now)
        .returning(S.c.taken)
    )
    if result.first() is not None:
        return True
    exists = (
        await tx.conn.execute(
            select(S.c.taken).where(S.c.tenant_id == tx.tenant_id, S.c.reward == reward)
        )
    ).first()
    if exists is None:  # no counter yet (a config saved outside ``config.save``): create it
        await ensure_stock_rows(tx, Catalog({reward: None}), now)  # type: ignore[dict-item]
        return await take(tx, reward, quantity, stock, now)
    return False


async def give_back(tx: Tx, reward: str, quantity: int, now: datetime) -> None:
    await tx.conn.execute(
        update(S)
        .where(S.c.tenant_id == tx.tenant_id, S.c.reward == reward, S.c.taken >= quantity)
        .values(taken=S.c.taken - quantity, updated_at=now)
    )


async def taken(tx: Tx, rewards: list[str]) -> dict[str, int]:
    rows = await tx.conn.execute(
        select(S.c.reward, S.c.taken).where(S.c.tenant_id == tx.tenant_id, S.c.reward.in_(rewards))
    )
    return {r.reward: int(r.taken) for r in rows}

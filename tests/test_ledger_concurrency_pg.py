"""Concurrency on real PostgreSQL with parallel connections: the balance row lock and the guarded
UPDATE make concurrent spends and holds all-or-nothing, and one idempotency key writes once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest

from gateway import ledger
from gateway.errors import InsufficientBalance
from gateway.storage.db import Database
from tests.conftest import new_tenant

pytestmark = pytest.mark.postgres
N = 50


async def _setup(db: Database, amount: int = 100) -> tuple[uuid.UUID, uuid.UUID]:
    tenant = await new_tenant(db, "conc")
    member = uuid.uuid4()
    async with db.tenant_tx(tenant.id) as tx:
        await ledger.credit(
            tx,
            member_id=member,
            account="points",
            amount=amount,
            reason="seed",
            source="test",
            idem_key="seed",
        )
    return tenant.id, member


async def _outcomes(calls: list[Any]) -> Counter[str]:
    results = await asyncio.gather(*calls, return_exceptions=True)
    kinds: Counter[str] = Counter()
    for r in results:
        if isinstance(r, InsufficientBalance):
            kinds["insufficient"] += 1
        elif isinstance(r, BaseException):
            raise r
        else:
            kinds["ok"] += 1
    return kinds


async def _state(db: Database, tid: uuid.UUID, member: uuid.UUID) -> tuple[int, int, list[Any]]:
    async with db.tenant_tx(tid, write=False) as tx:
        view = (await ledger.balances_for(tx, [member]))[(member, "points")]
        return view.available, view.held, await ledger.verify(tx)


async def test_concurrent_spends_never_overdraw(pg_db: Database) -> None:
    tid, member = await _setup(pg_db)

    async def spend(i: int) -> ledger.TransferResult:
        async with pg_db.tenant_tx(tid) as tx:
            return await ledger.debit(
                tx,
                member_id=member,
                account="points",
                amount=10,
                reason="spend",
                source="test",
                idem_key=f"spend-{i}",
            )

    assert await _outcomes([spend(i) for i in range(N)]) == {"ok": 10, "insufficient": 40}
    assert await _state(pg_db, tid, member) == (0, 0, [])


async def test_concurrent_holds_never_overdraw(pg_db: Database) -> None:
    tid, member = await _setup(pg_db)

    async def hold(i: int) -> ledger.HoldResult:
        async with pg_db.tenant_tx(tid) as tx:
            return await ledger.hold(
                tx,
                member_id=member,
                account="points",
                amount=10,
                ttl_seconds=600,
                reason="pos",
                idem_key=f"hold-{i}",
            )

    assert await _outcomes([hold(i) for i in range(N)]) == {"ok": 10, "insufficient": 40}
    assert await _state(pg_db, tid, member) == (0, 100, [])


async def test_concurrent_replays_of_one_key_write_once(pg_db: Database) -> None:
    tid, member = await _setup(pg_db, amount=1000)

    async def earn() -> ledger.TransferResult:
        async with pg_db.tenant_tx(tid) as tx:
            return await ledger.credit(
                tx,
                member_id=member,
                account="points",
                amount=7,
                reason="earn",
                source="test",
                idem_key="same-earn",
            )

    async def spend() -> ledger.TransferResult:
        async with pg_db.tenant_tx(tid) as tx:
            return await ledger.debit(
                tx,
                member_id=member,
                account="points",
                amount=5,
                reason="spend",
                source="test",
                idem_key="same-spend",
            )

    async def hold() -> ledger.HoldResult:
        async with pg_db.tenant_tx(tid) as tx:
            return await ledger.hold(
                tx,
                member_id=member,
                account="points",
                amount=3,
                ttl_seconds=600,
                reason="pos",
                idem_key="same-hold",
            )

    earns = await asyncio.gather(*[earn() for _ in range(20)])
    spends = await asyncio.gather(*[spend() for _ in range(20)])
    holds = await asyncio.gather(*[hold() for _ in range(20)])
    for results in (earns, spends, holds):
        assert len({r.id for r in results}) == 1
        assert sum(not r.replayed for r in results) == 1
    assert await _state(pg_db, tid, member) == (1000 + 7 - 5 - 3, 3, [])

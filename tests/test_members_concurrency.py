"""Concurrent ingests of one phone on PostgreSQL (real parallel connections) make one member."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from gateway import members
from gateway.identifiers import tenant_key
from gateway.identity.model import I, M
from gateway.members import IdentifierInput
from gateway.storage.db import Database
from tests.conftest import TEST_SECRET, new_tenant


async def test_twenty_concurrent_ingests_of_one_phone_make_one_member(pg_db: Database) -> None:
    tenant = await new_tenant(pg_db, "conc")
    other = await new_tenant(pg_db, "conc-b")
    key = tenant_key(TEST_SECRET, tenant.id)

    async def one(i: int) -> members.IngestResult:
        async with pg_db.tenant_tx(tenant.id) as tx:
            return await members.ingest(
                tx,
                channel="tmall",
                identifiers=[
                    IdentifierInput("phone", "*", "+86 139 0000 0000"),
                    IdentifierInput("tmall_ouid", "shop", f"ouid-{i}"),
                ],
                profile=None,
                key=key,
            )

    results = await asyncio.gather(*(one(i) for i in range(20)))
    assert len({r.member_id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    async with pg_db.tenant_tx(tenant.id) as tx:
        count = await tx.conn.scalar(
            select(func.count()).select_from(M).where(M.c.tenant_id == tenant.id)
        )
        idents = await tx.conn.scalar(
            select(func.count()).select_from(I).where(I.c.tenant_id == tenant.id)
        )
    assert count == 1 and idents == 21
    async with pg_db.tenant_tx(other.id) as tx:
        assert await members.resolve(tx, results[0].member_id) is None


async def _member(db: Database, tenant_id, key: bytes, phone: str):  # type: ignore[no-untyped-def]
    async with db.tenant_tx(tenant_id) as tx:
        r = await members.ingest(
            tx, channel="pos", identifiers=[IdentifierInput("phone", "*", phone)], key=key
        )
    return r.member_id


async def test_write_racing_a_merge_lands_on_the_survivor(pg_db: Database) -> None:
    """A credit that resolved the loser just before a concurrent merge is moved by that merge,
    instead of being stranded on a member nobody can see any more."""
    from gateway import ledger

    tenant = await new_tenant(pg_db, "race")
    key = tenant_key(TEST_SECRET, tenant.id)
    survivor = await _member(pg_db, tenant.id, key, "13900000001")
    loser = await _member(pg_db, tenant.id, key, "13900000002")

    async def merge() -> None:
        async with pg_db.tenant_tx(tenant.id) as tx:
            await members.merge(tx, survivor_id=survivor, loser_id=loser, reason="race")

    async with pg_db.tenant_tx(tenant.id) as tx:
        target = await members.resolve(tx, loser, lock=True)
        assert target == loser
        racing = asyncio.create_task(merge())
        await asyncio.sleep(0.3)
        assert not racing.done()  # the merge waits for this write
        await ledger.credit(
            tx,
            member_id=target,
            account="points",
            amount=50,
            reason="bonus",
            source="test",
            idem_key="race-1",
        )
    await racing
    async with pg_db.tenant_tx(tenant.id, write=False) as tx:
        balances = await ledger.balances_for(tx, [survivor, loser])
        assert await ledger.verify(tx) == []
    assert balances[(survivor, "points")].available == 50
    assert balances.get((loser, "points")) is None or balances[(loser, "points")].available == 0


async def test_ingest_racing_a_merge_attaches_to_the_survivor(pg_db: Database) -> None:
    tenant = await new_tenant(pg_db, "race-ingest")
    key = tenant_key(TEST_SECRET, tenant.id)
    survivor = await _member(pg_db, tenant.id, key, "13900000003")
    loser = await _member(pg_db, tenant.id, key, "13900000004")

    async def merge() -> None:
        async with pg_db.tenant_tx(tenant.id) as tx:
            await members.merge(tx, survivor_id=survivor, loser_id=loser, reason="race")

    async def ingest() -> members.IngestResult:
        async with pg_db.tenant_tx(tenant.id) as tx:
            return await members.ingest(
                tx,
                channel="wechat",
                key=key,
                identifiers=[
                    IdentifierInput("phone", "*", "13900000004"),
                    IdentifierInput("email", "*", "race@example.com"),
                ],
            )

    results = await asyncio.gather(merge(), ingest(), return_exceptions=True)
    assert not any(isinstance(r, BaseException) for r in results), results
    async with pg_db.tenant_tx(tenant.id) as tx:
        owner = await members.find_by_identifier(tx, "email", "*", "race@example.com", key=key)
        assert owner == survivor
        rows = (
            (
                await tx.conn.execute(
                    select(I.c.member_id).where(I.c.tenant_id == tenant.id, I.c.kind == "email")
                )
            )
            .scalars()
            .all()
        )
    assert rows == [survivor]  # attached to the active member, not the merged one

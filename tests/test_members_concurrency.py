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

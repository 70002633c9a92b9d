"""Row-level security is a real second wall on PostgreSQL (ARCHITECTURE §3)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from gateway.storage.db import Database
from gateway.storage.tables import Member
from tests.conftest import new_tenant

M = Member.__table__  # type: ignore[attr-defined]


async def test_query_without_tenant_setting_sees_nothing(pg_db: Database) -> None:
    tenant = await new_tenant(pg_db, "rls")
    async with pg_db.tenant_tx(tenant.id) as tx:
        await tx.conn.execute(M.insert().values(tenant_id=tenant.id, id=uuid.uuid4()))
        assert (await tx.conn.execute(text("SELECT count(*) FROM member"))).scalar() >= 1
    async with pg_db.engine.connect() as conn:
        # No app.tenant_id: not even a query with no WHERE clause sees a row.
        assert (await conn.execute(text("SELECT count(*) FROM member"))).scalar() == 0
        # And the app role cannot switch RLS off for itself.
        role = (
            await conn.execute(
                text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
            )
        ).scalar()
        assert role is False
        await conn.execute(text("SET row_security = off"))
        with pytest.raises(Exception, match="row-level security"):
            await conn.execute(text("SELECT count(*) FROM member"))


async def test_other_tenant_setting_sees_nothing_and_cannot_write(pg_db: Database) -> None:
    a = await new_tenant(pg_db, "rls-a")
    b = await new_tenant(pg_db, "rls-b")
    async with pg_db.tenant_tx(a.id) as tx:
        await tx.conn.execute(M.insert().values(tenant_id=a.id, id=uuid.uuid4()))
    async with pg_db.tenant_tx(b.id) as tx:
        assert (await tx.conn.execute(text("SELECT count(*) FROM member"))).scalar() == 0
    with pytest.raises(Exception, match="row-level security"):
        async with pg_db.tenant_tx(b.id) as tx:
            await tx.conn.execute(M.insert().values(tenant_id=a.id, id=uuid.uuid4()))

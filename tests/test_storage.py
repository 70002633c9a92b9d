"""Storage conventions that every later feature relies on."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, text
from sqlmodel import SQLModel

from gateway.auth import authenticate, create_api_key
from gateway.errors import InvalidInput
from gateway.storage.db import Database
from gateway.storage.tables import GLOBAL_TABLES, Member
from gateway.tenancy import Scope
from gateway.tenants import TenantInfo, create_tenant


def test_every_tenant_table_keys_lead_with_tenant_id() -> None:
    for table in SQLModel.metadata.sorted_tables:
        if table.name in GLOBAL_TABLES:
            continue
        assert next(c.name for c in table.primary_key.columns) == "tenant_id", table.name
        for constraint in table.constraints:
            cols = [c.name for c in getattr(constraint, "columns", [])]
            if cols and constraint.__class__.__name__ == "UniqueConstraint":
                assert cols[0] == "tenant_id", (table.name, cols)


async def test_api_key_is_hashed_scoped_and_tenant_bound(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo
) -> None:
    created = await create_api_key(db, tenant.id, name="pos", scopes="pos,read")
    principal = await authenticate(db, created.plaintext)
    assert principal is not None and principal.tenant_id == tenant.id
    assert principal.scopes == {Scope.POS, Scope.READ}
    async with db.tenant_tx(tenant.id) as tx:
        stored = (await tx.conn.execute(text("SELECT key_hash FROM api_key"))).scalars().all()
    assert created.plaintext not in stored and all(len(h) == 64 for h in stored)
    # A key whose tenant part is swapped for another tenant's id is worthless.
    forged = created.plaintext.replace(tenant.id.hex, other_tenant.id.hex)
    assert await authenticate(db, forged) is None
    assert await authenticate(db, "mhk_garbage") is None
    assert await authenticate(db, created.plaintext + "x") is None


async def test_bad_tenant_input_is_rejected(db: Database) -> None:
    with pytest.raises(InvalidInput):
        await create_tenant(db, name="x", slug="Bad Slug")
    with pytest.raises(InvalidInput):
        await create_tenant(db, name="x", slug=f"ok-{uuid.uuid4().hex[:6]}", timezone="Mars/Base")
    with pytest.raises(InvalidInput):
        await create_api_key(db, uuid.uuid4(), name="k", scopes="root")


async def test_tenant_tx_is_scoped(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo
) -> None:
    m = Member.__table__  # type: ignore[attr-defined]
    async with db.tenant_tx(tenant.id) as tx:
        await tx.conn.execute(m.insert().values(tenant_id=tenant.id, id=uuid.uuid4()))
    async with db.tenant_tx(other_tenant.id) as tx:
        rows = (await tx.conn.execute(select(m).where(m.c.tenant_id == other_tenant.id))).all()
    assert rows == []

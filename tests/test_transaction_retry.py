"""Deadlocks are retried whole (gateway.storage.retry), on real PostgreSQL deadlocks: the error
is recognised whether SQLAlchemy wrapped it or asyncpg raised it directly, and a GraphQL mutation
whose transaction PostgreSQL aborted is run again and writes exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from gateway import idempotency
from gateway.storage.db import Database, Tx
from gateway.storage.retry import ATTEMPTS, is_transient, sqlstate
from gateway.tenants import TenantInfo
from tests.conftest import new_tenant
from tests.graphql_client import Api, make_api, new_member
from tests.support import pos_member

LOCK_SQL = "SELECT 1 FROM member WHERE tenant_id = {t} AND id = {m} FOR UPDATE"


async def _lock(tx: Tx, member: uuid.UUID, *, raw: bool) -> None:
    if raw:
        assert tx.driver is not None
        await tx.driver.execute(LOCK_SQL.format(t="$1", m="$2"), tx.tenant_id, member)
    else:
        await tx.conn.execute(
            text(LOCK_SQL.format(t=":t", m=":m")), {"t": tx.tenant_id, "m": member}
        )


async def real_deadlock(db: Database, tenant: TenantInfo, *, raw: bool) -> BaseException:
    """Two transactions lock two members in opposite orders; PostgreSQL aborts one of them."""
    a, b = await pos_member(db, tenant, "DL-A"), await pos_member(db, tenant, "DL-B")
    ready = [asyncio.Event(), asyncio.Event()]

    async def worker(first: uuid.UUID, then: uuid.UUID, mine: int) -> None:
        async with db.tenant_tx(tenant.id) as tx:
            await _lock(tx, first, raw=raw)
            ready[mine].set()
            await ready[1 - mine].wait()
            await _lock(tx, then, raw=raw)

    results = await asyncio.gather(worker(a, b, 0), worker(b, a, 1), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1, results
    return errors[0]


@pytest.fixture
async def pg_tenant(pg_db: Database) -> TenantInfo:
    return await new_tenant(pg_db, "dl")


@pytest.mark.parametrize("raw", [False, True], ids=["sqlalchemy", "asyncpg"])
async def test_real_deadlocks_are_transient_other_errors_are_not(
    pg_db: Database, pg_tenant: TenantInfo, raw: bool
) -> None:
    err = await real_deadlock(pg_db, pg_tenant, raw=raw)
    assert (sqlstate(err), is_transient(err)) == ("40P01", True)
    with pytest.raises(Exception) as dup:
        async with pg_db.tenant_tx(pg_tenant.id) as tx:
            await tx.conn.execute(text("SELECT 1/0"))
    assert (sqlstate(dup.value), is_transient(dup.value)) == ("22012", False)
    assert not is_transient(ValueError("not a database error"))


@pytest.fixture
async def pg_api(pg_db: Database, pg_url: str, pg_tenant: TenantInfo) -> AsyncIterator[Api]:
    other = await new_tenant(pg_db, "dl-b")
    async with make_api(pg_db, pg_url, pg_tenant, other) as client:
        yield client


ADJUST = """mutation($i: AdjustPointsInput!) { adjustPoints(input: $i) { __typename
  ... on AdjustPointsPayload { member { points } } ... on Error { code message } } }"""


async def test_a_mutation_pg_aborted_is_run_again_and_writes_once(
    pg_api: Api, pg_db: Database, pg_tenant: TenantInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    deadlock = await real_deadlock(pg_db, pg_tenant, raw=True)
    m = await new_member(pg_api)
    real_claim = idempotency.claim
    calls: list[int] = []

    async def claim_failing(fail: int) -> Any:
        async def claim(*args: Any, **kw: Any) -> Any:
            calls.append(1)
            if len(calls) <= fail:
                raise deadlock  # what PostgreSQL raised in the transaction above
            return await real_claim(*args, **kw)

        return claim

    monkeypatch.setattr(idempotency, "claim", await claim_failing(2))
    inp = {"memberId": m, "amount": 70, "reason": "goodwill", "idempotencyKey": "dl-1"}
    body = await pg_api.gql("admin", ADJUST, {"i": inp})
    assert body["data"]["adjustPoints"] == {
        "__typename": "AdjustPointsPayload",
        "member": {"points": 70},
    }
    assert len(calls) == 3  # two aborted transactions, then the one that committed

    calls.clear()
    monkeypatch.setattr(idempotency, "claim", await claim_failing(ATTEMPTS))
    inp = {**inp, "idempotencyKey": "dl-2"}
    body = await pg_api.gql("admin", ADJUST, {"i": inp}, errors=True)
    assert len(calls) == ATTEMPTS and body["data"] is None
    assert "deadlock" not in body["errors"][0]["message"]  # unexpected errors stay masked
    monkeypatch.setattr(idempotency, "claim", real_claim)
    again = await pg_api.gql("admin", ADJUST, {"i": {**inp, "amount": 1}})
    assert again["data"]["adjustPoints"]["member"]["points"] == 71  # dl-2 never half-wrote

"""Bulk coupon issuance to a segment: exact skips and limits on both databases; on PostgreSQL a
100k-member segment survives an injected crash and a cancelled task and still gives every member
exactly one coupon, and single issues racing the job stay exact."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from asyncpg.exceptions import InterfaceError
from sqlalchemy import func, insert, select, text, update

from gateway import coupons
from gateway.coupons.bulk import coupon_key, source_of
from gateway.coupons.model import C
from gateway.errors import IdempotencyKeyReused, InvalidTransition, NotEligible
from gateway.storage.db import Database
from gateway.storage.tables import Member, MemberEvent, Segment, SegmentMember
from gateway.tenants import TenantInfo
from tests.conftest import new_tenant
from tests.support import coupon_template

M: Any = Member.__table__  # type: ignore[attr-defined]
E: Any = MemberEvent.__table__  # type: ignore[attr-defined]
S: Any = Segment.__table__  # type: ignore[attr-defined]
SM: Any = SegmentMember.__table__  # type: ignore[attr-defined]
T0 = datetime(2026, 3, 10, 4, tzinfo=UTC)


async def seed_members(db: Database, tenant: TenantInfo, n: int) -> list[uuid.UUID]:
    """``n`` bare active members (a segment needs nothing else of them)."""
    async with db.tenant_tx(tenant.id) as tx:
        if tx.is_postgres:
            rows = await tx.conn.execute(
                text(
                    "INSERT INTO member (tenant_id, id, status, created_at, updated_at) "
                    "SELECT :t, gen_random_uuid(), 'active', :at, :at "
                    "FROM generate_series(1, :n) RETURNING id"
                ),
                {"t": tenant.id, "n": n, "at": T0},
            )
            return sorted(r[0] for r in rows)
        ids = sorted(uuid.uuid4() for _ in range(n))
        await tx.conn.execute(
            insert(M),
            [
                {"tenant_id": tenant.id, "id": i, "status": "active", "created_at": T0}
                | {"updated_at": T0}
                for i in ids
            ],
        )
        return ids


async def seed_segment(
    db: Database, tenant: TenantInfo, members: list[uuid.UUID], code: str = "VIP"
) -> uuid.UUID:
    """A static segment holding ``members`` (rows written directly, as a build would)."""
    sid = uuid.uuid4()
    async with db.tenant_tx(tenant.id) as tx:
        await tx.conn.execute(
            insert(S).values(
                tenant_id=tenant.id,
                id=sid,
                code=code,
                title=code,
                filter={},
                dynamic=False,
                active=True,
                member_count=len(members),
                refreshed_at=T0,
                created_by="test",
                created_at=T0,
                updated_at=T0,
            )
        )
        if tx.is_postgres:
            await tx.conn.execute(
                text(
                    "INSERT INTO segment_member (tenant_id, segment_id, member_id, entered_at) "
                    "SELECT :t, :s, m, :at FROM unnest(CAST(:ids AS uuid[])) AS m"
                ),
                {"t": tenant.id, "s": sid, "ids": members, "at": T0},
            )
        else:
            await tx.conn.execute(
                insert(SM),
                [
                    {"tenant_id": tenant.id, "segment_id": sid, "member_id": m, "entered_at": T0}
                    for m in members
                ],
            )
    return sid


async def template(db: Database, tenant: TenantInfo, **kw: Any) -> coupons.Template:
    return await coupon_template(db, tenant, now=T0, **kw)


async def start(
    db: Database, tenant: TenantInfo, t: coupons.Template, segment: str, key: str = "k1"
) -> coupons.Job:
    async with db.tenant_tx(tenant.id) as tx:
        return await coupons.start_job(tx, t.code, segment, idem_key=key, actor="test", now=T0)


async def holdings(db: Database, tenant: TenantInfo, t: coupons.Template) -> Counter[uuid.UUID]:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        rows = await tx.conn.execute(
            select(C.c.member_id).where(C.c.tenant_id == tenant.id, C.c.template_id == t.id)
        )
        return Counter(r[0] for r in rows)


async def counter(db: Database, tenant: TenantInfo, t: coupons.Template) -> int:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        return (await coupons.get_template(tx, t.id)).issued


async def issued_events(db: Database, tenant: TenantInfo) -> int:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        return (
            await tx.conn.execute(
                select(func.count()).where(E.c.tenant_id == tenant.id, E.c.type == "coupon.issued")
            )
        ).scalar_one()


async def test_bulk_issue_skips_and_limits(db: Database, tenant: TenantInfo) -> None:
    people = await seed_members(db, tenant, 30)
    await seed_segment(db, tenant, people)
    t = await template(db, tenant, per_member_limit=1)
    for m in people[:3]:  # already at the per-member limit
        async with db.tenant_tx(tenant.id) as tx:
            await coupons.issue(tx, t.id, m, source="test", idem_key=f"one-{m}", now=T0)
    async with db.tenant_tx(tenant.id) as tx:  # merged after the segment was built
        await tx.conn.execute(
            update(M)
            .where(M.c.tenant_id == tenant.id, M.c.id == people[-1])
            .values(status="merged", merged_into=people[0])
        )

    job = await start(db, tenant, t, "VIP")
    assert (job.status, job.total, job.processed, job.replayed) == ("pending", 30, 0, False)
    seen: list[int] = []
    done = await coupons.run_job(
        db, tenant.id, job.id, batch=7, now=T0, on_batch=lambda j: seen.append(j.processed)
    )
    assert done.status == "done" and done.finished_at is not None
    assert seen == [7, 14, 21, 28, 29, 29]  # the merged member is no longer listed
    assert (done.processed, done.issued, done.skipped) == (29, 26, 3)
    assert done.skip_reasons == {"MEMBER_LIMIT": 3}
    held = await holdings(db, tenant, t)
    assert set(held) == set(people[:-1]) and set(held.values()) == {1}
    assert await counter(db, tenant, t) == 29
    assert await issued_events(db, tenant) == 29

    async with db.tenant_tx(tenant.id) as tx:  # the job's coupon is an ordinary idempotent issue
        m = people[5]
        key, source = coupon_key(job.id, m), source_of(job.id)
        replay = await coupons.issue(tx, t.id, m, source=source, idem_key=key, now=T0)
        assert replay.replayed and replay.source == source
    again = await start(db, tenant, t, "VIP")
    assert again.replayed and again.id == job.id and again.status == "done"
    assert (await coupons.run_job(db, tenant.id, job.id, now=T0)).issued == 26
    assert sum((await holdings(db, tenant, t)).values()) == 29
    other = await template(db, tenant)
    with pytest.raises(IdempotencyKeyReused):
        await start(db, tenant, other, "VIP")
    async with db.tenant_tx(tenant.id) as tx:
        with pytest.raises(InvalidTransition):
            await coupons.cancel_job(tx, job.id)
    inactive = await template(db, tenant, active=False)
    with pytest.raises(NotEligible) as err:
        await start(db, tenant, inactive, "VIP", key="k9")
    assert err.value.reason == "INACTIVE"


async def test_total_limit_and_cancel(db: Database, tenant: TenantInfo) -> None:
    people = await seed_members(db, tenant, 25)
    await seed_segment(db, tenant, people)
    t = await template(db, tenant, total_limit=10)
    job = await start(db, tenant, t, "VIP")
    done = await coupons.run_job(db, tenant.id, job.id, batch=4, now=T0)
    assert (done.issued, done.skip_reasons) == (10, {"TOTAL_LIMIT": 15})
    held = await holdings(db, tenant, t)
    assert sum(held.values()) == 10 and set(held) == set(people[:10])  # in member_id order
    assert await counter(db, tenant, t) == 10

    u = await template(db, tenant)
    second = await start(db, tenant, u, "VIP", key="k2")
    stop_after = 2

    async def cancel_midway(j: coupons.Job) -> None:
        if j.processed >= stop_after * 5:
            async with db.tenant_tx(tenant.id) as tx:
                await coupons.cancel_job(tx, j.id)

    ended = await coupons.run_job(db, tenant.id, second.id, batch=5, now=T0, on_batch=cancel_midway)
    assert (ended.status, ended.issued) == ("cancelled", 10)
    assert sum((await holdings(db, tenant, u)).values()) == 10
    assert (await coupons.run_job(db, tenant.id, second.id, now=T0)).status == "cancelled"


# ---- PostgreSQL: 100k members, crash and resume; races with single issues -------------------


class Crash(Exception):
    pass


@pytest.fixture
async def wide_db(pg_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(pg_url, pool_size=12)
    yield database
    await database.dispose()


@pytest.mark.postgres
async def test_100k_segment_resumes_after_crash_and_cancel(wide_db: Database) -> None:
    db = wide_db
    tenant = await new_tenant(db, "bulk")
    people = await seed_members(db, tenant, 100_000)
    await seed_segment(db, tenant, people, "ALL")
    t = await template(db, tenant, per_member_limit=1)
    job = await start(db, tenant, t, "ALL")
    assert job.total == 100_000

    async def crash_after_3(j: coupons.Job) -> None:
        if j.processed >= 3 * 5000:
            raise Crash("injected after 3 batches")

    with pytest.raises(Crash):
        await coupons.run_job(db, tenant.id, job.id, batch=5000, on_batch=crash_after_3)
    async with db.tenant_tx(tenant.id, write=False) as tx:
        failed = await coupons.get_job(tx, job.id)
    assert (failed.status, failed.processed, failed.issued) == ("failed", 15_000, 15_000)
    # Shown over GraphQL: the exception's text (SQL, parameters) stays in the log.
    assert failed.error == "internal error (Crash); see the gateway log"

    # Resume, and kill the runner task in the middle of a batch.
    task = asyncio.create_task(coupons.run_job(db, tenant.id, job.id, batch=5000))
    while True:
        await asyncio.sleep(0.05)
        async with db.tenant_tx(tenant.id, write=False) as tx:
            if (await coupons.get_job(tx, job.id)).processed >= 30_000:
                break
    task.cancel()
    # Cancelled inside a statement, asyncpg closes the connection under the transaction.
    with pytest.raises((asyncio.CancelledError, InterfaceError)):
        await task

    done = await coupons.run_job(db, tenant.id, job.id, batch=5000)
    assert done.status == "done" and done.error is None
    assert (done.processed, done.issued, done.skipped) == (100_000, 100_000, 0)
    held = await holdings(db, tenant, t)
    assert len(held) == 100_000 and set(held.values()) == {1}
    assert await counter(db, tenant, t) == 100_000
    assert await issued_events(db, tenant) == 100_000


@pytest.mark.postgres
async def test_job_and_single_issues_race_exactly(wide_db: Database) -> None:
    db = wide_db
    tenant = await new_tenant(db, "bulk")
    people = await seed_members(db, tenant, 3000)
    inside, outside = people[:2500], people[2500:]
    await seed_segment(db, tenant, inside, "HALF")
    t = await template(db, tenant, per_member_limit=1, total_limit=2600)
    job = await start(db, tenant, t, "HALF")
    rng = random.Random(3)
    singles = rng.sample(inside, 150) + rng.sample(outside, 150)
    rng.shuffle(singles)

    async def one(m: uuid.UUID) -> str:
        await asyncio.sleep(rng.random() * 0.5)
        try:
            async with db.tenant_tx(tenant.id) as tx:
                await coupons.issue(tx, t.id, m, source="single", idem_key=f"s-{m}")
        except NotEligible as exc:
            return exc.reason
        return "ok"

    results = await asyncio.gather(
        coupons.run_job(db, tenant.id, job.id, batch=100),
        coupons.run_job(db, tenant.id, job.id, batch=100),  # a second runner takes turns
        *(one(m) for m in singles),
    )
    done: coupons.Job = results[0]
    outcomes = Counter(results[2:])
    held = await holdings(db, tenant, t)
    assert set(held.values()) == {1}  # never two for one member
    assert sum(held.values()) == 2600 == await counter(db, tenant, t)
    assert done.status == "done" and done.processed == 2500
    assert done.issued + outcomes["ok"] == 2600
    assert done.skipped == 2500 - done.issued
    assert set(done.skip_reasons) <= {"MEMBER_LIMIT", "TOTAL_LIMIT"}
    assert set(outcomes) <= {"ok", "MEMBER_LIMIT", "TOTAL_LIMIT"}
    assert await issued_events(db, tenant) == 2600
    async with db.tenant_tx(tenant.id, write=False) as tx:
        rows = await tx.conn.execute(
            select(C.c.member_id, C.c.source).where(
                C.c.tenant_id == tenant.id, C.c.template_id == t.id
            )
        )
        by_job = {m for m, s in rows if s.startswith("bulk:")}
    assert by_job <= set(inside) and len(by_job) == done.issued

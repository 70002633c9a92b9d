"""Benchmark ``coupon_redeem``: coupon redemptions vs the bare ledger write, and bulk issuance.

Run: ``python tests/perf/bench_coupon_redeem.py`` (PostgreSQL superuser URL from
``MEMBERHUB_BENCH_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1/postgres``). It
creates a fresh database owned by a non-superuser role (row-level security applies to both
sides), one tenant, 100k members in one segment, and one coupon template, then:

1. **bulk issuance**: ``coupons.start_job`` + ``coupons.run_job`` (batches of 1,000) to the
   100k-member segment — coupons/s over the whole run (coupons, their ``coupon.issued`` events,
   the job's progress);
2. 8 concurrent workers per phase, phases alternating in 3 rounds (medians):
   - **redeem**: ``coupons.redeem`` of a distinct, never-used code per call (the member paying
     given, as at a till) through ``Database.tenant_tx``: lock + read, rule checks, the guarded
     status change and its ``coupon.redeemed`` event;
   - **ledger**: ``ledger.credit`` through ``Database.tenant_tx`` (the bare ledger write path,
     one transaction per write) spread over the same members.

Prints ONE JSON line: coupons/s of the bulk issue, redemptions/s, ledger writes/s and the ratio
redeem/ledger (target ≥ 0.5), plus checks (every coupon issued once, every redemption stored).
"""

from __future__ import annotations

import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import func, select, text

from gateway import coupons
from gateway.coupons.model import C
from gateway.ids import uuid7
from gateway.storage.db import Database
from gateway.tenants import create_tenant
from tests.perf._harness import WORKERS, alternate, ledger_write, run

MEMBERS = 100_000
PHASE_SECONDS = float(os.environ.get("BENCH_PHASE_SECONDS", "6"))
T0 = datetime(2026, 1, 1, 2, tzinfo=UTC)


async def _seed(db: Database, tenant_id: uuid.UUID) -> None:
    """100k bare members and a static segment holding them all (rows written directly)."""
    async with db.tenant_tx(tenant_id) as tx:
        await tx.conn.execute(
            text(
                "INSERT INTO member (tenant_id, id, status, created_at, updated_at) "
                "SELECT :t, gen_random_uuid(), 'active', :at, :at FROM generate_series(1, :n)"
            ),
            {"t": tenant_id, "n": MEMBERS, "at": T0},
        )
        sid = uuid7()
        await tx.conn.execute(
            text(
                "INSERT INTO segment (tenant_id, id, code, title, filter, dynamic, active, "
                "member_count, refreshed_at, created_by, created_at, updated_at) VALUES "
                "(:t, :s, 'ALL', 'All', '{}', false, true, :n, :at, 'bench', :at, :at)"
            ),
            {"t": tenant_id, "s": sid, "n": MEMBERS, "at": T0},
        )
        await tx.conn.execute(
            text(
                "INSERT INTO segment_member (tenant_id, segment_id, member_id, entered_at) "
                "SELECT tenant_id, :s, id, :at FROM member WHERE tenant_id = :t"
            ),
            {"t": tenant_id, "s": sid, "at": T0},
        )
    async with db.tenant_tx(tenant_id) as tx:
        await tx.conn.execute(text("ANALYZE member"))
        await tx.conn.execute(text("ANALYZE segment_member"))


async def measure(app_url: str) -> dict[str, object]:
    db = Database.from_url(app_url, pool_size=WORKERS)
    tenant = await create_tenant(db, name="Bench", slug=f"bench-{uuid.uuid4().hex[:8]}")
    await _seed(db, tenant.id)
    async with db.tenant_tx(tenant.id) as tx:
        await coupons.create_template(
            tx,
            code="SAVE6",
            title="Spend 30 save 6",
            kind="amount_off",
            threshold_fen=3000,
            off_fen=600,
            validity="relative",
            valid_days=365,
            per_member_limit=1,
        )
        job = await coupons.start_job(tx, "SAVE6", "ALL", idem_key="bench", actor="bench")

    start = time.perf_counter()
    job = await coupons.run_job(db, tenant.id, job.id, batch=1000)
    bulk_seconds = time.perf_counter() - start
    async with db.tenant_tx(tenant.id) as tx:
        await tx.conn.execute(text("ANALYZE coupon"))
        rows = (
            await tx.conn.execute(select(C.c.code, C.c.member_id).where(C.c.tenant_id == tenant.id))
        ).all()
    rng = random.Random(7)
    rng.shuffle(rows)
    unused = iter(rows)
    members = [m for _, m in rows]
    order = coupons.Order("pos", "S1", [coupons.OrderLine("tea", 5000)], 5000)
    redeemed = 0

    async def via_redeem(_w: int) -> None:
        nonlocal redeemed
        code, member = next(unused)
        ref = uuid7().hex
        async with db.tenant_tx(tenant.id) as tx:
            await coupons.redeem(tx, code, order, order_ref=ref, idem_key=ref, member_id=member)
        redeemed += 1

    async def via_ledger(_w: int) -> None:
        await ledger_write(db, tenant.id, rng.choice(members))

    rates = await alternate({"redeem": via_redeem, "ledger": via_ledger}, PHASE_SECONDS)
    async with db.tenant_tx(tenant.id, write=False) as tx:
        stored = (
            await tx.conn.execute(
                select(func.count()).where(C.c.tenant_id == tenant.id, C.c.status == "redeemed")
            )
        ).scalar_one()
        holders = (
            await tx.conn.execute(
                select(func.count(func.distinct(C.c.member_id))).where(C.c.tenant_id == tenant.id)
            )
        ).scalar_one()
    await db.dispose()
    return {
        "workers": WORKERS,
        "segment_members": MEMBERS,
        "phase_seconds": PHASE_SECONDS,
        "bulk_issued": job.issued,
        "bulk_seconds": round(bulk_seconds, 2),
        "bulk_coupons_per_s": round(job.issued / bulk_seconds),
        "redeem_per_s": round(rates["redeem"]),
        "ledger_per_s": round(rates["ledger"]),
        "ratio": round(rates["redeem"] / rates["ledger"], 3),
        "target": 0.5,
        "checks_ok": job.status == "done"
        and job.issued == MEMBERS == len(rows) == holders
        and stored == redeemed,
    }


if __name__ == "__main__":
    run(measure)

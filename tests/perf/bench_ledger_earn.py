"""Benchmark: ledger earns through ``ledger.credit`` vs the raw single-statement SQL baseline.

Run: ``python tests/perf/bench_ledger_earn.py`` (PostgreSQL superuser URL from
``MEMBERHUB_BENCH_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1/postgres``). It creates
a fresh database owned by a fresh non-superuser role (so row-level security applies to both
sides), runs 8 concurrent workers for each phase, and prints ONE JSON line with earns/s and the
ratios ledger/raw (targets: spread ≥ 0.7, hot member ≥ 0.5). Absolute figures drift on shared
machines; the ratios are measured in the same run and are what matters (PERFORMANCE.md).

Phases, each time-boxed: (a) ``ledger.credit`` via ``Database.tenant_tx`` over 10k members;
(b) raw asyncpg, same transaction shape (BEGIN; set_config('app.tenant_id'); one CTE statement
``WITH ins AS (INSERT … ON CONFLICT (tenant_id, idem_key) DO NOTHING RETURNING …) INSERT INTO
ledger_balance … ON CONFLICT DO UPDATE``; COMMIT); (c) both again with every earn on ONE member.
"""

from __future__ import annotations

import os
import random
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway import ledger
from gateway.ids import uuid7
from gateway.storage.db import Database
from gateway.tenants import create_tenant
from tests.perf._harness import WORKERS, alternate, ledger_write, run

MEMBERS = 10_000
PHASE_SECONDS = float(os.environ.get("BENCH_PHASE_SECONDS", "4.5"))

_INSERT_TRANSFER = """
    INSERT INTO ledger_transfer (tenant_id, id, journal_id, member_id, account, kind, amount,
        counterparty, reason, source, source_ref, idem_key, request_hash, remaining, expires_at,
        hold_id, related_id, shortfall, created_at)
    VALUES ($1, $2, $2, $3, 'points', 'earn', $4, 'sys:earn', 'bench', 'bench', NULL, $5, $6, $4,
        $7, NULL, NULL, 0, $8)
    ON CONFLICT (tenant_id, idem_key) DO NOTHING"""
"""Both raw shapes claim the idempotency key with the same insert; they differ in what follows."""

RAW_EARN = f"""
WITH ins AS ({_INSERT_TRANSFER}
    RETURNING tenant_id, member_id, account, amount, created_at
)
INSERT INTO ledger_balance (tenant_id, member_id, account, available, held, updated_at)
SELECT tenant_id, member_id, account, amount, 0, created_at FROM ins
ON CONFLICT (tenant_id, member_id, account)
DO UPDATE SET available = ledger_balance.available + excluded.available,
              updated_at = excluded.updated_at
"""

RAW_EARN_EVENT = f"""
WITH ins AS ({_INSERT_TRANSFER}
    RETURNING id, tenant_id, member_id, account, kind, amount, created_at
), bal AS (
    INSERT INTO ledger_balance (tenant_id, member_id, account, available, held, updated_at)
    SELECT tenant_id, member_id, account, amount, 0, created_at FROM ins
    ON CONFLICT (tenant_id, member_id, account)
    DO UPDATE SET available = ledger_balance.available + excluded.available,
                  updated_at = excluded.updated_at
    RETURNING available
)
INSERT INTO member_event (tenant_id, id, member_id, type, payload, occurred_at, created_at)
SELECT ins.tenant_id, $9, ins.member_id, 'points.changed',
    json_build_object('account', ins.account, 'delta', ins.amount, 'available', bal.available,
        'kind', ins.kind, 'transfer_id', ins.id::text), ins.created_at, clock_timestamp()
FROM ins, bal
ON CONFLICT DO NOTHING
"""
"""Since issue #5 a credit also records its ``points.changed`` outbox event, so by default the raw
side records the same event (same SQL as ``gateway.ledger.credits``) and the ratio compares equal
work; ``BENCH_RAW_EVENT=0`` keeps the historical raw shape above (no event) for comparison."""
RAW_EVENT = os.environ.get("BENCH_RAW_EVENT", "1") != "0"


async def measure(app_url: str) -> dict[str, object]:
    """Seed every member's balance row, then alternate the phases in rounds (medians reported).

    Seeding first means both sides take the same UPDATE path on the balance row; alternating the
    phases spreads drift on a shared machine evenly over ledger and raw."""
    db = Database.from_url(app_url, pool_size=WORKERS)
    tenant = await create_tenant(db, name="Bench", slug=f"bench-{uuid.uuid4().hex[:8]}")
    members = [uuid.uuid4() for _ in range(MEMBERS)]
    hot = members[0]
    rng = random.Random(7)

    async def via_ledger(member: uuid.UUID) -> None:
        await ledger_write(db, tenant.id, member)

    u = make_url(app_url)
    conns = [
        await asyncpg.connect(
            user=u.username,
            password=u.password,
            host=u.host,
            port=u.port,
            database=u.database,
        )
        for _ in range(WORKERS)
    ]
    expiry = datetime.now(UTC) + timedelta(days=365)

    async def via_raw(w: int, member: uuid.UUID) -> None:
        conn = conns[w]
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant.id))
            args = (tenant.id, uuid7(), member, 10, uuid7().hex, "0" * 64, expiry)
            if RAW_EVENT:
                await conn.execute(RAW_EARN_EVENT, *args, datetime.now(UTC), uuid.uuid4())
            else:
                await conn.execute(RAW_EARN, *args, datetime.now(UTC))

    phases = {
        "ledger_spread": lambda w: via_ledger(rng.choice(members)),
        "raw_spread": lambda w: via_raw(w, rng.choice(members)),
        "ledger_hot": lambda w: via_ledger(hot),
        "raw_hot": lambda w: via_raw(w, hot),
    }
    async with db.tenant_tx(tenant.id) as tx:  # one lot + balance row per member
        for m in members:
            await ledger.credit(
                tx,
                member_id=m,
                account="points",
                amount=1,
                reason="seed",
                source="bench",
                idem_key=f"seed-{m}",
            )
    rates = await alternate(phases, PHASE_SECONDS)
    async with db.tenant_tx(tenant.id, write=False) as tx:
        violations = await ledger.verify(tx)
    for conn in conns:
        await conn.close()
    await db.dispose()
    return {
        "workers": WORKERS,
        "members": MEMBERS,
        "raw_records_event": RAW_EVENT,
        "phase_seconds": PHASE_SECONDS,
        **{f"{k}_per_s": round(v) for k, v in rates.items()},
        "ratio_spread": round(rates["ledger_spread"] / rates["raw_spread"], 3),
        "ratio_hot": round(rates["ledger_hot"] / rates["raw_hot"], 3),
        "target_spread": 0.7,
        "target_hot": 0.5,
        "verify_violations": len(violations),
    }


if __name__ == "__main__":
    run(measure)

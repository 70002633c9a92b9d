"""Shared harness for the worker benchmarks (``bench_ledger_earn``, ``bench_rules_events``,
``bench_coupon_redeem``): each runs on a fresh PostgreSQL database owned by a non-superuser role
(so row-level security applies to both sides), measures time-boxed phases of concurrent workers,
alternates the phases in rounds and reports medians, and compares against the bare ledger write.

Kept in one place so that every benchmark measures a phase, and the ledger baseline, the same way
— their ratios are only comparable if they do.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping

from gateway import ledger
from gateway.ids import uuid7
from gateway.storage.db import Database
from gateway.storage.migrate import upgrade_sync
from tests.conftest import create_pg_database, drop_pg_database

WORKERS = 8
WARMUP_SECONDS = 0.5
ROUNDS = 3

Worker = Callable[[int], Awaitable[None]]


async def run_phase(worker: Worker, seconds: float) -> float:
    """Run WORKERS loops of ``worker(w)`` until the deadline; returns completed calls per second."""
    deadline = time.perf_counter() + seconds
    counts = [0] * WORKERS

    async def loop(w: int) -> None:
        while time.perf_counter() < deadline:
            await worker(w)
            counts[w] += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop(w) for w in range(WORKERS)))
    return sum(counts) / (time.perf_counter() - start)


async def alternate(phases: Mapping[str, Worker], seconds: float) -> dict[str, float]:
    """Warm every phase up (pools, statement caches, the buffer cache), then run the phases in
    turn for ROUNDS rounds of ``seconds / ROUNDS`` each; returns each phase's median rate.

    Alternating spreads drift on a shared machine evenly over the phases being compared."""
    for worker in phases.values():
        await run_phase(worker, WARMUP_SECONDS)
    samples: dict[str, list[float]] = {name: [] for name in phases}
    for _ in range(ROUNDS):
        for name, worker in phases.items():
            samples[name].append(await run_phase(worker, seconds / ROUNDS))
    return {name: statistics.median(v) for name, v in samples.items()}


async def ledger_write(db: Database, tenant_id: uuid.UUID, member_id: uuid.UUID) -> None:
    """The baseline: the bare ledger write path, ``ledger.credit`` of 10 points through
    ``Database.tenant_tx`` (one transaction per write)."""
    async with db.tenant_tx(tenant_id) as tx:
        await ledger.credit(
            tx,
            member_id=member_id,
            account="points",
            amount=10,
            reason="bench",
            source="bench",
            idem_key=uuid7().hex,
        )


def run(measure: Callable[[str], Awaitable[dict[str, object]]]) -> None:
    """Create a fresh database and role from the superuser URL in
    ``MEMBERHUB_BENCH_POSTGRES_URL``, migrate it, print ``measure(app_url)`` as ONE JSON line, and
    drop the database again."""
    admin = os.environ.get(
        "MEMBERHUB_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1/postgres"
    )
    pg = create_pg_database(admin)  # sync helpers: they run their own event loops
    try:
        upgrade_sync(pg.app_url)
        print(json.dumps(asyncio.run(measure(pg.app_url))))
    finally:
        drop_pg_database(pg)

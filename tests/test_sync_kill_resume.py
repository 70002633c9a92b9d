"""A sync killed mid-way (SIGKILL, the real ``memberhub sync`` process) and restarted loses no
order and doubles no point.

The POS connector pulls a 1500-order, 30-day world from the Pospal fake (running in the test's
event loop on loopback; one ticket window a day, each committed with its bookmark). While the
first ``memberhub sync`` is part-way through, a second one is refused (the first is alive), then
the first is killed with SIGKILL; the next ``memberhub sync`` sees the dead pid, marks the killed
run ``abandoned`` and resumes from the last bookmark. A clean sync of the same world into another
tenant is the reference: orders, refunds, balances and ledger lines must be identical, and
``memberhub ledger verify`` must pass. SQLite (a file database) and PostgreSQL (the app role, so
row-level security applies).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import func, select

from connectors.pos.fake import PospalFake
from connectors.pos.harness import BRAND_SCOPE, WEBHOOK_SECRET
from connectors.pos.mapping import CST
from connectors.pos.render import ticket_time, visible
from connectors.testing.world import World
from gateway import ledger
from gateway.hub import Hub
from gateway.settings import Settings
from gateway.storage.db import Database
from gateway.storage.migrate import upgrade_sync
from gateway.storage.tables import (
    Identity,
    LedgerBalance,
    LedgerTransfer,
    Member,
    Order,
    OrderRefund,
    SyncRun,
)
from gateway.sync import connections
from gateway.sync.registry import default_registry
from gateway.tenants import TenantInfo, create_tenant
from tests.conftest import TEST_SECRET

ORD: Any = Order.__table__  # type: ignore[attr-defined]
REF: Any = OrderRefund.__table__  # type: ignore[attr-defined]
BAL: Any = LedgerBalance.__table__  # type: ignore[attr-defined]
LT: Any = LedgerTransfer.__table__  # type: ignore[attr-defined]
MEM: Any = Member.__table__  # type: ignore[attr-defined]
IDN: Any = Identity.__table__  # type: ignore[attr-defined]
RUN: Any = SyncRun.__table__  # type: ignore[attr-defined]

SECRET = "kill-resume-test-secret"
ORDERS, DAYS = 360, 30
CLI_TIMEOUT = 90
SALE_STATUSES = {
    False: ("completed", "partially_refunded", "refunded"),
    True: ("cancelled",),
}
CHANNEL = "stores"
_BIN = Path(sys.executable).parent / "memberhub"
MEMBERHUB = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "gateway.cli"]


class GatedPospal(PospalFake):
    """The Pospal fake with a gate (closed: calls wait) and a small per-call delay."""

    def __init__(self, world: World, **kwargs: Any) -> None:
        super().__init__(world, **kwargs)
        self.gate = asyncio.Event()
        self.gate.set()
        self.delay = 0.02

    async def _query_ticket_pages(self, request: web.Request) -> web.Response:
        await self.gate.wait()
        await asyncio.sleep(self.delay)
        return await super()._query_ticket_pages(request)


def make_world() -> World:
    # Whole store days in GMT+8, the last one a day before now: every ticket is in the past.
    today = datetime.now(CST).replace(hour=0, minute=0, second=0, microsecond=0)
    start = (today - timedelta(days=DAYS + 1)).astimezone(UTC)
    return World.generate(
        seed=41, people=120, orders=ORDERS, channels=("pos",), start=start, days=DAYS
    )


def pos_config(fake: PospalFake, world: World) -> dict[str, Any]:
    return {
        "base_url": fake.base_url,
        "app_id": fake.app_id,
        "app_key": fake.pospal_app_key,
        "brand_scope": BRAND_SCOPE,
        "webhook_secret": WEBHOOK_SECRET,
        # A day early: a date-only start_date loses its first 8 hours (see
        # test_the_start_date_day_is_synced_from_midnight_gmt8).
        "start_date": (world.start.astimezone(CST).date() - timedelta(days=1)).isoformat(),
    }


class Cli:
    def __init__(self, url: str, cwd: Path) -> None:
        self.cwd = cwd
        self.started: list[asyncio.subprocess.Process] = []
        self.env = {
            **os.environ,
            "MEMBERHUB_DATABASE_URL": url,
            "MEMBERHUB_SECRET_KEY": SECRET,
            "PYTHONUNBUFFERED": "1",
        }

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *MEMBERHUB,
            *args,
            cwd=self.cwd,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self.started.append(proc)
        return proc

    async def stop_all(self) -> None:
        """Kill what is still running (only after a failure) so no sync outlives the test."""
        for proc in self.started:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    async def run(self, *args: str) -> tuple[int, str, str]:
        proc = await self.start(*args)
        out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def configure(self, tenant: TenantInfo, fake: PospalFake, world: World) -> None:
        path = self.cwd / f"{tenant.slug}.json"
        path.write_text(json.dumps(pos_config(fake, world)))
        rc, out, err = await self.run(
            "channel",
            "configure",
            "--tenant",
            tenant.slug,
            "--channel",
            CHANNEL,
            "--connector",
            "pos",
            "--config",
            str(path),
        )
        assert rc == 0, err
        assert f"configured {CHANNEL} (pos)" in out
        assert "app_key=set" in out and fake.pospal_app_key not in out

    def sync_args(self, tenant: TenantInfo) -> Sequence[str]:
        return ("sync", "--tenant", tenant.slug, "--channel", CHANNEL)


async def count_orders(db: Database, tenant: TenantInfo) -> int:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        return int(
            (
                await tx.conn.execute(
                    select(func.count()).select_from(ORD).where(ORD.c.tenant_id == tenant.id)
                )
            ).scalar_one()
        )


async def run_rows(db: Database, tenant: TenantInfo) -> list[Any]:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        return list(
            await tx.conn.execute(
                select(RUN).where(RUN.c.tenant_id == tenant.id).order_by(RUN.c.started_at)
            )
        )


async def snapshot(db: Database, tenant: TenantInfo) -> dict[str, Any]:
    """Everything a user would compare, keyed without tenant-specific ids: a member is named by
    the set of receipts they bought."""
    t = tenant.id
    async with db.tenant_tx(t, write=False) as tx:
        c = tx.conn
        orders = {
            r.external_id: (r.status, r.total_fen, r.paid_fen, r.refunded_fen, r.member_id)
            for r in await c.execute(select(ORD).where(ORD.c.tenant_id == t))
        }
        buys: dict[uuid.UUID, list[str]] = {}
        for ext, (*_, member_id) in orders.items():
            buys.setdefault(member_id, []).append(ext)
        name = {m: tuple(sorted(exts)) for m, exts in buys.items()}
        balances: dict[Any, dict[str, int]] = {}
        for r in await c.execute(select(BAL).where(BAL.c.tenant_id == t)):
            balances.setdefault(name.get(r.member_id, ("?",)), {})[r.account] = r.available + r.held
        lines: dict[Any, dict[tuple[str, str], tuple[int, int]]] = {}
        for r in await c.execute(
            select(
                LT.c.member_id,
                LT.c.account,
                LT.c.kind,
                func.count().label("n"),
                func.sum(LT.c.amount).label("total"),
            )
            .where(LT.c.tenant_id == t)
            .group_by(LT.c.member_id, LT.c.account, LT.c.kind)
        ):
            lines.setdefault(name.get(r.member_id, ("?",)), {})[(r.account, r.kind)] = (
                int(r.n),
                int(r.total),
            )
        refunds = sorted(
            (r.refund_id, r.amount_fen)
            for r in await c.execute(select(REF).where(REF.c.tenant_id == t))
        )
        counts = {
            table.name: (
                await c.execute(
                    select(func.count()).select_from(table).where(table.c.tenant_id == t)
                )
            ).scalar_one()
            for table in (MEM, IDN, LT)
        }
    return {
        "orders": {k: v[:4] for k, v in orders.items()},
        "members": sorted(name.values()),
        "refunds": refunds,
        "balances": balances,
        "lines": lines,
        "counts": counts,
    }


async def wait_for_run(db: Database, tenant: TenantInfo, deadline: float) -> None:
    while not await run_rows(db, tenant):
        assert time.monotonic() < deadline, "the sync never started"
        await asyncio.sleep(0.02)


async def kill_and_resume(url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    deadline = started + 90
    db = Database.from_url(url)
    cli = Cli(url, tmp_path)
    world = make_world()
    expected = {o.external_id: o for o in world.orders["pos"] if visible(o)}
    total = len(expected)
    assert total > ORDERS * 9 // 10
    suffix = uuid.uuid4().hex[:8]
    killed_t = await create_tenant(db, name="Killed", slug=f"killed-{suffix}")
    clean_t = await create_tenant(db, name="Clean", slug=f"clean-{suffix}")
    try:
        # One fake per tenant (the same world): the reference run can be held without holding
        # the run that gets killed.
        async with (
            GatedPospal(world, page_size=100) as fake,
            GatedPospal(world, page_size=100) as ref_fake,
        ):
            await cli.configure(killed_t, fake, world)
            # (the reference tenant is configured in-process: same config, less waiting)
            async with db.tenant_tx(clean_t.id) as tx:
                await connections.configure(
                    tx,
                    channel=CHANNEL,
                    connector="pos",
                    config=pos_config(ref_fake, world),
                    registry=default_registry(),
                    master=SECRET.encode(),
                )
            # The reference: one uninterrupted sync of the same world into another tenant.
            clean = asyncio.create_task(cli.run(*cli.sync_args(clean_t)))
            first = await cli.start(*cli.sync_args(killed_t))

            # While the reference run is alive (held at its platform), a second sync of that
            # channel is refused: fresh heartbeat and a live pid on this host.
            await wait_for_run(db, clean_t, deadline)
            ref_fake.gate.clear()
            refused = asyncio.create_task(cli.run(*cli.sync_args(clean_t)))

            while await count_orders(db, killed_t) < total // 10:
                assert first.returncode is None, "the first sync ended before it was killed"
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            # Kill it at whatever it is doing (reading, applying, committing).
            first.send_signal(signal.SIGKILL)
            await first.wait()
            assert first.returncode == -signal.SIGKILL
            partial = await count_orders(db, killed_t)
            assert total // 10 <= partial <= total * 8 // 10, (partial, total)

            runs = await run_rows(db, killed_t)
            assert [r.status for r in runs] == ["running"]
            assert runs[0].stats["owner"].endswith(f":{first.pid}")

            # Restart: the dead run is recognised by its pid and abandoned; the sync resumes.
            resumed_run = asyncio.create_task(cli.run(*cli.sync_args(killed_t)))

            rc, out, err = await refused
            assert rc == 2, (rc, out, err)
            assert "already running" in err, err
            ref_fake.gate.set()

            rc, out, err = await resumed_run
            assert rc == 0, err
            last = out.strip().splitlines()[-1]
            assert last.startswith("sync ") and " succeeded: " in last, out
            read = int(last.split(": ", 1)[1].split(" read")[0])
            assert read < total  # it resumed from the bookmark; it did not start over
            progress = [line for line in err.splitlines() if line.startswith(f"{CHANNEL}/")]
            assert progress and "100.0%" in progress[-1], err

            rc, out, err = await clean
            assert rc == 0, err
            assert " succeeded: " in out.strip().splitlines()[-1], out

        runs = await run_rows(db, killed_t)
        assert [r.status for r in runs] == ["abandoned", "succeeded"]
        assert runs[0].finished_at is not None
        assert [r.status for r in await run_rows(db, clean_t)] == ["succeeded"]

        resumed, reference = await snapshot(db, killed_t), await snapshot(db, clean_t)
        # Nothing lost: every receipt of the world, with its status and amounts.
        assert set(resumed["orders"]) == set(expected)
        for ext, (status, total_fen, _paid, refunded_fen) in resumed["orders"].items():
            o = expected[ext]
            assert (total_fen, refunded_fen) == (o.total_fen, o.refunded_fen), ext
            assert status in SALE_STATUSES[o.status == "cancelled"], (ext, status)
        assert resumed["refunds"] == sorted(
            (r.refund_id, r.amount_fen) for o in expected.values() for r in o.refunds
        )
        # Nothing doubled: the same orders, members, balances and ledger lines as a clean run.
        for part in ("orders", "members", "refunds", "balances", "lines", "counts"):
            assert resumed[part] == reference[part], part
        assert sum(b.get("points", 0) for b in resumed["balances"].values()) > 0

        rc, out, err = await cli.run("ledger", "verify", "--tenant", killed_t.slug)
        assert rc == 0 and f"{killed_t.slug}\tok" in out, (out, err)
        async with db.tenant_tx(clean_t.id, write=False) as tx:
            assert await ledger.verify(tx) == []
    finally:
        await cli.stop_all()
        await db.dispose()
    elapsed = time.monotonic() - started
    assert elapsed < 60, elapsed


async def test_sigkilled_sync_resumes_without_loss_or_duplicates_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'kill.db'}"
    await asyncio.to_thread(upgrade_sync, url)
    await kill_and_resume(url, tmp_path)


@pytest.mark.postgres
async def test_sigkilled_sync_resumes_without_loss_or_duplicates_postgres(
    pg_url: str, tmp_path: Path
) -> None:
    await kill_and_resume(pg_url, tmp_path)


async def test_the_start_date_day_is_synced_from_midnight_gmt8(
    db: Database, database_url: str, tenant: TenantInfo
) -> None:
    """``start_date`` of the POS connection is a store day (GMT+8): receipts from its first
    hours must be synced too (nothing lost at the backfill horizon)."""
    today = datetime.now(CST).replace(hour=0, minute=0, second=0, microsecond=0)
    start = (today - timedelta(days=3)).astimezone(UTC)
    world = World.generate(seed=43, people=20, orders=80, channels=("pos",), start=start, days=2)
    expected = {o.external_id for o in world.orders["pos"] if visible(o)}
    early = {
        o.external_id
        for o in world.orders["pos"]
        if visible(o) and ticket_time(o) < start + timedelta(hours=8)
    }
    assert early  # the world has receipts in the first 8 store hours of the start day
    hub = Hub(Settings(database_url=database_url, secret_key=TEST_SECRET), db)
    async with PospalFake(world, page_size=100) as fake:
        config = {**pos_config(fake, world), "start_date": start.astimezone(CST).date().isoformat()}
        async with db.tenant_tx(tenant.id) as tx:
            await connections.configure(
                tx,
                channel=CHANNEL,
                connector="pos",
                config=config,
                registry=hub.sync.registry,
                master=hub.settings.secret_key,
            )
        report = await hub.sync.run(tenant.id, CHANNEL)
    assert report.status == "succeeded", report.message
    async with db.tenant_tx(tenant.id, write=False) as tx:
        synced = set(
            (await tx.conn.execute(select(ORD.c.external_id).where(ORD.c.tenant_id == tenant.id)))
            .scalars()
            .all()
        )
    assert not early - synced, f"{len(early - synced)} receipts of the first store hours lost"
    assert synced == expected

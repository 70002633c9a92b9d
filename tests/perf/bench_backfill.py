"""Benchmark: a channel backfill through the sync runner vs a COPY of the same canonical rows.

Run: ``python tests/perf/bench_backfill.py [--orders 200000] [--batch 500]`` (PostgreSQL superuser
URL from ``MEMBERHUB_BENCH_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1/postgres``).
Prints ONE JSON line. ``--orders 20000`` for quick iterations.

Set-up (not timed):

- a synthetic :class:`~connectors.testing.World` on two channels, ``example`` (≈``--orders``
  orders) and ``pos``; the Example Shop fake (the worked example connector's aiohttp fake)
  serves the ``example`` slice from a **separate process** over loopback HTTP (the platform is
  not on our CPU in production either), with a small fault rate (429 / 5xx) so retries happen;
- a fresh database (app role, row-level security on) migrated; a tenant; the channel configured
  with ``gateway.sync.connections.configure``;
- people overlapping across channels, pre-ingested as the ``pos`` channel would have left them
  (member + phone + POS card), and for ~3 % of them a *second* member holding only their Example
  Shop customer id (a CRM import): the backfill's orders then attach to existing members, create
  new ones, and merge members (phone and customer id owned by two members).

Measured: ``SyncRunner.run`` of the ``orders`` stream — HTTP pages, canonical records, ONE ID,
order upsert, ``order.paid`` events, earning through the rule registry, ledger, bookmarks — with a
progress callback whose samples must be monotone and end at the truth.

Baseline, same run: the rows the backfill created (members, identities, profile attributes,
orders, order lines, events, ledger transfers and balances, merge records) copied with asyncpg
``copy_records_to_table`` into a second fresh database (rows read back from the first one, tenant
re-stamped; only the COPY calls are timed). ``ratio = orders_per_s / copy_orders_per_s``.

Memory: ``peak_rss_mb`` is ``ru_maxrss`` right after the sync (the process also holds the
generated world); ``rss_growth_mb`` is that peak minus the resident size just before the sync.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import multiprocessing as mp
import os
import resource
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "example_connector"))

import memberhub_example_shop as example  # noqa: E402
import memberhub_example_shop.testing as example_fake  # noqa: E402
from memberhub_example_shop.testing import SHOP, ExampleShopFake  # noqa: E402

from connectors.testing import Faults, World  # noqa: E402
from gateway import ledger  # noqa: E402
from gateway.hub import Hub  # noqa: E402
from gateway.identifiers import normalise  # noqa: E402
from gateway.ids import uuid7  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from gateway.storage.migrate import upgrade_sync  # noqa: E402
from gateway.sync import RetryPolicy, connections  # noqa: E402
from gateway.sync.registry import load_connectors  # noqa: E402
from gateway.sync.runner import Progress, SyncRunner  # noqa: E402
from gateway.tenants import create_tenant  # noqa: E402
from tests.conftest import create_pg_database, drop_pg_database  # noqa: E402

START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30
CHANNEL = "exshop"
SECRET = b"bench-backfill-secret-key-000000"
CRM_SHARE = 0.03
FAULT_RATE = 0.005
PAGE = 100  # the fake pages small for the kit; real storefront APIs page 50-100
COPY_TABLES = (
    "member",
    "identity",
    "member_attribute",
    "orders",
    "order_line",
    "member_event",
    "ledger_transfer",
    "ledger_balance",
    "merge_record",
)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class IndexedFake(ExampleShopFake):
    """The Example Shop fake with its window filter done by bisection.

    The stock fake scans every order of the world on each page request (fine for the kit's
    hundreds of orders, quadratic for 200k). Same wire format and paging; only the scan is
    replaced: the handler sees a world holding just the requested window.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rows = self.world.orders["example"]
        self._keys = [o.modified for o in self._rows]
        self._full = self.world

    async def orders(self, request: Any) -> Any:
        a = datetime.fromisoformat(request.query["updated_from"])
        b = datetime.fromisoformat(request.query["updated_to"])
        lo, hi = bisect.bisect_left(self._keys, a), bisect.bisect_left(self._keys, b)
        self.world = _WindowWorld(self._rows[lo:hi])  # the handler below never awaits
        try:
            return await super().orders(request)
        finally:
            self.world = self._full


class _WindowWorld:
    def __init__(self, rows: list[Any]) -> None:
        self.orders = {"example": rows}


def _serve(world: World, port_out: Any, stop: Any) -> None:
    """Child process: run the fake until ``stop`` is set."""

    async def run() -> None:
        fake = IndexedFake(
            world,
            app_secret="sk_bench",
            faults=Faults(rate=FAULT_RATE, kinds=("429", "5xx"), seed=3),
        )
        fake.calls = _NoLog()  # type: ignore[assignment]
        await fake.start()
        port_out.put(fake.port)
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        await fake.stop()

    asyncio.run(run())


class _NoLog(list):  # type: ignore[type-arg]
    """The fake's call log, not kept (4k+ requests of bookkeeping nobody reads here)."""

    def append(self, _item: Any) -> None:
        return None


def _pg_connect_args(url: str, database: str | None = None) -> dict[str, Any]:
    u = make_url(url)
    return {
        "user": u.username,
        "password": u.password,
        "host": u.host or "127.0.0.1",
        "port": u.port or 5432,
        "database": database or u.database or "postgres",
    }


async def _pre_ingest(
    admin: str, dbname: str, tenant_id: uuid.UUID, key: bytes, world: World
) -> dict[str, int]:
    """What the POS channel (and a CRM import) left behind, written directly (set-up only)."""
    members: list[tuple[Any, ...]] = []
    idents: list[tuple[Any, ...]] = []
    created = START - timedelta(days=365)
    crm = 0
    phones: set[str] = set()
    for p in world.people:
        if "pos" not in p.channels or p.phone in phones:
            continue  # (random phones of a large world collide now and then)
        phones.add(p.phone)
        mid = uuid7()
        members.append((tenant_id, mid, "active", None, None, None, None, None, created, created))
        for kind, scope, value in (("phone", None, p.phone), ("pos_card", "brand", p.pos_card)):
            n = normalise(kind, scope, value, key=key)
            idents.append((tenant_id, n.kind, n.scope, n.value, mid, n.display, "pos", created))
        if "example" in p.channels and (p.index * 7919) % 1000 < CRM_SHARE * 1000:
            crm += 1
            cid = uuid7()
            members.append(
                (tenant_id, cid, "active", None, None, None, None, None, created, created)
            )
            n = normalise("example_shop_customer", SHOP, f"c{p.index}", key=key)
            idents.append((tenant_id, n.kind, n.scope, n.value, cid, n.display, "crm", created))
    conn = await asyncpg.connect(**_pg_connect_args(admin, dbname))
    try:
        await conn.copy_records_to_table(
            "member",
            records=members,
            columns=[
                "tenant_id",
                "id",
                "status",
                "merged_into",
                "name",
                "gender",
                "birthday",
                "city",
                "created_at",
                "updated_at",
            ],
        )
        await conn.copy_records_to_table(
            "identity",
            records=idents,
            columns=[
                "tenant_id",
                "kind",
                "scope",
                "value",
                "member_id",
                "display",
                "channel",
                "created_at",
            ],
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return {"pre_members": len(members), "pre_identities": len(idents), "crm_members": crm}


async def _copy_baseline(
    admin: str,
    src_db: str,
    dst_db: str,
    src_tenant: uuid.UUID,
    dst_tenant: uuid.UUID,
    pre_members: set[uuid.UUID],
) -> tuple[float, dict[str, int]]:
    """Copy what the backfill created into ``dst_db`` with COPY; returns (seconds, row counts)."""
    src = await asyncpg.connect(**_pg_connect_args(admin, src_db))
    dst = await asyncpg.connect(**_pg_connect_args(admin, dst_db))
    seconds = 0.0
    counts: dict[str, int] = {}
    try:
        async with src.transaction():
            for table in COPY_TABLES:
                where = "tenant_id = $1"
                if table == "identity":
                    where += " AND channel NOT IN ('pos', 'crm')"
                cur = await src.cursor(f"SELECT * FROM {table} WHERE {where}", src_tenant)
                n = 0
                while True:
                    rows = await cur.fetch(20_000)
                    if not rows:
                        break
                    cols = list(rows[0].keys())
                    t = cols.index("tenant_id")
                    recs = [
                        (*r[:t], dst_tenant, *r[t + 1 :])
                        for r in rows
                        if not (table == "member" and r["id"] in pre_members)
                    ]
                    n += len(recs)
                    t0 = time.perf_counter()
                    async with dst.transaction():
                        await dst.copy_records_to_table(table, records=recs, columns=cols)
                    seconds += time.perf_counter() - t0
                counts[table] = n
    finally:
        await src.close()
        await dst.close()
    return seconds, counts


async def measure(
    admin: str,
    app_url: str,
    app_db: str,
    base_url: str,
    base_db: str,
    world: World,
    port: int,
    batch: int,
) -> dict[str, Any]:
    hub = Hub(Settings(database_url=app_url, secret_key=SECRET, pool_size=4))
    registry = load_connectors([example])
    tenant = await create_tenant(hub.db, name="Bench", slug=f"bench-{uuid.uuid4().hex[:8]}")
    key = hub.tenant_key(tenant.id)
    pre = await _pre_ingest(admin, app_db, tenant.id, key, world)
    async with hub.db.tenant_tx(tenant.id, write=False) as tx:
        pre_ids = {
            r[0]
            for r in await tx.driver.fetch("SELECT id FROM member WHERE tenant_id = $1", tenant.id)
        }
    async with hub.db.tenant_tx(tenant.id) as tx:
        await connections.configure(
            tx,
            channel=CHANNEL,
            connector="example_shop",
            config={
                "base_url": f"http://127.0.0.1:{port}",
                "shop": SHOP,
                "api_key": "sk_bench",
                "start_date": START.isoformat(),
                "rate_limit": 1_000_000,
            },
            registry=registry,
            master=SECRET,
        )
    until = world.end
    runner = SyncRunner(
        hub,
        registry=registry,
        batch_size=batch,
        policy=RetryPolicy(backoff=0.01, max_backoff=0.05, timeout=30, attempts=10),
        clock=lambda: until,
    )
    samples: list[tuple[int | None, int | None, int, bool]] = []

    def progress(p: Progress) -> None:
        s = p.stats
        samples.append((s.done, s.total, s.read, s.finished))

    truth = len(world.orders["example"])
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    report = await runner.run(tenant.id, CHANNEL, streams=["orders"], progress=progress)
    seconds = time.perf_counter() - t0
    peak = _peak_rss_mb()
    assert report.status == "succeeded", (report.status, report.message, report.errors[:3])
    stats = report.streams["orders"]

    # Progress: monotone, and the last sample is the truth.
    dones = [d for d, _t, _r, _f in samples if d is not None]
    reads = [r for _d, _t, r, _f in samples]
    last_done, last_total, last_read, last_finished = samples[-1]
    progress_ok = (
        dones == sorted(dones)
        and reads == sorted(reads)
        and last_finished
        and last_done == last_total
        and last_read == truth
        and stats.created == truth
        and stats.rejected == 0
    )

    async with hub.db.tenant_tx(tenant.id, write=False) as tx:
        d = tx.driver
        stored = await d.fetchval("SELECT count(*) FROM orders WHERE tenant_id = $1", tenant.id)
        members_active = await d.fetchval(
            "SELECT count(*) FROM member WHERE tenant_id = $1 AND status = 'active'", tenant.id
        )
        merges = await d.fetchval(
            "SELECT count(*) FROM merge_record WHERE tenant_id = $1", tenant.id
        )
        transfers = await d.fetchval(
            "SELECT count(*) FROM ledger_transfer WHERE tenant_id = $1", tenant.id
        )
        violations = len(await ledger.verify(tx))
    expected_people = {o.person.index for o in world.orders["example"]}
    await hub.close()

    base = Hub(Settings(database_url=base_url, secret_key=SECRET, pool_size=1))
    other = await create_tenant(base.db, name="Copy", slug=f"copy-{uuid.uuid4().hex[:8]}")
    await base.close()
    copy_seconds, copy_counts = await _copy_baseline(
        admin, app_db, base_db, tenant.id, other.id, pre_ids
    )
    rate = truth / seconds
    copy_rate = copy_counts["orders"] / copy_seconds
    return {
        "orders": truth,
        "orders_stored": stored,
        "people_buying": len(expected_people),
        **pre,
        "members_active": members_active,
        "merges": merges,
        "ledger_transfers": transfers,
        "ledger_verify_violations": violations,
        "batch_size": batch,
        "seconds": round(seconds, 2),
        "orders_per_s": round(rate),
        "copy_seconds": round(copy_seconds, 2),
        "copy_rows": sum(copy_counts.values()),
        "copy_orders_per_s": round(copy_rate),
        "ratio": round(rate / copy_rate, 3),
        "target": 0.25,
        "peak_rss_mb": round(peak),
        "rss_before_sync_mb": round(rss_before),
        "rss_growth_mb": round(peak - rss_before),
        "http_requests": report.http["requests"],
        "http_retries": report.http["retries"],
        "progress_samples": len(samples),
        "progress_ok": progress_ok,
        "progress_last": {"done": last_done, "total": last_total, "read": last_read},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=200_000, help="orders on the example channel")
    ap.add_argument("--people", type=int, default=None, help="default: 0.3 × orders")
    ap.add_argument("--batch", type=int, default=500, help="runner batch size")
    args = ap.parse_args()
    admin = os.environ.get(
        "MEMBERHUB_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1/postgres"
    )
    people = args.people or max(50, int(args.orders * 0.3))
    # About half of all orders land on "example" (see World.generate's channel choice).
    world = World.generate(
        seed=11,
        people=people,
        orders=args.orders * 2,
        channels=("example", "pos"),
        start=START,
        days=DAYS,
    )
    example_fake.PAGE = PAGE
    ctx = mp.get_context("fork")
    port_q, stop = ctx.Queue(), ctx.Event()
    child = ctx.Process(target=_serve, args=(world, port_q, stop), daemon=True)
    child.start()
    pg = base = None
    try:
        port = port_q.get(timeout=60)
        pg = create_pg_database(admin)
        base = create_pg_database(admin)
        upgrade_sync(pg.app_url)
        upgrade_sync(base.app_url)
        result = asyncio.run(
            measure(admin, pg.app_url, pg.name, base.app_url, base.name, world, port, args.batch)
        )
        print(json.dumps(result))
    finally:
        stop.set()
        child.join(timeout=10)
        if child.is_alive():
            child.terminate()
        for db in (pg, base):
            if db is not None:
                drop_pg_database(db)


if __name__ == "__main__":
    main()

"""The sync runner end to end: a real connector (the example third-party package) against its
fake platform over loopback HTTP, into SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from gateway import ledger
from gateway.errors import InvalidInput
from gateway.storage.tables import ChannelConnection, SyncRun, SyncState
from gateway.sync import (
    Checkpoint,
    Identifier,
    OrderLineRecord,
    OrderRecord,
    Partition,
    RefundRecord,
    connections,
    runs,
)
from gateway.sync.runner import SyncAlreadyRunning
from tests.sync_support import (
    HARNESS,
    START,
    configure,
    faults,
    make_hub,
    snapshot,
    world,
)

RUN: Any = SyncRun.__table__  # type: ignore[attr-defined]
STATE: Any = SyncState.__table__  # type: ignore[attr-defined]
CC: Any = ChannelConnection.__table__  # type: ignore[attr-defined]


def clock_at(w: Any) -> Any:
    end = w.end
    return lambda: end


async def test_full_sync_then_incremental_fetches_only_changes(db, database_url, tenant) -> None:
    w = world()
    hub = make_hub(db, database_url, clock=clock_at(w))
    async with HARNESS.make_fake(w) as fake:
        await configure(hub, tenant.id, fake)
        report = await hub.sync.run(tenant.id, "shop")
        assert report.status == "succeeded", report.message
        snap = await snapshot(hub, tenant.id)
        truth = {o.external_id: o for o in w.orders["example"]}
        assert set(snap["orders"]) == set(truth)
        for ext, (status, total, paid, refunded, has_member) in snap["orders"].items():
            o = truth[ext]
            assert (status, total, paid, refunded) == (
                o.status if not o.refunds else "partially_refunded",
                o.total_fen,
                o.paid_fen,
                o.refunded_fen,
            ) or status == "refunded"
            assert has_member
        assert snap["refunds"] == sorted(
            (r.refund_id, r.amount_fen) for o in w.orders["example"] for r in o.refunds
        )
        assert snap["balances"]["points"][0] > 0  # the earning path ran
        async with hub.db.tenant_tx(tenant.id, write=False) as tx:
            state = (
                await tx.conn.execute(
                    select(STATE).where(STATE.c.tenant_id == tenant.id, STATE.c.stream == "orders")
                )
            ).one()
        # The bookmark is the sync start, never later.
        assert state.state["cursor"] == w.end.isoformat()

        # A second sync after new activity reads only what changed.
        at = w.end + timedelta(minutes=5)
        changed = w.touch(at, new=4, pay=2)
        changed_here = {o.external_id for o in changed if o.channel == "example"}
        hub.sync.clock = lambda: at + timedelta(minutes=1)
        report2 = await hub.sync.run(tenant.id, "shop")
        assert report2.status == "succeeded"
        assert report2.streams["orders"].read == len(changed_here)
        snap2 = await snapshot(hub, tenant.id)
        assert set(snap2["orders"]) == {o.external_id for o in w.orders["example"]}


async def test_bookmark_is_clamped_to_the_sync_start(db, database_url, tenant) -> None:
    w = world(orders=20)
    hub = make_hub(db, database_url, clock=clock_at(w))

    class Ahead(HARNESS.connector.streams.__globals__["OrdersStream"]):  # type: ignore[misc]
        async def read(
            self, partition: Partition, state: Mapping[str, Any] | None
        ) -> AsyncIterator[Any]:
            yield Checkpoint({"cursor": (partition.until + timedelta(days=3)).isoformat()})

    async with HARNESS.make_fake(w) as fake:
        await configure(hub, tenant.id, fake)
        conn = await hub.sync.build(tenant.id, "shop")
        conn.streams = lambda: (Ahead(conn),)  # type: ignore[method-assign]
        await hub.sync.run(tenant.id, "shop", connector=conn)
        await conn.close()
    assert await hub.sync.load_state(tenant.id, "shop", "orders", "default") == {
        "cursor": w.end.isoformat()
    }


async def test_faults_on_every_fifth_call_give_the_same_data(
    db, database_url, tenant, other_tenant
) -> None:
    w = world(orders=400, days=24)
    hub = make_hub(db, database_url, clock=clock_at(w))
    async with HARNESS.make_fake(w) as clean:
        await configure(hub, tenant.id, clean)
        assert (await hub.sync.run(tenant.id, "shop")).status == "succeeded"
    async with HARNESS.make_fake(w, faults(0.2)) as faulty:
        await configure(hub, other_tenant.id, faulty)
        report = await hub.sync.run(other_tenant.id, "shop")
        assert report.status == "succeeded", report.message
        assert sum(faulty.faults.injected.values()) >= 5
        assert report.http["retries"] >= 5
    assert await snapshot(hub, tenant.id) == await snapshot(hub, other_tenant.id)
    for t in (tenant, other_tenant):
        async with hub.db.tenant_tx(t.id, write=False) as tx:
            assert await ledger.verify(tx) == []


async def test_a_crash_mid_sync_resumes_with_nothing_lost_or_doubled(
    db, database_url, tenant, other_tenant
) -> None:
    """The connection dies after a few windows; the next run resumes from the last bookmark."""
    w = world(orders=200)
    hub = make_hub(db, database_url, clock=clock_at(w))
    async with HARNESS.make_fake(w) as fake:
        await configure(hub, tenant.id, fake)
        await configure(hub, other_tenant.id, fake)
        assert (await hub.sync.run(other_tenant.id, "shop")).status == "succeeded"

        conn = await hub.sync.build(tenant.id, "shop")
        original = conn.get

        async def dying(*args: Any, **kw: Any) -> Any:
            # Dies on the third day's second page: two windows are committed by then.
            if kw["updated_from"] >= START + timedelta(days=2) and kw["page"] == 2:
                raise ConnectionResetError("the process died here")
            return await original(*args, **kw)

        conn.get = dying  # type: ignore[method-assign]
        with pytest.raises(ConnectionResetError):
            await hub.sync.run(tenant.id, "shop", connector=conn)
        await conn.close()
        partial = await snapshot(hub, tenant.id)
        assert 0 < len(partial["orders"]) < len(w.orders["example"])
        report = await hub.sync.run(tenant.id, "shop")
        assert report.status == "succeeded"
    assert await snapshot(hub, tenant.id) == await snapshot(hub, other_tenant.id)
    async with hub.db.tenant_tx(tenant.id, write=False) as tx:
        runs = (
            (
                await tx.conn.execute(
                    select(RUN.c.status).where(RUN.c.tenant_id == tenant.id).order_by(RUN.c.id)
                )
            )
            .scalars()
            .all()
        )
        assert await ledger.verify(tx) == []
    assert runs == ["failed", "succeeded"]


async def test_auth_failure_fails_the_run_without_retrying(db, database_url, tenant) -> None:
    w = world(orders=20)
    hub = make_hub(db, database_url, clock=clock_at(w))
    async with HARNESS.make_fake(w) as fake:
        await configure(hub, tenant.id, fake)
        async with hub.db.tenant_tx(tenant.id) as tx:
            await connections.configure(
                tx,
                channel="shop",
                connector="example_shop",
                config={**HARNESS.config(fake), "api_key": "wrong"},
                registry=hub.sync.registry,
                master=hub.settings.secret_key,
            )
        report = await hub.sync.run(tenant.id, "shop")
        assert report.status == "failed"
        assert "AuthFailed" in (report.message or "")
        assert len(fake.api_calls()) == 1
    async with hub.db.tenant_tx(tenant.id, write=False) as tx:
        run = (await tx.conn.execute(select(RUN).where(RUN.c.tenant_id == tenant.id))).one()
    assert run.status == "failed" and run.errors[0]["error"].startswith("AuthFailed")


async def test_one_live_run_per_channel_and_dead_runs_are_abandoned(
    db, database_url, tenant
) -> None:
    w = world(orders=10)
    hub = make_hub(db, database_url, clock=clock_at(w))
    async with HARNESS.make_fake(w) as fake:
        await configure(hub, tenant.id, fake)
        report = await hub.sync.run(tenant.id, "shop")
        async with hub.db.tenant_tx(tenant.id) as tx:
            # Pretend it is still running in this (live) process.
            await tx.conn.execute(
                update(RUN)
                .where(RUN.c.tenant_id == tenant.id)
                .values(status="running", heartbeat_at=w.end, finished_at=None)
            )
        with pytest.raises(SyncAlreadyRunning):
            await hub.sync.run(tenant.id, "shop")
        async with hub.db.tenant_tx(tenant.id) as tx:
            # Its process is gone (no such pid on this host).
            stats = {"owner": f"{__import__('socket').gethostname()}:999999999"}
            await tx.conn.execute(
                update(RUN).where(RUN.c.tenant_id == tenant.id).values(stats=stats)
            )
        assert (await hub.sync.run(tenant.id, "shop")).status == "succeeded"
        async with hub.db.tenant_tx(tenant.id, write=False) as tx:
            statuses = {
                r.id: r.status
                for r in await tx.conn.execute(
                    select(RUN.c.id, RUN.c.status).where(RUN.c.tenant_id == tenant.id)
                )
            }
    assert statuses[report.run_id] == "abandoned"
    assert sorted(statuses.values()) == ["abandoned", "succeeded"]


async def test_refused_records_are_listed_and_the_rest_commits(db, database_url, tenant) -> None:
    """Bad data from the platform is refused record by record; the batch still commits."""
    w = world(orders=3)
    hub = make_hub(db, database_url, clock=clock_at(w))
    good = [
        OrderRecord(
            external_id=o.external_id,
            status="paid",
            placed_at=o.created,
            paid_at=o.created,
            updated_at=o.modified,
            total_fen=o.total_fen,
            paid_fen=o.total_fen,
            lines=tuple(
                OrderLineRecord(li.sku, li.name, li.quantity, li.unit_fen, li.amount_fen)
                for li in o.lines
            ),
            buyer=(Identifier("phone", None, o.person.phone),),
        )
        for o in w.orders["example"][:2]
    ]
    base: Any = HARNESS.connector.streams.__globals__["OrdersStream"]

    class Mixed(base):  # type: ignore[misc, valid-type]
        async def read(
            self, partition: Partition, state: Mapping[str, Any] | None
        ) -> AsyncIterator[Any]:
            yield good[0]
            yield RefundRecord("RF-ORPHAN", "NO-SUCH-ORDER", 100, START)
            yield RefundRecord("RF-TOO-MUCH", good[0].external_id, 10**9, START)
            yield good[1]
            yield Checkpoint({"cursor": partition.until.isoformat()})

    async with HARNESS.make_fake(w) as fake:
        await configure(hub, tenant.id, fake)
        conn = await hub.sync.build(tenant.id, "shop")
        conn.streams = lambda: (Mixed(conn),)  # type: ignore[method-assign]
        report = await hub.sync.run(tenant.id, "shop", connector=conn)
        await conn.close()
    assert report.status == "succeeded"
    stats = report.streams["orders"]
    assert (stats.read, stats.created, stats.rejected) == (4, 2, 2)
    assert {e["key"] for e in report.errors} == {"RF-ORPHAN", "RF-TOO-MUCH"}
    assert any("has not been synced" in e["error"] for e in report.errors)
    snap = await snapshot(hub, tenant.id)
    assert set(snap["orders"]) == {g.external_id for g in good}
    assert snap["refunds"] == []
    # The bookmark moved with the data: the refused records are reported, not re-read forever.
    assert await hub.sync.load_state(tenant.id, "shop", "orders", "default") is not None


async def test_secrets_are_encrypted_at_rest_and_never_shown(db, database_url, tenant) -> None:
    w = world(orders=5)
    hub = make_hub(db, database_url, clock=clock_at(w))
    async with HARNESS.make_fake(w) as fake:
        await configure(hub, tenant.id, fake)
        async with hub.db.tenant_tx(tenant.id, write=False) as tx:
            row = (await tx.conn.execute(select(CC).where(CC.c.tenant_id == tenant.id))).one()
            shown = await connections.get(tx, "shop", hub.settings.secret_key)
        assert fake.app_secret not in json.dumps(row.config)
        assert fake.app_secret not in row.secrets
        assert shown.secrets == {"api_key": "set"}
        assert "api_key" not in shown.config
        # Reconfiguring without the secret keeps it; an env: reference is stored as such.
        async with hub.db.tenant_tx(tenant.id) as tx:
            kept = await connections.configure(
                tx,
                channel="shop",
                connector="example_shop",
                config={"shop": "shop-1", "base_url": fake.base_url},
                registry=hub.sync.registry,
                master=hub.settings.secret_key,
            )
        assert kept.secrets == {"api_key": "set"}
        assert (await hub.sync.run(tenant.id, "shop")).status == "succeeded"
        async with hub.db.tenant_tx(tenant.id) as tx:
            ref = await connections.configure(
                tx,
                channel="shop",
                connector="example_shop",
                config={**HARNESS.config(fake), "api_key": "env:MH_TEST_UNSET_SECRET"},
                registry=hub.sync.registry,
                master=hub.settings.secret_key,
            )
        assert ref.secrets == {"api_key": "env:MH_TEST_UNSET_SECRET"}
        with pytest.raises(InvalidInput, match="MH_TEST_UNSET_SECRET"):
            await hub.sync.build(tenant.id, "shop")


async def test_invalid_configs_are_refused_with_the_field_and_nothing_stored(
    db, database_url, tenant
) -> None:
    hub = make_hub(db, database_url)
    cases = [
        ("no-such-connector", {"shop": "s", "api_key": "k"}, "connector"),
        ("example_shop", {"shop": "s"}, "config"),
        ("example_shop", {"shop": "s", "api_key": "k", "surprise": 1}, "config"),
        ("example_shop", {"shop": "", "api_key": "k"}, "shop"),
    ]
    for connector, config, field in cases:
        async with hub.db.tenant_tx(tenant.id) as tx:
            with pytest.raises(InvalidInput) as err:
                await connections.configure(
                    tx,
                    channel="shop",
                    connector=connector,
                    config=config,
                    registry=hub.sync.registry,
                    master=hub.settings.secret_key,
                )
        assert err.value.field == field
        assert "k" not in str(err.value).split()  # never echo a value (it may be a secret)
    async with hub.db.tenant_tx(tenant.id, write=False) as tx:
        assert await connections.list_connections(tx, hub.settings.secret_key) == []


async def test_a_tenant_never_sees_another_tenants_channels_or_state(
    db, database_url, tenant, other_tenant
) -> None:
    w = world(orders=10)
    hub = make_hub(db, database_url, clock=clock_at(w))
    async with HARNESS.make_fake(w) as fake:
        await configure(hub, tenant.id, fake)
        await hub.sync.run(tenant.id, "shop")
    async with hub.db.tenant_tx(other_tenant.id, write=False) as tx:
        assert await connections.list_connections(tx, hub.settings.secret_key) == []
        assert await runs.list_runs(tx, first=10) == []
    assert await hub.sync.load_state(other_tenant.id, "shop", "orders", "default") is None
    with pytest.raises(Exception, match="not configured"):
        await hub.sync.build(other_tenant.id, "shop")


async def test_progress_is_monotone_and_ends_at_the_total(db, database_url, tenant) -> None:
    w = world(orders=120)
    hub = make_hub(db, database_url, clock=clock_at(w))
    seen: list[tuple[str, int | None, int | None, int]] = []
    async with HARNESS.make_fake(w) as fake:
        await configure(hub, tenant.id, fake)
        await hub.sync.run(
            tenant.id,
            "shop",
            progress=lambda p: seen.append((p.stream, p.stats.done, p.stats.total, p.stats.read)),
        )
    orders = [s for s in seen if s[0] == "orders"]
    dones = [d for _, d, _, _ in orders if d is not None]
    assert dones == sorted(dones) and dones[-1] == orders[-1][2]
    assert orders[-1][3] == len(w.orders["example"])


async def test_concurrent_start_is_refused(db, database_url, tenant) -> None:
    w = world(orders=150, days=20)
    hub = make_hub(db, database_url, clock=clock_at(w))
    async with HARNESS.make_fake(w) as fake:
        await configure(hub, tenant.id, fake)
        run_id, task = await hub.sync.start(tenant.id, "shop")
        with pytest.raises(SyncAlreadyRunning):
            await hub.sync.start(tenant.id, "shop")
        report = await asyncio.wait_for(task, 60)
    assert report.run_id == run_id and report.status == "succeeded"

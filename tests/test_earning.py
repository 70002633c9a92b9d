"""The earning path: a paid order earns exactly once; refunds reverse proportionally."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway import ledger, members, orders
from gateway.errors import IdempotencyKeyReused, InvalidInput, InvalidTransition, NotFound
from gateway.ids import derived_id
from gateway.orders import OrderInput
from gateway.rules.earning import apply_event, evaluate
from gateway.rules.hookspecs import EventView, Intent, MemberSnapshot, hookimpl
from gateway.rules.manager import RuleRegistry, load_rules
from gateway.storage.db import Database
from gateway.tenants import TenantInfo
from plugins.points_per_yuan import PointsPerYuan
from tests.support import pos_member

T0 = datetime(2026, 6, 18, 10, tzinfo=UTC)


async def member(db: Database, tenant: TenantInfo, card: str = "C1") -> uuid.UUID:
    return await pos_member(db, tenant, card)


def paid(ext: str, member_id: uuid.UUID | None, fen: int, status: str = "paid") -> OrderInput:
    return OrderInput("tmall", ext, member_id, status, [], fen, fen, placed_at=T0, paid_at=T0)


async def record(db: Database, tenant: TenantInfo, inp: OrderInput) -> orders.RecordResult:
    async with db.tenant_tx(tenant.id) as tx:
        return await orders.record_order(tx, inp)


async def balances(db: Database, tenant: TenantInfo, m: uuid.UUID) -> dict[str, int]:
    async with db.tenant_tx(tenant.id) as tx:
        views = await ledger.balances_for(tx, [m])
    return {acct: v.available for (mid, acct), v in views.items() if mid == m}


async def refund(db: Database, tenant: TenantInfo, order_id: uuid.UUID, rid: str, fen: int) -> Any:
    async with db.tenant_tx(tenant.id) as tx:
        return await orders.refund_order(tx, order_id=order_id, refund_id=rid, amount_fen=fen)


async def test_plugin_is_discovered_through_entry_points() -> None:
    registry = load_rules()
    assert "points_per_yuan" in registry.names()
    rs = registry.get("points_per_yuan")
    assert rs is not None and rs.slot == "earning"
    snap = MemberSnapshot(uuid.uuid4(), T0, {"points": 5})
    event = EventView(
        uuid.uuid4(),
        "order.paid",
        snap.member_id,
        T0,
        {"paid_fen": 12_399, "channel": "jd", "external_id": "J1"},
    )
    intents = rs.evaluate(snap, event, {})
    assert [(i.account, i.amount) for i in intents] == [("points", 123), ("growth", 123)]
    assert intents[0].reason == "1 point per yuan on order jd:J1"
    assert (
        rs.evaluate(snap, EventView(event.id, "order.refunded", snap.member_id, T0, {}), {}) == []
    )
    with pytest.raises(TypeError):
        snap.balances["points"] = 1  # type: ignore[index]


async def test_paid_order_earns_exactly_once(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo
) -> None:
    m = await member(db, tenant)
    first = await record(db, tenant, paid("E-1", m, 12_345))
    assert len(first.events) == 1
    for _ in range(2):
        again = await record(db, tenant, paid("E-1", m, 12_345))
        assert again.events == [] and again.order_id == first.order_id
    assert await balances(db, tenant, m) == {"points": 123, "growth": 123}
    # Replaying the event itself (an operator re-run) returns the original transfers.
    event = EventView(
        first.events[0],
        "order.paid",
        m,
        T0,
        {
            "order_id": str(first.order_id),
            "paid_fen": 12_345,
            "channel": "tmall",
            "external_id": "E-1",
        },
    )
    async with db.tenant_tx(tenant.id) as tx:
        replay = await apply_event(tx, event, load_rules())
        by_source = await ledger.amounts_by_source(tx, str(first.order_id))
    assert [r.replayed for r in replay] == [True, True]
    assert {r.source for r in replay} == {"rule:points_per_yuan"}
    assert by_source == {("points", "earn"): 123, ("growth", "earn"): 123}
    assert await balances(db, tenant, m) == {"points": 123, "growth": 123}
    # Nothing of it is visible to the other brand.
    async with db.tenant_tx(other_tenant.id) as tx:
        assert await ledger.amounts_by_source(tx, str(first.order_id)) == {}
        assert await orders.get_orders(tx, [first.order_id]) == {}
        with pytest.raises(NotFound):
            await orders.refund_order(tx, order_id=first.order_id, refund_id="R", amount_fen=1)


async def test_member_attached_later_or_rule_disabled(db: Database, tenant: TenantInfo) -> None:
    m = await member(db, tenant)
    anonymous = await record(db, tenant, paid("E-2", None, 5_000))
    assert anonymous.events == []
    claimed = await record(db, tenant, paid("E-2", m, 5_000, status="completed"))
    assert len(claimed.events) == 1
    assert await balances(db, tenant, m) == {"points": 50, "growth": 50}
    # Explicitly running no rule sets earns nothing; an unknown enabled name is skipped.
    event = EventView(uuid.uuid4(), "order.paid", m, T0, {"paid_fen": 9_900})
    async with db.tenant_tx(tenant.id) as tx:
        assert await apply_event(tx, event, load_rules(), []) == []
        assert await apply_event(tx, event, load_rules(), ["not_installed"]) == []


class _DoubleIntent:
    name, slot, version = "buggy", "earning", "1"

    def evaluate(self, snapshot: MemberSnapshot, event: EventView, config: Any) -> list[Intent]:
        return [Intent("points", 1, "a", "buggy"), Intent("points", 2, "b", "buggy")]


class _BuggyPlugin:
    @hookimpl
    def register_rule_sets(self) -> list[Any]:
        return [_DoubleIntent()]


async def test_rule_output_is_checked_and_dry_run_writes_nothing(
    db: Database, tenant: TenantInfo
) -> None:
    m = await member(db, tenant)
    registry = load_rules([_BuggyPlugin()])
    event = EventView(uuid.uuid4(), "order.paid", m, T0, {"paid_fen": 300})
    async with db.tenant_tx(tenant.id) as tx:
        planned = await evaluate(tx, event, registry, ["points_per_yuan"])
        assert [(rs.name, i.amount) for rs, i in planned] == [("points_per_yuan", 3)] * 2
        with pytest.raises(ValueError):
            await apply_event(tx, event, registry, ["buggy"])
    assert await balances(db, tenant, m) == {}
    with pytest.raises(ValueError):
        RuleRegistry([PointsPerYuan(), PointsPerYuan()])


async def test_refunds_reverse_proportionally(db: Database, tenant: TenantInfo) -> None:
    m = await member(db, tenant)
    o = (await record(db, tenant, paid("F-1", m, 10_000))).order_id
    assert await balances(db, tenant, m) == {"points": 100, "growth": 100}
    r1 = await refund(db, tenant, o, "RF-1", 3_000)
    assert (r1.status, r1.reversed, r1.shortfall, r1.replayed) == (
        "partially_refunded",
        {"growth": 30, "points": 30},
        {"growth": 0, "points": 0},
        False,
    )
    assert await balances(db, tenant, m) == {"points": 70, "growth": 70}
    again = await refund(db, tenant, o, "RF-1", 3_000)
    assert again.replayed and again.reversed == r1.reversed
    with pytest.raises(IdempotencyKeyReused):
        await refund(db, tenant, o, "RF-1", 2_000)
    with pytest.raises(InvalidInput):
        await refund(db, tenant, o, "RF-2", 7_001)
    r2 = await refund(db, tenant, o, "RF-2", 7_000)
    assert r2.status == "refunded" and r2.reversed == {"growth": 70, "points": 70}
    assert await balances(db, tenant, m) == {"points": 0, "growth": 0}
    with pytest.raises(InvalidInput):
        await refund(db, tenant, o, "RF-3", 1)
    # A re-sent "completed" for the refunded order is not news, and never earns again.
    resent = await record(db, tenant, paid("F-1", m, 10_000, status="completed"))
    assert resent.status == "refunded" and resent.events == []
    async with db.tenant_tx(tenant.id) as tx:
        row = (await orders.get_orders(tx, [o]))[o]
    assert (row.refunded_fen, row.status) == (10_000, "refunded")


async def test_refund_rounding_never_drifts(db: Database, tenant: TenantInfo) -> None:
    m = await member(db, tenant)
    o = (await record(db, tenant, paid("F-2", m, 1_000))).order_id  # 10 points
    got = []
    for i, fen in enumerate([333, 333, 334]):
        got.append((await refund(db, tenant, o, f"P{i}", fen)).reversed["points"])
    # Each refund reverses floor(earned × cumulative refunded / paid) minus what came before.
    assert got == [3, 3, 4]
    assert await balances(db, tenant, m) == {"points": 0, "growth": 0}


async def test_refund_after_spending_records_shortfall(db: Database, tenant: TenantInfo) -> None:
    m = await member(db, tenant)
    o = (await record(db, tenant, paid("F-3", m, 10_000))).order_id
    async with db.tenant_tx(tenant.id) as tx:
        await ledger.debit(
            tx,
            member_id=m,
            account="points",
            amount=80,
            reason="exchange: mug",
            source="exchange",
            idem_key=str(derived_id(tenant.id, "test", "mug")),
        )
    r = await refund(db, tenant, o, "RF-1", 10_000)
    assert r.reversed == {"points": 20, "growth": 100}
    assert r.shortfall == {"points": 80, "growth": 0}
    assert await balances(db, tenant, m) == {"points": 0, "growth": 0}


async def test_unpaid_orders_cannot_be_refunded(db: Database, tenant: TenantInfo) -> None:
    o = (
        await record(db, tenant, OrderInput("jd", "U-1", None, "created", [], 100, 0, placed_at=T0))
    ).order_id
    with pytest.raises(InvalidTransition):
        await refund(db, tenant, o, "R", 1)
    with pytest.raises(InvalidInput):
        await refund(db, tenant, o, "bad id", 1)


async def test_replay_after_merge_does_not_pay_the_survivor_again(
    db: Database, tenant: TenantInfo
) -> None:
    a, b = await member(db, tenant, "A"), await member(db, tenant, "B")
    first = await record(db, tenant, paid("G-1", b, 4_200))
    async with db.tenant_tx(tenant.id) as tx:
        await members.merge(tx, survivor_id=a, loser_id=b, reason="same person")
    event = EventView(
        first.events[0],
        "order.paid",
        b,
        T0,
        {
            "order_id": str(first.order_id),
            "paid_fen": 4_200,
            "channel": "tmall",
            "external_id": "G-1",
        },
    )
    async with db.tenant_tx(tenant.id) as tx:
        assert await apply_event(tx, event, load_rules()) == []
    assert await balances(db, tenant, a) == {"points": 42, "growth": 42}
    # Refunding the moved order takes the points back from the survivor.
    r = await refund(db, tenant, first.order_id, "R-1", 4_200)
    assert r.reversed == {"points": 42, "growth": 42}
    assert await balances(db, tenant, a) == {"points": 0, "growth": 0}

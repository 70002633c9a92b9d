"""Order upsert: idempotent by (channel, external_id), forward-only status, validated input."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway import members, orders
from gateway.errors import InvalidInput, InvalidTransition, NotFound
from gateway.identifiers import tenant_key
from gateway.members import IdentifierInput
from gateway.orders import OrderInput, OrderLineInput
from gateway.storage.db import Database
from gateway.tenants import TenantInfo
from tests.conftest import TEST_SECRET

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
LINES = [
    OrderLineInput("SKU-1", "Tea", "drinks", 2, 1_500, 3_000),
    OrderLineInput("SKU-2", "Cake", None, 1, 2_000, 2_000),
]


def order(
    ext: str = "T-1", status: str = "created", member_id: uuid.UUID | None = None, **kw: object
) -> OrderInput:
    base = OrderInput("tmall", ext, member_id, status, LINES, 5_000, 0, placed_at=T0)
    return replace(base, **kw)  # type: ignore[arg-type]


async def member(db: Database, tenant: TenantInfo, card: str = "C1") -> uuid.UUID:
    async with db.tenant_tx(tenant.id) as tx:
        res = await members.ingest(
            tx,
            channel="pos",
            identifiers=[IdentifierInput("pos_card", "brand", card)],
            profile=None,
            key=tenant_key(TEST_SECRET, tenant.id),
        )
    return res.member_id


async def record(
    db: Database, tenant: TenantInfo, inp: OrderInput, **kw: object
) -> orders.RecordResult:
    async with db.tenant_tx(tenant.id) as tx:
        return await orders.record_order(tx, inp, **kw)  # type: ignore[arg-type]


async def test_upsert_is_idempotent_and_status_moves_forward(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo
) -> None:
    m = await member(db, tenant)
    first = await record(db, tenant, order(member_id=m))
    assert first.created and first.status == "created" and first.events == []
    same = await record(db, tenant, order(member_id=m))
    assert (same.order_id, same.created, same.status_changed) == (first.order_id, False, False)
    async with db.tenant_tx(tenant.id) as tx:
        stamp = (await orders.get_orders(tx, [first.order_id]))[first.order_id].updated_at
    paid = await record(
        db,
        tenant,
        order(member_id=m, status="paid", paid_fen=5_000, paid_at=T0),
        now=T0 + timedelta(1),
    )
    assert paid.status_changed and paid.status == "paid" and len(paid.events) == 1
    with pytest.raises(InvalidTransition):
        await record(db, tenant, order(member_id=m))
    stale = await record(db, tenant, order(member_id=m), on_backward="ignore")
    assert stale.status == "paid" and not stale.status_changed
    done = await record(
        db, tenant, order(member_id=m, status="completed", paid_fen=5_000, paid_at=T0)
    )
    assert done.status == "completed" and done.events == []  # paid once, earned once
    with pytest.raises(InvalidTransition):
        await record(db, tenant, order(member_id=m, status="cancelled", paid_fen=5_000))
    # Amounts of a paid order are frozen: a changed total is refused, not applied.
    with pytest.raises(InvalidTransition):
        await record(db, tenant, order(member_id=m, status="completed", paid_fen=4_000, paid_at=T0))
    async with db.tenant_tx(tenant.id) as tx:
        row = (await orders.get_orders(tx, [first.order_id]))[first.order_id]
        lines = await orders.lines_for(tx, [first.order_id])
    assert (row.status, row.paid_fen, row.member_id) == ("completed", 5_000, m)
    assert row.updated_at > stamp
    assert [(x.line_no, x.sku, x.amount_fen) for x in lines[first.order_id]] == [
        (1, "SKU-1", 3_000),
        (2, "SKU-2", 2_000),
    ]
    # The other brand sees nothing, and its own order with the same external id is separate.
    async with db.tenant_tx(other_tenant.id) as tx:
        assert await orders.get_orders(tx, [first.order_id]) == {}
        assert await orders.lines_for(tx, [first.order_id]) == {first.order_id: []}
    theirs = await record(db, other_tenant, order())
    assert theirs.created and theirs.order_id != first.order_id


async def test_created_order_may_be_corrected_and_cancelled(
    db: Database, tenant: TenantInfo
) -> None:
    first = await record(db, tenant, order("T-2"))
    fixed_lines = [OrderLineInput("SKU-1", "Tea", "drinks", 1, 1_500, 1_500)]
    fixed = await record(
        db, tenant, order("T-2", lines=fixed_lines, total_fen=1_500, store_code="S1")
    )
    assert not fixed.created and not fixed.status_changed
    cancelled = await record(
        db, tenant, order("T-2", status="cancelled", lines=[], total_fen=1_500)
    )
    assert cancelled.status == "cancelled" and cancelled.status_changed
    with pytest.raises(InvalidTransition):
        await record(db, tenant, order("T-2", status="paid", lines=[], total_fen=1_500))
    async with db.tenant_tx(tenant.id) as tx:
        row = (await orders.get_orders(tx, [first.order_id]))[first.order_id]
        lines = (await orders.lines_for(tx, [first.order_id]))[first.order_id]
    assert (row.total_fen, row.store_code, len(lines)) == (1_500, "S1", 1)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"total_fen": 4_999}, "total_fen"),
        ({"paid_fen": 6_000}, "paid_fen"),
        ({"total_fen": -1, "lines": []}, "total_fen"),
        ({"total_fen": 10**11 + 1, "lines": []}, "total_fen"),
        ({"status": "refunded"}, "status"),
        ({"status": "shipped"}, "status"),
        ({"external_id": "x" * 65}, "external_id"),
        ({"external_id": "bad id"}, "external_id"),
        ({"channel": ""}, "channel"),
        ({"placed_at": datetime(2026, 5, 1)}, "placed_at"),
        ({"lines": [OrderLineInput("S", "n", None, 0, 1, 0)], "total_fen": 0}, "lines[0].quantity"),
        (
            {"lines": [OrderLineInput("S", "n", None, 1, 1, -1)], "total_fen": 0},
            "lines[0].amount_fen",
        ),
        ({"lines": [OrderLineInput("S", "", None, 1, 1, 1)], "total_fen": 1}, "lines[0].name"),
        ({"total_fen": True, "lines": []}, "total_fen"),
    ],
)
async def test_invalid_orders_are_rejected(
    db: Database, tenant: TenantInfo, changes: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInput) as exc:
        await record(db, tenant, order("BAD", **changes))
    assert exc.value.field == field


async def test_return_lines_and_aware_datetimes(db: Database, tenant: TenantInfo) -> None:
    lines = [*LINES, OrderLineInput("SKU-2", "Cake return", None, -1, 2_000, -2_000)]
    cst = timezone(timedelta(hours=8))
    res = await record(
        db, tenant, order("R-1", lines=lines, total_fen=3_000, placed_at=T0.astimezone(cst))
    )
    again = await record(db, tenant, order("R-1", lines=lines, total_fen=3_000))
    assert res.created and not again.status_changed
    async with db.tenant_tx(tenant.id) as tx:
        row = (await orders.get_orders(tx, [res.order_id]))[res.order_id]
    assert row.placed_at == T0 and row.placed_at.tzinfo is not None


async def test_member_must_exist_in_this_tenant(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo
) -> None:
    theirs = await member(db, other_tenant)
    with pytest.raises(NotFound):
        await record(db, tenant, order("M-1", member_id=theirs))
    with pytest.raises(NotFound):
        await record(db, tenant, order("M-1", member_id=uuid.uuid4()))
    # A merged member's id is resolved to its survivor.
    a, b = await member(db, tenant, "A"), await member(db, tenant, "B")
    async with db.tenant_tx(tenant.id) as tx:
        await members.merge(tx, survivor_id=a, loser_id=b, reason="same person")
    res = await record(db, tenant, order("M-2", member_id=b))
    async with db.tenant_tx(tenant.id) as tx:
        assert (await orders.get_orders(tx, [res.order_id]))[res.order_id].member_id == a


async def test_batch_reads_latest_and_pages(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo
) -> None:
    a, b = await member(db, tenant, "A"), await member(db, tenant, "B")
    ids = []
    for i in range(7):
        r = await record(
            db, tenant, order(f"P-{i}", member_id=a, placed_at=T0 + timedelta(hours=i))
        )
        ids.append(r.order_id)
    rb = await record(db, tenant, order("P-b", member_id=b))
    async with db.tenant_tx(tenant.id) as tx:
        latest = await orders.latest_orders_for(tx, [a, b], limit_per_member=3)
        p1 = await orders.orders_page(tx, a, first=3, after=None)
        p2 = await orders.orders_page(tx, a, first=3, after=p1[2].id)
        p3 = await orders.orders_page(tx, a, first=3, after=p2[2].id)
    assert [o.id for o in latest[a]] == ids[::-1][:3]
    assert [o.id for o in latest[b]] == [rb.order_id]
    assert [o.id for o in p1] == ids[::-1][:4]
    assert [o.id for o in p2] == ids[::-1][3:7]
    assert [o.id for o in p3] == ids[::-1][6:]
    async with db.tenant_tx(other_tenant.id) as tx:
        assert await orders.latest_orders_for(tx, [a]) == {a: []}
        assert await orders.orders_page(tx, a, first=10, after=None) == []

# ruff: noqa: F811  (the `api` fixture is imported from tests.graphql_client)
"""Coupons on recorded orders: redeemed atomically with the order (a refused code refuses the
whole order and writes nothing), idempotent on re-send, given back by a full refund or a
cancellation where the template allows, kept by a partial refund — in the library and over
GraphQL, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway import coupons, members, orders
from gateway.coupons.model import C
from gateway.errors import CouponRefused
from gateway.orders import OrderInput, OrderLineInput
from gateway.storage.db import Database
from gateway.storage.tables import MemberEvent
from gateway.tenants import TenantInfo
from tests.graphql_client import (
    Api,
    api,  # noqa: F401  (fixture)
    new_member,
    order_input,
)
from tests.support import pos_member

E: Any = MemberEvent.__table__  # type: ignore[attr-defined]
T0 = datetime(2026, 3, 10, 4, tzinfo=UTC)


async def member(db: Database, tenant: TenantInfo, card: str) -> uuid.UUID:
    return await pos_member(db, tenant, card, now=T0 - timedelta(days=1))


async def coupon(
    db: Database,
    tenant: TenantInfo,
    m: uuid.UUID,
    *,
    off: int | None = 600,
    now: datetime = T0,
    **kw: Any,
) -> str:
    """Issue one coupon of a fresh template ("spend 30, save ``off``" by default)."""
    fields: dict[str, Any] = {
        "code": f"T{uuid.uuid4().hex[:8]}",
        "title": "Spend 30 save",
        "kind": "amount_off",
        "threshold_fen": 3000,
        "off_fen": off,
        "validity": "relative",
        "valid_days": 30,
        "stackable": True,
    }
    fields.update(kw)
    async with db.tenant_tx(tenant.id) as tx:
        t = await coupons.create_template(tx, now=now, **fields)
        c = await coupons.issue(tx, t.id, m, source="test", idem_key=uuid.uuid4().hex, now=now)
    return c.code


def order(ext: str, m: uuid.UUID | None, status: str = "paid", total: int = 10_000) -> OrderInput:
    lines = [
        OrderLineInput("TEA-1", "Longjing", "tea", 1, total - 2_000, total - 2_000),
        OrderLineInput("CUP-1", "Cup", "ware", 1, 2_000, 2_000),
    ]
    paid_at = T0 if status != "created" else None
    return OrderInput(
        "pos", ext, m, status, lines, total, total - 1_000, "S1", placed_at=T0, paid_at=paid_at
    )


async def record(
    db: Database, tenant: TenantInfo, inp: OrderInput, codes: list[str], now: datetime = T0
) -> Any:
    async with db.tenant_tx(tenant.id) as tx:
        return await orders.record_order(tx, inp, coupons=codes, now=now)


async def refund(db: Database, tenant: TenantInfo, order_id: uuid.UUID, rid: str, fen: int) -> Any:
    async with db.tenant_tx(tenant.id) as tx:
        return await orders.refund_order(
            tx, order_id=order_id, refund_id=rid, amount_fen=fen, now=T0
        )


async def coupon_rows(db: Database, tenant: TenantInfo, codes: list[str]) -> dict[str, Any]:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        rows = await tx.conn.execute(
            select(C).where(C.c.tenant_id == tenant.id, C.c.code.in_(codes))
        )
        return {r.code: r for r in rows}


async def counts(db: Database, tenant: TenantInfo) -> tuple[int, int, dict[str, int]]:
    """(orders, ledger transfers, events by type) of the tenant."""
    from gateway.commerce.model import ORD
    from gateway.ledger.store import T

    async with db.tenant_tx(tenant.id, write=False) as tx:
        n_orders = (
            await tx.conn.execute(select(func.count()).where(ORD.c.tenant_id == tenant.id))
        ).scalar_one()
        n_transfers = (
            await tx.conn.execute(select(func.count()).where(T.c.tenant_id == tenant.id))
        ).scalar_one()
        by_type = dict(
            (
                await tx.conn.execute(
                    select(E.c.type, func.count())
                    .where(E.c.tenant_id == tenant.id)
                    .group_by(E.c.type)
                )
            ).all()
        )
    return n_orders, n_transfers, by_type


async def test_an_order_redeems_its_coupons_with_it_and_replays_idempotently(
    db: Database, tenant: TenantInfo
) -> None:
    m = await member(db, tenant, "C1")
    a = await coupon(db, tenant, m)
    b = await coupon(db, tenant, m, kind="percent_off", off=None, percent=10, categories=["tea"])
    res = await record(db, tenant, order("O-1", m), [a, b.lower()])  # codes as typed
    assert res.created
    assert [(d.code, d.discount_fen, d.order_ref, d.replayed) for d in res.coupons] == [
        (a, 600, "pos:O-1", False),
        (b, 800, "pos:O-1", False),  # 10 % of the tea line only
    ]
    rows = await coupon_rows(db, tenant, [a, b])
    for code in (a, b):
        r = rows[code]
        assert (r.status, r.order_ref, r.redeemed_channel, r.redeemed_store, r.order_total_fen) == (
            "redeemed",
            "pos:O-1",
            "pos",
            "S1",
            10_000,
        )
    before = await counts(db, tenant)
    assert before[2]["coupon.redeemed"] == 2 and before[2]["order.paid"] == 1

    again = await record(db, tenant, order("O-1", m), [a, b])
    assert not again.created and again.order_id == res.order_id
    assert [(d.code, d.discount_fen, d.replayed) for d in again.coupons] == [
        (a, 600, True),
        (b, 800, True),
    ]
    assert await counts(db, tenant) == before  # nothing new: no event, no earning, no order


@pytest.mark.parametrize(
    "problem",
    ["used elsewhere", "someone else's", "expired", "unknown", "threshold", "not stackable"],
)
async def test_a_refused_coupon_refuses_the_whole_order(
    db: Database, tenant: TenantInfo, problem: str
) -> None:
    m = await member(db, tenant, "C1")
    good = await coupon(db, tenant, m)
    when = T0
    if problem == "used elsewhere":
        bad = await coupon(db, tenant, m)
        await record(db, tenant, order("O-0", m), [bad])
        expected = "ALREADY_REDEEMED"
    elif problem == "someone else's":
        bad = await coupon(db, tenant, await member(db, tenant, "C2"))
        expected = "NOT_YOURS"
    elif problem == "expired":
        window = {"starts_at": T0 - timedelta(days=1), "ends_at": T0 + timedelta(hours=1)}
        bad = await coupon(db, tenant, m, validity="fixed", valid_days=None, **window)
        when, expected = T0 + timedelta(hours=2), "EXPIRED"
    elif problem == "unknown":
        bad, expected = "NOT-A-CODE", "NOT_FOUND"
    elif problem == "threshold":
        bad, expected = await coupon(db, tenant, m, threshold_fen=50_000), "THRESHOLD_NOT_MET"
    else:
        bad, expected = await coupon(db, tenant, m, stackable=False), "NOT_STACKABLE"
    before = await counts(db, tenant)

    with pytest.raises(CouponRefused) as err:
        await record(db, tenant, order("O-1", m), [good, bad], now=when)
    assert (err.value.coupon_code, err.value.reason) == (bad, expected)
    assert bad in err.value.message
    assert await counts(db, tenant) == before  # no order, no points, no event
    assert (await coupon_rows(db, tenant, [good]))[good].status == "issued"
    # The POS drops the refused code and records the order: the good one is used.
    res = await record(db, tenant, order("O-1", m), [good], now=when)
    assert [d.code for d in res.coupons] == [good]


async def test_a_full_refund_returns_returnable_coupons_and_a_partial_one_keeps_them(
    db: Database, tenant: TenantInfo
) -> None:
    m = await member(db, tenant, "C1")
    back = await coupon(db, tenant, m, returnable_on_refund=True)
    kept = await coupon(db, tenant, m, returnable_on_refund=False)
    res = await record(db, tenant, order("O-1", m), [back, kept])

    part = await refund(db, tenant, res.order_id, "R1", 4_000)
    assert part.status == "partially_refunded" and part.returned_coupons == []
    rows = await coupon_rows(db, tenant, [back, kept])
    assert rows[back].status == rows[kept].status == "redeemed"

    full = await refund(db, tenant, res.order_id, "R2", 5_000)  # the rest of the 9,000 paid
    assert full.status == "refunded" and full.returned_coupons == [back]
    rows = await coupon_rows(db, tenant, [back, kept])
    assert (rows[back].status, rows[back].order_ref, rows[back].returned_from) == (
        "issued",
        None,
        "pos:O-1",
    )
    assert (rows[kept].status, rows[kept].order_ref) == ("redeemed", "pos:O-1")
    assert (await counts(db, tenant))[2]["coupon.returned"] == 1

    replay = await refund(db, tenant, res.order_id, "R2", 5_000)
    assert replay.replayed and replay.returned_coupons == [back]
    # A stale re-send of the order does not spend the returned coupon again, nor fail.
    resent = await record(db, tenant, order("O-1", m), [back, kept])
    assert [(d.code, d.replayed) for d in resent.coupons] == [(kept, True)]
    assert (await coupon_rows(db, tenant, [back]))[back].status == "issued"
    # The member can use it on the next order.
    nxt = await record(db, tenant, order("O-2", m), [back])
    assert [d.order_ref for d in nxt.coupons] == ["pos:O-2"]
    assert (await counts(db, tenant))[2]["coupon.returned"] == 1


async def test_cancelling_an_unpaid_order_returns_its_coupons(
    db: Database, tenant: TenantInfo
) -> None:
    m = await member(db, tenant, "C1")
    code = await coupon(db, tenant, m, returnable_on_refund=True)
    res = await record(db, tenant, order("O-1", m, status="created"), [code])
    assert [d.code for d in res.coupons] == [code]
    cancelled = await record(db, tenant, order("O-1", m, status="cancelled"), [code])
    assert cancelled.status == "cancelled" and cancelled.coupons == []
    assert (await coupon_rows(db, tenant, [code]))[code].status == "issued"
    # A new order recorded as cancelled redeems nothing.
    other = await record(db, tenant, order("O-2", m, status="cancelled"), [code])
    assert other.coupons == [] and (await coupon_rows(db, tenant, [code]))[code].status == "issued"


RECORD = """
mutation($i: RecordOrderInput!) { recordOrder(input: $i) { __typename
  ... on RecordOrderPayload { created coupons { code templateCode discountFen orderRef replayed }
    order { id status } }
  ... on CouponRefusedError { couponCode reason }
  ... on Error { code message } } }
"""
REFUND = """
mutation($i: RefundOrderInput!) { refundOrder(input: $i) { __typename
  ... on RefundOrderPayload { status returnedCoupons }
  ... on Error { code message } } }
"""


async def test_record_order_with_coupons_over_graphql(api: Api) -> None:
    mid = await new_member(api)
    async with api.hub.db.tenant_tx(api.a.id, write=False) as tx:
        m = await members.resolve(tx, _uuid(mid))
    assert m is not None
    db = api.hub.db
    now = datetime.now(UTC)  # the API redeems at the wall clock
    good = await coupon(db, api.a, m, returnable_on_refund=True, now=now)
    other = await coupon(db, api.a, await member(db, api.a, "X-9"), now=now)
    inp = order_input(mid, "G-1", paid_fen=12_300)

    before = await api.counts(api.a)
    body = await api.gql("pos", RECORD, {"i": {**inp, "coupons": [good, other]}})
    refused = body["data"]["recordOrder"]
    assert refused["__typename"] == "CouponRefusedError", refused
    assert (refused["couponCode"], refused["reason"], refused["code"]) == (
        other,
        "NOT_YOURS",
        "COUPON_REFUSED",
    )
    assert await api.counts(api.a) == before  # nothing written, not even the idempotency key

    first = (await api.gql("pos", RECORD, {"i": {**inp, "coupons": [good]}}))["data"]
    done = first["recordOrder"]
    assert done["__typename"] == "RecordOrderPayload" and done["created"] is True
    assert done["coupons"] == [
        {
            "code": good,
            "templateCode": done["coupons"][0]["templateCode"],
            "discountFen": 600,
            "orderRef": "tmall:G-1",
            "replayed": False,
        }
    ]
    again = (await api.gql("pos", RECORD, {"i": {**inp, "coupons": [good]}}))["data"]
    assert again["recordOrder"]["coupons"][0]["replayed"] is True
    assert again["recordOrder"]["created"] is False

    r = await api.gql(
        "pos",
        REFUND,
        {"i": {"orderId": done["order"]["id"], "refundId": "RF-1", "amountFen": 12_300}},
    )
    assert r["data"]["refundOrder"] == {
        "__typename": "RefundOrderPayload",
        "status": "REFUNDED",
        "returnedCoupons": [good],
    }


def _uuid(global_id: str) -> uuid.UUID:
    from schema.relay import decode_id

    value = decode_id(global_id, "Member")
    assert value is not None
    return value


async def test_stacked_coupons_never_take_more_than_the_order(
    db: Database, tenant: TenantInfo
) -> None:
    """Stackable "spend ¥50, ¥40 off" and "spend ¥50, ¥30 off" on a ¥60 order: the second sees
    ¥20 left — below its threshold — so the order is refused whole; a low-threshold second
    coupon is capped at what is left."""
    m = await member(db, tenant, "STACK")
    a = await coupon(db, tenant, m, off=4_000, threshold_fen=5_000)
    b = await coupon(db, tenant, m, off=3_000, threshold_fen=5_000)
    with pytest.raises(CouponRefused) as refused:
        await record(db, tenant, order("ST-60", m, total=6_000), [a, b])
    assert (refused.value.coupon_code, refused.value.reason) == (b, "THRESHOLD_NOT_MET")
    c = await coupon(db, tenant, m, off=3_000, threshold_fen=0)
    res = await record(db, tenant, order("ST-60b", m, total=6_000), [a, c])
    assert [d.discount_fen for d in res.coupons] == [4_000, 2_000]  # the second is capped
    again = await record(db, tenant, order("ST-60b", m, total=6_000), [a, c])
    assert [(d.discount_fen, d.replayed) for d in again.coupons] == [(4_000, True), (2_000, True)]

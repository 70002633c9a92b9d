"""Coupon events for webhook subscribers: ``coupon.issued``, ``coupon.redeemed`` and
``coupon.returned`` with the payload keys of plugins/README.md, never the code (a bearer secret),
once per happening however often the request is retried; and where a redemption happened is
stored for the statistics and cleared when the coupon is returned."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from gateway import coupons
from gateway.coupons.model import C
from gateway.rules.hookspecs import EVENT_TYPES
from gateway.storage.db import Database
from gateway.storage.tables import MemberEvent
from gateway.tenants import TenantInfo
from tests.test_coupons import T0, issue, new_member, order, template, use

E: Any = MemberEvent.__table__  # type: ignore[attr-defined]
TYPES = {e.name: e for e in EVENT_TYPES}


async def coupon_events(db: Database, tenant: TenantInfo) -> list[tuple[str, dict[str, Any]]]:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        rows = await tx.conn.execute(
            select(E.c.type, E.c.payload)
            .where(E.c.tenant_id == tenant.id, E.c.type.like("coupon.%"))
            .order_by(E.c.created_at, E.c.type)
        )
        return [(r.type, r.payload) for r in rows]


async def redemption_columns(db: Database, tenant: TenantInfo, code: str) -> tuple[Any, ...]:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        row = (
            await tx.conn.execute(
                select(C.c.redeemed_channel, C.c.redeemed_store, C.c.order_total_fen).where(
                    C.c.tenant_id == tenant.id, C.c.code == code
                )
            )
        ).one()
        return tuple(row)


async def test_lifecycle_events(db: Database, tenant: TenantInfo) -> None:
    m = await new_member(db, tenant, "A")
    t = await template(db, tenant, returnable_on_refund=True)
    c = await issue(db, tenant, t, m, "k1")
    await issue(db, tenant, t, m, "k1")  # replay: no second event
    await use(db, tenant, c.code, "O-1", order(4200, channel="tmall", store=None))
    await use(db, tenant, c.code, "O-1", key="retry")  # replay by order
    assert await redemption_columns(db, tenant, c.code) == ("tmall", None, 4200)
    async with db.tenant_tx(tenant.id) as tx:
        assert await coupons.return_on_refund(tx, c.code, "O-1", now=T0)
        assert not await coupons.return_on_refund(tx, c.code, "O-1", now=T0)
    assert await redemption_columns(db, tenant, c.code) == (None, None, None)
    await use(db, tenant, c.code, "O-2")  # used again after the refund: a new redemption

    got = await coupon_events(db, tenant)
    assert [k for k, _ in got] == [
        "coupon.issued",
        "coupon.redeemed",
        "coupon.returned",
        "coupon.redeemed",
    ]
    for kind, payload in got:
        assert set(payload) == set(TYPES[kind].payload), kind
        assert c.code not in json.dumps(payload)  # codes are bearer secrets
        assert payload["coupon_id"] == str(c.id) and payload["template_code"] == t.code
    assert got[0][1]["source"] == "test"
    assert got[1][1] | {"coupon_id": ""} == {
        "coupon_id": "",
        "template_code": t.code,
        "order_ref": "O-1",
        "discount_fen": 600,
        "channel": "tmall",
        "store_code": None,
    }
    assert got[2][1]["order_ref"] == "O-1" and got[3][1]["order_ref"] == "O-2"

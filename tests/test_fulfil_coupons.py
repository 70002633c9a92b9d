"""Grant fulfilment (gateway.rules.fulfil) on both databases: join, birthday and tier gifts become
exactly one coupon each, points gifts one credit; replays and reruns add nothing; a refused coupon
keeps the grant ``unfulfilled`` while the event is recorded; dry runs show the coupon and roll it
back; a points-mall coupon reward becomes a coupon, and a refused one refuses the exchange."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway import coupons, ledger
from gateway.coupons.model import C
from gateway.errors import NotEligible
from gateway.mall import service as mall
from gateway.rules import config as rule_config
from gateway.rules import engine, fulfil
from gateway.rules.hookspecs import EventView
from gateway.rules.manager import load_rules
from gateway.storage.db import Database
from gateway.storage.tables import MemberEvent, MemberGrant
from gateway.tenants import TenantInfo
from tests.support import pos_member

G: Any = MemberGrant.__table__  # type: ignore[attr-defined]
E: Any = MemberEvent.__table__  # type: ignore[attr-defined]
T0 = datetime(2026, 3, 10, 4, tzinfo=UTC)
REG = load_rules()
LADDER = [
    {"code": "member", "name": "Member", "threshold": 0},
    {
        "code": "gold",
        "name": "Gold",
        "threshold": 100,
        "discount_bp": 9500,
        "gifts": ["coupon:GOLD-WELCOME", "points:300"],
    },
]
CONFIG = {
    "tiers": {"rule": "classic_tiers", "config": {"ladder": LADDER}},
    "earning": ["classic_earning"],
    "benefits": [
        {
            "rule": "member_gifts",
            "config": {"join": ["coupon:WELCOME"], "birthday": ["coupon:BDAY"]},
        }
    ],
    "mall": {
        "rewards": [
            {
                "code": "TEN-OFF",
                "title": "¥10 off",
                "kind": "coupon",
                "item": "MALL-10",
                "options": {"points": {"points": 100}},
            }
        ]
    },
}


async def setup(db: Database, tenant: TenantInfo, **limits: Any) -> None:
    async with db.tenant_tx(tenant.id) as tx:
        await rule_config.save(tx, CONFIG, REG, actor="test")
        for code in ("WELCOME", "BDAY", "GOLD-WELCOME", "MALL-10"):
            await coupons.create_template(
                tx,
                code=code,
                title=code,
                kind="amount_off",
                off_fen=1000,
                validity="relative",
                valid_days=30,
                now=T0,
                **limits.get(code, {}),
            )


async def join(db: Database, tenant: TenantInfo, card: str) -> uuid.UUID:
    return await pos_member(db, tenant, card, now=T0)


async def event(
    db: Database, tenant: TenantInfo, m: uuid.UUID, type: str, key: str, **payload: Any
) -> engine.Outcome | None:
    async with db.tenant_tx(tenant.id) as tx:
        return await engine.record_and_process(
            tx,
            event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant.id}/{key}"),
            member_id=m,
            type=type,
            payload=payload,
            occurred_at=T0 + timedelta(hours=1),
            registry=REG,
            now=T0 + timedelta(hours=1),
        )


async def held(db: Database, tenant: TenantInfo, m: uuid.UUID) -> list[tuple[str, str, str]]:
    """``(template code, source, idem key)`` of the member's coupons, by template code."""
    async with db.tenant_tx(tenant.id, write=False) as tx:
        return sorted(
            (c.template_code, c.source, c.idem_key)
            for c in await tx.conn.execute(
                select(C.c.source, C.c.idem_key, coupons.model.T.c.code.label("template_code"))
                .join(coupons.model.T, coupons.model.T.c.id == C.c.template_id)
                .where(C.c.tenant_id == tenant.id, C.c.member_id == m)
            )
        )


async def grants(db: Database, tenant: TenantInfo, m: uuid.UUID) -> dict[str, Any]:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        rows = await tx.conn.execute(
            select(G).where(G.c.tenant_id == tenant.id, G.c.member_id == m)
        )
        return {f"{r.kind}:{r.code}": r for r in rows}


async def test_join_birthday_and_tier_gifts_become_exactly_one_coupon_each(
    db: Database, tenant: TenantInfo
) -> None:
    await setup(db, tenant)
    m = await join(db, tenant, "C1")
    await event(db, tenant, m, "member.birthday", "bd", year=2026, age=30)
    assert await event(db, tenant, m, "member.birthday", "bd", year=2026, age=30) is None
    paid = {"order_id": str(uuid.uuid4()), "channel": "pos", "paid_fen": 20_000, "lines": []}
    out = await event(db, tenant, m, "order.paid", "o1", **paid)
    assert out is not None and out.follow_ups, "the order upgrades the member to gold"
    g = await grants(db, tenant, m)
    assert {k: r.status for k, r in g.items()} == {
        "coupon:WELCOME": "fulfilled",
        "coupon:BDAY": "fulfilled",
        "coupon:GOLD-WELCOME": "fulfilled",
        "points:300": "fulfilled",
    }
    assert await held(db, tenant, m) == [
        ("BDAY", "rule:member_gifts", fulfil.coupon_key(g["coupon:BDAY"].id, 0)),
        ("GOLD-WELCOME", "rule:classic_tiers", fulfil.coupon_key(g["coupon:GOLD-WELCOME"].id, 0)),
        ("WELCOME", "rule:member_gifts", fulfil.coupon_key(g["coupon:WELCOME"].id, 0)),
    ]
    async with db.tenant_tx(tenant.id, write=False) as tx:
        points = (await ledger.balances_for(tx, [m]))[(m, "points")].available
        linked = await fulfil.coupons_of(tx, [(r.id, r.quantity) for r in g.values()])
    assert points == 200 + 300  # 200 yuan earned + the tier's points gift
    assert {k: [c.code for c in linked.get(r.id, [])] != [] for k, r in g.items()} == {
        "coupon:WELCOME": True,
        "coupon:BDAY": True,
        "coupon:GOLD-WELCOME": True,
        "points:300": False,
    }

    # Processing the same events again (a rerun of the engine, not a new record): nothing more.
    async with db.tenant_tx(tenant.id) as tx:
        rows = await tx.conn.execute(
            select(E).where(E.c.tenant_id == tenant.id, E.c.member_id == m)
        )
        for r in list(rows):
            ev = EventView(r.id, r.type, r.member_id, r.occurred_at, r.payload)
            again = await engine.process_event(tx, ev, REG, now=T0 + timedelta(hours=2))
            assert again.fulfilments == []
    assert len(await held(db, tenant, m)) == 3
    async with db.tenant_tx(tenant.id, write=False) as tx:
        assert (await ledger.balances_for(tx, [m]))[(m, "points")].available == 500


async def test_a_refused_coupon_keeps_the_grant_unfulfilled_and_the_event_recorded(
    db: Database, tenant: TenantInfo
) -> None:
    await setup(db, tenant, WELCOME={"total_limit": 1})
    first = await join(db, tenant, "C1")
    second = await join(db, tenant, "C2")  # the only WELCOME coupon is gone
    assert [c[0] for c in await held(db, tenant, first)] == ["WELCOME"]
    assert await held(db, tenant, second) == []
    grant = (await grants(db, tenant, second))["coupon:WELCOME"]
    assert grant.status == "unfulfilled"
    assert grant.reason == "welcome gift [unfulfilled: TOTAL_LIMIT]"
    async with db.tenant_tx(tenant.id, write=False) as tx:
        joined = await tx.conn.execute(
            select(func.count()).where(
                E.c.tenant_id == tenant.id, E.c.member_id == second, E.c.type == "member.joined"
            )
        )
        assert joined.scalar_one() == 1
    # Retrying while the limit still holds: refused again, marked once, still no coupon.
    async with db.tenant_tx(tenant.id) as tx:
        again = await fulfil.retry(tx, grant_ids=[grant.id], now=T0 + timedelta(days=1))
    assert [(f.status, f.reason) for f in again] == [("unfulfilled", "TOTAL_LIMIT")]
    assert (await grants(db, tenant, second))["coupon:WELCOME"].reason == grant.reason
    assert await held(db, tenant, second) == []


async def test_an_unknown_template_is_unfulfilled_until_created_then_retry_delivers_once(
    db: Database, tenant: TenantInfo
) -> None:
    await setup(db, tenant)
    m = await join(db, tenant, "C1")
    # A gift naming a template that does not exist (yet): the event is processed all the same.
    ev = EventView(uuid.uuid4(), "member.birthday", m, T0, {"year": 2026, "age": 30})
    async with db.tenant_tx(tenant.id) as tx:
        cfg = rule_config.validate(
            {"benefits": [{"rule": "member_gifts", "config": {"birthday": ["coupon:LATER"]}}]},
            REG,
        )
        out = await engine.process_event(tx, ev, REG, config=cfg, now=T0)
    [f] = out.fulfilments
    assert (f.status, f.reason) == ("unfulfilled", "NOT_FOUND")
    row = (await grants(db, tenant, m))["coupon:LATER"]
    assert (row.status, row.reason) == (
        "unfulfilled",
        "birthday gift 2026 [unfulfilled: NOT_FOUND]",
    )
    async with db.tenant_tx(tenant.id) as tx:
        await coupons.create_template(
            tx, code="LATER", title="x", kind="amount_off", off_fen=100, validity="relative",
            valid_days=3, now=T0,
        )  # fmt: skip
    for expected in (["fulfilled"], []):  # the second run finds nothing left to do
        async with db.tenant_tx(tenant.id) as tx:
            done = await fulfil.retry(tx, now=T0 + timedelta(days=1))
        assert [d.status for d in done] == expected
    row = (await grants(db, tenant, m))["coupon:LATER"]
    assert (row.status, row.reason) == ("fulfilled", "birthday gift 2026")
    assert [c[0] for c in await held(db, tenant, m)] == ["LATER", "WELCOME"]


async def test_dry_run_shows_the_coupon_and_rolls_it_back(db: Database, tenant: TenantInfo) -> None:
    await setup(db, tenant)
    m = await join(db, tenant, "C1")
    ev = EventView(uuid.uuid4(), "member.birthday", m, T0, {"year": 2026, "age": 30})
    async with db.tenant_tx(tenant.id) as tx:
        out = await engine.process_event(tx, ev, REG, now=T0, dry_run=True)
    [f] = out.fulfilments
    assert f.status == "fulfilled" and len(f.coupons) == 1 and f.coupons[0].code
    assert engine.dump(out)["fulfilments"][0]["coupons"] == [f.coupons[0].code]
    assert [c[0] for c in await held(db, tenant, m)] == ["WELCOME"]
    assert "coupon:BDAY" not in await grants(db, tenant, m)


async def test_mall_coupon_reward_becomes_a_coupon_and_a_refusal_refuses_the_exchange(
    db: Database, tenant: TenantInfo
) -> None:
    await setup(db, tenant, **{"MALL-10": {"per_member_limit": 1}})
    m = await join(db, tenant, "C1")
    async with db.tenant_tx(tenant.id) as tx:
        await ledger.credit(
            tx, member_id=m, account="points", amount=1000, reason="t", source="t",
            idem_key="seed", now=T0,
        )  # fmt: skip
        r = await mall.redeem(
            tx, member_id=m, reward="TEN-OFF", mode="points", idem_key="r1", registry=REG, now=T0
        )
    assert r.status == "completed" and r.grant_id is not None
    assert ("MALL-10", "mall", fulfil.coupon_key(r.grant_id, 0)) in await held(db, tenant, m)
    assert (await grants(db, tenant, m))["coupon:MALL-10"].status == "fulfilled"
    async with db.tenant_tx(tenant.id) as tx:
        with pytest.raises(NotEligible) as refused:
            await mall.redeem(
                tx, member_id=m, reward="TEN-OFF", mode="points", idem_key="r2", registry=REG,
                now=T0,
            )  # fmt: skip
        assert refused.value.reason == "MEMBER_LIMIT"
        # The caller's transaction is as it was: the points were not taken.
        assert (await ledger.balances_for(tx, [m]))[(m, "points")].available == 900
        assert [x.id for x in await mall.redemptions_for(tx, m)] == [r.id]
    assert [c[0] for c in await held(db, tenant, m)].count("MALL-10") == 1

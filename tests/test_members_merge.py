"""Merge moves everything; unmerge puts back exactly what the loser brought."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from gateway import ledger, members, orders
from gateway.errors import InvalidInput, InvalidTransition, NotFound
from gateway.identifiers import tenant_key
from gateway.members import IdentifierInput, ProfileInput
from gateway.orders import OrderInput
from gateway.storage.db import Database
from gateway.tenants import TenantInfo
from tests.conftest import TEST_SECRET

T0 = datetime(2026, 3, 1, tzinfo=UTC)


async def _ingest(
    db: Database, tenant: TenantInfo, ids: list[IdentifierInput], **kw: Any
) -> uuid.UUID:
    async with db.tenant_tx(tenant.id) as tx:
        res = await members.ingest(
            tx, identifiers=ids, key=tenant_key(TEST_SECRET, tenant.id), **kw
        )
    return res.member_id


async def _order(
    db: Database, tenant: TenantInfo, member_id: uuid.UUID, ext: str, fen: int
) -> uuid.UUID:
    async with db.tenant_tx(tenant.id) as tx:
        res = await orders.record_order(
            tx,
            OrderInput("tmall", ext, member_id, "paid", [], fen, fen, placed_at=T0, paid_at=T0),
        )
    return res.order_id


async def _state(db: Database, tenant: TenantInfo, ids: list[uuid.UUID]) -> dict[str, Any]:
    """Everything a user could notice about these members."""
    async with db.tenant_tx(tenant.id) as tx:
        rows = await members.get_members(tx, ids)
        idents = await members.identities_for(tx, ids)
        attrs = await members.attributes_for(tx, ids)
        latest = await members_orders(tx, ids)
        balances = await ledger.balances_for(tx, ids)
    return {
        "members": {
            m: (r.status, r.merged_into, r.name, r.gender, r.birthday, r.city)
            for m, r in rows.items()
        },
        "identities": {
            m: sorted((i.kind, i.scope, i.display) for i in v) for m, v in idents.items()
        },
        "attributes": {m: sorted(map(repr, v)) for m, v in attrs.items()},
        "orders": latest,
        "balances": {
            k: (v.available, v.held) for k, v in balances.items() if v.available or v.held
        },
    }


async def members_orders(tx: Any, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    got = await orders.latest_orders_for(tx, ids, limit_per_member=50)
    return {m: sorted(o.id for o in v) for m, v in got.items()}


async def test_merge_then_unmerge_restores_everything(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo
) -> None:
    a = await _ingest(
        db,
        tenant,
        [IdentifierInput("phone", "*", "13800138000")],
        channel="tmall",
        profile=ProfileInput(name="Tmall Nick", city="杭州"),
        now=T0,
    )
    b = await _ingest(
        db,
        tenant,
        [
            IdentifierInput("wechat_unionid", "op", "u-b"),
            IdentifierInput("wechat_openid", "wx", "o-b"),
        ],
        channel="wechat",
        profile=ProfileInput(name="王小明", birthday=date(1990, 1, 2), verified=True),
        now=T0 + timedelta(hours=1),
    )
    await _order(db, tenant, a, "A-1", 10_000)
    await _order(db, tenant, b, "B-1", 5_050)
    await _order(db, tenant, b, "B-2", 1_000)
    before = await _state(db, tenant, [a, b])
    assert before["balances"][(b, "points")] == (60, 0)

    async with db.tenant_tx(tenant.id) as tx:
        info = await members.merge(tx, survivor_id=a, loser_id=b, reason="support ticket 42")
    merged = await _state(db, tenant, [a, b])
    assert merged["members"][b][:2] == ("merged", a)
    assert merged["members"][a][2] == "王小明"  # verified name wins
    assert merged["members"][a][4] == date(1990, 1, 2)
    assert merged["members"][a][5] == "杭州"
    assert merged["identities"][b] == [] and len(merged["identities"][a]) == 3
    assert len(merged["orders"][a]) == 3 and merged["orders"][b] == []
    assert merged["balances"][(a, "points")] == (160, 0)
    assert (b, "points") not in merged["balances"]

    # The survivor goes on living: a new identity and order stay with it after unmerge.
    await _ingest(
        db,
        tenant,
        [IdentifierInput("phone", "*", "13800138000"), IdentifierInput("pos_card", "brand", "C-1")],
        channel="pos",
    )
    later_order = await _order(db, tenant, a, "A-2", 2_000)

    async with db.tenant_tx(other_tenant.id) as tx:
        with pytest.raises(NotFound):
            await members.unmerge(tx, merge_id=info.id, reason="not yours")
    async with db.tenant_tx(tenant.id) as tx:
        undone = await members.unmerge(tx, merge_id=info.id, reason="different people")
        history = await members.merges_for(tx, [a, b])
    assert undone.status == "unmerged" and history[b][0].status == "unmerged"
    after = await _state(db, tenant, [a, b])
    assert after["members"] == before["members"]
    assert after["attributes"] == before["attributes"]
    assert after["identities"][b] == before["identities"][b]
    assert set(after["identities"][a]) == set(before["identities"][a]) | {
        ("pos_card", "brand", "C-1")
    }
    assert after["orders"][b] == before["orders"][b]
    assert after["orders"][a] == sorted([*before["orders"][a], later_order])
    assert after["balances"][(b, "points")] == before["balances"][(b, "points")]
    assert after["balances"][(b, "growth")] == before["balances"][(b, "growth")]
    assert after["balances"][(a, "points")] == (100 + 20, 0)

    async with db.tenant_tx(tenant.id) as tx:
        with pytest.raises(InvalidTransition):
            await members.unmerge(tx, merge_id=info.id, reason="again")


async def test_merge_errors_and_chains(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo
) -> None:
    a = await _ingest(db, tenant, [IdentifierInput("pos_card", "b", "1")], channel="pos")
    b = await _ingest(db, tenant, [IdentifierInput("pos_card", "b", "2")], channel="pos")
    c = await _ingest(db, tenant, [IdentifierInput("pos_card", "b", "3")], channel="pos")
    theirs = await _ingest(db, other_tenant, [IdentifierInput("pos_card", "b", "1")], channel="pos")
    async with db.tenant_tx(tenant.id) as tx:
        with pytest.raises(InvalidInput):
            await members.merge(tx, survivor_id=a, loser_id=a, reason="x")
        with pytest.raises(NotFound):
            await members.merge(tx, survivor_id=a, loser_id=theirs, reason="x")
        with pytest.raises(NotFound):
            await members.merge(tx, survivor_id=a, loser_id=uuid.uuid4(), reason="x")
    async with db.tenant_tx(tenant.id) as tx:
        first = await members.merge(tx, survivor_id=b, loser_id=c, reason="c is b")
        second = await members.merge(tx, survivor_id=a, loser_id=b, reason="b is a")
        with pytest.raises(InvalidInput):
            await members.merge(tx, survivor_id=a, loser_id=b, reason="again")
        # c was merged into b, b into a: c resolves straight to a.
        assert await members.resolve(tx, c) == a
        assert (await members.get_members(tx, [c]))[c].merged_into == a
        with pytest.raises(InvalidTransition):
            await members.unmerge(tx, merge_id=first.id, reason="b was merged since")
    async with db.tenant_tx(tenant.id) as tx:
        await members.unmerge(tx, merge_id=second.id, reason="undo b into a")
        assert await members.resolve(tx, c) == b
        await members.unmerge(tx, merge_id=first.id, reason="undo c into b")
        assert await members.resolve(tx, c) == c
        idents = await members.identities_for(tx, [a, b, c])
    assert {m: [i.scope + i.kind for i in v] for m, v in idents.items()} == {
        a: ["bpos_card"],
        b: ["bpos_card"],
        c: ["bpos_card"],
    }


@pytest.mark.parametrize("ending", ["release", "expire"])
async def test_hold_ending_after_a_merge_returns_points_to_the_survivor(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo, ending: str
) -> None:
    """A POS hold placed before a ONE ID merge and released (or expired) after it gives its
    points to the surviving member, who can spend them; nothing is stranded on the merged id."""
    key = tenant_key(TEST_SECRET, tenant.id)
    now = datetime.now(UTC)
    async with db.tenant_tx(tenant.id) as tx:
        s = await members.ingest(
            tx, channel="pos", key=key, identifiers=[IdentifierInput("phone", "*", "13700000001")]
        )
        lo = await members.ingest(
            tx, channel="pos", key=key, identifiers=[IdentifierInput("phone", "*", "13700000002")]
        )
        await ledger.credit(
            tx,
            member_id=lo.member_id,
            account="points",
            amount=100,
            reason="earn",
            source="test",
            idem_key="hm-earn",
            now=now,
        )
        h = await ledger.hold(
            tx,
            member_id=lo.member_id,
            account="points",
            amount=60,
            ttl_seconds=60,
            reason="pos",
            idem_key="hm-hold",
            now=now,
        )
        await members.merge(tx, survivor_id=s.member_id, loser_id=lo.member_id, reason="same")
    async with db.tenant_tx(tenant.id) as tx:
        if ending == "release":
            await ledger.release(tx, hold_id=h.id, reason="cancelled", idem_key="hm-rel")
        else:
            await ledger.expire_due(tx, now=now + timedelta(seconds=61))
    async with db.tenant_tx(tenant.id) as tx:
        b = await ledger.balances_for(tx, [s.member_id, lo.member_id])
        assert b[(s.member_id, "points")].available == 100
        assert b[(lo.member_id, "points")].available == 0
        spent = await ledger.debit(
            tx,
            member_id=s.member_id,
            account="points",
            amount=100,
            reason="spend",
            source="test",
            idem_key="hm-spend",
        )
        assert spent.amount == -100
        assert await ledger.verify(tx) == []
    async with db.tenant_tx(other_tenant.id) as tx:
        assert (await ledger.get_holds(tx, [h.id])) == {}

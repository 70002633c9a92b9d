"""Tags: normalised manual tags (idempotent, author recorded), join-scene tags and the
``member.joined`` event every new member gets (per record and in the set-based sync batch),
behaviour tags derived incrementally from orders, merges, counts and tenant isolation."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from gateway import members
from gateway.errors import InvalidInput, NotFound
from gateway.identifiers import tenant_key
from gateway.members import IdentifierInput
from gateway.storage.db import Database
from gateway.storage.tables import MemberEvent
from gateway.sync.apply import apply_one
from gateway.sync.records import Identifier, JoinScene, MemberRecord
from gateway.tags import add_tags, derive_tags, remove_tags, tag_counts, tags_for
from gateway.tenants import TenantInfo
from tests.conftest import TEST_SECRET
from tests.test_segments import NOW, new_member, paid_order

ME: Any = MemberEvent.__table__  # type: ignore[attr-defined]


async def _tags(db: Database, tenant: TenantInfo, mid: uuid.UUID) -> dict[str, tuple[str, Any]]:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        return {t.tag: (t.source, t.created_by) for t in (await tags_for(tx, [mid]))[mid]}


async def _joined(db: Database, tenant: TenantInfo) -> dict[uuid.UUID, dict[str, Any]]:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        rows = await tx.conn.execute(
            select(ME.c.member_id, ME.c.payload).where(
                ME.c.tenant_id == tenant.id, ME.c.type == "member.joined"
            )
        )
        return {r.member_id: r.payload for r in rows}


async def test_manual_tags_are_normalised_idempotent_and_attributed(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo
) -> None:
    a = await new_member(db, tenant, "a")
    b = await new_member(db, tenant, "b")
    async with db.tenant_tx(tenant.id) as tx:
        assert await add_tags(tx, [a, b], [" VIP", "Coffee Lover", "vip"], created_by="li") == 4
        assert await add_tags(tx, [a], ["vip"], created_by="wang") == 0
        for bad in ([""], ["x" * 65], ["a,b"], []):
            with pytest.raises(InvalidInput):
                await add_tags(tx, [a], bad)
        assert await remove_tags(tx, [b], ["VIP"]) == 1
        assert await remove_tags(tx, [b], ["vip"]) == 0
        assert await tag_counts(tx) == [("coffee lover", 2), ("vip", 1)]
        counts = dict(await tag_counts(tx))
        assert counts == {"vip": 1, "coffee lover": 2}
        assert dict(await tag_counts(tx, prefix="CO")) == {"coffee lover": 2}
    assert await _tags(db, tenant, a) == {
        "vip": ("manual", "li"),
        "coffee lover": ("manual", "li"),
    }
    # Another tenant can neither tag nor see these members.
    async with db.tenant_tx(other_tenant.id) as tx:
        with pytest.raises(NotFound):
            await add_tags(tx, [a], ["vip"])
        assert await tag_counts(tx) == []
        assert (await tags_for(tx, [a]))[a] == []


async def test_a_new_member_gets_its_join_scene_tags_and_member_joined(
    db: Database, tenant: TenantInfo
) -> None:
    """No rule config at all (bulk-safe): member.joined is still recorded, with the scene."""
    key = tenant_key(TEST_SECRET, tenant.id)
    async with db.tenant_tx(tenant.id) as tx:
        res = await members.ingest(
            tx,
            channel="wechat",
            identifiers=[IdentifierInput("pos_card", "brand", "q1")],
            key=key,
            now=NOW,
            scene=JoinScene("store_qr", " S001"),
        )
        again = await members.ingest(
            tx,
            channel="wechat",
            identifiers=[IdentifierInput("pos_card", "brand", "q1")],
            key=key,
            now=NOW,
            scene=JoinScene("live", "room9"),
        )
        plain = await members.ingest(
            tx,
            channel="pos",
            identifiers=[IdentifierInput("pos_card", "brand", "q2")],
            key=key,
            now=NOW,
        )
        # Through the sync path: a connector's member record with a scene.
        rec = MemberRecord(
            "ext-1",
            (Identifier("pos_card", "brand", "q3"),),
            NOW,
            scene=JoinScene("guide", "G7"),
        )
        out = await apply_one(tx, rec, channel="wechat", key=key, rules=None, now=NOW)
    assert res.created and not again.created and again.member_id == res.member_id
    assert await _tags(db, tenant, res.member_id) == {
        "scene:store_qr": ("scene", None),
        "store:s001": ("scene", None),
    }
    assert await _tags(db, tenant, plain.member_id) == {}
    assert set(await _tags(db, tenant, out.member_id)) == {"scene:guide", "guide:g7"}
    joined = await _joined(db, tenant)
    assert joined == {
        res.member_id: {"channel": "wechat", "scene": {"kind": "store_qr", "ref": " S001"}},
        plain.member_id: {"channel": "pos", "scene": None},
        out.member_id: {"channel": "wechat", "scene": {"kind": "guide", "ref": "G7"}},
    }
    assert rec.to_json()["scene"] == {"kind": "guide", "ref": "G7"}
    assert "scene" not in MemberRecord("e", (Identifier("pos_card", "b", "1"),), NOW).to_json()
    with pytest.raises(InvalidInput):
        JoinScene("tv_ad", "x")
    with pytest.raises(InvalidInput):
        JoinScene("campaign", "c" * 60)


async def test_behaviour_tags_are_derived_incrementally(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo
) -> None:
    a = await new_member(db, tenant, "a")
    b = await new_member(db, tenant, "b")
    await paid_order(db, tenant, a, "o1", category="Coffee ", channel="tmall", at=NOW)
    await paid_order(db, tenant, a, "o2", category="茶", channel="pos", at=NOW)
    await paid_order(db, tenant, b, "o3", category="cake", status="created", at=NOW)
    await paid_order(db, tenant, b, "o4", category=None, channel="jd", at=NOW)
    other = await new_member(db, other_tenant, "a")
    await paid_order(db, other_tenant, other, "o1", category="wine", at=NOW)
    first = await derive_tags(db, tenant.id, now=NOW)
    assert first.added == 5
    assert await _tags(db, tenant, a) == {
        "category:coffee": ("behaviour", "derive"),
        "category:茶": ("behaviour", "derive"),
        "channel:tmall": ("behaviour", "derive"),
        "channel:pos": ("behaviour", "derive"),
    }
    assert set(await _tags(db, tenant, b)) == {"channel:jd"}  # an unpaid order tags nothing
    assert (await derive_tags(db, tenant.id, now=NOW)).added == 0  # re-run: nothing new
    # Only orders updated since the cursor (minus the overlap) are read on the next run.
    later = NOW + timedelta(hours=2)
    await paid_order(db, tenant, b, "o5", category="Cake", at=later)
    rep = await derive_tags(db, tenant.id, now=later)
    assert rep.added == 2 and rep.since is not None and rep.since > NOW - timedelta(hours=1)
    assert set(await _tags(db, tenant, b)) == {"channel:jd", "category:cake", "channel:pos"}
    assert await _tags(db, other_tenant, other) == {}


async def test_tags_follow_the_survivor_of_a_merge_and_come_back_on_unmerge(
    db: Database, tenant: TenantInfo
) -> None:
    old = await new_member(db, tenant, "old", at=NOW - timedelta(days=1))
    young = await new_member(db, tenant, "young")
    async with db.tenant_tx(tenant.id) as tx:
        await add_tags(tx, [old], ["a"])
        await add_tags(tx, [young], ["b", "a"])
        merge = await members.merge(tx, survivor_id=old, loser_id=young, reason="same phone")
        # Tagging by the old id lands on the person it stands for.
        await add_tags(tx, [young], ["c"])
        assert dict(await tag_counts(tx)) == {"a": 1, "b": 1, "c": 1}
    assert set(await _tags(db, tenant, old)) == {"a", "b", "c"}
    async with db.tenant_tx(tenant.id) as tx:
        await members.unmerge(tx, merge_id=merge.id, reason="two people")
    assert set(await _tags(db, tenant, old)) == {"a", "c"}
    assert set(await _tags(db, tenant, young)) == {"a", "b"}


def test_wechat_followers_map_their_qr_scene() -> None:
    from connectors.wechat.mapping import join_scene

    def qr(s: str) -> JoinScene | None:
        return join_scene({"subscribe_scene": "ADD_SCENE_QR_CODE", "qr_scene_str": s})

    assert qr("store:S001") == JoinScene("store_qr", "S001")
    assert qr("guide:G7") == JoinScene("guide", "G7")
    assert qr("campaign:C2026") == JoinScene("campaign", "C2026")
    assert qr("spring-fair") == JoinScene("other", "spring-fair")
    assert qr("store:" + "x" * 80) == JoinScene("store_qr")
    assert qr("") is None
    assert join_scene({"subscribe_scene": "ADD_SCENE_SEARCH"}) is None
    assert join_scene({"subscribe_scene": "ADD_SCENE_LIVESTREAM"}) == JoinScene("live")

"""ONE ID ingest, profile provenance and batch reads, always checked against a second tenant."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from gateway import members
from gateway.errors import InvalidInput
from gateway.identifiers import tenant_key
from gateway.members import IdentifierInput, MemberFilter, ProfileInput
from gateway.storage.db import Database
from gateway.tenants import TenantInfo
from tests.conftest import TEST_SECRET

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ident(kind: str, value: str, scope: str | None = None) -> IdentifierInput:
    return IdentifierInput(kind, scope, value)


PHONE = ident("phone", "13800138000")
UNION = ident("wechat_unionid", "u-1", "openplat")
OPENID = ident("wechat_openid", "o-1", "wxapp")


async def ingest(
    db: Database,
    tenant: TenantInfo,
    *ids: IdentifierInput,
    channel: str = "wechat",
    profile: ProfileInput | None = None,
    now: datetime | None = None,
) -> members.IngestResult:
    async with db.tenant_tx(tenant.id) as tx:
        return await members.ingest(
            tx,
            channel=channel,
            identifiers=list(ids),
            profile=profile,
            key=tenant_key(TEST_SECRET, tenant.id),
            now=now,
        )


async def test_ingest_creates_then_attaches(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo
) -> None:
    first = await ingest(db, tenant, PHONE, channel="tmall")
    assert first.created and first.merged_ids == []
    assert [a.kind for a in first.attached] == ["phone"]
    again = await ingest(db, tenant, ident("phone", "+86 138 0013 8000"), UNION)
    assert again.member_id == first.member_id and not again.created
    assert [a.kind for a in again.attached] == ["wechat_unionid"]
    # Same phone in another brand is another person; neither sees the other.
    theirs = await ingest(db, other_tenant, PHONE)
    assert theirs.created and theirs.member_id != first.member_id
    key = tenant_key(TEST_SECRET, other_tenant.id)
    async with db.tenant_tx(other_tenant.id) as tx:
        assert await members.resolve(tx, first.member_id) is None
        assert await members.get_members(tx, [first.member_id]) == {}
        assert (
            await members.find_by_identifier(tx, "wechat_unionid", "openplat", "u-1", key=key)
            is None
        )
    async with db.tenant_tx(tenant.id) as tx:
        key = tenant_key(TEST_SECRET, tenant.id)
        found = await members.find_by_identifier(tx, "phone", "*", "008613800138000", key=key)
        assert found == first.member_id
        ids = await members.identities_for(tx, [first.member_id])
    rows = ids[first.member_id]
    assert {(r.kind, r.display, r.channel, r.strong) for r in rows} == {
        ("phone", "138****8000", "tmall", True),
        ("wechat_unionid", "u-1", "wechat", True),
    }
    assert not any("13800138000" in str(r) for r in rows)


async def test_shared_strong_identifier_merges_into_oldest(
    db: Database, tenant: TenantInfo
) -> None:
    old = await ingest(db, tenant, PHONE, channel="tmall", now=T0)
    young = await ingest(db, tenant, UNION, now=T0 + timedelta(days=1))
    card = await ingest(db, tenant, ident("pos_card", "C-9", "brand"), now=T0 + timedelta(days=2))
    # One record proves all three are the same person.
    res = await ingest(
        db,
        tenant,
        UNION,
        ident("pos_card", "C-9", "brand"),
        PHONE,
        channel="pos",
        now=T0 + timedelta(days=3),
    )
    assert res.member_id == old.member_id and not res.created
    assert sorted(res.merged_ids) == sorted([young.member_id, card.member_id])
    async with db.tenant_tx(tenant.id) as tx:
        assert await members.resolve(tx, young.member_id) == old.member_id
        assert await members.resolve(tx, card.member_id) == old.member_id
        rows = await members.get_members(tx, [old.member_id, young.member_id])
        idents = await members.identities_for(tx, [old.member_id, young.member_id])
        history = await members.merges_for(tx, [old.member_id])
        page = await members.list_members(tx, first=10, after=None, filter=MemberFilter())
    assert rows[young.member_id].status == "merged"
    assert rows[young.member_id].merged_into == old.member_id
    assert {r.kind for r in idents[old.member_id]} == {"phone", "wechat_unionid", "pos_card"}
    assert idents[young.member_id] == []
    assert {h.reason for h in history[old.member_id]} == {
        "ONE ID: shared wechat_unionid",
        "ONE ID: shared pos_card",
    }
    assert [m.id for m in page] == [old.member_id]


async def test_weak_identifiers_never_merge_or_move(db: Database, tenant: TenantInfo) -> None:
    a = await ingest(db, tenant, PHONE, OPENID)
    gift = ident("receiver_phone", "13900139000", "tmall-shop")
    b = await ingest(db, tenant, ident("phone", "13700137000"), gift)
    # A record with A's openid and B's receiver phone and a new strong id: no merge, nothing moves.
    c = await ingest(db, tenant, OPENID, gift, ident("email", "c@example.com"))
    assert c.member_id == a.member_id and c.merged_ids == []
    assert [x.kind for x in c.attached] == ["email"]
    async with db.tenant_tx(tenant.id) as tx:
        idents = await members.identities_for(tx, [a.member_id, b.member_id])
        assert (await members.get_members(tx, [b.member_id]))[b.member_id].status == "active"
    assert {r.kind for r in idents[b.member_id]} == {"phone", "receiver_phone"}
    # Only weak identifiers, all unknown: a new member.
    d = await ingest(db, tenant, ident("jd_open_id", "jd-1", "shop"))
    assert d.created


async def test_invalid_input_writes_nothing(db: Database, tenant: TenantInfo) -> None:
    with pytest.raises(InvalidInput):
        await ingest(db, tenant, UNION, ident("phone", "123"))
    with pytest.raises(InvalidInput):
        await ingest(db, tenant, UNION, profile=ProfileInput(gender="robot"))
    with pytest.raises(InvalidInput):
        await ingest(db, tenant, UNION, profile=ProfileInput(birthday=date(1899, 12, 31)))
    with pytest.raises(InvalidInput):
        await ingest(db, tenant, UNION, profile=ProfileInput(birthday=date.today() + timedelta(2)))
    with pytest.raises(InvalidInput):
        await ingest(db, tenant, UNION, profile=ProfileInput(name="x" * 101))
    with pytest.raises(InvalidInput):
        await ingest(db, tenant, UNION, channel="bad channel")
    with pytest.raises(InvalidInput):
        await ingest(db, tenant)
    async with db.tenant_tx(tenant.id) as tx:
        page = await members.list_members(tx, first=10, after=None, filter=MemberFilter())
    assert page == []


async def test_profile_provenance(db: Database, tenant: TenantInfo) -> None:
    r = await ingest(
        db,
        tenant,
        PHONE,
        channel="tmall",
        profile=ProfileInput(name="Tmall Nick", city="杭州"),
        now=T0,
    )
    mid = r.member_id
    verified = ProfileInput(name="王小明", gender="male", verified=True, observed_at=T0)
    await ingest(db, tenant, PHONE, channel="wechat", profile=verified, now=T0 + timedelta(1))
    # Later but unverified: loses on name, wins on city (same verification, observed later).
    later = ProfileInput(name="Typo", city="上海", gender="unknown")
    await ingest(db, tenant, PHONE, channel="pos", profile=later, now=T0 + timedelta(2))
    # Older unverified data arriving late (a backfill) loses too.
    stale = ProfileInput(city="北京", birthday=date(1990, 5, 1), observed_at=T0 - timedelta(30))
    await ingest(db, tenant, PHONE, channel="youzan", profile=stale, now=T0 + timedelta(3))
    async with db.tenant_tx(tenant.id) as tx:
        row = (await members.get_members(tx, [mid]))[mid]
        attrs = {a.field: a for a in (await members.attributes_for(tx, [mid]))[mid]}
    assert (row.name, row.gender, row.city, row.birthday) == (
        "王小明",
        "male",
        "上海",
        date(1990, 5, 1),
    )
    assert attrs["name"].channel == "wechat" and attrs["name"].verified
    assert attrs["city"].channel == "pos" and not attrs["city"].verified
    assert attrs["birthday"].channel == "youzan"


async def test_list_members_pages_and_filters(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo
) -> None:
    made = []
    for i in range(5):
        channel = "pos" if i % 2 else "tmall"
        r = await ingest(
            db,
            tenant,
            ident("pos_card", f"card-{i}", "brand"),
            channel=channel,
            profile=ProfileInput(name=f"Member_{i}"),
        )
        made.append(r.member_id)
    await ingest(db, other_tenant, ident("pos_card", "card-x", "brand"))
    async with db.tenant_tx(tenant.id) as tx:
        p1 = await members.list_members(tx, first=2, after=None, filter=MemberFilter())
        p2 = await members.list_members(tx, first=2, after=p1[1].id, filter=MemberFilter())
        pos = await members.list_members(
            tx, first=10, after=None, filter=MemberFilter(channel="pos")
        )
        named = await members.list_members(
            tx, first=10, after=None, filter=MemberFilter(name_contains="ber_3")
        )
        literal = await members.list_members(
            tx, first=10, after=None, filter=MemberFilter(name_contains="%")
        )
        by_kind = await members.list_members(
            tx, first=10, after=None, filter=MemberFilter(identifier_kind="phone")
        )
    assert [m.id for m in p1] == made[:3]  # first + 1 rows
    assert [m.id for m in p2] == made[2:5]
    assert [m.id for m in pos] == [made[1], made[3]]
    assert [m.id for m in named] == [made[3]]
    assert literal == [] and by_kind == []

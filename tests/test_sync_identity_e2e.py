"""ONE ID through the real push endpoints: the same person arriving via Tmall 会员通 (omid +
mobile), the WeChat mini-program login (unionid + phone) and a store POS push (phone + card) is
one member; a parcel's receiver phone never merges two people.

Everything goes through ``/channels/{tenant}/{channel}/hooks/{name}`` of the ASGI app (httpx
ASGITransport), signed exactly as each platform signs, with the hub's default runner (the
installed connectors, found through entry points). The WeChat codes are exchanged against a
running WeChat fake on loopback.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from connectors.pos.fake import signed_push
from connectors.pos.harness import BRAND_SCOPE, WEBHOOK_SECRET
from connectors.pos.render import sale_ticket
from connectors.testing.world import Line, Person, World, WorldOrder
from connectors.tmall.fake import TmallFake
from connectors.tmall.harness import TmallHarness
from connectors.wechat.fake import WechatFake
from connectors.wechat.harness import CALLBACK_TOKEN, OPEN_PLATFORM_ID, WechatHarness
from gateway import ledger, members
from gateway.app import create_app
from gateway.hub import Hub
from gateway.settings import Settings
from gateway.storage.db import Database
from gateway.storage.tables import Identity, Member
from gateway.sync import Identifier, OrderLineRecord, OrderRecord, connections
from gateway.sync.webhooks import HubPushContext
from gateway.tenants import TenantInfo
from tests.conftest import TEST_SECRET
from tests.graphql_client import COUNTED_TABLES

M: Any = Member.__table__  # type: ignore[attr-defined]
ID: Any = Identity.__table__  # type: ignore[attr-defined]
TMALL = TmallHarness()
WECHAT = WechatHarness()
NOW = datetime.now(UTC).replace(microsecond=0)

P = Person(
    index=7,
    phone="13812345678",
    name="王伟",
    birthday=None,
    city="上海",
    channels=("tmall", "wechat", "pos"),
    seed=2024,
)
# Two gift givers and a person who later shops with the number they sent parcels to.
Q_XID, R_XID = "xid-q-0001", "xid-r-0002"
GIFT_PHONE = "13987654321"
T = Person(
    index=8,
    phone=GIFT_PHONE,
    name="李娜",
    birthday=None,
    city="杭州",
    channels=("pos",),
    seed=2024,
)


def pos_order(person: Person, receipt: str, unit_fen: int = 16_800) -> WorldOrder:
    at = NOW - timedelta(hours=1)
    return WorldOrder(
        channel="pos",
        external_id=receipt,
        person=person,
        created=at,
        modified=at,
        status="completed",
        lines=[Line("TEA-LJ-250", "龙井 250g", "tea", 1, unit_fen)],
        paid_at=at,
        receiver_phone=person.phone,
        store_code="SH001",
        guide_code="G001",
    )


@dataclass
class Env:
    hub: Hub
    client: httpx.AsyncClient
    a: TenantInfo
    b: TenantInfo
    tmall: TmallFake
    wechat: WechatFake

    @property
    def key(self) -> bytes:
        return self.hub.tenant_key(self.a.id)

    def url(self, channel: str, hook: str, tenant: TenantInfo | str | None = None) -> str:
        ref = tenant.slug if isinstance(tenant, TenantInfo) else tenant or self.a.slug
        return f"/channels/{ref}/{channel}/hooks/{hook}"

    # -- the three platforms -------------------------------------------------------------------

    async def tmall_spi(
        self,
        hook: str,
        body: dict[str, Any],
        *,
        secret: str | None = None,
        tenant: TenantInfo | str | None = None,
        channel: str = "tmall",
    ) -> httpx.Response:
        method = {"member_bind": "tmall.mei.crm.bind", "member_query": "tmall.mei.crm.member.query"}
        req = self.tmall.spi_request(
            body, method=method.get(hook, "tmall.mei.crm.member.register"), secret=secret
        )
        return await self.client.post(
            self.url(channel, hook, tenant),
            params=dict(req.query),
            content=req.body,
            headers=dict(req.headers),
        )

    async def wechat_login(
        self, body: dict[str, Any], tenant: TenantInfo | str | None = None
    ) -> httpx.Response:
        return await self.client.post(
            self.url("wechat", "login", tenant),
            content=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )

    async def pos_push(
        self,
        ticket: dict[str, Any],
        *,
        secret: str = WEBHOOK_SECRET,
        tenant: TenantInfo | str | None = None,
        channel: str = "pos",
        hook: str = "tickets",
    ) -> httpx.Response:
        body, headers = signed_push(ticket, secret)
        return await self.client.post(
            self.url(channel, hook, tenant), content=body, headers=headers
        )

    # -- reading the database ------------------------------------------------------------------

    async def counts(self, tenant: TenantInfo | None = None) -> dict[str, int]:
        tenant = tenant or self.a
        out = {}
        async with self.hub.db.tenant_tx(tenant.id, write=False) as tx:
            for name, table in {**COUNTED_TABLES, "identities": ID}.items():
                out[name] = (
                    await tx.conn.execute(
                        select(func.count())
                        .select_from(table)
                        .where(table.c.tenant_id == tenant.id)
                    )
                ).scalar_one()
            out["active_members"] = (
                await tx.conn.execute(
                    select(func.count())
                    .select_from(M)
                    .where(M.c.tenant_id == tenant.id, M.c.status == "active")
                )
            ).scalar_one()
        return out

    async def find(self, kind: str, scope: str | None, value: str) -> uuid.UUID | None:
        async with self.hub.db.tenant_tx(self.a.id, write=False) as tx:
            return await members.find_by_identifier(tx, kind, scope, value, key=self.key)

    async def points(self, member_id: uuid.UUID) -> int:
        async with self.hub.db.tenant_tx(self.a.id, write=False) as tx:
            view = (await ledger.balances_for(tx, [member_id])).get((member_id, "points"))
        return int(view.available) if view is not None else 0


async def configure_channels(
    hub: Hub, tenant: TenantInfo, tmall: TmallFake, wx: WechatFake
) -> None:
    registry = hub.sync.registry
    channels = {
        "tmall": ("tmall", TMALL.config(tmall)),
        "wechat": ("wechat", WECHAT.config(wx)),
        "pos": ("pos", {"brand_scope": BRAND_SCOPE, "webhook_secret": WEBHOOK_SECRET}),
    }
    async with hub.db.tenant_tx(tenant.id) as tx:
        for channel, (connector, config) in channels.items():
            await connections.configure(
                tx,
                channel=channel,
                connector=connector,
                config=config,
                registry=registry,
                master=hub.settings.secret_key,
            )


@pytest.fixture
async def env(
    db: Database, database_url: str, tenant: TenantInfo, other_tenant: TenantInfo
) -> AsyncIterator[Env]:
    world = World.generate(seed=5, people=3, orders=0, channels=("tmall", "wechat", "pos"))
    hub = Hub(Settings(database_url=database_url, secret_key=TEST_SECRET), db)
    tmall = TmallFake(world)
    tmall.port = 1  # never called: it only signs the SPI callbacks Tmall sends us
    async with WechatFake(world) as wx:
        await configure_channels(hub, tenant, tmall, wx)
        app = create_app(hub=hub)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Env(hub, client, tenant, other_tenant, tmall, wx)


def tmall_body(person: Person) -> dict[str, Any]:
    return {
        "omid": person.tmall_omid,
        "ouid": person.tmall_ouid,
        "mobile": person.phone,
        "nick": "t**7",
        "seller_name": "茶小铺",
    }


async def arrive_everywhere(env: Env) -> dict[str, Any]:
    """P binds on Tmall, logs into the mini-program, buys in a store. Returns the answers."""
    bind = await env.tmall_spi("member_bind", tmall_body(P))
    assert bind.status_code == 200, bind.text
    assert bind.json()["query_code"] == "SUC", bind.json()

    js_code, phone_code = env.wechat.issue_login_code(P), env.wechat.issue_phone_code(P)
    login = await env.wechat_login({"js_code": js_code, "phone_code": phone_code})
    assert login.status_code == 200, login.text

    ticket = sale_ticket(pos_order(P, "R990000000001"))
    assert ticket["memberPhone"] == P.phone and ticket["memberCardNo"] == P.pos_card
    sale = await env.pos_push(ticket)
    assert sale.status_code == 200, sale.text
    assert sale.json()["ok"] is True
    return {
        "bind": bind.json(),
        "login": login.json(),
        "login_codes": (js_code, phone_code),
        "ticket": ticket,
        "sale": sale.json(),
    }


async def test_one_person_via_tmall_wechat_and_pos_is_one_member(env: Env) -> None:
    before = await env.counts()
    answers = await arrive_everywhere(env)

    ids = {
        "tmall_omid": await env.find("tmall_omid", None, P.tmall_omid),
        "tmall_ouid": await env.find("tmall_ouid", TMALL.shop_id, P.tmall_ouid),
        "wechat_unionid": await env.find("wechat_unionid", OPEN_PLATFORM_ID, P.wechat_unionid),
        "wechat_openid": await env.find("wechat_openid", env.wechat.appid, P.wechat_openid),
        "pos_card": await env.find("pos_card", BRAND_SCOPE, P.pos_card),
        "phone": await env.find("phone", None, P.phone),
        "phone_e164": await env.find("phone", None, "+86" + P.phone),
    }
    assert None not in ids.values(), ids
    assert len(set(ids.values())) == 1, ids
    member_id = ids["phone"]
    assert member_id is not None
    assert answers["login"]["member_id"] == str(member_id)
    assert answers["login"]["openid"] == P.wechat_openid
    assert "session_key" not in answers["login"]
    assert json.loads(answers["bind"]["member"]["extend"]) == {"card_no": str(member_id)}

    async with env.hub.db.tenant_tx(env.a.id, write=False) as tx:
        idents = (await members.identities_for(tx, [member_id]))[member_id]
    kinds = {i.kind for i in idents}
    assert {
        "tmall_omid",
        "tmall_ouid",
        "wechat_unionid",
        "wechat_openid",
        "phone",
        "pos_card",
    } <= kinds, kinds
    assert {i.channel for i in idents} == {"tmall", "wechat", "pos"}

    after = await env.counts()
    assert after["members"] - before["members"] == 1  # never created twice, so never merged
    assert after["active_members"] == 1 and after["merges"] == 0
    assert after["orders"] == 1

    # The store sale earned 1 point per yuan, and Tmall's member query sees that balance.
    assert await env.points(member_id) == 168
    for body in ({"mobile": P.phone}, {"omid": P.tmall_omid}, {"ouid": P.tmall_ouid}):
        query = await env.tmall_spi("member_query", body)
        assert query.status_code == 200
        answer = query.json()
        assert answer["query_code"] == "SUC", answer
        assert answer["member"]["point"] == "168"
        assert json.loads(answer["member"]["extend"]) == {"card_no": str(member_id)}
    unknown = await env.tmall_spi("member_query", {"mobile": "13900000000"})
    assert unknown.json()["query_code"] == "E01"
    async with env.hub.db.tenant_tx(env.a.id, write=False) as tx:
        assert await ledger.verify(tx) == []


async def test_every_push_replayed_changes_nothing(env: Env) -> None:
    first = await arrive_everywhere(env)
    member_id = await env.find("phone", None, P.phone)
    assert member_id is not None
    settled = await env.counts()

    for _ in range(2):
        # Tmall retries the bind (a fresh signature each time, same member).
        again = await env.tmall_spi("member_bind", tmall_body(P))
        assert again.json()["query_code"] == "SUC"
        assert json.loads(again.json()["member"]["extend"]) == {"card_no": str(member_id)}
        # The same login codes again: WeChat refuses used codes; nothing is written.
        js_code, phone_code = first["login_codes"]
        used = await env.wechat_login({"js_code": js_code, "phone_code": phone_code})
        assert used.status_code == 400 and used.json()["error"] == "invalid_code"
        # A new login by the same person: the same member.
        fresh = await env.wechat_login(
            {
                "js_code": env.wechat.issue_login_code(P),
                "phone_code": env.wechat.issue_phone_code(P),
            }
        )
        assert fresh.status_code == 200 and fresh.json()["member_id"] == str(member_id)
        # The POS middleware delivers the same receipt again (at least once delivery).
        repeat = await env.pos_push(first["ticket"])
        assert repeat.status_code == 200, repeat.text
        assert {r["action"] for r in repeat.json()["records"]} == {"unchanged"}
        assert await env.counts() == settled
        assert await env.points(member_id) == 168

    # A byte-identical replay of a signed Tmall callback (inside TOP's window) is harmless too.
    req = env.tmall.spi_request(tmall_body(P), method="tmall.mei.crm.bind")
    for _ in range(2):
        resp = await env.client.post(
            env.url("tmall", "member_bind"),
            params=dict(req.query),
            content=req.body,
            headers=dict(req.headers),
        )
        assert resp.json()["query_code"] == "SUC"
    assert await env.counts() == settled


def jd_gift(order_id: str, xid: str, receiver: str) -> OrderRecord:
    at = NOW - timedelta(hours=2)
    return OrderRecord(
        external_id=order_id,
        status="paid",
        placed_at=at,
        paid_at=at,
        updated_at=at,
        total_fen=9_900,
        paid_fen=9_900,
        lines=(OrderLineRecord("TEA-BL-100", "白茶 100g", 1, 9_900, 9_900),),
        buyer=(Identifier("jd_xid", "vender-1", xid), Identifier("receiver_phone", "jd", receiver)),
    )


async def test_a_receiver_phone_never_merges_with_the_numbers_real_owner(env: Env) -> None:
    """Q sends parcels to P's number and to a friend's; P owns the number as a real phone, the
    friend (T) later becomes a member in a store. Nobody is merged, nothing moves, and nobody's
    order or points land on P or T."""
    await arrive_everywhere(env)
    p_id = await env.find("phone", None, P.phone)
    jd = HubPushContext(env.hub, env.a.id, "jd")
    out = await jd.apply(
        [jd_gift("3100000001", Q_XID, P.phone), jd_gift("3100000003", Q_XID, GIFT_PHONE)]
    )
    assert [o.action for o in out] == ["created"] * 2, out
    q_id = await env.find("jd_xid", "vender-1", Q_XID)
    assert q_id is not None and q_id != p_id
    assert [o.member_id for o in out] == [q_id, q_id]
    assert await env.find("phone", None, P.phone) == p_id  # P still owns the real phone
    assert await env.find("receiver_phone", "jd", P.phone) == q_id  # the gift stays a fact of Q
    assert await env.points(p_id) == 168  # the gifts earned nothing for P

    # The friend shops in a store as a member with the number Q sent parcels to: a new person.
    sale = await env.pos_push(sale_ticket(pos_order(T, "R990000000002", unit_fen=9_900)))
    assert sale.status_code == 200, sale.text
    t_id = await env.find("phone", None, GIFT_PHONE)
    assert t_id is not None and t_id not in {p_id, q_id}

    counts = await env.counts()
    assert counts["active_members"] == 3 and counts["merges"] == 0
    assert await env.points(q_id) == 2 * 99
    assert await env.points(t_id) == 99


async def test_two_buyers_sharing_a_receiver_phone_stay_two_members(env: Env) -> None:
    """Q and R (different JD accounts, so different strong ids) both ship to the same number:
    still two members, each with their own order and points."""
    await arrive_everywhere(env)
    p_id = await env.find("phone", None, P.phone)
    jd = HubPushContext(env.hub, env.a.id, "jd")
    out = await jd.apply(
        [jd_gift("3100000002", Q_XID, GIFT_PHONE), jd_gift("3100000004", R_XID, GIFT_PHONE)]
    )
    assert [o.action for o in out] == ["created"] * 2, out
    q_id = await env.find("jd_xid", "vender-1", Q_XID)
    r_id = await env.find("jd_xid", "vender-1", R_XID)
    assert q_id is not None and r_id is not None and p_id not in {q_id, r_id}
    assert q_id != r_id, (
        "R (a new jd_xid) was attached to Q only because both shipped to the same receiver phone"
    )
    assert [o.member_id for o in out] == [q_id, r_id]
    counts = await env.counts()
    assert counts["active_members"] == 3 and counts["merges"] == 0
    assert await env.points(q_id) == 99 and await env.points(r_id) == 99


async def test_forged_pushes_are_refused_and_write_nothing(env: Env) -> None:
    await arrive_everywhere(env)
    settled = await env.counts()
    other = await env.counts(env.b)
    q = Person(9, "13711112222", "赵敏", None, "北京", ("tmall", "wechat", "pos"), 2024)

    # Tmall: wrong secret → the SPI's own failure code E05, with nothing read from the body.
    for hook in ("member_bind", "member_register", "member_query"):
        bad = await env.tmall_spi(hook, tmall_body(q), secret="not-the-app-secret")
        assert bad.status_code == 200
        assert bad.json()["query_code"] == "E05", bad.json()
    # ... and a body altered after signing.
    req = env.tmall.spi_request(tmall_body(q), method="tmall.mei.crm.bind")
    tampered = await env.client.post(
        env.url("tmall", "member_bind"),
        params=dict(req.query),
        content=req.body.replace(q.tmall_omid.encode(), P.tmall_omid.encode()),
        headers=dict(req.headers),
    )
    assert tampered.json()["query_code"] == "E05"

    # WeChat: the login's proof is the codes; a code WeChat never issued is refused.
    forged = await env.wechat_login({"js_code": "0forgedcode", "phone_code": "forged"})
    assert forged.status_code == 400 and forged.json()["error"] == "invalid_code"
    # The official-account callback signed with another token is refused (403, plain text).
    ts = str(int(time.time()))
    xml = env.wechat.event_xml("user_get_card", q, NOW)
    bad_event = env.wechat.event_request("someOtherToken", xml, timestamp=ts)
    resp = await env.client.post(
        env.url("wechat", "events"),
        params=dict(bad_event.query),
        content=bad_event.body,
        headers=dict(bad_event.headers),
    )
    assert resp.status_code == 403 and resp.text == "invalid signature"

    # POS: wrong secret, tampered body, stale timestamp → 401 {"ok": false}.
    ticket = sale_ticket(pos_order(q, "R990000000009"))
    wrong = await env.pos_push(ticket, secret="whsec-somebody-else-000")
    assert wrong.status_code == 401 and wrong.json()["ok"] is False
    body, headers = signed_push(ticket, WEBHOOK_SECRET)
    altered = await env.client.post(
        env.url("pos", "tickets"),
        content=body.replace(b"R990000000009", b"R990000000008"),
        headers=headers,
    )
    assert altered.status_code == 401 and altered.json()["ok"] is False
    body, headers = signed_push(ticket, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600)
    stale = await env.client.post(env.url("pos", "tickets"), content=body, headers=headers)
    assert stale.status_code == 401

    assert await env.counts() == settled
    assert await env.counts(env.b) == other
    assert await env.find("phone", None, q.phone) is None

    # The same WeChat event signed with the configured token is accepted: the refusal above
    # was the signature, nothing else.
    good_event = env.wechat.event_request(CALLBACK_TOKEN, xml, timestamp=ts)
    resp = await env.client.post(
        env.url("wechat", "events"),
        params=dict(good_event.query),
        content=good_event.body,
        headers=dict(good_event.headers),
    )
    assert resp.status_code == 200 and resp.text == "success"
    assert await env.find("wechat_unionid", OPEN_PLATFORM_ID, q.wechat_unionid) is not None


async def test_unknown_tenant_channel_or_hook_is_404_and_writes_nothing(env: Env) -> None:
    settled = await env.counts()
    other = await env.counts(env.b)
    ticket = sale_ticket(pos_order(P, "R990000000005"))
    login = {
        "js_code": env.wechat.issue_login_code(P),
        "phone_code": env.wechat.issue_phone_code(P),
    }

    cases = [
        # unknown tenant
        await env.pos_push(ticket, tenant="no-such-brand"),
        await env.pos_push(ticket, tenant=str(uuid.uuid4())),
        await env.tmall_spi("member_bind", tmall_body(P), tenant="no-such-brand"),
        # unknown channel of a real tenant
        await env.pos_push(ticket, channel="pos2"),
        await env.tmall_spi("member_bind", tmall_body(P), channel="taobao"),
        # unknown hook of a real channel (and another connector's hook on this channel)
        await env.pos_push(ticket, hook="receipts"),
        await env.tmall_spi("member_unbind", tmall_body(P)),
        await env.pos_push(ticket, channel="tmall"),
        # another tenant's slug with this tenant's channel names
        await env.pos_push(ticket, tenant=env.b),
        await env.tmall_spi("member_bind", tmall_body(P), tenant=env.b),
        await env.wechat_login(login, tenant=env.b),
    ]
    for resp in cases:
        assert resp.status_code == 404, (resp.request.url, resp.text)
        assert resp.json() == {"error": "not found"}  # never says which part was wrong
    assert await env.counts() == settled
    assert await env.counts(env.b) == other

    # The other tenant configures the same channel names with its own secrets: our signatures
    # do not open its doors either.
    async with env.hub.db.tenant_tx(env.b.id) as tx:
        await connections.configure(
            tx,
            channel="pos",
            connector="pos",
            config={"brand_scope": "brand-b", "webhook_secret": "whsec-brand-b-0123456789"},
            registry=env.hub.sync.registry,
            master=env.hub.settings.secret_key,
        )
    refused = await env.pos_push(ticket, tenant=env.b)
    assert refused.status_code == 401
    assert await env.counts(env.b) == other
    assert await env.counts() == settled

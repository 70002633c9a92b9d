"""Signed webhooks: member events (the outbox) reach receivers on loopback that verify every
signature — in order per member, exactly once through failures, dead-lettered and replayable,
filtered by type, and never across tenants."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select, text

from gateway import members, orders
from gateway.events import record_event
from gateway.identifiers import tenant_key
from gateway.members import IdentifierInput
from gateway.orders import OrderInput, OrderLineInput
from gateway.rules import engine
from gateway.storage.db import Database
from gateway.storage.tables import MemberEvent
from gateway.sync import secrets as sealed
from gateway.tenants import TenantInfo
from gateway.webhooks import DeliveryPolicy, Dispatcher, dispatch, signing, subscriptions
from tests.conftest import TEST_SECRET
from tests.graphql_client import make_api

FAST = DeliveryPolicy(max_attempts=8, backoff_base=0.01, backoff_cap=0.02, timeout=5)
E: Any = MemberEvent.__table__  # type: ignore[attr-defined]


@dataclass
class Receiver:
    """An HTTP receiver that verifies signatures like a brand's would; ``fail`` decides (per
    request number) whether to answer 500."""

    secret: str = ""
    fail_first: int = 0
    always_fail: bool = False
    requests: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    bad_signatures: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests += 1
        try:
            signing.verify(self.secret, request.headers.get(signing.HEADER), body, time.time())
        except signing.SignatureError:
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.always_fail or self.requests <= self.fail_first:
            return web.Response(status=500, text="boom")
        self.accepted.append(json.loads(body))
        self.headers.append(dict(request.headers))
        return web.Response(status=204)


@asynccontextmanager
async def serve(receiver: Receiver) -> AsyncIterator[Receiver]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


async def new_member(db: Database, tenant: TenantInfo, card: str) -> uuid.UUID:
    async with db.tenant_tx(tenant.id) as tx:
        res = await members.ingest(
            tx,
            channel="pos",
            identifiers=[IdentifierInput("pos_card", "brand", card)],
            profile=None,
            key=tenant_key(TEST_SECRET, tenant.id),
        )
    return res.member_id


async def paid_order(db: Database, tenant: TenantInfo, member: uuid.UUID, ext: str) -> None:
    t0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
    lines = [OrderLineInput("SKU-1", "Tea", "drinks", 1, 3_000, 3_000)]
    inp = OrderInput("tmall", ext, member, "paid", lines, 3_000, 3_000, placed_at=t0, paid_at=t0)
    async with db.tenant_tx(tenant.id) as tx:
        await orders.record_order(tx, inp)


async def activity(db: Database, tenant: TenantInfo, member: uuid.UUID, n: int) -> uuid.UUID:
    event_id = uuid.uuid4()
    async with db.tenant_tx(tenant.id) as tx:
        await engine.record_and_process(
            tx,
            event_id=event_id,
            member_id=member,
            type="activity.checkin",
            payload={"n": n},
            occurred_at=datetime.now(UTC),
        )
    return event_id


async def subscribe(
    db: Database, tenant: TenantInfo, url: str, patterns: list[str]
) -> tuple[subscriptions.Subscription, str]:
    async with db.tenant_tx(tenant.id) as tx:
        return await subscriptions.create(tx, url=url, event_types=patterns, master=TEST_SECRET)


async def deliveries(
    db: Database, tenant: TenantInfo, sub_id: uuid.UUID
) -> list[dispatch.Delivery]:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        return await dispatch.list_deliveries(tx, sub_id, first=100)


async def events_of(db: Database, tenant: TenantInfo, types: tuple[str, ...]) -> list[Any]:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        return (
            await tx.conn.execute(
                select(E.c.id, E.c.member_id, E.c.type)
                .where(E.c.tenant_id == tenant.id, E.c.type.in_(types))
                .order_by(E.c.created_at, E.c.id)
            )
        ).all()


async def drain(
    dispatcher: Dispatcher, tenants: list[TenantInfo], until: Any, passes: int = 100
) -> None:
    for _ in range(passes):
        await dispatcher.run_once([t.id for t in tenants])
        if await until():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("webhooks did not settle")


async def test_events_from_real_paths_arrive_signed_and_the_secret_is_sealed(
    db: Database, tenant: TenantInfo
) -> None:
    async with serve(Receiver()) as rx, aiohttp.ClientSession() as session:
        before = await new_member(db, tenant, "early")
        await paid_order(db, tenant, before, "T-early")  # before the subscription: not sent
        sub, secret = await subscribe(db, tenant, rx.url, ["order.paid", "activity.*"])
        rx.secret = secret
        assert secret.startswith("whsec_")

        m = await new_member(db, tenant, "C1")
        await paid_order(db, tenant, m, "T-1")
        checkin = await activity(db, tenant, m, 1)
        await paid_order(db, tenant, m, "T-2")
        await paid_order(db, tenant, m, "T-2")  # an idempotent replay records no new event

        stats = await Dispatcher(db, TEST_SECRET, FAST, session).run_once([tenant.id])
        assert (stats.fanned_out, stats.delivered, stats.failed) == (3, 3, 0)
        assert rx.bad_signatures == 0
        assert [b["type"] for b in rx.accepted] == ["order.paid", "activity.checkin", "order.paid"]
        body = rx.accepted[1]
        assert set(body) == {"id", "type", "occurred_at", "member_id", "tenant", "payload"}
        assert (body["id"], body["member_id"], body["tenant"], body["payload"]) == (
            str(checkin),
            str(m),
            str(tenant.id),
            {"n": 1},
        )
        assert all(b["member_id"] == str(m) for b in rx.accepted)
        rows = {d.event_id: d for d in await deliveries(db, tenant, sub.id)}
        for h, b in zip(rx.headers, rx.accepted, strict=True):
            d = rows[uuid.UUID(b["id"])]
            assert h[signing.EVENT_HEADER] == b["type"]
            assert h[signing.DELIVERY_HEADER] == str(d.id)
            assert (d.status, d.attempts, d.last_status) == ("delivered", 1, 204)

        # Nothing new: a second pass sends nothing.
        again = await Dispatcher(db, TEST_SECRET, FAST, session).run_once([tenant.id])
        assert (again.fanned_out, again.delivered) == (0, 0) and len(rx.accepted) == 3

    # The signing secret is stored sealed (Fernet, tenant key), never in plain text.
    async with db.tenant_tx(tenant.id, write=False) as tx:
        # The tenant filter matters on SQLite (no row-level security): other tests' tenants
        # share the session database.
        stored = (
            await tx.conn.execute(
                text("SELECT secret FROM webhook_subscription WHERE tenant_id = :t"),
                {"t": tenant.id.hex if db.dialect == "sqlite" else tenant.id},
            )
        ).scalar_one()
    assert secret not in stored and secret.removeprefix("whsec_") not in stored
    assert sealed.unseal(TEST_SECRET, tenant.id, stored) == {"signing_secret": secret}


async def test_a_receiver_failing_three_times_gets_every_event_once_in_order(
    db: Database, tenant: TenantInfo
) -> None:
    async with serve(Receiver(fail_first=3)) as rx, aiohttp.ClientSession() as session:
        sub, rx.secret = await subscribe(db, tenant, rx.url, ["order.*", "activity.*"])
        people = [await new_member(db, tenant, f"P{i}") for i in range(3)]
        for round_ in range(3):
            for i, m in enumerate(people):
                if (round_ + i) % 2:
                    await activity(db, tenant, m, round_)
                else:
                    await paid_order(db, tenant, m, f"O-{i}-{round_}")
        expected = await events_of(db, tenant, ("order.paid", "activity.checkin"))
        assert len(expected) == 9

        dispatcher = Dispatcher(db, TEST_SECRET, FAST, session)

        async def all_delivered() -> bool:
            return all(d.status == "delivered" for d in await deliveries(db, tenant, sub.id))

        await drain(dispatcher, [tenant], all_delivered)

    assert rx.bad_signatures == 0 and rx.requests == 9 + 3
    got = [uuid.UUID(b["id"]) for b in rx.accepted]
    assert sorted(got) == sorted(e.id for e in expected)  # every event, exactly once
    for m in people:
        mine = [e.id for e in expected if e.member_id == m]
        assert [uuid.UUID(b["id"]) for b in rx.accepted if b["member_id"] == str(m)] == mine
    rows = await deliveries(db, tenant, sub.id)
    assert sum(d.attempts for d in rows) == 9 + 3
    assert all(d.last_error is None and d.delivered_at is not None for d in rows)


async def test_a_dead_receiver_dead_letters_and_replay_redelivers(
    db: Database, tenant: TenantInfo
) -> None:
    policy = DeliveryPolicy(max_attempts=3, backoff_base=0.01, backoff_cap=0.02, timeout=5)
    async with serve(Receiver(always_fail=True)) as rx, aiohttp.ClientSession() as session:
        sub, rx.secret = await subscribe(db, tenant, rx.url, ["order.paid"])
        m = await new_member(db, tenant, "D1")
        await paid_order(db, tenant, m, "D-1")
        await paid_order(db, tenant, m, "D-2")
        dispatcher = Dispatcher(db, TEST_SECRET, policy, session)

        async def all_dead() -> bool:
            rows = await deliveries(db, tenant, sub.id)
            return len(rows) == 2 and all(d.status == "dead" for d in rows)

        await drain(dispatcher, [tenant], all_dead)
        rows = await deliveries(db, tenant, sub.id)
        assert all((d.attempts, d.last_status, d.last_error) == (3, 500, "HTTP 500") for d in rows)
        # Dead letters do not block the member's later events.
        assert rx.requests == 6 and not rx.accepted

        rx.always_fail = False
        async with db.tenant_tx(tenant.id) as tx:
            only_first = await dispatch.replay(tx, sub.id, event_ids=[rows[-1].event_id])
        assert only_first == 1
        await dispatcher.run_once([tenant.id])
        assert [b["id"] for b in rx.accepted] == [str(rows[-1].event_id)]

        async with db.tenant_tx(tenant.id) as tx:
            n = await dispatch.replay(tx, sub.id, since=datetime.now(UTC) - timedelta(hours=1))
        assert n == 2  # the dead one and the one just delivered: a fresh cycle for both
        await dispatcher.run_once([tenant.id])
        assert [b["id"] for b in rx.accepted[1:]] == [str(d.event_id) for d in reversed(rows)]
        final = await deliveries(db, tenant, sub.id)
        assert all((d.status, d.attempts) == ("delivered", 1) for d in final)


async def test_type_filters_and_prefixes(db: Database, tenant: TenantInfo) -> None:
    assert subscriptions.matches(["tier.*"], "tier.changed")
    assert not subscriptions.matches(["tier.*"], "tiers.changed")
    assert not subscriptions.matches(["tier.*"], "tier")
    assert subscriptions.matches(["*"], "anything.at.all")
    for bad in ([], ["Tier.*"], ["tier.**"], ["*.paid"], ["order paid"], [""]):
        with pytest.raises(subscriptions.InvalidInput):
            subscriptions.check_patterns(bad)
    with pytest.raises(subscriptions.InvalidInput):
        subscriptions.check_url("ftp://example.com/hook")

    async with serve(Receiver()) as rx, aiohttp.ClientSession() as session:
        _, rx.secret = await subscribe(db, tenant, rx.url, ["tier.*", "order.paid"])
        m = await new_member(db, tenant, "F1")
        now = datetime.now(UTC)
        async with db.tenant_tx(tenant.id) as tx:
            for t in ("tier.changed", "tiers.changed", "order.paid", "order.refunded", "tier.kept"):
                await record_event(
                    tx, event_id=uuid.uuid4(), member_id=m, type=t, payload={}, occurred_at=now
                )
        await Dispatcher(db, TEST_SECRET, FAST, session).run_once([tenant.id])
    assert [b["type"] for b in rx.accepted] == ["tier.changed", "order.paid", "tier.kept"]


async def test_tenants_never_see_each_others_events_or_deliveries(
    db: Database, database_url: str, tenant: TenantInfo, other_tenant: TenantInfo
) -> None:
    create = """mutation($i: CreateWebhookSubscriptionInput!) {
      createWebhookSubscription(input: $i) { __typename
        ... on CreateWebhookSubscriptionPayload { secret subscription { id url eventTypes active } }
        ... on Error { code message } } }"""
    listing = "{ webhookSubscriptions { id url } }"
    delivered = """query($s: ID!, $st: WebhookDeliveryStatus) {
      webhookDeliveries(subscriptionId: $s, status: $st, first: 10) {
        edges { cursor node { eventId eventType status attempts lastError deliveredAt } }
        pageInfo { hasNextPage } } }"""
    replay = """mutation($i: ReplayWebhookDeliveriesInput!) { replayWebhookDeliveries(input: $i) {
      __typename ... on ReplayWebhookDeliveriesPayload { replayed } ... on Error { code } } }"""
    async with (
        make_api(db, database_url, tenant, other_tenant) as api,
        serve(Receiver()) as rx_a,
        serve(Receiver()) as rx_b,
        aiohttp.ClientSession() as session,
    ):
        a = (await api.gql("admin", create, {"i": {"url": rx_a.url, "eventTypes": ["*"]}}))["data"][
            "createWebhookSubscription"
        ]
        b = (await api.gql("b_admin", create, {"i": {"url": rx_b.url, "eventTypes": ["*"]}}))[
            "data"
        ]["createWebhookSubscription"]
        assert a["__typename"] == b["__typename"] == "CreateWebhookSubscriptionPayload"
        rx_a.secret, rx_b.secret = a["secret"], b["secret"]
        denied = await api.gql("read", listing, errors=True)
        assert denied["data"] is None or not denied["data"].get("webhookSubscriptions")

        m = await new_member(db, tenant, "I1")
        await paid_order(db, tenant, m, "I-1")
        await Dispatcher(db, TEST_SECRET, FAST, session).run_once()  # every tenant
        sent = len(rx_a.accepted)
        assert "order.paid" in {x["type"] for x in rx_a.accepted} and rx_a.bad_signatures == 0
        assert rx_b.accepted == [] and rx_b.requests == 0
        assert all(x["tenant"] == str(tenant.id) for x in rx_a.accepted)

        subs_b = (await api.gql("b_admin", listing))["data"]["webhookSubscriptions"]
        assert [s["id"] for s in subs_b] == [b["subscription"]["id"]]
        sid = a["subscription"]["id"]
        mine = (await api.gql("admin", delivered, {"s": sid, "st": "DELIVERED"}))["data"]
        assert len(mine["webhookDeliveries"]["edges"]) == sent
        assert all(e["node"]["attempts"] == 1 for e in mine["webhookDeliveries"]["edges"])
        theirs = (await api.gql("b_admin", delivered, {"s": sid}))["data"]
        assert theirs["webhookDeliveries"]["edges"] == []
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        b_replay = await api.gql("b_admin", replay, {"i": {"subscriptionId": sid, "since": since}})
        assert b_replay["data"]["replayWebhookDeliveries"]["__typename"] == "NotFoundError"
        a_replay = await api.gql("admin", replay, {"i": {"subscriptionId": sid, "since": since}})
        assert a_replay["data"]["replayWebhookDeliveries"]["replayed"] == sent

    # The second wall: tenant B's transaction cannot even count A's rows.
    async with db.tenant_tx(other_tenant.id, write=False) as tx:
        n = (
            await tx.conn.execute(
                text("SELECT count(*) FROM webhook_delivery WHERE tenant_id = :t"),
                {"t": tenant.id.hex if db.dialect == "sqlite" else tenant.id},
            )
        ).scalar_one()
    assert n == 0 or db.dialect == "sqlite"


def test_receivers_detect_tampered_or_forged_webhooks() -> None:
    secret = signing.new_secret()
    body = b'{"id":"e1","type":"order.paid"}'
    now = 1_767_225_600
    header = signing.sign(secret, body, now)
    assert signing.verify(secret, header, body, now + 10) == now
    for bad_body, key, at, hdr in (
        (body.replace(b"paid", b"refunded"), secret, now, header),  # tampered body
        (body, signing.new_secret(), now, header),  # another secret
        (body, secret, now + 3600, header),  # stale
        (body, secret, now, None),  # missing
        (body, secret, now, "v1=abc"),  # malformed
        (body, secret, now, header.replace("t=", "t=1")),  # timestamp changed
    ):
        with pytest.raises(signing.SignatureError):
            signing.verify(key, hdr, bad_body, at)

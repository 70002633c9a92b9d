"""The #5 event catalogue from the ledger and ONE ID: ``points.changed`` on every balance change
(with the right delta and balance after it, none on idempotent replays), ``member.merged`` /
``member.unmerged`` on manual and automatic merges — and they reach webhook receivers once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from sqlalchemy import select

from gateway import ledger, members, orders
from gateway.identifiers import tenant_key
from gateway.ledger.events import event_id as points_event_id
from gateway.members import IdentifierInput
from gateway.orders import OrderInput, OrderLineInput
from gateway.rules.hookspecs import EVENT_TYPES
from gateway.storage.db import Database
from gateway.storage.tables import MemberEvent
from gateway.tenants import TenantInfo
from gateway.webhooks import Dispatcher
from tests.conftest import TEST_SECRET
from tests.test_webhooks import FAST, Receiver, serve, subscribe

E: Any = MemberEvent.__table__  # type: ignore[attr-defined]
T0 = datetime(2026, 4, 1, 2, tzinfo=UTC)
CATALOGUE = {t.name: set(t.payload) for t in EVENT_TYPES}


async def events(db: Database, tenant: TenantInfo, type_: str) -> list[Any]:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        return list(
            (
                await tx.conn.execute(
                    select(E.c.id, E.c.member_id, E.c.payload, E.c.occurred_at)
                    .where(E.c.tenant_id == tenant.id, E.c.type == type_)
                    .order_by(E.c.created_at, E.c.id)
                )
            ).all()
        )


async def changes(db: Database, tenant: TenantInfo, member: uuid.UUID) -> list[tuple[Any, ...]]:
    """The member's points.changed events as (account, delta, available, kind)."""
    out = []
    for e in await events(db, tenant, "points.changed"):
        assert set(e.payload) == CATALOGUE["points.changed"]
        if e.member_id == member:
            p = e.payload
            out.append((p["account"], p["delta"], p["available"], p["kind"]))
    return out


async def join(
    db: Database, tenant: TenantInfo, *cards: str, now: datetime = T0
) -> members.IngestResult:
    async with db.tenant_tx(tenant.id) as tx:
        return await members.ingest(
            tx,
            channel="pos",
            identifiers=[IdentifierInput("pos_card", "brand", c) for c in cards],
            key=tenant_key(TEST_SECRET, tenant.id),
            now=now,
        )


async def test_every_ledger_write_emits_points_changed_once(
    db: Database, tenant: TenantInfo
) -> None:
    m = uuid.uuid4()
    seen: list[tuple[Any, ...]] = []

    async def step(expected: tuple[Any, ...] | None, write: Any) -> Any:
        """Run ``write`` twice (the second is an idempotent replay): one new event at most."""
        async with db.tenant_tx(tenant.id) as tx:
            first = await write(tx)
        async with db.tenant_tx(tenant.id) as tx:
            await write(tx)
        if expected is not None:
            seen.append(expected)
        assert await changes(db, tenant, m) == seen
        return first

    def credit(amount: int, key: str, **kw: Any) -> Any:
        kw.setdefault("now", T0)
        return lambda tx: ledger.credit(
            tx, member_id=m, account="points", amount=amount, reason="r", source="t",
            idem_key=key, **kw,
        )  # fmt: skip

    def debit(amount: int, key: str, **kw: Any) -> Any:
        return lambda tx: ledger.debit(
            tx, member_id=m, account="points", amount=amount, reason="r", source="t",
            idem_key=key, now=T0, **kw,
        )  # fmt: skip

    earned = await step(("points", 100, 100, "earn"), credit(100, "c1"))
    await step(("points", 7, 107, "adjust"), credit(7, "c2", kind="adjust"))
    await step(("points", -30, 77, "spend"), debit(30, "d1"))
    hold = await step(
        ("points", -20, 57, "hold"),
        lambda tx: ledger.hold(
            tx, member_id=m, account="points", amount=20, ttl_seconds=600, reason="pos",
            idem_key="h1", now=T0,
        ),
    )  # fmt: skip
    _, captured = await step(
        ("points", 5, 62, "capture"),  # 15 of the 20 spent, 5 back to available
        lambda tx: ledger.capture(
            tx, hold_id=hold.id, amount=15, reason="tea", idem_key="k1", now=T0
        ),
    )
    hold2 = await step(
        ("points", -10, 52, "hold"),
        lambda tx: ledger.hold(
            tx, member_id=m, account="points", amount=10, ttl_seconds=600, reason="pos",
            idem_key="h2", now=T0,
        ),
    )  # fmt: skip
    await step(
        ("points", 10, 62, "release"),
        lambda tx: ledger.release(tx, hold_id=hold2.id, reason="undo", idem_key="r2", now=T0),
    )
    # A refund reversal that finds less than it wants takes what is there...
    await step(
        ("points", -62, 0, "reversal"),
        debit(1_000, "rev1", kind="reversal", allow_shortfall=True),
    )
    # ... and one that finds nothing moves nothing, so it announces nothing.
    await step(None, debit(5, "rev2", kind="reversal", allow_shortfall=True))

    # The event names its transfer (or hold) and derives its id from it.
    rows = await events(db, tenant, "points.changed")
    by_transfer = {e.payload["transfer_id"]: e for e in rows}
    assert by_transfer[str(earned.id)].id == points_event_id(tenant.id, earned.id, "earn")
    assert by_transfer[str(captured.id)].payload["kind"] == "capture"
    assert by_transfer[str(hold.id)].occurred_at == T0
    async with db.tenant_tx(tenant.id, write=False) as tx:
        assert await ledger.verify(tx) == []


async def test_expiry_emits_one_event_per_member_and_account_per_sweep(
    db: Database, tenant: TenantInfo
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    async with db.tenant_tx(tenant.id) as tx:
        for i, (m, amount) in enumerate(((a, 40), (a, 60), (a, 5), (b, 9))):
            expires = T0 + timedelta(days=1 if amount != 5 else 30)
            await ledger.credit(
                tx, member_id=m, account="points", amount=amount, reason="r", source="t",
                idem_key=f"e{i}", expires_at=expires, now=T0,
            )  # fmt: skip
        await ledger.hold(
            tx, member_id=a, account="points", amount=3, ttl_seconds=60, reason="pos",
            idem_key="h", now=T0,
        )  # fmt: skip
    before = len(await changes(db, tenant, a))
    async with db.tenant_tx(tenant.id) as tx:
        report = await ledger.expire_due(tx, now=T0 + timedelta(days=2))
    assert report.holds_expired == 1 and report.lots_expired == 3
    # The expired hold gives its 3 back first (to the lot soonest to expire, which then expires
    # too), then one event for all of the member's expired lots.
    assert (await changes(db, tenant, a))[before:] == [
        ("points", 3, 105, "hold_expired"),
        ("points", -100, 5, "expire"),
    ]
    assert (await changes(db, tenant, b))[-1] == ("points", -9, 0, "expire")
    async with db.tenant_tx(tenant.id) as tx:  # a second sweep finds nothing: no events
        await ledger.expire_due(tx, now=T0 + timedelta(days=2))
    assert len(await changes(db, tenant, a)) == before + 2


async def test_orders_earn_and_refunds_reverse_with_events(
    db: Database, tenant: TenantInfo
) -> None:
    m = (await join(db, tenant, "EARN-1")).member_id
    line = OrderLineInput("SKU-1", "Tea", "drinks", 1, 10_000, 10_000)
    inp = OrderInput("tmall", "E-1", m, "paid", [line], 10_000, 10_000, placed_at=T0, paid_at=T0)
    async with db.tenant_tx(tenant.id) as tx:
        order = await orders.record_order(tx, inp, now=T0)
    async with db.tenant_tx(tenant.id) as tx:
        await orders.record_order(tx, inp, now=T0)  # re-sent: earns nothing, announces nothing
    assert sorted(await changes(db, tenant, m)) == [
        ("growth", 100, 100, "earn"),
        ("points", 100, 100, "earn"),
    ]
    for _ in range(2):
        async with db.tenant_tx(tenant.id) as tx:
            await orders.refund_order(
                tx, order_id=order.order_id, refund_id="R1", amount_fen=2_500, now=T0
            )
    assert sorted((await changes(db, tenant, m))[2:]) == [
        ("growth", -25, 75, "reversal"),
        ("points", -25, 75, "reversal"),
    ]


async def test_merge_and_unmerge_record_events_and_move_points(
    db: Database, tenant: TenantInfo
) -> None:
    survivor = (await join(db, tenant, "S-1")).member_id
    loser = (await join(db, tenant, "L-1")).member_id
    async with db.tenant_tx(tenant.id) as tx:
        for m, amount in ((survivor, 10), (loser, 25)):
            await ledger.credit(
                tx, member_id=m, account="points", amount=amount, reason="r", source="t",
                idem_key=f"m{m}", now=T0,
            )  # fmt: skip
    async with db.tenant_tx(tenant.id) as tx:
        info = await members.merge(tx, survivor_id=survivor, loser_id=loser, reason="same person")
    merged = await events(db, tenant, "member.merged")
    assert [(e.member_id, e.payload) for e in merged] == [
        (survivor, {"merged_id": str(loser), "merge_id": str(info.id)})
    ]
    assert set(merged[0].payload) == CATALOGUE["member.merged"]
    assert (await changes(db, tenant, loser))[-1] == ("points", -25, 0, "merge_out")
    assert (await changes(db, tenant, survivor))[-1] == ("points", 25, 35, "merge_in")

    async with db.tenant_tx(tenant.id) as tx:
        await members.unmerge(tx, merge_id=info.id, reason="two people after all")
    unmerged = await events(db, tenant, "member.unmerged")
    assert [(e.member_id, e.payload) for e in unmerged] == [
        (survivor, {"restored_id": str(loser), "merge_id": str(info.id)})
    ]
    assert set(unmerged[0].payload) == CATALOGUE["member.unmerged"]
    assert (await changes(db, tenant, survivor))[-1] == ("points", -25, 10, "unmerge_out")
    assert (await changes(db, tenant, loser))[-1] == ("points", 25, 25, "unmerge_in")


async def test_an_automatic_merge_is_delivered_exactly_once_by_webhook(
    db: Database, tenant: TenantInfo
) -> None:
    async with serve(Receiver()) as rx, aiohttp.ClientSession() as session:
        _, rx.secret = await subscribe(db, tenant, rx.url, ["member.merged", "member.unmerged"])
        first = (await join(db, tenant, "A-1")).member_id
        second = (await join(db, tenant, "B-1", now=T0 + timedelta(hours=1))).member_id
        # One record naming both cards: ONE ID merges the younger member into the older.
        res = await join(db, tenant, "A-1", "B-1")
        assert res.member_id == first and res.merged_ids == [second]
        await join(db, tenant, "A-1", "B-1")  # the same record again: nothing new to merge
        dispatcher = Dispatcher(db, TEST_SECRET, FAST, session)
        await dispatcher.run_once([tenant.id])
        await dispatcher.run_once([tenant.id])
    assert rx.bad_signatures == 0
    assert [(b["type"], b["member_id"]) for b in rx.accepted] == [("member.merged", str(first))]
    assert rx.accepted[0]["payload"]["merged_id"] == str(second)
    async with db.tenant_tx(tenant.id, write=False) as tx:
        merges = await members.merges_for(tx, [first])
    assert rx.accepted[0]["payload"]["merge_id"] == str(merges[first][0].id)

"""Ledger behaviour on SQLite and PostgreSQL: lots, FIFO-by-expiry, holds, idempotency,
validation, reversal shortfall, expiry, merge/unmerge and tenant isolation."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from gateway import ledger
from gateway.errors import (
    HoldNotActive,
    IdempotencyKeyReused,
    InsufficientBalance,
    InvalidInput,
    NotFound,
)
from gateway.storage.db import Database
from gateway.storage.tables import LedgerAllocation, LedgerTransfer
from tests.conftest import new_tenant

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
T = LedgerTransfer.__table__  # type: ignore[attr-defined]
A = LedgerAllocation.__table__  # type: ignore[attr-defined]


def key() -> str:
    return uuid.uuid4().hex


async def earn(db: Database, tid: uuid.UUID, member: uuid.UUID, amount: int, **kw: Any) -> Any:
    kw.setdefault("now", T0)
    kw.setdefault("account", "points")
    async with db.tenant_tx(tid) as tx:
        return await ledger.credit(
            tx,
            member_id=member,
            amount=amount,
            reason="order paid",
            source="test",
            idem_key=kw.pop("idem_key", key()),
            **kw,
        )


async def spend(db: Database, tid: uuid.UUID, member: uuid.UUID, amount: int, **kw: Any) -> Any:
    kw.setdefault("now", T0)
    kw.setdefault("account", "points")
    async with db.tenant_tx(tid) as tx:
        return await ledger.debit(
            tx,
            member_id=member,
            amount=amount,
            reason="exchange",
            source="test",
            idem_key=kw.pop("idem_key", key()),
            **kw,
        )


async def balance(db: Database, tid: uuid.UUID, member: uuid.UUID, **kw: Any) -> ledger.BalanceView:
    kw.setdefault("now", T0)
    account = kw.pop("account", "points")
    async with db.tenant_tx(tid, write=False) as tx:
        views = await ledger.balances_for(tx, [member], **kw)
    return views.get((member, account), ledger.BalanceView(member, account, 0, 0, 0, None))


async def clean(db: Database, tid: uuid.UUID) -> None:
    async with db.tenant_tx(tid, write=False) as tx:
        assert await ledger.verify(tx) == []


async def lots_by_expiry(db: Database, tid: uuid.UUID, member: uuid.UUID) -> Counter[Any]:
    async with db.tenant_tx(tid, write=False) as tx:
        rows = await tx.conn.execute(
            select(T.c.account, T.c.expires_at, T.c.remaining).where(
                T.c.tenant_id == tid, T.c.member_id == member, T.c.remaining > 0
            )
        )
        out: Counter[Any] = Counter()
        for r in rows:
            out[(r.account, r.expires_at)] += r.remaining
        return out


async def count_transfers(db: Database, tid: uuid.UUID) -> int:
    async with db.tenant_tx(tid, write=False) as tx:
        stmt = select(func.count()).select_from(T).where(T.c.tenant_id == tid)
        return int((await tx.conn.execute(stmt)).scalar_one())


async def test_debit_draws_soonest_expiring_lots_first(db: Database) -> None:
    t = await new_tenant(db)
    m = uuid.uuid4()
    late = await earn(db, t.id, m, 100, expires_at=T0 + 300 * DAY)
    never = await earn(db, t.id, m, 50, expires_at=None)
    soon = await earn(db, t.id, m, 30, expires_at=T0 + 10 * DAY)
    spent = await spend(db, t.id, m, 60)
    assert spent.amount == -60 and spent.shortfall == 0 and not spent.replayed
    async with db.tenant_tx(t.id, write=False) as tx:
        rows = await tx.conn.execute(
            select(A.c.lot_id, A.c.amount).where(A.c.tenant_id == t.id, A.c.owner_id == spent.id)
        )
        drawn = {r.lot_id: r.amount for r in rows}
        lots = await ledger.get_transfers(tx, [late.id, never.id, soon.id])
    assert drawn == {soon.id: 30, late.id: 30}
    assert (lots[soon.id].remaining, lots[late.id].remaining, lots[never.id].remaining) == (
        0,
        70,
        50,
    )
    view = await balance(db, t.id, m)
    assert (view.available, view.held) == (120, 0)
    # Never-expiring lots are spent last.
    await spend(db, t.id, m, 80)
    async with db.tenant_tx(t.id, write=False) as tx:
        lots = await ledger.get_transfers(tx, [late.id, never.id])
    assert (lots[late.id].remaining, lots[never.id].remaining) == (0, 40)
    with pytest.raises(InsufficientBalance) as err:
        await spend(db, t.id, m, 41)
    assert (err.value.available, err.value.requested) == (40, 41)
    await clean(db, t.id)


async def test_points_default_expiry_follows_account_ttl(db: Database) -> None:
    t = await new_tenant(db)
    m = uuid.uuid4()
    points = await earn(db, t.id, m, 10)
    growth = await earn(db, t.id, m, 10, account="growth")
    ttl = ledger.ACCOUNTS["points"].default_ttl_days
    assert ttl and points.expires_at == T0 + ttl * DAY
    assert growth.expires_at is None
    # Members cannot spend growth, but a reversal can take it back.
    with pytest.raises(InvalidInput) as err:
        await spend(db, t.id, m, 1, account="growth")
    assert err.value.field == "account"
    await spend(db, t.id, m, 4, account="growth", kind="reversal")
    assert (await balance(db, t.id, m, account="growth")).available == 6


async def test_expired_lots_are_not_spendable_and_get_swept(db: Database) -> None:
    t = await new_tenant(db)
    m = uuid.uuid4()
    await earn(db, t.id, m, 100, expires_at=T0 + 10 * DAY)
    await earn(db, t.id, m, 20, expires_at=T0 + 40 * DAY)
    later = T0 + 11 * DAY
    view = await balance(db, t.id, m, now=later)
    assert (view.available, view.expiring, view.next_expiry) == (20, 20, T0 + 40 * DAY)
    before = await count_transfers(db, t.id)
    with pytest.raises(InsufficientBalance) as err:
        await spend(db, t.id, m, 50, now=later)
    assert err.value.available == 20
    assert await count_transfers(db, t.id) == before
    await clean(db, t.id)  # the failed debit left nothing behind
    async with db.tenant_tx(t.id) as tx:
        report = await ledger.expire_due(tx, now=later)
    assert report == ledger.ExpireReport(lots_expired=1, amount_expired=100, holds_expired=0)
    async with db.tenant_tx(t.id) as tx:
        assert await ledger.expire_due(tx, now=later) == ledger.ExpireReport(0, 0, 0)
        history = await ledger.transfers_for(tx, [m])
    assert (history[m][0].kind, history[m][0].amount) == ("expire", -100)
    assert (await balance(db, t.id, m, now=later)).available == 20
    await spend(db, t.id, m, 20, now=later)
    await clean(db, t.id)


async def test_hold_capture_partial_returns_rest_to_latest_lots(db: Database) -> None:
    t = await new_tenant(db)
    m = uuid.uuid4()
    soon = await earn(db, t.id, m, 50, expires_at=T0 + 5 * DAY)
    late = await earn(db, t.id, m, 50, expires_at=T0 + 50 * DAY)
    async with db.tenant_tx(t.id) as tx:
        h = await ledger.hold(
            tx,
            member_id=m,
            account="points",
            amount=80,
            ttl_seconds=600,
            reason="pos",
            idem_key="h1",
            now=T0,
        )
    assert (h.status, h.amount, h.expires_at) == ("active", 80, T0 + timedelta(seconds=600))
    view = await balance(db, t.id, m)
    assert (view.available, view.held) == (20, 80)
    with pytest.raises(InsufficientBalance):
        await spend(db, t.id, m, 21)
    async with db.tenant_tx(t.id) as tx:
        done, transfer = await ledger.capture(
            tx, hold_id=h.id, amount=60, reason="pos sale", idem_key="c1", now=T0
        )
    assert (done.status, done.captured, transfer.amount, transfer.kind) == (
        "captured",
        60,
        -60,
        "capture",
    )
    async with db.tenant_tx(t.id, write=False) as tx:
        lots = await ledger.get_transfers(tx, [soon.id, late.id])
    # 60 captured from the soonest lot first (50) then 10 of the later one; 20 returned to it.
    assert (lots[soon.id].remaining, lots[late.id].remaining) == (0, 40)
    view = await balance(db, t.id, m)
    assert (view.available, view.held) == (40, 0)
    with pytest.raises(HoldNotActive) as err:
        async with db.tenant_tx(t.id) as tx:
            await ledger.capture(tx, hold_id=h.id, amount=None, reason="x", idem_key="c2", now=T0)
    assert err.value.status == "captured"
    with pytest.raises(HoldNotActive):
        async with db.tenant_tx(t.id) as tx:
            await ledger.release(tx, hold_id=h.id, reason="x", idem_key="r1", now=T0)
    # A replayed capture returns the original.
    async with db.tenant_tx(t.id) as tx:
        again, t2 = await ledger.capture(
            tx, hold_id=h.id, amount=60, reason="pos sale", idem_key="c1", now=T0
        )
    assert again.replayed and t2.replayed and t2.id == transfer.id
    await clean(db, t.id)


async def test_hold_release_capture_limits_and_expiry(db: Database) -> None:
    t = await new_tenant(db)
    m = uuid.uuid4()
    await earn(db, t.id, m, 100)

    async def new_hold(amount: int, ttl: int = 60) -> ledger.HoldResult:
        async with db.tenant_tx(t.id) as tx:
            return await ledger.hold(
                tx,
                member_id=m,
                account="points",
                amount=amount,
                ttl_seconds=ttl,
                reason="pos",
                idem_key=key(),
                now=T0,
            )

    h1 = await new_hold(30)
    with pytest.raises(InvalidInput) as err:
        async with db.tenant_tx(t.id) as tx:
            await ledger.capture(tx, hold_id=h1.id, amount=31, reason="x", idem_key=key(), now=T0)
    assert err.value.field == "amount"
    async with db.tenant_tx(t.id) as tx:
        released = await ledger.release(tx, hold_id=h1.id, reason="cancel", idem_key="r", now=T0)
        replay = await ledger.release(tx, hold_id=h1.id, reason="cancel", idem_key="r", now=T0)
    assert released.status == "released" and replay.replayed and not released.replayed
    with pytest.raises(IdempotencyKeyReused):
        async with db.tenant_tx(t.id) as tx:
            await ledger.release(tx, hold_id=h1.id, reason="other", idem_key="r", now=T0)
    assert (await balance(db, t.id, m)).available == 100

    with pytest.raises(InsufficientBalance):
        await new_hold(101)
    h2 = await new_hold(70, ttl=60)
    after = T0 + timedelta(seconds=61)
    with pytest.raises(HoldNotActive) as err2:
        async with db.tenant_tx(t.id) as tx:
            await ledger.capture(
                tx, hold_id=h2.id, amount=None, reason="x", idem_key=key(), now=after
            )
    assert err2.value.status == "expired"
    async with db.tenant_tx(t.id) as tx:
        report = await ledger.expire_due(tx, now=after)
        holds = await ledger.get_holds(tx, [h2.id])
    assert report.holds_expired == 1 and holds[h2.id].status == "expired"
    view = await balance(db, t.id, m, now=after)
    assert (view.available, view.held) == (100, 0)
    await clean(db, t.id)


async def test_idempotent_credit_and_debit(db: Database) -> None:
    t = await new_tenant(db)
    m = uuid.uuid4()
    first = await earn(db, t.id, m, 40, idem_key="earn-1")
    again = await earn(db, t.id, m, 40, idem_key="earn-1", now=T0 + DAY)
    assert again.replayed and again.id == first.id and again.expires_at == first.expires_at
    with pytest.raises(IdempotencyKeyReused):
        await earn(db, t.id, m, 41, idem_key="earn-1")
    d1 = await spend(db, t.id, m, 40, idem_key="spend-1")
    # Replayed after the balance is gone: still the original, not InsufficientBalance.
    d2 = await spend(db, t.id, m, 40, idem_key="spend-1")
    assert d2.replayed and d2.id == d1.id
    with pytest.raises(IdempotencyKeyReused):
        await spend(db, t.id, m, 39, idem_key="spend-1")
    assert await count_transfers(db, t.id) == 2
    assert (await balance(db, t.id, m)).available == 0
    await clean(db, t.id)


async def test_hold_idempotency(db: Database) -> None:
    t = await new_tenant(db)
    m = uuid.uuid4()
    await earn(db, t.id, m, 10)
    args = dict(member_id=m, account="points", amount=6, ttl_seconds=60, reason="pos")
    async with db.tenant_tx(t.id) as tx:
        h1 = await ledger.hold(tx, idem_key="hk", now=T0, **args)  # type: ignore[arg-type]
        h2 = await ledger.hold(tx, idem_key="hk", now=T0, **args)  # type: ignore[arg-type]
    assert h2.replayed and h2.id == h1.id
    with pytest.raises(IdempotencyKeyReused):
        async with db.tenant_tx(t.id) as tx:
            await ledger.hold(tx, idem_key="hk", now=T0, **{**args, "amount": 5})  # type: ignore[arg-type]
    view = await balance(db, t.id, m)
    assert (view.available, view.held) == (4, 6)
    await clean(db, t.id)


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("amount", {"amount": 0}),
        ("amount", {"amount": -5}),
        ("amount", {"amount": ledger.MAX_AMOUNT + 1}),
        ("amount", {"amount": 1.5}),
        ("amount", {"amount": True}),
        ("account", {"account": "gold"}),
        ("reason", {"reason": ""}),
        ("reason", {"reason": "x" * 201}),
        ("idem_key", {"idem_key": "k" * 129}),
        ("expires_at", {"expires_at": datetime(2030, 1, 1)}),
    ],
)
async def test_validation_errors_write_nothing(
    db: Database, field: str, overrides: dict[str, Any]
) -> None:
    t = await new_tenant(db)
    m = uuid.uuid4()
    args: dict[str, Any] = dict(
        member_id=m, account="points", amount=10, reason="r", source="s", idem_key="k"
    )
    async with db.tenant_tx(t.id) as tx:
        with pytest.raises(InvalidInput) as err:
            await ledger.credit(tx, **{**args, **overrides})
        assert err.value.field == field
        if field != "expires_at":
            with pytest.raises(InvalidInput):
                await ledger.debit(tx, **{**args, **overrides})
        hold_args = {
            k: v for k, v in {**args, **overrides}.items() if k not in ("source", "expires_at")
        }
        if field != "expires_at":
            with pytest.raises(InvalidInput):
                await ledger.hold(tx, ttl_seconds=60, **hold_args)
    for ttl in (0, 86401):
        async with db.tenant_tx(t.id) as tx:
            with pytest.raises(InvalidInput) as err:
                await ledger.hold(
                    tx,
                    member_id=m,
                    account="points",
                    amount=1,
                    ttl_seconds=ttl,
                    reason="r",
                    idem_key="k",
                )
            assert err.value.field == "ttl_seconds"
    assert await count_transfers(db, t.id) == 0
    assert (await balance(db, t.id, m)).available == 0


async def test_reversal_takes_what_is_left_and_records_shortfall(db: Database) -> None:
    t = await new_tenant(db)
    m = uuid.uuid4()
    order = f"order:{uuid.uuid4()}"
    await earn(db, t.id, m, 100, source_ref=order)
    await spend(db, t.id, m, 70)
    rev = await spend(db, t.id, m, 50, kind="reversal", allow_shortfall=True, source_ref=order)
    assert (rev.amount, rev.shortfall) == (-30, 20)
    nothing = await spend(db, t.id, m, 10, kind="reversal", allow_shortfall=True, source_ref=order)
    assert (nothing.amount, nothing.shortfall) == (0, 10)
    # A member with no balance row at all still gets a visible line.
    other = await spend(db, t.id, uuid.uuid4(), 5, kind="reversal", allow_shortfall=True)
    assert (other.amount, other.shortfall) == (0, 5)
    async with db.tenant_tx(t.id, write=False) as tx:
        sums = await ledger.amounts_by_source(tx, order)
    assert sums == {("points", "earn"): 100, ("points", "reversal"): -30}
    assert (await balance(db, t.id, m)).available == 0
    await clean(db, t.id)


async def test_merge_then_unmerge_restores_balances_and_expiry_breakdown(db: Database) -> None:
    t = await new_tenant(db)
    loser, survivor = uuid.uuid4(), uuid.uuid4()
    await earn(db, t.id, loser, 30, expires_at=T0 + 10 * DAY)
    await earn(db, t.id, loser, 40, expires_at=T0 + 90 * DAY)
    await earn(db, t.id, loser, 7, account="growth")
    await earn(db, t.id, loser, 5, expires_at=T0 - DAY)  # expired, unswept: stays with the loser
    await earn(db, t.id, survivor, 25, expires_at=T0 + 10 * DAY)
    await spend(db, t.id, loser, 10)
    async with db.tenant_tx(t.id) as tx:
        await ledger.hold(
            tx,
            member_id=loser,
            account="points",
            amount=5,
            ttl_seconds=60,
            reason="pos",
            idem_key=key(),
            now=T0,
        )
    before = {m: await lots_by_expiry(db, t.id, m) for m in (loser, survivor)}
    views_before = {m: await balance(db, t.id, m) for m in (loser, survivor)}
    merge_id = uuid.uuid4()
    async with db.tenant_tx(t.id) as tx:
        snap = await ledger.merge_balances(
            tx,
            loser_id=loser,
            survivor_id=survivor,
            merge_id=merge_id,
            reason="same person",
            now=T0,
        )
        replay = await ledger.merge_balances(
            tx,
            loser_id=loser,
            survivor_id=survivor,
            merge_id=merge_id,
            reason="same person",
            now=T0,
        )
    assert replay == snap
    assert {m["account"]: m["amount"] for m in snap["moves"]} == {"points": 55, "growth": 7}
    assert (await balance(db, t.id, survivor)).available == 25 + 55
    loser_view = await balance(db, t.id, loser)
    assert (loser_view.available, loser_view.held) == (0, 5)  # the hold stays with the loser
    async with db.tenant_tx(t.id, write=False) as tx:
        history = await ledger.transfers_for(tx, [loser, survivor])
    assert {x.kind for x in history[loser]} >= {"merge_out"}
    assert {x.kind for x in history[survivor]} >= {"merge_in"}
    await clean(db, t.id)
    async with db.tenant_tx(t.id) as tx:
        await ledger.unmerge_balances(tx, merge_id=merge_id, snapshot=snap, reason="split", now=T0)
        await ledger.unmerge_balances(tx, merge_id=merge_id, snapshot=snap, reason="split", now=T0)
    assert {m: await lots_by_expiry(db, t.id, m) for m in (loser, survivor)} == before
    assert {m: await balance(db, t.id, m) for m in (loser, survivor)} == views_before
    await clean(db, t.id)


async def test_unmerge_records_shortfall_when_survivor_spent(db: Database) -> None:
    t = await new_tenant(db)
    loser, survivor = uuid.uuid4(), uuid.uuid4()
    await earn(db, t.id, loser, 50, expires_at=T0 + 5 * DAY)
    await earn(db, t.id, survivor, 50, expires_at=T0 + 50 * DAY)
    merge_id = uuid.uuid4()
    async with db.tenant_tx(t.id) as tx:
        snap = await ledger.merge_balances(
            tx, loser_id=loser, survivor_id=survivor, merge_id=merge_id, reason="m", now=T0
        )
    await spend(db, t.id, survivor, 30)  # drawn from the merged lot: it expires first
    async with db.tenant_tx(t.id) as tx:
        await ledger.unmerge_balances(tx, merge_id=merge_id, snapshot=snap, reason="u", now=T0)
        history = await ledger.transfers_for(tx, [survivor], limit_per_member=1)
    assert (history[survivor][0].kind, history[survivor][0].amount) == ("unmerge_out", -20)
    assert history[survivor][0].shortfall == 30
    assert (await balance(db, t.id, loser)).available == 20
    assert (await balance(db, t.id, survivor)).available == 50
    await clean(db, t.id)


async def test_tenant_isolation(db: Database) -> None:
    a = await new_tenant(db, "a")
    b = await new_tenant(db, "b")
    m = uuid.uuid4()
    earned = await earn(db, a.id, m, 10, idem_key="shared-key")
    async with db.tenant_tx(a.id) as tx:
        h = await ledger.hold(
            tx,
            member_id=m,
            account="points",
            amount=4,
            ttl_seconds=60,
            reason="pos",
            idem_key="shared-key",
            now=T0,
        )
    # The same idempotency key in another tenant is a different request space.
    other = await earn(db, b.id, m, 3, idem_key="shared-key")
    assert not other.replayed and other.id != earned.id
    async with db.tenant_tx(b.id) as tx:
        with pytest.raises(NotFound):
            await ledger.capture(tx, hold_id=h.id, amount=None, reason="x", idem_key="c", now=T0)
        with pytest.raises(NotFound):
            await ledger.release(tx, hold_id=h.id, reason="x", idem_key="r", now=T0)
        assert await ledger.get_holds(tx, [h.id]) == {}
        assert await ledger.get_transfers(tx, [earned.id]) == {}
        views = await ledger.balances_for(tx, [m], now=T0)
        assert views[(m, "points")].available == 3
        assert [x.id for x in (await ledger.transfers_for(tx, [m]))[m]] == [other.id]
        assert await ledger.expire_due(tx, now=T0 + timedelta(days=9999)) == ledger.ExpireReport(
            1, 3, 0
        )
    view_a = await balance(db, a.id, m)
    assert (view_a.available, view_a.held) == (6, 4)  # tenant b's sweep did not touch a
    await clean(db, a.id)
    await clean(db, b.id)


async def test_batch_reads_and_history_paging(db: Database) -> None:
    t = await new_tenant(db)
    members = [uuid.uuid4() for _ in range(3)]
    for i, m in enumerate(members):
        for j in range(i + 2):
            await earn(db, t.id, m, 10 + j, now=T0 + j * DAY, expires_at=T0 + (20 + j) * DAY)
    async with db.tenant_tx(t.id, write=False) as tx:
        views = await ledger.balances_for(
            tx, [*members, uuid.uuid4()], now=T0, expiring_within=timedelta(days=20)
        )
        page = await ledger.transfers_for(tx, members, limit_per_member=2)
        last = page[members[2]][-1]
        rest = await ledger.transfers_for(
            tx, [members[2]], limit_per_member=5, before=(last.created_at, last.id)
        )
    assert set(views) == {(m, "points") for m in members}
    assert views[(members[0], "points")].available == 21
    assert views[(members[0], "points")].expiring == 10  # only the lot expiring at day 20
    assert views[(members[0], "points")].next_expiry == T0 + 20 * DAY
    assert [len(page[m]) for m in members] == [2, 2, 2]
    assert [x.amount for x in page[members[2]]] == [13, 12]
    assert [x.amount for x in rest[members[2]]] == [11, 10]


async def test_verify_detects_corruption(db: Database) -> None:
    t = await new_tenant(db)
    m = uuid.uuid4()
    await earn(db, t.id, m, 10)
    await clean(db, t.id)
    async with db.tenant_tx(t.id) as tx:
        await tx.conn.execute(
            text("UPDATE ledger_balance SET available = available + 5 WHERE tenant_id = :t"),
            {"t": t.id.hex if db.dialect == "sqlite" else str(t.id)},
        )
        codes = {v.code for v in await ledger.verify(tx)}
    assert {"available_not_lot_sum", "total_not_transfer_sum"} <= codes


def test_request_hash_is_stable_and_order_independent() -> None:
    a = ledger.request_hash(x=1, when=T0, who=uuid.UUID(int=1))
    b = ledger.request_hash(who=uuid.UUID(int=1), x=1, when=T0.astimezone(UTC))
    assert a == b and len(a) == 64
    assert a != ledger.request_hash(x=2, when=T0, who=uuid.UUID(int=1))

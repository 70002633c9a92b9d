"""Property test: random operation sequences keep every ledger invariant and match a tiny model.

The model is deliberately naive (lists of lots, spent soonest-expiring first), so a disagreement
points at the ledger. Runs on SQLite with a fake clock and a fresh tenant per example.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from gateway import ledger
from gateway.errors import HoldNotActive, InsufficientBalance, InvalidInput
from gateway.storage.db import Database
from gateway.storage.migrate import upgrade_sync
from gateway.storage.tables import LedgerBalance, LedgerTransfer, MemberEvent
from tests.conftest import new_tenant

T0 = datetime(2026, 3, 1, tzinfo=UTC)
MEMBERS = 2
TRANSFERS = LedgerTransfer.__table__  # type: ignore[attr-defined]
BALANCES = LedgerBalance.__table__  # type: ignore[attr-defined]
EVENTS = MemberEvent.__table__  # type: ignore[attr-defined]


@dataclass
class Lot:
    member: int
    account: str
    expires: datetime | None
    created: int  # op index: the model's stand-in for created_at
    seq: int  # creation order within the whole run
    remaining: int

    def order(self) -> tuple[Any, ...]:
        return (self.expires is None, self.expires or T0, self.created, self.seq)


@dataclass
class Hold:
    member: int
    amount: int
    expires: datetime
    draws: list[tuple[Lot, int]]
    status: str = "active"


@dataclass
class Model:
    lots: list[Lot] = field(default_factory=list)
    holds: dict[uuid.UUID, Hold] = field(default_factory=dict)
    seq: int = 0

    def add(self, member: int, account: str, amount: int, expires: Any, op: int) -> Lot:
        self.seq += 1
        lot = Lot(member, account, expires, op, self.seq, amount)
        self.lots.append(lot)
        return lot

    def spendable(self, member: int, account: str, now: datetime) -> list[Lot]:
        return sorted(
            (
                lot
                for lot in self.lots
                if lot.member == member
                and lot.account == account
                and lot.remaining > 0
                and (lot.expires is None or lot.expires > now)
            ),
            key=Lot.order,
        )

    def take(self, member: int, account: str, amount: int, now: datetime) -> list[tuple[Lot, int]]:
        draws = []
        for lot in self.spendable(member, account, now):
            if amount == 0:
                break
            n = min(amount, lot.remaining)
            lot.remaining -= n
            amount -= n
            draws.append((lot, n))
        return draws

    def available(self, member: int, account: str, now: datetime) -> int:
        return sum(lot.remaining for lot in self.spendable(member, account, now))

    def held(self, member: int) -> int:
        return sum(
            h.amount for h in self.holds.values() if h.member == member and h.status == "active"
        )


EARN = st.tuples(
    st.just("earn"),
    st.integers(0, MEMBERS - 1),
    st.integers(1, 60),
    st.sampled_from(["points", "points", "growth"]),
    st.sampled_from([2, 10, 40]),
)
SPEND = st.tuples(st.just("spend"), st.integers(0, MEMBERS - 1), st.integers(1, 80))
ops = st.lists(
    st.one_of(
        EARN,
        EARN,
        EARN,
        SPEND,
        SPEND,
        # Hold size in percent of what is spendable (>100 % must fail), so most holds succeed.
        st.tuples(
            st.just("hold"),
            st.integers(0, MEMBERS - 1),
            st.integers(1, 110),
            st.sampled_from([60, 3600, 86400]),
        ),
        # Capture size relative to the hold: 0 = all (None), 1 = one point, 2 = half, 3 = too much.
        st.tuples(st.just("capture"), st.integers(0, 20), st.integers(0, 3)),
        st.tuples(st.just("capture"), st.integers(0, 20), st.just(2)),
        st.tuples(
            st.just("hold"),
            st.integers(0, MEMBERS - 1),
            st.integers(30, 100),
            st.sampled_from([3600, 86400]),
        ),
        st.tuples(st.just("release"), st.integers(0, 20)),
        st.tuples(
            st.just("expire"),
        ),
        st.tuples(st.just("tick"), st.sampled_from([1, 3600, 86400, 5 * 86400, 20 * 86400])),
        st.tuples(
            st.just("reverse"),
            st.integers(0, MEMBERS - 1),
            st.integers(1, 80),
            st.sampled_from(["points", "growth"]),
        ),
        st.tuples(st.just("merge"), st.integers(0, MEMBERS - 1), st.integers(0, MEMBERS - 1)),
        st.tuples(
            st.just("unmerge"),
        ),
    ),
    min_size=12,
    max_size=30,
)


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("ledger-props") / "props.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade_sync(url)
    return url


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops)
def test_random_operations_keep_invariants(
    sqlite_url: str, operations: list[tuple[Any, ...]]
) -> None:
    asyncio.run(_run(sqlite_url, operations))


async def _run(url: str, operations: list[tuple[Any, ...]]) -> None:
    db = Database.from_url(url)
    try:
        tenant = await new_tenant(db, "prop")
        await _play(db, tenant.id, operations)
    finally:
        await db.dispose()


async def _play(db: Database, tid: uuid.UUID, operations: list[tuple[Any, ...]]) -> None:
    members = [uuid.uuid4() for _ in range(MEMBERS)]
    model = Model()
    hold_ids: list[uuid.UUID] = []
    merge: tuple[uuid.UUID, dict[str, Any], list[tuple[str, int, Lot, int, datetime | None]]] | None
    merge = None
    now = T0
    for i, op in enumerate(operations):
        now += timedelta(seconds=1)
        kind = op[0]
        async with db.tenant_tx(tid) as tx:
            if kind == "earn":
                _, m, amount, account, days = op
                # Unique microseconds keep every points expiry distinct (no ties to break).
                expires = (
                    now + timedelta(days=days, microseconds=i) if account == "points" else None
                )
                await ledger.credit(
                    tx,
                    member_id=members[m],
                    account=account,
                    amount=amount,
                    reason="earn",
                    source="prop",
                    idem_key=f"e{i}",
                    expires_at=expires,
                    now=now,
                )
                model.add(m, account, amount, expires, i)
            elif kind in ("spend", "reverse"):
                m, amount = op[1], op[2]
                account = op[3] if kind == "reverse" else "points"
                have = model.available(m, account, now)
                try:
                    r = await ledger.debit(
                        tx,
                        member_id=members[m],
                        account=account,
                        amount=amount,
                        reason=kind,
                        source="prop",
                        idem_key=f"d{i}",
                        kind="spend" if kind == "spend" else "reversal",
                        allow_shortfall=kind == "reverse",
                        now=now,
                    )
                except InsufficientBalance as exc:
                    assert kind == "spend" and have < amount and exc.available == have
                else:
                    expected = min(have, amount)
                    assert (r.amount, r.shortfall) == (-expected, amount - expected)
                    model.take(m, account, expected, now)
            elif kind == "hold":
                _, m, percent, ttl = op
                have = model.available(m, "points", now)
                amount = max(1, have * percent // 100)
                try:
                    h = await ledger.hold(
                        tx,
                        member_id=members[m],
                        account="points",
                        amount=amount,
                        ttl_seconds=ttl,
                        reason="hold",
                        idem_key=f"h{i}",
                        now=now,
                    )
                except InsufficientBalance:
                    assert have < amount
                else:
                    assert have >= amount
                    draws = model.take(m, "points", amount, now)
                    model.holds[h.id] = Hold(m, amount, now + timedelta(seconds=ttl), draws)
                    hold_ids.append(h.id)
            elif kind == "capture" and hold_ids:
                hid = hold_ids[op[1] % len(hold_ids)]
                mh = model.holds[hid]
                amount = [None, 1, max(1, mh.amount // 2), mh.amount + 1][op[2]]
                try:
                    _, t = await ledger.capture(
                        tx, hold_id=hid, amount=amount, reason="cap", idem_key=f"c{i}", now=now
                    )
                except HoldNotActive:
                    assert mh.status != "active" or mh.expires <= now
                except InvalidInput:
                    assert amount is not None and amount > mh.amount
                else:
                    assert mh.status == "active" and mh.expires > now
                    captured = mh.amount if amount is None else amount
                    assert t.amount == -captured
                    left = captured
                    for lot, n in mh.draws:
                        used = min(left, n)
                        left -= used
                        lot.remaining += n - used
                    mh.status = "captured"
            elif kind == "release" and hold_ids:
                hid = hold_ids[op[1] % len(hold_ids)]
                mh = model.holds[hid]
                try:
                    await ledger.release(tx, hold_id=hid, reason="rel", idem_key=f"r{i}", now=now)
                except HoldNotActive:
                    assert mh.status != "active"
                else:
                    assert mh.status == "active"
                    for lot, n in mh.draws:
                        lot.remaining += n
                    mh.status = "released"
            elif kind == "expire":
                report = await ledger.expire_due(tx, now=now)
                due_holds = [
                    h for h in model.holds.values() if h.status == "active" and h.expires <= now
                ]
                for h in due_holds:
                    for lot, n in h.draws:
                        lot.remaining += n
                    h.status = "expired"
                due = [
                    lot
                    for lot in model.lots
                    if lot.expires is not None and lot.expires <= now and lot.remaining > 0
                ]
                assert report == ledger.ExpireReport(
                    len(due), sum(lot.remaining for lot in due), len(due_holds)
                )
                for lot in due:
                    lot.remaining = 0
            elif kind == "tick":
                now += timedelta(seconds=op[1])
            elif kind == "merge" and merge is None and op[1] != op[2]:
                loser, survivor = op[1], op[2]
                mid = uuid.uuid4()
                snap = await ledger.merge_balances(
                    tx,
                    loser_id=members[loser],
                    survivor_id=members[survivor],
                    merge_id=mid,
                    reason="merge",
                    now=now,
                )
                moved = []
                for account in sorted({"points", "growth"}):
                    for lot in model.spendable(loser, account, now):
                        new = model.add(survivor, account, lot.remaining, lot.expires, i)
                        moved.append((account, lot.remaining, new, loser, lot.expires))
                        lot.remaining = 0
                assert sum(m["amount"] for m in snap["moves"]) == sum(x[1] for x in moved)
                merge = (mid, snap, moved)
            elif kind == "unmerge" and merge is not None:
                mid, snap, moved = merge
                await ledger.unmerge_balances(
                    tx, merge_id=mid, snapshot=snap, reason="split", now=now
                )
                for account, amount, new, loser, expires in moved:
                    back = min(amount, new.remaining)
                    new.remaining -= back
                    if back:
                        model.add(loser, account, back, expires, i)
                merge = None
        async with db.tenant_tx(tid, write=False) as tx:
            views = await ledger.balances_for(tx, members, now=now)
            for idx, member in enumerate(members):
                for account in ("points", "growth"):
                    view = views.get((member, account))
                    got = (view.available, view.held) if view else (0, 0)
                    held = model.held(idx) if account == "points" else 0
                    assert got == (model.available(idx, account, now), held), (i, op, idx, account)
            # Which lots were drawn is observable as the per-expiry breakdown of what is left.
            rows = await tx.conn.execute(
                select(
                    TRANSFERS.c.member_id,
                    TRANSFERS.c.account,
                    TRANSFERS.c.expires_at,
                    TRANSFERS.c.remaining,
                ).where(TRANSFERS.c.tenant_id == tid, TRANSFERS.c.remaining > 0)
            )
            got_lots: dict[Any, int] = {}
            for r in rows:
                k = (members.index(r.member_id), r.account, r.expires_at)
                got_lots[k] = got_lots.get(k, 0) + r.remaining
            want_lots: dict[Any, int] = {}
            for lot in model.lots:
                if lot.remaining:
                    k = (lot.member, lot.account, lot.expires)
                    want_lots[k] = want_lots.get(k, 0) + lot.remaining
            assert got_lots == want_lots, (i, op)
            assert await ledger.verify(tx) == [], (i, op)
    await _events_add_up(db, tid)


async def _events_add_up(db: Database, tid: uuid.UUID) -> None:
    """Every balance change was announced: per member and account, the ``points.changed`` deltas
    add up to the balance row's ``available``, and no event reports a negative balance."""
    async with db.tenant_tx(tid, write=False) as tx:
        balances = {
            (r.member_id, r.account): r.available
            for r in await tx.conn.execute(select(BALANCES).where(BALANCES.c.tenant_id == tid))
        }
        events = (
            await tx.conn.execute(
                select(EVENTS.c.member_id, EVENTS.c.payload).where(
                    EVENTS.c.tenant_id == tid, EVENTS.c.type == "points.changed"
                )
            )
        ).all()
    sums: dict[tuple[uuid.UUID, str], int] = {}
    for member_id, p in events:
        assert p["available"] >= 0
        key = (member_id, p["account"])
        sums[key] = sums.get(key, 0) + p["delta"]
    assert sums == {k: v for k, v in balances.items() if v or k in sums}

"""The points mall under real concurrency on PostgreSQL (parallel connections, one transaction
per request): the guarded stock update never oversells, the exclusive member lock keeps one
member's redemptions from overdrawing or double-counting, one idempotency key redeems once, and a
payment racing the expiry sweeper is decided exactly once. The ledger verifies clean after each.

Every task waits on one start gate, so they open their transactions together; the pool allows
40 connections at once (the shared test server has 100 in all).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from gateway import ledger
from gateway.errors import InsufficientBalance, InvalidTransition, NotEligible
from gateway.mall import service as mall
from gateway.storage.db import Database
from gateway.tenants import TenantInfo
from tests.conftest import new_tenant
from tests.test_mall import (
    DOC,
    T0,
    configure,
    new_member,
    offer,
    points,
    redeem,
    taken,
    violations,
)

pytestmark = pytest.mark.postgres

CATALOG = {
    **DOC,
    "mall": {
        "payment_minutes": 15,
        "rewards": [
            {
                "code": "LAST",
                "title": "Limited edition",
                "kind": "physical",
                "stock": 50,
                "options": {
                    "points": {"points": 100},
                    "points_cash": {"points": 50, "cash_fen": 500},
                },
            },
            {
                "code": "PAIR",
                "title": "Two per member",
                "kind": "gift",
                "per_member": 2,
                "options": {"points": {"points": 10}},
            },
            {
                "code": "VOUCHER",
                "title": "Voucher",
                "kind": "coupon",
                "options": {
                    "points": {"points": 100},
                    "points_cash": {"points": 10, "cash_fen": 100},
                },
            },
        ],
    },
}


@pytest.fixture
async def wide_db(pg_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(pg_url, pool_size=20)  # up to 40 parallel connections
    yield database
    await database.dispose()


async def _gated(calls: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    gate = asyncio.Event()

    async def run(call: Callable[[], Awaitable[Any]]) -> Any:
        await gate.wait()
        return await call()

    tasks = [asyncio.create_task(run(c)) for c in calls]
    await asyncio.sleep(0)
    gate.set()
    return await asyncio.gather(*tasks, return_exceptions=True)


def _kinds(results: list[Any]) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for r in results:
        if isinstance(r, NotEligible):
            kinds[r.reason] += 1
        elif isinstance(r, InsufficientBalance):
            kinds["insufficient"] += 1
        elif isinstance(r, InvalidTransition):
            kinds["invalid_transition"] += 1
        elif isinstance(r, BaseException):
            raise r
        else:
            kinds["ok"] += 1
    return kinds


async def _tenant(db: Database) -> TenantInfo:
    tenant = await new_tenant(db, "mallc")
    await configure(db, tenant, CATALOG)
    return tenant


async def test_a_hundred_members_race_for_the_last_ten_units(wide_db: Database) -> None:
    db = wide_db
    tenant = await _tenant(db)
    seller = await new_member(db, tenant, "SEED", points=10_000)
    await redeem(db, tenant, seller, "LAST", quantity=40)  # 10 of 50 left
    people = [await new_member(db, tenant, f"M{i:03d}", points=1000) for i in range(100)]
    modes = {m: ("points" if i % 2 else "points_cash") for i, m in enumerate(people)}

    def buy(m: uuid.UUID) -> Callable[[], Awaitable[mall.Redemption]]:
        return lambda: redeem(db, tenant, m, "LAST", modes[m], key=f"buy-{m}")

    results = await _gated([buy(m) for m in people])
    assert _kinds(results) == {"ok": 10, "OUT_OF_STOCK": 90}

    assert await taken(db, tenant, "LAST") == 50
    assert (await offer(db, tenant, seller, "LAST")).stock_left == 0
    winners = {r.member_id: r for r in results if isinstance(r, mall.Redemption)}
    for m in people:
        r = winners.get(m)
        if r is None:
            assert await points(db, tenant, m) == (1000, 0)
        elif r.mode == "points":
            assert (r.status, await points(db, tenant, m)) == ("completed", (900, 0))
        else:
            assert (r.status, await points(db, tenant, m)) == ("awaiting_payment", (950, 50))
    async with db.tenant_tx(tenant.id, write=False) as tx:
        everyone = [r for m in people for r in await mall.redemptions_for(tx, m)]
    assert len(everyone) == 10
    assert await violations(db, tenant) == []

    # the unpaid ones time out: their units come back, exactly once, to the stock
    async with db.tenant_tx(tenant.id) as tx:
        expired = await mall.expire_due(tx, now=T0 + timedelta(minutes=16))
    unpaid = sum(1 for r in winners.values() if r.mode == "points_cash")
    assert expired == unpaid
    assert await taken(db, tenant, "LAST") == 50 - unpaid
    assert await violations(db, tenant) == []


async def test_one_member_firing_twenty_redeems_with_points_for_three(wide_db: Database) -> None:
    db = wide_db
    tenant = await _tenant(db)
    m = await new_member(db, tenant, "GREEDY", points=300)

    def buy(i: int) -> Callable[[], Awaitable[mall.Redemption]]:
        return lambda: redeem(db, tenant, m, "VOUCHER", key=f"greedy-{i}")

    results = await _gated([buy(i) for i in range(20)])
    assert _kinds(results) == {"ok": 3, "insufficient": 17}
    assert await points(db, tenant, m) == (0, 0)
    async with db.tenant_tx(tenant.id, write=False) as tx:
        view = (await ledger.balances_for(tx, [m]))[(m, "points")]
        assert len(await mall.redemptions_for(tx, m)) == 3
    assert view.available >= 0 and view.held == 0
    assert await violations(db, tenant) == []


async def test_one_member_racing_a_per_member_limit_gets_exactly_the_limit(
    wide_db: Database,
) -> None:
    """The ledger alone cannot enforce this (the member can afford all twenty): the exclusive
    member lock makes each redeem count the previous ones."""
    db = wide_db
    tenant = await _tenant(db)
    m = await new_member(db, tenant, "LIMIT", points=1000)

    def buy(i: int) -> Callable[[], Awaitable[mall.Redemption]]:
        return lambda: redeem(db, tenant, m, "PAIR", key=f"pair-{i}")

    results = await _gated([buy(i) for i in range(20)])
    assert _kinds(results) == {"ok": 2, "MEMBER_LIMIT": 18}
    assert await points(db, tenant, m) == (980, 0)
    assert await violations(db, tenant) == []


async def test_one_key_fired_twenty_times_redeems_once(wide_db: Database) -> None:
    db = wide_db
    tenant = await _tenant(db)
    m = await new_member(db, tenant, "RETRY", points=1000)
    results = await _gated(
        [lambda: redeem(db, tenant, m, "VOUCHER", "points_cash", key="tap") for _ in range(20)]
    )
    assert _kinds(results) == {"ok": 20}
    assert len({r.id for r in results}) == 1
    assert sum(1 for r in results if not r.replayed) == 1
    assert await points(db, tenant, m) == (990, 10)
    assert await violations(db, tenant) == []


async def test_payments_racing_the_expiry_sweeper_are_decided_once(wide_db: Database) -> None:
    db = wide_db
    tenant = await _tenant(db)
    people = [await new_member(db, tenant, f"PAY{i:02d}", points=100) for i in range(20)]
    pending = [await redeem(db, tenant, m, "LAST", "points_cash") for m in people]
    window = T0 + timedelta(minutes=14)  # the payment arrived just in time …
    sweep = T0 + timedelta(minutes=16)  # … but the sweeper runs with a later clock

    async def pay(r: mall.Redemption) -> mall.Redemption:
        async with db.tenant_tx(tenant.id) as tx:
            return await mall.confirm_payment(
                tx, redemption_id=r.id, payment_ref=f"P-{r.id}", amount_fen=500, now=window
            )

    async def expire() -> int:
        async with db.tenant_tx(tenant.id) as tx:
            return await mall.expire_due(tx, now=sweep)

    calls: list[Callable[[], Awaitable[Any]]] = [lambda r=r: pay(r) for r in pending]
    calls += [expire for _ in range(4)]
    results = await _gated(calls)
    paid = [r for r in results[:20] if isinstance(r, mall.Redemption)]
    refused = [r for r in results[:20] if isinstance(r, InvalidTransition)]
    assert len(paid) + len(refused) == 20
    assert sum(results[20:]) == len(refused)  # every refused payment was one the sweeper took

    async with db.tenant_tx(tenant.id, write=False) as tx:
        final = await mall.get_redemptions(tx, [r.id for r in pending])
    statuses = Counter(r.status for r in final.values())
    assert statuses == Counter({"completed": len(paid), "expired": len(refused)})
    for r in pending:
        expect = (50, 0) if final[r.id].status == "completed" else (100, 0)
        assert await points(db, tenant, r.member_id) == expect
    assert await taken(db, tenant, "LAST") == len(paid)
    assert await violations(db, tenant) == []

"""The points mall service on SQLite and PostgreSQL: three exchange modes end to end, per-tier
prices, validity windows, tier-only rewards, per-member and per-period limits, exchange rule sets
refusing and repricing, stock, cancel / timeout, idempotency, dry runs and tenant isolation.

Every test ends with ``ledger.verify`` finding nothing: the mall only ever moves points through
holds, captures and releases, so the ledger invariants must hold after any path.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from gateway import ledger, members
from gateway.errors import (
    IdempotencyKeyReused,
    InsufficientBalance,
    InvalidInput,
    InvalidTransition,
    NotEligible,
    NotFound,
)
from gateway.identifiers import tenant_key
from gateway.mall import service as mall
from gateway.mall import stock as stock_counter
from gateway.members import IdentifierInput
from gateway.rules import config as rule_config
from gateway.rules import engine
from gateway.rules.hookspecs import Quote, TierDef, TierPolicy, hookimpl
from gateway.rules.manager import RuleRegistry, load_rules
from gateway.rules.tiers import TierState
from gateway.storage.db import Database
from gateway.storage.tables import MemberGrant
from gateway.tenants import TenantInfo
from tests.conftest import TEST_SECRET

G: Any = MemberGrant.__table__  # type: ignore[attr-defined]

# Tuesday 10 March 2026, 12:00 in Shanghai (the tenants' timezone).
T0 = datetime(2026, 3, 10, 4, tzinfo=UTC)


# ---- a tiny rule plugin: two tiers and one exchange rule set --------------------------------


class MallTiers:
    """member (entry) and gold (100 lifetime growth)."""

    name, slot, version = "mall_tiers", "tiers", "1"

    def policy(self, config: dict[str, Any]) -> TierPolicy:
        return TierPolicy(
            (TierDef("member", "Member", 0), TierDef("gold", "Gold", 100)),
            measure="lifetime",
        )


class MallRules:
    """Refuses the rewards in ``refuse`` and halves the points price of those in ``half``."""

    name, slot, version = "mall_rules", "exchange", "1"

    def quote(self, snapshot: Any, quote: Quote, config: dict[str, Any]) -> Quote:
        if quote.reward in config.get("refuse", []):
            return replace(quote, eligible=False, reason="not during the trial programme")
        if quote.reward in config.get("half", []):
            return replace(quote, points=quote.points // 2)
        return quote


class MallPlugin:
    @hookimpl
    def register_rule_sets(self) -> list[Any]:
        return [MallTiers(), MallRules()]


REG: RuleRegistry = load_rules([MallPlugin()], entry_points=False)


def _reward(code: str, options: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"code": code, "title": code.title(), "kind": "gift", "options": options, **extra}


DOC: dict[str, Any] = {
    "tiers": {"rule": "mall_tiers"},
    "exchange": [{"rule": "mall_rules", "config": {"refuse": ["TRIAL"], "half": ["HALF"]}}],
    "mall": {
        "payment_minutes": 15,
        "rewards": [
            {
                "code": "MUG",
                "title": "Ceramic mug",
                "kind": "physical",
                "item": "MUG-2026",
                "stock": 5,
                "options": {
                    "points": {"points": 200, "tier_prices": {"gold": {"points": 150}}},
                    "points_cash": {"points": 100, "cash_fen": 990},
                    "cash": {"cash_fen": 2990},
                },
            },
            _reward(
                "COUPON10",
                {"points": {"points": 50}},
                kind="coupon",
                item="TPL-10",
                per_member=3,
                per_period=1,
                period="day",
            ),
            _reward("LTD", {"points_cash": {"points": 10, "cash_fen": 100}}, per_member=1),
            _reward("ONE", {"points_cash": {"points": 10, "cash_fen": 100}}, stock=1),
            _reward("GOLDBAG", {"points": {"points": 10}}, tiers=["gold"]),
            _reward(
                "SPRING",
                {"points": {"points": 10}},
                valid_from="2026-04-01T00:00:00+08:00",
                valid_until="2026-04-30T23:59:59+08:00",
            ),
            _reward("TRIAL", {"points": {"points": 10}}),
            _reward(
                "HALF",
                {"points": {"points": 100}, "points_cash": {"points": 60, "cash_fen": 100}},
            ),
        ],
    },
}


# ---- helpers (also used by the payment and concurrency tests) -------------------------------


async def configure(db: Database, tenant: TenantInfo, doc: dict[str, Any] | None = None) -> None:
    async with db.tenant_tx(tenant.id) as tx:
        await rule_config.save(tx, doc or DOC, REG, actor="test", now=T0 - timedelta(days=30))


async def new_member(
    db: Database,
    tenant: TenantInfo,
    card: str,
    *,
    points: int = 1000,
    growth: int = 0,
    at: datetime = T0,
) -> uuid.UUID:
    """A member who joined 60 days before ``at`` with ``points`` (and ``growth``) earned the day
    before; growth of 100 or more makes them gold."""
    async with db.tenant_tx(tenant.id) as tx:
        res = await members.ingest(
            tx,
            channel="pos",
            identifiers=[IdentifierInput("pos_card", "brand", card)],
            key=tenant_key(TEST_SECRET, tenant.id),
            now=at - timedelta(days=60),
            rules=REG,
        )
        for account, amount in (("points", points), ("growth", growth)):
            if amount:
                await ledger.credit(
                    tx,
                    member_id=res.member_id,
                    account=account,
                    amount=amount,
                    reason="seed",
                    source="test",
                    idem_key=f"seed-{card}-{account}",
                    now=at - timedelta(days=1),
                )
        if growth >= 100:  # growth credited outside the engine: store the tier it reaches
            year = datetime(2026, 1, 1, tzinfo=UTC)
            state = TierState("gold", T0 - timedelta(days=1), year, year.replace(year=2027))
            await engine.save_tier(tx, res.member_id, state, T0 - timedelta(days=1))
    return res.member_id


async def redeem(
    db: Database,
    tenant: TenantInfo,
    member_id: uuid.UUID,
    reward: str,
    mode: str = "points",
    *,
    key: str | None = None,
    quantity: int = 1,
    now: datetime = T0,
    dry_run: bool = False,
) -> mall.Redemption:
    async with db.tenant_tx(tenant.id) as tx:
        return await mall.redeem(
            tx,
            member_id=member_id,
            reward=reward,
            mode=mode,
            quantity=quantity,
            idem_key=key or uuid.uuid4().hex,
            registry=REG,
            now=now,
            dry_run=dry_run,
        )


async def points(db: Database, tenant: TenantInfo, member_id: uuid.UUID) -> tuple[int, int]:
    """(available, held) points."""
    async with db.tenant_tx(tenant.id, write=False) as tx:
        view = (await ledger.balances_for(tx, [member_id], now=T0)).get((member_id, "points"))
    return (view.available, view.held) if view else (0, 0)


async def taken(db: Database, tenant: TenantInfo, reward: str) -> int:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        return (await stock_counter.taken(tx, [reward])).get(reward, 0)


async def grants(db: Database, tenant: TenantInfo, member_id: uuid.UUID) -> list[Any]:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        return list(
            await tx.conn.execute(
                select(G).where(G.c.tenant_id == tenant.id, G.c.member_id == member_id)
            )
        )


async def violations(db: Database, tenant: TenantInfo) -> list[Any]:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        return await ledger.verify(tx)


async def offer(
    db: Database, tenant: TenantInfo, member_id: uuid.UUID, reward: str, now: datetime = T0
) -> mall.RewardOffer:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        (found,) = await mall.offers(tx, member_id, registry=REG, now=now, reward=reward)
    return found


def option(o: mall.RewardOffer, mode: str) -> mall.ExchangeOption:
    return next(x for x in o.options if x.mode == mode)


async def confirm(
    db: Database, tenant: TenantInfo, rid: uuid.UUID, ref: str, fen: int, now: datetime = T0
) -> mall.Redemption:
    async with db.tenant_tx(tenant.id) as tx:
        return await mall.confirm_payment(
            tx, redemption_id=rid, payment_ref=ref, amount_fen=fen, now=now
        )


async def cancel(
    db: Database, tenant: TenantInfo, rid: uuid.UUID, now: datetime = T0
) -> mall.Redemption:
    async with db.tenant_tx(tenant.id) as tx:
        return await mall.cancel(tx, redemption_id=rid, reason="member changed their mind", now=now)


async def expire(db: Database, tenant: TenantInfo, now: datetime) -> int:
    async with db.tenant_tx(tenant.id) as tx:
        return await mall.expire_due(tx, now=now)


async def get(db: Database, tenant: TenantInfo, rid: uuid.UUID) -> mall.Redemption | None:
    async with db.tenant_tx(tenant.id, write=False) as tx:
        return (await mall.get_redemptions(tx, [rid])).get(rid)


# ---- the three modes ------------------------------------------------------------------------


async def test_all_points_completes_at_once_and_issues_the_grant(
    db: Database, tenant: TenantInfo
) -> None:
    await configure(db, tenant)
    m = await new_member(db, tenant, "P1")
    r = await redeem(db, tenant, m, "MUG", "points")
    assert (r.status, r.points, r.cash_fen, r.quantity) == ("completed", 200, 0, 1)
    assert r.hold_id is not None and r.expires_at is None and r.resolved_at == T0
    assert r.grant_id is not None and not r.replayed
    assert await points(db, tenant, m) == (800, 0)
    assert await taken(db, tenant, "MUG") == 1
    (g,) = await grants(db, tenant, m)
    assert (g.id, g.kind, g.code, g.quantity, g.rule, g.source, g.status) == (
        r.grant_id,
        "physical",
        "MUG-2026",
        1,
        "mall",
        f"redemption:{r.id}",
        "issued",
    )
    assert await get(db, tenant, r.id) == r
    assert await violations(db, tenant) == []


async def test_points_and_cash_holds_points_until_the_payment_is_confirmed(
    db: Database, tenant: TenantInfo
) -> None:
    await configure(db, tenant)
    m = await new_member(db, tenant, "P2")
    r = await redeem(db, tenant, m, "MUG", "points_cash")
    assert (r.status, r.points, r.cash_fen) == ("awaiting_payment", 100, 990)
    assert r.expires_at == T0 + timedelta(minutes=15) and r.grant_id is None
    assert await points(db, tenant, m) == (900, 100)
    assert await grants(db, tenant, m) == []

    with pytest.raises(InvalidInput) as wrong:
        await confirm(db, tenant, r.id, "PAY-1", 989)
    assert wrong.value.field == "amount_fen"
    assert (await get(db, tenant, r.id)).status == "awaiting_payment"  # type: ignore[union-attr]

    done = await confirm(db, tenant, r.id, "PAY-1", 990, T0 + timedelta(minutes=5))
    assert (done.status, done.payment_ref, done.resolved_at) == (
        "completed",
        "PAY-1",
        T0 + timedelta(minutes=5),
    )
    assert done.grant_id is not None and not done.replayed
    assert await points(db, tenant, m) == (900, 0)
    again = await confirm(db, tenant, r.id, "PAY-1", 990, T0 + timedelta(minutes=6))
    assert again.replayed and again.status == "completed" and again.grant_id == done.grant_id
    with pytest.raises(InvalidTransition):  # a second, different payment: the caller refunds it
        await confirm(db, tenant, r.id, "PAY-2", 990)
    assert len(await grants(db, tenant, m)) == 1
    assert await points(db, tenant, m) == (900, 0)
    assert await violations(db, tenant) == []


async def test_cash_only_takes_stock_and_no_points(db: Database, tenant: TenantInfo) -> None:
    await configure(db, tenant)
    m = await new_member(db, tenant, "P3")
    r = await redeem(db, tenant, m, "MUG", "cash", quantity=2)
    assert (r.status, r.points, r.cash_fen, r.hold_id) == ("awaiting_payment", 0, 5980, None)
    assert await taken(db, tenant, "MUG") == 2
    done = await confirm(db, tenant, r.id, "PAY-C", 5980)
    assert done.status == "completed"
    (g,) = await grants(db, tenant, m)
    assert g.quantity == 2
    assert await points(db, tenant, m) == (1000, 0)
    assert await violations(db, tenant) == []


async def test_a_mode_the_reward_does_not_offer_is_invalid(
    db: Database, tenant: TenantInfo
) -> None:
    await configure(db, tenant)
    m = await new_member(db, tenant, "P4")
    with pytest.raises(InvalidInput):
        await redeem(db, tenant, m, "COUPON10", "cash")
    with pytest.raises(InvalidInput):
        await redeem(db, tenant, m, "MUG", "barter")
    with pytest.raises(InvalidInput):
        await redeem(db, tenant, m, "MUG", quantity=0)
    with pytest.raises(NotFound):
        await redeem(db, tenant, m, "NOPE")
    with pytest.raises(NotFound):
        await redeem(db, tenant, uuid.uuid4(), "MUG")


# ---- price and eligibility ------------------------------------------------------------------


async def test_price_follows_the_members_tier(db: Database, tenant: TenantInfo) -> None:
    await configure(db, tenant)
    plain = await new_member(db, tenant, "T1")
    gold = await new_member(db, tenant, "T2", growth=120)
    assert option(await offer(db, tenant, plain, "MUG"), "points").points == 200
    assert option(await offer(db, tenant, gold, "MUG"), "points").points == 150
    # a tier without its own price pays the base price in the other modes
    assert option(await offer(db, tenant, gold, "MUG"), "points_cash").points == 100
    r = await redeem(db, tenant, gold, "MUG", quantity=2)
    assert r.points == 300
    assert await points(db, tenant, gold) == (700, 0)


async def test_tier_restricted_reward(db: Database, tenant: TenantInfo) -> None:
    await configure(db, tenant)
    plain = await new_member(db, tenant, "R1")
    gold = await new_member(db, tenant, "R2", growth=100)
    o = option(await offer(db, tenant, plain, "GOLDBAG"), "points")
    assert (o.eligible, o.reason) == (False, "TIER_NOT_ALLOWED") and "gold" in (o.message or "")
    with pytest.raises(NotEligible) as refused:
        await redeem(db, tenant, plain, "GOLDBAG")
    assert refused.value.reason == "TIER_NOT_ALLOWED"
    assert option(await offer(db, tenant, gold, "GOLDBAG"), "points").eligible
    assert (await redeem(db, tenant, gold, "GOLDBAG")).status == "completed"
    assert await points(db, tenant, plain) == (1000, 0)


async def test_validity_window(db: Database, tenant: TenantInfo) -> None:
    await configure(db, tenant)
    m = await new_member(db, tenant, "V1")
    march, april, may = T0, datetime(2026, 4, 10, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)
    assert option(await offer(db, tenant, m, "SPRING", march), "points").reason == "NOT_STARTED"
    with pytest.raises(NotEligible) as early:
        await redeem(db, tenant, m, "SPRING", now=march)
    assert early.value.reason == "NOT_STARTED"
    assert option(await offer(db, tenant, m, "SPRING", april), "points").eligible
    assert (await redeem(db, tenant, m, "SPRING", now=april)).status == "completed"
    # 30 April 23:59:59 Shanghai is 15:59:59 UTC; 1 May 00:00 UTC is past it
    assert option(await offer(db, tenant, m, "SPRING", may), "points").reason == "ENDED"
    with pytest.raises(NotEligible) as late:
        await redeem(db, tenant, m, "SPRING", now=may)
    assert late.value.reason == "ENDED"


async def test_per_period_limit_follows_the_tenants_calendar(
    db: Database, tenant: TenantInfo
) -> None:
    await configure(db, tenant)
    m = await new_member(db, tenant, "L1")
    before_midnight = datetime(2026, 3, 10, 15, 59, tzinfo=UTC)  # 23:59 in Shanghai
    after_midnight = datetime(2026, 3, 10, 16, 1, tzinfo=UTC)  # 00:01 on the 11th
    assert (await offer(db, tenant, m, "COUPON10")).member_remaining == 1
    await redeem(db, tenant, m, "COUPON10", now=T0)
    o = await offer(db, tenant, m, "COUPON10", before_midnight)
    assert o.member_remaining == 0 and option(o, "points").reason == "PERIOD_LIMIT"
    with pytest.raises(NotEligible) as same_day:
        await redeem(db, tenant, m, "COUPON10", now=before_midnight)
    assert same_day.value.reason == "PERIOD_LIMIT"
    await redeem(db, tenant, m, "COUPON10", now=after_midnight)  # a new local day
    await redeem(db, tenant, m, "COUPON10", now=after_midnight + timedelta(days=1))
    third_day = after_midnight + timedelta(days=2)
    o = await offer(db, tenant, m, "COUPON10", third_day)
    assert o.member_remaining == 0 and option(o, "points").reason == "MEMBER_LIMIT"
    with pytest.raises(NotEligible) as lifetime:
        await redeem(db, tenant, m, "COUPON10", now=third_day)
    assert lifetime.value.reason == "MEMBER_LIMIT"
    assert await points(db, tenant, m) == (850, 0)
    assert len(await grants(db, tenant, m)) == 3
    # another member is not affected
    other = await new_member(db, tenant, "L2")
    assert (await redeem(db, tenant, other, "COUPON10", now=third_day)).status == "completed"


async def test_cancelled_and_expired_redemptions_do_not_count_against_limits(
    db: Database, tenant: TenantInfo
) -> None:
    await configure(db, tenant)
    m = await new_member(db, tenant, "L3")
    first = await redeem(db, tenant, m, "LTD", "points_cash")
    with pytest.raises(NotEligible) as limited:
        await redeem(db, tenant, m, "LTD", "points_cash")
    assert limited.value.reason == "MEMBER_LIMIT"
    await cancel(db, tenant, first.id)
    second = await redeem(db, tenant, m, "LTD", "points_cash")
    # its payment window passes: it no longer counts, even before a sweep
    later = T0 + timedelta(minutes=16)
    assert option(await offer(db, tenant, m, "LTD", later), "points_cash").eligible
    third = await redeem(db, tenant, m, "LTD", "points_cash", now=later)
    assert (await get(db, tenant, second.id)).status == "expired"  # type: ignore[union-attr]
    assert third.status == "awaiting_payment"
    assert await points(db, tenant, m) == (990, 10)
    assert await violations(db, tenant) == []


async def test_exchange_rule_sets_refuse_and_reprice(db: Database, tenant: TenantInfo) -> None:
    await configure(db, tenant)
    m = await new_member(db, tenant, "X1")
    refused = option(await offer(db, tenant, m, "TRIAL"), "points")
    assert (refused.eligible, refused.reason, refused.rule) == (False, "RULE", "mall_rules")
    assert refused.message == "not during the trial programme"
    with pytest.raises(NotEligible) as exc:
        await redeem(db, tenant, m, "TRIAL")
    assert exc.value.reason == "RULE" and "trial" in exc.value.message
    half = await offer(db, tenant, m, "HALF")
    assert [(o.mode, o.points, o.cash_fen, o.rule) for o in half.options] == [
        ("points", 50, 0, "mall_rules"),
        ("points_cash", 30, 100, "mall_rules"),
    ]
    untouched = option(await offer(db, tenant, m, "MUG"), "points")
    assert untouched.rule is None and untouched.points == 200
    r = await redeem(db, tenant, m, "HALF", quantity=3)
    assert (r.points, r.status) == (150, "completed")
    assert await points(db, tenant, m) == (850, 0)


async def test_a_broken_exchange_rule_set_is_stopped_before_the_ledger(
    db: Database, tenant: TenantInfo
) -> None:
    class Negative:
        name, slot, version = "mall_negative", "exchange", "1"

        def quote(self, snapshot: Any, quote: Quote, config: dict[str, Any]) -> Quote:
            return replace(quote, points=-5)

    class P:
        @hookimpl
        def register_rule_sets(self) -> list[Any]:
            return [MallTiers(), Negative()]

    reg = load_rules([P()], entry_points=False)
    doc = {**DOC, "exchange": [{"rule": "mall_negative"}]}
    async with db.tenant_tx(tenant.id) as tx:
        await rule_config.save(tx, doc, reg, actor="test")
    m = await new_member(db, tenant, "X2")
    with pytest.raises(ValueError, match="non-negative"):
        async with db.tenant_tx(tenant.id) as tx:
            await mall.redeem(
                tx, member_id=m, reward="MUG", mode="points", idem_key="k", registry=reg, now=T0
            )
    assert await points(db, tenant, m) == (1000, 0)


async def test_stock_and_points_are_checked(db: Database, tenant: TenantInfo) -> None:
    await configure(db, tenant)
    rich = await new_member(db, tenant, "S1", points=5000)
    poor = await new_member(db, tenant, "S2", points=150)
    o = option(await offer(db, tenant, poor, "MUG"), "points")
    assert (o.eligible, o.reason) == (False, "INSUFFICIENT_POINTS")
    with pytest.raises(InsufficientBalance) as short:
        await redeem(db, tenant, poor, "MUG")
    assert (short.value.available, short.value.requested) == (150, 200)
    assert option(await offer(db, tenant, poor, "MUG"), "points_cash").eligible
    assert (await offer(db, tenant, rich, "MUG")).stock_left == 5
    await redeem(db, tenant, rich, "MUG", quantity=4)
    with pytest.raises(NotEligible) as too_many:
        await redeem(db, tenant, rich, "MUG", quantity=2)
    assert too_many.value.reason == "OUT_OF_STOCK"
    await redeem(db, tenant, rich, "MUG")
    sold_out = await offer(db, tenant, poor, "MUG")
    assert sold_out.stock_left == 0
    assert {o.reason for o in sold_out.options} == {"OUT_OF_STOCK"}
    with pytest.raises(NotEligible):
        await redeem(db, tenant, poor, "MUG", "cash")
    assert await taken(db, tenant, "MUG") == 5
    assert await points(db, tenant, rich) == (4000, 0)
    assert await points(db, tenant, poor) == (150, 0)
    unlimited = await offer(db, tenant, poor, "COUPON10")
    assert unlimited.stock_left is None
    assert await violations(db, tenant) == []


# ---- cancel and timeout ---------------------------------------------------------------------


async def test_cancel_releases_the_hold_and_restores_stock(
    db: Database, tenant: TenantInfo
) -> None:
    await configure(db, tenant)
    m = await new_member(db, tenant, "C1")
    r = await redeem(db, tenant, m, "MUG", "points_cash", quantity=2)
    assert await points(db, tenant, m) == (800, 200)
    assert await taken(db, tenant, "MUG") == 2
    c = await cancel(db, tenant, r.id, T0 + timedelta(minutes=1))
    assert (c.status, c.resolved_at, c.replayed) == (
        "cancelled",
        T0 + timedelta(minutes=1),
        False,
    )
    assert await points(db, tenant, m) == (1000, 0)
    assert await taken(db, tenant, "MUG") == 0
    again = await cancel(db, tenant, r.id, T0 + timedelta(minutes=2))
    assert again.replayed and again.status == "cancelled"
    assert again.resolved_at == T0 + timedelta(minutes=1)
    with pytest.raises(InvalidTransition):
        await confirm(db, tenant, r.id, "PAY-LATE", 1980)
    done = await redeem(db, tenant, m, "MUG")
    with pytest.raises(InvalidTransition):
        await cancel(db, tenant, done.id)
    assert await points(db, tenant, m) == (800, 0)
    assert await violations(db, tenant) == []


async def test_timeout_releases_the_hold_and_restores_stock(
    db: Database, tenant: TenantInfo
) -> None:
    await configure(db, tenant)
    m = await new_member(db, tenant, "E1")
    r = await redeem(db, tenant, m, "MUG", "points_cash")
    assert await expire(db, tenant, T0 + timedelta(minutes=14)) == 0
    # the window has closed but no sweep ran yet: payment is refused all the same
    with pytest.raises(InvalidTransition):
        await confirm(db, tenant, r.id, "PAY-T", 990, T0 + timedelta(minutes=15))
    assert await expire(db, tenant, T0 + timedelta(minutes=16)) == 1
    assert await expire(db, tenant, T0 + timedelta(minutes=17)) == 0
    e = await get(db, tenant, r.id)
    assert e is not None and (e.status, e.resolved_at) == (
        "expired",
        T0 + timedelta(minutes=16),
    )
    assert await points(db, tenant, m) == (1000, 0)
    assert await taken(db, tenant, "MUG") == 0
    with pytest.raises(InvalidTransition):
        await confirm(db, tenant, r.id, "PAY-T", 990, T0 + timedelta(minutes=17))
    assert (await cancel(db, tenant, r.id)).status == "expired"  # a no-op
    assert await violations(db, tenant) == []


async def test_redeem_sweeps_stuck_stock_of_the_same_reward(
    db: Database, tenant: TenantInfo
) -> None:
    await configure(db, tenant)
    a = await new_member(db, tenant, "W1")
    b = await new_member(db, tenant, "W2")
    first = await redeem(db, tenant, a, "ONE", "points_cash")
    with pytest.raises(NotEligible) as sold_out:
        await redeem(db, tenant, b, "ONE", "points_cash", now=T0 + timedelta(minutes=5))
    assert sold_out.value.reason == "OUT_OF_STOCK"
    # offers already count the unpaid, overdue unit as available again
    assert (await offer(db, tenant, b, "ONE", T0 + timedelta(minutes=20))).stock_left == 1
    second = await redeem(db, tenant, b, "ONE", "points_cash", now=T0 + timedelta(minutes=20))
    assert second.status == "awaiting_payment"
    assert (await get(db, tenant, first.id)).status == "expired"  # type: ignore[union-attr]
    assert await points(db, tenant, a) == (1000, 0)
    assert await points(db, tenant, b) == (990, 10)
    assert await taken(db, tenant, "ONE") == 1
    assert await violations(db, tenant) == []


async def test_the_ledger_sweeper_releasing_the_hold_first_is_harmless(
    db: Database, tenant: TenantInfo
) -> None:
    await configure(db, tenant)
    m = await new_member(db, tenant, "E2")
    r = await redeem(db, tenant, m, "MUG", "points_cash")
    async with db.tenant_tx(tenant.id) as tx:
        report = await ledger.expire_due(tx, now=T0 + timedelta(minutes=16))
    assert report.holds_expired == 1
    with pytest.raises(InvalidTransition):
        await confirm(db, tenant, r.id, "PAY-E", 990, T0 + timedelta(minutes=10))
    assert await expire(db, tenant, T0 + timedelta(minutes=16)) == 1
    assert await points(db, tenant, m) == (1000, 0)
    assert await taken(db, tenant, "MUG") == 0
    assert await violations(db, tenant) == []


async def test_confirm_after_the_reward_left_the_catalog(db: Database, tenant: TenantInfo) -> None:
    await configure(db, tenant)
    m = await new_member(db, tenant, "K1")
    r = await redeem(db, tenant, m, "MUG", "points_cash")
    doc = {**DOC, "mall": {"rewards": DOC["mall"]["rewards"][1:]}}
    await configure(db, tenant, doc)
    done = await confirm(db, tenant, r.id, "PAY-K", 990)
    assert done.status == "completed"
    (g,) = await grants(db, tenant, m)
    assert (g.kind, g.code) == ("physical", "MUG-2026")


# ---- idempotency, dry run, reads, isolation -------------------------------------------------


async def test_redeem_is_idempotent_on_its_key(db: Database, tenant: TenantInfo) -> None:
    await configure(db, tenant)
    m = await new_member(db, tenant, "I1")
    r = await redeem(db, tenant, m, "MUG", "points_cash", key="order-1")
    again = await redeem(db, tenant, m, "MUG", "points_cash", key="order-1")
    assert again.replayed and again.id == r.id and replace(again, replayed=False) == r
    assert await points(db, tenant, m) == (900, 100)
    assert await taken(db, tenant, "MUG") == 1
    with pytest.raises(IdempotencyKeyReused):
        await redeem(db, tenant, m, "MUG", "points", key="order-1")
    with pytest.raises(IdempotencyKeyReused):
        await redeem(db, tenant, m, "MUG", "points_cash", key="order-1", quantity=2)
    await confirm(db, tenant, r.id, "PAY-I", 990)
    # a replay after the state moved on reports the current state, even past the window
    late = await redeem(db, tenant, m, "MUG", "points_cash", key="order-1", now=T0 + timedelta(1))
    assert late.replayed and late.status == "completed"
    assert await points(db, tenant, m) == (900, 0)
    assert await violations(db, tenant) == []


async def test_dry_run_changes_nothing(db: Database, tenant: TenantInfo) -> None:
    await configure(db, tenant)
    m = await new_member(db, tenant, "D1")
    trial = await redeem(db, tenant, m, "MUG", "points", key="dry", dry_run=True)
    assert (trial.status, trial.points, trial.grant_id is not None) == ("completed", 200, True)
    assert await points(db, tenant, m) == (1000, 0)
    assert await taken(db, tenant, "MUG") == 0
    assert await grants(db, tenant, m) == []
    async with db.tenant_tx(tenant.id, write=False) as tx:
        assert await mall.redemptions_for(tx, m) == []
    with pytest.raises(NotEligible):
        await redeem(db, tenant, m, "TRIAL", dry_run=True)
    real = await redeem(db, tenant, m, "MUG", "points", key="dry")  # the key is still free
    assert not real.replayed and real.status == "completed"
    assert await violations(db, tenant) == []


async def test_reads(db: Database, tenant: TenantInfo) -> None:
    await configure(db, tenant)
    m = await new_member(db, tenant, "Q1")
    r1 = await redeem(db, tenant, m, "MUG", now=T0)
    r2 = await redeem(db, tenant, m, "HALF", "points_cash", now=T0 + timedelta(minutes=1))
    async with db.tenant_tx(tenant.id, write=False) as tx:
        assert [r.id for r in await mall.redemptions_for(tx, m)] == [r2.id, r1.id]
        assert [r.id for r in await mall.redemptions_for(tx, m, limit=1)] == [r2.id]
        found = await mall.get_redemptions(tx, [r1.id, r2.id, uuid.uuid4()])
        assert set(found) == {r1.id, r2.id} and found[r2.id].status == "awaiting_payment"
        everything = await mall.offers(tx, m, registry=REG, now=T0)
    assert [o.reward.code for o in everything] == [r["code"] for r in DOC["mall"]["rewards"]]


async def test_tenant_isolation(db: Database, tenant: TenantInfo, other_tenant: TenantInfo) -> None:
    await configure(db, tenant)
    await configure(db, other_tenant)
    a = await new_member(db, tenant, "ISO")
    b = await new_member(db, other_tenant, "ISO")
    r = await redeem(db, tenant, a, "MUG", "points_cash", key="same-key")
    # the other tenant cannot see, pay or cancel it, nor act for tenant A's member
    async with db.tenant_tx(other_tenant.id, write=False) as tx:
        assert await mall.get_redemptions(tx, [r.id]) == {}
        assert await mall.redemptions_for(tx, a) == []
        with pytest.raises(NotFound):
            await mall.offers(tx, a, registry=REG, now=T0)
    with pytest.raises(NotFound):
        await confirm(db, other_tenant, r.id, "PAY-X", 990)
    with pytest.raises(NotFound):
        await cancel(db, other_tenant, r.id)
    with pytest.raises(NotFound):
        await redeem(db, other_tenant, a, "MUG")
    # keys and stock are per tenant
    rb = await redeem(db, other_tenant, b, "MUG", "points_cash", key="same-key")
    assert rb.id != r.id and not rb.replayed
    assert await taken(db, tenant, "MUG") == 1 and await taken(db, other_tenant, "MUG") == 1
    assert await expire(db, other_tenant, T0 + timedelta(hours=1)) == 1
    assert (await get(db, tenant, r.id)).status == "awaiting_payment"  # type: ignore[union-attr]
    assert await violations(db, tenant) == [] and await violations(db, other_tenant) == []


async def test_a_tenant_without_a_catalog_offers_nothing(db: Database, tenant: TenantInfo) -> None:
    m = await new_member(db, tenant, "N1")
    async with db.tenant_tx(tenant.id, write=False) as tx:
        assert await mall.offers(tx, m, registry=REG, now=T0) == []
    with pytest.raises(NotFound):
        await redeem(db, tenant, m, "MUG")


async def test_price_uses_the_tier_the_member_has_now(db: Database, tenant: TenantInfo) -> None:
    """Stored tier state can lag (no event since a review or override end fell due); the price
    follows the policy evaluated at ``now``, and reading a price stores nothing."""
    joined_early = await new_member(db, tenant, "N2")  # before the tenant had tiers: no state
    async with db.tenant_tx(tenant.id) as tx:
        await ledger.credit(
            tx,
            member_id=joined_early,
            account="growth",
            amount=120,
            reason="seed",
            source="test",
            idem_key="growth-N2",
            now=T0 - timedelta(days=1),
        )
    await configure(db, tenant)
    lapsed = await new_member(db, tenant, "N3")
    async with db.tenant_tx(tenant.id) as tx:
        state = await engine.load_tier_state(tx, lapsed)
        override = replace(state, override="gold", override_until=T0 - timedelta(hours=1))
        await engine.save_tier(tx, lapsed, override, T0 - timedelta(days=2))
    assert option(await offer(db, tenant, joined_early, "MUG"), "points").points == 150
    assert option(await offer(db, tenant, lapsed, "MUG"), "points").points == 200
    early = T0 - timedelta(days=1)
    assert option(await offer(db, tenant, lapsed, "MUG", early), "points").points == 150
    async with db.tenant_tx(tenant.id, write=False) as tx:
        assert (await engine.load_tier_state(tx, joined_early)).tier is None


async def test_a_one_id_merge_between_redeem_and_payment(db: Database, tenant: TenantInfo) -> None:
    """The survivor gets the reward, sees the redemption and inherits the loser's limits."""
    await configure(db, tenant)
    loser = await new_member(db, tenant, "MG1")
    survivor = await new_member(db, tenant, "MG2")
    r = await redeem(db, tenant, loser, "LTD", "points_cash")
    async with db.tenant_tx(tenant.id) as tx:
        await members.merge(tx, survivor_id=survivor, loser_id=loser, reason="same person")
    done = await confirm(db, tenant, r.id, "PAY-M", 100)
    assert done.status == "completed"
    (g,) = await grants(db, tenant, survivor)
    assert g.source == f"redemption:{r.id}"
    async with db.tenant_tx(tenant.id, write=False) as tx:
        assert [x.id for x in await mall.redemptions_for(tx, survivor)] == [r.id]
    with pytest.raises(NotEligible) as limited:  # per_member 1, already used under the old id
        await redeem(db, tenant, survivor, "LTD", "points_cash")
    assert limited.value.reason == "MEMBER_LIMIT"
    via_old_id = await redeem(db, tenant, loser, "MUG")  # an old id resolves to the survivor
    assert via_old_id.member_id == survivor
    assert await violations(db, tenant) == []

"""Coupon statistics equal the figures recomputed independently, in plain Python, from the raw
orders the test generated: random orders across channels and stores using one or two coupons,
some refunded (returnable coupons come back and are used again, others stay used), some coupons
never used until their fixed window ends. Checked for the whole history and for windows."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway import coupons
from gateway.coupons.model import Order, OrderLine
from gateway.errors import InvalidInput, NotEligible
from gateway.storage.db import Database
from gateway.tenants import TenantInfo
from tests.test_coupons import new_member

T0 = datetime(2026, 3, 10, 4, tzinfo=UTC)
CHANNELS = ("pos", "tmall", "miniapp")
STORES = ("S1", "S2", None)


@dataclass
class RawCoupon:
    code: str
    template: str
    issued_at: datetime
    valid_until: datetime
    used_on: RawOrder | None = None  # the order it is currently redeemed on
    discount: int = 0


@dataclass
class RawOrder:
    ref: str
    channel: str
    store: str | None
    total: int
    at: datetime
    coupons: list[RawCoupon] = field(default_factory=list)


def discount_of(template: str, total: int) -> int:
    """The discount, as the templates below define it (independently of gateway.coupons)."""
    if template == "A":
        return min(300, total)
    if template == "B":
        return min(-(-total * 10 // 100), 2000)
    return min(200, total)


def expected(
    raw: list[RawCoupon],
    template: str,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
) -> dict[str, Any]:
    def inside(at: datetime) -> bool:
        return (since is None or at >= since) and (until is None or at < until)

    mine = [c for c in raw if c.template == template]
    issued = sum(1 for c in mine if inside(c.issued_at))
    used = [c for c in mine if c.used_on is not None and inside(c.used_on.at)]
    expired = sum(
        1 for c in mine if c.used_on is None and c.valid_until <= now and inside(c.valid_until)
    )

    def figures(cs: list[RawCoupon]) -> tuple[int, int, int, int]:
        orders = {c.used_on.ref: c.used_on.total for c in cs if c.used_on is not None}
        return len(cs), len(orders), sum(orders.values()), sum(c.discount for c in cs)

    def split(key: Any) -> list[coupons.Slice]:
        groups: dict[Any, list[RawCoupon]] = defaultdict(list)
        for c in used:
            groups[key(c.used_on)].append(c)
        ordered = sorted(groups, key=lambda k: (k is None, k or ""))
        return [coupons.Slice(k, *figures(groups[k])) for k in ordered]

    redeemed, orders, revenue, discount = figures(used)
    return {
        "issued": issued,
        "redeemed": redeemed,
        "redemption_rate": redeemed / issued if issued else 0.0,
        "expired": expired,
        "orders": orders,
        "revenue_fen": revenue,
        "discount_fen": discount,
        "by_channel": split(lambda o: o.channel),
        "by_store": split(lambda o: o.store),
    }


async def simulate(db: Database, tenant: TenantInfo, seed: int) -> list[RawCoupon]:
    rng = random.Random(seed)
    specs: dict[str, dict[str, Any]] = {
        "A": {"kind": "amount_off", "off_fen": 300, "returnable_on_refund": True},
        "B": {
            "kind": "percent_off",
            "percent": 10,
            "cap_fen": 2000,
            "stackable": True,
            "returnable_on_refund": True,
        },
        "C": {
            "kind": "amount_off",
            "off_fen": 200,
            "validity": "fixed",
            "starts_at": T0 - timedelta(days=1),
            "ends_at": T0 + timedelta(days=5),
            "valid_days": None,
        },
    }
    async with db.tenant_tx(tenant.id) as tx:
        for code, spec in specs.items():
            base = {"validity": "relative", "valid_days": 30, "threshold_fen": 0}
            await coupons.create_template(tx, code=code, title=code, now=T0, **{**base, **spec})
    people = [await new_member(db, tenant, f"card-{i}") for i in range(6)]
    raw: list[RawCoupon] = []
    for i, m in enumerate(people):
        for template, n in (("A", 3), ("B", 3), ("C", 2)):
            for j in range(n):
                at = T0 + timedelta(days=(i + j) % 4, minutes=i)
                async with db.tenant_tx(tenant.id) as tx:
                    c = await coupons.issue(
                        tx, template, m, source="test", idem_key=f"{m}-{template}-{j}", now=at
                    )
                raw.append(RawCoupon(c.code, template, c.issued_at, c.valid_until))

    orders: list[RawOrder] = []
    refunds: list[tuple[datetime, RawOrder]] = []
    for k in range(1, 61):
        at = T0 + timedelta(hours=3 * k)
        for due, o in [r for r in refunds if r[0] <= at]:
            refunds.remove((due, o))
            for c in o.coupons:
                async with db.tenant_tx(tenant.id) as tx:
                    try:
                        back = await coupons.return_on_refund(tx, c.code, o.ref, now=due)
                    except NotEligible as exc:
                        assert (exc.reason, c.template) == ("NOT_RETURNABLE", "C")
                        continue
                assert back is True
                c.used_on, c.discount = None, 0
        free = [c for c in raw if c.used_on is None and c.issued_at <= at < c.valid_until]
        o = RawOrder(
            f"O-{k}", rng.choice(CHANNELS), rng.choice(STORES), rng.randint(1000, 50_000), at
        )
        stackable = [c for c in free if c.template == "B"]
        if stackable and rng.random() < 0.4:
            use = rng.sample(stackable, min(len(stackable), rng.choice((1, 2))))
        elif free:
            use = [rng.choice(free)]
        else:
            continue
        for c in use:
            order = Order(o.channel, o.store, [OrderLine("tea", o.total)], o.total)
            async with db.tenant_tx(tenant.id) as tx:
                d = await coupons.redeem(
                    tx, c.code, order, order_ref=o.ref, idem_key=f"{o.ref}-{c.code}", now=at
                )
            assert d.discount_fen == discount_of(c.template, o.total)
            c.used_on, c.discount = o, d.discount_fen
            o.coupons.append(c)
        orders.append(o)
        if rng.random() < 0.25:
            refunds.append((at + timedelta(hours=1), o))
    assert any(c.used_on is None and c.template == "C" for c in raw)  # some will expire
    return raw


@pytest.mark.parametrize("seed", [11, 12])
async def test_stats_equal_an_independent_recount(
    db: Database, tenant: TenantInfo, seed: int
) -> None:
    raw = await simulate(db, tenant, seed)
    now = T0 + timedelta(days=12)
    windows = [
        (None, None),
        (T0 + timedelta(days=1), T0 + timedelta(days=3)),
        (T0 + timedelta(days=3), None),
        (None, T0 + timedelta(days=5, hours=1)),
    ]

    async def check() -> None:
        for template in ("A", "B", "C"):
            for since, until in windows:
                async with db.tenant_tx(tenant.id, write=False) as tx:
                    st = await coupons.template_stats(
                        tx, template, since=since, until=until, now=now
                    )
                got = {k: getattr(st, k) for k in expected(raw, "A", None, None, now)}
                assert got == expected(raw, template, since, until, now), (template, since)

    await check()
    assert (await coupons.sweep(db, tenant.id, now=now, notify_days=0)).expired > 0
    await check()  # marking them expired changes nothing in the figures


async def test_stats_reject_bad_windows(db: Database, tenant: TenantInfo) -> None:
    async with db.tenant_tx(tenant.id) as tx:
        await coupons.create_template(
            tx, code="W", title="W", kind="gift", gift_sku="MUG", validity="relative", valid_days=3
        )
        st = await coupons.template_stats(tx, "W")
        assert (st.issued, st.redemption_rate, st.by_channel) == (0, 0.0, [])
        with pytest.raises(InvalidInput):
            await coupons.template_stats(tx, "W", since=T0, until=T0)
        with pytest.raises(InvalidInput):
            await coupons.template_stats(tx, "W", since=T0.replace(tzinfo=None))

"""The partner's own tests for weekend_double, with ``plugins.testing`` (no gateway set-up).

Run them with the plugin installed next to memberhub::

    pip install -e .      # registers the memberhub.rules entry point
    pytest tests
"""

from datetime import UTC, datetime, timedelta, timezone

from memberhub_weekend_points import NAME, WeekendDouble

from gateway.rules.hookspecs import Grant, Intent
from plugins.testing import RuleLab, activity, check_config, evaluate, order_paid, snapshot

CST = timezone(timedelta(hours=8))
SATURDAY = datetime(2026, 6, 20, 10, tzinfo=CST)
MONDAY = datetime(2026, 6, 22, 10, tzinfo=CST)
CONFIG = {
    "earning": [
        {"rule": "points_per_yuan"},
        {"rule": NAME, "config": {"multiplier_pct": 200, "tasting": "OOLONG"}},
    ],
    "mall": {
        "rewards": [
            {
                "code": "TASTING",
                "title": "Tea tasting for two",
                "kind": "tea_tasting",
                "options": {"points": {"points": 500}},
            }
        ]
    },
}


# ---- pure ---------------------------------------------------------------------------------------


def test_weekend_orders_earn_the_extra() -> None:
    rs = WeekendDouble()
    order = order_paid(12_345, at=SATURDAY, external_id="TM-1")
    assert evaluate(rs, snapshot(), order, {}) == [
        Intent("points", 123, "weekend bonus on order TM-1", NAME)
    ]
    assert evaluate(rs, snapshot(), order_paid(12_345, at=MONDAY), {}) == []
    triple = evaluate(rs, snapshot(), order_paid(10_000, at=SATURDAY), {"multiplier_pct": 300})
    assert [(i.account, i.amount) for i in triple] == [("points", 200)]


def test_the_day_is_the_tenants_local_day() -> None:
    # Friday 17:30 UTC is already Saturday 01:30 in Shanghai, still Friday in Lisbon.
    friday_utc = datetime(2026, 6, 19, 17, 30, tzinfo=UTC)
    order = order_paid(10_000, at=friday_utc)
    assert evaluate(WeekendDouble(), snapshot(timezone="Asia/Shanghai"), order) != []
    assert evaluate(WeekendDouble(), snapshot(timezone="Europe/Lisbon"), order) == []


def test_weekend_store_visits_grant_a_tasting() -> None:
    visit = activity("store.visited", at=SATURDAY, store_code="HZ01")
    got = evaluate(WeekendDouble(), snapshot(), visit, {"tasting": "OOLONG"})
    assert got == [Grant("tea_tasting:OOLONG", "weekend store visit", NAME)]


def test_config_validation() -> None:
    assert check_config(CONFIG) == []
    bad = {"earning": [{"rule": NAME, "config": {"multiplier_pct": 100, "days": [6, 6]}}]}
    problems = check_config(bad)
    assert problems == [("earning[0].config.multiplier_pct", "100 is less than the minimum of 101")]
    assert check_config({"earning": [{"rule": NAME, "config": {"days": [6, 6]}}]}) == [
        ("earning[0].config", "days: each weekday at most once")
    ]


# ---- the lab: the real engine -------------------------------------------------------------------


async def test_in_the_lab() -> None:
    async with RuleLab.open(CONFIG) as lab:
        ann = await lab.join("ann", at=SATURDAY - timedelta(days=30))
        await lab.order(ann, 10_000, at=SATURDAY)
        assert await lab.balances(ann, at=SATURDAY) == {"points": 200, "growth": 100}
        await lab.order(ann, 10_000, at=MONDAY)
        assert await lab.balances(ann, at=MONDAY) == {"points": 300, "growth": 200}
        await lab.activity(ann, "store.visited", at=SATURDAY, key="visit-1", store_code="HZ01")
        await lab.activity(ann, "store.visited", at=SATURDAY, key="visit-1", store_code="HZ01")
        assert await lab.grants(ann) == [("tea_tasting", "OOLONG", NAME)]
        assert await lab.violations() == []

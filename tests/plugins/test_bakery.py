"""The ``bakery`` plugin (Levain & Co.): pure rule-set tests, config validation, and a year of
purchases and interactions through the real engine, task engine, tier policy and points mall."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml

from gateway.errors import NotEligible
from gateway.mall import service as mall
from gateway.rules import config as rule_config
from gateway.rules.hookspecs import Grant, Intent, StreakBonus, TierView
from plugins import bakery
from plugins.bakery.benefits import BakeryJoinGift
from plugins.bakery.earning import BakeryEarning
from plugins.bakery.expiry import BakeryExpiry
from plugins.bakery.tasks import BakeryTasks
from plugins.bakery.tiers import BakeryTiers
from plugins.testing import (
    RuleLab,
    activity,
    check_config,
    evaluate,
    order_paid,
    registry,
    snapshot,
)
from tests.plugins.support import lines_of, sh

EXAMPLE = Path(bakery.__file__).with_name("config.example.yaml")
DEFAULTS_ONLY = {
    "tiers": {"rule": "bakery_tiers"},
    "expiry": {"rule": "bakery_expiry"},
    "earning": [{"rule": "bakery_earning"}],
    "tasks": [{"rule": "bakery_tasks"}],
    "benefits": [{"rule": "bakery_join_gift"}],
}
WELCOME = ("coupon", "LEVAIN-WELCOME-CROISSANT", "bakery_join_gift")

CRUMB = TierView("crumb", "Crumb", 0, 100)
LOAF = TierView("loaf", "Loaf", 1, 110)
BRIOCHE = TierView("brioche", "Brioche", 2, 125, 9_500)
CROISSANT = TierView("croissant", "Croissant d'Or", 3, 150, 9_000)


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


# ---- the package and its configs ------------------------------------------------------------


def test_registers_rule_sets_event_types_and_reward_kinds():
    reg = registry()
    for name, slot in [
        ("bakery_tiers", "tiers"),
        ("bakery_earning", "earning"),
        ("bakery_expiry", "expiry"),
        ("bakery_tasks", "tasks"),
        ("bakery_join_gift", "benefits"),
    ]:
        rs = reg.get(name)
        assert rs is not None and rs.slot == slot
        assert rs.description and bakery.__doc__ and name in bakery.__doc__
        jsonschema.Draft202012Validator.check_schema(rs.config_schema)
    assert reg.event_types["bakery.class_attended"].payload["class_code"]
    assert reg.reward_kinds["bakery_voucher"].fulfilment == "store"
    assert reg.reward_kinds["baking_class"].fulfilment == "plugin"


def test_example_config_and_defaults_only_config_are_accepted():
    assert check_config(example()) == []
    assert check_config(DEFAULTS_ONLY) == []
    doc = example()
    spelled = BakeryTiers().policy(doc["tiers"]["config"])
    assert spelled == BakeryTiers().policy({})
    assert BakeryTasks().tasks(doc["tasks"][0]["config"]) == BakeryTasks().tasks({})
    rewards = doc["mall"]["rewards"]
    assert {m for r in rewards for m in r["options"]} == {"points", "points_cash", "cash"}
    assert {"bakery_voucher", "baking_class"} <= {r["kind"] for r in rewards}
    assert any("tier_prices" in o for r in rewards for o in r["options"].values())


def test_join_gift_declares_priority_and_stacking_and_the_config_may_reprioritise():
    assert (BakeryJoinGift.priority, BakeryJoinGift.stacking) == (50, "stack")
    reg = registry()
    parsed = rule_config.validate(DEFAULTS_ONLY, reg)
    assert parsed.slot("benefits")[0].priority == 50
    doc = {**DEFAULTS_ONLY, "benefits": [{"rule": "bakery_join_gift", "priority": 5}]}
    assert rule_config.validate(doc, reg).slot("benefits")[0].priority == 5


@pytest.mark.parametrize(
    ("slot", "entry", "expected"),
    [
        (
            "tiers",
            {"rule": "bakery_tiers", "config": {"thresholds": {"baguette": 10}}},
            ("tiers.config", "thresholds: there is no tier 'baguette' in the ladder"),
        ),
        (
            "tiers",
            {"rule": "bakery_tiers", "config": {"keep": {"brioche": 700, "croissant": 600}}},
            ("tiers.config", "keep thresholds must not decrease (brioche → croissant)"),
        ),
        (
            "tiers",
            {
                "rule": "bakery_tiers",
                "config": {"ladder": [{"code": "crumb", "name": "Crumb", "threshold": 0}]},
            },
            ("tiers.config.ladder", "is too short"),
        ),
        (
            "tiers",
            {"rule": "bakery_tiers", "config": {"months": 0}},
            ("tiers.config.months", "0 is less than the minimum of 1"),
        ),
        (
            "expiry",
            {"rule": "bakery_expiry", "config": {"months": 0}},
            ("expiry.config.months", "0 is less than the minimum of 1"),
        ),
        (
            "expiry",
            [{"rule": "bakery_expiry"}, {"rule": "classic_expiry"}],
            (
                "expiry",
                "slot 'expiry' is exclusive: one rule set, got bakery_expiry, classic_expiry",
            ),
        ),
        (
            "earning",
            [{"rule": "bakery_earning", "config": {"growth_per_yuan": -1}}],
            ("earning[0].config.growth_per_yuan", "-1 is less than the minimum of 0"),
        ),
        (
            "tasks",
            [{"rule": "bakery_tasks", "config": {"checkin": {"streak": [{"days": 1}]}}}],
            ("tasks[0].config.checkin.streak.0.days", "1 is less than the minimum of 2"),
        ),
        (
            "tasks",
            [
                {
                    "rule": "bakery_tasks",
                    "config": {"checkin": {"streak": [{"days": 3}, {"days": 3, "points": 1}]}},
                }
            ],
            ("tasks[0].config", "checkin: two streak bonuses for the same day count [3, 3]"),
        ),
        (
            "tasks",
            [{"rule": "bakery_tasks", "config": {"post": {"per_day": 0}}}],
            ("tasks[0].config.post.per_day", "0 is less than the minimum of 1"),
        ),
        (
            "tasks",
            [{"rule": "bakery_tasks", "config": {"post": {"points": 0, "growth": 0}}}],
            ("tasks[0].config", "post: rewards neither points nor growth (use enabled: false"),
        ),
        (
            "tasks",
            [{"rule": "bakery_tasks", "config": {"profile": {"fields": ["name", "email"]}}}],
            ("tasks[0].config.profile.fields.1", "'email' is not one of"),
        ),
        (
            "tasks",
            [{"rule": "bakery_tasks", "config": {"share": {"points": 5}}}],
            ("tasks[0].config", "Additional properties are not allowed ('share'"),
        ),
        (
            "tasks",
            [
                {
                    "rule": "bakery_tasks",
                    "config": {
                        k: {"enabled": False}
                        for k in ("checkin", "post", "follow", "profile", "class")
                    },
                }
            ],
            ("tasks[0].config", "every task is disabled"),
        ),
        (
            "benefits",
            [{"rule": "bakery_join_gift", "config": {"gifts": ["WELCOME"]}}],
            ("benefits[0].config.gifts.0", "'WELCOME' does not match"),
        ),
        (
            "benefits",
            [{"rule": "bakery_join_gift", "config": {"gifts": [], "points": 0}}],
            ("benefits[0].config", "a join gift needs at least one of gifts or points"),
        ),
        (
            "benefits",
            [{"rule": "bakery_join_gift", "priority": "high"}],
            ("benefits[0].priority", "must be an integer"),
        ),
    ],
)
def test_invalid_configs_are_rejected_with_clear_problems(slot, entry, expected):
    problems = check_config({**DEFAULTS_ONLY, slot: entry})
    assert len(problems) == 1, problems
    path, message = problems[0]
    assert path == expected[0]
    assert expected[1] in message, message


def test_a_mall_naming_an_unregistered_kind_is_rejected():
    doc = example()
    doc["mall"]["rewards"][0]["kind"] = "cake_voucher"
    ((path, message),) = check_config(doc)
    assert path == "mall.rewards[0].kind"
    assert "unknown reward kind 'cake_voucher'" in message and "bakery_voucher" in message


# ---- pure rule sets ---------------------------------------------------------------------------


def test_default_policy_rolling_twelve_months_recalculated():
    p = BakeryTiers().policy({})
    assert [(t.code, t.name, t.threshold, t.keep_threshold, t.multiplier_pct) for t in p.tiers] == [
        ("crumb", "Crumb", 0, 0, 100),
        ("loaf", "Loaf", 300, 240, 110),
        ("brioche", "Brioche", 1_000, 800, 125),
        ("croissant", "Croissant d'Or", 3_000, 2_400, 150),
    ]
    assert (p.measure, p.period, p.months, p.downgrade) == (
        "period",
        "rolling",
        12,
        "recalculate",
    )
    p = BakeryTiers().policy({"period": "anniversary", "downgrade": "one_step"})
    assert (p.period, p.downgrade) == ("anniversary", "one_step")


@pytest.mark.parametrize(
    ("tier", "points"), [(CRUMB, 99), (LOAF, 108), (BRIOCHE, 123), (CROISSANT, 148)]
)
def test_earning_multiplies_points_by_tier_and_rounds_down(tier, points):
    out = evaluate(BakeryEarning(), snapshot(tier=tier), order_paid(99_99, external_id="B-1"), {})
    assert [(i.account, i.amount) for i in out] == [("points", points), ("growth", 99)]
    assert out[1].reason == "Order B-1 added 99 growth towards your next tier (99 yuan)."


def test_prepaid_cards_earn_nothing_when_bought_by_default():
    rs = BakeryEarning()
    lines = [
        {"sku": "CARD-200", "category": "gift_card", "quantity": 1, "amount_fen": 200_00},
        {"sku": "CAKE", "category": "cake", "quantity": 1, "amount_fen": 388_00},
    ]
    event = order_paid(588_00, lines=lines, external_id="B-2")
    out = evaluate(rs, snapshot(tier=LOAF), event, {})
    assert [(i.account, i.amount) for i in out] == [("points", 426), ("growth", 388)]
    assert out[0].reason == (
        "You earned 426 points for order B-2: 388 yuan (the eligible part of 588.00 yuan) "
        "at 1 point per yuan, ×1.1 for Loaf members."
    )
    # A brand that does reward card sales says so.
    out = evaluate(rs, snapshot(tier=LOAF), event, {"exclude_categories": []})
    assert [i.amount for i in out] == [646, 588]
    assert evaluate(rs, snapshot(), order_paid(200_00, lines=lines[:1]), {}) == []
    assert evaluate(rs, snapshot(), activity("community.posted"), {}) == []


def test_points_expire_at_a_month_end_in_shanghai():
    rs = BakeryExpiry()
    assert rs.expires_at(sh(2026, 1, 12, 9), "points", "Asia/Shanghai", {}) == sh(2027, 2, 1)
    assert rs.expires_at(sh(2026, 12, 24), "points", "Asia/Shanghai", {}) == sh(2028, 1, 1)
    # 00:30 on 1 February in Shanghai, still 31 January in UTC: a February point.
    feb_first = datetime(2026, 1, 31, 16, 30, tzinfo=UTC)
    assert rs.expires_at(feb_first, "points", "Asia/Shanghai", {}) == sh(2027, 3, 1)
    assert rs.expires_at(feb_first, "points", "UTC", {}) == datetime(2027, 2, 1, tzinfo=UTC)
    assert rs.expires_at(sh(2026, 11, 5), "points", "Asia/Shanghai", {"months": 3}) == sh(
        2027, 3, 1
    )
    assert rs.expires_at(sh(2026, 11, 5), "growth", "Asia/Shanghai", {}) is None


def test_join_gift():
    rs = BakeryJoinGift()
    joined = activity("member.joined", channel="miniprogram")
    (gift,) = evaluate(rs, snapshot(), joined, {})
    assert isinstance(gift, Grant)
    assert (gift.reward, gift.kind, gift.code, gift.rule) == (
        "coupon:LEVAIN-WELCOME-CROISSANT",
        "coupon",
        "LEVAIN-WELCOME-CROISSANT",
        "bakery_join_gift",
    )
    assert gift.reason == "Welcome to Levain & Co.! Your join gift is waiting in your account."
    config = {"gifts": ["bakery_voucher:FREE-BAGUETTE"], "points": 88, "channels": ["miniprogram"]}
    out = evaluate(rs, snapshot(), joined, config)
    assert [o.reward if isinstance(o, Grant) else (o.account, o.amount) for o in out] == [
        "bakery_voucher:FREE-BAGUETTE",
        ("points", 88),
    ]
    assert isinstance(out[1], Intent) and out[1].kind == "bonus"
    assert evaluate(rs, snapshot(), activity("member.joined", channel="pos"), config) == []
    assert evaluate(rs, snapshot(), order_paid(100_00), {}) == []
    assert evaluate(rs, snapshot(), activity("tier.changed", to="loaf"), {}) == []


def test_task_definitions_follow_the_config():
    by_code = {t.code: t for t in BakeryTasks().tasks({})}
    assert list(by_code) == ["checkin", "post", "follow", "profile", "class"]
    checkin = by_code["checkin"]
    assert (checkin.kind, checkin.points, checkin.growth) == ("checkin", 5, 1)
    assert checkin.streak == (StreakBonus(3, 10, 3), StreakBonus(7, 30, 10, repeat=True))
    post = by_code["post"]
    assert (post.kind, post.event, post.per_day, post.per_period) == (
        "count",
        "community.posted",
        2,
        None,
    )
    assert (by_code["follow"].kind, by_code["follow"].event) == ("once", "wechat.followed")
    assert by_code["profile"].fields == ("name", "birthday", "city")
    klass = by_code["class"]
    assert (klass.event, klass.per_period, klass.period) == ("bakery.class_attended", 2, "month")
    tuned = BakeryTasks().tasks(
        {
            "post": {"per_day": 5, "per_month": 40, "channels": ["app"]},
            "follow": {"enabled": False},
            "checkin": {"streak": []},
        }
    )
    by_code = {t.code: t for t in tuned}
    assert "follow" not in by_code
    assert (by_code["post"].per_day, by_code["post"].per_period) == (5, 40)
    assert by_code["post"].channels == ("app",)
    assert by_code["checkin"].streak == ()


# ---- the engine: a bakery's year ----------------------------------------------------------------


async def test_a_year_of_purchases_and_interactions():
    async with RuleLab.open(example()) as lab:
        fay = await lab.join("fay", at=sh(2026, 1, 3, 10), channel="miniprogram")
        await lab.activity(fay, "wechat.followed", at=sh(2026, 1, 3, 10, 5), channel="mp")
        await lab.activity(
            fay,
            "member.profile_updated",
            at=sh(2026, 1, 3, 10, 10),
            fields=["name", "birthday", "city"],
        )
        for day in range(4, 11):  # a 7-day streak: bonuses on day 3 and day 7
            await lab.activity(fay, "task.checkin", at=sh(2026, 1, day, 8), channel="miniprogram")
        await lab.order(fay, 188_80, at=sh(2026, 1, 12, 12))  # crumb ×1.0
        for minute in (1, 2, 3):  # the third post of the day earns nothing
            await lab.activity(fay, "community.posted", at=sh(2026, 1, 20, 19, minute))
        gus = await lab.join("gus", at=sh(2026, 2, 1, 10))
        await lab.order(fay, 120_00, at=sh(2026, 2, 14, 12))  # 364 growth → Loaf
        await lab.order(gus, 3_200_00, at=sh(2026, 3, 1, 12))  # crumb → Croissant d'Or at once
        await lab.activity(fay, "bakery.class_attended", at=sh(2026, 3, 8, 15), class_code="C1")
        hal = await lab.join("hal", at=sh(2026, 4, 1, 9), channel="app")
        await lab.order(hal, 250_00, at=sh(2026, 4, 1, 12))
        for day in range(2, 9):  # 7 check-ins: +20 growth → 270
            await lab.activity(hal, "task.checkin", at=sh(2026, 4, day, 7), channel="app")
        # The baking class takes hal to 300: an interaction upgrades, not only a purchase.
        out = await lab.activity(hal, "bakery.class_attended", at=sh(2026, 4, 9, 15))
        assert out is not None and (out.tier_before, out.tier_after) == ("crumb", "loaf")
        await lab.override(
            hal,
            "croissant",
            until=sh(2026, 5, 20),
            reason="Spoilt birthday cake",
            at=sh(2026, 4, 20),
        )
        await lab.order(hal, 100_00, at=sh(2026, 5, 1, 12))  # override: ×1.5 → 150
        report = await lab.review(at=sh(2026, 5, 21))
        assert (report.members, report.changes) == (1, {"override_expired": 1})
        assert await lab.tier(hal, at=sh(2026, 5, 21)) == "loaf"
        await lab.order(hal, 100_00, at=sh(2026, 6, 1, 12))  # loaf ×1.1 → 110
        cake_and_card = [
            {"sku": "CAKE", "category": "cake", "amount_fen": 388_00},
            {"sku": "CARD", "category": "gift_card", "amount_fen": 200_00},
        ]
        await lab.order(fay, 588_00, at=sh(2026, 6, 1, 12), lines=cake_and_card)  # 388 × 1.1
        await lab.order(fay, 300_00, at=sh(2026, 9, 9, 12))  # loaf ×1.1 → 330; 1082 → Brioche
        await lab.order(gus, 100_00, at=sh(2026, 10, 1, 12))  # croissant ×1.5 → 150
        await lab.order(fay, 200_00, at=sh(2026, 12, 24, 12))  # brioche ×1.25 → 250

        end_2026 = sh(2026, 12, 31, 23)
        assert await lab.balances(fay, at=end_2026) == {"points": 1_639, "growth": 1_282}
        # Fay's January 2026 points (433) expire at the end of January 2027, Shanghai time.
        assert (await lab.balances(fay, at=sh(2027, 1, 31, 23, 59)))["points"] == 1_639
        jan_gone = datetime(2027, 1, 31, 16, 30, tzinfo=UTC)  # 1 February 00:30 in Shanghai
        assert (await lab.balances(fay, at=jan_gone))["points"] == 1_639 - 433
        assert await lab.balances(gus, at=end_2026) == {"points": 3_350, "growth": 3_300}
        assert await lab.balances(hal, at=end_2026) == {"points": 665, "growth": 500}

        # 12 months after each tier was reached, the period's growth is reviewed.
        report = await lab.review(at=sh(2027, 3, 2))
        assert report.changes == {"kept": 1}  # gus: 3300 ≥ 2400
        report = await lab.review(at=sh(2027, 4, 10))
        assert report.changes == {"downgrade": 1}  # hal: 230 since 9 April < 240
        await lab.order(gus, 500_00, at=sh(2027, 5, 1, 12))  # croissant ×1.5 → 750
        await lab.order(fay, 400_00, at=sh(2027, 5, 1, 12))  # brioche ×1.25 → 500
        report = await lab.review(at=sh(2027, 9, 10))
        assert report.changes == {"kept": 1}  # fay: 300 + 200 + 400 ≥ 800
        report = await lab.review(at=sh(2028, 3, 2))
        assert report.changes == {"downgrade": 1}  # gus: 500 keeps Loaf, not Brioche

        assert lines_of(await lab.history(fay)) == [
            (sh(2026, 1, 3, 10), "initial", None, "crumb"),
            (sh(2026, 2, 14, 12), "upgrade", "crumb", "loaf"),
            (sh(2026, 9, 9, 12), "upgrade", "loaf", "brioche"),
            (sh(2027, 9, 9, 12), "kept", "brioche", "brioche"),
        ]
        gus_history = await lab.history(gus)
        assert lines_of(gus_history) == [
            (sh(2026, 2, 1, 10), "initial", None, "crumb"),
            (sh(2026, 3, 1, 12), "upgrade", "crumb", "croissant"),
            (sh(2027, 3, 1, 12), "kept", "croissant", "croissant"),
            (sh(2028, 3, 1, 12), "downgrade", "croissant", "loaf"),  # two tiers down
        ]
        assert gus_history[-1].reason == (
            "500 growth in the period is below Croissant d'Or's keep 2400: "
            "Croissant d'Or → Loaf (recalculated)"
        )
        assert lines_of(await lab.history(hal)) == [
            (sh(2026, 4, 1, 9), "initial", None, "crumb"),
            (sh(2026, 4, 9, 15), "upgrade", "crumb", "loaf"),
            (sh(2026, 4, 20), "override", "loaf", "croissant"),
            (sh(2026, 5, 20), "override_expired", "croissant", "loaf"),
            (sh(2027, 4, 9, 15), "downgrade", "loaf", "crumb"),
        ]

        assert sorted(await lab.grants(fay)) == sorted(
            [WELCOME, ("bakery_voucher", "BRIOCHE-TREAT", "bakery_tiers")]
        )
        assert sorted(await lab.grants(gus)) == sorted(
            [
                WELCOME,
                ("baking_class", "CROISSANT-MASTERCLASS", "bakery_tiers"),
                ("bakery_voucher", "BIRTHDAY-CAKE", "bakery_tiers"),
            ]
        )
        assert await lab.grants(hal) == [WELCOME]  # an override grants no entry gifts

        assert await lab.completions(fay) == [
            ("follow", 50, 10),
            ("profile", 100, 20),
            ("checkin", 5, 1),
            ("checkin", 5, 1),
            ("checkin", 15, 4),
            ("checkin", 5, 1),
            ("checkin", 5, 1),
            ("checkin", 5, 1),
            ("checkin", 35, 11),
            ("post", 10, 3),
            ("post", 10, 3),
            ("class", 80, 30),
        ]
        final = sh(2028, 3, 2)  # only the points of May 2027 are left (to the end of May 2028)
        assert await lab.balances(fay, at=final) == {"points": 500, "growth": 1_682}
        assert await lab.balances(gus, at=final) == {"points": 750, "growth": 3_800}
        assert await lab.violations() == []


async def test_anniversary_keep_level_with_one_step_downgrade():
    doc = {
        **example(),
        "tiers": {
            "rule": "bakery_tiers",
            "config": {"period": "anniversary", "downgrade": "one_step"},
        },
    }
    async with RuleLab.open(doc) as lab:
        joy = await lab.join("joy", at=sh(2026, 2, 1, 10))
        await lab.order(joy, 3_200_00, at=sh(2026, 3, 1, 12))  # Croissant d'Or at once
        # Not due an hour before the anniversary of reaching the tier; due on it.
        assert (await lab.review(at=sh(2027, 3, 1, 11))).changes == {}
        assert (await lab.review(at=sh(2027, 3, 1, 12))).changes == {"kept": 1}
        await lab.order(joy, 500_00, at=sh(2027, 4, 1, 12))  # ×1.5 → 750 points
        assert (await lab.review(at=sh(2028, 3, 1, 12))).changes == {"downgrade": 1}
        assert (await lab.review(at=sh(2029, 3, 1, 12))).changes == {"downgrade": 1}
        assert lines_of(await lab.history(joy)) == [
            (sh(2026, 2, 1, 10), "initial", None, "crumb"),
            (sh(2026, 3, 1, 12), "upgrade", "crumb", "croissant"),
            (sh(2027, 3, 1, 12), "kept", "croissant", "croissant"),
            (sh(2028, 3, 1, 12), "downgrade", "croissant", "brioche"),  # 500: one step only
            (sh(2029, 3, 1, 12), "downgrade", "brioche", "loaf"),
        ]
        # March 2026 points expired at the end of March 2027; the April order's are left.
        assert await lab.balances(joy, at=sh(2027, 4, 2)) == {"points": 750, "growth": 3_700}
        assert await lab.violations() == []


# ---- tasks: rewards and caps ------------------------------------------------------------------


async def test_task_rewards_streaks_and_caps():
    async with RuleLab.open(example()) as lab:
        ivy = await lab.join("ivy", at=sh(2026, 6, 1, 8), profile={"name": "Ivy"})

        async def do(type_: str, at: datetime, **payload):
            out = await lab.activity(ivy, type_, at=at, **payload)
            assert out is not None
            (step,) = out.tasks
            return step

        # Check-ins: 1-9 June, a missed day, then 11-24 June (a new streak).
        steps = []
        for day in [*range(1, 10), *range(11, 25)]:
            steps.append(await do("task.checkin", sh(2026, 6, day, 9), channel="app"))
        assert [s.points for s in steps[:9]] == [5, 5, 15, 5, 5, 5, 35, 5, 5]
        assert [s.points for s in steps[9:]] == [5, 5, 15, 5, 5, 5, 35, 5, 5, 5, 5, 5, 5, 35]
        assert [s.growth for s in steps[9:16]] == [1, 1, 4, 1, 1, 1, 11]
        assert steps[9].reason == "Daily check-in at Levain & Co.: day 1 of the streak"
        assert steps[-1].reason == (
            "Daily check-in at Levain & Co.: day 14 of the streak (+7-day streak bonus)"
        )
        again = await do("task.checkin", sh(2026, 6, 24, 21), channel="app")
        assert (again.completed, again.refused) == (False, "ALREADY_DONE_TODAY")
        # 00:10 on 25 June in Shanghai is 24 June in UTC: a new day, and the streak goes on.
        late = await do("task.checkin", datetime(2026, 6, 24, 16, 10, tzinfo=UTC), channel="app")
        assert (late.completed, late.points, late.occurrence) == (True, 5, "2026-06-25")

        # Community posts: two a day earn, the third is refused; the next local day earns again.
        posts = [await do("community.posted", sh(2026, 6, 2, 20, m)) for m in (1, 2, 3)]
        assert [(p.completed, p.refused) for p in posts] == [
            (True, None),
            (True, None),
            (False, "DAILY_LIMIT"),
        ]
        assert posts[0].reason == "Shared a post in the Levain bakers' community"
        after_midnight = await do("community.posted", datetime(2026, 6, 2, 16, 5, tzinfo=UTC))
        assert after_midnight.completed

        # Following the official account pays once; a replay of the same event pays nothing.
        assert (await do("wechat.followed", sh(2026, 6, 3, 9), channel="mp")).points == 50
        assert (await do("wechat.followed", sh(2026, 6, 9, 9), channel="mp")).refused == (
            "ALREADY_DONE"
        )
        first = await lab.activity(ivy, "community.posted", at=sh(2026, 6, 5, 9), key="post-X")
        assert first is not None and first.tasks[0].completed
        assert await lab.activity(ivy, "community.posted", at=sh(2026, 6, 5, 9), key="post-X") is (
            None
        )

        # The profile pays once every field is set (name is on file; birthday and city come now).
        partial = await do("member.profile_updated", sh(2026, 6, 4, 9), fields=["birthday"])
        assert (partial.completed, partial.refused) == (False, None)
        full = await do("member.profile_updated", sh(2026, 6, 4, 10), fields=["birthday", "city"])
        assert (full.completed, full.points, full.growth) == (True, 100, 20)
        once = await do("member.profile_updated", sh(2026, 6, 6, 10), fields=["city"])
        assert once.refused == "ALREADY_DONE"

        # Baking classes: two a month.
        classes = [
            await do("bakery.class_attended", sh(2026, 6, d, 15), class_code=f"C{d}")
            for d in (6, 13, 20)
        ]
        assert [c.refused for c in classes] == [None, None, "PERIOD_LIMIT"]
        assert (await do("bakery.class_attended", sh(2026, 7, 1, 15))).completed

        done = await lab.completions(ivy)
        by_task: dict[str, list[tuple[int, int]]] = {}
        for task, points, growth in done:
            by_task.setdefault(task, []).append((points, growth))
        assert len(by_task["checkin"]) == 24
        assert sum(p for p, _ in by_task["checkin"]) == 24 * 5 + 2 * 10 + 3 * 30
        assert sum(g for _, g in by_task["checkin"]) == 24 * 1 + 2 * 3 + 3 * 10
        assert by_task["post"] == [(10, 3)] * 4
        assert by_task["follow"] == [(50, 10)]
        assert by_task["profile"] == [(100, 20)]
        assert by_task["class"] == [(80, 30)] * 3
        points = 230 + 40 + 50 + 100 + 240
        growth = 60 + 12 + 10 + 20 + 90
        assert await lab.balances(ivy, at=sh(2026, 7, 2)) == {"points": points, "growth": growth}
        assert growth < 300 and await lab.tier(ivy, at=sh(2026, 7, 2)) == "crumb"
        assert await lab.violations() == []


# ---- the points mall --------------------------------------------------------------------------


async def test_points_mall_sells_bakery_rewards_in_all_three_modes():
    async with RuleLab.open(example()) as lab:
        kim = await lab.join("kim", at=sh(2026, 1, 5))
        await lab.order(kim, 3_000_00, at=sh(2026, 1, 6, 12))  # croissant, 3000 points
        lou = await lab.join("lou", at=sh(2026, 1, 5))
        await lab.order(lou, 200_00, at=sh(2026, 1, 6, 12))  # crumb, 200 points
        now = sh(2026, 2, 1, 10)

        offers = await lab.offers(lou, at=now)
        assert offers["TOTE"]["points"].reason == "TIER_NOT_ALLOWED"
        assert (offers["SOURDOUGH"]["points"].points, offers["SOURDOUGH"]["points"].reason) == (
            300,
            "INSUFFICIENT_POINTS",
        )
        assert offers["SOURDOUGH"]["points_cash"].eligible  # no exchange rules: open to all
        with pytest.raises(NotEligible) as refused:
            await lab.redeem(lou, "TOTE", "points", key="lou-1", at=now)
        assert refused.value.reason == "TIER_NOT_ALLOWED"

        # All points at the Croissant d'Or price (200 instead of 300): a voucher at once.
        loaf = await lab.redeem(kim, "SOURDOUGH", "points", key="kim-1", at=now)
        assert (loaf.status, loaf.points) == ("completed", 200)
        # Points + cash for a class seat at the tier price, paid by the brand's checkout.
        seat = await lab.redeem(kim, "CLASS-BAGUETTE", "points_cash", key="kim-2", at=now)
        assert (seat.status, seat.points, seat.cash_fen) == ("awaiting_payment", 500, 9_900)
        async with lab.db.tenant_tx(lab.tenant_id) as tx:
            seat = await mall.confirm_payment(
                tx, redemption_id=seat.id, payment_ref="WX-1", amount_fen=9_900, now=now
            )
        assert seat.status == "completed"
        # Cash only; the payment never comes and the 30-minute window closes.
        cash = await lab.redeem(lou, "SOURDOUGH", "cash", key="lou-2", at=now)
        assert (cash.status, cash.points, cash.cash_fen) == ("awaiting_payment", 0, 2_200)
        async with lab.db.tenant_tx(lab.tenant_id) as tx:
            assert await mall.expire_due(tx, now=now + timedelta(minutes=31)) == 1
        # Lou pays points + cash (150 points + 9 yuan) and it completes.
        mixed = await lab.redeem(lou, "SOURDOUGH", "points_cash", key="lou-3", at=now)
        async with lab.db.tenant_tx(lab.tenant_id) as tx:
            await mall.confirm_payment(
                tx, redemption_id=mixed.id, payment_ref="WX-2", amount_fen=900, now=now
            )
        # The seat is limited to one per member.
        with pytest.raises(NotEligible) as limited:
            await lab.redeem(kim, "CLASS-BAGUETTE", "points", key="kim-3", at=now)
        assert limited.value.reason == "MEMBER_LIMIT"

        later = now + timedelta(hours=1)
        assert (await lab.balances(kim, at=later))["points"] == 3_000 - 200 - 500
        assert (await lab.balances(lou, at=later))["points"] == 200 - 150
        mall_grants = sorted(g for g in await lab.grants(kim) if g[2] == "mall")
        assert mall_grants == [
            ("bakery_voucher", "VOUCHER-SOURDOUGH", "mall"),
            ("baking_class", "CLASS-BAGUETTE-2026", "mall"),
        ]
        assert [g for g in await lab.grants(lou) if g[2] == "mall"] == [
            ("bakery_voucher", "VOUCHER-SOURDOUGH", "mall")
        ]
        assert await lab.violations() == []


def test_task_titles_can_be_renamed_by_another_brand() -> None:
    from plugins.bakery.tasks import BakeryTasks

    tasks = BakeryTasks().tasks({"checkin": {"title": "Daily check-in at Lanxi Tea House"}})
    titles = {t.code: t.title for t in tasks}
    assert titles["checkin"] == "Daily check-in at Lanxi Tea House"
    assert titles["post"] == "Shared a post in the Levain bakers' community"  # the default
    assert check_config({"tasks": [{"rule": "bakery_tasks", "config": {"post": {"title": ""}}}]})

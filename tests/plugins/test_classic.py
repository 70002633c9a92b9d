"""The ``classic`` plugin (department store): pure rule-set tests, config validation, and years of
activity through the real engine, ledger, tier policy and points mall (``plugins.testing``)."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import jsonschema
import pytest
import yaml

from gateway.errors import NotEligible
from gateway.mall import service as mall
from gateway.rules.hookspecs import Intent, Quote, TierView
from plugins import classic
from plugins.classic.earning import ClassicEarning
from plugins.classic.exchange import ClassicExchange
from plugins.classic.expiry import ClassicExpiry
from plugins.classic.tiers import ClassicTiers
from plugins.testing import (
    RuleLab,
    activity,
    check_config,
    evaluate,
    order_paid,
    registry,
    snapshot,
)
from tests.plugins.support import SH, lines_of, sh

EXAMPLE = Path(classic.__file__).with_name("config.example.yaml")
DEFAULTS_ONLY = {
    "tiers": {"rule": "classic_tiers"},
    "expiry": {"rule": "classic_expiry"},
    "earning": [{"rule": "classic_earning"}],
    "exchange": [{"rule": "classic_exchange"}],
}

MEMBER = TierView("member", "Member", 0, 100, 10_000)
SILVER = TierView("silver", "Silver", 1, 120, 9_800)
GOLD = TierView("gold", "Gold", 2, 150, 9_500)
PLATINUM = TierView("platinum", "Platinum", 3, 200, 9_000)


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


# ---- the package and its configs ------------------------------------------------------------


def test_registered_through_the_entry_point_with_documented_schemas():
    reg = registry()
    for name, slot in [
        ("classic_tiers", "tiers"),
        ("classic_earning", "earning"),
        ("classic_expiry", "expiry"),
        ("classic_exchange", "exchange"),
    ]:
        rs = reg.get(name)
        assert rs is not None and rs.slot == slot
        assert rs.description and classic.__doc__ and name in classic.__doc__
        jsonschema.Draft202012Validator.check_schema(rs.config_schema)


def test_example_config_and_defaults_only_config_are_accepted():
    assert check_config(example()) == []
    assert check_config(DEFAULTS_ONLY) == []
    # The example spells out the defaults: both give the same ladder.
    spelled = ClassicTiers().policy(example()["tiers"]["config"])
    assert spelled == ClassicTiers().policy({})
    doc = example()
    modes = {m for r in doc["mall"]["rewards"] for m in r["options"]}
    assert modes == {"points", "points_cash", "cash"}
    assert any(
        "tier_prices" in opt for r in doc["mall"]["rewards"] for opt in r["options"].values()
    )


@pytest.mark.parametrize(
    ("slot", "entry", "expected"),
    [
        (
            "tiers",
            {"rule": "classic_tiers", "config": {"thresholds": {"diamond": 50_000}}},
            ("tiers.config", "thresholds: there is no tier 'diamond' in the ladder"),
        ),
        (
            "tiers",
            {"rule": "classic_tiers", "config": {"thresholds": {"gold": 1_000}}},
            ("tiers.config", "thresholds overlap: gold (1000) must be above silver (2000)"),
        ),
        (
            "tiers",
            {"rule": "classic_tiers", "config": {"keep": {"silver": 2_500}}},
            ("tiers.config", "silver: keep must be between 0 and its threshold"),
        ),
        (
            "tiers",
            {
                "rule": "classic_tiers",
                "config": {"ladder": [{"code": "vip", "name": "VIP", "threshold": 10}]},
            },
            ("tiers.config", "the first tier (vip) is the entry tier: threshold must be 0"),
        ),
        (
            "tiers",
            {"rule": "classic_tiers", "config": {"period": "fortnight"}},
            ("tiers.config.period", "'fortnight' is not one of"),
        ),
        (
            "tiers",
            {
                "rule": "classic_tiers",
                "config": {
                    "ladder": [
                        {"code": "member", "name": "Member", "threshold": 0, "multiplier": 1.5}
                    ]
                },
            },
            ("tiers.config.ladder.0", "Additional properties are not allowed ('multiplier'"),
        ),
        (
            "tiers",
            {
                "rule": "classic_tiers",
                "config": {
                    "ladder": [
                        {"code": "member", "name": "Member", "threshold": 0, "gifts": ["WELCOME"]}
                    ]
                },
            },
            ("tiers.config.ladder.0.gifts.0", "'WELCOME' does not match"),
        ),
        (
            "earning",
            [{"rule": "classic_earning", "config": {"points_per_yuan": 0, "growth_per_yuan": 0}}],
            ("earning[0].config", "points_per_yuan and growth_per_yuan are both 0"),
        ),
        (
            "earning",
            [{"rule": "classic_earning", "config": {"points_per_yuan": 1.5}}],
            ("earning[0].config.points_per_yuan", "1.5 is not of type 'integer'"),
        ),
        (
            "earning",
            [{"rule": "classic_earning", "config": {"exclude_channel": ["outlet"]}}],
            ("earning[0].config", "Additional properties are not allowed ('exclude_channel'"),
        ),
        (
            "expiry",
            {"rule": "classic_expiry", "config": {"years": 11}},
            ("expiry.config.years", "11 is greater than the maximum of 10"),
        ),
        (
            "exchange",
            [{"rule": "classic_exchange", "config": {"birthday": {"discount_pct": 95}}}],
            ("exchange[0].config.birthday.discount_pct", "95 is greater than the maximum of 90"),
        ),
        (
            "exchange",
            [{"rule": "classic_exchange", "config": {"birthday": {"modes": []}}}],
            ("exchange[0].config", "birthday.modes is empty"),
        ),
        (
            "exchange",
            [{"rule": "classic_exchange", "config": {"mode_tiers": {"voucher": ["gold"]}}}],
            ("exchange[0].config.mode_tiers", "Additional properties are not allowed ('voucher'"),
        ),
        (
            "exchange",
            [{"rule": "classic_exchange", "config": {"mode_tiers": {"points_cash": []}}}],
            ("exchange[0].config.mode_tiers.points_cash", "should be non-empty"),
        ),
    ],
)
def test_invalid_configs_are_rejected_with_clear_problems(slot, entry, expected):
    doc = {**DEFAULTS_ONLY, slot: entry}
    problems = check_config(doc)
    assert len(problems) == 1, problems
    (path, message) = problems[0]
    assert path == expected[0]
    assert expected[1] in message, message


def test_rule_sets_in_the_wrong_slot_are_rejected():
    problems = check_config({"earning": [{"rule": "classic_tiers"}]})
    assert problems == [("earning[0].rule", "'classic_tiers' is a 'tiers' rule set, not 'earning'")]


# ---- classic_tiers (pure) ---------------------------------------------------------------------


def test_default_policy_is_the_department_store_ladder():
    p = ClassicTiers().policy({})
    assert [(t.code, t.threshold, t.keep_threshold, t.multiplier_pct) for t in p.tiers] == [
        ("member", 0, 0, 100),
        ("silver", 2_000, 1_500, 120),
        ("gold", 8_000, 6_000, 150),
        ("platinum", 20_000, 15_000, 200),
    ]
    assert [t.discount_bp for t in p.tiers] == [10_000, 9_800, 9_500, 9_000]
    assert [t.gifts for t in p.tiers[2:]] == [
        ("coupon:CLASSIC-GOLD-WELCOME",),
        ("coupon:CLASSIC-PLATINUM-WELCOME", "gift:CLASSIC-PLATINUM-PARKING"),
    ]
    assert (p.measure, p.period, p.downgrade) == ("period", "calendar_year", "one_step")


def test_policy_adjustments_by_code_and_policy_fields():
    p = ClassicTiers().policy(
        {
            "thresholds": {"gold": 10_000},
            "keep": {"gold": 7_000},
            "period": "anniversary",
            "downgrade": "recalculate",
            "measure": "lifetime",
        }
    )
    gold = p.tiers[2]
    assert (gold.threshold, gold.keep_threshold) == (10_000, 7_000)
    assert (p.measure, p.period, p.downgrade) == ("lifetime", "anniversary", "recalculate")
    ladder = [
        {"code": "basic", "name": "Basic", "threshold": 0},
        {"code": "vip", "name": "VIP", "threshold": 5_000, "multiplier_pct": 300},
    ]
    p = ClassicTiers().policy({"ladder": ladder, "thresholds": {"vip": 6_000}})
    assert [(t.code, t.threshold, t.multiplier_pct) for t in p.tiers] == [
        ("basic", 0, 100),
        ("vip", 6_000, 300),
    ]


# ---- classic_earning (pure) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "points"),
    [(None, 388), (MEMBER, 388), (SILVER, 465), (GOLD, 582), (PLATINUM, 776)],
)
def test_points_are_multiplied_by_the_tier_and_growth_is_not(tier, points):
    snap = snapshot(tier=tier)
    out = evaluate(ClassicEarning(), snap, order_paid(38_850, external_id="T-1"), {})
    assert [(i.account, i.amount) for i in out] == [("points", points), ("growth", 388)]
    assert all(isinstance(i, Intent) and i.rule == "classic_earning" for i in out)
    if tier in (None, MEMBER):
        assert out[0].reason == (
            "You earned 388 points for order T-1: 388 yuan at 1 point per yuan."
        )
    if tier is GOLD:
        assert out[0].reason == (
            "You earned 582 points for order T-1: 388 yuan at 1 point per yuan, "
            "×1.5 for Gold members."
        )
    assert out[1].reason == "Order T-1 added 388 growth towards your next tier (388 yuan)."


def test_rounding_never_overpays():
    rs = ClassicEarning()
    assert evaluate(rs, snapshot(tier=SILVER), order_paid(99, external_id="X"), {}) == []
    out = evaluate(rs, snapshot(tier=SILVER), order_paid(9_999), {})
    assert [i.amount for i in out] == [118, 99]  # 99 yuan × 1.2 = 118.8 → 118
    for pct in (100, 105, 110, 120, 125, 133, 150, 175, 200):
        tier = TierView("t", "T", 1, pct)
        for fen in (1, 99, 100, 101, 199, 833, 9_999, 10_001, 123_456, 999_999):
            got = {i.account: i.amount for i in evaluate(rs, snapshot(tier=tier), order_paid(fen))}
            assert got.get("points", 0) == (fen // 100) * pct // 100
            assert got.get("points", 0) * 10_000 <= fen * pct  # never above the exact value
            assert got.get("growth", 0) == fen // 100


def test_points_per_yuan_growth_per_yuan_and_multiplier_switch():
    rs = ClassicEarning()
    config = {"points_per_yuan": 2, "growth_per_yuan": 3, "tier_multiplier": False}
    out = evaluate(rs, snapshot(tier=PLATINUM), order_paid(10_000, external_id="A"), config)
    assert [(i.account, i.amount) for i in out] == [("points", 200), ("growth", 300)]
    assert out[0].reason == "You earned 200 points for order A: 100 yuan at 2 points per yuan."
    only_growth = {"points_per_yuan": 0}
    out = evaluate(rs, snapshot(), order_paid(10_000), only_growth)
    assert [(i.account, i.amount) for i in out] == [("growth", 100)]


def test_excluded_channels_and_categories():
    rs = ClassicEarning()
    config = {"exclude_channels": ["staff_shop"], "exclude_categories": ["gift_card"]}
    assert evaluate(rs, snapshot(), order_paid(50_000, channel="staff_shop"), config) == []
    lines = [
        {"sku": "GC-500", "category": "gift_card", "quantity": 1, "amount_fen": 50_000},
        {"sku": "SHOE", "category": "fashion", "quantity": 1, "amount_fen": 30_000},
    ]
    # 5/8 of the lines are a gift card: of the 720 yuan paid (after a discount), 3/8 earn.
    event = order_paid(72_000, lines=lines, external_id="M-9")
    out = evaluate(rs, snapshot(tier=GOLD), event, config)
    assert [(i.account, i.amount) for i in out] == [("points", 405), ("growth", 270)]
    assert "270 yuan (the eligible part of 720.00 yuan)" in out[0].reason
    # Rounded down pro rata: a third of 1000.01 yuan is 333.33 yuan → 333.
    tiny = order_paid(
        1_000_01,
        lines=[
            {"category": "gift_card", "amount_fen": 2},
            {"category": "fashion", "amount_fen": 1},
        ],
    )
    assert [i.amount for i in evaluate(rs, snapshot(), tiny, config)] == [333, 333]
    only_cards = order_paid(50_000, lines=[lines[0]])
    assert evaluate(rs, snapshot(), only_cards, config) == []
    # Without exclusions, lines do not matter.
    assert [i.amount for i in evaluate(rs, snapshot(), event, {})] == [720, 720]


def test_other_events_and_malformed_orders_earn_nothing():
    rs = ClassicEarning()
    assert evaluate(rs, snapshot(), activity("task.checkin", channel="app"), {}) == []
    assert evaluate(rs, snapshot(), activity("order.paid", paid_fen="100"), {}) == []
    assert evaluate(rs, snapshot(), activity("order.paid", paid_fen=True), {}) == []
    assert evaluate(rs, snapshot(), order_paid(0), {}) == []


# ---- classic_expiry (pure) --------------------------------------------------------------------


def test_points_expire_at_the_end_of_the_next_calendar_year_in_shanghai():
    rs = ClassicExpiry()
    # 23:30 on 31 December in Shanghai: still 2026 → usable to the end of 2027.
    late_2026 = datetime(2026, 12, 31, 15, 30, tzinfo=UTC)
    assert rs.expires_at(late_2026, "points", "Asia/Shanghai", {}) == datetime(
        2027, 12, 31, 16, 0, tzinfo=UTC
    )
    # 00:30 on 1 January in Shanghai while UTC is still on 31 December: a 2027 point.
    early_2027 = datetime(2026, 12, 31, 16, 30, tzinfo=UTC)
    assert early_2027.date() == date(2026, 12, 31)
    assert rs.expires_at(early_2027, "points", "Asia/Shanghai", {}) == datetime(
        2028, 12, 31, 16, 0, tzinfo=UTC
    )
    # The same instant for a UTC tenant is still 2026.
    assert rs.expires_at(early_2027, "points", "UTC", {}) == datetime(2028, 1, 1, tzinfo=UTC)
    assert rs.expires_at(sh(2026, 1, 1, 0, 0), "points", "Asia/Shanghai", {}) == sh(2028, 1, 1)
    assert rs.expires_at(late_2026, "points", "Asia/Shanghai", {"years": 0}) == sh(2027, 1, 1)
    assert rs.expires_at(late_2026, "points", "Asia/Shanghai", {"years": 2}) == sh(2029, 1, 1)
    assert rs.expires_at(late_2026, "growth", "Asia/Shanghai", {}) is None


# ---- classic_exchange (pure) ------------------------------------------------------------------


def q(mode: str = "points", points: int = 1_000, cash_fen: int = 0) -> Quote:
    return Quote("SCARF", mode, points, cash_fen)  # type: ignore[arg-type]


MARCH = sh(2026, 3, 15, 12)


def test_points_cash_is_for_silver_and_above():
    rs = ClassicExchange()
    refused = rs.quote(replace(snapshot(tier=MEMBER), at=MARCH), q("points_cash", 500, 990), {})
    assert refused.eligible is False
    assert refused.reason == (
        "Points + cash exchange is only open to Silver, Gold and Platinum members, "
        "and you are a Member member."
    )
    assert (refused.points, refused.cash_fen, refused.rule) == (500, 990, "classic_exchange")
    no_tier = rs.quote(replace(snapshot(), at=MARCH), q("points_cash", 500, 990), {})
    assert no_tier.reason == (
        "Points + cash exchange is only open to Silver, Gold and Platinum members."
    )
    for tier in (SILVER, GOLD, PLATINUM):
        ok = q("points_cash", 500, 990)
        assert rs.quote(replace(snapshot(tier=tier), at=MARCH), ok, {}) == ok
    for mode, price in (("points", (1_000, 0)), ("cash", (0, 2_990))):
        ok = q(mode, *price)
        assert rs.quote(replace(snapshot(tier=MEMBER), at=MARCH), ok, {}) == ok


def test_mode_tiers_are_configurable():
    rs = ClassicExchange()
    config = {"mode_tiers": {"points_cash": None, "cash": ["platinum"]}}
    assert rs.quote(
        replace(snapshot(tier=MEMBER), at=MARCH), q("points_cash", 5, 5), config
    ).eligible
    refused = rs.quote(replace(snapshot(tier=GOLD), at=MARCH), q("cash", 0, 100), config)
    assert refused.reason == (
        "Cash exchange is only open to Platinum members, and you are a Gold member."
    )
    assert rs.quote(replace(snapshot(tier=PLATINUM), at=MARCH), q("cash", 0, 100), config).eligible


def test_birthday_month_discount_in_the_tenant_timezone():
    rs = ClassicExchange()
    march_birthday = snapshot(tier=SILVER, profile={"birthday": date(1990, 3, 31)})
    got = rs.quote(replace(march_birthday, at=MARCH), q("points", 999), {})
    assert (got.points, got.eligible, got.tags) == (800, True, ("birthday",))  # 799.2 → 800
    assert (
        got.reason == "Happy birthday month! 20% off the points price: 800 points instead of 999."
    )
    got = rs.quote(replace(march_birthday, at=MARCH), q("points_cash", 500, 990), {})
    assert (got.points, got.cash_fen) == (400, 990)
    # Cash is not discounted; other months are not either.
    assert rs.quote(replace(march_birthday, at=MARCH), q("cash", 0, 990), {}) == q("cash", 0, 990)
    assert rs.quote(replace(march_birthday, at=sh(2026, 4, 1, 0, 0)), q(), {}) == q()
    # 1 March 00:30 in Shanghai is still 28 February in UTC: already the birthday month.
    first_of_march = datetime(2026, 2, 28, 16, 30, tzinfo=UTC)
    assert rs.quote(replace(march_birthday, at=first_of_march), q(), {}).points == 800
    utc_member = snapshot(profile={"birthday": date(1990, 3, 31)}, timezone="UTC")
    assert rs.quote(replace(utc_member, at=first_of_march), q(), {}) == q()
    config = {"birthday": {"discount_pct": 50, "modes": ["points"]}}
    assert rs.quote(replace(march_birthday, at=MARCH), q("points", 3), config).points == 2
    assert rs.quote(replace(march_birthday, at=MARCH), q("points_cash", 4, 1), config).points == 4
    off = {"birthday": {"discount_pct": 0}}
    assert rs.quote(replace(march_birthday, at=MARCH), q(), off) == q()
    # No birthday on file: full price.
    assert rs.quote(replace(snapshot(tier=SILVER), at=MARCH), q(), {}) == q()


def test_refusal_wins_over_the_discount_and_refused_quotes_pass_through():
    rs = ClassicExchange()
    member = snapshot(tier=MEMBER, profile={"birthday": date(1990, 3, 1)})
    assert not rs.quote(replace(member, at=MARCH), q("points_cash", 500, 990), {}).eligible
    earlier = Quote("SCARF", "points", 1_000, 0, eligible=False, reason="Sold out.", rule="x")
    assert rs.quote(replace(member, at=MARCH), earlier, {}) is earlier


# ---- the engine: a department store's years -----------------------------------------------------


async def test_years_of_department_store_activity():
    async with RuleLab.open(example()) as lab:
        ann = await lab.join("ann", at=sh(2026, 1, 5, 10))
        cara = await lab.join("cara", at=sh(2026, 1, 10, 0))
        bob = await lab.join("bob", at=sh(2026, 3, 1, 12))
        # ann climbs the whole ladder in 2026; each order earns at the tier she had before it.
        await lab.order(ann, 2_500_00, at=sh(2026, 2, 10, 12))  # ×1.0 → 2500, silver
        await lab.order(cara, 500_00, at=sh(2026, 2, 1, 12))  # ×1.0 → 500
        await lab.override(
            cara,
            "platinum",
            until=sh(2026, 6, 1),
            reason="Flagship reopening VIP",
            at=sh(2026, 3, 1),
        )
        await lab.order(bob, 9_000_00, at=sh(2026, 4, 1, 12))  # member → gold directly
        cara_order = await lab.order(cara, 1_000_00, at=sh(2026, 4, 1, 15))  # override: ×2.0
        assert await lab.tier(cara, at=sh(2026, 4, 2)) == "platinum"
        await lab.refund(cara_order, 500_00, at=sh(2026, 4, 10))  # half: -1000 points, -500 growth
        await lab.order(ann, 6_000_00, at=sh(2026, 5, 20, 12))  # ×1.2 → 7200, gold
        await lab.order(cara, 1_000_00, at=sh(2026, 7, 1, 12))  # override over: ×1.0, silver
        await lab.order(ann, 12_000_00, at=sh(2026, 9, 9, 12))  # ×1.5 → 18000, platinum
        await lab.order(ann, 999_99, at=sh(2026, 11, 11, 12))  # ×2.0 → 1998
        dan = await lab.join("dan", at=sh(2026, 12, 1, 12))
        await lab.order(dan, 100_00, at=sh(2026, 12, 31, 23, 30))  # a 2026 order
        # Excluded: the staff shop and gift cards earn nothing.
        await lab.order(dan, 800_00, at=sh(2026, 12, 31, 23, 40), channel="staff_shop")
        await lab.order(
            dan,
            300_00,
            at=sh(2026, 12, 31, 23, 50),
            lines=[{"sku": "GC", "category": "gift_card", "amount_fen": 300_00}],
        )

        at_2026_end = sh(2026, 12, 31, 23, 59)
        assert await lab.balances(ann, at=at_2026_end) == {"points": 29_698, "growth": 21_499}
        assert await lab.balances(bob, at=at_2026_end) == {"points": 9_000, "growth": 9_000}
        assert await lab.balances(cara, at=at_2026_end) == {"points": 2_500, "growth": 2_000}
        assert await lab.balances(dan, at=at_2026_end) == {"points": 100, "growth": 100}

        report = await lab.review(at=sh(2027, 1, 1, 0, 5))
        assert (report.members, report.changes) == (4, {"kept": 4})
        # 00:30 in Shanghai, UTC still on 31 December: 2027 growth, upgrades on 2027 alone.
        await lab.order(dan, 2_100_00, at=datetime(2026, 12, 31, 16, 30, tzinfo=UTC))
        await lab.order(bob, 1_000_00, at=sh(2027, 6, 18, 12))  # gold ×1.5 → 1500
        await lab.order(cara, 50_00, at=sh(2027, 8, 8, 12))  # silver ×1.2 → 60

        before_expiry = sh(2027, 12, 31, 23, 59, 59)
        assert await lab.balances(bob, at=before_expiry) == {"points": 10_500, "growth": 10_000}
        report = await lab.review(at=sh(2028, 1, 1, 0, 5))
        assert report.changes == {"downgrade": 3, "kept": 1}
        # 2026 points expired at midnight Shanghai time; 2027 points last through 2028.
        assert await lab.balances(bob, at=sh(2028, 1, 1, 0, 5)) == {
            "points": 1_500,
            "growth": 10_000,
        }
        assert (await lab.balances(dan, at=sh(2028, 1, 1, 0, 5)))["points"] == 2_100
        await lab.order(bob, 2_000_00, at=sh(2028, 3, 1, 12))  # silver ×1.2 → 2400, no change
        report = await lab.review(at=sh(2029, 1, 1, 0, 5))
        assert report.changes == {"downgrade": 2, "kept": 2}
        end = sh(2029, 1, 1, 0, 5)
        assert await lab.balances(bob, at=end) == {"points": 2_400, "growth": 12_000}
        assert await lab.balances(dan, at=end) == {"points": 0, "growth": 2_200}

        jan1 = {y: sh(y, 1, 1) for y in (2027, 2028, 2029)}
        assert lines_of(await lab.history(ann)) == [
            (sh(2026, 1, 5, 10), "initial", None, "member"),
            (sh(2026, 2, 10, 12), "upgrade", "member", "silver"),
            (sh(2026, 5, 20, 12), "upgrade", "silver", "gold"),
            (sh(2026, 9, 9, 12), "upgrade", "gold", "platinum"),
            (jan1[2027], "kept", "platinum", "platinum"),
            (jan1[2028], "downgrade", "platinum", "gold"),
            (jan1[2029], "downgrade", "gold", "silver"),
        ]
        assert lines_of(await lab.history(bob)) == [
            (sh(2026, 3, 1, 12), "initial", None, "member"),
            (sh(2026, 4, 1, 12), "upgrade", "member", "gold"),
            (jan1[2027], "kept", "gold", "gold"),
            (jan1[2028], "downgrade", "gold", "silver"),  # 1000 < 6000: one step, not two
            (jan1[2029], "kept", "silver", "silver"),
        ]
        assert lines_of(await lab.history(cara)) == [
            (sh(2026, 1, 10), "initial", None, "member"),
            (sh(2026, 3, 1), "override", "member", "platinum"),
            (sh(2026, 6, 1), "override_expired", "platinum", "member"),
            (sh(2026, 7, 1, 12), "upgrade", "member", "silver"),
            (jan1[2027], "kept", "silver", "silver"),
            (jan1[2028], "downgrade", "silver", "member"),
            (jan1[2029], "kept", "member", "member"),
        ]
        assert lines_of(await lab.history(dan)) == [
            (sh(2026, 12, 1, 12), "initial", None, "member"),
            (jan1[2027], "kept", "member", "member"),
            (datetime(2026, 12, 31, 16, 30, tzinfo=UTC), "upgrade", "member", "silver"),
            (jan1[2028], "kept", "silver", "silver"),
            (jan1[2029], "downgrade", "silver", "member"),
        ]
        cara_history = await lab.history(cara)
        assert "Flagship reopening VIP" in cara_history[1].reason
        assert "Flagship reopening VIP" in cara_history[2].reason

        # Entry gifts: once per upgrade into Gold / Platinum; never for overrides or keeps.
        assert sorted(await lab.grants(ann)) == [
            ("coupon", "CLASSIC-GOLD-WELCOME", "classic_tiers"),
            ("coupon", "CLASSIC-PLATINUM-WELCOME", "classic_tiers"),
            ("gift", "CLASSIC-PLATINUM-PARKING", "classic_tiers"),
        ]
        assert await lab.grants(bob) == [("coupon", "CLASSIC-GOLD-WELCOME", "classic_tiers")]
        assert await lab.grants(cara) == []
        assert await lab.grants(dan) == []
        assert await lab.completions(ann) == []
        assert await lab.violations() == []


# A reference model of the default classic policy, to check a seeded year of random orders.
CODES = ["member", "silver", "gold", "platinum"]
THRESHOLDS = [0, 2_000, 8_000, 20_000]
KEEP = [0, 1_500, 6_000, 15_000]
MULTIPLIERS = [100, 120, 150, 200]


def reference(orders: list[tuple[datetime, int]], until: int) -> tuple[int, int, list]:
    """(points, growth, [(change, tier)]) for orders in Shanghai calendar years, reviewed every
    1 January up to ``until``."""
    rank, points, growth, year = 0, 0, 0, 2026
    by_year: dict[int, int] = defaultdict(int)
    changes: list[tuple[str, str]] = [("initial", "member")]
    for at, fen in [*orders, (sh(until, 1, 1, 0, 5), 0)]:
        while year < at.astimezone(SH).year:
            if by_year[year] >= KEEP[rank]:
                changes.append(("kept", CODES[rank]))
            else:
                rank -= 1
                changes.append(("downgrade", CODES[rank]))
            year += 1
        yuan = fen // 100
        points += yuan * MULTIPLIERS[rank] // 100
        growth += yuan
        by_year[year] += yuan
        target = max(i for i, t in enumerate(THRESHOLDS) if by_year[year] >= t)
        if target > rank:
            rank = target
            changes.append(("upgrade", CODES[rank]))
    return points, growth, changes


async def test_seeded_random_year_matches_the_reference_model():
    rng = random.Random(20260101)
    async with RuleLab.open(DEFAULTS_ONLY) as lab:
        plans: dict[uuid.UUID, list[tuple[datetime, int]]] = {}
        for n, budget in enumerate([150_00, 600_00, 1_500_00, 3_000_00, 5_000_00, 9_000_00]):
            member = await lab.join(f"m{n}", at=sh(2026, 1, 1, 9))
            orders = [
                (sh(2026, month, rng.randint(2, 28), 12), rng.randint(1, 4 * budget))
                for month in range(1, 13, 2)
            ]
            orders += [  # a quieter 2027
                (sh(2027, month, rng.randint(1, 28), 12), rng.randint(1, budget // 2))
                for month in (3, 7, 11)
            ]
            plans[member] = orders
        timeline = sorted((at, fen, m) for m, orders in plans.items() for at, fen in orders)
        reviewed = 2026
        for at, fen, member in timeline:
            if at.year > reviewed:
                await lab.review(at=sh(at.year, 1, 1, 0, 5))
                reviewed = at.year
            await lab.order(member, fen, at=at)
        await lab.review(at=sh(2028, 1, 1, 0, 5))
        seen = set()
        for member, orders in plans.items():
            points, growth, changes = reference(orders, until=2028)
            assert await lab.balances(member, at=sh(2027, 12, 31, 23)) == {
                "points": points,
                "growth": growth,
            }
            history = await lab.history(member)
            assert [(h.change, h.to_tier) for h in history] == changes
            seen.update(changes)
        # The seed exercises every kind of move.
        assert {c for c, _ in seen} == {"initial", "upgrade", "kept", "downgrade"}
        assert {t for _, t in seen} == set(CODES)
        assert await lab.violations() == []


# ---- the points mall ----------------------------------------------------------------------------


async def test_points_mall_in_all_three_modes():
    async with RuleLab.open(example()) as lab:
        ann = await lab.join("ann", at=sh(2026, 1, 5))
        await lab.order(ann, 25_000_00, at=sh(2026, 2, 1, 12))  # platinum, 25000 points
        moe = await lab.join("moe", at=sh(2026, 1, 5))
        await lab.order(moe, 1_000_00, at=sh(2026, 2, 1, 12))  # member, 1000 points
        now = sh(2026, 3, 2, 10)

        offers = await lab.offers(moe, at=now)
        scarf = offers["SCARF"]
        assert (scarf["points"].points, scarf["points"].eligible) == (6_000, False)
        assert scarf["points"].reason == "INSUFFICIENT_POINTS"
        pc = scarf["points_cash"]
        assert (pc.eligible, pc.reason, pc.rule) == (False, "RULE", "classic_exchange")
        assert pc.message == (
            "Points + cash exchange is only open to Silver, Gold and Platinum members, "
            "and you are a Member member."
        )
        assert (scarf["cash"].cash_fen, scarf["cash"].eligible) == (29_900, True)
        assert offers["LOUNGE"]["points"].reason == "TIER_NOT_ALLOWED"

        with pytest.raises(NotEligible) as refused:
            await lab.redeem(moe, "SCARF", "points_cash", key="moe-1", at=now)
        assert refused.value.reason == "RULE"
        assert "only open to Silver, Gold and Platinum" in str(refused.value)

        # All points, at the Platinum price (4000 instead of 6000): completed at once.
        done = await lab.redeem(ann, "SCARF", "points", key="ann-1", at=now)
        assert (done.status, done.points, done.cash_fen) == ("completed", 4_000, 0)
        # Points + cash: points held until the payment is confirmed.
        pending = await lab.redeem(ann, "VOUCHER50", "points_cash", key="ann-2", at=now)
        assert (pending.status, pending.points, pending.cash_fen) == (
            "awaiting_payment",
            1_000,
            2_500,
        )
        assert (await lab.balances(ann, at=now))["points"] == 25_000 - 4_000 - 1_000
        async with lab.db.tenant_tx(lab.tenant_id) as tx:
            paid = await mall.confirm_payment(
                tx, redemption_id=pending.id, payment_ref="PAY-1", amount_fen=2_500, now=now
            )
        assert paid.status == "completed"
        # Cash only, at the Platinum cash price; the member walks away → cancelled.
        cash = await lab.redeem(ann, "SCARF", "cash", key="ann-3", at=now)
        assert (cash.status, cash.points, cash.cash_fen) == ("awaiting_payment", 0, 24_900)
        async with lab.db.tenant_tx(lab.tenant_id) as tx:
            gone = await mall.cancel(tx, redemption_id=cash.id, reason="changed my mind", now=now)
        assert gone.status == "cancelled"
        # Moe pays cash in full (open to every tier).
        moe_cash = await lab.redeem(moe, "SCARF", "cash", key="moe-2", at=now)
        async with lab.db.tenant_tx(lab.tenant_id) as tx:
            await mall.confirm_payment(
                tx, redemption_id=moe_cash.id, payment_ref="PAY-2", amount_fen=29_900, now=now
            )

        assert (await lab.balances(ann, at=now))["points"] == 20_000
        assert sorted(g for g in await lab.grants(ann) if g[2] == "mall") == [
            ("coupon", "CLASSIC-VOUCHER-50", "mall"),
            ("physical", "SCARF-2026", "mall"),
        ]
        assert await lab.grants(moe) == [("physical", "SCARF-2026", "mall")]
        assert await lab.violations() == []


async def test_birthday_month_discount_through_the_mall():
    # The mall passes its `now` to exchange rules as `snapshot.at`: a birthday this month (in
    # Shanghai) and a matching `now` get the discount.
    today = datetime.now(SH)
    async with RuleLab.open(example()) as lab:
        bea = await lab.join(
            "bea", at=sh(2026, 1, 5), profile={"birthday": date(1991, today.month, 1)}
        )
        await lab.order(bea, 3_000_00, at=sh(2026, 1, 6, 12))  # silver, 3000 points
        now = datetime.now(UTC)
        offer = (await lab.offers(bea, at=now, reward="SCARF"))["SCARF"]
        if datetime.now(SH).month != today.month:  # the month turned during the test
            pytest.skip("ran across a month boundary")
        prices = {m: (o.points, o.cash_fen, o.eligible, o.rule) for m, o in offer.items()}
        assert prices == {
            "points": (4_800, 0, False, "classic_exchange"),  # 6000 − 20 %, but she has 3000
            "points_cash": (2_400, 9_900, True, "classic_exchange"),
            "cash": (0, 29_900, True, None),
        }
        done = await lab.redeem(bea, "SCARF", "points_cash", key="bea-1", at=now)
        assert (done.points, done.cash_fen) == (2_400, 9_900)
        assert await lab.violations() == []

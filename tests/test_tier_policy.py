"""The pure tier policy (:mod:`gateway.rules.tiers`): concrete scenarios and properties.

No database: ``decide(policy, facts, now)`` is a pure function of the stored state, the growth
facts and ``now``. Scenarios use Asia/Shanghai (UTC+8, no DST), so "1 January, 00:00 local" is
16:00 UTC on 31 December — the boundaries below are chosen around that midnight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.rules.hookspecs import TierDef, TierPolicy, TierView
from gateway.rules.tiers import (
    MAX_REVIEWS,
    TierChange,
    TierDecision,
    TierFacts,
    TierState,
    add_months,
    check_policy,
    decide,
    horizon,
    set_override,
    tier_def,
    tier_view,
)

TZ_NAME = "Asia/Shanghai"
TZ = ZoneInfo(TZ_NAME)

BRONZE = TierDef("bronze", "Bronze", 0)
SILVER = TierDef("silver", "Silver", 100, keep=60)
GOLD = TierDef("gold", "Gold", 1000, keep=500, multiplier_pct=150, discount_bp=9_500)
PLATINUM = TierDef("platinum", "Platinum", 5000, keep=3000, gifts=("coupon:PT-WELCOME",))
LADDER = (BRONZE, SILVER, GOLD, PLATINUM)
CODES = [t.code for t in LADDER]


def local(y: int, m: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    """A Shanghai wall-clock time, as the UTC instant the gateway stores."""
    return datetime(y, m, d, h, mi, s, tzinfo=TZ).astimezone(UTC)


def year(y: int) -> tuple[datetime, datetime]:
    return local(y, 1, 1), local(y + 1, 1, 1)


def policy(**kw: object) -> TierPolicy:
    return TierPolicy(LADDER, **kw)  # type: ignore[arg-type]


def state(
    tier: str,
    start: datetime,
    end: datetime,
    *,
    since: datetime | None = None,
    evaluated_at: datetime | None = None,
    **kw: object,
) -> TierState:
    return TierState(
        tier=tier,
        since=since or start,
        period_start=start,
        period_end=end,
        evaluated_at=evaluated_at or start,
        **kw,  # type: ignore[arg-type]
    )


def facts(
    st_: TierState, moves: Sequence[tuple[datetime, int]] = (), lifetime: int | None = None
) -> TierFacts:
    """Facts as the gateway loads them: moves sorted, lifetime = their sum unless given."""
    ordered = sorted(moves)
    life = sum(a for _, a in ordered) if lifetime is None else lifetime
    return TierFacts(st_, life, ordered, TZ_NAME)


def summary(d: TierDecision) -> list[tuple[str, str | None, str, str]]:
    return [(c.change, c.from_tier, c.to_tier, c.natural) for c in d.changes]


# ---- check_policy ------------------------------------------------------------------------


def test_check_policy_accepts_the_ladder() -> None:
    for kw in (
        {},
        {"measure": "lifetime", "period": "anniversary", "downgrade": "recalculate"},
        {"period": "rolling", "months": 1},
        {"period": "rolling", "months": 60},
    ):
        check_policy(policy(**kw))


@pytest.mark.parametrize(
    ("tiers", "kw", "message"),
    [
        ((), {}, "at least one tier"),
        ((BRONZE, replace(SILVER, code="bronze")), {}, "unique"),
        ((replace(BRONZE, threshold=10),), {}, "threshold must be 0"),
        ((BRONZE, SILVER, replace(GOLD, threshold=100)), {}, "overlap"),
        ((BRONZE, SILVER, replace(GOLD, threshold=99, keep=60)), {}, "overlap"),
        ((BRONZE, replace(SILVER, threshold=0, keep=0)), {}, "overlap"),
        ((BRONZE, SILVER, replace(GOLD, keep=59)), {}, "must not decrease"),
        ((BRONZE, replace(SILVER, keep=101)), {}, "between 0 and its threshold"),
        ((replace(BRONZE, keep=-1),), {}, "between 0 and its threshold"),
        ((BRONZE, replace(SILVER, multiplier_pct=-1)), {}, "multiplier_pct"),
        ((BRONZE, replace(SILVER, discount_bp=0)), {}, "discount_bp"),
        ((BRONZE, replace(SILVER, discount_bp=10_001)), {}, "discount_bp"),
        (LADDER, {"measure": "orders"}, "measure"),
        (LADDER, {"period": "quarter"}, "period"),
        (LADDER, {"downgrade": "reset"}, "downgrade"),
        (LADDER, {"period": "rolling", "months": 0}, "months"),
        (LADDER, {"period": "rolling", "months": 61}, "months"),
    ],
)
def test_check_policy_rejects(tiers: tuple[TierDef, ...], kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_policy(TierPolicy(tiers, **kw))


def test_tier_view_and_def() -> None:
    p = policy()
    assert tier_view(p, "gold") == TierView("gold", "Gold", 2, 150, 9_500)
    assert tier_view(p, "bronze") == TierView("bronze", "Bronze", 0)
    assert tier_view(p, "nope") is None and tier_view(p, None) is None
    assert tier_def(p, "platinum") is PLATINUM and tier_def(p, "nope") is None
    assert SILVER.keep_threshold == 60 and BRONZE.keep_threshold == 0
    assert replace(SILVER, keep=None).keep_threshold == 100


# ---- calendar ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        # 31 Jan + 1 month clamps to the end of February (leap and common years).
        (local(2024, 1, 31, 10), 1, local(2024, 2, 29, 10)),
        (local(2023, 1, 31, 10), 1, local(2023, 2, 28, 10)),
        (local(2024, 1, 31, 10), 2, local(2024, 3, 31, 10)),
        # leap day + 12 months → 28 Feb; + 48 months → the next leap day
        (local(2024, 2, 29, 12), 12, local(2025, 2, 28, 12)),
        (local(2024, 2, 29, 12), 48, local(2028, 2, 29, 12)),
        # the local wall clock (00:30 on the 31st is the 30th in UTC) decides the day
        (local(2024, 1, 31, 0, 30), 1, local(2024, 2, 29, 0, 30)),
        (local(2024, 12, 15), 1, local(2025, 1, 15)),
        (local(2024, 3, 31, 8), -1, local(2024, 2, 29, 8)),
        (local(2024, 1, 15), -13, local(2022, 12, 15)),
        (local(2024, 5, 31, 23, 59), 0, local(2024, 5, 31, 23, 59)),
    ],
)
def test_add_months(start: datetime, months: int, expected: datetime) -> None:
    got = add_months(start, months, TZ)
    assert got == expected
    assert got.tzinfo is UTC


def test_add_months_local_midnight_is_previous_utc_day() -> None:
    got = add_months(local(2024, 1, 31, 0, 30), 1, TZ)
    assert got == datetime(2024, 2, 28, 16, 30, tzinfo=UTC)  # 29 Feb 00:30 in Shanghai


def test_add_months_keeps_the_wall_clock_across_dst() -> None:
    ny = ZoneInfo("America/New_York")
    start = datetime(2024, 2, 10, 9, tzinfo=ny)  # EST, UTC-5
    got = add_months(start, 1, ny)
    assert got.astimezone(ny).replace(tzinfo=None) == datetime(2024, 3, 10, 9)
    assert got == datetime(2024, 3, 10, 13, tzinfo=UTC)  # EDT, UTC-4


def test_horizon() -> None:
    now = local(2025, 6, 15, 12)
    cal = policy()
    assert horizon(cal, TierState(), now, TZ_NAME) == local(2025, 1, 1)
    s = state("silver", *year(2024))
    assert horizon(cal, s, now, TZ_NAME) == local(2024, 1, 1)
    rolling = policy(period="rolling", months=3)
    assert horizon(rolling, TierState(), now, TZ_NAME) == local(2025, 3, 15, 12)
    assert horizon(policy(period="anniversary"), TierState(), now, TZ_NAME) == local(
        2024, 6, 15, 12
    )
    recent = state("silver", local(2025, 5, 1), local(2025, 8, 1))
    assert horizon(rolling, recent, now, TZ_NAME) == local(2025, 3, 15, 12)


# ---- joining and upgrading -----------------------------------------------------------------


def test_initial_calendar_year_around_local_midnight() -> None:
    # 31 Dec 16:30 UTC is already 1 January 2025 in Shanghai: the period is 2025, not 2024.
    now = datetime(2024, 12, 31, 16, 30, tzinfo=UTC)
    d = decide(policy(), facts(TierState()), now)
    assert summary(d) == [("initial", None, "bronze", "bronze")]
    assert d.changes[0].at == now
    assert d.state == TierState(
        "bronze", now, local(2025, 1, 1), local(2026, 1, 1), evaluated_at=now
    )


def test_initial_then_upgrade_in_one_decision() -> None:
    now = local(2025, 3, 1, 9)
    d = decide(policy(), facts(TierState(), [(local(2025, 2, 1), 150)]), now)
    assert summary(d) == [
        ("initial", None, "bronze", "bronze"),
        ("upgrade", "bronze", "silver", "silver"),
    ]
    assert d.changes[1].growth == 150
    assert d.state.tier == "silver" and d.state.since == now
    # calendar year: an upgrade keeps the year as the qualifying period
    assert (d.state.period_start, d.state.period_end) == year(2025)


def test_initial_anniversary_and_rolling_start_now() -> None:
    now = local(2024, 1, 31, 0, 30)
    d = decide(policy(period="anniversary"), facts(TierState()), now)
    assert (d.state.period_start, d.state.period_end) == (now, local(2025, 1, 31, 0, 30))
    d = decide(policy(period="rolling", months=1), facts(TierState()), now)
    assert (d.state.period_start, d.state.period_end) == (now, local(2024, 2, 29, 0, 30))


def test_unknown_tier_restarts_at_entry_then_upgrades() -> None:
    # The ladder changed and the stored code is gone: start over from the entry tier.
    s = state("diamond", *year(2025))
    now = local(2025, 5, 1)
    d = decide(policy(), facts(s, [(local(2025, 4, 1), 120)]), now)
    assert summary(d) == [
        ("initial", "diamond", "bronze", "bronze"),
        ("upgrade", "bronze", "silver", "silver"),
    ]


def test_unknown_tier_with_an_ended_override_keeps_changes_in_order() -> None:
    """Regression: the restart's "initial" (at now) came before the expiry of an override that
    had ended months earlier."""
    s = replace(state("diamond", *year(2024)), override="gold", override_until=local(2024, 6, 1))
    d = decide(policy(), facts(s, []), local(2024, 9, 1))
    assert summary(d) == [
        ("override_expired", "gold", "diamond", "diamond"),
        ("initial", "diamond", "bronze", "bronze"),
    ]
    assert [c.at for c in d.changes] == [local(2024, 6, 1), local(2024, 9, 1)]
    assert d.state.override is None


def test_upgrade_counts_only_this_local_year() -> None:
    s = state("bronze", *year(2025), evaluated_at=local(2025, 1, 1))
    moves = [
        (local(2024, 12, 31, 23, 59, 59), 50),  # last year in Shanghai (15:59:59 UTC)
        (datetime(2024, 12, 31, 16, 0, tzinfo=UTC), 60),  # 00:00 on 1 Jan in Shanghai
    ]
    d = decide(policy(), facts(s, moves), local(2025, 1, 2))
    assert d.changes == ()  # 60 this year, below Silver's 100
    d = decide(policy(), facts(s, [*moves, (local(2025, 1, 2), 40)]), local(2025, 1, 2))
    assert summary(d) == [("upgrade", "bronze", "silver", "silver")]
    assert d.changes[0].growth == 100  # exactly the threshold upgrades


def test_upgrade_jumps_straight_to_the_highest_reached_tier() -> None:
    s = state("bronze", *year(2025))
    now = local(2025, 7, 1, 12)
    d = decide(policy(), facts(s, [(now, 1200)]), now)
    # one change, to gold: not silver-then-gold, not platinum
    assert summary(d) == [("upgrade", "bronze", "gold", "gold")]
    assert d.changes[0].growth == 1200 and d.changes[0].at == now
    assert "1200" in d.changes[0].reason and "Gold" in d.changes[0].reason


def test_upgrade_never_downgrades() -> None:
    s = state("gold", *year(2025))
    d = decide(policy(), facts(s, [(local(2025, 2, 1), 150)]), local(2025, 3, 1))
    assert d.changes == () and d.state.tier == "gold"


def test_lifetime_measure_uses_the_balance() -> None:
    s = state("bronze", *year(2025))
    now = local(2025, 3, 1)
    # no moves in the window at all: the balance alone decides
    d = decide(policy(measure="lifetime"), facts(s, [], lifetime=5000), now)
    assert summary(d) == [("upgrade", "bronze", "platinum", "platinum")]
    assert "lifetime growth 5000" in d.changes[0].reason
    d = decide(policy(measure="lifetime"), facts(s, [(now, 900)], lifetime=99), now)
    assert d.changes == ()


def test_rolling_window_upgrade() -> None:
    p = policy(period="rolling", months=3)
    s = state("bronze", local(2025, 1, 1), local(2025, 4, 1))
    moves = [(local(2024, 12, 31, 23), 80), (local(2025, 1, 20), 30)]
    # on 31 Mar 23:00 the window (31 Dec 23:00 → now) holds both moves
    d = decide(p, facts(s, moves), local(2025, 3, 31, 23))
    assert summary(d) == [("upgrade", "bronze", "silver", "silver")]
    assert (d.state.period_start, d.state.period_end) == (
        local(2025, 3, 31, 23),
        local(2025, 6, 30, 23),
    )
    assert "growth in the window 110" in d.changes[0].reason
    # one minute later the December move has left the window
    assert decide(p, facts(s, moves), local(2025, 3, 31, 23, 1)).changes == ()


def test_anniversary_upgrade_restarts_the_period() -> None:
    p = policy(period="anniversary")
    s = state("silver", local(2024, 5, 1), local(2025, 5, 1))
    now = local(2024, 9, 30, 0, 15)
    d = decide(p, facts(s, [(now, 1000)]), now)
    assert summary(d) == [("upgrade", "silver", "gold", "gold")]
    assert (d.state.period_start, d.state.period_end) == (now, local(2025, 9, 30, 0, 15))


# ---- keep-level reviews ------------------------------------------------------------------


def test_review_at_local_new_year_midnight() -> None:
    """Growth at 00:00 local on 1 Jan (16:00 UTC, 31 Dec) belongs to the new year."""
    s = state("silver", *year(2024))
    boundary = datetime(2024, 12, 31, 16, 0, tzinfo=UTC)
    moves = [(local(2024, 6, 1), 59), (boundary, 1)]
    # one second before local midnight: nothing is due
    d = decide(policy(), facts(s, moves), boundary - timedelta(seconds=1))
    assert d.changes == ()
    d = decide(policy(), facts(s, moves), boundary)
    assert summary(d) == [("downgrade", "silver", "bronze", "bronze")]
    assert d.changes[0].at == boundary and d.changes[0].growth == 59
    assert (d.state.period_start, d.state.period_end) == year(2025)
    assert d.state.since == boundary


def test_keep_at_exactly_the_keep_threshold() -> None:
    s = state("gold", *year(2024))
    now = local(2025, 1, 10)
    kept = decide(policy(), facts(s, [(local(2024, 3, 1), 500)]), now)
    assert summary(kept) == [("kept", "gold", "gold", "gold")]
    assert kept.changes[0].at == local(2025, 1, 1) and kept.changes[0].growth == 500
    assert "kept Gold: 500" in kept.changes[0].reason
    assert kept.state.since == s.since  # keeping does not restart "since"
    assert (kept.state.period_start, kept.state.period_end) == year(2025)
    missed = decide(policy(), facts(s, [(local(2024, 3, 1), 499)]), now)
    assert summary(missed) == [("downgrade", "gold", "silver", "silver")]
    assert "below Gold's keep 500" in missed.changes[0].reason


def test_several_missed_years_step_down_one_at_a_time() -> None:
    s = state("platinum", *year(2024))
    d = decide(policy(), facts(s, [(local(2024, 2, 1), 100)]), local(2028, 7, 1))
    assert summary(d) == [
        ("downgrade", "platinum", "gold", "gold"),
        ("downgrade", "gold", "silver", "silver"),
        ("downgrade", "silver", "bronze", "bronze"),
        ("kept", "bronze", "bronze", "bronze"),
    ]
    assert [c.at for c in d.changes] == [local(y, 1, 1) for y in (2025, 2026, 2027, 2028)]
    assert [c.growth for c in d.changes] == [100, 0, 0, 0]
    assert (d.state.period_start, d.state.period_end) == year(2028)
    assert d.state.since == local(2027, 1, 1)


def test_recalculate_jumps_down_more_than_one_step() -> None:
    s = state("platinum", *year(2024))
    p = policy(downgrade="recalculate")
    d = decide(p, facts(s, [(local(2024, 2, 1), 70)]), local(2025, 1, 1))
    assert summary(d) == [("downgrade", "platinum", "silver", "silver")]
    assert "(recalculated)" in d.changes[0].reason
    d = decide(p, facts(s, [(local(2024, 2, 1), 10)]), local(2025, 1, 1))
    assert summary(d) == [("downgrade", "platinum", "bronze", "bronze")]
    d = decide(p, facts(s, [(local(2024, 2, 1), 2999)]), local(2025, 1, 1))
    assert summary(d) == [("downgrade", "platinum", "gold", "gold")]
    # the same facts with one_step: one rung only
    d = decide(policy(), facts(s, [(local(2024, 2, 1), 10)]), local(2025, 1, 1))
    assert summary(d) == [("downgrade", "platinum", "gold", "gold")]
    assert "(one step)" in d.changes[0].reason


def test_review_then_upgrade_on_the_new_year() -> None:
    s = state("gold", *year(2024))
    moves = [(local(2024, 5, 1), 100), (local(2025, 1, 3), 1500)]
    d = decide(policy(), facts(s, moves), local(2025, 1, 3))
    assert summary(d) == [
        ("downgrade", "gold", "silver", "silver"),
        ("upgrade", "silver", "gold", "gold"),
    ]


def test_anniversary_from_a_leap_day() -> None:
    p = policy(period="anniversary")
    reached = local(2024, 2, 29, 10)
    s = state("gold", reached, add_months(reached, 12, TZ))
    assert s.period_end == local(2025, 2, 28, 10)
    moves = [(local(2024, 6, 1), 600), (local(2025, 6, 1), 600)]
    d = decide(p, facts(s, moves), local(2026, 3, 1))
    assert summary(d) == [("kept", "gold", "gold", "gold"), ("kept", "gold", "gold", "gold")]
    # each period runs 12 months from the previous review (documented: "last kept")
    assert [c.at for c in d.changes] == [local(2025, 2, 28, 10), local(2026, 2, 28, 10)]
    assert d.state.period_end == local(2027, 2, 28, 10)


def test_rolling_one_month_from_31_january() -> None:
    p = policy(period="rolling", months=1)
    start = local(2024, 1, 31, 0, 30)  # 30 Jan in UTC
    s = state("silver", start, add_months(start, 1, TZ))
    moves = [(local(2024, 2, 10), 60), (local(2024, 3, 10), 59)]
    d = decide(p, facts(s, moves), local(2024, 4, 1))
    assert summary(d) == [
        ("kept", "silver", "silver", "silver"),
        ("downgrade", "silver", "bronze", "bronze"),
    ]
    assert [c.at for c in d.changes] == [local(2024, 2, 29, 0, 30), local(2024, 3, 29, 0, 30)]


def test_negative_growth_from_refunds() -> None:
    s = state("silver", *year(2024))
    moves = [(local(2024, 3, 1), 80), (local(2024, 3, 5), -30)]  # a refund takes 30 back
    d = decide(policy(), facts(s, moves), local(2025, 1, 1))
    assert summary(d) == [("downgrade", "silver", "bronze", "bronze")]
    assert d.changes[0].growth == 50
    # the upgrade measure can go negative, too: no upgrade, no error
    b = state("bronze", *year(2025))
    d = decide(policy(), facts(b, [(local(2025, 2, 1), -40)]), local(2025, 3, 1))
    assert d.changes == ()


def test_entry_tier_is_kept_even_on_negative_period_growth() -> None:
    """Regression: refunds made a period's growth negative, below the entry tier's keep of 0,
    and the review recorded a "downgrade" from Bronze to Bronze (history and a new ``since``)."""
    s = state("bronze", *year(2024))
    moves = [(local(2024, 3, 1), 20), (local(2024, 12, 1), -30)]
    for downgrade in ("one_step", "recalculate"):
        d = decide(policy(downgrade=downgrade), facts(s, moves), local(2025, 1, 1))
        assert summary(d) == [("kept", "bronze", "bronze", "bronze")]
        assert d.changes[0].growth == -10
        assert d.state.since == s.since


# ---- overrides -----------------------------------------------------------------------------


def test_effective_tier() -> None:
    now = local(2025, 1, 1)
    s = TierState("silver", override="gold", override_until=now)
    assert s.effective(now - timedelta(microseconds=1)) == "gold"
    assert s.effective(now) == "silver"  # the end is exclusive
    assert TierState("silver", override="gold").effective(now) == "gold"  # no end: stays
    assert TierState("silver").effective(now) == "silver"


def test_set_override() -> None:
    s = state("silver", *year(2025))
    now = local(2025, 3, 1)
    new, change = set_override(s, "platinum", local(2025, 6, 1), "VIP gesture", now)
    assert (new.override, new.override_until, new.override_reason) == (
        "platinum",
        local(2025, 6, 1),
        "VIP gesture",
    )
    assert new.tier == "silver" and new.effective(now) == "platinum"
    assert (change.change, change.from_tier, change.to_tier, change.natural) == (
        "override",
        "silver",
        "platinum",
        "silver",
    )
    assert change.at == now and change.effective_changed and "VIP gesture" in change.reason


def test_override_expires_mid_period_then_the_period_is_reviewed() -> None:
    s, _ = set_override(
        state("silver", *year(2024)), "platinum", local(2024, 7, 1), "complaint", local(2024, 3, 1)
    )
    moves = [(local(2024, 2, 1), 60)]
    d = decide(policy(), facts(s, moves), local(2024, 6, 30, 23, 59))
    assert d.changes == () and d.state.effective(local(2024, 6, 30, 23, 59)) == "platinum"
    d = decide(policy(), facts(s, moves), local(2025, 1, 2))
    assert summary(d) == [
        ("override_expired", "platinum", "silver", "silver"),
        ("kept", "silver", "silver", "silver"),
    ]
    assert [c.at for c in d.changes] == [local(2024, 7, 1), local(2025, 1, 1)]
    assert "(complaint)" in d.changes[0].reason
    assert d.state.override is None and d.state.override_until is None
    assert d.state.override_reason is None


def test_override_ending_at_the_period_end_expires_first() -> None:
    s, _ = set_override(
        state("gold", *year(2024)), "platinum", local(2025, 1, 1), "x", local(2024, 3, 1)
    )
    d = decide(policy(), facts(s, []), local(2025, 1, 1))
    assert summary(d) == [
        ("override_expired", "platinum", "gold", "gold"),
        ("downgrade", "gold", "silver", "silver"),
    ]
    assert d.changes[0].at == d.changes[1].at == local(2025, 1, 1)


def test_review_under_an_active_override_keeps_the_override_effective() -> None:
    s, _ = set_override(
        state("gold", *year(2024)), "platinum", local(2025, 6, 1), "x", local(2024, 3, 1)
    )
    d = decide(policy(), facts(s, []), local(2025, 2, 1))
    assert summary(d) == [("downgrade", "platinum", "platinum", "silver")]
    assert not d.changes[0].effective_changed
    assert d.state.effective(local(2025, 2, 1)) == "platinum" and d.state.tier == "silver"


def test_upgrade_under_an_override() -> None:
    s, _ = set_override(
        state("bronze", *year(2025)), "gold", local(2025, 9, 1), "x", local(2025, 1, 5)
    )
    now = local(2025, 4, 1)
    d = decide(policy(), facts(s, [(now, 6000)]), now)
    # the natural tier moves up; the override stays the effective one until its end
    assert summary(d) == [("upgrade", "gold", "gold", "platinum")]
    assert not d.changes[0].effective_changed
    assert d.state.tier == "platinum" and d.state.effective(now) == "gold"
    after = decide(policy(), facts(d.state, [(now, 6000)]), local(2025, 10, 1))
    assert summary(after) == [("override_expired", "gold", "platinum", "platinum")]


def test_override_without_end_never_expires() -> None:
    s = replace(state("silver", *year(2024)), override="gold", override_reason="forever")
    d = decide(policy(), facts(s, [(local(2024, 5, 1), 60)]), local(2030, 1, 2))
    assert [c.change for c in d.changes] == ["kept", "downgrade"] + ["kept"] * 4
    assert all(c.from_tier == c.to_tier == "gold" for c in d.changes)
    assert d.state.override == "gold" and d.state.tier == "bronze"


# ---- time ----------------------------------------------------------------------------------


def test_late_events_never_move_tier_time_backwards() -> None:
    evaluated = local(2025, 3, 1, 12)
    s = state("bronze", *year(2025), evaluated_at=evaluated)
    late = local(2025, 2, 1)  # an order from February, synced after the March evaluation
    d = decide(policy(), facts(s, [(late, 150)]), late)
    assert summary(d) == [("upgrade", "bronze", "silver", "silver")]
    assert d.changes[0].at == evaluated and d.state.since == evaluated
    assert d.state.evaluated_at == evaluated
    # nothing new: still no movement backwards, and no change
    d2 = decide(policy(), facts(d.state, [(late, 150)]), local(2024, 1, 1))
    assert d2.changes == () and d2.state == d.state


def test_max_reviews_bounds_one_call_and_the_next_call_continues() -> None:
    p = policy(period="rolling", months=1)
    start = local(1980, 1, 1)
    s = state("bronze", start, add_months(start, 1, TZ))
    now = local(2025, 1, 1)  # 540 monthly reviews are due
    d = decide(p, facts(s, []), now)
    assert len(d.changes) == MAX_REVIEWS
    d2 = decide(p, facts(d.state, []), now)
    assert len(d2.changes) == 540 - MAX_REVIEWS
    assert d2.state.period_end == local(2025, 2, 1)


# ---- properties ----------------------------------------------------------------------------

T0 = local(2024, 1, 1) - timedelta(minutes=30)  # 23:30 local on 31 Dec 2023 (15:30 UTC)
SPAN_MINUTES = 4 * 366 * 24 * 60
END = T0 + timedelta(minutes=SPAN_MINUTES + 1)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def ladders(draw: st.DrawFn) -> tuple[TierDef, ...]:
    n = draw(st.integers(1, 4))
    thresholds = [0]
    for _ in range(n - 1):
        thresholds.append(thresholds[-1] + draw(st.integers(1, 600)))
    keeps = [0]
    for t in thresholds[1:]:
        keeps.append(draw(st.integers(keeps[-1], t)))
    return tuple(TierDef(f"t{i}", f"T{i}", thresholds[i], keeps[i]) for i in range(n))


@st.composite
def policies(draw: st.DrawFn, measure: str | None = None) -> TierPolicy:
    measure = measure or draw(st.sampled_from(["lifetime", "period"]))
    p = TierPolicy(
        draw(ladders()),
        measure,  # type: ignore[arg-type]
        draw(st.sampled_from(["calendar_year", "anniversary", "rolling"])),
        draw(st.sampled_from([1, 2, 3, 6, 12, 13])),
        draw(st.sampled_from(["one_step", "recalculate"])),
    )
    check_policy(p)
    return p


instants = st.integers(0, SPAN_MINUTES).map(lambda m: T0 + timedelta(minutes=m))
# Growth facts in business time, refunds included; several on the same instant are allowed.
moves_st = st.lists(st.tuples(instants, st.integers(-300, 700)), max_size=10).map(sorted)


@st.composite
def overrides(draw: st.DrawFn, p: TierPolicy) -> tuple[datetime, str, datetime | None] | None:
    if not draw(st.booleans()):
        return None
    at = draw(instants)
    until = at + timedelta(minutes=draw(st.integers(1, 2 * 366 * 24 * 60)))
    return (
        at,
        draw(st.sampled_from([t.code for t in p.tiers])),
        draw(st.sampled_from([until, None])),
    )


def lifetime_at(moves: list[tuple[datetime, int]], now: datetime, base: int = 0) -> int:
    return base + sum(a for at, a in moves if at <= now)


def run(
    p: TierPolicy,
    moves: list[tuple[datetime, int]],
    calls: list[datetime],
    override: tuple[datetime, str, datetime | None] | None = None,
    base: int = 0,
) -> tuple[TierState, list[TierChange]]:
    """Decide at each instant in turn (an operator sets the override at its own instant)."""
    s, changes = TierState(), []
    for now in calls:
        d = decide(p, TierFacts(s, lifetime_at(moves, now, base), moves, TZ_NAME), now)
        s, changes = d.state, [*changes, *d.changes]
        if override is not None and override[0] == now:
            if override[2] is None:  # no end (set_override always takes one): stays forever
                s = replace(s, override=override[1], override_reason="test")
            else:
                s, c = set_override(s, override[1], override[2], "test", now)
                changes.append(c)
    return s, changes


@st.composite
def histories(draw: st.DrawFn, measure: str | None = None) -> tuple:
    """A policy, growth facts and the state after following them with the event path."""
    p = draw(policies(measure))
    moves = draw(moves_st)
    ov = draw(overrides(p))
    calls = sorted({T0, *(at for at, _ in moves), *([ov[0]] if ov else [])})
    s, _ = run(p, moves, calls, ov)
    return p, moves, s


def rank(p: TierPolicy, code: str | None) -> int:
    return [t.code for t in p.tiers].index(code)  # type: ignore[arg-type]


@FAST
@given(histories(), instants)
def test_decide_is_deterministic_and_idempotent(h: tuple, later: datetime) -> None:
    p, moves, s = h
    now = max(later, s.evaluated_at)
    f = TierFacts(s, lifetime_at(moves, now), moves, TZ_NAME)
    d = decide(p, f, now)
    assert decide(p, f, now) == d
    again = decide(p, replace(f, state=d.state), now)
    assert again.changes == () and again.state == d.state


@FAST
@given(histories(), instants)
def test_decision_invariants(h: tuple, later: datetime) -> None:
    """The natural tier is on the ladder; changes are chronological and within the walk;
    reviews follow the keep rule; upgrades land exactly on what the measure reaches."""
    p, moves, s = h
    now = later
    d = decide(p, TierFacts(s, lifetime_at(moves, now), moves, TZ_NAME), now)
    walk_to = max(now, s.evaluated_at)
    assert d.state.tier in [t.code for t in p.tiers]
    assert d.state.evaluated_at == walk_to
    assert d.state.period_start is not None and d.state.period_end is not None
    assert d.state.period_start <= walk_to < d.state.period_end
    times = [c.at for c in d.changes]
    assert times == sorted(times)
    assert all(s.evaluated_at <= t <= walk_to for t in times)
    natural = s.tier
    for c in d.changes:
        assert c.natural in [t.code for t in p.tiers]
        if c.change == "kept":
            assert c.natural == natural
            assert c.growth >= p.tiers[rank(p, natural)].keep_threshold or rank(p, natural) == 0
        elif c.change == "downgrade":
            before = rank(p, natural)
            assert c.growth < p.tiers[before].keep_threshold
            after = rank(p, c.natural)
            if p.downgrade == "one_step":
                assert after == before - 1
            else:
                assert after < before
                assert c.growth >= p.tiers[after].keep_threshold or after == 0
                assert all(c.growth < t.keep_threshold for t in p.tiers[after + 1 : before + 1])
        elif c.change == "upgrade":
            reached = rank(p, c.natural)
            assert reached > rank(p, natural)
            # not past what the measure reaches, nor short of it
            assert p.tiers[reached].threshold <= c.growth
            assert reached == len(p.tiers) - 1 or c.growth < p.tiers[reached + 1].threshold
            assert c.at == walk_to
        else:
            assert c.change in ("override", "override_expired")
            assert c.natural == natural
        natural = c.natural
    assert natural == d.state.tier


@FAST
@given(histories(), instants, instants)
def test_late_calls_never_move_time_backwards(h: tuple, a: datetime, b: datetime) -> None:
    p, moves, s = h
    first, second = max(a, b), min(a, b)
    d1 = decide(p, TierFacts(s, lifetime_at(moves, first), moves, TZ_NAME), first)
    d2 = decide(p, TierFacts(d1.state, lifetime_at(moves, first), moves, TZ_NAME), second)
    assert d2.state.evaluated_at == d1.state.evaluated_at
    assert all(c.at >= d1.state.evaluated_at for c in d2.changes)


@FAST
@given(histories(), instants)
def test_horizon_is_enough(h: tuple, later: datetime) -> None:
    """Facts loaded from :func:`horizon` on give the same decision as the whole history."""
    p, moves, s = h
    now = max(later, s.evaluated_at)
    life = lifetime_at(moves, now)
    full = decide(p, TierFacts(s, life, moves, TZ_NAME), now)
    since = horizon(p, s, now, TZ_NAME)
    loaded = [(at, a) for at, a in moves if at >= since]
    assert decide(p, TierFacts(s, life, loaded, TZ_NAME), now) == full


def without_sliding_refunds(p: TierPolicy, moves: list) -> list:
    """Negative facts (refunds) are kept for the calendar year only: in a sliding window
    (anniversary, rolling) a refund leaving the window *raises* the measure at an instant no
    event marks, so the upgrade lands whenever decide next runs — see
    test_refund_leaving_a_sliding_window_upgrades_at_call_time."""
    return moves if p.period == "calendar_year" else [(at, a) for at, a in moves if a >= 0]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policies("period"),
    moves_st,
    st.lists(instants, max_size=8),
    st.data(),
)
def test_splitting_time_gives_the_same_history(
    p: TierPolicy, moves: list, extra: list[datetime], data: st.DataObject
) -> None:
    """The scheduled job may run at any instants between events: deciding at every growth
    event and at the end gives the same final state and the same changes, in the same order,
    whatever extra instants decide is also called at. (With no growth after the first call,
    that is "many calls == one call at the end".)"""
    moves = without_sliding_refunds(p, moves)
    ov = data.draw(overrides(p))
    must = {T0, *(at for at, _ in moves), END, *([ov[0]] if ov else [])}
    one = run(p, moves, sorted(must), ov)
    many = run(p, moves, sorted(must | set(extra)), ov)
    assert many == one


@FAST
@given(
    policies("period"),
    st.lists(st.tuples(st.integers(0, 30 * 24 * 60), st.integers(-300, 700)), max_size=6),
    st.lists(instants, min_size=1, max_size=12),
)
def test_no_growth_after_the_first_call_one_call_equals_many(
    p: TierPolicy, offsets: list[tuple[int, int]], calls: list[datetime]
) -> None:
    """The literal form: once every growth fact has been decided, one call at the end and many
    calls on the way give the same state and history."""
    moves = without_sliding_refunds(p, sorted((T0 + timedelta(minutes=m), a) for m, a in offsets))
    first = T0 + timedelta(days=31)
    calls = sorted({first, *(max(c, first) for c in calls)})
    assert run(p, moves, [T0, first, calls[-1]]) == run(p, moves, [T0, *calls])


@given(ladders().filter(lambda ts: len(ts) >= 2), st.data())
@settings(max_examples=50, deadline=None)
def test_check_policy_rejects_overlapping_thresholds(
    tiers: tuple[TierDef, ...], data: st.DataObject
) -> None:
    check_policy(TierPolicy(tiers))
    i = data.draw(st.integers(1, len(tiers) - 1))
    lower = tiers[i - 1]
    bad = data.draw(st.integers(lower.threshold - 50, lower.threshold))
    broken = replace(tiers[i], threshold=bad, keep=min(tiers[i].keep_threshold, max(bad, 0)))
    with pytest.raises(ValueError):
        check_policy(TierPolicy((*tiers[:i], broken, *tiers[i + 1 :])))


# ---- decisions taken in #4 ---------------------------------------------------------------


def test_lifetime_measure_reviews_the_lifetime_balance_and_never_flaps() -> None:
    # Reviewing a lifetime ladder on the period's growth would downgrade a member whom the same
    # balance upgrades straight back (entry gifts again): reviews compare lifetime growth.
    s = state("gold", *year(2024))
    d = decide(policy(measure="lifetime"), facts(s, [], lifetime=1500), local(2025, 3, 1))
    assert [c.change for c in d.changes] == ["kept"] and d.state.tier == "gold"
    # Refunds took lifetime growth below Gold's keep (500): down, and not straight back up.
    refunded = [(local(2024, 6, 1), 1500), (local(2024, 9, 1), -1100)]
    d = decide(policy(measure="lifetime"), facts(s, refunded, lifetime=400), local(2025, 3, 1))
    assert [(c.change, c.to_tier) for c in d.changes] == [("downgrade", "silver")]
    # Growth after the review does not count for it (but upgrades at once afterwards).
    late = [(local(2025, 2, 1), 1000)]
    d = decide(policy(measure="lifetime"), facts(s, late, lifetime=1400), local(2025, 3, 1))
    got = [(c.change, c.to_tier) for c in d.changes]
    assert got == [("downgrade", "silver"), ("upgrade", "gold")]


def test_a_refund_dated_at_its_purchase_leaves_a_window_with_it() -> None:
    # refunds.py dates a refund's negative growth fact at the order's payment, so purchase and
    # refund enter and leave a sliding window together: no upgrade at an unmarked instant.
    p = policy(period="rolling", months=3)
    s = state("bronze", local(2025, 1, 1), local(2025, 4, 1))
    moves = [(local(2025, 1, 5), 140), (local(2025, 1, 5), -40)]
    at_event = decide(p, facts(s, moves), local(2025, 1, 10))
    early = decide(p, facts(at_event.state, moves), local(2025, 4, 5, 0, 1))
    late = decide(p, facts(at_event.state, moves), local(2025, 4, 9))
    assert [c.change for c in early.changes if c.change == "upgrade"] == []
    assert [c.change for c in late.changes if c.change == "upgrade"] == []

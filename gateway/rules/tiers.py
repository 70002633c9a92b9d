"""The tier policy: ``decide(policy, facts, now) → TierDecision``, pure.

The event path (an order or a task just added growth: upgrade now) and the scheduled job
(``memberhub tiers evaluate``: keep-level reviews at period end, manual overrides running out)
both call :func:`decide`, so they can never disagree. It walks time forward from the member's
stored state to ``now``:

1. an active override that ends before ``now`` expires at its end (the effective tier falls back
   to the natural one);
2. each qualifying period that ended before ``now`` is reviewed on the growth earned within it:
   at least the tier's ``keep`` → kept for another period; short → down ``one_step`` or
   ``recalculate``-d to the highest tier whose ``keep`` that growth meets;
3. at ``now``, the member moves up to the highest tier whose ``threshold`` the upgrade measure
   reaches (lifetime growth, or growth in the current window), at once.

Growth facts are ``(occurred_at, amount)`` pairs in business time (when the purchase or task
happened), so a year of orders synced in one afternoon is reviewed as the year it was.
"""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.rules.hookspecs import TierDef, TierPolicy, TierView

MAX_REVIEWS = 400


@dataclass(frozen=True)
class TierState:
    """What is stored per member (``member_tier``). ``tier`` is the natural tier (by policy);
    an active ``override`` is the effective one until ``override_until``."""

    tier: str | None = None
    since: datetime | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    override: str | None = None
    override_until: datetime | None = None
    override_reason: str | None = None
    evaluated_at: datetime | None = None

    def effective(self, now: datetime) -> str | None:
        if self.override and (self.override_until is None or self.override_until > now):
            return self.override
        return self.tier


@dataclass(frozen=True)
class TierFacts:
    """Everything :func:`decide` may know: the stored state, lifetime growth (the balance) and
    the growth movements since :func:`horizon` (sorted by time)."""

    state: TierState
    lifetime_growth: int
    moves: Sequence[tuple[datetime, int]] = ()
    timezone: str = "Asia/Shanghai"


@dataclass(frozen=True)
class TierChange:
    """One entry of tier history. ``change``: ``initial`` | ``upgrade`` | ``downgrade`` |
    ``kept`` | ``override`` | ``override_expired``. ``from_tier``/``to_tier`` are effective
    tiers; ``natural`` is the natural tier after the change."""

    at: datetime
    change: str
    from_tier: str | None
    to_tier: str
    natural: str
    reason: str
    growth: int = 0

    @property
    def effective_changed(self) -> bool:
        return self.from_tier != self.to_tier


@dataclass(frozen=True)
class TierDecision:
    state: TierState
    changes: tuple[TierChange, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def check_policy(policy: TierPolicy) -> None:
    """Raise ``ValueError`` naming the first thing wrong with a ladder (config validation)."""
    tiers = policy.tiers
    if not tiers:
        raise ValueError("a tier policy needs at least one tier")
    codes = [t.code for t in tiers]
    if len(set(codes)) != len(codes):
        raise ValueError(f"tier codes must be unique: {codes}")
    if tiers[0].threshold != 0:
        raise ValueError(f"the first tier ({tiers[0].code}) is the entry tier: threshold must be 0")
    for lower, upper in itertools.pairwise(tiers):
        if upper.threshold <= lower.threshold:
            raise ValueError(
                f"thresholds overlap: {upper.code} ({upper.threshold}) must be above "
                f"{lower.code} ({lower.threshold})"
            )
        if upper.keep_threshold < lower.keep_threshold:
            raise ValueError(f"keep thresholds must not decrease ({lower.code} → {upper.code})")
    for t in tiers:
        if t.keep_threshold < 0 or t.keep_threshold > t.threshold:
            raise ValueError(f"{t.code}: keep must be between 0 and its threshold")
        if t.multiplier_pct < 0 or not 0 < t.discount_bp <= 10_000:
            raise ValueError(f"{t.code}: multiplier_pct ≥ 0 and 0 < discount_bp ≤ 10000")
    if policy.measure not in ("lifetime", "period"):
        raise ValueError("measure must be 'lifetime' or 'period'")
    if policy.period not in ("calendar_year", "anniversary", "rolling"):
        raise ValueError("period must be 'calendar_year', 'anniversary' or 'rolling'")
    if policy.downgrade not in ("one_step", "recalculate"):
        raise ValueError("downgrade must be 'one_step' or 'recalculate'")
    if not 1 <= policy.months <= 60:
        raise ValueError("months must be between 1 and 60")


def tier_view(policy: TierPolicy, code: str | None) -> TierView | None:
    for rank, t in enumerate(policy.tiers):
        if t.code == code:
            return TierView(t.code, t.name, rank, t.multiplier_pct, t.discount_bp)
    return None


def tier_def(policy: TierPolicy, code: str | None) -> TierDef | None:
    return next((t for t in policy.tiers if t.code == code), None)


def _rank(policy: TierPolicy, code: str | None) -> int:
    for rank, t in enumerate(policy.tiers):
        if t.code == code:
            return rank
    return 0  # unknown (ladder changed) → entry tier; the next review recalculates


# ---- calendar ------------------------------------------------------------------------------


def add_months(at: datetime, months: int, tz: ZoneInfo) -> datetime:
    """``at`` plus ``months`` calendar months in the tenant's timezone (31 Jan + 1 → 28/29 Feb)."""
    local = at.astimezone(tz)
    y, m = divmod(local.month - 1 + months, 12)
    year, month = local.year + y, m + 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    return local.replace(year=year, month=month, day=day).astimezone(UTC)


def _year_start(at: datetime, tz: ZoneInfo) -> datetime:
    local = at.astimezone(tz)
    return datetime(local.year, 1, 1, tzinfo=tz).astimezone(UTC)


def _period_from(policy: TierPolicy, start: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    if policy.period == "calendar_year":
        begin = _year_start(start, tz)
        local = begin.astimezone(tz)
        return begin, datetime(local.year + 1, 1, 1, tzinfo=tz).astimezone(UTC)
    months = 12 if policy.period == "anniversary" else policy.months
    return start, add_months(start, months, tz)


def _upgrade_window_start(policy: TierPolicy, now: datetime, tz: ZoneInfo) -> datetime:
    if policy.period == "calendar_year":
        return _year_start(now, tz)
    return add_months(now, -(12 if policy.period == "anniversary" else policy.months), tz)


def upgrade_window_start(policy: TierPolicy, now: datetime, timezone: str) -> datetime:
    """Where the upgrade measure of a ``period`` ladder starts counting at ``now``."""
    return _upgrade_window_start(policy, now, ZoneInfo(timezone))


def horizon(policy: TierPolicy, state: TierState, now: datetime, timezone: str) -> datetime:
    """The earliest growth movement :func:`decide` can need (load facts from here on)."""
    tz = ZoneInfo(timezone)
    candidates = [_upgrade_window_start(policy, now, tz)]
    if state.period_start is not None:
        candidates.append(state.period_start)
    return min(candidates)


def _growth(moves: Sequence[tuple[datetime, int]], start: datetime, end: datetime) -> int:
    return sum(amount for at, amount in moves if start <= at < end)


# ---- the policy ------------------------------------------------------------------------------


def decide(policy: TierPolicy, facts: TierFacts, now: datetime) -> TierDecision:
    """Walk the member's tier from its stored state to ``now`` (see the module docstring)."""
    tz = ZoneInfo(facts.timezone)
    state = facts.state
    if state.evaluated_at is not None and now < state.evaluated_at:
        now = state.evaluated_at  # late events never move tier time backwards
    changes: list[TierChange] = []
    entry = policy.tiers[0]
    if state.tier is None or tier_def(policy, state.tier) is None:
        if state.override and state.override_until and state.override_until <= now:
            # An override that ended before now (the ladder changed under it) expires first:
            # left to the loop below, its change came after this one at ``now``, out of order.
            state, change = _expire_override(state)
            changes.append(change)
        start, end = _period_from(policy, now, tz)
        before = state.effective(now)
        state = replace(state, tier=entry.code, since=now, period_start=start, period_end=end)
        if state.tier != before:
            changes.append(
                TierChange(
                    now,
                    "initial",
                    before,
                    state.effective(now) or entry.code,
                    entry.code,
                    f"joined at {entry.name}",
                )
            )
    for _ in range(MAX_REVIEWS):
        due_override = (
            state.override_until
            if state.override and state.override_until and state.override_until <= now
            else None
        )
        due_review = state.period_end if state.period_end and state.period_end <= now else None
        if due_override is None and due_review is None:
            break
        if due_override is not None and (due_review is None or due_override <= due_review):
            state, change = _expire_override(state)
            changes.append(change)
            continue
        assert due_review is not None and state.period_start is not None
        state, change = _review(policy, state, facts, due_review, tz)
        changes.append(change)
    state, up = _upgrade(policy, state, facts, now, tz)
    if up is not None:
        changes.append(up)
    return TierDecision(replace(state, evaluated_at=now), tuple(changes))


def _expire_override(state: TierState) -> tuple[TierState, TierChange]:
    assert state.override_until is not None
    reason = f"override to {state.override} ended"
    if state.override_reason:
        reason += f" ({state.override_reason})"
    change = TierChange(
        state.override_until,
        "override_expired",
        state.override,
        state.tier or "",
        state.tier or "",
        reason,
    )
    return replace(state, override=None, override_until=None, override_reason=None), change


def _review(
    policy: TierPolicy,
    state: TierState,
    facts: TierFacts,
    at: datetime,
    tz: ZoneInfo,
) -> tuple[TierState, TierChange]:
    assert state.period_start is not None
    what = "lifetime growth" if policy.measure == "lifetime" else "growth in the period"
    if policy.measure == "lifetime":
        # Lifetime tiers are reviewed on the lifetime growth as it stood at the review (only
        # refunds lower it): comparing the period's growth instead would downgrade a member
        # whom the same balance upgrades straight back (and re-gifts) a moment later.
        later = sum(a for t, a in facts.moves if t >= at)
        earned = facts.lifetime_growth - later
    else:
        earned = _growth(facts.moves, state.period_start, at)
    rank = _rank(policy, state.tier)
    current = policy.tiers[rank]
    before = state.effective(at)
    next_start, next_end = _period_from(policy, at, tz)
    # The entry tier (rank 0) cannot be lost. Its keep is 0, but refunds can make a period's
    # growth negative, and that used to record a "downgrade" from the entry tier to itself
    # (a history row and a reset ``since``): keep it instead.
    if earned >= current.keep_threshold or rank == 0:
        state = replace(state, period_start=next_start, period_end=next_end)
        reason = f"kept {current.name}: {earned} {what} (keep {current.keep_threshold})"
        return state, TierChange(
            at, "kept", before, state.effective(at) or current.code, current.code, reason, earned
        )
    if policy.downgrade == "one_step":
        new_rank = max(rank - 1, 0)
    else:
        new_rank = max(
            (i for i, t in enumerate(policy.tiers[: rank + 1]) if earned >= t.keep_threshold),
            default=0,
        )
    target = policy.tiers[new_rank]
    state = replace(state, tier=target.code, since=at, period_start=next_start, period_end=next_end)
    how = "one step" if policy.downgrade == "one_step" else "recalculated"
    reason = (
        f"{earned} {what} is below {current.name}'s keep "
        f"{current.keep_threshold}: {current.name} → {target.name} ({how})"
    )
    return state, TierChange(
        at, "downgrade", before, state.effective(at) or target.code, target.code, reason, earned
    )


def _upgrade(
    policy: TierPolicy, state: TierState, facts: TierFacts, now: datetime, tz: ZoneInfo
) -> tuple[TierState, TierChange | None]:
    if policy.measure == "lifetime":
        measure = facts.lifetime_growth
        what = "lifetime growth"
    else:
        measure = _growth(
            facts.moves, _upgrade_window_start(policy, now, tz), now + timedelta(microseconds=1)
        )
        what = "growth this year" if policy.period == "calendar_year" else "growth in the window"
    rank = _rank(policy, state.tier)
    target_rank = max((i for i, t in enumerate(policy.tiers) if measure >= t.threshold), default=0)
    if target_rank <= rank:
        return state, None
    target = policy.tiers[target_rank]
    before = state.effective(now)
    if policy.period == "calendar_year":
        start, end = state.period_start, state.period_end
    else:
        start, end = _period_from(policy, now, tz)
    state = replace(state, tier=target.code, since=now, period_start=start, period_end=end)
    reason = f"{what} {measure} reached {target.name} ({target.threshold})"
    return state, TierChange(
        now, "upgrade", before, state.effective(now) or target.code, target.code, reason, measure
    )


def set_override(
    state: TierState, tier: str, until: datetime, reason: str, now: datetime
) -> tuple[TierState, TierChange]:
    """A manual override (an operator's decision, e.g. a VIP gesture) until ``until``."""
    before = state.effective(now)
    new = replace(state, override=tier, override_until=until, override_reason=reason)
    change = TierChange(
        now,
        "override",
        before,
        tier,
        state.tier or tier,
        f"manual override until {until.isoformat()}: {reason}",
    )
    return new, change

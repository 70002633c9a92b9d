"""The task engine, pure: ``advance(task, state, snapshot, event) → TaskStep | None``.

A tasks rule set only declares :class:`~gateway.rules.hookspecs.TaskDef` s; this module decides
what an event does to a member's progress on each one, and :mod:`gateway.rules.engine` stores
the new state and pays the reward. Every completion has an *occurrence* — the local day of a
check-in, ``once``, the invitee, the order, the event — and the engine records at most one
completion per (member, task, occurrence), so replays and double taps never pay twice.

Limits are counted in the tenant's timezone: ``per_day`` per local day, ``per_period`` per ISO
week / month / year, ``lifetime`` ever. A refused attempt (limit reached, already checked in
today) is reported with a reason and changes nothing.

Events can arrive late (a sync, a retry). The state keeps counters for the latest local day and
period only, so an event for an *earlier* day or period can't be checked against that day's or
period's limit: when such a limit applies (and for check-ins, whose streak only runs forward) it
is refused as ``LATE``; otherwise it counts towards the lifetime (and the current period's
count when it falls in it), and the counters never move back to an earlier day or period.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.rules.hookspecs import EventView, MemberSnapshot, TaskDef

DEFAULT_EVENT = {
    "checkin": "task.checkin",
    "categories": "order.paid",
    "profile": "member.profile_updated",
}


@dataclass(frozen=True)
class TaskStep:
    """What one event does to one task. ``completed`` → pay ``points``/``growth`` once per
    ``occurrence``; otherwise ``refused`` says why (or progress was only advanced)."""

    task: str
    state: dict[str, Any]
    completed: bool
    occurrence: str
    points: int = 0
    growth: int = 0
    reason: str = ""
    refused: str | None = None
    rewards: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskStatus:
    """Progress as a member sees it (GraphQL ``Task``)."""

    task: TaskDef
    today: int
    this_period: int
    lifetime: int
    streak: int
    progress: int
    target: int
    available: bool
    blocked: str | None


def event_type(task: TaskDef) -> str | None:
    if task.kind == "invite":
        return "referral.first_order" if task.on == "first_order" else "referral.joined"
    return task.event or DEFAULT_EVENT.get(task.kind)


def check_task(task: TaskDef) -> list[str]:
    """Problems with a task definition (config validation)."""
    out: list[str] = []
    if task.kind not in ("checkin", "once", "count", "invite", "categories", "profile"):
        out.append(f"task {task.code}: unknown kind {task.kind!r}")
    if task.kind in ("once", "count") and not task.event:
        out.append(f"task {task.code}: kind {task.kind!r} needs an event")
    if task.points < 0 or task.growth < 0:
        out.append(f"task {task.code}: rewards must not be negative")
    for limit in (task.per_day, task.per_period, task.lifetime):
        if limit is not None and limit < 1:
            out.append(f"task {task.code}: limits must be ≥ 1")
    if task.kind == "categories" and task.categories < 2:
        out.append(f"task {task.code}: categories needs N ≥ 2")
    if task.kind == "profile" and not task.fields:
        out.append(f"task {task.code}: profile needs fields")
    for b in task.streak:
        if b.days < 2 or b.points < 0 or b.growth < 0:
            out.append(f"task {task.code}: streak bonus needs days ≥ 2 and rewards ≥ 0")
    return out


def period_key(task: TaskDef, day: date) -> str:
    if task.period == "week":
        y, w, _ = day.isocalendar()
        return f"{y}-W{w:02d}"
    if task.period == "year":
        return f"{day.year}"
    return f"{day.year}-{day.month:02d}"


def _local_day(at: datetime, timezone: str) -> date:
    return at.astimezone(ZoneInfo(timezone)).date()


def _counts(task: TaskDef, state: Mapping[str, Any], day: date) -> tuple[int, int, int]:
    today = int(state.get("day_count", 0)) if state.get("day") == day.isoformat() else 0
    period = (
        int(state.get("period_count", 0)) if state.get("period") == period_key(task, day) else 0
    )
    return today, period, int(state.get("lifetime", 0))


def _per_day(task: TaskDef) -> int | None:
    return task.per_day if task.per_day is not None else (1 if task.kind == "checkin" else None)


def _is_late(state: Mapping[str, Any], day: date) -> bool:
    """``day`` is before the local day the counters are kept for (ISO dates sort as strings)."""
    kept = state.get("day")
    return isinstance(kept, str) and day.isoformat() < kept


def _limit(task: TaskDef, state: Mapping[str, Any], day: date) -> str | None:
    today, period, lifetime = _counts(task, state, day)
    if task.lifetime is not None and lifetime >= task.lifetime:
        return "LIFETIME_LIMIT"
    if task.per_period is not None and period >= task.per_period:
        return "PERIOD_LIMIT"
    per_day = _per_day(task)
    if per_day is not None and today >= per_day:
        return "DAILY_LIMIT"
    return None


def _late_limit(task: TaskDef, state: Mapping[str, Any], day: date) -> str | None:
    """A late event's own day (or earlier period) has no count in the state: `_counts` would
    report 0 and let it through however many completions that day (period) already had — e.g.
    with ``per_day=1``, events on 2 Mar, 1 Mar (late), 2 Mar all completed, twice on 2 Mar.
    Refuse it when a limit for that day or period applies."""
    if not _is_late(state, day):
        return None
    if _per_day(task) is not None:
        return "LATE"
    if task.per_period is not None and period_key(task, day) != state.get("period"):
        return "LATE"
    return None


def _count(task: TaskDef, state: dict[str, Any], day: date) -> dict[str, Any]:
    today, period, lifetime = _counts(task, state, day)
    if _is_late(state, day):
        # A late event: keep the latest day's counters (overwriting them with the earlier day
        # would reset that day's count, so its limit could be passed again) and the period's
        # when the event belongs to an earlier period.
        state["lifetime"] = lifetime + 1
        if period_key(task, day) == state.get("period"):
            state["period_count"] = period + 1
        return state
    state.update(
        day=day.isoformat(),
        day_count=today + 1,
        period=period_key(task, day),
        period_count=period + 1,
        lifetime=lifetime + 1,
    )
    return state


def advance(
    task: TaskDef, state: Mapping[str, Any], snapshot: MemberSnapshot, event: EventView
) -> TaskStep | None:
    """What ``event`` does to ``task`` for this member; ``None`` when it does not concern it."""
    if event.type != event_type(task):
        return None
    if task.channels is not None and event.channel not in task.channels:
        return None
    day = _local_day(event.occurred_at, snapshot.timezone)
    new = dict(state)
    occurrence = str(event.id)
    points, growth, reason = task.points, task.growth, task.title
    rewards = list(task.rewards)
    if task.kind == "checkin":
        occurrence = day.isoformat()
        last = new.get("last_day")
        if last == day.isoformat():
            return TaskStep(task.code, new, False, occurrence, refused="ALREADY_DONE_TODAY")
        if isinstance(last, str) and day.isoformat() < last:
            # A check-in for a day before the last one (a replay, a late sync): the state can't
            # tell whether that day was done, and taking it would move ``last_day`` back and
            # break the running streak (1, 2 then a late day 1 again → the next day restarts
            # at 1). Refuse it.
            return TaskStep(task.code, new, False, occurrence, refused="LATE")
        streak = int(new.get("streak", 0)) + 1 if last == (day - timedelta(1)).isoformat() else 1
        refused = _limit(task, new, day)
        if refused:
            return TaskStep(task.code, new, False, occurrence, refused=refused)
        new.update(streak=streak, last_day=day.isoformat(), best=max(streak, new.get("best", 0)))
        reason = f"{task.title}: day {streak} of the streak"
        for bonus in task.streak:
            if streak == bonus.days or (bonus.repeat and streak % bonus.days == 0):
                points += bonus.points
                growth += bonus.growth
                rewards.extend(bonus.rewards)
                reason += f" (+{bonus.days}-day streak bonus)"
    elif task.kind in ("once", "profile"):
        occurrence = "once"
        if new.get("done"):
            return TaskStep(task.code, new, False, occurrence, refused="ALREADY_DONE")
        if task.kind == "profile":
            have = {f for f in task.fields if snapshot.profile.get(f) not in (None, "")}
            have |= set(new.get("have", ())) & set(task.fields)
            have |= set(event.payload.get("fields") or ()) & set(task.fields)
            new["have"] = sorted(have)
            if len(have) < len(task.fields):
                return TaskStep(task.code, new, False, occurrence)
        new["done"] = True
    elif task.kind == "invite":
        invitee = event.payload.get("invitee_id")
        if not invitee:
            return None
        occurrence = f"invitee:{invitee}"
        reason = f"{task.title} (invitee {str(invitee)[:8]})"
    elif task.kind == "categories":
        cats = {
            str(line.get("category"))
            for line in event.payload.get("lines") or ()
            if isinstance(line, Mapping) and line.get("category")
        }
        if task.window == "order":
            occurrence = f"order:{event.payload.get('order_id', event.id)}"
            if len(cats) < task.categories:
                return TaskStep(task.code, new, False, occurrence)
            reason = f"{task.title}: {len(cats)} categories in one order"
        else:
            key = period_key(task, day)
            current = new.get("cats_period")
            if isinstance(current, str) and key < current:
                # An order from an earlier period (keys of one task sort by time): that
                # period's categories are gone, and replacing the current period's with them
                # would lose its progress. Count the order's own categories only.
                seen = set(cats)
            else:
                seen = set(new.get("cats", [])) if current == key else set()
                seen |= cats
                new.update(cats=sorted(seen), cats_period=key)
            occurrence = f"period:{key}"
            if len(seen) < task.categories:
                return TaskStep(task.code, new, False, occurrence)
            reason = f"{task.title}: {len(seen)} categories in {key}"
    refused = _limit(task, new, day) or _late_limit(task, new, day)
    if refused:
        return TaskStep(task.code, dict(state), False, occurrence, refused=refused)
    counted = _count(task, new, day)
    return TaskStep(
        task.code, counted, True, occurrence, points, growth, reason, rewards=tuple(rewards)
    )


def status(task: TaskDef, state: Mapping[str, Any], now: datetime, timezone: str) -> TaskStatus:
    """Progress for display: counts in the current day/period, streak, how far along."""
    day = _local_day(now, timezone)
    today, period, lifetime = _counts(task, state, day)
    streak = int(state.get("streak", 0))
    if task.kind == "checkin" and state.get("last_day") not in (
        day.isoformat(),
        (day - timedelta(1)).isoformat(),
    ):
        streak = 0  # the streak broke; it restarts at the next check-in
    progress, target = lifetime, task.lifetime or 0
    if task.kind == "categories" and task.window == "period":
        cats = state.get("cats", []) if state.get("cats_period") == period_key(task, day) else []
        progress, target = len(cats), task.categories
    elif task.kind == "profile":
        progress, target = len(state.get("have", [])), len(task.fields)
    elif task.kind == "checkin":
        progress, target = streak, max((b.days for b in task.streak), default=0)
    blocked = _limit(task, state, day)
    if task.kind in ("once", "profile") and state.get("done"):
        blocked = "ALREADY_DONE"
    if task.kind == "checkin" and state.get("last_day") == day.isoformat():
        blocked = "ALREADY_DONE_TODAY"
    return TaskStatus(
        task, today, period, lifetime, streak, progress, target, blocked is None, blocked
    )

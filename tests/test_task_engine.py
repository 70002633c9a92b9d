"""The pure task engine (:mod:`gateway.rules.tasks`): concrete scenarios and properties.

No database: ``advance(task, state, snapshot, event)`` is pure. The engine
(:mod:`gateway.rules.engine`) stores ``step.state`` and records one completion per
(member, task, occurrence); here the state alone is checked, so replays must already be refused
by the pure function for ``once`` and ``checkin``. Days are Asia/Shanghai days: 16:00 UTC is
local midnight.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.rules.hookspecs import EventView, MemberSnapshot, StreakBonus, TaskDef
from gateway.rules.tasks import (
    TaskStep,
    advance,
    check_task,
    event_type,
    period_key,
    status,
)

TZ_NAME = "Asia/Shanghai"
TZ = ZoneInfo(TZ_NAME)
MEMBER = uuid.UUID("00000000-0000-4000-8000-000000000001")
SNAP = MemberSnapshot(MEMBER, datetime(2024, 1, 1, tzinfo=UTC), timezone=TZ_NAME)

CHECKIN = TaskDef(
    "checkin",
    "Daily check-in",
    "checkin",
    points=5,
    streak=(StreakBonus(3, points=10), StreakBonus(7, points=50, growth=5, repeat=True)),
)
FOLLOW = TaskDef("follow", "Follow us", "once", points=100, event="wechat.followed")
POST = TaskDef("post", "Post", "count", points=2, event="community.posted", per_day=2, per_period=5)


def local(y: int, m: int, d: int, h: int = 12, mi: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=TZ).astimezone(UTC)


def event(type_: str, at: datetime, **payload: Any) -> EventView:
    return EventView(uuid.uuid4(), type_, MEMBER, at, payload)


def step(
    task: TaskDef,
    state: dict[str, Any],
    ev: EventView,
    snapshot: MemberSnapshot = SNAP,
) -> TaskStep:
    got = advance(task, MappingProxyType(dict(state)), snapshot, ev)  # read-only: no mutation
    assert got is not None
    return got


def play(
    task: TaskDef, events: list[EventView], snapshot: MemberSnapshot = SNAP
) -> tuple[dict[str, Any], list[TaskStep]]:
    """Feed events in order, keeping each step's state (as the engine stores it)."""
    state: dict[str, Any] = {}
    steps = []
    for ev in events:
        s = advance(task, MappingProxyType(dict(state)), snapshot, ev)
        if s is None:
            continue
        state = s.state
        steps.append(s)
    return state, steps


# ---- definitions ---------------------------------------------------------------------------


def test_event_type() -> None:
    assert event_type(CHECKIN) == "task.checkin"
    assert event_type(FOLLOW) == "wechat.followed"
    assert event_type(TaskDef("c", "C", "categories", categories=2)) == "order.paid"
    assert event_type(TaskDef("p", "P", "profile", fields=("name",))) == "member.profile_updated"
    assert event_type(TaskDef("i", "I", "invite")) == "referral.joined"
    assert event_type(TaskDef("i", "I", "invite", on="first_order")) == "referral.first_order"
    # an explicit event overrides the default; count/once have none
    assert event_type(TaskDef("x", "X", "checkin", event="app.opened")) == "app.opened"
    assert event_type(TaskDef("x", "X", "count")) is None


def test_check_task_accepts_valid_definitions() -> None:
    for t in (
        CHECKIN,
        FOLLOW,
        POST,
        TaskDef("i", "I", "invite", points=10, lifetime=20),
        TaskDef("c", "C", "categories", categories=2),
        TaskDef("p", "P", "profile", fields=("name", "birthday")),
    ):
        assert check_task(t) == []


@pytest.mark.parametrize(
    ("task", "needle"),
    [
        (TaskDef("t", "T", "lottery"), "unknown kind"),  # type: ignore[arg-type]
        (TaskDef("t", "T", "once"), "needs an event"),
        (TaskDef("t", "T", "count"), "needs an event"),
        (TaskDef("t", "T", "checkin", points=-1), "must not be negative"),
        (TaskDef("t", "T", "checkin", growth=-1), "must not be negative"),
        (TaskDef("t", "T", "checkin", per_day=0), "limits must be ≥ 1"),
        (TaskDef("t", "T", "checkin", per_period=0), "limits must be ≥ 1"),
        (TaskDef("t", "T", "checkin", lifetime=0), "limits must be ≥ 1"),
        (TaskDef("t", "T", "categories", categories=1), "N ≥ 2"),
        (TaskDef("t", "T", "profile"), "needs fields"),
        (TaskDef("t", "T", "checkin", streak=(StreakBonus(1, 5),)), "days ≥ 2"),
        (TaskDef("t", "T", "checkin", streak=(StreakBonus(3, -5),)), "rewards ≥ 0"),
        (TaskDef("t", "T", "checkin", streak=(StreakBonus(3, 0, -1),)), "rewards ≥ 0"),
    ],
)
def test_check_task_rejects(task: TaskDef, needle: str) -> None:
    problems = check_task(task)
    assert len(problems) == 1 and needle in problems[0] and "task t:" in problems[0]


@pytest.mark.parametrize(
    ("period", "day", "key"),
    [
        ("month", date(2024, 2, 29), "2024-02"),
        ("year", date(2024, 12, 31), "2024"),
        ("week", date(2024, 3, 4), "2024-W10"),
        # ISO weeks belong to the ISO year: 30 Dec 2024 is week 1 of 2025, 3 Jan 2021 week 53
        ("week", date(2024, 12, 30), "2025-W01"),
        ("week", date(2021, 1, 3), "2020-W53"),
    ],
)
def test_period_key(period: str, day: date, key: str) -> None:
    assert period_key(TaskDef("t", "T", "count", event="e", period=period), day) == key  # type: ignore[arg-type]


# ---- routing -------------------------------------------------------------------------------


def test_other_events_do_not_concern_the_task() -> None:
    at = local(2024, 3, 1)
    assert advance(CHECKIN, {}, SNAP, event("community.posted", at)) is None
    assert advance(FOLLOW, {}, SNAP, event("task.checkin", at)) is None
    invite = TaskDef("inv", "Invite", "invite", points=10)
    assert advance(invite, {}, SNAP, event("referral.first_order", at, invitee_id="x")) is None


def test_channels_filter() -> None:
    task = TaskDef("ck", "Check in", "checkin", points=1, channels=("wechat_mp",))
    at = local(2024, 3, 1)
    assert advance(task, {}, SNAP, event("task.checkin", at)) is None  # no channel
    assert advance(task, {}, SNAP, event("task.checkin", at, channel="app")) is None
    assert advance(task, {}, SNAP, event("task.checkin", at, channel=7)) is None  # not a str
    assert step(task, {}, event("task.checkin", at, channel="wechat_mp")).completed
    closed = TaskDef("ck", "Check in", "checkin", channels=())
    assert advance(closed, {}, SNAP, event("task.checkin", at, channel="app")) is None


# ---- check-in ------------------------------------------------------------------------------


def test_checkin_uses_the_local_day_around_midnight() -> None:
    # 16:30 UTC on 1 March is 00:30 on 2 March in Shanghai
    first = step(CHECKIN, {}, event("task.checkin", datetime(2024, 3, 1, 16, 30, tzinfo=UTC)))
    assert first.completed and first.occurrence == "2024-03-02"
    assert (first.points, first.growth) == (5, 0)
    assert first.reason == "Daily check-in: day 1 of the streak"
    assert first.state == {
        "streak": 1,
        "last_day": "2024-03-02",
        "best": 1,
        "day": "2024-03-02",
        "day_count": 1,
        "period": "2024-03",
        "period_count": 1,
        "lifetime": 1,
    }
    # 15:59 UTC on 2 March is still 2 March locally: already done
    again = step(
        CHECKIN, first.state, event("task.checkin", datetime(2024, 3, 2, 15, 59, tzinfo=UTC))
    )
    assert not again.completed and again.refused == "ALREADY_DONE_TODAY"
    assert again.state == first.state and again.occurrence == "2024-03-02"
    # 16:00 UTC on 2 March is 3 March: the streak goes on
    nxt = step(CHECKIN, first.state, event("task.checkin", datetime(2024, 3, 2, 16, 0, tzinfo=UTC)))
    assert nxt.completed and nxt.state["streak"] == 2 and nxt.occurrence == "2024-03-03"


def test_streak_bonuses_and_repeat() -> None:
    days = [local(2024, 2, 26) + timedelta(days=i) for i in range(15)]  # over the leap day
    _, steps = play(CHECKIN, [event("task.checkin", at) for at in days])
    assert all(s.completed for s in steps)
    assert [s.state["streak"] for s in steps] == list(range(1, 16))
    points = [s.points for s in steps]
    # day 3: +10 once; days 7 and 14: +50 (repeat); the rest the base 5
    assert points == [5, 5, 15, 5, 5, 5, 55, 5, 5, 5, 5, 5, 5, 55, 5]
    assert [s.growth for s in steps if s.growth] == [5, 5]
    assert "(+3-day streak bonus)" in steps[2].reason
    assert "(+7-day streak bonus)" in steps[13].reason
    assert [s.occurrence for s in steps[2:5]] == ["2024-02-28", "2024-02-29", "2024-03-01"]


def test_a_missed_day_restarts_the_streak_and_best_is_kept() -> None:
    ats = [local(2024, 3, d) for d in (1, 2, 3, 5, 6)]
    state, steps = play(CHECKIN, [event("task.checkin", at) for at in ats])
    assert [s.state["streak"] for s in steps] == [1, 2, 3, 1, 2]
    assert state["best"] == 3 and state["lifetime"] == 5
    # without repeat, the 3-day bonus is paid again only on a new streak's 3rd day
    assert [s.points for s in steps] == [5, 5, 15, 5, 5]


def test_checkin_limits() -> None:
    weekly = TaskDef("ck", "Check in", "checkin", points=1, per_period=2, period="week")
    ats = [local(2024, 3, d) for d in (4, 5, 6, 11)]  # Mon, Tue, Wed; next Mon
    state, steps = play(weekly, [event("task.checkin", at) for at in ats])
    assert [s.completed for s in steps] == [True, True, False, True]
    assert steps[2].refused == "PERIOD_LIMIT" and steps[2].state == steps[1].state
    assert state["period"] == "2024-W11" and state["period_count"] == 1
    capped = TaskDef("ck", "Check in", "checkin", points=1, lifetime=2)
    _, steps = play(capped, [event("task.checkin", local(2024, 3, d)) for d in (1, 2, 3)])
    assert [s.refused for s in steps] == [None, None, "LIFETIME_LIMIT"]


def test_replayed_or_late_checkin_is_refused() -> None:
    """Regression: a check-in for a day before the last one (a replay of an old event, a late
    sync) completed again and moved ``last_day`` back, restarting the streak at 1."""
    day1 = event("task.checkin", local(2024, 3, 1))
    day2 = event("task.checkin", local(2024, 3, 2))
    _, (_, s2) = play(CHECKIN, [day1, day2])
    replay = step(CHECKIN, s2.state, day1)
    assert not replay.completed and replay.refused == "LATE"
    assert replay.state == s2.state
    never_seen = step(CHECKIN, s2.state, event("task.checkin", local(2024, 2, 20)))
    assert never_seen.refused == "LATE" and never_seen.state == s2.state
    # and the streak runs on
    day3 = step(CHECKIN, s2.state, event("task.checkin", local(2024, 3, 3)))
    assert day3.completed and day3.state["streak"] == 3 and day3.points == 15


# ---- once, count, invite -------------------------------------------------------------------


def test_once() -> None:
    ev = event("wechat.followed", local(2024, 3, 1), channel="wechat_mp")
    first = step(FOLLOW, {}, ev)
    assert first.completed and first.occurrence == "once" and first.points == 100
    assert first.reason == "Follow us" and first.state["done"] is True
    for again in (ev, event("wechat.followed", local(2025, 1, 1))):
        s = step(FOLLOW, first.state, again)
        assert not s.completed and s.refused == "ALREADY_DONE" and s.state == first.state


def test_count_per_day_uses_the_local_day() -> None:
    evs = [
        event("community.posted", datetime(2024, 3, 1, 15, 0, tzinfo=UTC)),  # 1 Mar 23:00
        event("community.posted", datetime(2024, 3, 1, 15, 59, tzinfo=UTC)),  # 1 Mar 23:59
        event("community.posted", datetime(2024, 3, 1, 15, 59, 59, tzinfo=UTC)),  # 3rd on 1 Mar
        event("community.posted", datetime(2024, 3, 1, 16, 0, tzinfo=UTC)),  # 2 Mar 00:00
    ]
    state, steps = play(POST, evs)
    assert [s.completed for s in steps] == [True, True, False, True]
    assert steps[2].refused == "DAILY_LIMIT"
    assert [s.occurrence for s in steps] == [str(e.id) for e in evs]  # one per event
    assert (state["day"], state["day_count"], state["period_count"], state["lifetime"]) == (
        "2024-03-02",
        1,
        3,
        3,
    )


def test_count_per_period_resets_with_the_local_month() -> None:
    ats = [local(2024, 1, d) for d in (1, 2, 3, 4, 5, 6)]
    ats.append(datetime(2024, 1, 31, 16, 30, tzinfo=UTC))  # 1 Feb 00:30 local
    state, steps = play(POST, [event("community.posted", at) for at in ats])
    assert [s.refused for s in steps] == [None] * 5 + ["PERIOD_LIMIT", None]
    assert state["period"] == "2024-02" and state["period_count"] == 1 and state["lifetime"] == 6


def test_count_lifetime_limit_and_refusals_change_nothing() -> None:
    task = TaskDef("post", "Post", "count", points=1, event="community.posted", lifetime=2)
    state, steps = play(task, [event("community.posted", local(2024, 3, d)) for d in (1, 2, 3)])
    assert [s.refused for s in steps] == [None, None, "LIFETIME_LIMIT"]
    assert steps[2].state == steps[1].state and (steps[2].points, steps[2].growth) == (0, 0)
    assert not steps[2].completed and state["lifetime"] == 2


def test_late_event_cannot_reopen_a_day() -> None:
    """Regression: with ``per_day=1``, events on 2 Mar, 1 Mar (late) and 2 Mar again all
    completed — the late one moved the day counter back, so 2 Mar was counted from 0 again."""
    task = TaskDef("post", "Post", "count", points=1, event="community.posted", per_day=1)
    evs = [event("community.posted", local(2024, 3, d)) for d in (2, 1, 2)]
    state, steps = play(task, evs)
    assert [s.refused for s in steps] == [None, "LATE", "DAILY_LIMIT"]
    assert state["day"] == "2024-03-02" and state["lifetime"] == 1


def test_late_event_without_day_or_period_limits_still_counts() -> None:
    task = TaskDef("post", "Post", "count", points=1, event="community.posted", lifetime=10)
    evs = [event("community.posted", at) for at in (local(2024, 3, 5), local(2024, 3, 4))]
    evs.append(event("community.posted", local(2024, 2, 10)))  # an earlier month
    state, steps = play(task, evs)
    assert all(s.completed for s in steps)
    # counters stay on the latest day and month; the late events count in the lifetime (and
    # in the month, when they fall in it)
    assert state == {
        "day": "2024-03-05",
        "day_count": 1,
        "period": "2024-03",
        "period_count": 2,
        "lifetime": 3,
    }


def test_late_event_in_an_earlier_period_with_a_period_limit() -> None:
    task = TaskDef("post", "Post", "count", event="community.posted", per_period=3)
    evs = [event("community.posted", at) for at in (local(2024, 3, 5), local(2024, 3, 1))]
    evs.append(event("community.posted", local(2024, 2, 28)))
    state, steps = play(task, evs)
    # 1 Mar is late but in the month counted; 28 Feb belongs to a month no longer counted
    assert [s.refused for s in steps] == [None, None, "LATE"]
    assert state["period_count"] == 2 and state["day"] == "2024-03-05"


def test_invite_occurrence_per_invitee() -> None:
    task = TaskDef("inv", "Invite a friend", "invite", points=50, lifetime=2)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    evs = [
        event("referral.joined", local(2024, 3, 1), invitee_id=str(a)),
        event("referral.joined", local(2024, 3, 1)),  # no invitee: not this task's business
        event("referral.joined", local(2024, 3, 2), invitee_id=str(b)),
        event("referral.joined", local(2024, 3, 3), invitee_id=str(c)),
    ]
    assert advance(task, {}, SNAP, evs[1]) is None
    _, steps = play(task, evs)
    assert [s.occurrence for s in steps] == [f"invitee:{a}", f"invitee:{b}", f"invitee:{c}"]
    assert [s.refused for s in steps] == [None, None, "LIFETIME_LIMIT"]
    assert steps[0].reason == f"Invite a friend (invitee {str(a)[:8]})"
    first_order = TaskDef("inv2", "Invitee buys", "invite", points=80, on="first_order")
    s = step(first_order, {}, event("referral.first_order", local(2024, 3, 1), invitee_id=str(a)))
    assert s.completed and s.occurrence == f"invitee:{a}"


# ---- categories ----------------------------------------------------------------------------


def order(at: datetime, *cats: str | None, order_id: str | None = None) -> EventView:
    lines = [
        {"sku": f"s{i}", "category": c, "quantity": 1, "amount_fen": 100}
        for i, c in enumerate(cats)
    ]
    payload: dict[str, Any] = {"lines": lines}
    if order_id is not None:
        payload["order_id"] = order_id
    return event("order.paid", at, **payload)


def test_categories_in_one_order() -> None:
    task = TaskDef("mix", "Mix and match", "categories", points=30, categories=3)
    few = order(local(2024, 3, 1), "bread", "bread", "cake", None, order_id="o-1")
    s = step(task, {}, few)
    assert not s.completed and s.refused is None and s.occurrence == "order:o-1"
    assert s.state == {}
    bad_lines = event(
        "order.paid", local(2024, 3, 1), order_id="o-2", lines=["bread", {"category": ""}]
    )
    assert not step(task, {}, bad_lines).completed
    enough = order(local(2024, 3, 1), "bread", "cake", "coffee", "cake", order_id="o-3")
    s = step(task, {}, enough)
    assert s.completed and s.points == 30 and s.occurrence == "order:o-3"
    assert s.reason == "Mix and match: 3 categories in one order"
    no_id = order(local(2024, 3, 1), "bread", "cake", "coffee")
    assert step(task, {}, no_id).occurrence == f"order:{no_id.id}"


def test_categories_within_a_period() -> None:
    task = TaskDef(
        "mix", "Mix", "categories", points=30, categories=3, window="period", period="month"
    )
    evs = [
        order(local(2024, 1, 5), "bread"),
        order(local(2024, 1, 20), "cake", "bread"),
        order(datetime(2024, 1, 31, 16, 5, tzinfo=UTC), "coffee"),  # 1 Feb locally: new month
        order(local(2024, 2, 2), "bread", "cake"),
    ]
    state, steps = play(task, evs)
    assert [s.completed for s in steps] == [False, False, False, True]
    assert steps[1].state["cats"] == ["bread", "cake"]
    assert steps[2].state["cats"] == ["coffee"] and steps[2].state["cats_period"] == "2024-02"
    assert steps[3].occurrence == "period:2024-02"
    assert steps[3].reason == "Mix: 3 categories in 2024-02"
    assert state["cats"] == ["bread", "cake", "coffee"]


def test_categories_late_order_keeps_the_current_period() -> None:
    """Regression: an order from an earlier month replaced the current month's categories."""
    task = TaskDef("mix", "Mix", "categories", points=30, categories=3, window="period")
    state, _ = play(task, [order(local(2024, 3, 2), "bread", "cake")])
    late = step(task, state, order(local(2024, 2, 27), "coffee"))
    assert not late.completed and late.state == state
    done = step(task, state, order(local(2024, 3, 9), "coffee"))
    assert done.completed and done.occurrence == "period:2024-03"
    # a late order complete on its own still completes its own period
    late_full = step(task, state, order(local(2024, 2, 27), "tea", "coffee", "bread"))
    assert late_full.completed and late_full.occurrence == "period:2024-02"
    assert late_full.state["cats_period"] == "2024-03"


# ---- profile -------------------------------------------------------------------------------


def test_profile() -> None:
    task = TaskDef(
        "prof", "Complete your profile", "profile", points=20, fields=("name", "birthday", "city")
    )
    snap = MemberSnapshot(
        MEMBER, SNAP.created_at, profile={"name": "Li", "city": "", "gender": None}
    )
    s1 = step(task, {}, event("member.profile_updated", local(2024, 3, 1), fields=["gender"]), snap)
    assert not s1.completed and s1.refused is None and s1.state == {"have": ["name"]}
    s2 = step(
        task,
        s1.state,
        event("member.profile_updated", local(2024, 3, 2), fields=["birthday", "city"]),
        snap,
    )
    assert s2.completed and s2.occurrence == "once" and s2.points == 20
    assert s2.state["done"] is True and s2.state["have"] == ["birthday", "city", "name"]
    s3 = step(task, s2.state, event("member.profile_updated", local(2024, 3, 3)), snap)
    assert s3.refused == "ALREADY_DONE" and s3.state == s2.state
    # all fields already known from the snapshot: the first update completes it
    full = MemberSnapshot(
        MEMBER, SNAP.created_at, profile={"name": "Li", "birthday": date(1990, 1, 1), "city": "SH"}
    )
    assert step(task, {}, event("member.profile_updated", local(2024, 3, 1)), full).completed


# ---- status --------------------------------------------------------------------------------


def test_status_of_a_checkin_streak() -> None:
    state, _ = play(CHECKIN, [event("task.checkin", local(2024, 3, d)) for d in (1, 2)])
    today = status(CHECKIN, state, datetime(2024, 3, 1, 16, 30, tzinfo=UTC), TZ_NAME)  # 2 Mar
    assert (today.streak, today.progress, today.target, today.today) == (2, 2, 7, 1)
    assert not today.available and today.blocked == "ALREADY_DONE_TODAY"
    tomorrow = status(CHECKIN, state, local(2024, 3, 3), TZ_NAME)
    assert tomorrow.available and tomorrow.streak == 2 and tomorrow.today == 0
    broken = status(CHECKIN, state, local(2024, 3, 4), TZ_NAME)
    assert broken.available and broken.streak == 0 and broken.lifetime == 2
    assert (
        broken.this_period == 2
        and status(CHECKIN, state, local(2024, 4, 1), TZ_NAME).this_period == 0
    )


def test_status_of_other_kinds() -> None:
    now = local(2024, 3, 1)
    s = status(FOLLOW, {}, now, TZ_NAME)
    assert s.available and s.blocked is None and (s.progress, s.target) == (0, 0)
    done = status(FOLLOW, {"done": True, "lifetime": 1}, now, TZ_NAME)
    assert not done.available and done.blocked == "ALREADY_DONE"
    state, _ = play(POST, [event("community.posted", now) for _ in range(2)])
    post = status(POST, state, now, TZ_NAME)
    assert (post.today, post.this_period, post.lifetime) == (2, 2, 2)
    assert post.blocked == "DAILY_LIMIT"
    assert status(POST, state, local(2024, 3, 2), TZ_NAME).available
    mix = TaskDef("mix", "Mix", "categories", categories=3, window="period")
    st_ = {"cats": ["a", "b"], "cats_period": "2024-03"}
    assert (status(mix, st_, now, TZ_NAME).progress, status(mix, st_, now, TZ_NAME).target) == (
        2,
        3,
    )
    assert status(mix, st_, local(2024, 4, 1), TZ_NAME).progress == 0
    prof = TaskDef("p", "P", "profile", fields=("name", "city"))
    p = status(prof, {"have": ["name"]}, now, TZ_NAME)
    assert (p.progress, p.target, p.available) == (1, 2, True)
    capped = TaskDef("c", "C", "count", event="e", lifetime=3)
    c = status(capped, {"lifetime": 3}, now, TZ_NAME)
    assert (c.progress, c.target, c.blocked) == (3, 3, "LIFETIME_LIMIT")


# ---- properties ----------------------------------------------------------------------------

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
START = datetime(2024, 2, 20, 16, 0, tzinfo=UTC)  # 21 Feb 00:00 local, a week before the leap day
# minutes over ~7 weeks, so days, ISO weeks and months (and the leap day) all turn over
minutes = st.integers(0, 50 * 24 * 60)


def local_day(at: datetime) -> date:
    return at.astimezone(TZ).date()


@st.composite
def count_tasks(draw: st.DrawFn) -> TaskDef:
    limit = st.none() | st.integers(1, 4)
    return TaskDef(
        "post",
        "Post",
        "count",
        points=1,
        event="community.posted",
        per_day=draw(limit),
        per_period=draw(st.none() | st.integers(1, 8)),
        period=draw(st.sampled_from(["week", "month", "year"])),
        lifetime=draw(st.none() | st.integers(1, 12)),
    )


arrivals = st.lists(minutes, max_size=30)


@FAST
@given(count_tasks(), arrivals)
def test_count_limits_hold_whatever_the_arrival_order(task: TaskDef, offsets: list[int]) -> None:
    """Completions per local day ≤ per_day, per period ≤ per_period, in all ≤ lifetime — even
    when events arrive out of order (late syncs)."""
    evs = [event("community.posted", START + timedelta(minutes=m)) for m in offsets]
    _, steps = play(task, evs)
    done = [local_day(e.occurred_at) for e, s in zip(evs, steps, strict=True) if s.completed]
    if task.per_day is not None:
        assert all(n <= task.per_day for n in Counter(done).values())
    if task.per_period is not None:
        assert all(
            n <= task.per_period for n in Counter(period_key(task, d) for d in done).values()
        )
    if task.lifetime is not None:
        assert len(done) <= task.lifetime
    for s in steps:
        assert s.completed == (s.refused is None)


@FAST
@given(count_tasks(), arrivals)
def test_count_in_order_matches_a_model(task: TaskDef, offsets: list[int]) -> None:
    """Events in time order complete exactly when every limit still has room."""
    evs = [event("community.posted", START + timedelta(minutes=m)) for m in sorted(offsets)]
    state, steps = play(task, evs)
    days: Counter[date] = Counter()
    periods: Counter[str] = Counter()
    total = 0
    for e, s in zip(evs, steps, strict=True):
        d = local_day(e.occurred_at)
        room = (
            (task.per_day is None or days[d] < task.per_day)
            and (task.per_period is None or periods[period_key(task, d)] < task.per_period)
            and (task.lifetime is None or total < task.lifetime)
        )
        assert s.completed == room
        if room:
            days[d] += 1
            periods[period_key(task, d)] += 1
            total += 1
    assert state.get("lifetime", 0) == total


@FAST
@given(arrivals, st.booleans())
def test_checkin_in_order_matches_a_model(offsets: list[int], capped: bool) -> None:
    """Time-ordered check-ins: one completion per local day, streak = consecutive days,
    bonuses on the 3rd day and every 7th."""
    task = CHECKIN if not capped else TaskDef("ck", "C", "checkin", points=5, lifetime=5)
    evs = [event("task.checkin", START + timedelta(minutes=m)) for m in sorted(offsets)]
    _, steps = play(task, evs)
    last: date | None = None
    streak = total = 0
    for e, s in zip(evs, steps, strict=True):
        d = local_day(e.occurred_at)
        assert s.occurrence == d.isoformat()
        if d == last:
            assert s.refused == "ALREADY_DONE_TODAY"
            continue
        if task.lifetime is not None and total >= task.lifetime:
            assert s.refused == "LIFETIME_LIMIT"
            continue
        streak = streak + 1 if last is not None and d - last == timedelta(days=1) else 1
        last, total = d, total + 1
        assert s.completed and s.state["streak"] == streak
        if not capped:
            bonus = (10 if streak == 3 else 0) + (50 if streak % 7 == 0 else 0)
            assert s.points == 5 + bonus
            assert s.growth == (5 if streak % 7 == 0 else 0)


@FAST
@given(arrivals, st.lists(st.integers(0, 29), max_size=5))
def test_checkin_never_completes_twice_for_a_day(offsets: list[int], replays: list[int]) -> None:
    """Any arrival order, with replays of earlier events mixed in: at most one completion per
    local day, and a replayed event never completes again."""
    evs = [event("task.checkin", START + timedelta(minutes=m)) for m in offsets]
    feed = list(evs)
    for i in replays:
        if evs:
            feed.append(evs[i % len(evs)])
    _, steps = play(CHECKIN, feed)
    completed_days = [s.occurrence for s in steps if s.completed]
    assert len(completed_days) == len(set(completed_days))
    completed_ids = set()
    for e, s in zip(feed, steps, strict=True):
        if e.id in completed_ids:
            assert not s.completed
        if s.completed:
            completed_ids.add(e.id)
    # the streak only runs forward: completions come in increasing local days
    assert completed_days == sorted(completed_days)


kinds = st.sampled_from(["once", "checkin", "profile"])


@FAST
@given(kinds, arrivals, st.data())
def test_replaying_a_completed_event_never_completes_again(
    kind: str, offsets: list[int], data: st.DataObject
) -> None:
    task = {
        "once": FOLLOW,
        "checkin": CHECKIN,
        "profile": TaskDef("p", "P", "profile", points=1, fields=("name", "city")),
    }[kind]
    etype = event_type(task)
    assert etype is not None
    evs = [
        event(
            etype,
            START + timedelta(minutes=m),
            fields=data.draw(st.sampled_from([[], ["name"], ["city"], ["name", "city"]])),
        )
        for m in offsets
    ]
    state: dict[str, Any] = {}
    completed: list[EventView] = []
    for e in evs:
        s = step(task, state, e)
        state = s.state
        if s.completed:
            completed.append(e)
        for old in completed:
            again = step(task, state, old)
            assert not again.completed and again.refused is not None
            assert again.state == state
    if kind != "checkin":
        assert len(completed) <= 1


@FAST
@given(st.sampled_from(["count", "checkin"]), count_tasks(), arrivals, minutes)
def test_status_agrees_with_advance(
    kind: str, counted: TaskDef, offsets: list[int], later: int
) -> None:
    """What status shows as blocked is what the next event at that instant is refused for."""
    task = counted if kind == "count" else CHECKIN
    etype = event_type(task)
    assert etype is not None
    evs = [event(etype, START + timedelta(minutes=m)) for m in sorted(offsets)]
    state, _ = play(task, evs)
    now = max([START + timedelta(minutes=later), *(e.occurred_at for e in evs)])
    shown = status(task, state, now, TZ_NAME)
    nxt = step(task, state, event(etype, now))
    assert shown.blocked == nxt.refused
    assert shown.available == nxt.completed

"""``v8_tasks`` (slot ``tasks``): the cross-channel task list that growth mostly comes from.

The brand model: the app, the mini-program, the stores and the marketplaces all feed one growth
value, so a member who never buys online but visits the store every week, or one who checks in
every morning and brings friends, climbs the levels as surely as a big spender. Every task pays
**growth** first (what the levels count) and a few **points** (what the mall spends).

=====================  ===========  ==========================================================
task (config key)      kind         what completes it (default reward and cap)
=====================  ===========  ==========================================================
``store_checkin``      checkin      ``task.checkin`` from ``pos`` (the member code scanned in
                                    store): 10 growth, once a day, 4 a month
``app_checkin``        checkin      ``task.checkin`` from ``app`` or ``wechat`` (one shared
                                    daily check-in): 2 growth + 1 point; streak bonuses every
                                    7th day (+10/+10) and on the 30th (+50/+50)
``follow_account``     once         ``wechat.followed``: 50 growth, once ever
``community_post``     count        ``community.posted``: 5 growth, 2 a day
``share_content``      count        ``content.shared``: 1 growth, 3 a day
``invite_friend``      invite       ``referral.first_order`` — the friend's *first order*, not
                                    the sign-up: 100 growth + 200 points, 3 a month, 10 ever
``multi_category``     categories   ``order.paid`` lines covering 3 categories within one month
                                    (``window: period``): 80 growth, once a month
``complete_profile``   profile      ``member.profile_updated`` once name, gender, birthday and
                                    city are set: 30 growth + 50 points, once
=====================  ===========  ==========================================================

Config: one optional mapping per task; a missing one keeps the defaults above, ``enabled:
false`` drops the task. Keys: ``title``, ``points``, ``growth``, ``channels`` (which channels'
events count), ``per_day``, ``per_period`` with ``period`` (week | month | year), ``lifetime``,
and per kind ``streak`` (check-ins: ``[{days, points, growth, repeat}]``), ``categories``
(multi-category: N) and ``fields`` (profile). Channel filters are exact: an app check-in never
completes the store task, and the two check-in tasks may not share a channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gateway.rules.hookspecs import StreakBonus, TaskDef
from gateway.rules.tasks import check_task
from plugins.v8_growth._common import CHANNELS, COUNT, LIMIT, ONLINE_CHECKIN, STORE

NAME = "v8_tasks"
PROFILE_FIELDS = ("name", "gender", "birthday", "city")


@dataclass(frozen=True)
class Spec:
    """A task of the catalogue: its kind, event and defaults."""

    kind: str
    title: str
    event: str | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)


TASKS: Mapping[str, Spec] = {
    "store_checkin": Spec(
        "checkin",
        "Check in at a store",
        defaults={"growth": 10, "channels": list(STORE), "per_period": 4},
    ),
    "app_checkin": Spec(
        "checkin",
        "Daily check-in in the app or mini-program",
        defaults={
            "growth": 2,
            "points": 1,
            "channels": list(ONLINE_CHECKIN),
            "streak": [
                {"days": 7, "growth": 10, "points": 10, "repeat": True},
                {"days": 30, "growth": 50, "points": 50},
            ],
        },
    ),
    "follow_account": Spec(
        "once", "Follow the official account", "wechat.followed", {"growth": 50}
    ),
    "community_post": Spec(
        "count", "Post in the community", "community.posted", {"growth": 5, "per_day": 2}
    ),
    "share_content": Spec(
        "count", "Share a product or article", "content.shared", {"growth": 1, "per_day": 3}
    ),
    "invite_friend": Spec(
        "invite",
        "Invite a friend (rewarded at their first order)",
        defaults={"growth": 100, "points": 200, "per_period": 3, "lifetime": 10},
    ),
    "multi_category": Spec(
        "categories",
        "Buy from several categories in a month",
        defaults={"growth": 80, "categories": 3},
    ),
    "complete_profile": Spec(
        "profile",
        "Complete your profile",
        defaults={"growth": 30, "points": 50, "fields": list(PROFILE_FIELDS)},
    ),
}

REWARDS = {
    "type": "array",
    "items": {"type": "string", "pattern": "^[a-z][a-z0-9_]*:.+$", "maxLength": 80},
    "maxItems": 10,
}
"""``["coupon:CHECKIN7", "gift:MUG"]``: rewards granted with a completion (kinds are checked
against the registered reward kinds when the config is saved)."""

_STREAK = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["days"],
        "properties": {
            "days": {"type": "integer", "minimum": 2, "maximum": 366},
            "points": COUNT,
            "growth": COUNT,
            "repeat": {"type": "boolean"},
            "rewards": REWARDS,
        },
    },
}


def _task_schema(spec: Spec) -> dict[str, Any]:
    props: dict[str, Any] = {
        "enabled": {"type": "boolean"},
        "title": {"type": "string", "minLength": 1, "maxLength": 80},
        "points": COUNT,
        "growth": COUNT,
        "rewards": REWARDS,
        "channels": CHANNELS,
        "per_day": LIMIT,
        "per_period": LIMIT,
        "period": {"enum": ["week", "month", "year"]},
        "lifetime": LIMIT,
    }
    if spec.kind == "checkin":
        props["streak"] = _STREAK
    if spec.kind == "categories":
        props["categories"] = {"type": "integer", "minimum": 2, "maximum": 50}
    if spec.kind == "profile":
        props["fields"] = {
            "type": "array",
            "items": {"enum": list(PROFILE_FIELDS)},
            "minItems": 1,
            "uniqueItems": True,
        }
    return {"type": "object", "additionalProperties": False, "properties": props}


def build(code: str, spec: Spec, overrides: Mapping[str, Any]) -> TaskDef:
    """The :class:`TaskDef` for one catalogue task with the tenant's overrides applied."""
    c = {**spec.defaults, **overrides}
    channels = c.get("channels")
    return TaskDef(
        code=code,
        title=c.get("title", spec.title),
        kind=spec.kind,  # type: ignore[arg-type]
        points=c.get("points", 0),
        growth=c.get("growth", 0),
        event=spec.event,
        per_day=c.get("per_day"),
        per_period=c.get("per_period"),
        period=c.get("period", "month"),
        lifetime=c.get("lifetime"),
        streak=tuple(
            StreakBonus(
                s["days"],
                s.get("points", 0),
                s.get("growth", 0),
                bool(s.get("repeat", False)),
                tuple(s.get("rewards", ())),
            )
            for s in c.get("streak", ())
        ),
        categories=c.get("categories", 0),
        window="period",
        fields=tuple(c.get("fields", ())),
        on="first_order",
        channels=tuple(channels) if channels is not None else None,
        rewards=tuple(c.get("rewards", ())),
    )


class V8Tasks:
    """The v8 task list: store and app check-ins, follow, post, share, invite, buy, profile."""

    name = NAME
    slot = "tasks"
    version = "1"
    description = (
        "Cross-channel growth tasks: store check-in (POS), app/mini-program check-in with "
        "streaks, follow the official account, community posts, shares, invites rewarded at the "
        "friend's first order, multi-category month, complete profile."
    )
    config_schema: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {code: _task_schema(spec) for code, spec in TASKS.items()},
    }

    def tasks(self, config: Mapping[str, Any]) -> list[TaskDef]:
        out = []
        for code, spec in TASKS.items():
            overrides = dict(config.get(code) or {})
            if overrides.pop("enabled", True):
                out.append(build(code, spec, overrides))
        return out

    def check(self, config: Mapping[str, Any]) -> list[str]:
        problems: list[str] = []
        tasks = self.tasks(config)
        for task in tasks:
            problems.extend(check_task(task))
            bonus = any(b.points or b.growth for b in task.streak)
            if not (task.points or task.growth or bonus):
                problems.append(f"{task.code}: rewards nothing (give points or growth)")
        by_code = {t.code: t for t in tasks}
        store, app = by_code.get("store_checkin"), by_code.get("app_checkin")
        if store is not None and app is not None:
            shared = sorted(set(store.channels or ("*",)) & set(app.channels or ("*",)))
            if store.channels is None or app.channels is None or shared:
                which = ", ".join(shared) if shared else "every channel"
                problems.append(
                    f"store_checkin and app_checkin both count check-ins from {which}: one "
                    "check-in would complete both; give them distinct channels"
                )
        return problems

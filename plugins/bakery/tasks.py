"""``bakery_tasks``: interactions that earn points and growth.

=========  ===============================  =====================================================
task       completed by                     default reward and limit
=========  ===============================  =====================================================
checkin    ``task.checkin``, once a day      5 points + 1 growth; day 3 of a streak +10 points
                                            +3 growth, every 7th day +30 points +10 growth
post       ``community.posted``              10 points + 3 growth, at most 2 a day
follow     ``wechat.followed``               50 points + 10 growth, once
profile    ``member.profile_updated``        100 points + 20 growth once name, birthday and
                                            city are all set
class      ``bakery.class_attended``         80 points + 30 growth, at most 2 a month
=========  ===============================  =====================================================

Each task's ``points``, ``growth``, limits and ``channels`` are configurable under its key;
``enabled: false`` drops it. Days and months are the tenant's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gateway.rules.hookspecs import StreakBonus, TaskDef
from gateway.rules.tasks import check_task

NAME = "bakery_tasks"
PROFILE_FIELDS = ("name", "gender", "birthday", "city")

DEFAULTS: dict[str, dict[str, Any]] = {
    "checkin": {
        "points": 5,
        "growth": 1,
        "streak": [
            {"days": 3, "points": 10, "growth": 3},
            {"days": 7, "points": 30, "growth": 10, "repeat": True},
        ],
    },
    "post": {"points": 10, "growth": 3, "per_day": 2},
    "follow": {"points": 50, "growth": 10},
    "profile": {"points": 100, "growth": 20, "fields": ["name", "birthday", "city"]},
    "class": {"points": 80, "growth": 30, "per_month": 2},
}
TITLES = {
    "checkin": "Daily check-in at Levain & Co.",
    "post": "Shared a post in the Levain bakers' community",
    "follow": "Followed Levain & Co. on WeChat",
    "profile": "Completed your Levain profile",
    "class": "Attended a Levain baking class",
}

_REWARD = {"type": "integer", "minimum": 0, "maximum": 100_000}
_LIMIT = {"type": ["integer", "null"], "minimum": 1, "maximum": 1_000}
_COMMON = {
    "enabled": {"type": "boolean"},
    # What the member reads (another brand reusing these tasks names them its own way).
    "title": {"type": "string", "minLength": 1, "maxLength": 60},
    "points": _REWARD,
    "growth": _REWARD,
    "channels": {
        "type": ["array", "null"],
        "items": {"type": "string", "minLength": 1},
        "uniqueItems": True,
    },
}


def _task_schema(**extra: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": {**_COMMON, **extra}}


CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "checkin": _task_schema(
            streak={
                "type": "array",
                "maxItems": 10,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["days"],
                    "properties": {
                        "days": {"type": "integer", "minimum": 2, "maximum": 366},
                        "points": _REWARD,
                        "growth": _REWARD,
                        "repeat": {"type": "boolean"},
                    },
                },
            }
        ),
        "post": _task_schema(per_day=_LIMIT, per_month=_LIMIT),
        "follow": _task_schema(),
        "profile": _task_schema(
            fields={
                "type": "array",
                "minItems": 1,
                "uniqueItems": True,
                "items": {"enum": list(PROFILE_FIELDS)},
            }
        ),
        "class": _task_schema(per_day=_LIMIT, per_month=_LIMIT),
    },
}


def _settings(config: Mapping[str, Any], code: str) -> dict[str, Any] | None:
    settings = {**DEFAULTS[code], **(config.get(code) or {})}
    return settings if settings.pop("enabled", True) else None


def _channels(settings: Mapping[str, Any]) -> tuple[str, ...] | None:
    channels = settings.get("channels")
    return None if channels is None else tuple(channels)


def task_defs(config: Mapping[str, Any]) -> list[TaskDef]:
    out: list[TaskDef] = []
    if (s := _settings(config, "checkin")) is not None:
        streak = tuple(
            StreakBonus(b["days"], b.get("points", 0), b.get("growth", 0), b.get("repeat", False))
            for b in s.get("streak") or ()
        )
        out.append(
            TaskDef(
                "checkin",
                s.get("title") or TITLES["checkin"],
                "checkin",
                s["points"],
                s["growth"],
                streak=streak,
                channels=_channels(s),
            )
        )
    if (s := _settings(config, "post")) is not None:
        out.append(
            TaskDef(
                "post",
                s.get("title") or TITLES["post"],
                "count",
                s["points"],
                s["growth"],
                event="community.posted",
                per_day=s.get("per_day"),
                per_period=s.get("per_month"),
                period="month",
                channels=_channels(s),
            )
        )
    if (s := _settings(config, "follow")) is not None:
        out.append(
            TaskDef(
                "follow",
                s.get("title") or TITLES["follow"],
                "once",
                s["points"],
                s["growth"],
                event="wechat.followed",
                channels=_channels(s),
            )
        )
    if (s := _settings(config, "profile")) is not None:
        out.append(
            TaskDef(
                "profile",
                s.get("title") or TITLES["profile"],
                "profile",
                s["points"],
                s["growth"],
                fields=tuple(s["fields"]),
                channels=_channels(s),
            )
        )
    if (s := _settings(config, "class")) is not None:
        out.append(
            TaskDef(
                "class",
                s.get("title") or TITLES["class"],
                "count",
                s["points"],
                s["growth"],
                event="bakery.class_attended",
                per_day=s.get("per_day"),
                per_period=s.get("per_month"),
                period="month",
                channels=_channels(s),
            )
        )
    return out


class BakeryTasks:
    """Check-in streaks, community posts, follow, profile and baking classes (module docstring)."""

    name = NAME
    slot = "tasks"
    version = "1"
    description = (
        "Daily check-in with 3- and 7-day streak bonuses, community posts (2 a day), following "
        "the official account (once), completing the profile (once) and attending baking "
        "classes (2 a month), each rewarding points and growth."
    )
    config_schema: ClassVar[dict[str, Any]] = CONFIG_SCHEMA

    def check(self, config: dict[str, Any]) -> list[str]:
        defs = task_defs(config)
        problems = [p for t in defs for p in check_task(t)]
        for t in defs:
            if t.points == 0 and t.growth == 0 and not any(b.points or b.growth for b in t.streak):
                problems.append(
                    f"{t.code}: rewards neither points nor growth (use enabled: false to drop it)"
                )
            days = [b.days for b in t.streak]
            if len(set(days)) != len(days):
                problems.append(f"{t.code}: two streak bonuses for the same day count {days}")
        if not defs:
            problems.append("every task is disabled: remove bakery_tasks from the config instead")
        return problems

    def tasks(self, config: dict[str, Any]) -> list[TaskDef]:
        return task_defs(config)

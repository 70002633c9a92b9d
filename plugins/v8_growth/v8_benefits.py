"""Level benefits of the v8 model: the monthly member day and the birthday month.

- ``v8_member_day`` (slot ``benefits``, priority 10, ``exclusive``) — on the brand's member day
  (会员日, ``day`` of every month in the tenant's timezone, default the 18th) orders paid from
  ``min_level`` up earn ``extra_points_per_yuan`` more points per whole yuan (default 1:
  double points with the default earning rate), optionally only on ``channels``.
- ``v8_birthday`` (slot ``benefits``, priority 20, ``exclusive``) — the birthday gift by level:
  on ``member.birthday`` (recorded once a year by the brand's scheduler) a member gets the
  ``gifts`` and ``points`` of the highest configured level at or below theirs (``{V1: …, V4:
  …, V7: …}``: a V5 gets the V4 gift); and orders paid in the birthday month earn
  ``month_points_per_yuan`` extra points per yuan.

Both are ``exclusive`` ("not combinable with other offers"): when an order on the member day
falls in the member's birthday month only the higher-priority birthday bonus applies. A tenant
may reorder them with ``priority`` in its config. Benefits are per event, so each order pays its
bonus once however often it is replayed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gateway.rules.hookspecs import EventView, Grant, Intent, MemberSnapshot
from plugins.v8_growth._common import (
    CHANNELS,
    LEVELS,
    REWARDS,
    by_level,
    level_rank,
    local_day,
    reward_problems,
    yuan,
)

MEMBER_DAY = "v8_member_day"
BIRTHDAY = "v8_birthday"
_RATE = {"type": "integer", "minimum": 1, "maximum": 1000}


def _at_level(table: Mapping[str, Any], level: str | None) -> Any:
    """The value for the highest level in ``table`` at or below ``level`` (None: none)."""
    rank = level_rank(level)
    best = None
    for code in LEVELS[: rank + 1]:
        if code in table:
            best = table[code]
    return best


class V8MemberDay:
    """Extra points per yuan on orders paid on the monthly member day."""

    name = MEMBER_DAY
    slot = "benefits"
    version = "1"
    priority = 10
    stacking = "exclusive"
    description = (
        "Member day: orders paid on `day` of each month earn extra points per yuan "
        "(exclusive: the birthday bonus wins when both apply)."
    )
    config_schema: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            # 1-28 so that every month has the day.
            "day": {"type": "integer", "minimum": 1, "maximum": 28},
            "extra_points_per_yuan": _RATE,
            "min_level": {"enum": list(LEVELS)},
            "channels": CHANNELS,
        },
    }

    def evaluate(
        self, snapshot: MemberSnapshot, event: EventView, config: Mapping[str, Any]
    ) -> list[Intent | Grant]:
        if event.type != "order.paid":
            return []
        if local_day(event.occurred_at, snapshot.timezone).day != config.get("day", 18):
            return []
        channels = config.get("channels")
        if channels is not None and event.channel not in channels:
            return []
        min_level = config.get("min_level", LEVELS[0])
        if snapshot.tier is not None and level_rank(snapshot.tier.code) < level_rank(min_level):
            return []
        points = yuan(event.payload.get("paid_fen")) * config.get("extra_points_per_yuan", 1)
        if points <= 0:
            return []
        reason = f"member day: +{config.get('extra_points_per_yuan', 1)} point(s) per yuan"
        return [Intent("points", points, reason, MEMBER_DAY, "bonus")]


class V8Birthday:
    """Birthday gift by level (on ``member.birthday``) and birthday-month bonus points."""

    name = BIRTHDAY
    slot = "benefits"
    version = "1"
    priority = 20
    stacking = "exclusive"
    description = (
        "Birthday: a gift by level on member.birthday (highest configured level at or below the "
        "member's) and extra points per yuan on orders in the birthday month."
    )
    config_schema: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "gifts": by_level(REWARDS),
            "points": by_level({"type": "integer", "minimum": 0, "maximum": 1_000_000}),
            "month_points_per_yuan": {"type": "integer", "minimum": 0, "maximum": 1000},
        },
    }

    def check(self, config: Mapping[str, Any]) -> list[str]:
        problems: list[str] = []
        for code, rewards in (config.get("gifts") or {}).items():
            problems.extend(reward_problems(rewards, f"gifts.{code}"))
        if not config.get("gifts") and not config.get("points"):
            if not config.get("month_points_per_yuan"):
                problems.append("gives nothing: set gifts, points or month_points_per_yuan")
        return problems

    def evaluate(
        self, snapshot: MemberSnapshot, event: EventView, config: Mapping[str, Any]
    ) -> list[Intent | Grant]:
        birthday = snapshot.birthday
        if birthday is None:
            return []
        day = local_day(event.occurred_at, snapshot.timezone)
        if day.month != birthday.month:
            return []  # a misfired scheduler or an order outside the birthday month
        level = snapshot.tier.code if snapshot.tier is not None else LEVELS[0]
        if event.type == "member.birthday":
            out: list[Intent | Grant] = []
            reason = f"{level} birthday gift {day.year}"
            for reward in _at_level(config.get("gifts") or {}, level) or ():
                out.append(Grant(reward, reason, BIRTHDAY))
            points = _at_level(config.get("points") or {}, level) or 0
            if points > 0:
                out.append(Intent("points", points, reason, BIRTHDAY, "bonus"))
            return out
        if event.type == "order.paid":
            rate = config.get("month_points_per_yuan", 0)
            points = yuan(event.payload.get("paid_fen")) * rate
            if points > 0:
                reason = f"birthday month: +{rate} point(s) per yuan"
                return [Intent("points", points, reason, BIRTHDAY, "bonus")]
        return []

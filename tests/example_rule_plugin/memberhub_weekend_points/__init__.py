"""Weekend double points: a third-party memberhub rule plugin (the rule author's guide's example).

Installing the package registers it under the ``memberhub.rules`` entry-point group; a brand
enables it per tenant in its rule config::

    earning:
      - rule: points_per_yuan            # the base: 1 point per yuan
      - rule: weekend_double             # this plugin: the extra on weekends
        config: {multiplier_pct: 200, days: [6, 7], tasting: WEEKEND-TASTING}

It provides

- the ``weekend_double`` earning rule set: on an ``order.paid`` whose *local* day (the tenant's
  timezone) is one of ``days`` (ISO weekdays, 6 = Saturday, 7 = Sunday), the member earns the
  extra ``multiplier_pct - 100`` percent of one point per whole yuan; on a ``store.visited`` on
  such a day, a ``tea_tasting`` reward;
- the ``store.visited`` event type (a member scanned their card at a store counter);
- the ``tea_tasting`` reward kind (a free tasting session, fulfilled in store), which the points
  mall may also sell.

Everything is pure: no I/O, the answer depends only on the snapshot, the event and the config.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from gateway.rules.hookspecs import (
    EventType,
    EventView,
    Grant,
    Intent,
    MemberSnapshot,
    RewardKind,
    RuleSet,
    hookimpl,
)

NAME = "weekend_double"
VISITED = "store.visited"
TASTING = "tea_tasting"


def local_weekday(at: datetime, timezone: str) -> int:
    """ISO weekday (1 = Monday … 7 = Sunday) of ``at`` in ``timezone``."""
    return at.astimezone(ZoneInfo(timezone)).isoweekday()


class WeekendDouble:
    """Extra points on weekend orders; a tea tasting for a weekend store visit."""

    name = NAME
    slot = "earning"
    version = "1.0"
    description = "Weekend orders earn multiplier_pct % of the base point per yuan."
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "multiplier_pct": {"type": "integer", "minimum": 101, "maximum": 1000},
            "days": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": 7},
                "minItems": 1,
            },
            "tasting": {"type": "string", "minLength": 1, "maxLength": 64},
        },
    }

    def check(self, config: dict[str, Any]) -> list[str]:
        days = config.get("days", [6, 7])
        return ["days: each weekday at most once"] if len(set(days)) != len(days) else []

    def evaluate(
        self, snapshot: MemberSnapshot, event: EventView, config: dict[str, Any]
    ) -> list[Intent | Grant]:
        days = config.get("days", [6, 7])
        if local_weekday(event.occurred_at, snapshot.timezone) not in days:
            return []
        if event.type == VISITED:
            code = config.get("tasting", "WEEKEND-TASTING")
            return [Grant(f"{TASTING}:{code}", "weekend store visit", NAME)]
        if event.type != "order.paid":
            return []
        paid_fen = event.payload.get("paid_fen")
        if not isinstance(paid_fen, int) or isinstance(paid_fen, bool):
            return []
        extra = paid_fen // 100 * (config.get("multiplier_pct", 200) - 100) // 100
        if extra <= 0:
            return []
        reason = f"weekend bonus on order {event.payload.get('external_id', '?')}"
        return [Intent("points", extra, reason, NAME)]


@hookimpl
def register_rule_sets() -> list[RuleSet]:
    return [WeekendDouble()]


@hookimpl
def register_event_types() -> list[EventType]:
    return [
        EventType(
            VISITED,
            "The member scanned their card at a store counter.",
            {"store_code": "str", "channel": "pos"},
        )
    ]


@hookimpl
def register_reward_kinds() -> list[RewardKind]:
    return [RewardKind(TASTING, "A free tea tasting in store (code = session).", "store")]

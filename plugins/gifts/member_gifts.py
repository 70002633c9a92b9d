"""``member_gifts``: join, birthday, member-day, upgrade and keep-level gifts from config.

Pure: the answer depends only on the event, the member's effective tier in the snapshot and the
config. The events it answers are recorded once per occurrence by the gateway (ONE ID, the
scheduled triggers, the tier policy), and the engine keys each grant by (event, rule, reward) —
so a gift is given once per occurrence however often anything is replayed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from gateway.rules.hookspecs import EventView, Grant, Intent, MemberSnapshot

NAME = "member_gifts"
REWARD = r"^[a-z][a-z0-9_]{0,63}:[A-Za-z0-9_.:-]{1,64}$"
_TIER = r"^[A-Za-z0-9_-]{1,32}$"
_REWARDS: dict[str, Any] = {
    "type": "array",
    "maxItems": 10,
    "uniqueItems": True,
    "items": {"type": "string", "pattern": REWARD},
}
_BY_TIER: dict[str, Any] = {
    "type": "object",
    "propertyNames": {"pattern": _TIER},
    "additionalProperties": _REWARDS,
}
_CALENDAR: dict[str, Any] = {
    "oneOf": [
        _REWARDS,
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {"default": _REWARDS, "by_tier": _BY_TIER},
        },
    ]
}
EVENTS = {
    "member.joined": "join",
    "member.birthday": "birthday",
    "member.member_day": "member_day",
    "tier.changed": "upgrade",
    "tier.kept": "keep_level",
}
"""Event type → the config key that answers it."""


def _for_tier(value: Any, tier: str | None) -> list[str]:
    """A calendar gift list: the tier's own list (``by_tier``) or ``default``."""
    if isinstance(value, list):
        return value
    if not isinstance(value, Mapping):
        return []
    by_tier = value.get("by_tier") or {}
    if tier is not None and tier in by_tier:
        return list(by_tier[tier])
    return list(value.get("default") or [])


def _all_lists(config: Mapping[str, Any]) -> list[list[str]]:
    out: list[list[str]] = [list(config.get("join") or [])]
    for key in ("birthday", "member_day"):
        value = config.get(key)
        if isinstance(value, list):
            out.append(value)
        elif isinstance(value, Mapping):
            out.append(list(value.get("default") or []))
            out.extend(list(v) for v in (value.get("by_tier") or {}).values())
    for key in ("upgrade", "keep_level"):
        out.extend(list(v) for v in (config.get(key) or {}).values())
    return out


class MemberGifts:
    """Gifts for joining, birthdays, member days, upgrades and kept levels — configured, not
    coded."""

    name = NAME
    slot = "benefits"
    version = "1"
    priority = 30
    stacking = "stack"
    description = (
        "Member gifts from config: join, birthday and member-day gifts (per tier or default), "
        "upgrade and keep-level gifts per tier; coupons are issued and points credited at once."
    )
    config_schema: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "join": _REWARDS,
            "birthday": _CALENDAR,
            "member_day": _CALENDAR,
            "upgrade": _BY_TIER,
            "keep_level": _BY_TIER,
        },
    }

    def check(self, config: dict[str, Any]) -> list[str]:
        """Semantics the schema cannot say: it gives something, and ``points:`` rewards name a
        positive amount."""
        problems = []
        lists = _all_lists(config)
        if not any(lists):
            problems.append("gives nothing: set join, birthday, member_day, upgrade or keep_level")
        for rewards in lists:
            for r in rewards:
                kind, _, code = r.partition(":")
                if kind == "points" and (not code.isdigit() or int(code) <= 0):
                    problems.append(f"{r!r}: a points reward is 'points:<positive amount>'")
        return problems

    def rewards(self, config: dict[str, Any]) -> list[str]:
        """Every reward the config may grant (the gateway checks their kinds on save)."""
        return sorted({r for rewards in _all_lists(config) for r in rewards})

    def tier_codes(self, config: dict[str, Any]) -> list[str]:
        """Every tier code the config names (the gateway checks them against the ladder)."""
        names: set[str] = set()
        for key in ("birthday", "member_day"):
            value = config.get(key)
            if isinstance(value, Mapping):
                names.update((value.get("by_tier") or {}).keys())
        for key in ("upgrade", "keep_level"):
            names.update((config.get(key) or {}).keys())
        return sorted(names)

    def evaluate(
        self, snapshot: MemberSnapshot, event: EventView, config: Mapping[str, Any]
    ) -> list[Intent | Grant]:
        key = EVENTS.get(event.type)
        if key is None:
            return []
        tier = snapshot.tier.code if snapshot.tier is not None else None
        if key == "join":
            rewards, reason = list(config.get("join") or []), "welcome gift"
        elif key in ("birthday", "member_day"):
            rewards = _for_tier(config.get(key), tier)
            reason = self._calendar_reason(key, snapshot, event)
        elif key == "upgrade":
            if event.payload.get("change") != "upgrade":
                return []  # initial placement, downgrades, overrides: no upgrade gift
            to = event.payload.get("to")
            rewards = list((config.get("upgrade") or {}).get(to) or [])
            reason = f"upgrade gift: welcome to {to}"
        else:
            kept = event.payload.get("to")
            rewards = list((config.get("keep_level") or {}).get(kept) or [])
            reason = f"keep-level gift: {kept} kept for another period"
        return [Grant(r, reason, NAME) for r in dict.fromkeys(rewards)]

    @staticmethod
    def _calendar_reason(key: str, snapshot: MemberSnapshot, event: EventView) -> str:
        local = event.occurred_at.astimezone(ZoneInfo(snapshot.timezone))
        if key == "birthday":
            return f"birthday gift {local.year}"
        return f"member day gift {local:%Y-%m}"

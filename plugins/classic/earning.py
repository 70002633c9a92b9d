"""``classic_earning``: points per whole yuan × the member's tier multiplier, growth per yuan.

On ``order.paid`` the eligible amount is what was paid, less the share of lines in excluded
categories (pro rata, rounded down); orders from excluded channels earn nothing. Points are
``whole yuan × points_per_yuan × multiplier`` rounded down, so no rounding ever pays a point
more than the rule promises; growth (tier-qualifying) is ``whole yuan × growth_per_yuan`` and is
never multiplied. Refunds are reversed in proportion by the orders module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gateway.rules.hookspecs import EventView, Intent, MemberSnapshot

NAME = "classic_earning"


def eligible_fen(event: EventView, exclude_categories: frozenset[str]) -> int:
    """``paid_fen`` less the pro-rata share of lines in ``exclude_categories`` (rounded down)."""
    paid = event.payload.get("paid_fen")
    if not isinstance(paid, int) or isinstance(paid, bool) or paid <= 0:
        return 0
    lines = [
        line
        for line in event.payload.get("lines") or ()
        if isinstance(line, Mapping) and isinstance(line.get("amount_fen"), int)
    ]
    total = sum(max(line["amount_fen"], 0) for line in lines)
    if not exclude_categories or total <= 0:
        return paid
    included = sum(
        max(line["amount_fen"], 0)
        for line in lines
        if line.get("category") not in exclude_categories
    )
    return paid * included // total


def multiplier_text(pct: int) -> str:
    """150 → ``1.5``, 200 → ``2``, 125 → ``1.25``."""
    whole, frac = divmod(pct, 100)
    return f"{whole}" if frac == 0 else f"{whole}.{frac:02d}".rstrip("0")


def order_label(event: EventView) -> str:
    return str(event.payload.get("external_id") or event.payload.get("order_id") or "")


def yuan_text(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


EARNING_PROPERTIES: dict[str, Any] = {
    "points_per_yuan": {"type": "integer", "minimum": 0, "maximum": 100},
    "growth_per_yuan": {"type": "integer", "minimum": 0, "maximum": 100},
    "tier_multiplier": {"type": "boolean"},
    "exclude_channels": {
        "type": "array",
        "items": {"type": "string", "minLength": 1},
        "uniqueItems": True,
    },
    "exclude_categories": {
        "type": "array",
        "items": {"type": "string", "minLength": 1},
        "uniqueItems": True,
    },
}


def earn(
    name: str,
    snapshot: MemberSnapshot,
    event: EventView,
    config: Mapping[str, Any],
    *,
    default_exclude_categories: tuple[str, ...] = (),
) -> list[Intent]:
    """Points and growth for one ``order.paid`` (shared by the brands' earning rules)."""
    if event.type != "order.paid":
        return []
    if event.channel in set(config.get("exclude_channels") or ()):
        return []
    excluded = frozenset(config.get("exclude_categories", default_exclude_categories))
    fen = eligible_fen(event, excluded)
    yuan = fen // 100
    if yuan <= 0:
        return []
    per_yuan = config.get("points_per_yuan", 1)
    growth_per_yuan = config.get("growth_per_yuan", 1)
    pct = 100
    tier = snapshot.tier
    if tier is not None and config.get("tier_multiplier", True):
        pct = tier.multiplier_pct
    points = yuan * per_yuan * pct // 100
    label = order_label(event)
    paid = event.payload.get("paid_fen")
    part = "" if fen == paid else f" (the eligible part of {yuan_text(int(paid))} yuan)"
    out: list[Intent] = []
    if points > 0:
        why = f"{per_yuan} point{'s' if per_yuan != 1 else ''} per yuan"
        if pct != 100 and tier is not None:
            why += f", ×{multiplier_text(pct)} for {tier.name} members"
        out.append(
            Intent(
                "points",
                points,
                f"You earned {points} point{'s' if points != 1 else ''} for order {label}: "
                f"{yuan} yuan{part} at {why}.",
                name,
            )
        )
    growth = yuan * growth_per_yuan
    if growth > 0:
        out.append(
            Intent(
                "growth",
                growth,
                f"Order {label} added {growth} growth towards your next tier ({yuan} yuan{part}).",
                name,
            )
        )
    return out


class ClassicEarning:
    """1 point per whole yuan × tier multiplier, 1 growth per whole yuan, on ``order.paid``."""

    name = NAME
    slot = "earning"
    version = "1"
    description = (
        "On every paid order: points per whole yuan × the member's tier multiplier (rounded "
        "down) and growth per whole yuan; excluded channels earn nothing, excluded categories "
        "are taken out pro rata."
    )
    config_schema: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": EARNING_PROPERTIES,
    }

    def check(self, config: dict[str, Any]) -> list[str]:
        if config.get("points_per_yuan", 1) == 0 and config.get("growth_per_yuan", 1) == 0:
            return ["points_per_yuan and growth_per_yuan are both 0: this rule would earn nothing"]
        return []

    def evaluate(
        self, snapshot: MemberSnapshot, event: EventView, config: dict[str, Any]
    ) -> list[Intent]:
        return earn(NAME, snapshot, event, config)

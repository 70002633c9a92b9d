"""Earning in the v8 model: orders earn **points**; growth comes from tasks, not from spend.

Two rule sets:

- ``v8_earning`` (slot ``earning``) — on ``order.paid``, ``points_per_yuan`` points per whole
  yuan paid (``channel_rates`` overrides it per channel: ``{wechat: 2}`` for mini-program
  orders, ``{youzan: 0}`` for none), times the member's level multiplier (V6 ×1.5 …) unless
  ``tier_multiplier: false``. Spend growth is ``growth_per_yuan`` (default **0**) capped at
  ``growth_cap_per_order``: a brand that wants *some* spend growth can have it, but a big basket
  never buys a level on its own.
- ``v8_order_growth`` (slot ``tasks``) — the growth an order *does* bring: the **first paid
  order per channel per month** earns ``first_order_growth[channel]`` (default: 20 in store,
  10 on each marketplace and in the mini-program). It is a task (``count`` on ``order.paid``,
  filtered to the channel, ``per_period: 1``) because "first this month" is member history,
  which a pure earning rule cannot see — the gateway's task engine keeps that state, and pays
  each (member, channel, month) once however often an order is replayed.

Refunds reverse both proportionally (the gateway reverses everything an order credited).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gateway.rules.hookspecs import EventView, Intent, MemberSnapshot, TaskDef
from plugins.v8_growth._common import ECOMMERCE, MINI_PROGRAM, STORE, by_channel, yuan

EARNING = "v8_earning"
ORDER_GROWTH = "v8_order_growth"
DEFAULT_FIRST_ORDER_GROWTH: Mapping[str, int] = {
    **dict.fromkeys(STORE, 20),
    **dict.fromkeys(ECOMMERCE, 10),
    **dict.fromkeys(MINI_PROGRAM, 10),
}
_RATE = {"type": "integer", "minimum": 0, "maximum": 1000}


class V8Earning:
    """Points per yuan (per channel, times the level multiplier); little or no spend growth."""

    name = EARNING
    slot = "earning"
    version = "1"
    description = (
        "Points per whole yuan paid (per-channel rates, level multiplier); growth from spend "
        "only if growth_per_yuan is set (default 0: growth is task-driven)."
    )
    config_schema: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "points_per_yuan": _RATE,
            "channel_rates": by_channel(_RATE),
            "tier_multiplier": {"type": "boolean"},
            "growth_per_yuan": _RATE,
            "growth_cap_per_order": {"type": "integer", "minimum": 1},
        },
    }

    def check(self, config: Mapping[str, Any]) -> list[str]:
        if "growth_cap_per_order" in config and not config.get("growth_per_yuan"):
            return ["growth_cap_per_order caps spend growth: set growth_per_yuan above 0 too"]
        return []

    def evaluate(
        self, snapshot: MemberSnapshot, event: EventView, config: Mapping[str, Any]
    ) -> list[Intent]:
        if event.type != "order.paid":
            return []
        paid = yuan(event.payload.get("paid_fen"))
        if paid <= 0:
            return []
        channel = event.channel or "?"
        order = f"{channel}:{event.payload.get('external_id', '?')}"
        rate = (config.get("channel_rates") or {}).get(channel, config.get("points_per_yuan", 1))
        tier = snapshot.tier if config.get("tier_multiplier", True) else None
        multiplier = tier.multiplier_pct if tier is not None else 100
        out: list[Intent] = []
        points = paid * rate * multiplier // 100
        if points > 0:
            why = f"{rate} point(s) per yuan on order {order}"
            if tier is not None and multiplier != 100:
                why += f", {tier.code} ×{multiplier / 100:g}"
            out.append(Intent("points", points, why, EARNING))
        growth = paid * config.get("growth_per_yuan", 0)
        cap = config.get("growth_cap_per_order")
        if cap is not None:
            growth = min(growth, cap)
        if growth > 0:
            out.append(Intent("growth", growth, f"spend growth on order {order}", EARNING))
        return out


class V8OrderGrowth:
    """Growth for the first paid order per channel per month (a task per channel)."""

    name = ORDER_GROWTH
    slot = "tasks"
    version = "1"
    description = (
        "Growth for the member's first paid order on each channel each month "
        "(first_order_growth: {channel: growth})."
    )
    config_schema: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "first_order_growth": by_channel({"type": "integer", "minimum": 1, "maximum": 100_000}),
            "first_order_points": by_channel({"type": "integer", "minimum": 1, "maximum": 100_000}),
            "period": {"enum": ["week", "month", "year"]},
        },
    }

    def check(self, config: Mapping[str, Any]) -> list[str]:
        growth = config.get("first_order_growth", DEFAULT_FIRST_ORDER_GROWTH)
        extra = sorted(set(config.get("first_order_points") or {}) - set(growth))
        if extra:
            return [
                f"first_order_points names channels without first_order_growth: {extra} "
                "(give them a growth reward too)"
            ]
        return []

    def tasks(self, config: Mapping[str, Any]) -> list[TaskDef]:
        growth = config.get("first_order_growth", DEFAULT_FIRST_ORDER_GROWTH)
        points = config.get("first_order_points") or {}
        period = config.get("period", "month")
        return [
            TaskDef(
                code=f"first_order_{channel}",
                title=f"First order this {period} on {channel}",
                kind="count",
                event="order.paid",
                points=points.get(channel, 0),
                growth=amount,
                per_period=1,
                period=period,
                channels=(channel,),
            )
            for channel, amount in sorted(growth.items())
        ]

"""``points_per_yuan``: the default earning rule — 1 point and 1 growth per whole yuan paid.

On ``order.paid`` the member earns ``paid_fen // 100`` points (spendable, expiring by the
tenant's points TTL) and the same amount of growth value (tier-qualifying, not spendable).
Fractions of a yuan never earn: 99.99 yuan gives 99. Refunds are reversed proportionally by the
orders module (not by this rule), from what this rule actually credited for the order.

The rule is pure: it reads only the event payload, so replaying an order or re-running the event
yields the same intents, and the gateway's idempotency keys make the ledger writes happen once.
"""

from __future__ import annotations

from typing import ClassVar

from gateway.rules.hookspecs import EventView, Intent, MemberSnapshot, RuleSet, hookimpl

NAME = "points_per_yuan"


class PointsPerYuan:
    """1 point + 1 growth per whole yuan of ``paid_fen`` on ``order.paid``."""

    name = NAME
    slot = "earning"
    version = "1"
    description = "1 point and 1 growth per whole yuan paid (no config)."
    config_schema: ClassVar[dict[str, object]] = {"type": "object", "additionalProperties": False}

    def evaluate(
        self, snapshot: MemberSnapshot, event: EventView, config: dict[str, object]
    ) -> list[Intent]:
        if event.type != "order.paid":
            return []
        paid_fen = event.payload.get("paid_fen")
        if not isinstance(paid_fen, int) or isinstance(paid_fen, bool):
            return []
        yuan = paid_fen // 100
        if yuan <= 0:
            return []
        channel = event.payload.get("channel", "?")
        external_id = event.payload.get("external_id", "?")
        reason = f"1 point per yuan on order {channel}:{external_id}"
        return [
            Intent(account="points", amount=yuan, reason=reason, rule=NAME),
            Intent(account="growth", amount=yuan, reason=reason, rule=NAME),
        ]


@hookimpl
def register_rule_sets() -> list[RuleSet]:
    return [PointsPerYuan()]

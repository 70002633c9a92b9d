"""``bakery_earning``: points and growth per whole yuan of every paid order.

Points are ``whole yuan × points_per_yuan × tier multiplier`` (rounded down), growth
``whole yuan × growth_per_yuan``. Prepaid cards (category ``gift_card``) earn when they are spent,
not when they are bought, so their lines are taken out of the order pro rata by default. The
config keys and checks are the classic department store's (``plugins.classic.earning``).
"""

from __future__ import annotations

from typing import Any

from gateway.rules.hookspecs import EventView, Intent, MemberSnapshot
from plugins.classic.earning import ClassicEarning, earn

NAME = "bakery_earning"
DEFAULT_EXCLUDED = ("gift_card",)


class BakeryEarning(ClassicEarning):
    """Points (× tier multiplier) and growth per whole yuan on ``order.paid``."""

    name = NAME
    version = "1"
    description = (
        "On every paid order: points per whole yuan × the member's tier multiplier and growth "
        "per whole yuan; prepaid-card lines (gift_card) do not earn."
    )

    def evaluate(
        self, snapshot: MemberSnapshot, event: EventView, config: dict[str, Any]
    ) -> list[Intent]:
        return earn(NAME, snapshot, event, config, default_exclude_categories=DEFAULT_EXCLUDED)

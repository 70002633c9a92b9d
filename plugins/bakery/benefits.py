"""``bakery_join_gift``: a welcome gift on ``member.joined``.

By default every new member gets a free-croissant coupon; ``gifts`` lists the rewards
(``kind:code``, e.g. a ``bakery_voucher``), ``points`` adds welcome points, ``channels`` limits
the gift to members who joined on those channels. It stacks with other benefits and runs at
priority 50 (a tenant's config may set another ``priority``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from gateway.rules.hookspecs import EventView, Grant, Intent, MemberSnapshot

NAME = "bakery_join_gift"
DEFAULT_GIFTS = ("coupon:LEVAIN-WELCOME-CROISSANT",)
REWARD = r"^[a-z][a-z0-9_]{0,63}:\S{1,64}$"


class BakeryJoinGift:
    """A join gift (coupon, voucher, welcome points) for every new member."""

    name = NAME
    slot = "benefits"
    version = "1"
    priority = 50
    stacking = "stack"
    description = (
        "Welcome gift when a member joins: a free-croissant coupon by default, optionally "
        "welcome points; can be limited to members joining on given channels."
    )
    config_schema: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "gifts": {
                "type": "array",
                "maxItems": 10,
                "uniqueItems": True,
                "items": {"type": "string", "pattern": REWARD},
            },
            "points": {"type": "integer", "minimum": 0, "maximum": 100_000},
            "channels": {
                "type": ["array", "null"],
                "items": {"type": "string", "minLength": 1},
                "uniqueItems": True,
            },
        },
    }

    def check(self, config: dict[str, Any]) -> list[str]:
        if not config.get("gifts", DEFAULT_GIFTS) and not config.get("points", 0):
            return ["a join gift needs at least one of gifts or points"]
        return []

    def evaluate(
        self, snapshot: MemberSnapshot, event: EventView, config: dict[str, Any]
    ) -> list[Grant | Intent]:
        if event.type != "member.joined":
            return []
        channels = config.get("channels")
        if channels is not None and event.channel not in channels:
            return []
        reason = "Welcome to Levain & Co.! Your join gift is waiting in your account."
        out: list[Grant | Intent] = [
            Grant(gift, reason, NAME) for gift in config.get("gifts", DEFAULT_GIFTS)
        ]
        points = config.get("points", 0)
        if points:
            out.append(
                Intent(
                    "points",
                    points,
                    f"Welcome to Levain & Co.! {points} welcome points to start you off.",
                    NAME,
                    "bonus",
                )
            )
        return out

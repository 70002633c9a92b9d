"""``classic_exchange``: who may use which exchange mode, and a birthday-month points discount.

- ``mode_tiers``: an exchange mode open only to some tiers (default: points + cash for Silver,
  Gold and Platinum; ``null`` opens a mode to everyone); anyone else gets ``eligible=False``
  and a reason naming the tiers;
- ``birthday``: in the member's birthday month (tenant timezone) the points part of the price
  in ``modes`` is ``discount_pct`` % lower, rounded so the discount never exceeds that.

A quote an earlier rule already refused passes through unchanged.

"This month" is ``snapshot.at`` (the mall's "now") in the tenant timezone, so a quote is a
pure function of its inputs; without ``at`` there is no birthday discount.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from gateway.rules.hookspecs import MemberSnapshot, Quote

NAME = "classic_exchange"
MODE_LABEL = {"points": "All-points", "points_cash": "Points + cash", "cash": "Cash"}
DEFAULT_MODE_TIERS: dict[str, list[str]] = {"points_cash": ["silver", "gold", "platinum"]}
DEFAULT_BIRTHDAY: dict[str, Any] = {"discount_pct": 20, "modes": ["points", "points_cash"]}
MODES = ["points", "points_cash", "cash"]


def _listing(names: list[str]) -> str:
    names = [n.replace("_", " ").title() for n in names]
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} and {names[-1]}"


def in_birthday_month(snapshot: MemberSnapshot, now: datetime) -> bool:
    birthday = snapshot.birthday
    if birthday is None:
        return False
    return now.astimezone(ZoneInfo(snapshot.timezone)).month == birthday.month


def discounted(points: int, pct: int) -> int:
    """``points`` less ``pct`` %, rounded up: the discount is never more than promised."""
    return -(-points * (100 - pct) // 100)


class ClassicExchange:
    """Tier-gated exchange modes and a birthday-month discount (see the module docstring)."""

    name = NAME
    slot = "exchange"
    version = "1"
    description = (
        "Points + cash is for Silver members and above (configurable per mode); in the "
        "member's birthday month the points price is 20 % lower (configurable)."
    )
    config_schema: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "mode_tiers": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    mode: {
                        "type": ["array", "null"],
                        "minItems": 1,
                        "uniqueItems": True,
                        "items": {"type": "string", "pattern": r"^[a-z][a-z0-9_]{0,31}$"},
                    }
                    for mode in MODES
                },
            },
            "birthday": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "discount_pct": {"type": "integer", "minimum": 0, "maximum": 90},
                    "modes": {
                        "type": "array",
                        "uniqueItems": True,
                        "items": {"enum": ["points", "points_cash"]},
                    },
                },
            },
        },
    }

    def check(self, config: dict[str, Any]) -> list[str]:
        birthday = {**DEFAULT_BIRTHDAY, **config.get("birthday", {})}
        if birthday["discount_pct"] > 0 and not birthday["modes"]:
            return [
                "birthday.modes is empty, so the birthday discount applies to nothing "
                "(set birthday.discount_pct to 0 to turn it off)"
            ]
        return []

    def quote(
        self,
        snapshot: MemberSnapshot,
        quote: Quote,
        config: dict[str, Any],
    ) -> Quote:
        if not quote.eligible:
            return quote
        allowed = {**DEFAULT_MODE_TIERS, **config.get("mode_tiers", {})}.get(quote.mode)
        if allowed is not None and (snapshot.tier is None or snapshot.tier.code not in allowed):
            label = MODE_LABEL[quote.mode]
            reason = f"{label} exchange is only open to {_listing(allowed)} members"
            if snapshot.tier is not None:
                reason += f", and you are a {snapshot.tier.name} member"
            return Quote(
                quote.reward,
                quote.mode,
                quote.points,
                quote.cash_fen,
                eligible=False,
                reason=reason + ".",
                rule=NAME,
                tags=quote.tags,
            )
        birthday = {**DEFAULT_BIRTHDAY, **config.get("birthday", {})}
        pct = birthday["discount_pct"]
        if (
            pct > 0
            and quote.mode in birthday["modes"]
            and quote.points > 0
            and snapshot.at is not None
            and in_birthday_month(snapshot, snapshot.at)
        ):
            points = discounted(quote.points, pct)
            if points < quote.points:
                return Quote(
                    quote.reward,
                    quote.mode,
                    points,
                    quote.cash_fen,
                    reason=(
                        f"Happy birthday month! {pct}% off the points price: "
                        f"{points} points instead of {quote.points}."
                    ),
                    rule=NAME,
                    tags=(*quote.tags, "birthday"),
                )
        return quote

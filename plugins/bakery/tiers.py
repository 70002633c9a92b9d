"""``bakery_tiers``: Crumb / Loaf / Brioche / Croissant d'Or on a rolling 12 months.

Growth comes from purchases (1 per yuan) and from interactions (check-ins, posts, …: see
``bakery_tasks``). Reaching a threshold within the last 12 months upgrades at once and starts a
new 12-month period; at its end the period's growth is reviewed: at least the tier's keep →
kept for another period, short → recalculated to the highest tier whose keep it meets (which may
be two tiers down). ``period: anniversary`` reviews 12 months after the tier was reached or kept
instead; ``downgrade: one_step`` drops one tier at a time.
"""

from __future__ import annotations

from typing import Any, ClassVar

from plugins.classic.tiers import POLICY_PROPERTIES, TIER_CODE, ClassicTiers, ladder_schema

NAME = "bakery_tiers"

DEFAULT_LADDER: tuple[dict[str, Any], ...] = (
    {"code": "crumb", "name": "Crumb", "threshold": 0},
    {"code": "loaf", "name": "Loaf", "threshold": 300, "keep": 240, "multiplier_pct": 110},
    {
        "code": "brioche",
        "name": "Brioche",
        "threshold": 1_000,
        "keep": 800,
        "multiplier_pct": 125,
        "discount_bp": 9_500,
        "gifts": ["bakery_voucher:BRIOCHE-TREAT"],
    },
    {
        "code": "croissant",
        "name": "Croissant d'Or",
        "threshold": 3_000,
        "keep": 2_400,
        "multiplier_pct": 150,
        "discount_bp": 9_000,
        "gifts": ["baking_class:CROISSANT-MASTERCLASS", "bakery_voucher:BIRTHDAY-CAKE"],
    },
)


def _by_code() -> dict[str, Any]:
    return {
        "type": "object",
        "propertyNames": {"pattern": TIER_CODE},
        "additionalProperties": {"type": "integer", "minimum": 0},
    }


class BakeryTiers(ClassicTiers):
    """Four bakery tiers on growth from purchases and interactions (module docstring)."""

    name = NAME
    slot = "tiers"
    version = "1"
    description = (
        "Crumb / Loaf / Brioche / Croissant d'Or on growth (purchases and interactions) in a "
        "rolling 12 months; upgrade at once, reviewed 12 months later, recalculated when the "
        "keep threshold is missed."
    )
    ladder: ClassVar[Any] = DEFAULT_LADDER
    defaults: ClassVar[dict[str, Any]] = {
        "measure": "period",
        "period": "rolling",
        "months": 12,
        "downgrade": "recalculate",
    }
    config_schema: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **POLICY_PROPERTIES,
            "ladder": ladder_schema(min_tiers=2),
            "thresholds": _by_code(),
            "keep": _by_code(),
        },
    }

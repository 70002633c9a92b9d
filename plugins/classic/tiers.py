"""``classic_tiers``: Member / Silver / Gold / Platinum on spend (1 growth per yuan).

The default ladder is a department store's: reaching a threshold of growth *within the calendar
year* upgrades at once; on 1 January (tenant timezone) last year's growth is reviewed against the
tier's keep threshold, and a member who missed it drops one tier. Every part is configurable:

- ``ladder``: the whole ladder (codes, names, thresholds, keep, multipliers, discounts, gifts);
- ``thresholds`` / ``keep``: adjust single tiers of the (default or given) ladder by code;
- ``measure`` / ``period`` / ``months`` / ``downgrade``: see :class:`TierPolicy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gateway.rules.hookspecs import TierDef, TierPolicy
from gateway.rules.tiers import check_policy

NAME = "classic_tiers"

DEFAULT_LADDER: tuple[dict[str, Any], ...] = (
    {"code": "member", "name": "Member", "threshold": 0},
    {
        "code": "silver",
        "name": "Silver",
        "threshold": 2_000,
        "keep": 1_500,
        "multiplier_pct": 120,
        "discount_bp": 9_800,
    },
    {
        "code": "gold",
        "name": "Gold",
        "threshold": 8_000,
        "keep": 6_000,
        "multiplier_pct": 150,
        "discount_bp": 9_500,
        "gifts": ["coupon:CLASSIC-GOLD-WELCOME"],
    },
    {
        "code": "platinum",
        "name": "Platinum",
        "threshold": 20_000,
        "keep": 15_000,
        "multiplier_pct": 200,
        "discount_bp": 9_000,
        "gifts": ["coupon:CLASSIC-PLATINUM-WELCOME", "gift:CLASSIC-PLATINUM-PARKING"],
    },
)
"""Growth is 1 per yuan, so thresholds read as yuan spent in the year."""

TIER_CODE = r"^[a-z][a-z0-9_]{0,31}$"
REWARD = r"^[a-z][a-z0-9_]{0,63}:\S{1,64}$"

TIER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["code", "name", "threshold"],
    "properties": {
        "code": {"type": "string", "pattern": TIER_CODE},
        "name": {"type": "string", "minLength": 1, "maxLength": 40},
        "threshold": {"type": "integer", "minimum": 0},
        "keep": {"type": "integer", "minimum": 0},
        "multiplier_pct": {"type": "integer", "minimum": 0, "maximum": 1_000},
        "discount_bp": {"type": "integer", "minimum": 1, "maximum": 10_000},
        "gifts": {"type": "array", "items": {"type": "string", "pattern": REWARD}},
    },
}

POLICY_PROPERTIES: dict[str, Any] = {
    "measure": {"enum": ["lifetime", "period"]},
    "period": {"enum": ["calendar_year", "anniversary", "rolling"]},
    "months": {"type": "integer", "minimum": 1, "maximum": 60},
    "downgrade": {"enum": ["one_step", "recalculate"]},
}


def ladder_schema(min_tiers: int = 1) -> dict[str, Any]:
    return {"type": "array", "minItems": min_tiers, "maxItems": 12, "items": TIER_SCHEMA}


def _by_code(minimum: int = 0) -> dict[str, Any]:
    return {
        "type": "object",
        "propertyNames": {"pattern": TIER_CODE},
        "additionalProperties": {"type": "integer", "minimum": minimum},
    }


def tier_defs(
    config: Mapping[str, Any], default: tuple[dict[str, Any], ...]
) -> tuple[list[TierDef], list[str]]:
    """The ladder ``config`` describes (its ``ladder`` or ``default``, with the ``thresholds``
    and ``keep`` adjustments) and the problems found building it."""
    problems: list[str] = []
    raw = [dict(t) for t in (config.get("ladder") or default)]
    codes = [t["code"] for t in raw]
    for key in ("thresholds", "keep"):
        for code, value in (config.get(key) or {}).items():
            if code not in codes:
                problems.append(
                    f"{key}: there is no tier {code!r} in the ladder (tiers: {', '.join(codes)})"
                )
                continue
            raw[codes.index(code)]["threshold" if key == "thresholds" else "keep"] = value
    tiers = [
        TierDef(
            code=t["code"],
            name=t["name"],
            threshold=t["threshold"],
            keep=t.get("keep"),
            multiplier_pct=t.get("multiplier_pct", 100),
            discount_bp=t.get("discount_bp", 10_000),
            gifts=tuple(t.get("gifts") or ()),
        )
        for t in raw
    ]
    return tiers, problems


def build_policy(
    config: Mapping[str, Any], default: tuple[dict[str, Any], ...], **defaults: Any
) -> tuple[TierPolicy | None, list[str]]:
    """The :class:`TierPolicy` for ``config`` (``defaults`` for the policy fields), or the
    problems with it, phrased for the brand admin who wrote it."""
    tiers, problems = tier_defs(config, default)
    if problems:
        return None, problems
    fields = {k: config.get(k, v) for k, v in defaults.items()}
    policy = TierPolicy(tiers=tuple(tiers), **fields)
    try:
        check_policy(policy)
    except ValueError as exc:
        return None, [str(exc)]
    return policy, []


class ClassicTiers:
    """Spend-based tiers for a department store (see the module docstring)."""

    name = NAME
    slot = "tiers"
    version = "1"
    description = (
        "Member / Silver / Gold / Platinum on growth (1 per yuan) earned in the calendar year; "
        "upgrade at once, keep-level reviewed every 1 January, one step down when missed. "
        "Gold and Platinum come with entry gifts."
    )
    ladder: ClassVar[Any] = DEFAULT_LADDER
    defaults: ClassVar[dict[str, Any]] = {
        "measure": "period",
        "period": "calendar_year",
        "months": 12,
        "downgrade": "one_step",
    }
    config_schema: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **POLICY_PROPERTIES,
            "ladder": ladder_schema(),
            "thresholds": _by_code(),
            "keep": _by_code(),
        },
    }

    def check(self, config: dict[str, Any]) -> list[str]:
        return build_policy(config, self.ladder, **self.defaults)[1]

    def policy(self, config: dict[str, Any]) -> TierPolicy:
        policy, problems = build_policy(config, self.ladder, **self.defaults)
        if policy is None:
            raise ValueError("; ".join(problems))
        return policy

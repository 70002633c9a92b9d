"""``v8_tiers`` (slot ``tiers``): eight growth levels, V1 to V8, kept on a rolling window.

The brand model: a member's level says how engaged they are across every channel, not how much
they spent. Growth value (成长值) comes mostly from tasks — checking in at a store or in the app,
following the official account, posting, inviting friends, buying across categories — and a
little from orders (see :mod:`plugins.v8_growth.v8_earning`). The level decides the points
multiplier, the member price in the points mall and the upgrade gifts.

- **Upgrade** (``measure``): ``period`` (default) compares the growth earned in the last
  ``months`` months with each level's threshold, so a level reflects recent engagement;
  ``lifetime`` compares the growth balance (levels only ever go up). Upgrades happen at once,
  possibly several levels in one step.
- **Keep-level** (保级): with ``measure: period``, every ``months`` months after a level was
  reached or last kept, the growth earned in that period is reviewed: at least the level's
  ``keep`` keeps it for another period, less drops the member **one level** (a lapsed V5 becomes
  V4, not V1 — one bad half-year does not erase years of engagement).
- **Upgrade gifts**: entering a level grants its ``gifts`` (by default V4 and above, the levels a
  member has to work for); a level regained after a downgrade grants them again.

Config (every key optional; lists have one value per level, V1 first)::

    measure: period            # period | lifetime
    months: 12                 # rolling window and keep-level period
    thresholds: [0, 100, 300, 800, 1500, 3000, 6000, 10000]
    keep_pct: 50               # keep = threshold × keep_pct / 100 …
    keep: [0, 50, …]           # … or explicit keep values (period measure only)
    multiplier_pct: [100, 100, 110, 120, 130, 150, 180, 200]
    discount_bp: [10000, 10000, 10000, 9800, 9700, 9500, 9200, 9000]
    names: {V1: 新朋友}         # display names (default: the code)
    gifts: {V4: [coupon:V4-UPGRADE]}   # replaces the default gifts
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, ClassVar

from gateway.rules.hookspecs import TierDef, TierPolicy
from plugins.v8_growth._common import (
    LEVELS,
    PER_LEVEL_INTS,
    REWARDS,
    by_level,
    reward_problems,
)

NAME = "v8_tiers"
DEFAULT_THRESHOLDS = (0, 100, 300, 800, 1500, 3000, 6000, 10000)
DEFAULT_KEEP_PCT = 50
DEFAULT_MULTIPLIER_PCT = (100, 100, 110, 120, 130, 150, 180, 200)
DEFAULT_DISCOUNT_BP = (10_000, 10_000, 10_000, 9_800, 9_700, 9_500, 9_200, 9_000)
DEFAULT_GIFTS: Mapping[str, tuple[str, ...]] = {
    "V4": ("coupon:V4-UPGRADE",),
    "V5": ("coupon:V5-UPGRADE",),
    "V6": ("coupon:V6-UPGRADE", "gift:V6-TOTE"),
    "V7": ("coupon:V7-UPGRADE", "physical:V7-GIFTBOX"),
    "V8": ("coupon:V8-UPGRADE", "physical:V8-GIFTBOX"),
}


class V8Tiers:
    """V1..V8 on growth in a rolling window (or lifetime), one-step downgrade, V4+ gifts."""

    name = NAME
    slot = "tiers"
    version = "1"
    description = (
        "Growth levels V1-V8: upgrade on growth in the last `months` months (or lifetime growth), "
        "keep-level review every `months` months, a lapsed member drops one level, upgrade gifts "
        "from V4."
    )
    config_schema: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "measure": {"enum": ["period", "lifetime"]},
            "months": {"type": "integer", "minimum": 1, "maximum": 60},
            "thresholds": PER_LEVEL_INTS,
            "keep_pct": {"type": "integer", "minimum": 0, "maximum": 100},
            "keep": PER_LEVEL_INTS,
            "multiplier_pct": {**PER_LEVEL_INTS, "items": {"type": "integer", "minimum": 0}},
            "discount_bp": {
                **PER_LEVEL_INTS,
                "items": {"type": "integer", "minimum": 1, "maximum": 10_000},
            },
            "names": by_level({"type": "string", "minLength": 1, "maxLength": 32}),
            "gifts": by_level(REWARDS),
        },
    }

    def check(self, config: Mapping[str, Any]) -> list[str]:
        problems: list[str] = []
        thresholds = list(config.get("thresholds", DEFAULT_THRESHOLDS))
        if thresholds[0] != 0:
            problems.append(
                f"thresholds: V1 is the entry level, its threshold must be 0 (got {thresholds[0]})"
            )
        for (lo, a), (hi, b) in itertools.pairwise(zip(LEVELS, thresholds, strict=True)):
            if b <= a:
                problems.append(f"thresholds: {hi} ({b}) must be above {lo} ({a})")
        lifetime = config.get("measure", "period") == "lifetime"
        if lifetime and ("keep" in config or config.get("keep_pct", 0) != 0):
            problems.append(
                "measure lifetime: lifetime growth never goes down, so levels are never reviewed "
                "— remove keep / keep_pct (or set keep_pct: 0), or use measure: period"
            )
        if "keep" in config and "keep_pct" in config:
            problems.append("give either keep (per level) or keep_pct, not both")
        keep = config.get("keep")
        if keep is not None and not problems:
            for code, k, t in zip(LEVELS, keep, thresholds, strict=True):
                if k > t:
                    problems.append(f"keep: {code} keep {k} is above its threshold {t}")
            for (lo, a), (hi, b) in itertools.pairwise(zip(LEVELS, keep, strict=True)):
                if b < a:
                    problems.append(f"keep: {hi} ({b}) must not be below {lo} ({a})")
        for code, rewards in (config.get("gifts") or {}).items():
            problems.extend(reward_problems(rewards, f"gifts.{code}"))
        return problems

    def policy(self, config: Mapping[str, Any]) -> TierPolicy:
        thresholds = tuple(config.get("thresholds", DEFAULT_THRESHOLDS))
        lifetime = config.get("measure", "period") == "lifetime"
        if lifetime:
            keep = (0,) * len(LEVELS)
        elif "keep" in config:
            keep = tuple(config["keep"])
        else:
            pct = config.get("keep_pct", DEFAULT_KEEP_PCT)
            keep = tuple(t * pct // 100 for t in thresholds)
        multiplier = tuple(config.get("multiplier_pct", DEFAULT_MULTIPLIER_PCT))
        discount = tuple(config.get("discount_bp", DEFAULT_DISCOUNT_BP))
        names = config.get("names") or {}
        gifts = config.get("gifts", DEFAULT_GIFTS)
        tiers = tuple(
            TierDef(
                code=code,
                name=names.get(code, code),
                threshold=thresholds[i],
                keep=keep[i],
                multiplier_pct=multiplier[i],
                discount_bp=discount[i],
                gifts=tuple(gifts.get(code, ())),
            )
            for i, code in enumerate(LEVELS)
        )
        return TierPolicy(
            tiers=tiers,
            measure="lifetime" if lifetime else "period",
            period="rolling",
            months=int(config.get("months", 12)),
            downgrade="one_step",
        )

"""``classic``: the rule system of a department store — spend-based tiers, multiplied points.

Models a classic department-store programme (think a city-centre store with cosmetics, fashion
and household floors): every yuan spent counts, and nothing else does.

- **tiers** (``classic_tiers``): Member → Silver (2,000 growth) → Gold (8,000) → Platinum
  (20,000), growth being 1 per yuan spent in the calendar year. Reaching a threshold upgrades at
  once; every 1 January (tenant timezone) the past year's growth is checked against the tier's
  keep threshold (Silver 1,500, Gold 6,000, Platinum 15,000) and a member who missed it drops one
  tier. Points multipliers ×1.0 / ×1.2 / ×1.5 / ×2.0 and price rates 100 / 98 / 95 / 90 %;
  entering Gold or Platinum grants a welcome coupon (Platinum also a parking gift).
- **earning** (``classic_earning``): on every paid order, 1 point per whole yuan × the member's
  tier multiplier (rounded down) and 1 growth per whole yuan; orders from excluded channels earn
  nothing, lines in excluded categories are taken out pro rata.
- **expiry** (``classic_expiry``): points expire at the end of the calendar year after the one
  they were earned in (tenant timezone).
- **exchange** (``classic_exchange``): points + cash exchange is for Silver and above; in the
  member's birthday month the points price is 20 % lower.

Every number is configurable (each rule set's ``config_schema``); ``{rule: <name>}`` alone runs
the defaults above. ``config.example.yaml`` next to this file is a complete tenant config.
"""

from __future__ import annotations

from gateway.rules.hookspecs import RuleSet, hookimpl
from plugins.classic.earning import ClassicEarning
from plugins.classic.exchange import ClassicExchange
from plugins.classic.expiry import ClassicExpiry
from plugins.classic.tiers import ClassicTiers

RULE_SETS = (ClassicTiers, ClassicEarning, ClassicExpiry, ClassicExchange)


@hookimpl
def register_rule_sets() -> list[RuleSet]:
    return [cls() for cls in RULE_SETS]


__all__ = [
    "ClassicEarning",
    "ClassicExchange",
    "ClassicExpiry",
    "ClassicTiers",
    "register_rule_sets",
]

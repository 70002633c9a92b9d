"""``bakery``: the rule system of Levain & Co., a (fictional) bakery chain.

Levain & Co. runs some eighty neighbourhood bakeries and a busy mini-program; its members come
in for bread a few times a week and the brand wants them in the app and the community too, so
growth comes from purchases *and* from interactions:

- **tiers** (``bakery_tiers``): Crumb → Loaf (300 growth) → Brioche (1,000) → Croissant d'Or
  (3,000), measured on the last 12 months. Upgrade at once (a new 12-month period starts); at
  the period's end the growth in it is reviewed against the tier's keep threshold (240 / 800 /
  2,400) and a member who missed it is recalculated to the tier that growth does keep. Points
  multipliers ×1.0 / ×1.1 / ×1.25 / ×1.5; Brioche and Croissant d'Or come with entry gifts
  (a pastry voucher; a croissant masterclass and a birthday-cake voucher).
- **earning** (``bakery_earning``): 1 point per whole yuan × tier multiplier, 1 growth per whole
  yuan; prepaid cards earn when spent, not when bought.
- **expiry** (``bakery_expiry``): points last 12 full months after the month they were earned
  in, expiring at a month's end (tenant timezone).
- **tasks** (``bakery_tasks``): daily check-in (streak bonuses on day 3 and every 7th day),
  community posts (2 a day), following the official account (once), completing the profile
  (once) and attending a baking class (2 a month), each paying points and growth.
- **benefits** (``bakery_join_gift``): a free-croissant coupon for every new member (priority
  50, stacks with other benefits).

The plugin also registers the reward kinds ``bakery_voucher`` (a product voucher redeemed at the
counter) and ``baking_class`` (a seat in a class), both sold in the example points mall, and the
event type ``bakery.class_attended`` the class task reacts to. ``config.example.yaml`` next to
this file is a complete tenant config.
"""

from __future__ import annotations

from gateway.rules.hookspecs import EventType, RewardKind, RuleSet, hookimpl
from plugins.bakery.benefits import BakeryJoinGift
from plugins.bakery.earning import BakeryEarning
from plugins.bakery.expiry import BakeryExpiry
from plugins.bakery.tasks import BakeryTasks
from plugins.bakery.tiers import BakeryTiers

RULE_SETS = (BakeryTiers, BakeryEarning, BakeryExpiry, BakeryTasks, BakeryJoinGift)

EVENT_TYPES = (
    EventType(
        "bakery.class_attended",
        "The member attended a baking class in a Levain & Co. bakery.",
        {"channel": "channel code", "store_code": "the bakery", "class_code": "the class"},
    ),
)

REWARD_KINDS = (
    RewardKind(
        "bakery_voucher",
        "A voucher for a product (a pastry, a cake) redeemed at any Levain & Co. counter "
        "(code = the voucher template).",
        "store",
    ),
    RewardKind(
        "baking_class",
        "A seat in a baking class, booked by the class system (code = the class).",
        "plugin",
    ),
)


@hookimpl
def register_rule_sets() -> list[RuleSet]:
    return [cls() for cls in RULE_SETS]


@hookimpl
def register_event_types() -> list[EventType]:
    return list(EVENT_TYPES)


@hookimpl
def register_reward_kinds() -> list[RewardKind]:
    return list(REWARD_KINDS)


__all__ = [
    "BakeryEarning",
    "BakeryExpiry",
    "BakeryJoinGift",
    "BakeryTasks",
    "BakeryTiers",
    "register_event_types",
    "register_reward_kinds",
    "register_rule_sets",
]

"""``v8_growth``: a V1–V8 growth-value system driven by tasks across every channel.

The brand model (as run by big sportswear and beauty brands' member programmes, 会员成长体系):
one member, one growth value (成长值), fed by what the member *does* on every channel — checking
in at a store's POS or in the app / mini-program, following the official account, posting,
sharing, inviting friends who then buy, buying across categories, completing the profile — far
more than by what they spend. Growth decides the level, V1 to V8; the level decides the points
multiplier, the member price in the points mall and the upgrade gifts; points (earned mostly
from orders on the marketplaces and in store) are what the mall spends.

===================  =========  ===============================================================
rule set             slot       module
===================  =========  ===============================================================
``v8_tiers``         tiers      :mod:`.v8_tiers` — V1..V8, rolling window, one-step downgrade
``v8_tasks``         tasks      :mod:`.v8_tasks` — the cross-channel task list
``v8_earning``       earning    :mod:`.v8_earning` — points per yuan, (almost) no spend growth
``v8_order_growth``  tasks      :mod:`.v8_earning` — growth for the first order per channel/month
``v8_member_day``    benefits   :mod:`.v8_benefits` — member-day bonus points (exclusive, 10)
``v8_birthday``      benefits   :mod:`.v8_benefits` — birthday gift by level (exclusive, 20)
===================  =========  ===============================================================

New event types (:mod:`.events`): ``content.shared``, ``member.birthday``. A complete tenant
config, points mall included, is ``config.example.yaml`` next to this file.
"""

from __future__ import annotations

from gateway.rules.hookspecs import EventType, RuleSet, hookimpl
from plugins.v8_growth.events import EVENT_TYPES
from plugins.v8_growth.v8_benefits import V8Birthday, V8MemberDay
from plugins.v8_growth.v8_earning import V8Earning, V8OrderGrowth
from plugins.v8_growth.v8_tasks import V8Tasks
from plugins.v8_growth.v8_tiers import V8Tiers

RULE_SETS: tuple[RuleSet, ...] = (
    V8Tiers(),
    V8Tasks(),
    V8Earning(),
    V8OrderGrowth(),
    V8MemberDay(),
    V8Birthday(),
)


@hookimpl
def register_rule_sets() -> list[RuleSet]:
    return list(RULE_SETS)


@hookimpl
def register_event_types() -> list[EventType]:
    return list(EVENT_TYPES)

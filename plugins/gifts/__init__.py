"""``gifts``: the brand's member gifts as configuration — no code to write.

One rule set, ``member_gifts`` (slot ``benefits``, priority 30, ``stack``), answers the events the
gateway records itself with the rewards the tenant's config lists for them:

- ``member.joined`` → ``join`` (the welcome gift);
- ``member.birthday`` → ``birthday`` (once a year, recorded by ``memberhub triggers run``);
- ``member.member_day`` → ``member_day`` (once a month, the brand's member day);
- ``tier.changed`` with change ``upgrade`` → ``upgrade[<new tier>]``;
- ``tier.kept`` → ``keep_level[<kept tier>]`` (the thank-you for keeping a level: 保级礼).

``birthday`` and ``member_day`` take a list, or ``{default: [...], by_tier: {gold: [...]}}``:
the member's effective tier's list when there is one, else ``default``. Rewards are
``"<kind>:<code>"`` — ``coupon:<template>`` becomes a coupon and ``points:<amount>`` a points
credit at once (``gateway.rules.fulfil``); other kinds are granted for their owning system.

Once per occurrence: the events themselves are recorded once per member and occurrence, and each
grant is keyed by (event, rule, reward), so a replay or a second trigger run gives nothing more.
See ``config.example.yaml`` and plugins/README.md ("Built-in plugins", ``member_gifts``) for how
``upgrade`` differs from a tier ladder's own ``gifts``.
"""

from __future__ import annotations

from gateway.rules.hookspecs import RuleSet, hookimpl
from plugins.gifts.member_gifts import MemberGifts

RULE_SETS = (MemberGifts,)


@hookimpl
def register_rule_sets() -> list[RuleSet]:
    return [cls() for cls in RULE_SETS]

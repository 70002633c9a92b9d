"""The ``gifts`` plugin (``member_gifts``): pure answers per event, config validation against the
tenant's ladder and reward kinds, and a member's year through the real engine — every coupon
gift becomes exactly one coupon, points gifts are credited, replays give nothing more."""

from __future__ import annotations

from pathlib import Path

import yaml

from gateway.rules.hookspecs import Grant, TierView
from plugins import gifts
from plugins.gifts.member_gifts import NAME, MemberGifts
from plugins.testing import RuleLab, activity, check_config, evaluate, registry, snapshot
from tests.plugins.support import sh

EXAMPLE = Path(gifts.__file__).with_name("config.example.yaml")
GOLD = TierView("gold", "Gold", 2, 150, 9_500)
SILVER = TierView("silver", "Silver", 1, 120, 9_800)
CONFIG = {
    "join": ["coupon:WELCOME-10"],
    "birthday": {
        "default": ["coupon:BDAY-20"],
        "by_tier": {"gold": ["coupon:BDAY-50", "points:200"]},
    },
    "member_day": ["coupon:MDAY-5"],
    "upgrade": {"gold": ["coupon:GOLD-WELCOME"]},
    "keep_level": {"gold": ["points:500"]},
}
LADDER = [
    {"code": "member", "name": "Member", "threshold": 0},
    {"code": "silver", "name": "Silver", "threshold": 100, "keep": 50},
    {"code": "gold", "name": "Gold", "threshold": 300, "keep": 200, "discount_bp": 9500},
]
DOCUMENT = {
    "tiers": {"rule": "classic_tiers", "config": {"ladder": LADDER}},
    "earning": ["classic_earning"],
    "benefits": [{"rule": NAME, "config": CONFIG}],
}


def grants(out: list) -> list[str]:
    assert all(isinstance(g, Grant) and g.rule == NAME for g in out)
    return [g.reward for g in out]


# ---- pure ----------------------------------------------------------------------------------


def test_registered_and_example_config_is_valid() -> None:
    rs = registry().get(NAME)
    assert rs is not None and rs.slot == "benefits" and rs.stacking == "stack"
    assert check_config(yaml.safe_load(EXAMPLE.read_text())) == []
    assert check_config(DOCUMENT) == []


def test_each_event_answers_with_its_configured_rewards() -> None:
    at = sh(2026, 3, 8, 9)
    rs = MemberGifts()
    assert grants(evaluate(rs, snapshot(), activity("member.joined", at=at), CONFIG)) == [
        "coupon:WELCOME-10"
    ]
    birthday = activity("member.birthday", at=at, year=2026, age=30)
    assert grants(evaluate(rs, snapshot(tier=SILVER), birthday, CONFIG)) == ["coupon:BDAY-20"]
    assert grants(evaluate(rs, snapshot(tier=GOLD), birthday, CONFIG)) == [
        "coupon:BDAY-50",
        "points:200",
    ]
    assert evaluate(rs, snapshot(), birthday, CONFIG)[0].reason == "birthday gift 2026"
    day = activity("member.member_day", at=at, month="2026-03", day=8)
    assert grants(evaluate(rs, snapshot(tier=GOLD), day, CONFIG)) == ["coupon:MDAY-5"]
    assert evaluate(rs, snapshot(), day, CONFIG)[0].reason == "member day gift 2026-03"

    def tier_event(kind: str, change: str, to: str) -> list:
        ev = activity(kind, at=at, change=change, to=to, gifts=[])
        return evaluate(rs, snapshot(tier=GOLD), ev, CONFIG)

    assert grants(tier_event("tier.changed", "upgrade", "gold")) == ["coupon:GOLD-WELCOME"]
    assert tier_event("tier.changed", "upgrade", "silver") == []  # nothing configured for it
    assert tier_event("tier.changed", "override", "gold") == []  # an operator's gesture
    assert tier_event("tier.changed", "downgrade", "gold") == []
    assert grants(tier_event("tier.kept", "kept", "gold")) == ["points:500"]
    assert evaluate(rs, snapshot(), activity("order.paid", at=at, paid_fen=100), CONFIG) == []
    assert evaluate(rs, snapshot(), activity("member.joined", at=at), {"member_day": []}) == []


def test_config_is_checked_against_the_ladder_and_the_reward_kinds() -> None:
    def problems(config: dict, tiers: bool = True) -> list[tuple[str, str]]:
        doc = {"benefits": [{"rule": NAME, "config": config}]}
        if tiers:
            doc["tiers"] = DOCUMENT["tiers"]
        return check_config(doc)

    assert problems({"upgrade": {"diamond": ["coupon:X"]}}) == [
        ("benefits[0].config", "unknown tier 'diamond' (tiers: member, silver, gold)")
    ]
    assert problems({"birthday": {"by_tier": {"gold": ["coupon:X"]}}}, tiers=False) == [
        ("benefits[0].config", "names tier 'gold' but no tiers rule set")
    ]
    [(path, message)] = problems({"join": ["cupon:X"]})
    assert path == "benefits[0].config" and "reward 'cupon:X' is not '<kind>:<code>'" in message
    assert problems({"join": ["points:0"]}) == [
        ("benefits[0].config", "'points:0': a points reward is 'points:<positive amount>'")
    ]
    assert problems({}) == [
        (
            "benefits[0].config",
            "gives nothing: set join, birthday, member_day, upgrade or keep_level",
        )
    ]
    assert problems({"join": ["coupon:A", "coupon:A"]})[0][0] == "benefits[0].config.join"


# ---- through the engine --------------------------------------------------------------------


async def test_a_year_of_gifts_through_the_engine() -> None:
    async with RuleLab.open(DOCUMENT) as lab:
        for code in ("WELCOME-10", "BDAY-20", "BDAY-50", "MDAY-5", "GOLD-WELCOME"):
            await lab.coupon_template(code)
        ann = await lab.join("ann", at=sh(2026, 1, 5, 10))
        src = f"rule:{NAME}"
        assert await lab.coupons(ann) == [("WELCOME-10", src)]

        # Member day as an entry-tier member, twice the same occurrence: one coupon.
        for _ in range(2):
            await lab.activity(
                ann, "member.member_day", at=sh(2026, 2, 8, 0, 5), key="md-2026-02", month="2026-02"
            )
        # Upgrade to gold on growth: the configured upgrade gift.
        await lab.order(ann, 40_000, at=sh(2026, 3, 1, 12))
        assert await lab.tier(ann, at=sh(2026, 3, 2)) == "gold"
        # Birthday as gold: the gold list — a coupon and 200 points credited at once.
        before = (await lab.balances(ann, at=sh(2026, 4, 2)))["points"]
        for _ in range(2):
            await lab.activity(ann, "member.birthday", at=sh(2026, 4, 2, 0, 1), key="bd-2026")
        assert (await lab.balances(ann, at=sh(2026, 4, 2)))["points"] == before + 200
        assert sorted(await lab.coupons(ann)) == [
            ("BDAY-50", src),
            ("GOLD-WELCOME", src),
            ("MDAY-5", src),
            ("WELCOME-10", src),
        ]
        assert sorted(g for g in await lab.grants(ann) if g[2] == NAME) == [
            ("coupon", "BDAY-50", NAME),
            ("coupon", "GOLD-WELCOME", NAME),
            ("coupon", "MDAY-5", NAME),
            ("coupon", "WELCOME-10", NAME),
            ("points", "200", NAME),
        ]
        # The yearly review keeps gold (300 growth ≥ keep 200): the keep-level gift, once.
        await lab.review(at=sh(2027, 1, 1, 0, 30))
        await lab.review(at=sh(2027, 1, 1, 1, 0))
        assert (await lab.balances(ann, at=sh(2027, 1, 2)))["points"] == before + 700
        assert [h.change for h in await lab.history(ann)][-1] == "kept"
        assert await lab.violations() == []

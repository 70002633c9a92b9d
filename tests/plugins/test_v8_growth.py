"""The built-in ``v8_growth`` plugin: V1-V8 levels fed by cross-channel tasks.

(a) a year of synthetic activity of four members with different habits through the real engine
(:class:`plugins.testing.RuleLab`), (b) task rewards and caps, (c) the points mall in all three
exchange modes, (d) each rule set as a pure function, (e) configs that must be refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

import plugins.v8_growth as v8
from gateway.errors import NotEligible
from gateway.mall import service as mall
from gateway.rules.hookspecs import Grant, Intent
from gateway.rules.tasks import advance
from gateway.rules.tiers import TierFacts, TierState, decide, tier_view
from plugins.testing import RuleLab, activity, check_config, evaluate, order_paid, snapshot
from plugins.v8_growth.v8_benefits import V8Birthday, V8MemberDay
from plugins.v8_growth.v8_earning import V8Earning, V8OrderGrowth
from plugins.v8_growth.v8_tasks import V8Tasks
from plugins.v8_growth.v8_tiers import V8Tiers

TZ = ZoneInfo("Asia/Shanghai")
EXAMPLE = Path(v8.__file__).with_name("config.example.yaml")
LEVELS = ("V1", "V2", "V3", "V4", "V5", "V6", "V7", "V8")


def at(month: int, day: int, hour: int = 10, minute: int = 0, *, year: int = 2026) -> datetime:
    """A moment in Shanghai local time (the lab tenant's timezone)."""
    return datetime(year, month, day, hour, minute, tzinfo=TZ)


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def open_lab(document: dict[str, Any]) -> Any:
    return RuleLab.open(document, plugins=[v8], entry_points=False)


def local_day(ts: datetime) -> str:
    return ts.astimezone(TZ).strftime("%Y-%m-%d")


async def history(lab: RuleLab, member: uuid.UUID) -> list[tuple[str, str, str | None, str]]:
    return [(local_day(h.at), h.change, h.from_tier, h.to_tier) for h in await lab.history(member)]


async def done(lab: RuleLab, member: uuid.UUID) -> dict[str, tuple[int, int, int]]:
    """Per task: (completions, points, growth)."""
    out: dict[str, tuple[int, int, int]] = {}
    for task, points, growth in await lab.completions(member):
        n, p, g = out.get(task, (0, 0, 0))
        out[task] = (n + 1, p + points, g + growth)
    return out


def steps(out: Any) -> list[tuple[str, bool, str | None]]:
    """What an event did to the member's tasks: (task, paid, why not)."""
    return [(s.task, s.completed, s.refused) for s in out.tasks]


# ---- (a) a year of cross-channel activity ----------------------------------------------------


def year_config() -> dict[str, Any]:
    """The example config with a compressed ladder reviewed every six months (so a year fits in
    ~130 events): keep = 30 % of [0, 50, 120, 240, 400, 700, 1100, 1800] → V3 36, V4 72, V5 120.
    Every task, reward, benefit and mall item is the example's."""
    doc = example()
    doc["tiers"]["config"].update(
        months=6, thresholds=[0, 50, 120, 240, 400, 700, 1100, 1800], keep_pct=30
    )
    return doc


class Timeline:
    """Several members' events, run in business-time order (ties: in the order added); the
    outcome of an event added with a ``name`` is kept in ``results``."""

    def __init__(self) -> None:
        self.items: list[tuple[datetime, int, str, Callable[[datetime], Awaitable[Any]]]] = []
        self.results: dict[str, Any] = {}

    def add(self, when: datetime, fn: Callable[[datetime], Awaitable[Any]], name: str = "") -> None:
        self.items.append((when, len(self.items), name, fn))

    async def run(self) -> None:
        for when, _, name, fn in sorted(self.items, key=lambda i: (i[0], i[1])):
            result = await fn(when)
            if name:
                self.results[name] = result


async def test_a_year_of_cross_channel_activity() -> None:
    assert check_config(year_config(), [v8], entry_points=False) == []
    async with open_lab(year_config()) as lab:
        amy = await lab.join("amy", at=at(1, 1, 7), channel="app")
        ivan = await lab.join("ivan", at=at(1, 3, 9), channel="wechat")
        sam = await lab.join("sam", at=at(1, 5, 9), channel="pos")
        eve = await lab.join(
            "eve", at=at(1, 10, 9), channel="tmall", profile={"birthday": date(1992, 8, 15)}
        )
        t = Timeline()
        tiers_seen: list[tuple[str, str, str | None]] = []

        def act(member: uuid.UUID, type: str, **payload: Any) -> Any:
            return lambda w: lab.activity(member, type, at=w, **payload)

        def buy(member: uuid.UUID, fen: int, channel: str, category: str, **kw: Any) -> Any:
            line = {"sku": category.upper(), "category": category, "amount_fen": fen}
            return lambda w: lab.order(member, fen, at=w, channel=channel, lines=[line], **kw)

        def look(name: str, member: uuid.UUID) -> Any:
            async def fn(w: datetime) -> None:
                tiers_seen.append((local_day(w), name, await lab.tier(member, at=w)))

            return fn

        # Sam only ever shops in store: two check-ins at the till and one ¥300 order a month,
        # 40 growth a month — exactly V4's 240 over the six-month window.
        for m in range(1, 13):
            t.add(at(m, 6, 11), act(sam, "task.checkin", channel="pos"))
            t.add(at(m, 13, 11), act(sam, "task.checkin", channel="pos"))
            t.add(at(m, 20, 15), buy(sam, 30_000, "pos", "apparel", store_code="SH01"))

        # Amy never buys anything: a 30-day app streak, follows the official account, completes
        # her profile, posts (one post too many on 2 Feb), a 7-day mini-program streak and five
        # days of posts in March — then she lapses.
        for i in range(30):
            t.add(at(1, 1, 8) + timedelta(days=i), act(amy, "task.checkin", channel="app"))
        t.add(at(1, 31, 20), act(amy, "wechat.followed", channel="wechat"))
        fields = ["name", "gender", "birthday", "city"]
        t.add(at(2, 1, 20), act(amy, "member.profile_updated", channel="app", fields=fields))
        t.add(at(2, 2, 12, 0), act(amy, "community.posted", channel="app"))
        t.add(at(2, 2, 12, 1), act(amy, "community.posted", channel="app"))
        t.add(at(2, 2, 12, 2), act(amy, "community.posted", channel="app"), "amy_third_post")
        for i in range(7):
            t.add(at(3, 1, 8) + timedelta(days=i), act(amy, "task.checkin", channel="wechat"))
        for d in range(8, 13):
            t.add(at(3, d, 12, 0), act(amy, "community.posted", channel="app"))
            t.add(at(3, d, 12, 1), act(amy, "community.posted", channel="app"))

        # Eve buys online (¥8,000 over the year) and never does a task; one order is refunded, an
        # operator lifts her to V6 for the summer, her birthday is in August.
        t.add(at(1, 12, 21), buy(eve, 120_000, "tmall", "shoes"))
        t.add(at(1, 18, 21), buy(eve, 80_000, "tmall", "shoes"))  # member day
        t.add(at(2, 14, 21), buy(eve, 60_000, "jd", "apparel"))

        async def bought_and_refunded(w: datetime) -> None:
            oid = await buy(eve, 40_000, "tmall", "caps")(w)
            await lab.refund(oid, 40_000, at=w + timedelta(days=2))

        t.add(at(2, 20, 21), bought_and_refunded)
        t.add(at(3, 3, 21), buy(eve, 100_000, "tmall", "shoes"))
        t.add(at(3, 9, 21), buy(eve, 50_000, "jd", "apparel"))
        t.add(at(3, 15, 21), buy(eve, 30_000, "douyin", "accessories"))  # 3rd category in March
        t.add(at(4, 18, 21), buy(eve, 200_000, "tmall", "shoes"))  # member day
        reason = "VIP gesture after a delivery complaint"
        t.add(
            at(6, 1, 10),
            lambda w: lab.override(eve, "V6", until=at(9, 1, 0), reason=reason, at=w),
        )
        t.add(at(7, 1), look("eve", eve))
        t.add(at(7, 5, 21), buy(eve, 100_000, "tmall", "shoes"))  # ×1.5 as V6
        t.add(at(8, 1, 0, 5), act(eve, "member.birthday", year=2026, key="birthday:eve:2026"))
        t.add(at(8, 18, 21), buy(eve, 100_000, "tmall", "shoes"))  # member day, birthday month
        t.add(at(10, 18, 21), buy(eve, 30_000, "jd", "apparel"))  # member day

        # Ivan invites five friends; each friend's first order pays him (3 a month at most).
        for i, when in enumerate([at(2, 5), at(2, 10), at(2, 15), at(2, 20), at(3, 5)]):

            async def invite(w: datetime, i: int = i) -> Any:
                friend = await lab.join(f"friend{i}", at=w, channel="tmall")
                oid = await lab.order(friend, 10_000, at=w + timedelta(hours=1), channel="tmall")
                return await lab.activity(
                    ivan,
                    "referral.first_order",
                    at=w + timedelta(hours=1, minutes=1),
                    channel="tmall",
                    invitee_id=str(friend),
                    order_id=str(oid),
                )

            t.add(when, invite, f"invite{i}")

        for name, member in (("amy", amy), ("ivan", ivan), ("sam", sam), ("eve", eve)):
            t.add(at(3, 31, 23), look(name, member))
        # The scheduled review (memberhub tiers evaluate) runs now and then.
        for when in (at(8, 10, 3), at(9, 2, 3), at(9, 20, 3), at(3, 20, 3, year=2027)):
            t.add(when, lambda w: lab.review(at=w))
        await t.run()

        # Sam: upgrades as his store visits add up, then keeps V4 at the rolling review.
        assert await history(lab, sam) == [
            ("2026-01-05", "initial", None, "V1"),
            ("2026-02-06", "upgrade", "V1", "V2"),
            ("2026-03-20", "upgrade", "V2", "V3"),
            ("2026-06-20", "upgrade", "V3", "V4"),  # 240 = 6 months × 40
            ("2026-12-20", "kept", "V4", "V4"),  # 240 in the period ≥ keep 72
        ]
        assert await done(lab, sam) == {
            "store_checkin": (24, 0, 240),
            "first_order_pos": (12, 0, 240),
        }
        # ¥300 a month, times the level multiplier when each order was paid.
        assert await lab.balances(sam) == {"growth": 480, "points": 3 * 300 + 3 * 330 + 6 * 360}
        assert await lab.grants(sam) == [("coupon", "V4-UPGRADE", "v8_tiers")]

        # Amy: levels from tasks alone; keeps V4 at the review, then lapses one level.
        assert await history(lab, amy) == [
            ("2026-01-01", "initial", None, "V1"),
            ("2026-01-15", "upgrade", "V1", "V2"),  # day 15: 30 + two 7-day bonuses
            ("2026-01-30", "upgrade", "V2", "V3"),  # day 30: the 30-day bonus
            ("2026-02-02", "upgrade", "V3", "V4"),
            ("2026-08-02", "kept", "V4", "V4"),  # 79 ≥ keep 72
            ("2027-02-02", "downgrade", "V4", "V3"),  # lapsed: one step
        ]
        jan = [g for task, _, g in await lab.completions(amy) if task == "app_checkin"][:30]
        assert jan == ([2] * 6 + [12]) * 4 + [2, 52]
        assert await done(lab, amy) == {
            "app_checkin": (37, 30 + 40 + 50 + 7 + 10, 150 + 24),
            "follow_account": (1, 0, 50),
            "complete_profile": (1, 50, 30),
            "community_post": (12, 0, 60),
        }
        assert steps(t.results["amy_third_post"]) == [("community_post", False, "DAILY_LIMIT")]
        assert await lab.balances(amy) == {"growth": 314, "points": 187}
        assert await lab.grants(amy) == [("coupon", "V4-UPGRADE", "v8_tiers")]

        # Eve: spend earns points, not levels — growth only from first orders per channel per
        # month and the multi-category month; the override and its expiry; birthday benefits.
        assert await history(lab, eve) == [
            ("2026-01-10", "initial", None, "V1"),
            ("2026-03-15", "upgrade", "V1", "V3"),  # 130: the multi-category month
            ("2026-06-01", "override", "V3", "V6"),
            ("2026-09-01", "override_expired", "V6", "V3"),
            ("2026-09-15", "kept", "V3", "V3"),
            ("2027-03-15", "downgrade", "V3", "V2"),
        ]
        assert await done(lab, eve) == {
            "first_order_tmall": (6, 0, 60),  # Jan, Feb (refunded), Mar, Apr, Jul, Aug
            "first_order_jd": (3, 0, 30),
            "first_order_douyin": (1, 0, 10),
            "multi_category": (1, 0, 80),
        }
        points = (
            1200
            + (800 + 800)  # member day: +1/yuan
            + 600
            + (400 - 400)  # refunded
            + 1000
            + 500
            + 300
            + (2200 + 2000)  # V3 ×1.1, member day
            + 1500  # V6 ×1.5 under the override
            + 200  # birthday points of a V6 (the V4 row)
            + (1500 + 2000)  # birthday month +2/yuan; the member-day bonus does not stack
            + (330 + 300)  # V3 ×1.1, member day
        )
        assert await lab.balances(eve) == {"growth": 180 - 10, "points": points}
        assert await lab.grants(eve) == [("coupon", "BDAY-30", "v8_birthday")]

        # Ivan: four paid invites (the 4th in February is over the monthly cap) carry him to
        # V5; then he lapses and drops one level per review.
        assert await history(lab, ivan) == [
            ("2026-01-03", "initial", None, "V1"),
            ("2026-02-05", "upgrade", "V1", "V2"),
            ("2026-02-10", "upgrade", "V2", "V3"),
            ("2026-02-15", "upgrade", "V3", "V4"),
            ("2026-03-05", "upgrade", "V4", "V5"),
            ("2026-09-05", "downgrade", "V5", "V4"),  # 100 < keep 120
            ("2027-03-05", "downgrade", "V4", "V3"),
        ]
        assert steps(t.results["invite3"]) == [("invite_friend", False, "PERIOD_LIMIT")]
        assert await done(lab, ivan) == {"invite_friend": (4, 800, 400)}
        assert await lab.balances(ivan) == {"growth": 400, "points": 800}
        assert await lab.grants(ivan) == [
            ("coupon", "V4-UPGRADE", "v8_tiers"),
            ("coupon", "V5-UPGRADE", "v8_tiers"),
        ]
        friend = lab.member("friend0")
        assert await done(lab, friend) == {"first_order_tmall": (1, 0, 10)}
        assert await lab.balances(friend) == {"growth": 10, "points": 100}

        assert sorted(tiers_seen) == [
            ("2026-03-31", "amy", "V4"),
            ("2026-03-31", "eve", "V3"),
            ("2026-03-31", "ivan", "V5"),
            ("2026-03-31", "sam", "V3"),
            ("2026-07-01", "eve", "V6"),
        ]
        assert await lab.violations() == []


# ---- (b) task rewards and caps ---------------------------------------------------------------


async def test_b_task_rewards_caps_and_channel_filters() -> None:
    async with open_lab(example()) as lab:
        kim = await lab.join("kim", at=at(1, 1, 9), channel="app")

        async def ev(type: str, when: datetime, **payload: Any) -> list[Any]:
            return steps(await lab.activity(kim, type, at=when, **payload))

        checkin = "task.checkin"
        # Channel filters: the app check-in is not the store check-in, and a check-in recorded
        # from a channel neither task lists completes nothing.
        assert await ev(checkin, at(1, 5, 8), channel="app") == [("app_checkin", True, None)]
        assert await ev(checkin, at(1, 5, 11), channel="pos") == [("store_checkin", True, None)]
        assert await ev(checkin, at(1, 5, 12), channel="tmall") == []
        assert await ev(checkin, at(1, 5, 13), channel="app") == [
            ("app_checkin", False, "ALREADY_DONE_TODAY")
        ]
        # One streak across the app and the mini-program; the 7th day pays the bonus; a missed
        # day restarts it.
        for d in range(6, 13):
            channel = "wechat" if d % 2 else "app"
            assert await ev(checkin, at(1, d, 8), channel=channel) == [("app_checkin", True, None)]
        out = await lab.activity(kim, checkin, at=at(1, 14, 8), channel="app")
        assert out is not None and out.tasks[0].reason.endswith("day 1 of the streak")
        app = [(p, g) for task, p, g in await lab.completions(kim) if task == "app_checkin"]
        assert app == [(1, 2)] * 6 + [(11, 12), (1, 2), (1, 2)]

        # The store check-in: once a day, four a month.
        for d in (15, 16, 17):
            assert await ev(checkin, at(1, d, 11), channel="pos") == [("store_checkin", True, None)]
        assert await ev(checkin, at(1, 18, 11), channel="pos") == [
            ("store_checkin", False, "PERIOD_LIMIT")
        ]
        assert await ev(checkin, at(2, 1, 11), channel="pos") == [("store_checkin", True, None)]

        # Follow once, ever (an unfollow and a follow again pays nothing).
        assert await ev("wechat.followed", at(2, 2, 20), channel="wechat") == [
            ("follow_account", True, None)
        ]
        assert await ev("wechat.followed", at(2, 3, 20), channel="wechat") == [
            ("follow_account", False, "ALREADY_DONE")
        ]
        # Posts: two a day; shares: three a day.
        posts = [await ev("community.posted", at(2, 4, 12, i), channel="app") for i in range(3)]
        assert [p[0][2] for p in posts] == [None, None, "DAILY_LIMIT"]
        assert await ev("community.posted", at(2, 5, 12), channel="app") == [
            ("community_post", True, None)
        ]
        shares = [await ev("content.shared", at(2, 5, 13, i), content_id="p1") for i in range(4)]
        assert [s[0][1:] for s in shares] == [(True, None)] * 3 + [(False, "DAILY_LIMIT")]

        # Profile: paid once every field is set.
        assert await ev("member.profile_updated", at(2, 6, 9), fields=["name", "gender"]) == [
            ("complete_profile", False, None)
        ]
        fields = ["name", "gender", "birthday", "city"]
        assert await ev("member.profile_updated", at(2, 6, 10), fields=fields) == [
            ("complete_profile", True, None)
        ]

        # Multi-category within a *local* month: two categories on 28 Feb 23:30 and one on
        # 1 Mar 00:30 (the same UTC month) do not add up; March completes at its third category
        # and pays once. The same orders show growth for the first order per channel per month.
        def lines(*cats: str) -> list[dict[str, Any]]:
            return [{"sku": c.upper(), "category": c, "amount_fen": 10_000} for c in cats]

        await lab.order(kim, 20_000, at=at(2, 28, 23, 30), lines=lines("shoes", "apparel"))
        await lab.order(kim, 10_000, at=at(3, 1, 0, 30), lines=lines("accessories"))
        assert "multi_category" not in await done(lab, kim)
        await lab.order(kim, 20_000, at=at(3, 10), lines=lines("shoes", "apparel"))
        assert (await done(lab, kim))["multi_category"] == (1, 0, 80)
        await lab.order(
            kim, 10_000, at=at(3, 20), lines=lines("bags"), channel="jd", external_id="JD-1"
        )
        # The channel re-sends the order: nothing is paid again.
        await lab.order(
            kim, 10_000, at=at(3, 20), lines=lines("bags"), channel="jd", external_id="JD-1"
        )
        orders_done = await done(lab, kim)
        assert orders_done["multi_category"] == (1, 0, 80)
        assert orders_done["first_order_tmall"] == (2, 0, 20)  # February and March
        assert orders_done["first_order_jd"] == (1, 0, 10)

        # Invites pay at the friend's first order — not at sign-up — three a month, ten ever;
        # the same friend never pays twice.
        assert await ev("referral.joined", at(4, 1), invitee_id=str(uuid.uuid4())) == []
        friends = [str(uuid.uuid4()) for _ in range(13)]
        months = (4, 4, 4, 4, 5, 5, 5, 6, 6, 6, 6)
        paid = []
        for i, month in enumerate(months):
            got = await ev("referral.first_order", at(month, 10 + i), invitee_id=friends[i])
            paid.append(got[0][1:])
        ok, over = (True, None), (False, "PERIOD_LIMIT")
        assert paid == [ok, ok, ok, over, ok, ok, ok, ok, ok, ok, over]
        assert await ev("referral.first_order", at(7, 1), invitee_id=friends[0]) == [
            ("invite_friend", False, "ALREADY_DONE")
        ]
        assert await ev("referral.first_order", at(7, 2), invitee_id=friends[11]) == [
            ("invite_friend", True, None)
        ]
        assert await ev("referral.first_order", at(7, 3), invitee_id=friends[12]) == [
            ("invite_friend", False, "LIFETIME_LIMIT")
        ]

        # Replaying an activity (the same key) pays once.
        before = await lab.balances(kim)
        first = await lab.activity(kim, "community.posted", at=at(8, 1), key="post:kim:1")
        assert first is not None and steps(first) == [("community_post", True, None)]
        assert await lab.activity(kim, "community.posted", at=at(8, 1), key="post:kim:1") is None
        after = await lab.balances(kim)
        assert after["growth"] - before["growth"] == 5

        expected = {
            "app_checkin": (9, 6 + 11 + 1 + 1, 6 * 2 + 12 + 2 + 2),
            "store_checkin": (5, 0, 50),
            "follow_account": (1, 0, 50),
            "community_post": (4, 0, 20),
            "share_content": (3, 0, 3),
            "complete_profile": (1, 50, 30),
            "first_order_tmall": (2, 0, 20),
            "multi_category": (1, 0, 80),
            "first_order_jd": (1, 0, 10),
            "invite_friend": (10, 2000, 1000),
        }
        assert await done(lab, kim) == expected
        # Growth is task growth only; points are task points plus ¥600 of orders at V2 (×1.0).
        assert after == {
            "growth": sum(g for _, _, g in expected.values()),
            "points": sum(p for _, p, _ in expected.values()) + 600,
        }
        assert await lab.tier(kim) == "V4"
        assert await lab.grants(kim) == [("coupon", "V4-UPGRADE", "v8_tiers")]
        assert await lab.violations() == []


# ---- (c) the points mall: all three exchange modes -------------------------------------------


async def test_c_points_mall_in_all_three_modes() -> None:
    async with open_lab(example()) as lab:
        mia = await lab.join("mia", at=at(3, 1), channel="wechat")
        leo = await lab.join("leo", at=at(3, 1), channel="pos")
        await lab.order(mia, 500_000, at=at(3, 2), channel="tmall")
        await lab.order(leo, 200_000, at=at(3, 2), channel="pos")
        await lab.override(mia, "V5", until=at(12, 1), reason="launch-event VIP", at=at(3, 3))
        assert await lab.balances(mia) == {"growth": 10, "points": 5000}
        now = at(3, 5, 14)

        async with lab.db.tenant_tx(lab.tenant_id) as tx:
            offers = {
                o.reward.code: {x.mode: x for x in o.options}
                for o in await mall.offers(tx, mia, registry=lab.registry, now=now)
            }
            leo_offers = {
                o.reward.code: {x.mode: x for x in o.options}
                for o in await mall.offers(tx, leo, registry=lab.registry, now=now)
            }
        socks = offers["SOCKS"]
        assert (socks["points"].points, socks["points"].cash_fen) == (1200, 0)  # V5 price
        assert (socks["points_cash"].points, socks["points_cash"].cash_fen) == (600, 1990)
        assert (socks["cash"].points, socks["cash"].cash_fen) == (0, 4990)  # V6+ price only
        assert all(x.eligible for x in socks.values())
        assert offers["TOTE"]["cash"].eligible
        assert (leo_offers["SOCKS"]["points"].points, leo_offers["SOCKS"]["points"].eligible) == (
            1500,
            True,
        )
        assert leo_offers["TOTE"]["cash"].reason == "TIER_NOT_ALLOWED"

        async def redeem(reward: str, mode: str, key: str, when: datetime = now) -> Any:
            async with lab.db.tenant_tx(lab.tenant_id) as tx:
                return await mall.redeem(
                    tx,
                    member_id=mia,
                    reward=reward,
                    mode=mode,
                    idem_key=key,
                    registry=lab.registry,
                    now=when,
                )

        async def pay(redemption: Any, ref: str) -> Any:
            async with lab.db.tenant_tx(lab.tenant_id) as tx:
                return await mall.confirm_payment(
                    tx,
                    redemption_id=redemption.id,
                    payment_ref=ref,
                    amount_fen=redemption.cash_fen,
                    now=now + timedelta(minutes=3),
                )

        # All points: completed at once.
        r1 = await redeem("SOCKS", "points", "mia-1")
        assert (r1.status, r1.points, r1.cash_fen) == ("completed", 1200, 0)
        again = await redeem("SOCKS", "points", "mia-1")
        assert again.replayed and again.id == r1.id
        # Points + cash: points held until the payment is confirmed.
        r2 = await redeem("BOTTLE", "points_cash", "mia-2")
        assert (r2.status, r2.points, r2.cash_fen) == ("awaiting_payment", 800, 2990)
        assert (await lab.balances(mia))["points"] == 5000 - 1200 - 800
        assert (await pay(r2, "PAY-0001")).status == "completed"
        # Cash only (a members-only purchase): V4+ at the V5 price.
        r3 = await redeem("TOTE", "cash", "mia-3")
        assert (r3.status, r3.points, r3.cash_fen) == ("awaiting_payment", 0, 2900)
        assert (await pay(r3, "PAY-0002")).status == "completed"
        # A cancelled points + cash exchange gives the held points back.
        r4 = await redeem("SOCKS", "points_cash", "mia-4")
        async with lab.db.tenant_tx(lab.tenant_id) as tx:
            cancelled = await mall.cancel(
                tx, redemption_id=r4.id, reason="changed my mind", now=now + timedelta(minutes=1)
            )
        assert cancelled.status == "cancelled"
        # BOTTLE: one per member.
        with pytest.raises(NotEligible) as refused:
            await redeem("BOTTLE", "points_cash", "mia-5")
        assert refused.value.reason == "MEMBER_LIMIT"

        assert await lab.balances(mia) == {"growth": 10, "points": 5000 - 1200 - 800}
        mall_grants = [g for g in await lab.grants(mia) if g[2] == "mall"]
        assert sorted(mall_grants) == [
            ("gift", "TOTE-V4", "mall"),
            ("physical", "BOTTLE-750", "mall"),
            ("physical", "SOCKS-3P-2026", "mall"),
        ]
        assert await lab.violations() == []


# ---- (d) each rule set, pure -----------------------------------------------------------------


def test_d_tiers_policy() -> None:
    p = V8Tiers().policy({})
    assert [t.code for t in p.tiers] == list(LEVELS)
    assert [t.threshold for t in p.tiers] == [0, 100, 300, 800, 1500, 3000, 6000, 10000]
    assert [t.keep_threshold for t in p.tiers] == [0, 50, 150, 400, 750, 1500, 3000, 5000]
    assert (p.measure, p.period, p.months, p.downgrade) == ("period", "rolling", 12, "one_step")
    assert [t.code for t in p.tiers if t.gifts] == ["V4", "V5", "V6", "V7", "V8"]
    assert [t.multiplier_pct for t in p.tiers] == [100, 100, 110, 120, 130, 150, 180, 200]

    lifetime = V8Tiers().policy({"measure": "lifetime", "months": 6})
    assert lifetime.measure == "lifetime" and {t.keep_threshold for t in lifetime.tiers} == {0}
    named = V8Tiers().policy({"keep": [0, 10, 20, 30, 40, 50, 60, 70], "names": {"V8": "Legend"}})
    assert [t.keep_threshold for t in named.tiers][:3] == [0, 10, 20]
    assert (named.tiers[7].name, named.tiers[6].name) == ("Legend", "V7")
    assert V8Tiers().check(example()["tiers"]["config"]) == []


def test_d_tiers_one_step_downgrade_and_keep() -> None:
    policy = V8Tiers().policy({"months": 6})
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC)
    v6 = TierState("V6", start, start, end)

    def review(growth: int) -> tuple[str | None, list[str]]:
        facts = TierFacts(v6, 10_000, [(datetime(2026, 2, 1, tzinfo=UTC), growth)])
        d = decide(policy, facts, datetime(2026, 7, 2, tzinfo=UTC))
        return d.state.tier, [c.change for c in d.changes]

    assert review(1500) == ("V6", ["kept"])  # keep = 50 % of 3000
    assert review(1499) == ("V5", ["downgrade"])
    assert review(0) == ("V5", ["downgrade"])  # one step, not recalculated to V1


def test_d_earning_points_per_yuan() -> None:
    rs = V8Earning()
    policy = V8Tiers().policy({})
    order = order_paid(12_345, channel="tmall")
    why = f"1 point(s) per yuan on order tmall:{order.payload['external_id']}"
    assert evaluate(rs, snapshot(), order) == [Intent("points", 123, why, "v8_earning")]

    def points(
        event: Any, config: dict[str, Any], tier: str | None = None
    ) -> list[tuple[str, int]]:
        snap = snapshot(tier=tier_view(policy, tier) if tier else None)
        return [(i.account, i.amount) for i in evaluate(rs, snap, event, config)]

    assert points(order_paid(12_345, channel="wechat"), {"channel_rates": {"wechat": 2}}) == [
        ("points", 246)
    ]
    assert points(order, {}, "V6") == [("points", 184)]  # 123 × 1.5
    assert points(order, {"tier_multiplier": False}, "V6") == [("points", 123)]
    assert points(order, {"growth_per_yuan": 1, "growth_cap_per_order": 50}) == [
        ("points", 123),
        ("growth", 50),
    ]
    assert points(order, {"channel_rates": {"tmall": 0}}) == []
    assert points(order_paid(99), {}) == []
    assert points(activity("task.checkin", channel="app"), {}) == []


def test_d_first_order_per_channel_per_month() -> None:
    defs = {t.code: t for t in V8OrderGrowth().tasks({})}
    assert sorted(defs) == [
        "first_order_douyin",
        "first_order_jd",
        "first_order_pos",
        "first_order_tmall",
        "first_order_wechat",
        "first_order_youzan",
    ]
    tmall = defs["first_order_tmall"]
    assert (tmall.kind, tmall.event, tmall.channels, tmall.per_period, tmall.period) == (
        "count",
        "order.paid",
        ("tmall",),
        1,
        "month",
    )
    assert (defs["first_order_pos"].growth, tmall.growth) == (20, 10)

    snap = snapshot()
    first = advance(tmall, {}, snap, order_paid(10_000, channel="tmall", at=at(3, 1)))
    assert first is not None and (first.completed, first.growth) == (True, 10)
    second = advance(tmall, first.state, snap, order_paid(10_000, channel="tmall", at=at(3, 31)))
    assert second is not None and second.refused == "PERIOD_LIMIT"
    april = advance(tmall, first.state, snap, order_paid(10_000, channel="tmall", at=at(4, 1)))
    assert april is not None and april.completed
    assert advance(tmall, {}, snap, order_paid(10_000, channel="jd")) is None


def test_d_task_list() -> None:
    rs = V8Tasks()
    defs = {t.code: t for t in rs.tasks({})}
    assert list(defs) == [
        "store_checkin",
        "app_checkin",
        "follow_account",
        "community_post",
        "share_content",
        "invite_friend",
        "multi_category",
        "complete_profile",
    ]
    assert (defs["store_checkin"].channels, defs["store_checkin"].per_period) == (("pos",), 4)
    assert defs["app_checkin"].channels == ("app", "wechat")
    assert [(b.days, b.repeat) for b in defs["app_checkin"].streak] == [(7, True), (30, False)]
    invite = defs["invite_friend"]
    assert (invite.on, invite.per_period, invite.period, invite.lifetime) == (
        "first_order",
        3,
        "month",
        10,
    )
    cats = defs["multi_category"]
    assert (cats.window, cats.categories, cats.period) == ("period", 3, "month")
    assert defs["follow_account"].event == "wechat.followed"

    custom = rs.tasks({"share_content": {"enabled": False}, "community_post": {"growth": 8}})
    assert "share_content" not in {t.code for t in custom}
    assert next(t for t in custom if t.code == "community_post").growth == 8

    snap = snapshot()
    store, app = defs["store_checkin"], defs["app_checkin"]
    assert advance(store, {}, snap, activity("task.checkin", channel="app")) is None
    for task, channel in ((store, "pos"), (app, "wechat"), (app, "app")):
        step = advance(task, {}, snap, activity("task.checkin", channel=channel))
        assert step is not None and step.completed
    assert advance(app, {}, snap, activity("task.checkin")) is None  # no channel: no task
    assert rs.check(example()["tasks"][0]["config"]) == []


def test_d_member_day() -> None:
    rs = V8MemberDay()
    assert (rs.priority, rs.stacking, V8Birthday.priority, V8Birthday.stacking) == (
        10,
        "exclusive",
        20,
        "exclusive",
    )
    policy = V8Tiers().policy({})

    def bonus(when: datetime, config: dict[str, Any], **kw: Any) -> int:
        tier = kw.pop("tier", None)
        snap = snapshot(tier=tier_view(policy, tier) if tier else None)
        got = evaluate(rs, snap, order_paid(10_050, at=when, **kw), config)
        return sum(i.amount for i in got if isinstance(i, Intent))

    # The 18th in Shanghai: 00:30 local is still the 17th in UTC.
    assert bonus(at(3, 18, 0, 30), {}) == 100
    assert bonus(at(3, 17, 23, 30), {}) == 0
    assert bonus(at(3, 8), {"day": 8, "extra_points_per_yuan": 3}) == 300
    assert bonus(at(3, 18), {"min_level": "V3"}, tier="V2") == 0
    assert bonus(at(3, 18), {"min_level": "V3"}, tier="V3") == 100
    assert bonus(at(3, 18), {"channels": ["pos"]}, channel="tmall") == 0
    assert bonus(at(3, 18), {"channels": ["pos"]}, channel="pos") == 100
    assert evaluate(rs, snapshot(), activity("task.checkin", at=at(3, 18)), {}) == []


def test_d_birthday_gift_by_level() -> None:
    rs = V8Birthday()
    config = example()["benefits"][0]["config"]
    assert rs.check(config) == []
    policy = V8Tiers().policy({})

    def gifts(level: str | None, event: Any, birthday: date | None = date(1990, 8, 15)) -> Any:
        snap = snapshot(
            tier=tier_view(policy, level) if level else None,
            profile={"birthday": birthday},
        )
        return [
            (o.reward if isinstance(o, Grant) else o.amount)
            for o in evaluate(rs, snap, event, config)
        ]

    birthday = activity("member.birthday", at=at(8, 1, 0, 5), year=2026)
    assert gifts("V1", birthday) == ["coupon:BDAY-10"]
    assert gifts(None, birthday) == ["coupon:BDAY-10"]
    assert gifts("V5", birthday) == ["coupon:BDAY-30", 200]  # the V4 row
    assert gifts("V8", birthday) == ["coupon:BDAY-50", "physical:BDAY-CAKE", 500]
    assert gifts("V5", activity("member.birthday", at=at(7, 31, 23))) == []  # not the month
    assert gifts("V5", birthday, birthday=None) == []
    assert gifts("V2", order_paid(10_050, at=at(8, 20))) == [200]  # +2/yuan in August
    assert gifts("V2", order_paid(10_050, at=at(9, 1))) == []


def test_d_plugin_registration() -> None:
    assert [(rs.name, rs.slot) for rs in v8.register_rule_sets()] == [
        ("v8_tiers", "tiers"),
        ("v8_tasks", "tasks"),
        ("v8_earning", "earning"),
        ("v8_order_growth", "tasks"),
        ("v8_member_day", "benefits"),
        ("v8_birthday", "benefits"),
    ]
    assert [e.name for e in v8.register_event_types()] == ["content.shared", "member.birthday"]
    eps = {ep.name: ep.value for ep in entry_points(group="memberhub.rules")}
    assert eps["v8_growth"] == "plugins.v8_growth"


def test_e_example_config_is_valid() -> None:
    # As `memberhub rules apply` would see it: every installed plugin, through entry points.
    assert check_config(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))) == []
    assert check_config(example(), [v8], entry_points=False) == []
    modes = {m for r in example()["mall"]["rewards"] for m in r["options"]}
    assert modes == {"points", "points_cash", "cash"}


# ---- (e) configs that must be refused ----------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation of the example: ``tiers.config.thresholds`` = value (``[n]`` indexes lists)."""

    def apply(doc: dict[str, Any]) -> None:
        node: Any = doc
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value

    return apply


INVALID = [
    (
        _set("tiers.config.thresholds", [0, 100, 100, 800, 1500, 3000, 6000, 10000]),
        ("tiers.config", "thresholds: V3 (100) must be above V2 (100)"),
    ),
    (
        _set("tiers.config.thresholds", [10, 100, 300, 800, 1500, 3000, 6000, 10000]),
        ("tiers.config", "thresholds: V1 is the entry level, its threshold must be 0 (got 10)"),
    ),
    (
        _set("tiers.config.thresholds", [0, 100, 300]),
        ("tiers.config.thresholds", "[0, 100, 300] is too short"),
    ),
    (
        _set("tiers.config.measure", "lifetime"),
        (
            "tiers.config",
            "measure lifetime: lifetime growth never goes down, so levels are never reviewed "
            "— remove keep / keep_pct (or set keep_pct: 0), or use measure: period",
        ),
    ),
    (
        _set("tiers.config.gifts", {"V4": ["coupon V4"]}),
        (
            "tiers.config",
            "gifts.V4: 'coupon V4' is not a reward like 'coupon:V4-UPGRADE' (<kind>:<code>)",
        ),
    ),
    (
        _set("tiers.config.gifts", {"V9": ["coupon:X"]}),
        (
            "tiers.config.gifts",
            "'V9' is not one of ['V1', 'V2', 'V3', 'V4', 'V5', 'V6', 'V7', 'V8']",
        ),
    ),
    (
        _set("tasks.0.config.store_checkin.channels", ["pos", "app"]),
        (
            "tasks[0].config",
            "store_checkin and app_checkin both count check-ins from app: one check-in would "
            "complete both; give them distinct channels",
        ),
    ),
    (
        _set("tasks.0.config.community_post.per_day", 0),
        ("tasks[0].config.community_post.per_day", "0 is less than the minimum of 1"),
    ),
    (
        _set("tasks.0.config.follow_account", {"growth": 0}),
        ("tasks[0].config", "follow_account: rewards nothing (give points or growth)"),
    ),
    (
        _set("tasks.0.config.multi_category.categories", 1),
        ("tasks[0].config.multi_category.categories", "1 is less than the minimum of 2"),
    ),
    (
        _set("tasks.0.config.invite_friend.bonus", 5),
        (
            "tasks[0].config.invite_friend",
            "Additional properties are not allowed ('bonus' was unexpected)",
        ),
    ),
    (
        _set("earning.0.config.growth_cap_per_order", 10),
        (
            "earning[0].config",
            "growth_cap_per_order caps spend growth: set growth_per_yuan above 0 too",
        ),
    ),
    (
        _set("tasks.1.config.first_order_points", {"tmall": 5, "kiosk": 5}),
        (
            "tasks[1].config",
            "first_order_points names channels without first_order_growth: ['kiosk'] "
            "(give them a growth reward too)",
        ),
    ),
    (
        _set("benefits.1.config.day", 31),
        ("benefits[1].config.day", "31 is greater than the maximum of 28"),
    ),
    (
        _set("benefits.0.config", {}),
        ("benefits[0].config", "gives nothing: set gifts, points or month_points_per_yuan"),
    ),
    (
        _set("earning.0.rule", "v8_tasks"),
        ("earning[0].rule", "'v8_tasks' is a 'tasks' rule set, not 'earning'"),
    ),
    (
        _set("mall.rewards.1.options.points.tier_prices", {"gold": {"points": 1}}),
        (
            "mall.rewards[1].options.points.tier_prices.gold",
            "unknown tier 'gold' (tiers: V1, V2, V3, V4, V5, V6, V7, V8)",
        ),
    ),
    (
        _set("mall.rewards.2.options.points_cash", {"points": 800}),
        ("mall.rewards[2].options.points_cash", "points + cash: both points > 0 and cash_fen > 0"),
    ),
]


@pytest.mark.parametrize(("mutate", "problem"), INVALID, ids=[p[1][:40] for _, p in INVALID])
def test_e_invalid_configs_are_refused(mutate: Any, problem: tuple[str, str]) -> None:
    doc = example()
    mutate(doc)
    problems = check_config(doc, [v8], entry_points=False)
    assert problem in problems, problems


def test_e_every_problem_is_reported_at_once() -> None:
    doc = example()
    doc["tiers"]["config"]["keep"] = [0, 50, 150, 900, 750, 1500, 3000, 5000]
    doc["tiers"]["config"].pop("keep_pct")
    doc["tasks"][0]["config"]["app_checkin"]["streak"] = [{"days": 1, "growth": 5}]
    doc["benefits"][0]["config"]["gifts"]["V7"] = ["BDAY-50"]
    problems = check_config(doc, [v8], entry_points=False)
    for expected in [
        ("tiers.config", "keep: V4 keep 900 is above its threshold 800"),
        ("tiers.config", "keep: V5 (750) must not be below V4 (900)"),
        ("tasks[0].config.app_checkin.streak.0.days", "1 is less than the minimum of 2"),
        (
            "benefits[0].config",
            "gifts.V7: 'BDAY-50' is not a reward like 'coupon:V4-UPGRADE' (<kind>:<code>)",
        ),
    ]:
        assert expected in problems, problems

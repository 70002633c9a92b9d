"""Replay: the rule engine's output is a function of the event stream, on SQLite and PostgreSQL.

A year of one brand's events — joins, orders, a partial refund, check-ins (with a streak and a
same-day double tap), community posts over the daily limit, a follow, an upgrade with an entry
gift, a manual override, the scheduled keep-level review, an order in the next year — is applied:

- twice to the same tenant: the second pass changes nothing (ledger transfers by idempotency key,
  balances, lots, tier state and history, task progress and completions, grants, events);
- to a second, fresh tenant: the same history modulo ids (determinism: nothing depends on the
  wall clock, on row order or on ids).

A hypothesis test does the same for random small streams of orders and check-ins at random
increasing times: replaying is a no-op and ``ledger.verify`` stays clean.

The rule sets are defined here (``entry_points=False``) and passed to every call.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from gateway import ledger, members, orders
from gateway.identifiers import tenant_key
from gateway.ids import derived_id
from gateway.members import IdentifierInput
from gateway.rules import config as rule_config
from gateway.rules import engine
from gateway.rules.hookspecs import (
    EventView,
    Grant,
    Intent,
    MemberSnapshot,
    StreakBonus,
    TaskDef,
    TierDef,
    TierPolicy,
    hookimpl,
)
from gateway.rules.manager import RuleRegistry, load_rules
from gateway.rules.tier_jobs import evaluate_due, override_tier
from gateway.storage.db import Database
from gateway.storage.tables import (
    GrowthFact,
    LedgerTransfer,
    MemberEvent,
    MemberGrant,
    MemberTier,
    TaskCompletion,
    TaskProgress,
    TierHistory,
)
from gateway.tenants import TenantInfo
from tests.conftest import TEST_SECRET, new_tenant

CST = ZoneInfo("Asia/Shanghai")
READ_AT = datetime(2027, 12, 1, tzinfo=CST)  # balances as of (before 2026's points expire)

# ---- the brand's rules (a small plugin defined here) -------------------------------------------


class Ladder:
    name, slot, version = "rp_tiers", "tiers", "1"

    def policy(self, config: dict[str, Any]) -> TierPolicy:
        return TierPolicy(
            (
                TierDef("member", "Member", 0),
                TierDef("silver", "Silver", 1000, keep=800, multiplier_pct=120),
                TierDef("gold", "Gold", 3000, keep=2400, multiplier_pct=150, gifts=("coupon:G1",)),
            ),
            measure="period",
            period="calendar_year",
            downgrade="one_step",
        )


class EndOfNextYear:
    name, slot, version = "rp_expiry", "expiry", "1"

    def expires_at(
        self, earned_at: datetime, account: str, timezone: str, config: dict[str, Any]
    ) -> datetime | None:
        local = earned_at.astimezone(ZoneInfo(timezone))
        return datetime(local.year + 2, 1, 1, tzinfo=ZoneInfo(timezone)).astimezone(UTC)


class PerYuan:
    """1 point per yuan × the tier's multiplier, and 1 growth per yuan."""

    name, slot, version = "rp_earn", "earning", "1"

    def evaluate(
        self, snapshot: MemberSnapshot, event: EventView, config: dict[str, Any]
    ) -> list[Intent]:
        if event.type != "order.paid" or event.payload["paid_fen"] < 100:
            return []
        yuan = event.payload["paid_fen"] // 100
        pct = snapshot.tier.multiplier_pct if snapshot.tier else 100
        tier = snapshot.tier.code if snapshot.tier else "-"
        reason = f"order {event.payload['external_id']} at {tier}"
        return [
            Intent("points", yuan * pct // 100, reason, self.name),
            Intent("growth", yuan, reason, self.name),
        ]


class Tasks:
    name, slot, version = "rp_tasks", "tasks", "1"

    def tasks(self, config: dict[str, Any]) -> list[TaskDef]:
        return [
            TaskDef(
                "checkin",
                "Daily check-in",
                "checkin",
                points=5,
                streak=(StreakBonus(3, points=20, growth=10, repeat=True),),
            ),
            TaskDef(
                "post",
                "Post in the community",
                "count",
                points=2,
                growth=1,
                event="community.posted",
                per_day=2,
            ),
            TaskDef(
                "follow", "Follow the official account", "once", points=50, event="wechat.followed"
            ),
        ]


class JoinGift:
    name, slot, version = "rp_join", "benefits", "1"
    priority, stacking = 10, "stack"

    def evaluate(
        self, snapshot: MemberSnapshot, event: EventView, config: dict[str, Any]
    ) -> list[Grant]:
        if event.type != "member.joined":
            return []
        return [Grant("coupon:WELCOME", "welcome coupon", self.name)]


class Plugin:
    @hookimpl
    def register_rule_sets(self) -> list[Any]:
        return [Ladder(), EndOfNextYear(), PerYuan(), Tasks(), JoinGift()]


CONFIG = {
    "tiers": {"rule": "rp_tiers"},
    "expiry": {"rule": "rp_expiry"},
    "earning": ["rp_earn"],
    "tasks": ["rp_tasks"],
    "benefits": ["rp_join"],
}


@pytest.fixture(scope="module")
def registry() -> RuleRegistry:
    return load_rules([Plugin()], entry_points=False)


# ---- the stream ----------------------------------------------------------------------------------


def at(y: int, mo: int, d: int, h: int = 10) -> datetime:
    return datetime(y, mo, d, h, tzinfo=CST)


@dataclass(frozen=True)
class Step:
    kind: str  # join | order | refund | activity | review | override
    at: datetime
    who: str = ""
    ref: str = ""  # order external id / refund id / activity key
    fen: int = 0
    type: str = ""
    tier: str | None = None
    until: datetime | None = None


STREAM: tuple[Step, ...] = (
    Step("join", at(2026, 1, 5), "ann"),
    Step("join", at(2026, 1, 6), "bob"),
    Step("order", at(2026, 2, 1), "ann", "O1", 500_00),
    Step("order", at(2026, 3, 1), "ann", "O2", 700_00),  # 1200 growth → silver
    Step("order", at(2026, 3, 2), "bob", "O3", 200_00),
    Step("refund", at(2026, 3, 5), "ann", "O2", 200_00),  # R-O2: growth back to 1000
    Step("activity", at(2026, 3, 10), "ann", "c1", type="task.checkin"),
    Step("activity", at(2026, 3, 11), "ann", "c2", type="task.checkin"),
    Step("activity", at(2026, 3, 12), "ann", "c3", type="task.checkin"),  # 3-day streak bonus
    Step("activity", at(2026, 3, 12, 20), "ann", "c4", type="task.checkin"),  # same day: refused
    Step("activity", at(2026, 3, 13), "ann", "p1", type="community.posted"),
    Step("activity", at(2026, 3, 13, 11), "ann", "p2", type="community.posted"),
    Step("activity", at(2026, 3, 13, 12), "ann", "p3", type="community.posted"),  # over the limit
    Step("activity", at(2026, 3, 14), "bob", "f1", type="wechat.followed"),
    Step("activity", at(2026, 3, 15), "bob", "f2", type="wechat.followed"),  # once only
    Step("order", at(2026, 6, 1), "ann", "O4", 2500_00),  # → gold, entry gift
    Step("override", at(2026, 7, 1), "bob", tier="gold", until=at(2026, 9, 30)),
    Step("order", at(2026, 8, 1), "bob", "O5", 100_00),  # at gold (override): ×1.5
    Step("review", at(2026, 10, 1)),  # bob's override ran out on 30 September
    Step("review", at(2027, 1, 2)),  # keep-level: ann keeps gold, bob stays member
    Step("order", at(2027, 2, 1), "ann", "O6", 100_00),
    Step("review", at(2028, 1, 2)),  # ann's 2027 growth (100) is short of gold's keep: → silver
)


class Brand:
    """Applies a stream of steps to one tenant; members are known by name."""

    def __init__(self, db: Database, tenant: TenantInfo, registry: RuleRegistry) -> None:
        self.db, self.tenant, self.registry = db, tenant, registry
        self.members: dict[str, uuid.UUID] = {}
        self.orders: dict[str, uuid.UUID] = {}
        self.events: dict[str, str] = {}  # activity event id → its key in the stream

    async def apply(self, steps: Sequence[Step]) -> None:
        for step in steps:
            await getattr(self, f"_{step.kind}")(step)

    async def _join(self, s: Step) -> None:
        async with self.db.tenant_tx(self.tenant.id) as tx:
            res = await members.ingest(
                tx,
                channel="pos",
                identifiers=[IdentifierInput("pos_card", "brand", s.who)],
                key=tenant_key(TEST_SECRET, self.tenant.id),
                now=s.at,
                rules=self.registry,
            )
        self.members[s.who] = res.member_id

    async def _order(self, s: Step) -> None:
        m = self.members[s.who]
        inp = orders.OrderInput(
            "tmall", s.ref, m, "paid", [], s.fen, s.fen, placed_at=s.at, paid_at=s.at
        )
        async with self.db.tenant_tx(self.tenant.id) as tx:
            res = await orders.record_order(tx, inp, registry=self.registry, now=s.at)
        self.orders[s.ref] = res.order_id

    async def _refund(self, s: Step) -> None:
        async with self.db.tenant_tx(self.tenant.id) as tx:
            await orders.refund_order(
                tx,
                order_id=self.orders[s.ref],
                refund_id=f"R-{s.ref}",
                amount_fen=s.fen,
                now=s.at,
                registry=self.registry,
            )

    async def _activity(self, s: Step) -> None:
        event_id = derived_id(self.tenant.id, "replay-test", s.ref)
        self.events[str(event_id)] = s.ref
        async with self.db.tenant_tx(self.tenant.id) as tx:
            await engine.record_and_process(
                tx,
                event_id=event_id,
                member_id=self.members[s.who],
                type=s.type,
                payload={"channel": "app"},
                occurred_at=s.at,
                registry=self.registry,
                now=s.at,
            )

    async def _review(self, s: Step) -> None:
        await evaluate_due(self.db, self.tenant.id, now=s.at, registry=self.registry)

    async def _override(self, s: Step) -> None:
        async with self.db.tenant_tx(self.tenant.id) as tx:
            await override_tier(
                tx,
                self.members[s.who],
                tier=s.tier,
                until=s.until,
                reason="VIP complaint",
                actor="ops@brand",
                now=s.at,
                registry=self.registry,
            )

    # ---- what the stream produced ----

    async def state(self, *, normalise: bool = False) -> dict[str, Any]:
        """Everything the rules wrote for this tenant. ``normalise`` replaces ids with names and
        drops what is an id by nature (for comparing two tenants)."""
        names = {v: k for k, v in self.members.items()}
        order_names = {str(v): k for k, v in self.orders.items()}

        def who(member_id: Any) -> Any:
            return names.get(member_id, member_id) if normalise else member_id

        def norm(column: str, value: Any) -> Any:
            if column == "member_id":
                return who(value)
            if column == "occurrence" and normalise:  # a count task's occurrence: the event id
                return self.events.get(value, value)
            return value

        async def rows(model: Any, *cols: str, key: Sequence[str] = ()) -> list[tuple[Any, ...]]:
            t = model.__table__
            got = await tx.conn.execute(select(t).where(t.c.tenant_id == self.tenant.id))
            out = []
            for r in got:
                m = r._mapping
                keep = (*cols, *(() if normalise else key))
                out.append(tuple(norm(c, m[c]) for c in keep))
            return sorted(out, key=repr)

        async with self.db.tenant_tx(self.tenant.id) as tx:
            views = await ledger.balances_for(tx, list(self.members.values()), now=READ_AT)
            transfers = await rows(
                LedgerTransfer,
                "member_id", "account", "kind", "amount", "counterparty", "reason", "source",
                "remaining", "expires_at", "shortfall", "created_at",
                key=("id", "idem_key", "journal_id", "source_ref", "request_hash"),
            )  # fmt: skip
            if normalise:  # source_ref is an order id: compare it by the order's name
                refs = await tx.conn.execute(
                    select(LedgerTransfer.__table__.c.source_ref).where(  # type: ignore[attr-defined]
                        LedgerTransfer.__table__.c.tenant_id == self.tenant.id  # type: ignore[attr-defined]
                    )
                )
                transfers.append(tuple(sorted(order_names.get(r[0], r[0]) or "" for r in refs)))
            return {
                "balances": sorted((who(m), a, v.available, v.held) for (m, a), v in views.items()),
                "transfers": transfers,
                "verify": await ledger.verify(tx),
                "tier": await rows(
                    MemberTier,
                    "member_id",
                    "tier",
                    "since",
                    "period_start",
                    "period_end",
                    "override",
                    "override_until",
                    "override_reason",
                    "evaluated_at",
                ),
                "history": await rows(
                    TierHistory,
                    "member_id",
                    "change",
                    "from_tier",
                    "to_tier",
                    "natural",
                    "reason",
                    "rule",
                    "growth",
                    "actor",
                    "at",
                    key=("id",),
                ),
                "growth_facts": await rows(
                    GrowthFact, "member_id", "amount", "occurred_at", "source", key=("id",)
                ),
                "progress": await rows(TaskProgress, "member_id", "task", "state"),
                "completions": await rows(
                    TaskCompletion,
                    "member_id",
                    "task",
                    "rule",
                    "occurrence",
                    "points",
                    "growth",
                    "reason",
                    "at",
                    key=("id", "event_id"),
                ),
                "grants": await rows(
                    MemberGrant,
                    "member_id",
                    "kind",
                    "code",
                    "quantity",
                    "rule",
                    "reason",
                    "status",
                    key=("id", "source"),
                ),
                "events": await rows(
                    MemberEvent, "member_id", "type", "occurred_at", key=("id", "payload")
                ),
            }


async def _brand(db: Database, tenant: TenantInfo, registry: RuleRegistry) -> Brand:
    async with db.tenant_tx(tenant.id) as tx:
        await rule_config.save(tx, CONFIG, registry, actor="test")
    return Brand(db, tenant, registry)


# ---- tests ------------------------------------------------------------------------------------


async def test_the_stream_does_what_the_rules_say(
    db: Database, tenant: TenantInfo, registry: RuleRegistry
) -> None:
    brand = await _brand(db, tenant, registry)
    await brand.apply(STREAM)
    state = await brand.state(normalise=True)
    assert state["verify"] == []
    history = [(m, c, f, t) for m, c, f, t, *_ in state["history"]]
    assert sorted(history) == sorted(
        [
            ("ann", "initial", None, "member"),
            ("ann", "upgrade", "member", "silver"),
            ("ann", "upgrade", "silver", "gold"),
            ("ann", "kept", "gold", "gold"),
            ("ann", "downgrade", "gold", "silver"),
            ("bob", "initial", None, "member"),
            ("bob", "override", "member", "gold"),
            ("bob", "override_expired", "gold", "member"),
            ("bob", "kept", "member", "member"),
            ("bob", "kept", "member", "member"),
        ]
    ), history
    completions = [(m, task, p, g) for m, task, _, _, p, g, *_ in state["completions"]]
    assert sorted(completions) == sorted(
        [
            ("ann", "checkin", 5, 0),
            ("ann", "checkin", 5, 0),
            ("ann", "checkin", 25, 10),  # day 3 of the streak
            ("ann", "post", 2, 1),
            ("ann", "post", 2, 1),  # the third post that day is over the limit
            ("bob", "follow", 50, 0),
        ]
    )
    grants = sorted((m, k, c) for m, k, c, *_ in state["grants"])
    assert grants == [
        ("ann", "coupon", "G1"),
        ("ann", "coupon", "WELCOME"),
        ("bob", "coupon", "WELCOME"),
    ]
    growth = {m: v for m, a, v, _ in state["balances"] if a == "growth"}
    # ann: 500 + 700 − 200 refunded + 10 streak + 2 posts + 2500 + 100; bob: 200 + 100.
    assert growth == {"ann": 3612, "bob": 300}
    points = {m: v for m, a, v, _ in state["balances"] if a == "points"}
    # Tiers run after the order's writes: O2 earns at member (×1), O4 at silver (×1.2), O6 in
    # 2027 at gold (×1.5, kept); the refund takes back 200/700 of O2's points.
    assert points["ann"] == 500 + 700 - 200 + (5 + 5 + 25) + (2 + 2) + 3000 + 150
    # bob: O3, the follow, O5 during the override to gold (×1.5).
    assert points["bob"] == 200 + 50 + 150


async def test_replaying_the_stream_changes_nothing(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo, registry: RuleRegistry
) -> None:
    brand = await _brand(db, tenant, registry)
    await brand.apply(STREAM)
    first = await brand.state()
    assert first["verify"] == []
    await brand.apply(STREAM)
    assert await brand.state() == first

    # The same stream in another, fresh tenant: the same history, modulo ids.
    twin = await _brand(db, other_tenant, registry)
    await twin.apply(STREAM)
    assert await twin.state(normalise=True) == await brand.state(normalise=True)


# ---- random streams ------------------------------------------------------------------------------

_events = st.lists(
    st.tuples(
        st.sampled_from(["order", "checkin"]),
        st.sampled_from(["ann", "bob"]),
        st.integers(min_value=1, max_value=60 * 24 * 9),  # minutes after the previous event
        st.integers(min_value=1, max_value=400_000),  # fen (orders)
    ),
    min_size=1,
    max_size=12,
)


def _random_stream(events: list[tuple[str, str, int, int]]) -> list[Step]:
    now = at(2026, 1, 1)
    steps = [Step("join", now, "ann"), Step("join", now, "bob")]
    for i, (kind, who, gap, fen) in enumerate(events):
        now += timedelta(minutes=gap)
        if kind == "order":
            steps.append(Step("order", now, who, f"R{i}", fen))
        else:
            steps.append(Step("activity", now, who, f"k{i}", type="task.checkin"))
    steps.append(Step("review", now + timedelta(days=400)))
    return steps


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=_events)
async def test_random_streams_replay_idempotently(
    db: Database, registry: RuleRegistry, events: list[tuple[str, str, int, int]]
) -> None:
    tenant = await new_tenant(db, "h")
    brand = await _brand(db, tenant, registry)
    stream = _random_stream(events)
    await brand.apply(stream)
    first = await brand.state()
    assert first["verify"] == []
    await brand.apply(stream)
    again = await brand.state()
    assert again == first
    # Sanity against a model: growth = whole yuan of every order + streak bonuses.
    yuan = sum(s.fen // 100 for s in stream if s.kind == "order")
    # completions: (member, task, rule, occurrence, points, growth, …)
    bonus = sum(c[5] for c in first["completions"])
    growth = sum(v for _, a, v, _ in first["balances"] if a == "growth")
    assert growth == yuan + bonus


async def test_a_refund_counts_against_the_tier_period_in_the_rule_lab() -> None:
    """Rule sets passed explicitly (not installed): the refund must still take the growth back
    from the tier period (it once asked the process-wide registry whether the tenant runs
    tiers, found none, and recorded no negative growth fact)."""
    from plugins.testing import RuleLab

    async with RuleLab.open(CONFIG, plugins=[Plugin()], entry_points=False) as lab:
        ann = await lab.join("ann", at=at(2026, 1, 5))
        order = await lab.order(ann, 3000_00, at=at(2026, 2, 1))
        assert await lab.tier(ann, at=at(2026, 2, 2)) == "gold"
        await lab.refund(order, 3000_00, at=at(2026, 2, 10))
        assert (await lab.balances(ann, at=at(2026, 2, 10)))["growth"] == 0
        await lab.review(at=at(2027, 1, 2))
        # No growth left in 2026: gold's keep (2400) is missed, one step down.
        assert await lab.tier(ann, at=at(2027, 1, 2)) == "silver"

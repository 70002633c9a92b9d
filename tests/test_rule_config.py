"""Tenant rule configs (``gateway.rules.config``) on SQLite and PostgreSQL.

- every kind of invalid config is refused with ``ConfigInvalid.problems`` naming the path of each
  problem, and *nothing* changes: the active version, the version table, ``enabled_rules`` and the
  mall's stock counters are exactly what they were;
- a valid save creates version 1 with its actor and comment, re-saving the same document (or the
  same YAML text) is a no-op, a change is version 2, ``history`` lists both, newest first;
- versions are per tenant: B never sees A's versions and numbers its own from 1;
- a stored config whose plugin was uninstalled still runs the rest (``active`` tolerance);
- a dry run of an event under a candidate config reports what it would do and writes nothing.

The rule sets are defined here (``entry_points=False``), so these tests do not depend on the
built-in plugins.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from sqlalchemy import func, select

from gateway import orders
from gateway.errors import ConfigInvalid, NotFound
from gateway.rules import config as rule_config
from gateway.rules import engine
from gateway.rules.hookspecs import (
    EventView,
    Grant,
    Intent,
    MemberSnapshot,
    Quote,
    TaskDef,
    TierDef,
    TierPolicy,
    hookimpl,
)
from gateway.rules.manager import RuleRegistry, load_rules
from gateway.storage.db import Database
from gateway.storage.tables import (
    GrowthFact,
    LedgerTransfer,
    MallStock,
    MemberEvent,
    MemberGrant,
    MemberTier,
    RuleConfigVersion,
    TaskCompletion,
    TaskProgress,
    Tenant,
    TierHistory,
)
from gateway.tenants import TenantInfo
from tests.support import pos_member

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)

# ---- rule sets of a small fictional plugin ------------------------------------------------------

LADDER_SCHEMA = {
    "type": "object",
    "required": ["levels"],
    "additionalProperties": False,
    "properties": {
        "levels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["code", "name", "threshold"],
                "additionalProperties": False,
                "properties": {
                    "code": {"type": "string"},
                    "name": {"type": "string"},
                    "threshold": {"type": "integer", "minimum": 0},
                    "keep": {"type": "integer", "minimum": 0},
                    "multiplier_pct": {"type": "integer", "minimum": 0},
                },
            },
        },
        "period": {"enum": ["calendar_year", "anniversary", "rolling"]},
    },
}


class Ladder:
    name, slot, version = "cfg_ladder", "tiers", "1"
    description = "A tier ladder from config."
    config_schema: ClassVar[dict[str, Any]] = LADDER_SCHEMA

    def policy(self, config: dict[str, Any]) -> TierPolicy:
        tiers = tuple(
            TierDef(
                lv["code"],
                lv["name"],
                lv["threshold"],
                keep=lv.get("keep"),
                multiplier_pct=lv.get("multiplier_pct", 100),
            )
            for lv in config["levels"]
        )
        return TierPolicy(tiers, period=config.get("period", "calendar_year"))


class OtherLadder(Ladder):
    name = "cfg_other_ladder"


class Rate:
    """``rate`` points per whole yuan on order.paid."""

    name, slot, version = "cfg_rate", "earning", "1"
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"rate": {"type": "integer", "minimum": 1, "maximum": 100}},
    }

    def evaluate(
        self, snapshot: MemberSnapshot, event: EventView, config: dict[str, Any]
    ) -> list[Intent]:
        if event.type != "order.paid":
            return []
        yuan = event.payload["paid_fen"] // 100
        if yuan <= 0:
            return []
        rate = config.get("rate", 1)
        return [
            Intent("points", yuan * rate, f"{rate} per yuan", self.name),
            Intent("growth", yuan, "growth per yuan", self.name),
        ]


class Flat(Rate):
    """10 flat points per order (the rule set that gets uninstalled)."""

    name = "cfg_flat"
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    def evaluate(
        self, snapshot: MemberSnapshot, event: EventView, config: dict[str, Any]
    ) -> list[Intent]:
        if event.type != "order.paid":
            return []
        return [Intent("points", 10, "flat 10 per order", self.name)]


class Checkins:
    name, slot, version = "cfg_tasks", "tasks", "1"
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"points": {"type": "integer", "minimum": 0}},
    }

    def tasks(self, config: dict[str, Any]) -> list[TaskDef]:
        return [TaskDef("daily", "Daily check-in", "checkin", points=config.get("points", 1))]


class Welcome:
    name, slot, version = "cfg_welcome", "benefits", "1"
    priority, stacking = 5, "stack"

    def evaluate(
        self, snapshot: MemberSnapshot, event: EventView, config: dict[str, Any]
    ) -> list[Grant]:
        if event.type != "order.paid":
            return []
        return [Grant("coupon:THANKS", "thank-you coupon", self.name)]


class Expiry:
    name, slot, version = "cfg_expiry", "expiry", "1"

    def expires_at(
        self, earned_at: datetime, account: str, timezone: str, config: dict[str, Any]
    ) -> datetime | None:
        return earned_at + timedelta(days=config.get("days", 365))


class Member20:
    name, slot, version = "cfg_exchange", "exchange", "1"

    def quote(self, snapshot: MemberSnapshot, quote: Quote, config: dict[str, Any]) -> Quote:
        return quote


class Plugin:
    def __init__(self, *rule_sets: Any) -> None:
        self.rule_sets = list(rule_sets)

    @hookimpl
    def register_rule_sets(self) -> list[Any]:
        return self.rule_sets


ALL = (Ladder(), OtherLadder(), Rate(), Flat(), Checkins(), Welcome(), Expiry(), Member20())


@pytest.fixture(scope="module")
def registry() -> RuleRegistry:
    return load_rules([Plugin(*ALL)], entry_points=False)


# ---- documents ----------------------------------------------------------------------------------

LEVELS = [
    {"code": "member", "name": "Member", "threshold": 0},
    {"code": "silver", "name": "Silver", "threshold": 1000, "keep": 800, "multiplier_pct": 120},
    {"code": "gold", "name": "Gold", "threshold": 3000, "keep": 2400, "multiplier_pct": 150},
]


def valid_doc() -> dict[str, Any]:
    return {
        "tiers": {"rule": "cfg_ladder", "config": {"levels": copy.deepcopy(LEVELS)}},
        "expiry": {"rule": "cfg_expiry", "config": {"days": 730}},
        "earning": [{"rule": "cfg_rate", "config": {"rate": 2}}],
        "tasks": [{"rule": "cfg_tasks", "config": {"points": 3}}],
        "exchange": ["cfg_exchange"],
        "benefits": [{"rule": "cfg_welcome", "priority": 10}],
        "mall": {
            "payment_minutes": 20,
            "rewards": [
                {
                    "code": "MUG",
                    "title": "Ceramic mug",
                    "kind": "physical",
                    "stock": 100,
                    "valid_from": "2026-01-01T00:00:00+08:00",
                    "options": {
                        "points": {"points": 2000, "tier_prices": {"gold": {"points": 1800}}},
                        "points_cash": {"points": 1000, "cash_fen": 1990},
                    },
                }
            ],
        },
    }


def _mutate(fn: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    doc = valid_doc()
    # A second reward: if anything were half-saved, a new stock counter would show it.
    doc["mall"]["rewards"].append(
        {"code": "CUP", "title": "Cup", "kind": "gift", "options": {"points": {"points": 10}}}
    )
    fn(doc)
    return doc


def _reward(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["mall"]["rewards"][0]


INVALID: list[tuple[str, Callable[[dict[str, Any]], Any], str, str]] = [
    (
        "overlapping tier thresholds",
        lambda d: d["tiers"]["config"]["levels"][2].update(threshold=1000),
        "tiers.config",
        "thresholds overlap: gold (1000) must be above silver (1000)",
    ),
    (
        "negative mall price",
        lambda d: _reward(d)["options"]["points"].update(points=-5),
        "mall.rewards[0].options.points.points",
        "must be a non-negative integer, got -5",
    ),
    (
        "unknown slot",
        lambda d: d.update(bonuses=[{"rule": "cfg_welcome"}]),
        "bonuses",
        "unknown slot 'bonuses'",
    ),
    (
        "two tier rule sets",
        lambda d: d.update(tiers=[d["tiers"], {"rule": "cfg_other_ladder", "config": {}}]),
        "tiers",
        "slot 'tiers' is exclusive: one rule set, got cfg_ladder, cfg_other_ladder",
    ),
    (
        "rule set in the wrong slot",
        lambda d: d["earning"].append({"rule": "cfg_tasks"}),
        "earning[1].rule",
        "'cfg_tasks' is a 'tasks' rule set, not 'earning'",
    ),
    (
        "unknown rule set",
        lambda d: d["earning"].append({"rule": "double_weekends"}),
        "earning[1].rule",
        "no installed rule set 'double_weekends' (earning: cfg_flat, cfg_rate)",
    ),
    (
        "rule set config violates its schema",
        lambda d: d["earning"][0]["config"].update(rate=0),
        "earning[0].config.rate",
        "0 is less than the minimum of 1",
    ),
    (
        "unknown key in a rule set config",
        lambda d: d["earning"][0]["config"].update(rat=3),
        "earning[0].config",
        "Additional properties are not allowed ('rat' was unexpected)",
    ),
    (
        "unknown key in an entry",
        lambda d: d["benefits"][0].update(prio=3),
        "benefits[0]",
        "unknown keys ['prio'] (allowed: rule, config, priority)",
    ),
    (
        "priority not an integer",
        lambda d: d["benefits"][0].update(priority="high"),
        "benefits[0].priority",
        "must be an integer",
    ),
    (
        "unknown reward kind",
        lambda d: _reward(d).update(kind="voucher"),
        "mall.rewards[0].kind",
        "unknown reward kind 'voucher' (known: coupon, gift, physical, points)",
    ),
    (
        "tier price for an unknown tier",
        lambda d: _reward(d)["options"]["points"]["tier_prices"].update(diamond={"points": 1}),
        "mall.rewards[0].options.points.tier_prices.diamond",
        "unknown tier 'diamond' (tiers: member, silver, gold)",
    ),
    (
        "reward restricted to an unknown tier",
        lambda d: _reward(d).update(tiers=["gold", "black"]),
        "mall.rewards[0].tiers",
        "must list known tiers (member, silver, gold)",
    ),
    (
        "validity without a timezone",
        lambda d: _reward(d).update(valid_from="2026-01-01T00:00:00"),
        "mall.rewards[0].valid_from",
        "needs a timezone offset",
    ),
    (
        "duplicate reward code",
        lambda d: d["mall"]["rewards"].append(copy.deepcopy(_reward(d))),
        "mall.rewards[2].code",
        "duplicate reward code 'MUG'",
    ),
    (
        "points-and-cash price without cash",
        lambda d: _reward(d)["options"]["points_cash"].update(cash_fen=0),
        "mall.rewards[0].options.points_cash",
        "points + cash: both points > 0 and cash_fen > 0",
    ),
    (
        "a slot that is not a list",
        lambda d: d.update(earning="cfg_rate"),
        "earning",
        "must be a list of {rule, config} entries",
    ),
    (
        "the same rule set twice",
        lambda d: d["earning"].append({"rule": "cfg_rate"}),
        "earning[1]",
        "rule set 'cfg_rate' is enabled twice",
    ),
]


# ---- helpers ------------------------------------------------------------------------------------


async def _state(db: Database, tenant: TenantInfo) -> dict[str, Any]:
    """Everything a config save may touch, for "nothing changed" assertions."""
    t: Any = Tenant.__table__  # type: ignore[attr-defined]
    rc: Any = RuleConfigVersion.__table__  # type: ignore[attr-defined]
    stock: Any = MallStock.__table__  # type: ignore[attr-defined]
    async with db.tenant_tx(tenant.id) as tx:
        row = (
            await tx.conn.execute(
                select(t.c.rules_version, t.c.enabled_rules).where(t.c.id == tenant.id)
            )
        ).one()
        versions = (
            await tx.conn.execute(
                select(rc.c.version, rc.c.digest)
                .where(rc.c.tenant_id == tenant.id)
                .order_by(rc.c.version)
            )
        ).all()
        counters = (
            await tx.conn.execute(
                select(stock.c.reward, stock.c.taken)
                .where(stock.c.tenant_id == tenant.id)
                .order_by(stock.c.reward)
            )
        ).all()
        cfg, _ = await rule_config.active(tx, load_rules([Plugin(*ALL)], entry_points=False))
    return {
        "rules_version": row.rules_version,
        "enabled_rules": list(row.enabled_rules),
        "versions": [tuple(v) for v in versions],
        "stock": [tuple(c) for c in counters],
        "active_rules": cfg.rule_names,
    }


async def _save(
    db: Database,
    tenant: TenantInfo,
    doc: Any,
    registry: RuleRegistry,
    actor: str = "ops@brand",
    comment: str = "",
) -> tuple[rule_config.ConfigVersion, bool]:
    async with db.tenant_tx(tenant.id) as tx:
        return await rule_config.save(tx, doc, registry, actor=actor, comment=comment, now=T0)


async def _member(db: Database, tenant: TenantInfo, card: str) -> uuid.UUID:
    return await pos_member(db, tenant, card, now=T0, rules=load_rules([], entry_points=False))


def _order(member_id: uuid.UUID, ext: str, fen: int, at: datetime = T0) -> orders.OrderInput:
    return orders.OrderInput(
        "tmall", ext, member_id, "paid", [], fen, fen, placed_at=at, paid_at=at
    )


async def _points(db: Database, tenant: TenantInfo, m: uuid.UUID) -> dict[str, int]:
    from gateway import ledger

    async with db.tenant_tx(tenant.id) as tx:
        views = await ledger.balances_for(tx, [m], now=T0)
    return {a: v.available for (mid, a), v in views.items() if mid == m}


# ---- invalid configs ----------------------------------------------------------------------------


def test_the_valid_document_is_valid(registry: RuleRegistry) -> None:
    parsed = rule_config.validate(rule_config._jsonable(valid_doc()), registry)
    assert parsed.rule_names == [
        "cfg_ladder",
        "cfg_expiry",
        "cfg_rate",
        "cfg_tasks",
        "cfg_exchange",
        "cfg_welcome",
    ]
    assert parsed.tier_policy is not None and [t.code for t in parsed.tier_policy.tiers] == [
        "member",
        "silver",
        "gold",
    ]
    assert parsed.one("benefits") is not None and parsed.one("benefits").priority == 10
    assert parsed.mall is not None and parsed.mall.get("MUG").options["points"].for_tier(
        "gold"
    ) == (1800, 0)
    assert not parsed.bulk_safe
    for _, mutate, _, _ in INVALID:
        assert rule_config.validate(_mutate(lambda d: None), registry)  # the base stays valid
        with pytest.raises(ConfigInvalid):
            rule_config.validate(rule_config._jsonable(_mutate(mutate)), registry)


@pytest.mark.parametrize(
    ("mutate", "path", "message"),
    [pytest.param(m, p, msg, id=case) for case, m, p, msg in INVALID],
)
async def test_invalid_config_is_refused_and_changes_nothing(
    db: Database,
    tenant: TenantInfo,
    registry: RuleRegistry,
    mutate: Callable[[dict[str, Any]], Any],
    path: str,
    message: str,
) -> None:
    await _save(db, tenant, valid_doc(), registry, comment="baseline")
    before = await _state(db, tenant)
    assert before["rules_version"] == 1 and before["stock"] == [("MUG", 0)]
    with pytest.raises(ConfigInvalid) as info:
        await _save(db, tenant, _mutate(mutate), registry)
    problems = info.value.problems
    assert any(p == path and message in m for p, m in problems), problems
    assert info.value.code == "CONFIG_INVALID"
    assert f"{path}: " in info.value.message
    assert await _state(db, tenant) == before


async def test_every_problem_is_reported_at_once(
    db: Database, tenant: TenantInfo, registry: RuleRegistry
) -> None:
    doc = valid_doc()
    doc["tiers"]["config"]["levels"][2]["threshold"] = 500  # below silver
    doc["earning"] = [{"rule": "cfg_rate", "config": {"rate": "two"}}, {"rule": "nope"}]
    doc["mall"]["rewards"][0]["kind"] = "voucher"
    doc["mall"]["rewards"][0]["options"]["points"]["points"] = -1
    doc["surprise"] = True
    before = await _state(db, tenant)
    assert before["rules_version"] is None and before["versions"] == []
    with pytest.raises(ConfigInvalid) as info:
        await _save(db, tenant, doc, registry)
    paths = [p for p, _ in info.value.problems]
    assert paths == [
        "surprise",
        "earning[0].config.rate",
        "earning[1].rule",
        "tiers.config",
        "mall.rewards[0].kind",
        "mall.rewards[0].options.points.points",
        "mall.rewards[0].options.points",
        # Without a valid ladder no tier is known, so tier prices cannot be checked either.
        "mall.rewards[0].options.points.tier_prices.gold",
    ]
    assert "(and 5 more)" in info.value.message
    assert await _state(db, tenant) == before


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("tiers: {rule: cfg_ladder\nearning: [", "line 2", "not valid YAML"),
        ("earning:\n  - rule: cfg_rate\n   config: {}\n", "line 3", "not valid YAML"),
        ("- cfg_rate\n- cfg_tasks\n", "$", "the config must be a mapping of slots"),
    ],
)
async def test_bad_yaml_is_refused_with_its_line(
    db: Database,
    tenant: TenantInfo,
    registry: RuleRegistry,
    text: str,
    path: str,
    message: str,
) -> None:
    await _save(db, tenant, valid_doc(), registry)
    before = await _state(db, tenant)
    with pytest.raises(ConfigInvalid) as info:
        await _save(db, tenant, rule_config.parse_text(text), registry)
    assert [p for p, _ in info.value.problems] == [path]
    assert message in info.value.problems[0][1]
    assert await _state(db, tenant) == before


# ---- versions and audit -------------------------------------------------------------------------

YAML = """\
# the brand's rule config, kept in git
tiers:
  rule: cfg_ladder
  config:
    levels:
      - {code: member, name: Member, threshold: 0}
      - {code: silver, name: Silver, threshold: 1000, keep: 800, multiplier_pct: 120}
earning:
  - rule: cfg_rate
    config: {rate: 2}
mall:
  rewards:
    - code: MUG
      title: Ceramic mug
      kind: physical
      valid_from: 2026-01-01T00:00:00+08:00
      options:
        points: {points: 2000}
"""


async def test_versions_audit_and_idempotent_apply(
    db: Database, tenant: TenantInfo, other_tenant: TenantInfo, registry: RuleRegistry
) -> None:
    v1, created = await _save(
        db, tenant, rule_config.parse_text(YAML), registry, "ann@brand", "first config"
    )
    assert created and v1.version == 1
    assert (v1.created_by, v1.comment, v1.created_at) == ("ann@brand", "first config", T0)
    # YAML timestamps are stored as ISO strings (the document is plain JSON).
    assert v1.document["mall"]["rewards"][0]["valid_from"] == "2026-01-01T00:00:00+08:00"

    # The same file applied again (by someone else, with another comment): nothing new.
    again, created = await _save(
        db, tenant, rule_config.parse_text(YAML), registry, "bob@brand", "re-run"
    )
    assert not created and again.version == 1 and again.created_by == "ann@brand"
    assert (await _state(db, tenant))["versions"] == [(1, v1.digest)]

    doc = rule_config.parse_text(YAML)
    doc["earning"][0]["config"]["rate"] = 3
    v2, created = await _save(db, tenant, doc, registry, "bob@brand", "3 points per yuan")
    assert created and v2.version == 2 and v2.digest != v1.digest
    state = await _state(db, tenant)
    assert state["rules_version"] == 2
    assert state["enabled_rules"] == ["cfg_ladder", "cfg_rate"]
    assert state["stock"] == [("MUG", 0)]

    async with db.tenant_tx(tenant.id) as tx:
        hist = await rule_config.history(tx)
        assert [(h.version, h.created_by, h.comment) for h in hist] == [
            (2, "bob@brand", "3 points per yuan"),
            (1, "ann@brand", "first config"),
        ]
        assert (await rule_config.get_version(tx, 1)).document == v1.document
        cfg, _ = await rule_config.active(tx, registry)
        assert cfg.version == 2 and cfg.one("earning").config == {"rate": 3}

    # Going back to v1's document is a new version (history is append-only), not a rewind.
    v3, created = await _save(db, tenant, rule_config.parse_text(YAML), registry, "ann@brand")
    assert created and v3.version == 3 and v3.digest == v1.digest

    # Tenant isolation: B sees none of A's versions and numbers its own from 1.
    async with db.tenant_tx(other_tenant.id) as tx:
        assert await rule_config.history(tx) == []
        with pytest.raises(NotFound):
            await rule_config.get_version(tx, 1)
        cfg, _ = await rule_config.active(tx, registry)
        assert cfg.version == 0 and cfg.entries == ()
    b1, created = await _save(db, other_tenant, {"earning": ["cfg_rate"]}, registry, "carol@b")
    assert created and b1.version == 1
    async with db.tenant_tx(other_tenant.id) as tx:
        assert [(h.version, h.created_by) for h in await rule_config.history(tx)] == [
            (1, "carol@b")
        ]
    async with db.tenant_tx(tenant.id) as tx:
        assert [h.version for h in await rule_config.history(tx)] == [3, 2, 1]
        assert (await rule_config.get_version(tx, 1)).created_by == "ann@brand"


# ---- tolerance and dry runs ---------------------------------------------------------------------


async def test_a_config_whose_plugin_disappeared_still_runs_the_rest(
    db: Database, tenant: TenantInfo, registry: RuleRegistry
) -> None:
    doc = {
        "earning": [{"rule": "cfg_rate", "config": {"rate": 2}}, {"rule": "cfg_flat"}],
        "benefits": ["cfg_welcome"],
    }
    await _save(db, tenant, doc, registry)
    m = await _member(db, tenant, "C1")
    async with db.tenant_tx(tenant.id) as tx:
        await orders.record_order(tx, _order(m, "O1", 1000), registry=registry, now=T0)
    assert await _points(db, tenant, m) == {"points": 20 + 10, "growth": 10}

    # The deployment drops the plugin that provided cfg_flat; the stored version is unchanged.
    without = load_rules([Plugin(*(rs for rs in ALL if rs.name != "cfg_flat"))], entry_points=False)
    async with db.tenant_tx(tenant.id) as tx:
        cfg, _ = await rule_config.active(tx, without)
        assert cfg.version == 1 and cfg.rule_names == ["cfg_rate", "cfg_welcome"]
        res = await orders.record_order(tx, _order(m, "O2", 1000), registry=without, now=T0)
    assert res.events, "the order was recorded and processed"
    assert await _points(db, tenant, m) == {"points": 30 + 20, "growth": 20}
    async with db.tenant_tx(tenant.id) as tx:
        g = MemberGrant.__table__  # type: ignore[attr-defined]
        grants = await tx.conn.execute(
            select(func.count()).select_from(g).where(g.c.tenant_id == tenant.id)
        )
        assert grants.scalar_one() == 2  # the benefit still ran for both orders
        # Saving the stored document again under the smaller registry is refused, clearly.
        with pytest.raises(ConfigInvalid) as info:
            await rule_config.save(tx, doc, without, actor="ops")
    assert info.value.problems == [
        ("earning[1].rule", "no installed rule set 'cfg_flat' (earning: cfg_rate)")
    ]


_WRITE_TABLES = (
    LedgerTransfer,
    MemberEvent,
    MemberGrant,
    MemberTier,
    TierHistory,
    GrowthFact,
    TaskProgress,
    TaskCompletion,
    RuleConfigVersion,
    MallStock,
)


async def _counts(db: Database, tenant: TenantInfo) -> dict[str, int]:
    out = {}
    async with db.tenant_tx(tenant.id) as tx:
        for model in _WRITE_TABLES:
            table: Any = model.__table__  # type: ignore[attr-defined]
            out[table.name] = (
                await tx.conn.execute(
                    select(func.count()).select_from(table).where(table.c.tenant_id == tenant.id)
                )
            ).scalar_one()
    return out


async def test_dry_run_under_a_candidate_config_writes_nothing(
    db: Database, tenant: TenantInfo, registry: RuleRegistry
) -> None:
    await _save(db, tenant, {"earning": [{"rule": "cfg_rate", "config": {"rate": 1}}]}, registry)
    m = await _member(db, tenant, "C1")
    async with db.tenant_tx(tenant.id) as tx:
        await orders.record_order(tx, _order(m, "O1", 50_000), registry=registry, now=T0)
    before_counts = await _counts(db, tenant)
    before_state = await _state(db, tenant)
    before_points = await _points(db, tenant, m)

    candidate = rule_config.validate(rule_config._jsonable(valid_doc()), registry)
    at = T0 + timedelta(days=1)
    event = EventView(
        uuid.uuid4(),
        "order.paid",
        m,
        at,
        {"order_id": str(uuid.uuid4()), "channel": "tmall", "external_id": "X", "paid_fen": 600_00},
    )
    async with db.tenant_tx(tenant.id) as tx:
        out = await engine.process_event(
            tx, event, registry, now=at, config=candidate, dry_run=True
        )
    assert out.dry_run and all(o.dry_run for o in out.all())
    planned = {(p.rule_set, getattr(p.outcome, "account", None)): p.outcome for p in out.planned}
    # The candidate's rate (2), its benefit, and its ladder: 500 growth this year + 600 → silver.
    assert planned[("cfg_rate", "points")].amount == 1200
    assert planned[("cfg_rate", "growth")].amount == 600
    assert ("cfg_welcome", None) in planned
    assert [c.change for c in out.tier_changes] == ["initial", "upgrade"]
    assert (out.tier_before, out.tier_after) == ("member", "silver")
    assert [f.event.type for f in out.follow_ups] == ["tier.changed", "tier.changed"]
    assert await _counts(db, tenant) == before_counts
    assert await _state(db, tenant) == before_state
    assert await _points(db, tenant, m) == before_points

    # The same through record_and_process(dry_run=True): not even the event is kept.
    async with db.tenant_tx(tenant.id) as tx:
        out = await engine.record_and_process(
            tx,
            event_id=uuid.uuid4(),
            member_id=m,
            type="order.paid",
            payload=dict(event.payload),
            occurred_at=at,
            registry=registry,
            now=at,
            dry_run=True,
        )
    assert out is not None and out.dry_run
    assert [(p.outcome.account, p.outcome.amount) for p in out.planned] == [
        ("points", 600),
        ("growth", 600),
    ]
    assert await _counts(db, tenant) == before_counts


async def test_dry_runs_of_successive_candidate_configs_use_their_own_tasks(
    db: Database, tenant: TenantInfo, registry: RuleRegistry
) -> None:
    """An operator dry-runs a check-in under candidate configs one after another (CLI
    ``rules dry-run --config``, a long-running gateway): each answer must follow its candidate,
    never a cached copy of an earlier candidate's task definitions."""
    m = await _member(db, tenant, "C1")
    got = []
    for points in range(1, 60):
        doc = {"tasks": [{"rule": "cfg_tasks", "config": {"points": points}}]}
        candidate = rule_config.validate(doc, registry)
        event = EventView(uuid.uuid4(), "task.checkin", m, T0, {"channel": "app"})
        async with db.tenant_tx(tenant.id) as tx:
            out = await engine.process_event(
                tx, event, registry, now=T0, config=candidate, dry_run=True
            )
        got.append((points, [s.points for s in out.tasks]))
        del candidate, out
    wrong = [(want, seen) for want, seen in got if seen != [want]]
    assert not wrong, f"(candidate points, dry-run task points): {wrong[:5]}"

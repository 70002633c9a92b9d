"""GraphQL for rule config, tiers, tasks and grants — through the real client, two tenants.

The rule sets are defined here (a tier ladder, points per yuan with the tier multiplier, a
check-in task with a streak bonus and a post task, a join gift) and registered on the test hub
only (``load_rules([plugin], entry_points=False)``), so these tests do not depend on the
first-party plugins' behaviour.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest

from gateway import members, orders
from gateway.rules.hookspecs import (
    Grant,
    Intent,
    StreakBonus,
    TaskDef,
    TierDef,
    TierPolicy,
    hookimpl,
)
from gateway.rules.manager import RuleRegistry, load_rules
from gateway.storage.db import Database
from gateway.tenants import TenantInfo
from tests.graphql_client import Api, StatementCounter, make_api, new_member

# ---- test rule sets ------------------------------------------------------------------------


class Tiers:
    name, slot, version = "gq_tiers", "tiers", "1.0"
    description = "Member / Silver / Gold by growth this calendar year."
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"silver": {"type": "integer", "minimum": 1}},
        "additionalProperties": False,
    }

    def policy(self, config: dict[str, Any]) -> TierPolicy:
        silver = int(config.get("silver", 100))
        return TierPolicy(
            (
                TierDef("member", "Member", 0),
                TierDef("silver", "Silver", silver, keep=80, multiplier_pct=150, discount_bp=9_800),
                TierDef(
                    "gold",
                    "Gold",
                    300,
                    multiplier_pct=200,
                    discount_bp=9_500,
                    gifts=("coupon:GOLD",),
                ),
            ),
            measure="period",
            period="calendar_year",
            downgrade="one_step",
        )


class Earn:
    name, slot, version = "gq_earn", "earning", "1.0"
    description = "Points per yuan paid (times the tier multiplier) and 1 growth per yuan."
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"per_yuan": {"type": "integer", "minimum": 1}},
        "additionalProperties": False,
    }

    def evaluate(self, snap: Any, event: Any, config: dict[str, Any]) -> list[Any]:
        if event.type != "order.paid":
            return []
        yuan = int(event.payload.get("paid_fen", 0)) // 100
        if yuan <= 0:
            return []
        mult = snap.tier.multiplier_pct if snap.tier else 100
        points = yuan * int(config.get("per_yuan", 1)) * mult // 100
        return [
            Intent("points", points, f"{yuan} yuan paid", "per_yuan"),
            Intent("growth", yuan, f"{yuan} yuan paid", "growth_per_yuan"),
        ]


class Tasks:
    name, slot, version = "gq_tasks", "tasks", "1.0"
    description = "Daily check-in (3-day streak bonus) and posting."

    def tasks(self, config: dict[str, Any]) -> list[TaskDef]:
        return [
            TaskDef("checkin", "Daily check-in", "checkin", points=1, streak=(StreakBonus(3, 5),)),
            TaskDef(
                "post",
                "Post in the community",
                "count",
                points=2,
                event="community.posted",
                per_day=2,
            ),
        ]


class JoinGift:
    name, slot, version = "gq_join", "benefits", "1.0"
    description = "A welcome coupon for new members."
    stacking = "stack"
    priority = 5

    def evaluate(self, snap: Any, event: Any, config: dict[str, Any]) -> list[Any]:
        if event.type == "member.joined":
            return [Grant("coupon:WELCOME", "welcome gift", "welcome")]
        return []


class Plugin:
    @hookimpl
    def register_rule_sets(self) -> list[Any]:
        return [Tiers(), Earn(), Tasks(), JoinGift()]


REGISTRY: RuleRegistry = load_rules([Plugin()], entry_points=False)

CONFIG: dict[str, Any] = {
    "tiers": {"rule": "gq_tiers", "config": {"silver": 100}},
    "earning": [{"rule": "gq_earn", "config": {"per_yuan": 1}}],
    "tasks": [{"rule": "gq_tasks"}],
    "benefits": [{"rule": "gq_join"}],
}


@pytest.fixture
async def api(
    db: Database, database_url: str, tenant: TenantInfo, other_tenant: TenantInfo
) -> AsyncIterator[Api]:
    async with make_api(db, database_url, tenant, other_tenant) as client:
        client.hub._rules = REGISTRY  # the hub loads entry points only when none was given
        yield client


# ---- operations ----------------------------------------------------------------------------

APPLY = """
mutation($i: ApplyRuleConfigInput!) { applyRuleConfig(input: $i) { __typename
  ... on ApplyRuleConfigPayload { dryRun saved changed version
    config { version digest createdBy comment active document }
    changes { path change before after }
    simulation { type dryRun recorded intents { ruleSet slot rule account amount grant }
      tier { before after changes { change fromTier toTier } }
      followUps { type intents { grant } } } }
  ... on ConfigInvalidError { problems { path message } }
  ... on Error { code message } } }
"""

REPORT = """ eventId type occurredAt dryRun recorded
  intents { ruleSet slot rule account amount kind grant quantity reason }
  tasks { task completed refused reason points growth }
  tier { before after changes { change fromTier toTier natural reason growth at } }
  followUps { type intents { ruleSet slot rule grant quantity } }
  member { id points growth tier { code } } """

SIMULATE = (
    """mutation($i: SimulateEventInput!) { simulateEvent(input: $i) { __typename
  ... on EventReport {"""
    + REPORT
    + """}
  ... on Error { code message } ... on NotFoundError { field }
  ... on InvalidInputError { field } } }"""
)

RECORD = (
    """mutation($i: RecordActivityInput!) { recordActivity(input: $i) { __typename
  ... on EventReport {"""
    + REPORT
    + """}
  ... on Error { code message } ... on NotFoundError { field }
  ... on InvalidInputError { field } } }"""
)

OVERRIDE = """
mutation($i: OverrideTierInput!) { overrideTier(input: $i) { __typename
  ... on OverrideTierPayload { changes { change fromTier toTier natural reason }
    member { tier { code natural override { tier until reason } } } }
  ... on Error { code message } ... on InvalidInputError { field } } }
"""

TIER = """
query($id: ID!) { member(id: $id) { id growth
  tier { code name rank natural since growth periodGrowth upgradeGrowth
    nextTier { code threshold } growthToNext keepThreshold growthToKeep
    periodStart periodEnd multiplierPct pointsMultiplier discountBp discountRate
    override { tier until reason } evaluatedAt }
  tierHistory(first: 10) { edges { cursor node { change fromTier toTier natural reason ruleSet
    growth actor at } } pageInfo { hasNextPage endCursor } }
  tasks { code title kind ruleSet event points growth
    streakBonuses { days points repeat } limits { perDay perPeriod period lifetime }
    today thisPeriod lifetime streak progress target available blockedReason }
  grants { id kind code reward quantity rule reason source status createdAt } } }
"""


async def apply(api: Api, key: str, document: Any, **extra: Any) -> dict[str, Any]:
    body = await api.gql(key, APPLY, {"i": {"document": document, **extra}})
    return body["data"]["applyRuleConfig"]


async def configure(api: Api, key: str = "admin", document: Any = None) -> dict[str, Any]:
    res = await apply(api, key, document or CONFIG, comment="test rules")
    assert res["__typename"] == "ApplyRuleConfigPayload", res
    return res


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def order_payload(paid_fen: int) -> dict[str, Any]:
    return {
        "paid_fen": paid_fen,
        "total_fen": paid_fen,
        "channel": "tmall",
        "lines": [{"sku": "LJ", "category": "tea", "quantity": 1, "amount_fen": paid_fen}],
    }


async def pay_order(api: Api, member_id: str, external_id: str, paid_fen: int) -> None:
    """A paid order through ``recordOrder`` (the real earning path), paid a minute ago."""
    at = (now() - timedelta(minutes=1)).isoformat()
    body = await api.gql(
        "admin",
        """mutation($i: RecordOrderInput!) { recordOrder(input: $i) { __typename
        ... on Error { code message } } }""",
        {
            "i": {
                "channel": "tmall",
                "externalId": external_id,
                "memberId": member_id,
                "status": "PAID",
                "totalFen": paid_fen,
                "paidFen": paid_fen,
                "placedAt": at,
                "paidAt": at,
                "lines": [
                    {
                        "sku": "LJ",
                        "name": "Longjing",
                        "category": "tea",
                        "quantity": 1,
                        "unitPriceFen": paid_fen,
                        "amountFen": paid_fen,
                    }
                ],
            }
        },
    )
    assert body["data"]["recordOrder"]["__typename"] == "RecordOrderPayload", body


async def member_view(api: Api, member_id: str, key: str = "read") -> dict[str, Any]:
    body = await api.gql(key, TIER, {"id": member_id})
    return body["data"]["member"]  # type: ignore[no-any-return]


# ---- config ----------------------------------------------------------------------------------


async def test_apply_rule_config_validates_versions_and_audits(api: Api) -> None:
    # A dry run validates and reports, and saves nothing.
    dry = await apply(api, "admin", CONFIG, dryRun=True, comment="try")
    assert dry["__typename"] == "ApplyRuleConfigPayload", dry
    assert (dry["dryRun"], dry["saved"], dry["changed"], dry["version"]) == (True, False, True, 1)
    assert dry["config"] is None
    assert {c["path"] for c in dry["changes"]} == {"tiers", "earning", "tasks", "benefits"}
    assert all(c["change"] == "ADDED" for c in dry["changes"])
    none = await api.gql("read", "{ ruleConfig { version } ruleConfigHistory { version } }")
    assert none["data"] == {"ruleConfig": None, "ruleConfigHistory": []}

    # Every problem, with its path; nothing saved.
    bad = copy.deepcopy(CONFIG)
    bad["earning"][0]["config"]["per_yuan"] = 0
    bad["tasks"] = [{"rule": "no_such_rules"}]
    bad["bogus"] = {}
    res = await apply(api, "admin", bad)
    assert res["__typename"] == "ConfigInvalidError", res
    assert res["code"] == "CONFIG_INVALID"
    paths = [p["path"] for p in res["problems"]]
    assert "bogus" in paths and "earning[0].config.per_yuan" in paths
    assert "tasks[0].rule" in paths, paths
    not_object = await apply(api, "admin", ["tiers"])
    assert not_object["__typename"] == "InvalidInputError", not_object

    # Only admin keys.
    for key in ("read", "pos", "connector"):
        denied = await apply(api, key, CONFIG)
        assert denied["__typename"] == "PermissionDeniedError", (key, denied)

    saved = await configure(api)
    assert (saved["saved"], saved["changed"], saved["version"]) == (True, True, 1)
    assert saved["config"]["createdBy"].startswith("api-key:")
    assert saved["config"]["comment"] == "test rules" and saved["config"]["active"] is True

    # The same document again is a no-op.
    again = await configure(api)
    assert (again["saved"], again["changed"], again["version"]) == (False, False, 1)
    assert again["changes"] == []

    # A change, dry-run: the path-level diff and the version it would get.
    changed = copy.deepcopy(CONFIG)
    changed["earning"][0]["config"]["per_yuan"] = 2
    preview = await apply(api, "admin", changed, dryRun=True)
    assert preview["version"] == 2 and preview["saved"] is False and preview["config"] is None
    assert preview["changes"] == [
        {"path": "earning[0].config.per_yuan", "change": "CHANGED", "before": 1, "after": 2}
    ]

    q = await api.gql(
        "read",
        """{ ruleConfig { version document createdBy active }
        ruleConfigHistory(first: 5) { version comment active }
        ruleSets { name slot version description configSchema exclusive priority stacking
          enabled }
        tiers { code name rank threshold keepThreshold multiplierPct pointsMultiplier
          discountBp discountRate gifts }
        tierPolicy { ruleSet measure period months downgrade tiers { code } }
        eventTypes { name recordable }
        rewardKinds { name fulfilment } }""",
    )
    d = q["data"]
    assert d["ruleConfig"]["version"] == 1 and d["ruleConfig"]["document"] == CONFIG
    assert [v["version"] for v in d["ruleConfigHistory"]] == [1]
    sets = {s["name"]: s for s in d["ruleSets"]}
    assert set(sets) == {"gq_tiers", "gq_earn", "gq_tasks", "gq_join"}
    assert sets["gq_tiers"]["slot"] == "TIERS" and sets["gq_tiers"]["exclusive"] is True
    assert sets["gq_earn"]["configSchema"]["properties"]["per_yuan"]["minimum"] == 1
    assert sets["gq_join"]["priority"] == 5 and sets["gq_join"]["stacking"] == "stack"
    assert all(s["enabled"] for s in sets.values())
    assert [t["code"] for t in d["tiers"]] == ["member", "silver", "gold"]
    gold = d["tiers"][2]
    assert gold["pointsMultiplier"] == 2.0 and gold["discountRate"] == 0.95
    assert gold["gifts"] == ["coupon:GOLD"] and d["tiers"][1]["keepThreshold"] == 80
    assert d["tierPolicy"] == {
        "ruleSet": "gq_tiers",
        "measure": "PERIOD",
        "period": "CALENDAR_YEAR",
        "months": 12,
        "downgrade": "ONE_STEP",
        "tiers": [{"code": "member"}, {"code": "silver"}, {"code": "gold"}],
    }
    types = {e["name"]: e["recordable"] for e in d["eventTypes"]}
    assert types["task.checkin"] is True and types["order.paid"] is False
    assert {"coupon", "gift", "physical"} <= {k["name"] for k in d["rewardKinds"]}

    # Tenant B sees none of it and its own apply does not touch A's.
    b = await api.gql(
        "b_admin", "{ ruleConfig { version } tiers { code } ruleSets { name enabled } }"
    )
    assert b["data"]["ruleConfig"] is None and b["data"]["tiers"] == []
    assert not any(s["enabled"] for s in b["data"]["ruleSets"])
    b_saved = await apply(api, "b_admin", {"earning": [{"rule": "gq_earn"}]})
    assert b_saved["version"] == 1 and b_saved["saved"] is True
    a_again = await api.gql("read", "{ ruleConfig { version document } }")
    assert a_again["data"]["ruleConfig"]["document"] == CONFIG


async def test_apply_with_idempotency_key_replays(api: Api) -> None:
    first = await apply(api, "admin", CONFIG, idempotencyKey="cfg-1")
    again = await apply(api, "admin", CONFIG, idempotencyKey="cfg-1")
    assert first == again and first["saved"] is True
    other = await apply(api, "admin", {"earning": [{"rule": "gq_earn"}]}, idempotencyKey="cfg-1")
    assert other["__typename"] == "IdempotencyKeyReusedError"
    # A dry run claims no key: the same key stays usable for the real request.
    changed = {**CONFIG, "earning": [{"rule": "gq_earn", "config": {"per_yuan": 3}}]}
    dry = await apply(api, "admin", changed, dryRun=True, idempotencyKey="cfg-2")
    real = await apply(api, "admin", changed, idempotencyKey="cfg-2")
    assert dry["saved"] is False and real["saved"] is True and real["version"] == 2


# ---- simulation ------------------------------------------------------------------------------


async def test_simulate_an_order_shows_the_upgrade_and_writes_nothing(api: Api) -> None:
    await configure(api)
    m = await new_member(api)
    before = await api.counts(api.a)
    view0 = await member_view(api, m)
    assert view0["tier"]["code"] == "member" and view0["growth"] == 0

    res = (
        await api.gql(
            "pos",
            SIMULATE,
            {"i": {"memberId": m, "type": "order.paid", "payload": order_payload(35_000)}},
        )
    )["data"]["simulateEvent"]
    assert res["__typename"] == "EventReport", res
    assert res["dryRun"] is True and res["recorded"] is False and res["type"] == "order.paid"
    credits = {(i["account"], i["amount"]) for i in res["intents"]}
    assert credits == {("points", 350), ("growth", 350)}
    assert {i["ruleSet"] for i in res["intents"]} == {"gq_earn"}
    assert res["intents"][0]["slot"] == "EARNING"
    assert res["tier"]["before"] == "member" and res["tier"]["after"] == "gold"
    up = res["tier"]["changes"][-1]
    assert (up["change"], up["fromTier"], up["toTier"]) == ("UPGRADE", "member", "gold")
    assert up["growth"] == 350 and "350" in up["reason"]
    gifts = [i["grant"] for f in res["followUps"] for i in f["intents"]]
    assert res["followUps"][0]["type"] == "tier.changed" and gifts == ["coupon:GOLD"]
    # The member as stored: unchanged.
    assert res["member"]["points"] == 0 and res["member"]["tier"]["code"] == "member"
    assert await api.counts(api.a) == before

    # The same order under a *candidate* config (2 points per yuan), dry-run: nothing saved.
    candidate = copy.deepcopy(CONFIG)
    candidate["earning"][0]["config"]["per_yuan"] = 2
    sim = await apply(
        api,
        "admin",
        candidate,
        dryRun=True,
        simulate={"memberId": m, "event": {"type": "order.paid", "payload": order_payload(5_000)}},
    )
    assert sim["__typename"] == "ApplyRuleConfigPayload", sim
    points = [i["amount"] for i in sim["simulation"]["intents"] if i["account"] == "points"]
    assert points == [100] and sim["simulation"]["dryRun"] is True
    assert sim["simulation"]["tier"] == {"before": "member", "after": "member", "changes": []}
    active = await api.gql("read", "{ ruleConfig { version } }")
    assert active["data"]["ruleConfig"]["version"] == 1
    assert await api.counts(api.a) == before

    # Only admin and pos keys; unknown types and members are typed errors.
    denied = await api.gql("read", SIMULATE, {"i": {"memberId": m, "type": "order.paid"}})
    assert denied["data"]["simulateEvent"]["__typename"] == "PermissionDeniedError"
    unknown = await api.gql("pos", SIMULATE, {"i": {"memberId": m, "type": "order.payed"}})
    assert unknown["data"]["simulateEvent"]["__typename"] == "InvalidInputError"
    assert unknown["data"]["simulateEvent"]["field"] == "type"
    bad_payload = await api.gql(
        "pos", SIMULATE, {"i": {"memberId": m, "type": "order.paid", "payload": [1]}}
    )
    assert bad_payload["data"]["simulateEvent"]["field"] == "payload"


# ---- activity and tasks ----------------------------------------------------------------------


async def record(api: Api, key: str, member_id: str, **inp: Any) -> dict[str, Any]:
    body = await api.gql(key, RECORD, {"i": {"memberId": member_id, **inp}})
    return body["data"]["recordActivity"]  # type: ignore[no-any-return]


async def test_record_check_ins_builds_a_streak_and_task_progress(api: Api) -> None:
    await configure(api)
    m = await new_member(api)
    t = now()
    days = [t - timedelta(days=2), t - timedelta(days=1), t]
    paid = []
    for i, at in enumerate(days):
        res = await record(
            api,
            "pos",
            m,
            type="task.checkin",
            occurredAt=at.isoformat(),
            payload={"channel": "miniapp"},
            idempotencyKey=f"ci-{i}",
        )
        assert res["__typename"] == "EventReport", res
        assert res["recorded"] is True and res["dryRun"] is False
        step = res["tasks"][0]
        assert step["task"] == "checkin" and step["completed"] is True
        paid.append(step["points"])
    assert paid == [1, 1, 6]  # the third consecutive day pays the streak bonus
    assert "day 3" in res["tasks"][0]["reason"]
    assert res["member"]["points"] == 8

    # A retry with the same key is the original answer and pays nothing twice.
    retry = await record(
        api,
        "pos",
        m,
        type="task.checkin",
        occurredAt=days[2].isoformat(),
        payload={"channel": "miniapp"},
        idempotencyKey="ci-2",
    )
    assert retry["eventId"] == res["eventId"] and retry["member"]["points"] == 8
    # Another check-in the same day (new key) is refused, with the reason.
    twice = await record(api, "pos", m, type="task.checkin", idempotencyKey="ci-3")
    assert twice["tasks"][0]["completed"] is False
    assert twice["tasks"][0]["refused"] == "ALREADY_DONE_TODAY"

    # Posting: 2 points, twice a day; a dry run reports without writing.
    dry = await record(api, "connector", m, type="community.posted", dryRun=True)
    assert dry["dryRun"] is True and dry["recorded"] is False
    assert dry["tasks"][0]["completed"] is True and dry["member"]["points"] == 8
    for i in range(3):
        post = await record(api, "connector", m, type="community.posted", idempotencyKey=f"p{i}")
    assert post["tasks"][0]["refused"] == "DAILY_LIMIT" and post["member"]["points"] == 12

    view = await member_view(api, m)
    tasks = {x["code"]: x for x in view["tasks"]}
    ci = tasks["checkin"]
    assert ci["kind"] == "CHECKIN" and ci["event"] == "task.checkin" and ci["ruleSet"] == "gq_tasks"
    assert ci["streakBonuses"] == [{"days": 3, "points": 5, "repeat": False}]
    assert (ci["streak"], ci["today"], ci["lifetime"]) == (3, 1, 3)
    assert (ci["progress"], ci["target"]) == (3, 3)
    assert ci["available"] is False and ci["blockedReason"] == "ALREADY_DONE_TODAY"
    assert ci["limits"]["perDay"] == 1
    post_task = tasks["post"]
    assert post_task["today"] == 2 and post_task["blockedReason"] == "DAILY_LIMIT"
    assert post_task["limits"] == {
        "perDay": 2,
        "perPeriod": None,
        "period": "month",
        "lifetime": None,
    }

    # Refused inputs.
    unknown = await record(api, "pos", m, type="task.chekin")
    assert unknown["__typename"] == "InvalidInputError" and unknown["field"] == "type"
    fake_order = await record(api, "pos", m, type="order.paid", payload=order_payload(100_000))
    assert fake_order["__typename"] == "InvalidInputError" and fake_order["field"] == "type"
    future = await record(
        api, "pos", m, type="task.checkin", occurredAt=(t + timedelta(days=1)).isoformat()
    )
    assert future["__typename"] == "InvalidInputError" and future["field"] == "occurredAt"
    denied = await record(api, "read", m, type="task.checkin")
    assert denied["__typename"] == "PermissionDeniedError"
    # Referrals are the brand backend's word: a POS or storefront key cannot invent invitees.
    invitee = {"invitee_id": str(uuid.uuid4()), "channel": "app"}
    farmed = await record(api, "pos", m, type="referral.joined", payload=invitee)
    assert farmed["__typename"] == "PermissionDeniedError"
    assert "admin or connector" in farmed["message"]
    backend = await record(api, "connector", m, type="referral.joined", payload=invitee)
    assert backend["__typename"] == "EventReport" and backend["recorded"] is True


# ---- tiers -----------------------------------------------------------------------------------


def _next_new_year(at: datetime) -> datetime:
    tz = ZoneInfo("Asia/Shanghai")
    local = at.astimezone(tz)
    return datetime(local.year + 1, 1, 1, tzinfo=tz).astimezone(UTC)


async def test_tier_status_progress_history_and_grants(api: Api) -> None:
    await configure(api)
    m = await new_member(api)
    await pay_order(api, m, "T-1", 15_000)  # 150 growth: silver (100), gold at 300
    v = await member_view(api, m)
    tier = v["tier"]
    assert (tier["code"], tier["name"], tier["rank"], tier["natural"]) == (
        "silver",
        "Silver",
        1,
        "silver",
    )
    assert tier["growth"] == 150 and tier["periodGrowth"] == 150 and tier["upgradeGrowth"] == 150
    assert tier["nextTier"] == {"code": "gold", "threshold": 300} and tier["growthToNext"] == 150
    assert tier["keepThreshold"] == 80 and tier["growthToKeep"] == 0
    assert tier["multiplierPct"] == 150 and tier["pointsMultiplier"] == 1.5
    assert tier["discountBp"] == 9_800 and tier["discountRate"] == 0.98
    assert tier["override"] is None and tier["evaluatedAt"]
    end = datetime.fromisoformat(tier["periodEnd"])
    assert end == _next_new_year(now())
    assert v["growth"] == 150

    history = v["tierHistory"]
    changes = [e["node"]["change"] for e in history["edges"]]
    assert changes == ["UPGRADE", "INITIAL"]
    assert history["edges"][0]["node"]["ruleSet"] == "gq_tiers"
    assert history["edges"][0]["node"]["actor"] is None
    page = await api.gql(
        "read",
        """query($id: ID!, $after: String) { member(id: $id) {
        tierHistory(first: 1, after: $after) { edges { node { change } }
        pageInfo { hasNextPage endCursor } } } }""",
        {"id": m, "after": None},
    )
    first = page["data"]["member"]["tierHistory"]
    assert [e["node"]["change"] for e in first["edges"]] == ["UPGRADE"]
    assert first["pageInfo"]["hasNextPage"] is True
    page2 = await api.gql(
        "read",
        """query($id: ID!, $after: String) { member(id: $id) {
        tierHistory(first: 1, after: $after) { edges { node { change } }
        pageInfo { hasNextPage } } } }""",
        {"id": m, "after": first["pageInfo"]["endCursor"]},
    )
    second = page2["data"]["member"]["tierHistory"]
    assert [e["node"]["change"] for e in second["edges"]] == ["INITIAL"]
    assert second["pageInfo"]["hasNextPage"] is False

    # Gold: the tier gift is granted; grants list newest first.
    await pay_order(api, m, "T-2", 20_000)
    v = await member_view(api, m)
    assert v["tier"]["code"] == "gold" and v["tier"]["nextTier"] is None
    assert v["tier"]["growthToNext"] is None and v["tier"]["keepThreshold"] == 300
    rewards = [g["reward"] for g in v["grants"]]
    assert rewards == ["coupon:GOLD", "coupon:WELCOME"]
    welcome = v["grants"][1]
    # No WELCOME template in this tenant: the coupon system refuses, the grant waits for an
    # operator (gateway.rules.fulfil).
    assert welcome["status"] == "UNFULFILLED" and welcome["source"].startswith("event:")
    assert (welcome["kind"], welcome["code"], welcome["quantity"]) == ("coupon", "WELCOME", 1)
    filtered = await api.gql(
        "read",
        """query($id: ID!) { member(id: $id) { a: grants(first: 1) { reward }
        b: grants(status: FULFILLED) { reward } } }""",
        {"id": m},
    )
    assert filtered["data"]["member"] == {"a": [{"reward": "coupon:GOLD"}], "b": []}


async def test_tier_is_null_without_a_tier_rule_set(api: Api) -> None:
    await configure(api, document={"earning": [{"rule": "gq_earn"}]})
    m = await new_member(api)
    v = await member_view(api, m)
    assert v["tier"] is None and v["tasks"] == [] and v["grants"] == []
    assert v["tierHistory"]["edges"] == []
    q = await api.gql("read", "{ tiers { code } tierPolicy { ruleSet } }")
    assert q["data"] == {"tiers": [], "tierPolicy": None}


async def test_override_tier(api: Api) -> None:
    await configure(api)
    m = await new_member(api)
    await pay_order(api, m, "O-1", 12_000)
    until = (now() + timedelta(days=30)).isoformat()
    res = (
        await api.gql(
            "admin",
            OVERRIDE,
            {"i": {"memberId": m, "tier": "gold", "until": until, "reason": "VIP gesture"}},
        )
    )["data"]["overrideTier"]
    assert res["__typename"] == "OverrideTierPayload", res
    assert res["changes"][-1]["change"] == "OVERRIDE" and res["changes"][-1]["toTier"] == "gold"
    t = res["member"]["tier"]
    assert t["code"] == "gold" and t["natural"] == "silver"
    assert t["override"]["tier"] == "gold" and t["override"]["reason"] == "VIP gesture"
    assert datetime.fromisoformat(t["override"]["until"]) == datetime.fromisoformat(until)
    v = await member_view(api, m)
    assert v["tier"]["multiplierPct"] == 200 and v["tier"]["nextTier"]["code"] == "gold"
    newest = v["tierHistory"]["edges"][0]["node"]
    assert newest["change"] == "OVERRIDE" and newest["actor"].startswith("api-key:")

    async def override(key: str, **inp: Any) -> dict[str, Any]:
        body = await api.gql(key, OVERRIDE, {"i": {"memberId": m, "reason": "x", **inp}})
        return body["data"]["overrideTier"]  # type: ignore[no-any-return]

    bad_tier = await override("admin", tier="diamond", until=until)
    assert bad_tier["__typename"] == "InvalidInputError" and bad_tier["field"] == "tier"
    past = await override("admin", tier="gold", until=(now() - timedelta(days=1)).isoformat())
    assert past["__typename"] == "InvalidInputError" and past["field"] == "until"
    no_end = await override("admin", tier="gold")
    assert no_end["__typename"] == "InvalidInputError" and no_end["field"] == "until"
    denied = await override("pos", tier="gold", until=until)
    assert denied["__typename"] == "PermissionDeniedError"

    cleared = await override("admin", tier=None, reason="gesture withdrawn")
    assert cleared["__typename"] == "OverrideTierPayload", cleared
    assert cleared["changes"][-1]["change"] == "OVERRIDE_EXPIRED"
    assert cleared["member"]["tier"]["code"] == "silver"
    assert cleared["member"]["tier"]["override"] is None


# ---- tenant isolation ------------------------------------------------------------------------


async def test_tenant_b_cannot_see_or_act_on_tenant_a(api: Api) -> None:
    await configure(api)
    await configure(api, "b_admin")
    m = await new_member(api)
    await pay_order(api, m, "I-1", 15_000)

    seen = await api.gql("b_admin", "query($id: ID!) { member(id: $id) { id } }", {"id": m})
    assert seen["data"]["member"] is None
    sim = await api.gql("b_admin", SIMULATE, {"i": {"memberId": m, "type": "order.paid"}})
    assert sim["data"]["simulateEvent"]["__typename"] == "NotFoundError"
    assert sim["data"]["simulateEvent"]["field"] == "memberId"
    rec = await record(api, "b_admin", m, type="task.checkin")
    assert rec["__typename"] == "NotFoundError"
    until = (now() + timedelta(days=3)).isoformat()
    ov = await api.gql(
        "b_admin", OVERRIDE, {"i": {"memberId": m, "tier": "gold", "until": until, "reason": "x"}}
    )
    assert ov["data"]["overrideTier"]["__typename"] == "NotFoundError"
    cfg_sim = await apply(
        api,
        "b_admin",
        CONFIG,
        dryRun=True,
        simulate={"memberId": m, "event": {"type": "order.paid"}},
    )
    assert cfg_sim["__typename"] == "NotFoundError", cfg_sim
    # A's member is untouched.
    v = await member_view(api, m)
    assert v["tier"]["code"] == "silver" and v["tier"]["override"] is None
    assert [e["node"]["change"] for e in v["tierHistory"]["edges"]] == ["UPGRADE", "INITIAL"]


# ---- statement budget ------------------------------------------------------------------------


async def _seed(api: Api, n: int) -> None:
    key = api.hub.tenant_key(api.a.id)
    at = now() - timedelta(minutes=5)
    async with api.hub.db.tenant_tx(api.a.id) as tx:
        for i in range(n):
            res = await members.ingest(
                tx,
                channel="wechat",
                identifiers=[members.IdentifierInput("phone", "*", f"1360013{i:04d}")],
                key=key,
                rules=api.hub.rules,
            )
            fen = 5_000 + 1_000 * (i % 30)
            await orders.record_order(
                tx,
                orders.OrderInput(
                    channel="pos",
                    external_id=f"S{i}",
                    member_id=res.member_id,
                    status="paid",
                    lines=[orders.OrderLineInput("T", "Tea", "tea", 1, fen, fen)],
                    total_fen=fen,
                    paid_fen=fen,
                    placed_at=at,
                    paid_at=at,
                ),
                registry=api.hub.rules,
            )


PAGE = """query($n: Int!) { members(first: $n) { edges { node { id points growth
  tier { code natural growth periodGrowth nextTier { code } growthToNext growthToKeep
    periodEnd override { tier } }
  tasks { code streak available }
  grants(first: 5) { reward status } } } } }"""
PAGE_PLAIN = """query($n: Int!) { members(first: $n) { edges { node { id points growth
  } } } }"""


async def test_members_page_with_tiers_costs_a_constant_number_of_statements(api: Api) -> None:
    await configure(api)
    await _seed(api, 100)
    await api.gql("read", PAGE, {"n": 1})  # authenticate once, warm the parsed-config cache
    counts = {}
    for n in (10, 100):
        with StatementCounter(api.hub.db) as counter:
            body = await api.gql("read", PAGE, {"n": n})
        edges = body["data"]["members"]["edges"]
        assert len(edges) == n
        counts[n] = len(counter.queries)
    with StatementCounter(api.hub.db) as plain:
        await api.gql("read", PAGE_PLAIN, {"n": 100})
    assert counts[10] == counts[100], counts
    # page + balances, then: config row, tier rows, growth facts, task progress, grants.
    assert counts[100] - len(plain.queries) <= 5, (counts, plain.queries)
    tiers = {e["node"]["tier"]["code"] for e in edges}
    assert tiers == {"member", "silver", "gold"}, tiers  # 50 to 340 yuan each
    node = edges[0]["node"]
    assert node["grants"] == [{"reward": "coupon:WELCOME", "status": "UNFULFILLED"}]
    assert node["tier"]["growth"] == node["growth"] == node["tier"]["periodGrowth"]
    assert {t["code"] for t in node["tasks"]} == {"checkin", "post"}

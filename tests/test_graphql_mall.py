"""GraphQL for the points mall — catalog, exchange options with the reasons a member may not
have a reward, redemptions in the three modes, payment confirmation and cancel, dry runs,
idempotency and tenant isolation; through the real client with two tenants."""

from __future__ import annotations

import copy
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.rules.hookspecs import Quote, hookimpl
from gateway.rules.manager import RuleRegistry, load_rules
from gateway.storage.db import Database
from gateway.tenants import TenantInfo
from tests.graphql_client import Api, make_api, new_member
from tests.test_graphql_rules import CONFIG, OVERRIDE, Plugin, configure, now


class TrialExchange:
    """Refuses the rewards listed in ``refuse`` (an exchange rule set)."""

    name, slot, version = "gq_trial", "exchange", "1.0"
    description = "Keeps trial rewards out of the mall."

    def quote(self, snapshot: Any, quote: Quote, config: dict[str, Any]) -> Quote:
        if quote.reward in config.get("refuse", []):
            return replace(quote, eligible=False, reason="not during the trial programme")
        return quote


class ExchangePlugin:
    @hookimpl
    def register_rule_sets(self) -> list[Any]:
        return [TrialExchange()]


REGISTRY: RuleRegistry = load_rules([Plugin(), ExchangePlugin()], entry_points=False)


def _mall() -> dict[str, Any]:
    soon = (now() + timedelta(days=7)).isoformat()
    return {
        "payment_minutes": 15,
        "rewards": [
            {
                "code": "MUG",
                "title": "Ceramic mug",
                "kind": "physical",
                "item": "MUG-2026",
                "stock": 3,
                "options": {
                    "points": {"points": 200, "tier_prices": {"gold": {"points": 150}}},
                    "points_cash": {"points": 100, "cash_fen": 990},
                    "cash": {"cash_fen": 2990},
                },
            },
            {
                "code": "COUPON10",
                "title": "10 yuan coupon",
                "kind": "coupon",
                "item": "TPL-10",
                "per_member": 1,
                "options": {"points": {"points": 50}},
            },
            {
                "code": "GOLDBAG",
                "title": "Gold tote",
                "kind": "gift",
                "tiers": ["gold"],
                "options": {"points": {"points": 10}},
            },
            {
                "code": "SPRING",
                "title": "Spring tea",
                "kind": "gift",
                "valid_from": soon,
                "options": {"points": {"points": 10}},
            },
            {
                "code": "TRIAL",
                "title": "Trial pack",
                "kind": "gift",
                "options": {"points": {"points": 10}},
            },
        ],
    }


def mall_config() -> dict[str, Any]:
    doc = copy.deepcopy(CONFIG)
    doc["exchange"] = [{"rule": "gq_trial", "config": {"refuse": ["TRIAL"]}}]
    doc["mall"] = _mall()
    return doc


@pytest.fixture
async def api(
    db: Database, database_url: str, tenant: TenantInfo, other_tenant: TenantInfo
) -> AsyncIterator[Api]:
    async with make_api(db, database_url, tenant, other_tenant) as client:
        client.hub._rules = REGISTRY  # the hub loads entry points only when none was given
        yield client


REDEMPTION = """ id reward mode quantity points cashFen status paymentRef createdAt expiresAt
  resolvedAt member { id points } pointsHold { status amount captured }
  grant { kind code reward quantity rule status source } """

REDEEM = (
    """mutation($i: RedeemRewardInput!) { redeemReward(input: $i) { __typename
  ... on RedemptionPayload { dryRun replayed member { points } redemption {"""
    + REDEMPTION
    + """} }
  ... on NotEligibleError { reason }
  ... on InsufficientBalanceError { available requested }
  ... on InvalidInputError { field } ... on NotFoundError { field }
  ... on Error { code message } } }"""
)
CONFIRM = (
    """mutation($i: ConfirmRedemptionPaymentInput!) { confirmRedemptionPayment(input: $i) {
  __typename ... on RedemptionPayload { replayed redemption {"""
    + REDEMPTION
    + """} }
  ... on InvalidInputError { field } ... on Error { code message } } }"""
)
CANCEL = (
    """mutation($i: CancelRedemptionInput!) { cancelRedemption(input: $i) { __typename
  ... on RedemptionPayload { replayed redemption {"""
    + REDEMPTION
    + """} }
  ... on Error { code message } } }"""
)
OPTIONS = """query($id: ID!, $r: String) { member(id: $id) { points
  exchangeOptions(reward: $r) { reward { code title kind item } stockLeft memberRemaining available
    options { mode points cashFen eligible reason message ruleSet } } } }"""


async def redeem(api: Api, key: str, member_id: str, **inp: Any) -> dict[str, Any]:
    body = await api.gql(key, REDEEM, {"i": {"memberId": member_id, **inp}})
    return body["data"]["redeemReward"]  # type: ignore[no-any-return]


async def give_points(api: Api, member_id: str, amount: int) -> None:
    body = await api.gql(
        "admin",
        """mutation($i: AdjustPointsInput!) { adjustPoints(input: $i) { __typename } }""",
        {"i": {"memberId": member_id, "amount": amount, "reason": "test credit"}},
    )
    assert body["data"]["adjustPoints"]["__typename"] == "AdjustPointsPayload", body


async def offers(api: Api, member_id: str, reward: str | None = None) -> dict[str, Any]:
    body = await api.gql("read", OPTIONS, {"id": member_id, "r": reward})
    m = body["data"]["member"]
    return {o["reward"]["code"]: o for o in m["exchangeOptions"]} | {"_points": m["points"]}


def _mode(offer: dict[str, Any], mode: str) -> dict[str, Any]:
    return next(o for o in offer["options"] if o["mode"] == mode)


async def test_catalog_and_exchange_options_say_why_not(api: Api) -> None:
    await configure(api, document=mall_config())
    m = await new_member(api)
    cat = await api.gql(
        "read",
        """{ rewards { code title kind item stock perMember tiers validFrom
        options { mode points cashFen tierPrices { tier points cashFen } } } }""",
    )
    rewards = {r["code"]: r for r in cat["data"]["rewards"]}
    assert list(rewards) == ["MUG", "COUPON10", "GOLDBAG", "SPRING", "TRIAL"]
    mug = rewards["MUG"]
    assert (mug["kind"], mug["item"], mug["stock"]) == ("physical", "MUG-2026", 3)
    assert [o["mode"] for o in mug["options"]] == ["POINTS", "POINTS_CASH", "CASH"]
    assert mug["options"][0]["tierPrices"] == [{"tier": "gold", "points": 150, "cashFen": 0}]
    assert rewards["GOLDBAG"]["tiers"] == ["gold"] and rewards["COUPON10"]["perMember"] == 1

    o = await offers(api, m)
    assert o["_points"] == 0
    assert o["MUG"]["stockLeft"] == 3 and o["MUG"]["memberRemaining"] is None
    no_points = _mode(o["MUG"], "POINTS")
    assert (no_points["eligible"], no_points["reason"], no_points["points"]) == (
        False,
        "INSUFFICIENT_POINTS",
        200,
    )
    assert "200" in no_points["message"]
    cash = _mode(o["MUG"], "CASH")
    assert cash["eligible"] is True and cash["cashFen"] == 2990 and o["MUG"]["available"] is True
    assert _mode(o["GOLDBAG"], "POINTS")["reason"] == "TIER_NOT_ALLOWED"
    assert _mode(o["SPRING"], "POINTS")["reason"] == "NOT_STARTED"
    trial = _mode(o["TRIAL"], "POINTS")
    assert (trial["reason"], trial["ruleSet"]) == ("RULE", "gq_trial")
    assert trial["message"] == "not during the trial programme"
    assert o["COUPON10"]["memberRemaining"] == 1

    # Points arrive; a gold override reprices the mug and opens the gold-only reward.
    await give_points(api, m, 1_000)
    assert _mode((await offers(api, m, "MUG"))["MUG"], "POINTS")["eligible"] is True
    until = (now() + timedelta(days=30)).isoformat()
    ov = await api.gql(
        "admin",
        OVERRIDE,
        {"i": {"memberId": m, "tier": "gold", "until": until, "reason": "VIP"}},
    )
    assert ov["data"]["overrideTier"]["__typename"] == "OverrideTierPayload"
    o = await offers(api, m)
    assert _mode(o["MUG"], "POINTS")["points"] == 150
    assert _mode(o["GOLDBAG"], "POINTS")["eligible"] is True
    only = await offers(api, m, "COUPON10")
    assert set(only) == {"COUPON10", "_points"}


async def test_redeem_in_three_modes_confirm_and_cancel(api: Api) -> None:
    await configure(api, document=mall_config())
    m = await new_member(api)
    await give_points(api, m, 1_000)

    # All points: completes at once, grant issued.
    pts = await redeem(api, "pos", m, reward="MUG", mode="POINTS", idempotencyKey="r-1")
    assert pts["__typename"] == "RedemptionPayload", pts
    r1 = pts["redemption"]
    assert (r1["status"], r1["mode"], r1["points"], r1["cashFen"]) == (
        "COMPLETED",
        "POINTS",
        200,
        0,
    )
    assert r1["grant"]["reward"] == "physical:MUG-2026" and r1["grant"]["rule"] == "mall"
    assert r1["grant"]["status"] == "ISSUED" and r1["pointsHold"]["status"] == "CAPTURED"
    assert pts["member"]["points"] == 800 and pts["replayed"] is False
    again = await redeem(api, "pos", m, reward="MUG", mode="POINTS", idempotencyKey="r-1")
    assert again["redemption"]["id"] == r1["id"] and again["member"]["points"] == 800
    reused = await redeem(api, "pos", m, reward="MUG", mode="CASH", idempotencyKey="r-1")
    assert reused["__typename"] == "IdempotencyKeyReusedError"

    # Points + cash: points held until the payment is confirmed.
    pc = await redeem(api, "pos", m, reward="MUG", mode="POINTS_CASH", idempotencyKey="r-2")
    r2 = pc["redemption"]
    assert (r2["status"], r2["points"], r2["cashFen"]) == ("AWAITING_PAYMENT", 100, 990)
    assert r2["pointsHold"]["status"] == "ACTIVE" and r2["grant"] is None and r2["expiresAt"]
    assert pc["member"]["points"] == 700
    wrong = await api.gql(
        "pos", CONFIRM, {"i": {"redemptionId": r2["id"], "paymentRef": "P-1", "amountFen": 1}}
    )
    assert wrong["data"]["confirmRedemptionPayment"]["field"] == "amountFen"
    read_denied = await api.gql(
        "read", CONFIRM, {"i": {"redemptionId": r2["id"], "paymentRef": "P-1", "amountFen": 990}}
    )
    assert read_denied["data"]["confirmRedemptionPayment"]["__typename"] == "PermissionDeniedError"
    paid = await api.gql(
        "pos", CONFIRM, {"i": {"redemptionId": r2["id"], "paymentRef": "P-1", "amountFen": 990}}
    )
    done = paid["data"]["confirmRedemptionPayment"]
    assert done["__typename"] == "RedemptionPayload", done
    assert done["redemption"]["status"] == "COMPLETED" and done["redemption"]["paymentRef"] == "P-1"
    assert done["redemption"]["pointsHold"]["status"] == "CAPTURED"
    assert done["redemption"]["grant"]["code"] == "MUG-2026"
    replay = await api.gql(
        "admin", CONFIRM, {"i": {"redemptionId": r2["id"], "paymentRef": "P-1", "amountFen": 990}}
    )
    assert replay["data"]["confirmRedemptionPayment"]["replayed"] is True

    # Cash only, then cancelled: stock comes back; a cancelled one cannot be paid.
    cash = await redeem(api, "pos", m, reward="MUG", mode="CASH", idempotencyKey="r-3")
    r3 = cash["redemption"]
    assert (r3["status"], r3["points"], r3["cashFen"], r3["pointsHold"]) == (
        "AWAITING_PAYMENT",
        0,
        2990,
        None,
    )
    left = await offers(api, m, "MUG")
    assert left["MUG"]["stockLeft"] == 0
    assert _mode(left["MUG"], "CASH")["reason"] == "OUT_OF_STOCK"
    out = await redeem(api, "pos", m, reward="MUG", mode="CASH")
    assert (out["__typename"], out["reason"]) == ("NotEligibleError", "OUT_OF_STOCK")
    cancelled = await api.gql(
        "pos", CANCEL, {"i": {"redemptionId": r3["id"], "reason": "changed mind"}}
    )
    c = cancelled["data"]["cancelRedemption"]
    assert c["redemption"]["status"] == "CANCELLED" and c["redemption"]["resolvedAt"]
    twice = await api.gql("pos", CANCEL, {"i": {"redemptionId": r3["id"], "reason": "again"}})
    assert twice["data"]["cancelRedemption"]["replayed"] is True
    late = await api.gql(
        "pos", CONFIRM, {"i": {"redemptionId": r3["id"], "paymentRef": "P-2", "amountFen": 2990}}
    )
    assert late["data"]["confirmRedemptionPayment"]["__typename"] == "InvalidTransitionError"
    completed = await api.gql("pos", CANCEL, {"i": {"redemptionId": r1["id"], "reason": "x"}})
    assert completed["data"]["cancelRedemption"]["__typename"] == "InvalidTransitionError"
    assert (await offers(api, m, "MUG"))["MUG"]["stockLeft"] == 1

    # Limits, balance, modes and scopes.
    first = await redeem(api, "pos", m, reward="COUPON10", mode="POINTS")
    assert first["redemption"]["grant"]["reward"] == "coupon:TPL-10"
    second = await redeem(api, "pos", m, reward="COUPON10", mode="POINTS")
    assert (second["__typename"], second["reason"]) == ("NotEligibleError", "MEMBER_LIMIT")
    assert "1 per member" in second["message"]
    poor = await new_member(api, phone="13900139000")
    broke = await redeem(api, "pos", poor, reward="MUG", mode="POINTS")
    assert broke["__typename"] == "InsufficientBalanceError"
    assert (broke["available"], broke["requested"]) == (0, 200)
    bad_mode = await redeem(api, "pos", m, reward="COUPON10", mode="CASH")
    assert bad_mode["__typename"] == "InvalidInputError" and bad_mode["field"] == "mode"
    unknown = await redeem(api, "pos", m, reward="NOPE", mode="POINTS")
    assert unknown["__typename"] == "NotFoundError"
    denied = await redeem(api, "read", m, reward="MUG", mode="CASH")
    assert denied["__typename"] == "PermissionDeniedError"

    # The member's redemptions, newest first; by id and as a Relay node.
    body = await api.gql(
        "read",
        """query($id: ID!, $r: ID!) { member(id: $id) { redemptions(first: 10) { id status } }
        redemption(id: $r) { id status mode }
        node(id: $r) { __typename ... on Redemption { reward } } }""",
        {"id": m, "r": r2["id"]},
    )
    d = body["data"]
    assert [x["id"] for x in d["member"]["redemptions"]][1:4] == [r3["id"], r2["id"], r1["id"]]
    assert d["redemption"] == {"id": r2["id"], "status": "COMPLETED", "mode": "POINTS_CASH"}
    assert d["node"] == {"__typename": "Redemption", "reward": "MUG"}


async def test_redeem_dry_run_writes_nothing(api: Api) -> None:
    await configure(api, document=mall_config())
    m = await new_member(api)
    await give_points(api, m, 300)
    before = await api.counts(api.a)
    dry = await redeem(
        api, "pos", m, reward="MUG", mode="POINTS", dryRun=True, idempotencyKey="d-1"
    )
    assert dry["__typename"] == "RedemptionPayload", dry
    assert dry["dryRun"] is True and dry["redemption"]["status"] == "COMPLETED"
    assert dry["redemption"]["points"] == 200 and dry["member"]["points"] == 300
    assert await api.counts(api.a) == before
    listed = await api.gql(
        "read", "query($id: ID!) { member(id: $id) { redemptions { id } } }", {"id": m}
    )
    assert listed["data"]["member"]["redemptions"] == []
    refused = await redeem(api, "pos", m, reward="GOLDBAG", mode="POINTS", dryRun=True)
    assert (refused["__typename"], refused["reason"]) == ("NotEligibleError", "TIER_NOT_ALLOWED")
    # The key a dry run used is still free for the real request.
    real = await redeem(api, "pos", m, reward="MUG", mode="POINTS", idempotencyKey="d-1")
    assert real["dryRun"] is False and real["member"]["points"] == 100


async def test_tenant_b_cannot_see_or_act_on_tenant_a_redemptions(api: Api) -> None:
    await configure(api, document=mall_config())
    await configure(api, "b_admin", document=mall_config())
    m = await new_member(api)
    await give_points(api, m, 1_000)
    r = (await redeem(api, "pos", m, reward="MUG", mode="POINTS_CASH"))["redemption"]

    seen = await api.gql(
        "b_admin",
        """query($r: ID!, $m: ID!) { redemption(id: $r) { id } node(id: $r) { id }
        member(id: $m) { id } }""",
        {"r": r["id"], "m": m},
    )
    assert seen["data"] == {"redemption": None, "node": None, "member": None}
    pay = await api.gql(
        "b_admin", CONFIRM, {"i": {"redemptionId": r["id"], "paymentRef": "X", "amountFen": 990}}
    )
    assert pay["data"]["confirmRedemptionPayment"]["__typename"] == "NotFoundError"
    cancel = await api.gql("b_admin", CANCEL, {"i": {"redemptionId": r["id"], "reason": "x"}})
    assert cancel["data"]["cancelRedemption"]["__typename"] == "NotFoundError"
    steal = await redeem(api, "b_admin", m, reward="MUG", mode="POINTS")
    assert (steal["__typename"], steal["field"]) == ("NotFoundError", "memberId")
    # B's own catalog is its own; A's redemption is untouched.
    b_member = await new_member(api, key="b_admin", phone="13700137000")
    b_offers = await api.gql("b_admin", OPTIONS, {"id": b_member, "r": "MUG"})
    assert b_offers["data"]["member"]["exchangeOptions"][0]["stockLeft"] == 3
    still = await api.gql(
        "read", "query($r: ID!) { redemption(id: $r) { status } }", {"r": r["id"]}
    )
    assert still["data"]["redemption"]["status"] == "AWAITING_PAYMENT"


def _readme_example() -> str:
    readme = Path(__file__).resolve().parents[1] / "schema" / "README.md"
    (example,) = re.findall(r"```graphql mall\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    return str(example)


async def test_schema_readme_example_runs(api: Api) -> None:
    """The example query of schema/README.md ("Rules, tiers, tasks and the points mall")."""
    example = _readme_example()
    await configure(api, document=mall_config())
    m = await new_member(api)
    await give_points(api, m, 120)
    body = await api.gql("read", example, {"id": m})
    member = body["data"]["member"]
    assert member["points"] == 120 and member["tier"]["code"] == "member"
    assert member["tier"]["nextTier"] == {"name": "Silver", "threshold": 100}
    assert member["grants"][0]["reward"] == "coupon:WELCOME"
    assert {t["code"] for t in member["tasks"]} == {"checkin", "post"}
    assert len(member["exchangeOptions"]) == 5

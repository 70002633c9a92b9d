# ruff: noqa: F811  (the `api` fixture is imported from tests.graphql_client)
"""GraphQL for coupons: an admin creates a template and issues a coupon, the till validates and
redeems it (once; a retry for the same order replays), scopes are enforced and tenant B cannot
see tenant A's code."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.storage.db import Database
from schema.relay import decode_id
from tests.graphql_client import (
    Api,
    StatementCounter,
    api,  # noqa: F401  (fixture)
    new_member,
)

CREATE = """mutation($input: CreateCouponTemplateInput!) { createCouponTemplate(input: $input) {
  __typename ... on CreateCouponTemplatePayload { template { id code kind issued } }
  ... on Error { code message } ... on InvalidInputError { field } } }"""
ISSUE = """mutation($input: IssueCouponInput!) { issueCoupon(input: $input) {
  __typename ... on IssueCouponPayload { replayed coupon { code status memberId } }
  ... on CouponNotEligibleError { reason } ... on Error { code message } } }"""
VALIDATE = """query($code: String!, $order: CouponOrderInput!) {
  validateCoupon(code: $code, order: $order) {
  __typename ... on CouponDiscount { discountFen eligibleFen kind }
  ... on CouponNotEligibleError { reason } ... on InvalidInputError { field }
  ... on Error { code } } }"""
REDEEM = """mutation($input: RedeemCouponInput!) { redeemCoupon(input: $input) {
  __typename ... on CouponDiscount { discountFen orderRef replayed }
  ... on CouponNotEligibleError { reason } ... on Error { code message } } }"""

ORDER = {"channel": "pos", "storeCode": "S1", "lines": [{"amountFen": 5000}], "totalFen": 5000}


async def run(api: Api, key: str, query: str, field: str, **variables: Any) -> dict[str, Any]:
    return (await api.gql(key, query, variables))["data"][field]


async def test_coupon_flow(api: Api) -> None:
    template = {
        "code": "SAVE6",
        "title": "Spend 30 save 6",
        "kind": "AMOUNT_OFF",
        "validity": "RELATIVE",
        "validDays": 30,
        "thresholdFen": 3000,
        "offFen": 600,
    }
    denied = await run(api, "pos", CREATE, "createCouponTemplate", input=template)
    assert denied["code"] == "PERMISSION_DENIED"
    bad = await run(api, "admin", CREATE, "createCouponTemplate", input={**template, "offFen": 0})
    assert (bad["__typename"], bad["field"]) == ("InvalidInputError", "offFen")
    made = await run(api, "admin", CREATE, "createCouponTemplate", input=template)
    assert made["template"]["kind"] == "AMOUNT_OFF", made

    member = await new_member(api)
    issue = {"templateCode": "SAVE6", "memberId": member, "source": "test", "idempotencyKey": "i1"}
    issued = await run(api, "admin", ISSUE, "issueCoupon", input=issue)
    again = await run(api, "admin", ISSUE, "issueCoupon", input=issue)
    assert issued["coupon"]["status"] == "ISSUED" and again["replayed"] is True
    code = issued["coupon"]["code"]
    assert again["coupon"]["code"] == code

    ok = await run(api, "pos", VALIDATE, "validateCoupon", code=code.lower(), order=ORDER)
    assert (ok["discountFen"], ok["eligibleFen"]) == (600, 5000)
    typo = code[:-1] + ("0" if code[-1] != "0" else "1")
    bad_code = await run(api, "pos", VALIDATE, "validateCoupon", code=typo, order=ORDER)
    assert (bad_code["__typename"], bad_code["field"]) == ("InvalidInputError", "code")
    low = {**ORDER, "totalFen": 2000, "lines": [{"amountFen": 2000}]}
    short = await run(api, "pos", VALIDATE, "validateCoupon", code=code, order=low)
    assert short["reason"] == "THRESHOLD_NOT_MET"
    other = await run(api, "b_admin", VALIDATE, "validateCoupon", code=code, order=ORDER)
    assert other["reason"] == "NOT_FOUND"

    redeem = {"code": code, "order": ORDER, "orderRef": "O-1", "idempotencyKey": "r1"}
    used = await run(api, "pos", REDEEM, "redeemCoupon", input=redeem)
    assert (used["discountFen"], used["orderRef"], used["replayed"]) == (600, "O-1", False)
    retry = await run(api, "pos", REDEEM, "redeemCoupon", input={**redeem, "idempotencyKey": "r2"})
    assert retry["replayed"] is True
    twice = await run(
        api,
        "pos",
        REDEEM,
        "redeemCoupon",
        input={**redeem, "orderRef": "O-2", "idempotencyKey": "r3"},
    )
    assert twice["reason"] == "ALREADY_REDEEMED"


MEMBER_COUPONS = """query { members(first: 10) { edges { node { id
  coupons(first: 5) { code status templateId }
  redeemed: coupons(status: REDEEMED) { code } } } } }"""
BULK = """mutation($input: IssueCouponsToSegmentInput!) { issueCouponsToSegment(input: $input) {
  __typename ... on IssueCouponsToSegmentPayload { replayed job { id status total } }
  ... on CouponNotEligibleError { reason } ... on Error { code message } } }"""
JOB = """query($id: ID!) { couponIssueJob(id: $id) { status total processed issued skipped
  skipReasons { reason count } error finishedAt } }"""
STATS = """query($code: String!, $from: DateTime) { couponTemplate(code: $code) { issued
  stats(from: $from) { issued redeemed redemptionRate expired orders revenueFen discountFen
  byChannel { key redeemed orders revenueFen discountFen } byStore { key redeemed orders } } } }"""


async def test_bulk_issue_member_coupons_and_stats(api: Api, db: Database) -> None:
    from tests.test_coupon_bulk import seed_segment

    template = {
        "code": "BULK5",
        "title": "5 off",
        "kind": "AMOUNT_OFF",
        "validity": "RELATIVE",
        "validDays": 30,
        "offFen": 500,
        "perMemberLimit": 1,
    }
    assert (await run(api, "admin", CREATE, "createCouponTemplate", input=template))["template"]
    gids = [await new_member(api, phone=f"1380013800{i}") for i in range(4)]
    ids = sorted(decode_id(g, "Member") for g in gids)  # type: ignore[misc]
    await seed_segment(db, api.a, ids, "GQL")
    start = {"templateCode": "BULK5", "segment": "GQL", "idempotencyKey": "b1"}
    missing = await run(
        api, "admin", BULK, "issueCouponsToSegment", input={**start, "segment": "X"}
    )
    assert missing["code"] == "NOT_FOUND"
    started = await run(api, "admin", BULK, "issueCouponsToSegment", input=start)
    assert (started["replayed"], started["job"]["total"]) == (False, 4), started
    job = None
    for _ in range(200):  # the job runs in the background of the app
        job = await run(api, "admin", JOB, "couponIssueJob", id=started["job"]["id"])
        if job["status"] == "DONE":
            break
        await asyncio.sleep(0.05)
    assert job is not None and (job["status"], job["issued"], job["processed"]) == ("DONE", 4, 4)
    again = await run(api, "admin", BULK, "issueCouponsToSegment", input=start)
    assert again["replayed"] and again["job"]["status"] == "DONE"
    assert (await run(api, "b_admin", JOB, "couponIssueJob", id=started["job"]["id"])) is None

    listed = await run(api, "admin", MEMBER_COUPONS, "members")
    nodes = {e["node"]["id"]: e["node"] for e in listed["edges"]}
    assert {len(nodes[g]["coupons"]) for g in gids} == {1}
    code = nodes[gids[0]]["coupons"][0]["code"]
    redeem = {"code": code, "order": ORDER, "orderRef": "O-9", "idempotencyKey": "r9"}
    assert (await run(api, "pos", REDEEM, "redeemCoupon", input=redeem))["discountFen"] == 500
    listed = await run(api, "admin", MEMBER_COUPONS, "members")
    nodes = {e["node"]["id"]: e["node"] for e in listed["edges"]}
    assert nodes[gids[0]]["redeemed"] == [{"code": code}] and nodes[gids[1]]["redeemed"] == []

    stats = (await run(api, "admin", STATS, "couponTemplate", code="BULK5"))["stats"]
    assert stats == {
        "issued": 4,
        "redeemed": 1,
        "redemptionRate": 0.25,
        "expired": 0,
        "orders": 1,
        "revenueFen": 5000,
        "discountFen": 500,
        "byChannel": [
            {"key": "pos", "redeemed": 1, "orders": 1, "revenueFen": 5000, "discountFen": 500}
        ],
        "byStore": [{"key": "S1", "redeemed": 1, "orders": 1}],
    }
    window = {"from": "2999-01-01T00:00:00Z"}
    later = await run(api, "admin", STATS, "couponTemplate", code="BULK5", **window)
    assert (later["stats"]["issued"], later["stats"]["byChannel"]) == (0, [])


def test_schema_readme_coupon_examples_are_valid() -> None:
    """The ```graphql coupons block of schema/README.md validates against the schema."""
    import re
    from pathlib import Path

    from graphql import parse, validate

    from schema import build_schema

    readme = (Path(__file__).resolve().parents[1] / "schema" / "README.md").read_text("utf-8")
    (example,) = re.findall(r"```graphql coupons\n(.*?)```", readme, re.S)
    errors = validate(build_schema()._schema, parse(example))
    assert errors == [] and example.count("mutation ") + example.count("query ") == 5


async def test_member_coupons_cost_one_statement_per_page(api: Api) -> None:
    create = {"code": "PAGE", "title": "p", "kind": "GIFT", "giftSku": "MUG"}
    template = {**create, "validity": "RELATIVE", "validDays": 9}
    assert (await run(api, "admin", CREATE, "createCouponTemplate", input=template))["template"]
    for i in range(12):
        m = await new_member(api, phone=f"1390013{i:04d}")
        for k in range(2):
            issue = {
                "templateCode": "PAGE",
                "memberId": m,
                "source": "t",
                "idempotencyKey": f"{i}-{k}",
            }
            assert (await run(api, "admin", ISSUE, "issueCoupon", input=issue))["coupon"]
    query = """query($n: Int!) { members(first: $n) { edges { node {
      coupons(first: 1) { code template { code title } } all: coupons { status } } } } }"""
    await api.gql("admin", "{ identifierKinds { name } }")  # authenticate once (key cache)
    counts = {}
    for n in (3, 12):
        with StatementCounter(api.hub.db) as counter:
            body = await api.gql("admin", query, {"n": n})
        nodes = [e["node"] for e in body["data"]["members"]["edges"]]
        assert [(len(x["coupons"]), len(x["all"])) for x in nodes] == [(1, 2)] * n
        assert {x["coupons"][0]["template"]["code"] for x in nodes} == {"PAGE"}
        counts[n] = len(counter.queries)
    # The page + one per coupons selection + one for every coupon's template.
    assert counts[3] == counts[12] <= 4, counts

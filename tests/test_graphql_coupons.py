"""GraphQL for coupons: an admin creates a template and issues a coupon, the till validates and
redeems it (once; a retry for the same order replays), scopes are enforced and tenant B cannot
see tenant A's code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.storage.db import Database
from gateway.tenants import TenantInfo
from tests.graphql_client import Api, make_api, new_member


@pytest.fixture
async def api(
    db: Database, database_url: str, tenant: TenantInfo, other_tenant: TenantInfo
) -> AsyncIterator[Api]:
    async with make_api(db, database_url, tenant, other_tenant) as client:
        yield client


CREATE = """mutation($input: CreateCouponTemplateInput!) { createCouponTemplate(input: $input) {
  __typename ... on CreateCouponTemplatePayload { template { id code kind issued } }
  ... on Error { code message } ... on InvalidInputError { field } } }"""
ISSUE = """mutation($input: IssueCouponInput!) { issueCoupon(input: $input) {
  __typename ... on IssueCouponPayload { replayed coupon { code status memberId } }
  ... on NotEligibleError { reason } ... on Error { code message } } }"""
VALIDATE = """query($code: String!, $order: CouponOrderInput!) {
  validateCoupon(code: $code, order: $order) {
  __typename ... on CouponDiscount { discountFen eligibleFen kind }
  ... on NotEligibleError { reason } ... on InvalidInputError { field } ... on Error { code } } }"""
REDEEM = """mutation($input: RedeemCouponInput!) { redeemCoupon(input: $input) {
  __typename ... on CouponDiscount { discountFen orderRef replayed }
  ... on NotEligibleError { reason } ... on Error { code message } } }"""

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

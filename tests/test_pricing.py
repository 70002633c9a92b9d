# ruff: noqa: F811  (the `api` fixture is imported from tests.graphql_client)
"""'Price for this member' (gateway.pricing, GraphQL memberPrice): the rounding rule and its
invariants (hypothesis), the member's effective tier on both databases, and the query as a till
or storefront calls it — scopes, typed errors, several members in one request, and the same rate
as Member.tier.discountBp."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import members, pricing
from gateway.errors import InvalidInput, NotFound
from gateway.identifiers import tenant_key
from gateway.ledger.accounts import MAX_AMOUNT
from gateway.members import IdentifierInput
from gateway.rules import config as rule_config
from gateway.rules import engine
from gateway.rules.hookspecs import TierView
from gateway.rules.manager import load_rules
from gateway.storage.db import Database
from gateway.tenants import TenantInfo
from tests.conftest import TEST_SECRET
from tests.graphql_client import (
    Api,
    api,  # noqa: F401  (fixture)
    new_member,
)

REG = load_rules()
LADDER = [
    {"code": "member", "name": "Member", "threshold": 0, "discount_bp": 9800},
    {"code": "gold", "name": "Gold", "threshold": 100, "discount_bp": 8850},
]
CONFIG = {
    "tiers": {"rule": "classic_tiers", "config": {"ladder": LADDER}},
    "earning": ["classic_earning"],
}
GOLD = TierView("gold", "Gold", 1, 100, 8850)
T0 = datetime(2026, 3, 10, 4, tzinfo=UTC)


# ---- the arithmetic ------------------------------------------------------------------------


@given(st.integers(0, MAX_AMOUNT), st.integers(1, 10_000))
def test_member_amount_is_the_floor_never_negative_never_above_the_price(amount: int, bp: int):
    paid = pricing.discounted(amount, bp)
    assert 0 <= paid <= amount
    # Rounded down: the member pays at most the exact rate, and less than one fen below it.
    assert paid * 10_000 <= amount * bp < (paid + 1) * 10_000
    if bp == 10_000:
        assert paid == amount


@given(st.lists(st.integers(0, 10**7), min_size=1, max_size=20), st.integers(1, 10_000))
def test_totals_are_the_sums_of_the_lines(amounts: list[int], bp: int) -> None:
    tier = TierView("t", "T", 0, 100, bp)
    p = pricing.price(
        uuid.uuid4(), tier, [pricing.DraftLine(a, f"S{i}") for i, a in enumerate(amounts)]
    )
    assert p.total_fen == sum(amounts)
    assert p.member_total_fen == sum(pricing.discounted(a, bp) for a in amounts)
    assert 0 <= p.saved_fen <= p.total_fen
    assert [x.sku for x in p.lines] == [f"S{i}" for i in range(len(amounts))]


def test_examples_and_invalid_drafts() -> None:
    p = pricing.price(uuid.uuid4(), GOLD, [pricing.DraftLine(999, "A"), pricing.DraftLine(1)])
    # 999 × 0.885 = 884.115 → 884; 1 × 0.885 → 0: fractions of a fen go to the member.
    assert [x.member_amount_fen for x in p.lines] == [884, 0]
    assert (p.total_fen, p.member_total_fen, p.saved_fen) == (1000, 884, 116)
    assert pricing.price(uuid.uuid4(), None, [pricing.DraftLine(999)]).member_total_fen == 999
    for bad in ([], [pricing.DraftLine(-1)], [pricing.DraftLine(MAX_AMOUNT + 1)]):
        with pytest.raises(InvalidInput):
            pricing.price(uuid.uuid4(), GOLD, bad)


# ---- the member's tier ---------------------------------------------------------------------


async def test_the_effective_tier_prices_on_both_databases(
    db: Database, tenant: TenantInfo
) -> None:
    async with db.tenant_tx(tenant.id) as tx:
        await rule_config.save(tx, CONFIG, REG, actor="test")
        m = (
            await members.ingest(
                tx,
                channel="pos",
                identifiers=[IdentifierInput("pos_card", "brand", "P1")],
                key=tenant_key(TEST_SECRET, tenant.id),
                now=T0,
            )
        ).member_id
    lines = [pricing.DraftLine(10_000, "TEA")]
    async with db.tenant_tx(tenant.id, write=False) as tx:
        p = await pricing.member_price(tx, m, lines, registry=REG, now=T0)
        assert (p.tier.code if p.tier else None, p.member_total_fen) == ("member", 9_800)
        with pytest.raises(NotFound):
            await pricing.member_price(tx, uuid.uuid4(), lines, registry=REG, now=T0)
    async with db.tenant_tx(tenant.id) as tx:
        await engine.record_and_process(
            tx,
            event_id=uuid.uuid4(),
            member_id=m,
            type="order.paid",
            payload={"order_id": str(uuid.uuid4()), "channel": "pos", "paid_fen": 20_000},
            occurred_at=T0,
            registry=REG,
            now=T0,
        )
    async with db.tenant_tx(tenant.id, write=False) as tx:
        p = await pricing.member_price(tx, m, lines, registry=REG, now=T0 + timedelta(hours=1))
    assert (p.tier.code if p.tier else None, p.discount_bp, p.member_total_fen) == (
        "gold",
        8_850,
        8_850,
    )


# ---- GraphQL -------------------------------------------------------------------------------


PRICE = """query($m: ID!, $o: MemberPriceOrderInput!) { memberPrice(memberId: $m, order: $o) {
  __typename ... on MemberPrice { memberId tierCode tierName discountBp totalFen memberTotalFen
  savedFen lines { sku category amountFen memberAmountFen } }
  ... on InvalidInputError { field } ... on Error { code message } } }"""
ORDER = {
    "channel": "pos",
    "storeCode": "S1",
    "lines": [{"sku": "LJ", "category": "tea", "amountFen": 12_345}, {"amountFen": 1}],
}


async def price_of(api: Api, key: str, member: str, order: Any = None) -> dict[str, Any]:
    body = await api.gql(key, PRICE, {"m": member, "o": order or ORDER})
    return body["data"]["memberPrice"]


async def test_member_price_query(api: Api, db: Database) -> None:
    async with db.tenant_tx(api.a.id) as tx:
        await rule_config.save(tx, CONFIG, REG, actor="test")
    m = await new_member(api)
    for key in ("pos", "read", "admin"):
        got = await price_of(api, key, m)
        assert got == {
            "__typename": "MemberPrice",
            "memberId": m,
            "tierCode": "member",
            "tierName": "Member",
            "discountBp": 9_800,
            "totalFen": 12_346,
            "memberTotalFen": 12_098,  # floor(12345 × 0.98) = 12098, floor(0.98) = 0
            "savedFen": 248,
            "lines": [
                {"sku": "LJ", "category": "tea", "amountFen": 12_345, "memberAmountFen": 12_098},
                {"sku": None, "category": None, "amountFen": 1, "memberAmountFen": 0},
            ],
        }
    # The same rate Member.tier shows; two members priced in one request.
    other = await new_member(api, phone="13800138001")
    body = await api.gql(
        "pos",
        """query($a: ID!, $b: ID!, $o: MemberPriceOrderInput!) {
        x: memberPrice(memberId: $a, order: $o) { ... on MemberPrice { discountBp } }
        y: memberPrice(memberId: $b, order: $o) { ... on MemberPrice { discountBp } }
        member(id: $a) { tier { discountBp } } }""",
        {"a": m, "b": other, "o": ORDER},
    )
    data = body["data"]
    assert data["x"] == data["y"] == {"discountBp": 9_800} == data["member"]["tier"]

    denied = await price_of(api, "connector", m)
    assert denied["code"] == "PERMISSION_DENIED"
    bad = await price_of(api, "pos", m, {"lines": [{"amountFen": -5}]})
    assert (bad["__typename"], bad["field"]) == ("InvalidInputError", "lines")
    empty = await price_of(api, "pos", m, {"lines": []})
    assert empty["__typename"] == "InvalidInputError"
    for key, member in (("pos", "TWVtYmVyOm5vcGU="), ("b_admin", m)):
        missing = await price_of(api, key, member)
        assert missing["__typename"] == "NotFoundError", missing


async def test_member_price_without_tiers_is_the_full_price(api: Api) -> None:
    m = await new_member(api)
    got = await price_of(api, "pos", m)
    assert (got["tierCode"], got["discountBp"], got["memberTotalFen"]) == (None, 10_000, 12_346)


README = (Path(__file__).resolve().parents[1] / "schema" / "README.md").read_text("utf-8")


async def test_the_schema_readme_example_runs(api: Api, db: Database) -> None:
    (example,) = re.findall(r"```graphql price\n(.*?)```", README, re.S)
    async with db.tenant_tx(api.a.id) as tx:
        await rule_config.save(tx, CONFIG, REG, actor="test")
    got = (await api.gql("pos", example, {"id": await new_member(api)}))["data"]["memberPrice"]
    assert (got["tierCode"], got["totalFen"], got["memberTotalFen"]) == ("member", 44_700, 43_806)
    assert [x["memberAmountFen"] for x in got["lines"]] == [38_024, 5_782]

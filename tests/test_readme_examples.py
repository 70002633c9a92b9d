# ruff: noqa: F811  (the `api` fixture is imported from tests.graphql_client)
"""The README's GraphQL walkthrough, executed in order: documentation that cannot go stale.

Each ```graphql block of README.md runs as tenant A's admin with the variables the previous
answers provide, and its answer is checked for what the README claims (ONE ID attach, earning,
two-phase spend, proportional reversal with shortfall, merge and exact unmerge). Tenant B's key
sees none of it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.graphql_client import Api, api, upsert  # noqa: F401

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_blocks() -> list[str]:
    return re.findall(r"```graphql\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_the_walkthrough() -> None:
    assert len(readme_blocks()) == 9


async def test_readme_walkthrough_runs_as_documented(api: Api) -> None:
    blocks = iter(readme_blocks())

    async def run(variables: dict[str, Any] | None = None) -> dict[str, Any]:
        data = (await api.gql("admin", next(blocks), variables))["data"]
        (result,) = data.values()
        assert result is not None and result.get("__typename", "Member") in (
            "Member",
            "UpsertMemberPayload",
            "RecordOrderPayload",
            "PointsHoldPayload",
            "RefundOrderPayload",
            "MergePayload",
        ), result
        return result

    joined = await run()
    assert joined["created"] is True
    member_id = joined["member"]["id"]

    wechat = await run()
    assert wechat["created"] is False and wechat["member"]["id"] == member_id
    assert {i["kind"] for i in wechat["member"]["identities"]} == {
        "phone",
        "pos_card",
        "wechat_unionid",
        "wechat_openid",
    }
    assert "138****8000" in {i["display"] for i in wechat["member"]["identities"]}

    order = await run({"memberId": member_id})
    assert order["order"]["member"] == {"points": 128, "growth": 128}
    order_id = order["order"]["id"]

    found = await run()
    assert found["id"] == member_id
    assert found["profile"]["name"] == "林小雨"
    assert [o["externalId"] for o in found["latestOrders"]] == ["HZ01-20261123-0042"]
    balances = {b["account"]: b["available"] for b in found["balances"]}
    assert balances["points"] == 128 and balances["growth"] == 128

    held = await run({"memberId": member_id})
    assert held["hold"]["status"] == "ACTIVE" and held["member"]["points"] == 28
    captured = await run({"holdId": held["hold"]["id"]})
    assert captured["hold"]["captured"] == 80 and captured["member"]["points"] == 48

    # Half refunded: 64 points and 64 growth due back; only 48 points are left to take.
    refunded = await run({"orderId": order_id})
    assert refunded["order"]["status"] == "PARTIALLY_REFUNDED"
    assert refunded["order"]["member"] == {"points": 0, "growth": 64}

    other = await upsert(
        api,
        "admin",
        "tmall",
        [{"kind": "tmall_ouid", "scope": "lanxi-flagship", "value": "ou-xiaoyu"}],
    )
    loser_id = other["member"]["id"]
    await api.gql(
        "admin",
        """mutation($m: ID!) { adjustPoints(input: {memberId: $m, amount: 30,
        reason: "goodwill"}) { __typename } }""",
        {"m": loser_id},
    )
    merged = await run({"survivorId": member_id, "loserId": loser_id})
    assert merged["survivor"]["points"] == 30
    assert "tmall_ouid" in {i["kind"] for i in merged["survivor"]["identities"]}
    undone = await run({"mergeId": merged["merge"]["id"]})
    assert undone["survivor"]["points"] == 0
    assert undone["loser"] == {"points": 30, "status": "ACTIVE"}

    # Tenant B sees nothing of it.
    blind = await api.gql("b_admin", readme_blocks()[3])
    assert blind["data"]["memberByIdentifier"] is None

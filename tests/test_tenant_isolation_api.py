# ruff: noqa: F811  (the `api` fixture is imported from tests.graphql_client)
"""Tenant B's key, tenant A's ids: every query answers null, every mutation NotFoundError, and
nothing in A changes. Another tenant's object must look exactly like a missing one."""

from __future__ import annotations

from typing import Any

from tests.graphql_client import (
    Api,
    api,  # noqa: F401  (fixture)
    new_member,
    new_order,
    upsert,
)
from tests.test_graphql_mutations import (
    ADJUST,
    CAPTURE,
    HOLD,
    MERGE,
    REFUND,
    RELEASE,
    UNMERGE,
    run,
)
from tests.test_graphql_queries import MEMBER


async def _a_world(api: Api) -> dict[str, Any]:
    """Tenant A: two members (one merged away), an order, points, a hold, a merge."""
    m = await new_member(api, phone="13800138000")
    loser = await new_member(api, phone="13800138001")
    order = await new_order(api, m, "A-1")
    adj = await run(api, ADJUST, {"memberId": m, "amount": 500, "reason": "gift"})
    hold = await run(api, HOLD, {"memberId": m, "amount": 100, "reason": "pos"})
    merge = await run(api, MERGE, {"survivorId": m, "loserId": loser, "reason": "same"})
    return {
        "member": m,
        "loser": loser,
        "order": order,
        "transfer": adj["transfer"]["id"],
        "hold": hold["hold"]["id"],
        "merge": merge["merge"]["id"],
    }


async def test_every_query_with_another_tenants_ids_is_null(api: Api) -> None:
    a = await _a_world(api)
    for gid in a.values():
        body = await api.gql(
            "b_admin",
            """query($id: ID!) { node(id: $id) { id }
            member(id: $id) { id } order(id: $id) { id } pointsHold(id: $id) { id } }""",
            {"id": gid},
        )
        assert body["data"] == {"node": None, "member": None, "order": None, "pointsHold": None}, (
            gid
        )
    body = await api.gql("b_admin", MEMBER, {"id": a["member"]})
    assert body["data"]["member"] is None
    body = await api.gql(
        "b_admin",
        """{ memberByIdentifier(kind: "phone", scope: "*",
        value: "13800138000") { id } members(first: 100) { edges { node { id } } } }""",
    )
    assert body["data"]["memberByIdentifier"] is None
    assert body["data"]["members"]["edges"] == []
    body = await api.gql("b_admin", "{ viewer { tenant { slug } } }")
    assert body["data"]["viewer"]["tenant"]["slug"] == api.b.slug


async def test_every_mutation_with_another_tenants_ids_is_not_found(api: Api) -> None:
    a = await _a_world(api)
    before = await api.counts(api.a)
    attempts = [
        (ADJUST, {"memberId": a["member"], "amount": 5, "reason": "x"}),
        (ADJUST, {"memberId": a["member"], "amount": -5, "reason": "x"}),
        (HOLD, {"memberId": a["member"], "amount": 5, "reason": "x"}),
        (CAPTURE, {"holdId": a["hold"], "reason": "x"}),
        (RELEASE, {"holdId": a["hold"], "reason": "x"}),
        (REFUND, {"orderId": a["order"], "refundId": "R1", "amountFen": 100}),
        (MERGE, {"survivorId": a["member"], "loserId": a["loser"], "reason": "x"}),
        (UNMERGE, {"mergeId": a["merge"], "reason": "x"}),
    ]
    for doc, inp in attempts:
        r = await run(api, doc, inp, key="b_admin")
        assert r["__typename"] == "NotFoundError", (doc, r)
        assert r["code"] == "NOT_FOUND"
    from tests.graphql_client import RECORD_ORDER, order_input

    body = await api.gql("b_admin", RECORD_ORDER, {"i": order_input(a["member"], "B-1")})
    assert body["data"]["recordOrder"]["__typename"] == "NotFoundError"
    # B ingesting A's phone creates B's own member: identifiers never link across tenants
    r = await upsert(api, "b_admin", "pos", [{"kind": "phone", "value": "13800138000"}])
    assert r["created"] is True and r["member"]["id"] != a["member"]
    # and B's mergeMembers with one id of each tenant cannot reach A
    r = await run(
        api,
        MERGE,
        {"survivorId": r["member"]["id"], "loserId": a["member"], "reason": "x"},
        key="b_admin",
    )
    assert r["__typename"] == "NotFoundError"
    assert await api.counts(api.a) == before
    # A still sees its world unchanged
    body = await api.gql(
        "admin", "query($id: ID!) { member(id: $id) { points } }", {"id": a["member"]}
    )
    assert body["data"]["member"]["points"] == 500 - 100 + 123


async def test_idempotency_keys_are_per_tenant(api: Api) -> None:
    m_a = await new_member(api)
    m_b = (await upsert(api, "b_admin", "pos", [{"kind": "phone", "value": "13800138009"}]))[
        "member"
    ]["id"]
    r_a = await run(
        api, ADJUST, {"memberId": m_a, "amount": 7, "reason": "x", "idempotencyKey": "shared"}
    )
    r_b = await run(
        api,
        ADJUST,
        {"memberId": m_b, "amount": 9, "reason": "y", "idempotencyKey": "shared"},
        key="b_admin",
    )
    assert r_a["__typename"] == r_b["__typename"] == "AdjustPointsPayload"
    assert r_b["member"]["points"] == 9

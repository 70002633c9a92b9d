# ruff: noqa: F811  (the `api` fixture is imported from tests.graphql_client)
"""Mutations over HTTP (ASGI): results, idempotent replay, key reuse, bad input, scopes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.graphql_client import (
    RECORD_ORDER,
    Api,
    api,  # noqa: F401  (fixture)
    new_member,
    new_order,
    order_input,
    upsert,
)

ADJUST = """
mutation($i: AdjustPointsInput!) { adjustPoints(input: $i) { __typename
  ... on AdjustPointsPayload { transfer { id amount kind reason } member { id points } }
  ... on InsufficientBalanceError { available requested }
  ... on InvalidInputError { field }
  ... on Error { code message } } }
"""
HOLD = """
mutation($i: HoldPointsInput!) { holdPoints(input: $i) { __typename
  ... on PointsHoldPayload { hold { id status amount captured member { id } } member { points
    balances { account available held } } }
  ... on InsufficientBalanceError { available requested }
  ... on InvalidInputError { field }
  ... on Error { code message } } }
"""
CAPTURE = """
mutation($i: CapturePointsHoldInput!) { capturePointsHold(input: $i) { __typename
  ... on PointsHoldPayload { hold { id status captured } transfer { id amount } member { points } }
  ... on HoldNotActiveError { status }
  ... on Error { code message } } }
"""
RELEASE = """
mutation($i: ReleasePointsHoldInput!) { releasePointsHold(input: $i) { __typename
  ... on PointsHoldPayload { hold { id status } member { points } }
  ... on HoldNotActiveError { status }
  ... on Error { code message } } }
"""
REFUND = """
mutation($i: RefundOrderInput!) { refundOrder(input: $i) { __typename
  ... on RefundOrderPayload { refundId amountFen status reversed { account amount }
    shortfall { account amount } order { id refundedFen status } }
  ... on Error { code message } } }
"""
MERGE = """
mutation($i: MergeMembersInput!) { mergeMembers(input: $i) { __typename
  ... on MergePayload { merge { id status reason } survivor { id points } loser { id status } }
  ... on Error { code message } } }
"""
UNMERGE = """
mutation($i: UnmergeMembersInput!) { unmergeMembers(input: $i) { __typename
  ... on MergePayload { merge { id status undoneAt } survivor { id } loser { id status } }
  ... on Error { code message } } }
"""


async def run(api: Api, doc: str, inp: dict[str, Any], key: str = "admin") -> dict[str, Any]:
    body = await api.gql(key, doc, {"i": inp})
    return next(iter(body["data"].values()))  # type: ignore[no-any-return]


async def test_upsert_member_creates_attaches_and_merges(api: Api) -> None:
    first = await upsert(
        api, "admin", "tmall", [{"kind": "tmall_ouid", "scope": "shop-1", "value": "ou-1"}]
    )
    assert first["created"] is True
    second = await upsert(
        api,
        "admin",
        "pos",
        [
            {"kind": "pos_card", "scope": "brand", "value": "880001"},
            {"kind": "phone", "value": "+86 139 0013 9000"},
        ],
    )
    assert second["created"] is True and second["member"]["id"] != first["member"]["id"]
    linked = await upsert(
        api,
        "admin",
        "wechat",
        [
            {"kind": "phone", "value": "13900139000"},
            {"kind": "tmall_ouid", "scope": "shop-1", "value": "ou-1"},
        ],
    )
    assert linked["created"] is False
    assert linked["member"]["id"] == first["member"]["id"]  # the oldest survives
    assert linked["mergedIds"] == [second["member"]["id"]]
    # the merged member's id resolves to the survivor; followMerges: false shows the record
    body = await api.gql(
        "read",
        """query($id: ID!) { a: member(id: $id) { id }
      b: member(id: $id, followMerges: false) {
        id status mergedInto { id } merges { status } } }""",
        {"id": second["member"]["id"]},
    )
    assert body["data"]["a"]["id"] == first["member"]["id"]
    assert body["data"]["b"]["status"] == "MERGED"
    assert body["data"]["b"]["mergedInto"]["id"] == first["member"]["id"]


async def test_record_and_refund_order_earn_and_reverse_points(api: Api) -> None:
    m = await new_member(api)
    order_id = await new_order(api, m, "T-1", paid_fen=20_000)
    body = await api.gql("read", "query($id: ID!) { member(id: $id) { points growth } }", {"id": m})
    assert body["data"]["member"] == {"points": 200, "growth": 200}
    r = await run(
        api,
        REFUND,
        {
            "orderId": order_id,
            "refundId": "RF-1",
            "amountFen": 10_000,
            "idempotencyKey": "refund-1",
        },
    )
    assert r["__typename"] == "RefundOrderPayload", r
    assert r["order"]["refundedFen"] == 10_000 and r["status"] == "PARTIALLY_REFUNDED"
    assert {x["account"]: x["amount"] for x in r["reversed"]} == {"points": 100, "growth": 100}
    again = await run(
        api,
        REFUND,
        {
            "orderId": order_id,
            "refundId": "RF-1",
            "amountFen": 10_000,
            "idempotencyKey": "refund-1",
        },
    )
    assert again == r


async def test_holds_capture_and_release(api: Api) -> None:
    m = await new_member(api)
    assert (await run(api, ADJUST, {"memberId": m, "amount": 500, "reason": "welcome"}))[
        "__typename"
    ] == "AdjustPointsPayload"
    h = await run(api, HOLD, {"memberId": m, "amount": 200, "reason": "POS"}, key="pos")
    assert h["__typename"] == "PointsHoldPayload", h
    assert h["member"]["points"] == 300
    held = {b["account"]: b["held"] for b in h["member"]["balances"]}
    assert held["points"] == 200
    c = await run(
        api, CAPTURE, {"holdId": h["hold"]["id"], "amount": 150, "reason": "tea"}, key="pos"
    )
    assert c["hold"]["status"] == "CAPTURED" and c["transfer"]["amount"] == -150
    assert c["member"]["points"] == 350
    again = await run(api, RELEASE, {"holdId": h["hold"]["id"], "reason": "undo"}, key="pos")
    assert again["__typename"] == "HoldNotActiveError" and again["status"] == "CAPTURED"
    h2 = await run(api, HOLD, {"memberId": m, "amount": 100, "reason": "POS"}, key="pos")
    rel = await run(api, RELEASE, {"holdId": h2["hold"]["id"], "reason": "cancelled"}, key="pos")
    assert rel["hold"]["status"] == "RELEASED" and rel["member"]["points"] == 350
    body = await api.gql(
        "read",
        "query($id: ID!) { pointsHold(id: $id) { status amount } }",
        {"id": h2["hold"]["id"]},
    )
    assert body["data"]["pointsHold"] == {"status": "RELEASED", "amount": 100}


async def test_adjust_points_debit_and_insufficient_balance(api: Api) -> None:
    m = await new_member(api)
    await run(api, ADJUST, {"memberId": m, "amount": 50, "reason": "gift"})
    r = await run(api, ADJUST, {"memberId": m, "amount": -80, "reason": "correction"})
    assert r["__typename"] == "InsufficientBalanceError"
    assert (r["available"], r["requested"], r["code"]) == (50, 80, "INSUFFICIENT_BALANCE")
    r = await run(api, ADJUST, {"memberId": m, "amount": -30, "reason": "correction"})
    assert r["transfer"]["amount"] == -30 and r["member"]["points"] == 20


async def test_merge_and_unmerge(api: Api) -> None:
    a = await new_member(api, phone="13700137000")
    b = await new_member(api, phone="13700137001")
    await run(api, ADJUST, {"memberId": b, "amount": 40, "reason": "gift"})
    r = await run(
        api,
        MERGE,
        {"survivorId": a, "loserId": b, "reason": "same person", "idempotencyKey": "merge-1"},
    )
    assert r["__typename"] == "MergePayload", r
    assert r["survivor"]["points"] == 40 and r["loser"]["status"] == "MERGED"
    u = await run(api, UNMERGE, {"mergeId": r["merge"]["id"], "reason": "different people"})
    assert u["merge"]["status"] == "UNMERGED" and u["loser"]["status"] == "ACTIVE"
    again = await run(api, UNMERGE, {"mergeId": r["merge"]["id"], "reason": "twice"})
    assert again["__typename"] in ("InvalidTransitionError", "NotFoundError"), again


# ---- idempotency ---------------------------------------------------------------------------------


async def _replays(
    api: Api, doc: str, inp: dict[str, Any], changed: dict[str, Any], key: str = "admin"
) -> None:
    first = await run(api, doc, inp, key)
    assert "code" not in first, first
    before = await api.counts(api.a)
    replay = await run(api, doc, inp, key)
    assert replay == first
    assert await api.counts(api.a) == before  # no extra write of any kind
    reused = await run(api, doc, {**inp, **changed}, key)
    assert reused["__typename"] == "IdempotencyKeyReusedError", reused
    assert reused["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await api.counts(api.a) == before


async def test_every_mutation_replays_with_its_idempotency_key(api: Api) -> None:
    m = await new_member(api, phone="13600136000")
    other = await new_member(api, phone="13600136001")
    await _replays(
        api,
        UPSERT_DOC,
        {
            "channel": "jd",
            "identifiers": [{"kind": "jd_open_id", "scope": "jd-shop", "value": "jd-1"}],
            "idempotencyKey": "u-1",
        },
        {"channel": "youzan"},
    )
    await _replays(
        api,
        RECORD_ORDER,
        {**order_input(m, "O-9"), "idempotencyKey": "o-1"},
        {"externalId": "O-10"},
    )
    await _replays(
        api,
        ADJUST,
        {"memberId": m, "amount": 300, "reason": "x", "idempotencyKey": "a-1"},
        {"amount": 301},
    )
    await _replays(
        api,
        HOLD,
        {"memberId": m, "amount": 100, "reason": "h", "idempotencyKey": "h-1"},
        {"amount": 99},
    )
    hold = (
        await run(api, HOLD, {"memberId": m, "amount": 100, "reason": "h", "idempotencyKey": "h-1"})
    )["hold"]["id"]
    await _replays(
        api,
        CAPTURE,
        {"holdId": hold, "amount": 60, "reason": "c", "idempotencyKey": "c-1"},
        {"amount": 61},
    )
    hold2 = (await run(api, HOLD, {"memberId": m, "amount": 10, "reason": "h2"}))["hold"]["id"]
    await _replays(
        api, RELEASE, {"holdId": hold2, "reason": "r", "idempotencyKey": "r-1"}, {"reason": "other"}
    )
    order = await new_order(api, m, "O-11")
    await _replays(
        api,
        REFUND,
        {"orderId": order, "refundId": "RF-9", "amountFen": 100, "idempotencyKey": "rf-1"},
        {"amountFen": 200},
    )
    await _replays(
        api,
        MERGE,
        {"survivorId": m, "loserId": other, "reason": "same", "idempotencyKey": "m-1"},
        {"reason": "different"},
    )
    merge_id = (
        await run(
            api,
            MERGE,
            {"survivorId": m, "loserId": other, "reason": "same", "idempotencyKey": "m-1"},
        )
    )["merge"]["id"]
    await _replays(
        api,
        UNMERGE,
        {"mergeId": merge_id, "reason": "oops", "idempotencyKey": "um-1"},
        {"reason": "other"},
    )


UPSERT_DOC = """
mutation($i: UpsertMemberInput!) { upsertMember(input: $i) { __typename
  ... on UpsertMemberPayload { created mergedIds member { id } }
  ... on InvalidInputError { field }
  ... on Error { code message } } }
"""


async def test_same_key_for_another_operation_is_refused(api: Api) -> None:
    m = await new_member(api)
    await run(api, ADJUST, {"memberId": m, "amount": 5, "reason": "x", "idempotencyKey": "k"})
    r = await run(api, HOLD, {"memberId": m, "amount": 5, "reason": "x", "idempotencyKey": "k"})
    assert r["__typename"] == "IdempotencyKeyReusedError"


# ---- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "inp", "typename", "field"),
    [
        (ADJUST, {"memberId": "not-an-id", "amount": 5, "reason": "x"}, "NotFoundError", None),
        (ADJUST, {"memberId": "T3JkZXI6MQ==", "amount": 5, "reason": "x"}, "NotFoundError", None),
        (ADJUST, {"memberId": "$M", "amount": 0, "reason": "x"}, "InvalidInputError", "amount"),
        (
            ADJUST,
            {"memberId": "$M", "amount": 2_000_000_000, "reason": "x"},
            "InvalidInputError",
            "amount",
        ),
        (
            ADJUST,
            {"memberId": "$M", "amount": 5, "reason": "x" * 201},
            "InvalidInputError",
            "reason",
        ),
        (
            ADJUST,
            {"memberId": "$M", "amount": 5, "reason": "x", "account": "gold"},
            "InvalidInputError",
            "account",
        ),
        (
            ADJUST,
            {"memberId": "$M", "amount": 5, "reason": "x", "idempotencyKey": "k" * 97},
            "InvalidInputError",
            "idempotencyKey",
        ),
        (HOLD, {"memberId": "$M", "amount": -5, "reason": "x"}, "InvalidInputError", "amount"),
        (
            HOLD,
            {"memberId": "$M", "amount": 5, "reason": "x", "ttlSeconds": 10**7},
            "InvalidInputError",
            "ttlSeconds",
        ),
        (CAPTURE, {"holdId": "bm9wZQ==", "reason": "x"}, "NotFoundError", None),
        (REFUND, {"orderId": "garbage", "refundId": "r", "amountFen": 1}, "NotFoundError", None),
        (
            UPSERT_DOC,
            {"channel": "wechat", "identifiers": [{"kind": "shoe_size", "value": "42"}]},
            "InvalidInputError",
            "kind",
        ),
        (
            UPSERT_DOC,
            {"channel": "wechat", "identifiers": [{"kind": "phone", "value": "12345"}]},
            "InvalidInputError",
            "value",
        ),
        (UPSERT_DOC, {"channel": "wechat", "identifiers": []}, "InvalidInputError", "identifiers"),
        (
            UPSERT_DOC,
            {"channel": "wechat", "identifiers": [{"kind": "phone", "value": "1" * 500}]},
            "InvalidInputError",
            "value",
        ),
        (
            UPSERT_DOC,
            {"channel": "x" * 100, "identifiers": [{"kind": "phone", "value": "13800138000"}]},
            "InvalidInputError",
            "channel",
        ),
        (
            UPSERT_DOC,
            {
                "channel": "wechat",
                "identifiers": [{"kind": "phone", "value": "13800138000"}],
                "profile": {"name": "n" * 5000},
            },
            "InvalidInputError",
            None,
        ),
        (
            RECORD_ORDER,
            {**order_input(None, "BAD-1"), "totalFen": -1},
            "InvalidInputError",
            "totalFen",
        ),
        (RECORD_ORDER, order_input("bogus", "BAD-2"), "NotFoundError", None),
    ],
)
async def test_bad_input_is_typed_and_writes_nothing(
    api: Api, doc: str, inp: dict[str, Any], typename: str, field: str | None
) -> None:
    m = await new_member(api)
    inp = {k: (m if v == "$M" else v) for k, v in inp.items()}
    before = await api.counts(api.a)
    r = await run(api, doc, inp)
    assert r["__typename"] == typename, r
    assert r["message"] and r["code"]
    if field is not None:
        assert r["field"] == field
    assert await api.counts(api.a) == before


async def test_int_overflow_is_a_readable_graphql_error(api: Api) -> None:
    m = await new_member(api)
    body = await api.gql(
        "admin", ADJUST, {"i": {"memberId": m, "amount": 10**12, "reason": "x"}}, errors=True
    )
    assert "Int cannot represent" in body["errors"][0]["message"]


# ---- scopes ------------------------------------------------------------------------------------


async def test_scopes(api: Api) -> None:
    m = await new_member(api)
    r = await run(api, ADJUST, {"memberId": m, "amount": 5, "reason": "x"}, key="read")
    assert r["__typename"] == "PermissionDeniedError" and r["code"] == "PERMISSION_DENIED"
    r = await run(
        api,
        UPSERT_DOC,
        {"channel": "pos", "identifiers": [{"kind": "phone", "value": "13800138001"}]},
        key="read",
    )
    assert r["__typename"] == "PermissionDeniedError"
    r = await run(api, HOLD, {"memberId": m, "amount": 5, "reason": "x"}, key="connector")
    assert r["__typename"] == "PermissionDeniedError"
    r = await run(api, ADJUST, {"memberId": m, "amount": 5, "reason": "x"}, key="pos")
    assert r["__typename"] == "PermissionDeniedError"
    r = await run(
        api,
        UPSERT_DOC,
        {"channel": "pos", "identifiers": [{"kind": "phone", "value": "13800138001"}]},
        key="connector",
    )
    assert r["__typename"] == "UpsertMemberPayload"
    # a connector key cannot read
    body = await api.gql("connector", "{ members { edges { cursor } } }", errors=True)
    assert body["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED"
    body = await api.gql("connector", "{ viewer { scopes } }")
    assert body["data"]["viewer"]["scopes"] == ["connector"]

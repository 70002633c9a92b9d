# ruff: noqa: F811  (the `api` fixture is imported from tests.graphql_client)
"""GraphQL for tags and segments over real HTTP: join scenes on upsertMember, tagging (admin
only, idempotent), Member.tags / Member.segments batched, segment create / preview / refresh /
members pages, typed errors (invalid filter paths, unknown segment, static vs dynamic), and
tenant B seeing none of it."""

from __future__ import annotations

from typing import Any

from tests.graphql_client import (
    Api,
    StatementCounter,
    api,  # noqa: F401  (fixture)
    upsert,
)

TAG = """mutation($input: TagMembersInput!) { tagMembers(input: $input) {
  __typename ... on TagMembersPayload { changed } ... on Error { code message }
  ... on InvalidInputError { field } } }"""
UNTAG = TAG.replace("tagMembers", "untagMembers")
CREATE = """mutation($input: CreateSegmentInput!) { createSegment(input: $input) {
  __typename ... on SegmentChangePayload { entered left segment { code dynamic memberCount } }
  ... on SegmentFilterInvalidError { problems { path message } }
  ... on NotEligibleError { reason } ... on Error { code message } } }"""
REFRESH = """mutation($code: String!) { refreshSegment(code: $code) {
  __typename ... on SegmentChangePayload { entered left segment { memberCount refreshedAt } }
  ... on NotEligibleError { reason } ... on Error { code message } } }"""
ADD = """mutation($input: SegmentMembersInput!) { addSegmentMembers(input: $input) {
  __typename ... on SegmentChangePayload { entered segment { memberCount } }
  ... on NotEligibleError { reason } ... on Error { code } } }"""
PREVIEW = """query($f: JSON!) { previewSegment(filter: $f) {
  __typename ... on SegmentPreview { count }
  ... on SegmentFilterInvalidError { problems { path } } ... on Error { code } } }"""
SEGMENT = """query($code: String!, $after: String) { segment(code: $code) {
  code memberCount members(first: 2, after: $after) {
    pageInfo { hasNextPage endCursor } nodes { id tags { tag source createdBy }
    segments { code } } } } }"""
MEMBERS_TAGS = """{ members(first: 50) { nodes { id tags { tag } segments { code } } } }"""


async def run(api: Api, key: str, query: str, field: str, **variables: Any) -> Any:
    return (await api.gql(key, query, variables))["data"][field]


async def test_scene_tags_tagging_and_segments(api: Api) -> None:
    ids = []
    for i, scene in enumerate(
        [{"kind": "STORE_QR", "ref": "S001"}, {"kind": "LIVE", "ref": "room1"}, None]
    ):
        extra = {"scene": scene} if scene else {}
        got = await upsert(
            api, "admin", "wechat", [{"kind": "phone", "value": f"1380013800{i}"}], **extra
        )
        ids.append(got["member"]["id"])
    denied = await run(api, "read", TAG, "tagMembers", input={"memberIds": ids, "tags": ["vip"]})
    assert denied["code"] == "PERMISSION_DENIED"
    bad = await run(api, "admin", TAG, "tagMembers", input={"memberIds": ids, "tags": [""]})
    assert bad["__typename"] == "InvalidInputError"
    ok = await run(api, "admin", TAG, "tagMembers", input={"memberIds": ids[:2], "tags": ["VIP"]})
    again = await run(
        api, "admin", TAG, "tagMembers", input={"memberIds": ids[:2], "tags": ["vip"]}
    )
    assert (ok["changed"], again["changed"]) == (2, 0)
    counts = {
        t["tag"]: t["members"] for t in await run(api, "read", "{ tags { tag members } }", "tags")
    }
    assert counts == {
        "vip": 2,
        "scene:store_qr": 1,
        "store:s001": 1,
        "scene:live": 1,
        "live:room1": 1,
    }

    problems = await run(
        api,
        "admin",
        CREATE,
        "createSegment",
        input={"code": "x", "title": "X", "filter": {"tags": {"any": [""]}, "spend": {}}},
    )
    assert problems["__typename"] == "SegmentFilterInvalidError"
    assert {p["path"] for p in problems["problems"]} == {"filter.tags.any[0]", "filter.spend"}
    flt = {"tags": {"any": ["vip"]}}
    assert (await run(api, "read", PREVIEW, "previewSegment", f=flt))["count"] == 2
    made = await run(
        api,
        "admin",
        CREATE,
        "createSegment",
        input={"code": "vip", "title": "VIP", "filter": flt, "dynamic": True},
    )
    assert (made["entered"], made["segment"]["memberCount"]) == (2, 1 + 1)
    await run(api, "admin", TAG, "tagMembers", input={"memberIds": ids[2:], "tags": ["vip"]})
    await run(api, "admin", UNTAG, "untagMembers", input={"memberIds": ids[:1], "tags": ["vip"]})
    refreshed = await run(api, "admin", REFRESH, "refreshSegment", code="vip")
    assert (refreshed["entered"], refreshed["left"]) == (1, 1)
    missing = await run(api, "admin", REFRESH, "refreshSegment", code="nope")
    assert missing["code"] == "NOT_FOUND"
    static = await run(
        api, "admin", ADD, "addSegmentMembers", input={"code": "vip", "memberIds": ids[:1]}
    )
    assert static["reason"] == "DYNAMIC_SEGMENT"

    page1 = (await run(api, "read", SEGMENT, "segment", code="vip"))["members"]
    assert page1["pageInfo"]["hasNextPage"] is False
    assert sorted(n["id"] for n in page1["nodes"]) == sorted(ids[1:])
    node = next(n for n in page1["nodes"] if n["id"] == ids[1])
    assert {t["tag"] for t in node["tags"]} == {"vip", "scene:live", "live:room1"}
    assert node["segments"] == [{"code": "vip"}]
    # Member.tags and Member.segments are batched: the same statements for 1 or 3 members.
    with StatementCounter(api.hub.db) as c1:
        await api.gql("read", MEMBERS_TAGS.replace("50", "1"))
    with StatementCounter(api.hub.db) as c3:
        body = await api.gql("read", MEMBERS_TAGS)
    assert len(c3.queries) == len(c1.queries)
    assert len(body["data"]["members"]["nodes"]) == 3
    # Tenant B sees nothing of it.
    assert await run(api, "b_admin", "{ tags { tag } }", "tags") == []
    assert await run(api, "b_admin", SEGMENT, "segment", code="vip") is None
    assert (await run(api, "b_admin", PREVIEW, "previewSegment", f=flt))["count"] == 0


MEMBERS_FILTERED = """query($f: MemberFilterInput) { members(first: 50, filter: $f) {
  nodes { id } } }"""


async def test_members_list_takes_a_segment_filter_and_segment_membership(api: Api) -> None:
    ids = []
    for i in range(4):
        got = await upsert(api, "admin", "pos", [{"kind": "phone", "value": f"1390013900{i}"}])
        ids.append(got["member"]["id"])
    await run(api, "admin", TAG, "tagMembers", input={"memberIds": ids[:3], "tags": ["vip"]})
    await run(api, "admin", TAG, "tagMembers", input={"memberIds": ids[1:], "tags": ["tea"]})

    async def listed(key: str, f: dict[str, Any]) -> list[str]:
        body = await api.gql(key, MEMBERS_FILTERED, {"f": f})
        assert "errors" not in body, body
        return [n["id"] for n in body["data"]["members"]["nodes"]]

    vip = {"tags": {"any": ["vip"]}}
    assert await listed("read", {"segment": vip}) == ids[:3]
    both = {"tags": {"all": ["vip", "tea"]}}
    assert await listed("read", {"segment": both}) == ids[1:3]
    made = await run(
        api, "admin", CREATE, "createSegment", input={"code": "vips", "title": "V", "filter": vip}
    )
    assert made["segment"]["memberCount"] == 3
    # Static snapshot: a later tag does not add anyone; the filter narrows the segment further.
    await run(api, "admin", TAG, "tagMembers", input={"memberIds": ids[3:], "tags": ["vip"]})
    assert await listed("read", {"inSegment": "vips"}) == ids[:3]
    assert (
        await listed("read", {"inSegment": "vips", "segment": {"tags": {"any": ["tea"]}}})
        == (ids[1:3])
    )
    # Tenant B: the same filter and segment code find nothing of A's.
    assert await listed("b_admin", {"segment": vip}) == []
    body = await api.gql("b_admin", MEMBERS_FILTERED, {"f": {"inSegment": "vips"}}, errors=True)
    assert body["data"] is None or body["data"]["members"] is None
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    bad = await api.gql(
        "read", MEMBERS_FILTERED, {"f": {"segment": {"tags": {"any": 5}}}}, errors=True
    )
    assert bad["errors"][0]["extensions"]["code"] == "FILTER_INVALID"


async def test_a_connector_key_cannot_page_segments_or_read_coupon_codes(api: Api) -> None:
    """A connector may upsert a member, and the payload's Member is reachable — but not the
    other members of that member's segments, nor the member's coupon codes (bearer secrets)."""
    m = (await upsert(api, "admin", "pos", [{"kind": "phone", "value": "13700137000"}]))["member"]
    await run(api, "admin", TAG, "tagMembers", input={"memberIds": [m["id"]], "tags": ["vip"]})
    made = await run(
        api,
        "admin",
        CREATE,
        "createSegment",
        input={"code": "vip", "title": "V", "filter": {"tags": {"any": ["vip"]}}},
    )
    assert made["segment"]["memberCount"] == 1
    probe = """mutation($i: UpsertMemberInput!) { upsertMember(input: $i) {
      ... on UpsertMemberPayload { member { id %s } } } }"""
    inp = {"i": {"channel": "pos", "identifiers": [{"kind": "phone", "value": "13700137000"}]}}
    for selection in ("segments { members { nodes { id } } }", "coupons { code }"):
        body = await api.gql("connector", probe % selection, inp, errors=True)
        assert body["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED", body
    # The till and readers still can.
    ok = await api.gql("pos", probe % "coupons { code } segments { code }", inp)
    assert ok["data"]["upsertMember"]["member"]["segments"] == [{"code": "vip"}]
    read = await api.gql("read", '{ segment(code: "vip") { members { nodes { id } } } }')
    assert read["data"]["segment"]["members"]["nodes"] == [{"id": m["id"]}]

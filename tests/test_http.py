# ruff: noqa: F811  (the `api` fixture is imported from tests.graphql_client)
"""The HTTP surface: auth (401), health and readiness, GraphiQL, error masking, query limits,
introspection switch, and one end-to-end run over real loopback HTTP (uvicorn)."""

from __future__ import annotations

import httpx
import pytest

from gateway.app import create_app
from gateway.hub import Hub
from gateway.storage.db import Database
from gateway.tenants import TenantInfo
from tests.graphql_client import (
    Api,
    api,  # noqa: F401  (fixture)
    api_settings,
    free_port,
    make_api,
    new_member,
    serve_in_thread,
)


async def test_401_without_or_with_a_bad_key(api: Api) -> None:
    for key in (None, "nope", "mhk_" + "0" * 32 + "_" + "x" * 43, api.keys["admin"] + "x"):
        resp = await api.post(key, "{ viewer { scopes } }")
        assert resp.status_code == 401
        assert resp.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    resp = await api.client.post(
        "/graphql", json={"query": "{ viewer { scopes } }"}, headers={"Authorization": "Basic abc"}
    )
    assert resp.status_code == 401


async def test_post_graphql_is_not_redirected(api: Api) -> None:
    resp = await api.post(api.keys["read"], "{ viewer { scopes } }")
    assert resp.status_code == 200 and resp.json()["data"]["viewer"]["scopes"] == ["read"]


async def test_health_and_readiness(api: Api) -> None:
    resp = await api.client.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    resp = await api.client.get("/readyz")
    assert resp.status_code == 200 and resp.json()["status"] == "ready"


async def test_readyz_reports_an_unmigrated_database(tmp_path, tenant: TenantInfo) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    db = Database.from_url(url)
    app = create_app(hub=Hub(api_settings(url), db))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        resp = await client.get("/readyz")
    await db.dispose()
    assert resp.status_code == 503


async def test_graphiql_page_needs_no_key(api: Api) -> None:
    resp = await api.client.get("/graphql", headers={"Accept": "text/html"})
    assert resp.status_code == 200 and "graphiql" in resp.text.lower()
    resp = await api.client.get("/graphql", params={"query": "{ viewer { scopes } }"})
    assert resp.status_code == 401


async def test_unexpected_errors_are_masked(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import members

    async def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("secret database detail")

    m = await new_member(api)
    monkeypatch.setattr(members, "get_members", boom)
    # loaders bind the function at construction, so patch the loader module's reference too
    import schema.loaders as loaders

    monkeypatch.setattr(loaders.members, "get_members", boom)
    body = await api.gql(
        "read", "query($id: ID!) { member(id: $id) { id } }", {"id": m}, errors=True
    )
    assert body["errors"][0]["message"] == "Unexpected error."
    assert "secret" not in str(body)


async def test_syntax_and_validation_errors_stay_readable(api: Api) -> None:
    body = await api.gql("read", "{ members { nodes { nope } } }", errors=True)
    assert "Cannot query field 'nope'" in body["errors"][0]["message"]
    body = await api.gql("read", "{ members(", errors=True)
    assert "Syntax Error" in body["errors"][0]["message"]


async def test_depth_and_alias_limits(api: Api) -> None:
    deep = (
        "{ members { nodes { mergedInto { mergedInto { mergedInto { mergedInto { mergedInto"
        " { mergedInto { mergedInto { mergedInto { mergedInto { id } } } } } } } } } } } }"
    )
    body = await api.gql("read", deep, errors=True)
    assert "exceeds maximum operation depth" in body["errors"][0]["message"]
    aliases = "{ " + " ".join(f"a{i}: viewer {{ scopes }}" for i in range(40)) + " }"
    body = await api.gql("read", aliases, errors=True)
    assert "aliases" in body["errors"][0]["message"].lower()
    tokens = "{ " + " ".join("viewer { scopes }" for _ in range(600)) + " }"
    body = await api.gql("read", tokens, errors=True)
    assert "token" in body["errors"][0]["message"].lower()


async def test_introspection_can_be_disabled(
    db: Database, database_url: str, tenant: TenantInfo, other_tenant: TenantInfo
) -> None:
    q = "{ __schema { queryType { name } } }"
    async with make_api(db, database_url, tenant, other_tenant) as on:
        assert (await on.gql("read", q))["data"]["__schema"]["queryType"]["name"] == "Query"
    async with make_api(db, database_url, tenant, other_tenant, introspection=False) as off:
        body = await off.gql("read", q, errors=True)
        assert "introspection" in body["errors"][0]["message"].lower()


async def test_auth_cache_serves_verified_keys_only(api: Api) -> None:
    await api.post(api.keys["read"], "{ viewer { scopes } }")
    assert len(api.hub.auth_cache._entries) == 1
    await api.post("mhk_bogus", "{ viewer { scopes } }")
    assert len(api.hub.auth_cache._entries) == 1


def test_real_loopback_http(database_url: str, tmp_path) -> None:
    """uvicorn on 127.0.0.1, plain httpx: auth, a write and a read, two tenants."""
    import asyncio
    import uuid

    from gateway.auth import create_api_key
    from gateway.tenants import create_tenant

    async def setup() -> tuple[str, str]:
        db = Database.from_url(database_url)
        try:
            tag = uuid.uuid4().hex[:10]
            a = await create_tenant(db, name="Loop A", slug=f"loop-a-{tag}")
            b = await create_tenant(db, name="Loop B", slug=f"loop-b-{tag}")
            ka = await create_api_key(db, a.id, name="a", scopes="admin")
            kb = await create_api_key(db, b.id, name="b", scopes="admin")
            return ka.plaintext, kb.plaintext
        finally:
            await db.dispose()

    key_a, key_b = asyncio.run(setup())
    app = create_app(api_settings(database_url))
    with serve_in_thread(app, free_port()) as base:
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/healthz").status_code == 200
            assert (
                client.post("/graphql", json={"query": "{ viewer { scopes } }"}).status_code == 401
            )
            hdr = {"Authorization": f"Bearer {key_a}"}
            resp = client.post(
                "/graphql",
                headers=hdr,
                json={
                    "query": """mutation {
                upsertMember(input: {channel: "pos", identifiers: [{kind: "phone",
                value: "13800138000"}]}) { ... on UpsertMemberPayload { member { id } } } }"""
                },
            )
            assert resp.status_code == 200, resp.text
            mid = resp.json()["data"]["upsertMember"]["member"]["id"]
            q = {
                "query": "query($id: ID!) { member(id: $id) { id points } }",
                "variables": {"id": mid},
            }
            assert (
                client.post("/graphql", headers=hdr, json=q).json()["data"]["member"]["id"] == mid
            )
            other = client.post("/graphql", headers={"Authorization": f"Bearer {key_b}"}, json=q)
            assert other.json()["data"]["member"] is None
            assert client.get("/readyz").status_code == 200

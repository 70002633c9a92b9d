"""GraphQL for channels and syncs: configure a channel, start a sync, watch it finish — with two
tenants, secrets that never come back, and admin-only writes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.pos.harness import PosHarness
from connectors.testing import World
from gateway.sync import RetryPolicy
from gateway.sync.runner import SyncRunner
from tests.graphql_client import Api, make_api

CONFIGURE = """
mutation($i: ConfigureChannelInput!) { configureChannel(input: $i) { __typename
  ... on ConfigureChannelPayload { channel { channel connector config secrets enabled } }
  ... on Error { code message }
  ... on InvalidInputError { field } } }
"""
START = """
mutation($i: StartSyncInput!) { startSync(input: $i) { __typename
  ... on StartSyncPayload { run { id status channel trigger } }
  ... on Error { code message } } }
"""
RUN = """
query($id: ID!) { syncRun(id: $id) { id status finishedAt errorCount
  streams { stream read created rejected done total finished progress }
  http { requests retries } errors { stream key message } } }
"""
RUNS = """
query($c: String) { syncRuns(channel: $c, first: 10) { edges { cursor node { id status } }
  pageInfo { hasNextPage } } }
"""


@pytest.fixture
async def api(db: Any, database_url: str, tenant: Any, other_tenant: Any) -> Any:
    async with make_api(db, database_url, tenant, other_tenant) as client:
        yield client


def _world() -> World:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=4)
    return World.generate(seed=11, people=20, orders=80, channels=("pos",), start=start, days=3)


async def _configure(api: Api, key: str, config: dict[str, Any], channel: str = "pos") -> Any:
    body = await api.gql(
        key, CONFIGURE, {"i": {"channel": channel, "connector": "pos", "config": config}}
    )
    return body["data"]["configureChannel"]


async def test_configure_start_and_watch_a_sync(api: Api) -> None:
    api.hub.sync = SyncRunner(api.hub, policy=RetryPolicy(attempts=8, backoff=0.01, timeout=1))
    harness = PosHarness()
    w = _world()
    async with harness.make_fake(w) as fake:
        config = {**harness.config(fake), "start_date": w.start.date().isoformat()}
        res = await _configure(api, "admin", config)
        assert res["__typename"] == "ConfigureChannelPayload", res
        ch = res["channel"]
        secret = fake.app_secret
        assert set(ch["secrets"]) and all(v == "set" for v in ch["secrets"].values())
        assert secret not in str(res) and not set(ch["secrets"]) & set(ch["config"])

        started = (await api.gql("admin", START, {"i": {"channel": "pos"}}))["data"]["startSync"]
        assert started["__typename"] == "StartSyncPayload", started
        run = started["run"]
        assert (run["status"], run["trigger"]) == ("RUNNING", "api")

        again = (await api.gql("admin", START, {"i": {"channel": "pos"}}))["data"]["startSync"]
        assert again["__typename"] == "InvalidTransitionError"

        for _ in range(200):
            got = (await api.gql("read", RUN, {"id": run["id"]}))["data"]["syncRun"]
            if got["status"] != "RUNNING":
                break
            await asyncio.sleep(0.05)
        assert got["status"] == "SUCCEEDED", got
        streams = {s["stream"]: s for s in got["streams"]}
        tickets = streams["tickets"]
        assert tickets["finished"] and tickets["progress"] == 1.0
        sold = [o for o in w.orders["pos"] if o.status in ("paid", "completed", "cancelled")]
        assert tickets["created"] >= len(sold) > 0
        assert got["http"]["requests"] >= tickets["total"]

        runs = (await api.gql("read", RUNS, {"c": "pos"}))["data"]["syncRuns"]
        assert [e["node"]["id"] for e in runs["edges"]] == [run["id"]]

        # The other tenant sees none of it.
        assert (await api.gql("b_admin", RUN, {"id": run["id"]}))["data"]["syncRun"] is None
        b_runs = (await api.gql("b_admin", RUNS, {"c": None}))["data"]["syncRuns"]
        assert b_runs["edges"] == []
        b_channels = await api.gql("b_admin", "{ channels { channel } }")
        assert b_channels["data"]["channels"] == []
        b_start = (await api.gql("b_admin", START, {"i": {"channel": "pos"}}))["data"]
        assert b_start["startSync"]["__typename"] == "NotFoundError"


async def test_only_admin_keys_configure_or_start(api: Api) -> None:
    for key in ("read", "pos", "connector"):
        res = await _configure(api, key, {"brand_scope": "b"})
        assert res["__typename"] == "PermissionDeniedError", res
        start = (await api.gql(key, START, {"i": {"channel": "pos"}}))["data"]["startSync"]
        assert start["__typename"] == "PermissionDeniedError"
    assert (await api.gql("admin", "{ channels { channel } }"))["data"]["channels"] == []


async def test_invalid_configuration_is_a_typed_error_and_nothing_is_stored(api: Api) -> None:
    res = await _configure(api, "admin", {"brand_scope": "b", "no_such_option": True})
    assert res["__typename"] == "InvalidInputError"
    body = await api.gql(
        "admin",
        CONFIGURE,
        {"i": {"channel": "x", "connector": "no_such_connector", "config": {}}},
    )
    err = body["data"]["configureChannel"]
    assert (err["__typename"], err["field"]) == ("InvalidInputError", "connector")
    assert "pos" in err["message"]  # lists what is installed
    assert (await api.gql("admin", "{ channels { channel } }"))["data"]["channels"] == []


async def test_installed_connectors_are_listed_with_secret_fields_and_webhooks(api: Api) -> None:
    body = await api.gql("read", "{ connectors { name secretFields webhooks configSchema } }")
    by_name = {c["name"]: c for c in body["data"]["connectors"]}
    assert {"tmall", "jd", "douyin", "youzan", "wechat", "pos"} <= set(by_name)
    assert "app_secret" in by_name["tmall"]["secretFields"]
    assert set(by_name["tmall"]["webhooks"]) == {"member_query", "member_bind", "member_register"}
    assert by_name["pos"]["configSchema"]["type"] == "object"

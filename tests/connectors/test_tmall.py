"""Tmall / Taobao (TOP) connector against its fake gateway."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import connectors.tmall as tmall_plugin
from connectors.testing.fake import Faults
from connectors.testing.world import World, WorldOrder
from connectors.tmall import mapping
from connectors.tmall.client import error_from_envelope
from connectors.tmall.connector import TmallConnector
from connectors.tmall.fake import TmallFake, tid_for
from connectors.tmall.harness import TmallHarness
from connectors.tmall.signing import (
    CST,
    format_time,
    parse_time,
    parse_timestamp_param,
    sign,
    string_to_sign,
)
from connectors.tmall.streams import OrdersStream
from connectors.tmall.webhooks import member_bind, member_query, member_register
from gateway.identifiers import KINDS
from gateway.sync import (
    ApplyOutcome,
    Checkpoint,
    ConnectorContext,
    MemberView,
    Partition,
    PlatformHttp,
    RateLimiter,
    RecordError,
    RetryPolicy,
)
from gateway.sync.errors import (
    AuthFailed,
    PlatformError,
    RateLimited,
    TokenExpired,
    TransientError,
)
from gateway.sync.http import Request
from gateway.sync.records import record_key
from gateway.sync.registry import load_connectors

VECTORS = Path(__file__).parents[2].parent / "shared/channels/signing_vectors.json"
HARNESS = TmallHarness()
ALGORITHMS = {"T1": "md5", "T2": "hmac", "T4": "hmac", "T5": "hmac-sha256"}


def _top_vectors() -> list[dict[str, Any]]:
    if not VECTORS.exists():
        return []
    data = json.loads(VECTORS.read_text())
    return [v for v in data["vectors"] if v["platform"] == "taobao_top"]


# -- helpers ------------------------------------------------------------------------------------


def make_world() -> World:
    return World.generate(seed=7, people=40, orders=240, days=6)


class Secrets:
    def __init__(self) -> None:
        self.saved: list[dict[str, str]] = []

    async def __call__(self, values: Mapping[str, str]) -> None:
        self.saved.append(dict(values))


@asynccontextmanager
async def running(
    world: World,
    *,
    faults: Faults | None = None,
    clock: Any = None,
    config: Mapping[str, Any] | None = None,
    attempts: int = 8,
):
    fake = HARNESS.make_fake(world, faults)
    async with fake:
        secrets = Secrets()
        ctx = ConnectorContext(
            channel="tmall",
            http=PlatformHttp(
                RateLimiter(1000, 1000), RetryPolicy(attempts=attempts, backoff=0.01, timeout=0.5)
            ),
            save_secrets=secrets,
        )
        if clock is not None:
            ctx.clock = clock
        cfg = {**HARNESS.config(fake), **(config or {})}
        conn = TmallConnector(cfg, ctx)
        try:
            yield fake, conn, secrets
        finally:
            await conn.close()


def partition(world: World, until: datetime | None = None) -> Partition:
    return Partition("default", until=until or world.end, since=world.start - timedelta(hours=1))


async def read_stream(conn: TmallConnector, name: str, part: Partition, state: Any = None):
    stream = next(s for s in conn.streams() if s.name == name)
    records, checkpoints = [], []
    async for item in stream.read(part, state):
        if isinstance(item, Checkpoint):
            checkpoints.append((len(records), item))
        else:
            records.append(item)
    return records, checkpoints


async def read_all(conn: TmallConnector, part: Partition) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for stream in conn.streams():
        records, _ = await read_stream(conn, stream.name, part)
        out[stream.name] = {record_key(r): r.to_json() for r in records}
    return out


def expected_order(o: WorldOrder) -> dict[str, Any]:
    return {
        "status": o.status,
        "placed_at": o.created,
        "paid_at": o.paid_at,
        "total_fen": o.total_fen,
        "paid_fen": o.paid_fen,
        "lines": [(ln.sku, ln.name, ln.quantity, ln.unit_fen, ln.amount_fen) for ln in o.lines],
        "buyer": {
            ("tmall_ouid", HARNESS.shop_id, o.person.tmall_ouid),
            ("taobao_open_uid", "test-app", o.person.tmall_open_uid),
        },
    }


def actual_order(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": r["status"],
        "placed_at": datetime.fromisoformat(r["placed_at"]),
        "paid_at": datetime.fromisoformat(r["paid_at"]) if r["paid_at"] else None,
        "total_fen": r["total_fen"],
        "paid_fen": r["paid_fen"],
        "lines": [
            (ln["sku"], ln["name"], ln["quantity"], ln["unit_price_fen"], ln["amount_fen"])
            for ln in r["lines"]
        ],
        "buyer": {(i["kind"], i["scope"], i["value"]) for i in r["buyer"]},
    }


# -- signing ------------------------------------------------------------------------------------


@pytest.mark.skipif(not VECTORS.exists(), reason=f"golden vectors file missing: {VECTORS}")
@pytest.mark.parametrize("vector", _top_vectors(), ids=lambda v: v["id"])
def test_golden_vectors(vector: dict[str, Any]) -> None:
    algorithm = ALGORITHMS[vector["id"]]
    assert sign(vector["params"], vector["secret"], algorithm) == vector["expected"]
    concat = string_to_sign(vector["params"])
    if algorithm == "md5":
        concat = vector["secret"] + concat + vector["secret"]
    assert concat == vector["signed_string"]


def test_all_top_vectors_present() -> None:
    if not VECTORS.exists():
        pytest.skip(f"golden vectors file missing: {VECTORS}")
    assert {v["id"] for v in _top_vectors()} == set(ALGORITHMS)


def test_signing_rules() -> None:
    params = {"b": "2", "a": "1", "empty": "", "sign": "XX"}
    assert string_to_sign(params) == "a1b2"
    assert string_to_sign(params, '{"x":1}') == 'a1b2{"x":1}'
    assert len(sign(params, "s", "hmac-sha256")) == 64
    assert sign(params, "s", "md5") == sign({"a": "1", "b": "2"}, "s", "md5")
    with pytest.raises(ValueError):
        sign(params, "s", "sha1")


def test_times_are_gmt8() -> None:
    at = datetime(2026, 10, 1, 16, 0, 0, tzinfo=UTC)
    assert format_time(at) == "2026-10-02 00:00:00"
    assert parse_time("2026-10-02 00:00:00") == at
    assert parse_time("2026-10-02 00:00:00").tzinfo is not None
    assert parse_timestamp_param(str(int(at.timestamp() * 1000))) == at
    assert parse_timestamp_param("2026-10-02 00:00:00").astimezone(CST).hour == 0


# -- mapping ------------------------------------------------------------------------------------


def test_money_is_exact() -> None:
    assert mapping.yuan_to_fen("200.07") == 20007
    assert mapping.yuan_to_fen("0.1") == 10
    assert mapping.yuan_to_fen("19.99") == 1999  # float(19.99) * 100 == 1998.9999…
    assert mapping.yuan_to_fen("") == 0
    with pytest.raises(RecordError):
        mapping.yuan_to_fen("1.005")
    with pytest.raises(RecordError):
        mapping.yuan_to_fen("abc")


@pytest.mark.parametrize(
    ("status", "pay_time", "canonical"),
    [
        ("WAIT_BUYER_PAY", None, "created"),
        ("TRADE_NO_CREATE_PAY", None, "created"),
        ("PAY_PENDING", None, "created"),
        ("WAIT_SELLER_SEND_GOODS", "2026-10-01 10:00:00", "paid"),
        ("SELLER_CONSIGNED_PART", "2026-10-01 10:00:00", "paid"),
        ("WAIT_BUYER_CONFIRM_GOODS", "2026-10-01 10:00:00", "paid"),
        ("TRADE_BUYER_SIGNED", "2026-10-01 10:00:00", "paid"),
        ("PAID_FORBID_CONSIGN", "2026-10-01 10:00:00", "paid"),
        ("WAIT_PRE_AUTH_CONFIRM", "2026-10-01 10:00:00", "paid"),
        ("TRADE_FINISHED", "2026-10-01 10:00:00", "completed"),
        ("TRADE_CLOSED_BY_TAOBAO", None, "cancelled"),
        ("TRADE_CLOSED", None, "cancelled"),
        ("TRADE_CLOSED", "2026-10-01 10:00:00", "paid"),  # closed after a full refund
    ],
)
def test_status_mapping(status: str, pay_time: str | None, canonical: str) -> None:
    trade = {
        "tid": 123,
        "status": status,
        "created": "2026-10-01 09:00:00",
        "modified": "2026-10-01 11:00:00",
        "payment": "10.00",
        "buyer_open_uid": "AAEx",
        "receiver_mobile": "~enc~1~",
    }
    if pay_time:
        trade["pay_time"] = pay_time
    record = mapping.map_trade(trade, shop_id="1", app_key="k")
    assert record.status == canonical
    assert record.paid_fen == (1000 if canonical in ("paid", "completed") else 0)
    assert [i.kind for i in record.buyer] == ["taobao_open_uid"]  # never the receiver


def test_unknown_status_is_a_mapping_error() -> None:
    with pytest.raises(RecordError):
        mapping.canonical_status({"status": "SOMETHING_NEW"})


def test_refund_mapping_counts_success_only() -> None:
    base = {"refund_id": "1", "tid": 70000000001, "refund_fee": "12.30"}
    base["modified"] = "2026-10-01 12:00:00"
    assert mapping.map_refund({**base, "status": "WAIT_SELLER_AGREE"}) is None
    assert mapping.map_refund({**base, "status": "CLOSED"}) is None
    ok = mapping.map_refund({**base, "status": "SUCCESS"})
    assert ok is not None
    assert (ok.amount_fen, ok.order_external_id) == (1230, "70000000001")


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("envelope", "kind"),
    [
        ({"code": 25, "msg": "Invalid signature"}, AuthFailed),
        ({"code": 27, "msg": "Invalid session", "sub_code": "invalid-sessionkey"}, TokenExpired),
        ({"code": 26, "msg": "Missing session"}, TokenExpired),
        ({"code": 15, "msg": "x", "sub_code": "session-expired"}, TokenExpired),
        ({"code": 31, "msg": "Invalid timestamp"}, AuthFailed),
        ({"code": 11, "msg": "Insufficient ISV Permissions"}, AuthFailed),
        ({"code": 15, "msg": "Remote", "sub_code": "isp.top-remote-connection-timeout"}, None),
        ({"code": 10, "msg": "Service Unavailable"}, None),
        ({"code": -1, "msg": "busy"}, None),
        ({"code": 15, "msg": "Remote", "sub_code": "isv.trade-not-exist"}, PlatformError),
        (
            {"code": 41, "msg": "Invalid arguments", "sub_code": "isv.invalid-parameter"},
            PlatformError,
        ),
    ],
)
def test_error_envelope_mapping(envelope: dict[str, Any], kind: type | None) -> None:
    err = error_from_envelope(envelope)
    if kind is None:
        assert type(err) is TransientError
    else:
        assert type(err) is kind
    assert str(envelope["code"]) in str(err)


def test_ban_seconds_are_parsed() -> None:
    err = error_from_envelope(
        {
            "code": 7,
            "msg": "App Call Limited",
            "sub_code": "accesscontrol.limited-by-app-access-count",
            "sub_msg": "This ban will last for 31062 more seconds",
        }
    )
    assert isinstance(err, RateLimited)
    assert err.retry_after == 31063
    skew = error_from_envelope({"code": 31, "msg": "Invalid timestamp"})
    assert "clock" in str(skew)


# -- sync against the fake ----------------------------------------------------------------------


async def test_check_ok_and_wrong_shop() -> None:
    world = make_world()
    async with running(world) as (_fake, conn, _):
        result = await conn.check()
        assert result.ok, result.message
    async with running(world, config={"shop_id": "999"}) as (_fake, conn, _):
        result = await conn.check()
        assert not result.ok
        assert "999" in result.message


async def test_full_sync_matches_world() -> None:
    world = make_world()
    async with running(world) as (fake, conn, _):
        got = await read_all(conn, partition(world))
        calls = list(fake.calls)
    truth = {tid_for(o): expected_order(o) for o in world.orders["tmall"]}
    assert len(truth) >= 20
    assert {k: actual_order(v) for k, v in got["orders"].items()} == truth
    for record in got["orders"].values():
        assert all(i["kind"] != "phone" for i in record["buyer"])
    members = {p.tmall_ouid for p in world.people_on("tmall")}
    assert set(got["members"]) == members
    for ouid, member in got["members"].items():
        assert member["identifiers"] == [
            {"kind": "tmall_ouid", "scope": HARNESS.shop_id, "value": ouid}
        ]
        assert member["level"]
    # every call went through the signed gateway path the fake verified
    assert fake.signatures_checked == len([c for c in calls if c.path == "/router/rest"])
    assert {c.api for c in calls} == {
        "taobao.crm.members.increment.get.privy",
        "taobao.trades.sold.increment.get",
        "taobao.trade.fullinfo.get",
        "taobao.refunds.receive.get",
    }


async def test_refunds_are_success_refunds_only() -> None:
    world = make_world()
    async with running(world) as (fake, conn, _):
        records, _ = await read_stream(conn, "refunds", partition(world))
        rendered = fake.all_refunds()
    truth = {
        r.refund_id: (tid_for(o), r.amount_fen, r.at)
        for o in world.orders["tmall"]
        for r in o.refunds
    }
    assert truth, "the world should have Tmall refunds"
    assert any(r["status"] != "SUCCESS" for r in rendered), "fake should list a failed request"
    assert {r.refund_id: (r.order_external_id, r.amount_fen, r.updated_at) for r in records} == (
        truth
    )


async def test_incremental_after_touch_returns_exactly_the_touched() -> None:
    world = make_world()
    async with running(world) as (_fake, conn, _):
        until1 = world.end
        _, checkpoints = await read_stream(conn, "orders", partition(world, until1))
        _, member_cps = await read_stream(conn, "members", partition(world, until1))
        state, member_state = checkpoints[-1][1].state, member_cps[-1][1].state
        assert datetime.fromisoformat(state["cursor"]) == until1
        at = until1 + timedelta(hours=3)
        changed = [o for o in world.touch(at, new=12, pay=8) if o.channel == "tmall"]
        assert changed
        until2 = at + timedelta(seconds=5)
        orders, _ = await read_stream(conn, "orders", partition(world, until2), state)
        members, _ = await read_stream(conn, "members", partition(world, until2), member_state)
        again, cps = await read_stream(
            conn, "orders", partition(world, until2), {"cursor": until2.isoformat()}
        )
    assert {r.external_id: actual_order(r.to_json()) for r in orders} == {
        tid_for(o): expected_order(o) for o in changed
    }
    assert {r.external_id for r in members} == {o.person.tmall_ouid for o in changed}
    assert again == [] and cps == []  # a cursor at `until` reads nothing


async def test_resume_from_every_checkpoint() -> None:
    world = make_world()
    part = partition(world)
    async with running(world) as (_fake, conn, _):
        for name in ("members", "orders", "refunds"):
            records, checkpoints = await read_stream(conn, name, part)
            full = {record_key(r): r.to_json() for r in records}
            assert checkpoints[-1][1].done == checkpoints[-1][1].total == len(checkpoints)
            cursors = [datetime.fromisoformat(cp.state["cursor"]) for _, cp in checkpoints]
            assert cursors == sorted(cursors) and cursors[-1] <= part.until
            for seen, cp in checkpoints:
                rest, _ = await read_stream(conn, name, part, cp.state)
                before = {record_key(r): r.to_json() for r in records[:seen]}
                after = {record_key(r): r.to_json() for r in rest}
                assert {**before, **after} == full, (name, cp.state)


async def test_fault_injection_gives_the_same_records() -> None:
    world = make_world()
    part = partition(world)
    async with running(world) as (_, conn, _):
        clean = await read_all(conn, part)
    faults = Faults(rate=0.2, seed=11, timeout_delay=0.7, ban_seconds=0)
    async with running(world, faults=faults, attempts=10) as (_fake, conn, _):
        noisy = await read_all(conn, part)
        stats = conn.http.stats
    assert noisy == clean
    assert set(faults.injected) == {"429", "5xx", "timeout", "truncated", "duplicate"}
    assert stats.retries >= sum(faults.injected.values()) - faults.injected["duplicate"]


async def test_duplicate_page_is_refetched_not_lost() -> None:
    world = make_world()
    part = partition(world)
    async with running(world, config={"page_size": 2}) as (_, conn, _):
        clean, _ = await read_stream(conn, "orders", part)
    faults = Faults(rate=0.3, kinds=("duplicate",), seed=5)
    async with running(world, faults=faults, config={"page_size": 2}) as (_fake, conn, _):
        noisy, _ = await read_stream(conn, "orders", part)
    assert faults.injected["duplicate"] > 5
    assert {r.external_id: r for r in noisy} == {r.external_id: r for r in clean}


@pytest.mark.parametrize("reverse", [True, False])
async def test_reverse_paging_survives_rows_leaving_the_window(
    reverse: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While we page, the newest trade of the window is modified again (after ``until``): the
    rows behind it shift one place towards page 1. Reading from the last page backwards loses
    nothing; reading forwards skips a row (the parametrisation proves the test can tell)."""
    monkeypatch.setattr(OrdersStream, "reverse", reverse)
    world = make_world()
    until = world.end
    part = partition(world, until)
    async with running(world, config={"page_size": 2}) as (fake, conn, _):
        moved: list[WorldOrder] = []

        def hook(method: str, params: Mapping[str, str]) -> None:
            if method != "taobao.trades.sold.increment.get" or params["page_no"] == "1" or moved:
                return
            a, b = parse_time(params["start_modified"]), parse_time(params["end_modified"])
            window = [o for o in world.orders["tmall"] if a <= o.modified <= b]
            newest = max(window, key=lambda o: (o.modified, int(o.external_id)))
            newest.modified = until + timedelta(hours=1)
            moved.append(newest)

        fake.page_hook = hook
        records, _ = await read_stream(conn, "orders", part)
    assert moved
    want = {tid_for(o) for o in world.orders["tmall"] if o.modified <= until}
    got = {r.external_id for r in records}
    if reverse:
        assert want <= got
    else:
        assert want - got


async def test_wrong_secret_fails_without_retry() -> None:
    world = make_world()
    fake = HARNESS.make_fake(world)
    async with fake:
        ctx = ConnectorContext(
            channel="tmall",
            http=PlatformHttp(RateLimiter(1000, 1000), RetryPolicy(attempts=8, backoff=0.01)),
            save_secrets=Secrets(),
        )
        conn = TmallConnector(HARNESS.bad_credentials(fake), ctx)
        try:
            result = await conn.check()
            assert not result.ok
            assert "25" in result.message and "Invalid signature" in result.message
            fake.calls.clear()
            with pytest.raises(AuthFailed):
                await read_stream(conn, "orders", partition(world))
            assert len(fake.calls) == 1
        finally:
            await conn.close()


async def test_token_expiry_refreshes_and_continues() -> None:
    world = make_world()
    async with running(world) as (fake, conn, secrets):
        records, _ = await read_stream(conn, "orders", partition(world))
        fake.expire_token()
        again, _ = await read_stream(conn, "orders", partition(world))
        assert fake.tokens_issued == 1
        assert secrets.saved == [
            {"access_token": fake.access_token, "refresh_token": fake.refresh_token}
        ]
        assert conn.config["access_token"] == fake.access_token
        assert {r.external_id: r for r in again} == {r.external_id: r for r in records}
        # a refused refresh (revoked refresh token) stops the run: AuthFailed, not a loop
        fake.expire_token()
        fake.refresh_token = "revoked"
        with pytest.raises(AuthFailed) as info:
            await read_stream(conn, "orders", partition(world))
        assert not isinstance(info.value, TokenExpired)
        assert "invalid_grant" in str(info.value)


async def test_rate_limit_ban_is_honoured() -> None:
    world = make_world()
    async with running(world, config={"ban_margin_seconds": 0.05}) as (fake, conn, _):
        fake.banned_until = time.monotonic() + 1.0  # the gateway says "1 more seconds"
        started = time.monotonic()
        result = await conn.check()
        waited = time.monotonic() - started
        assert result.ok, result.message
        refused = [c for c in fake.calls if c.api == "taobao.user.seller.get"]
        assert len(refused) == 2  # one ban answer, then exactly one retry after the ban
        assert 1.0 <= waited < 2.0
        assert conn.http.stats.rate_limited == 1
        # a daily-quota ban far beyond RetryPolicy.max_wait is not slept through
        fake.banned_until = time.monotonic() + 31062
        started = time.monotonic()
        with pytest.raises(RateLimited):
            await read_stream(conn, "orders", partition(world))
        assert time.monotonic() - started < 1.0


async def test_rate_limit_faults_with_ban_seconds() -> None:
    world = make_world()
    part = partition(world)
    async with running(world) as (fake, conn, _):
        clean, _ = await read_stream(conn, "members", part)
        clean_calls = len(fake.calls)
    faults = Faults(rate=0.25, kinds=("429",), seed=4, ban_seconds=1)
    async with running(world, faults=faults) as (fake, conn, _):
        started = time.monotonic()
        members, _ = await read_stream(conn, "members", part)
        waited = time.monotonic() - started
        calls = len(fake.calls)
    bans = faults.injected.get("429", 0)
    assert 1 <= bans <= 4
    assert waited >= bans * 1.0
    # each ban was waited out: no call was refused for arriving during a ban
    assert calls == clean_calls + bans
    assert members == clean


async def test_clock_skew_is_reported() -> None:
    world = make_world()

    def skewed() -> datetime:
        return datetime.now(UTC) + timedelta(minutes=11)

    async with running(world, clock=skewed) as (fake, conn, _):
        result = await conn.check()
        assert not result.ok
        assert "31" in result.message and "clock" in result.message
        fake.calls.clear()
        with pytest.raises(AuthFailed):
            await read_stream(conn, "members", partition(world))
        assert len(fake.calls) == 1


async def test_fake_accepts_epoch_millisecond_timestamps_and_form_only_params() -> None:
    world = make_world()
    async with running(world) as (fake, conn, _):
        req = conn.client.build("taobao.user.seller.get", {"fields": "user_id"}, session=True)
        params = dict(req.params or {})
        params["timestamp"] = str(int(time.time() * 1000))
        params.pop("sign")
        params["sign"] = sign({**params, "fields": "user_id"}, fake.app_secret, "hmac-sha256")
        everything = {**params, "fields": "user_id"}  # taobaopy style: all in the form body
        resp = await conn.http.call(
            lambda: Request("POST", req.url, data=everything), lambda r: r.json()
        )
        assert resp["user_seller_get_response"]["user"]["user_id"] == int(HARNESS.shop_id)


async def test_window_larger_than_a_day_is_refused_by_the_gateway() -> None:
    world = make_world()
    async with running(world) as (_fake, conn, _):
        with pytest.raises(PlatformError) as info:
            await conn.client.call(
                "taobao.trades.sold.increment.get",
                {
                    "fields": "tid",
                    "start_modified": "2026-10-01 00:00:00",
                    "end_modified": "2026-10-02 00:00:01",
                },
            )
        assert "isv.invalid-parameter" in str(info.value)
    async with running(world, config={"window_minutes": 30}) as (_fake, conn, _):
        part = partition(world, world.start + timedelta(hours=6))
        _, checkpoints = await read_stream(conn, "orders", part)
        assert len(checkpoints) == 14  # 7 h (incl. the hour before start) / 30 min


# -- registration and webhooks ------------------------------------------------------------------


def test_plugin_registers_connector_kind_and_webhooks() -> None:
    registry = load_connectors(extra_plugins=[tmall_plugin])
    assert registry.get("tmall") is TmallConnector
    assert {h.name for h in registry.webhooks("tmall")} == {
        "member_query",
        "member_bind",
        "member_register",
    }
    kind = KINDS["taobao_open_uid"]
    assert not kind.strong and kind.default_scope == ""
    assert KINDS["tmall_ouid"].strong and KINDS["tmall_omid"].is_global


class FakePush:
    channel = "tmall"

    def __init__(self, known: MemberView | None = None) -> None:
        self.known = known
        self.applied: list[Any] = []
        self.lookups: list[list[Any]] = []

    async def apply(self, records):
        self.applied.extend(records)
        if records:
            self.known = MemberView(uuid.uuid4(), points=0, growth=0, level="1")
        return [ApplyOutcome("member", record_key(r), "created") for r in records]

    async def lookup(self, identifiers):
        self.lookups.append(list(identifiers))
        return self.known


def spi_setup() -> tuple[TmallFake, TmallConnector]:
    world = World.generate(seed=1, people=3, orders=3, days=1)
    fake = TmallFake(world)
    fake.port = 1
    ctx = ConnectorContext(
        channel="tmall", http=PlatformHttp(RateLimiter(10, 10)), save_secrets=Secrets()
    )
    return fake, TmallConnector(HARNESS.config(fake), ctx)


async def test_member_query_spi() -> None:
    fake, conn = spi_setup()
    view = MemberView(uuid.uuid4(), points=2000, growth=0, level="1")
    push = FakePush(view)
    body = {"seller_name": "茶小铺", "nick": "t**1", "mobile": "15088890012", "ouid": "AAHx"}
    reply = await member_query(conn, fake.spi_request(body), push)
    answer = json.loads(reply.body)
    assert answer["query_code"] == "SUC"
    assert answer["member"]["point"] == "2000" and answer["member"]["level"] == "1"
    assert json.loads(answer["member"]["extend"]) == {"card_no": str(view.member_id)}
    kinds = [(i.kind, i.scope, i.value) for i in push.lookups[0]]
    assert kinds == [("tmall_ouid", HARNESS.shop_id, "AAHx"), ("phone", None, "15088890012")]
    # md5 signed callbacks verify too
    md5 = fake.spi_request(body, sign_method="md5")
    assert json.loads((await member_query(conn, md5, push)).body)["query_code"] == "SUC"
    # unknown member: E01 with a mobile, E02 with platform ids only
    nobody = FakePush(None)
    r1 = await member_query(conn, fake.spi_request({"mobile": "15088890012"}), nobody)
    r2 = await member_query(conn, fake.spi_request({"omid": "om1"}), nobody)
    assert json.loads(r1.body)["query_code"] == "E01"
    assert json.loads(r2.body)["query_code"] == "E02"


async def test_spi_signature_refused() -> None:
    fake, conn = spi_setup()
    push = FakePush(MemberView(uuid.uuid4(), points=1, growth=0))
    body = {"omid": "om1", "ouid": "AAH1", "mobile": "13800138000"}
    bad = fake.spi_request(body, secret="wrong-secret")
    for handler in (member_query, member_bind, member_register):
        answer = json.loads((await handler(conn, bad, push)).body)
        assert answer["query_code"] == "E05"
    # a body altered after signing
    good = fake.spi_request(body)
    tampered = type(good)(good.method, good.query, good.headers, good.body.replace(b"om1", b"om2"))
    assert json.loads((await member_bind(conn, tampered, push)).body)["query_code"] == "E05"
    # a replayed (stale) callback
    stale = fake.spi_request(body, at=datetime.now(UTC) - timedelta(minutes=30))
    assert json.loads((await member_bind(conn, stale, push)).body)["query_code"] == "E05"
    assert push.applied == [] and push.lookups == []


async def test_member_bind_and_register_apply_records() -> None:
    fake, conn = spi_setup()
    push = FakePush()
    body = {"omid": "om9", "ouid": "AAH9", "mobile": "13800138000", "nick": "t**9"}
    answer = json.loads((await member_bind(conn, fake.spi_request(body), push)).body)
    assert answer["query_code"] == "SUC"
    (record,) = push.applied
    assert record.external_id == "AAH9" and record.joined_at is None
    assert {(i.kind, i.scope, i.value) for i in record.identifiers} == {
        ("tmall_omid", None, "om9"),
        ("tmall_ouid", HARNESS.shop_id, "AAH9"),
        ("phone", None, "13800138000"),
    }
    masked = {"omid": "om8", "mobile": "138****0000"}
    answer = json.loads((await member_register(conn, fake.spi_request(masked), push)).body)
    assert answer["query_code"] == "SUC"
    assert push.applied[-1].joined_at is not None
    assert [i.kind for i in push.applied[-1].identifiers] == ["tmall_omid"]  # masked: no phone
    missing = json.loads((await member_bind(conn, fake.spi_request({"nick": "x"}), push)).body)
    assert missing["query_code"] != "SUC"

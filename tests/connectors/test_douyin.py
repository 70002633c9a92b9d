"""Douyin shop (抖店) connector against its fake platform (PLATFORMS.md §3)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator, ValidationError

from connectors.douyin import register_connectors, register_webhooks
from connectors.douyin.client import parse_envelope
from connectors.douyin.connector import DouyinConnector
from connectors.douyin.fake import DouyinFake
from connectors.douyin.harness import DouyinHarness
from connectors.douyin.signing import canonical_json, event_sign, sign, sign_pattern
from connectors.douyin.streams import second_windows
from connectors.douyin.webhooks import handle_member_push
from connectors.testing.fake import ALL_FAULTS, Faults
from connectors.testing.world import World, WorldOrder
from gateway.identity.model import IdentifierInput
from gateway.sync import (
    ApplyOutcome,
    Checkpoint,
    ConnectorContext,
    Partition,
    PlatformHttp,
    RateLimiter,
    Record,
    RetryPolicy,
    WebhookRequest,
    secret_fields,
)
from gateway.sync.errors import (
    AuthFailed,
    PlatformError,
    RateLimited,
    TokenExpired,
    TransientError,
)
from gateway.sync.http import Response
from gateway.sync.records import MemberRecord, OrderRecord, PointsEventRecord, RefundRecord

VECTORS = Path(__file__).parents[2].parent / "shared/channels/signing_vectors.json"
PAGE = 7


# -- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def world() -> World:
    return World.generate(seed=11, people=60, orders=900, days=12)


def business_ref(world: World) -> datetime:
    # 90 days before this leaves the first 10 of the 12 days out: some buyers lose their phone.
    return world.start + timedelta(days=100)


@pytest.fixture
async def fake(world: World) -> AsyncIterator[DouyinFake]:
    async with DouyinFake(
        world, non_member_every=9, business_clock=lambda: business_ref(world)
    ) as f:
        yield f  # type: ignore[misc]


class Saved:
    def __init__(self) -> None:
        self.updates: list[dict[str, str]] = []

    async def __call__(self, values: Mapping[str, str]) -> None:
        self.updates.append(dict(values))


def make(
    fake: DouyinFake,
    *,
    config: Mapping[str, Any] | None = None,
    clock: Any = None,
    attempts: int = 8,
    **overrides: Any,
) -> tuple[DouyinConnector, Saved]:
    saved = Saved()
    ctx = ConnectorContext(
        channel="douyin",
        http=PlatformHttp(
            RateLimiter(1000, 1000), RetryPolicy(attempts=attempts, backoff=0.01, timeout=0.5)
        ),
        save_secrets=saved,
    )
    if clock is not None:
        ctx.clock = clock
    cfg = dict(config if config is not None else DouyinHarness(page_size=PAGE).config(fake))
    cfg.update(overrides)
    return DouyinConnector(cfg, ctx), saved


def partition(world: World) -> Partition:
    return Partition("default", until=world.end, since=world.start)


async def read_all(
    conn: DouyinConnector, part: Partition, states: Mapping[str, Any] | None = None
) -> dict[str, list[Record | Checkpoint]]:
    out: dict[str, list[Record | Checkpoint]] = {}
    try:
        for stream in conn.streams():
            state = (states or {}).get(stream.name)
            out[stream.name] = [item async for item in stream.read(part, state)]
    finally:
        await conn.close()
    return out


def records(items: Sequence[Record | Checkpoint], kind: type | None = None) -> list[Any]:
    return [
        i for i in items if not isinstance(i, Checkpoint) and (kind is None or isinstance(i, kind))
    ]


def keyed(items: Sequence[Record | Checkpoint]) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records(items):
        key = (r.record_type, str(getattr(r, r.primary_key)))
        out[key] = r.to_json()
    return out


def ids(values: Sequence[IdentifierInput]) -> set[tuple[str, str | None, str]]:
    return {(i.kind, i.scope, i.value) for i in values}


def ts(dt: datetime) -> int:
    return int(dt.timestamp())


def expected_order(o: WorldOrder, scope: str) -> dict[str, Any]:
    return {
        "external_id": o.external_id,
        "status": o.status,
        "placed_at": o.created,
        "paid_at": o.paid_at,
        "updated_at": o.modified,
        "total_fen": o.total_fen,
        "paid_fen": o.paid_fen,
        "lines": [(ln.sku, ln.name, ln.quantity, ln.unit_fen, ln.amount_fen) for ln in o.lines],
        "buyer": {("douyin_open_id", scope, o.person.douyin_open_id)},
    }


def actual_order(r: OrderRecord) -> dict[str, Any]:
    return {
        "external_id": r.external_id,
        "status": r.status,
        "placed_at": r.placed_at,
        "paid_at": r.paid_at,
        "updated_at": r.updated_at,
        "total_fen": r.total_fen,
        "paid_fen": r.paid_fen,
        "lines": [
            (ln.sku, ln.name, ln.quantity, ln.unit_price_fen, ln.amount_fen) for ln in r.lines
        ],
        "buyer": ids(r.buyer),
    }


# -- signing ----------------------------------------------------------------------------------


def _vectors() -> list[dict[str, Any]]:
    if not VECTORS.exists():
        pytest.skip(f"golden vectors file {VECTORS} is missing")
    data = json.loads(VECTORS.read_text(encoding="utf-8"))
    found = [v for v in data["vectors"] if v["platform"] == "douyin_doudian"]
    assert {v["id"] for v in found} >= {"T6", "T7"}
    return found


def test_golden_vectors_t6_t7_byte_for_byte() -> None:
    for v in _vectors():
        p = v["params"]
        param_json = canonical_json(p["param_json"])
        pattern = sign_pattern(p["app_key"], v["secret"], p["method"], param_json, p["timestamp"])
        assert pattern == v["signed_string"], v["id"]
        method = "md5" if v["algorithm"] == "md5" else "hmac-sha256"
        got = sign(p["app_key"], v["secret"], p["method"], param_json, p["timestamp"], method)
        assert got == v["expected"], v["id"]


def test_canonical_json_raw_utf8_sorted_no_html_escaping() -> None:
    payload = {"size": 20, "product": "衬衫", "page": 0}
    assert canonical_json(payload) == '{"page":0,"product":"衬衫","size":20}'
    # PLATFORMS §3.2: raw UTF-8 gives cdb6ce1b…5dd4902a, the \\uXXXX form 9dcad799…c56b6c4f
    raw = sign("appkey123", "secret123", "order.searchList", canonical_json(payload), "1800000000")
    assert raw.startswith("cdb6ce1b") and raw.endswith("5dd4902a")
    escaped = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    other = sign("appkey123", "secret123", "order.searchList", escaped, "1800000000")
    assert other.startswith("9dcad799") and other.endswith("c56b6c4f")
    nested = {"b": {"z": 1, "a": [{"y": "<&>", "x": 2}]}, "a": {}}
    assert canonical_json(nested) == '{"a":{},"b":{"a":[{"x":2,"y":"<&>"}],"z":1}}'
    with pytest.raises(ValueError, match="sign_method"):
        sign("k", "s", "m", "{}", "1", "sha1")


async def test_cjk_body_is_signed_and_sent_as_raw_utf8(fake: DouyinFake) -> None:
    conn, _ = make(fake)
    try:
        end = int(time.time())
        params = {"update_time_start": end - 60, "update_time_end": end, "product": "衬衫"}
        request = conn.client.build("order.searchList", params)
        assert request.data == canonical_json(params).encode("utf-8")
        assert "衬衫".encode() in request.data  # type: ignore[operator]
        # the fake recomputes the signature over the exact bytes it received
        data = await conn.client.call("order.searchList", {**params, "page": 0, "size": 1})
        assert data["page"] == 0
    finally:
        await conn.close()


async def test_request_shape_and_string_timestamp_accepted(fake: DouyinFake) -> None:
    conn, _ = make(fake)
    request = conn.client.build("order.searchList", {"page": 0, "size": 1})
    assert request.method == "POST" and request.url.endswith("/order/searchList")
    assert set(request.params or {}) == {
        "app_key",
        "method",
        "access_token",
        "timestamp",
        "v",
        "sign",
        "sign_method",
    }
    assert (request.params or {})["v"] == "2" and (request.params or {})["timestamp"].isdigit()
    assert (request.headers or {})["x-open-no-old-err-code"] == "1"
    await conn.close()
    # the 2022 guide's timestamp form: yyyy-MM-dd HH:mm:ss in GMT+8
    stamp = (datetime.now(UTC) + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")
    body = canonical_json({"update_time_start": 0, "update_time_end": 1, "page": 0, "size": 1})
    query = {
        "app_key": fake.app_key,
        "method": "order.searchList",
        "access_token": fake.access_token,
        "timestamp": stamp,
        "v": "2",
        "sign_method": "md5",
        "sign": sign(fake.app_key, fake.app_secret, "order.searchList", body, stamp, "md5"),
    }
    async with aiohttp.ClientSession() as session:
        url = fake.base_url + "/order/searchList"
        headers = {"x-open-no-old-err-code": "1", "Content-Type": "application/json"}
        async with session.post(url, params=query, data=body.encode(), headers=headers) as resp:
            assert (await resp.json())["code"] == 10000
        query["sign"] = "0" * 32
        async with session.post(url, params=query, data=body.encode(), headers=headers) as resp:
            answer = await resp.json()
            assert (answer["code"], answer["sub_code"]) == (40003, "isv.signature-invalid")


# -- error envelope -----------------------------------------------------------------------------


def _resp(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return Response(status, dict(headers or {}), raw)


def _env(code: int, sub_code: str = "", sub_msg: str = "") -> dict[str, Any]:
    return {"code": code, "msg": "x", "sub_code": sub_code, "sub_msg": sub_msg, "log_id": "L1"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (_env(40003, "isv.signature-invalid", "签名错误"), AuthFailed),
        (_env(40003, "isv.access-token-expired"), TokenExpired),
        (_env(40003, "isv.access-token-no-existed"), TokenExpired),
        (_env(40003, "isv.timestamp-invalid"), AuthFailed),
        (_env(60000, "isp.traffic-limited:628002006", "触发限流"), RateLimited),
        (_env(20000, "isp.service-unavailable"), TransientError),
        (_env(20001), TransientError),
        (_env(30001, "dop.authorization-closed"), AuthFailed),
        (_env(40004, "isv.parameter-invalid"), PlatformError),
        (_env(50002, "isv.business-failed"), PlatformError),
        ({"err_no": 4, "message": "access_token已过期"}, TokenExpired),
        ({"err_no": 1, "message": "签名校验失败"}, AuthFailed),
        ({"err_no": 7, "message": "参数错误"}, PlatformError),
        (b'{"code": 10000, "msg": "succ', TransientError),
    ],
)
def test_error_envelope_mapping(body: Any, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        parse_envelope(_resp(body))
    assert type(info.value) is error
    if isinstance(body, dict) and body.get("sub_code"):
        assert body["sub_code"] in str(info.value)


def test_success_envelopes_and_ban_seconds() -> None:
    assert parse_envelope(_resp({"code": 10000, "msg": "success", "data": {"a": 1}})) == {"a": 1}
    assert parse_envelope(_resp({"err_no": 0, "message": "success", "data": {"b": 2}})) == {"b": 2}
    with pytest.raises(RateLimited) as info:
        parse_envelope(_resp(_env(60000, "isp.traffic-limited", "触发限流，封禁剩余 7 秒")))
    assert info.value.retry_after == 7
    with pytest.raises(RateLimited) as info:
        parse_envelope(_resp(_env(60000, "isp.traffic-limited", "触发限流，请稍后重试")))
    assert info.value.retry_after is None
    with pytest.raises(AuthFailed, match="clock"):
        parse_envelope(_resp(_env(40003, "isv.timestamp-invalid")))


def test_second_windows_never_pass_until() -> None:
    start = datetime(2026, 10, 1, 0, 0, 0, 500_000, tzinfo=UTC)
    until = start + timedelta(days=2, hours=3)
    spans = second_windows(start, until)
    assert spans[0][0] == ts(start) and spans[-1][1] == ts(until) <= until.timestamp()
    assert all(b - a <= 86_400 for a, b in spans)
    assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))
    assert second_windows(until, until) == []


# -- full sync ----------------------------------------------------------------------------------


async def test_full_sync_matches_world(world: World, fake: DouyinFake) -> None:
    conn, _ = make(fake)
    out = await read_all(conn, partition(world))
    scope, union_scope = fake.member_app_id, fake.shop_id
    truth = {o.external_id: expected_order(o, scope) for o in world.orders["douyin"]}
    got = {r.external_id: actual_order(r) for r in records(out["orders"], OrderRecord)}
    assert len(truth) > 60 and got == truth
    assert {o["status"] for o in got.values()} == {"created", "paid", "completed", "cancelled"}

    # members: every buyer that is a 会员通 member, phone only with a recent paid order
    ref = business_ref(world)
    buyers = {o.person.index: o.person for o in world.orders["douyin"]}
    assert list(out) == ["members", "orders", "refunds"]  # members before the orders they buy
    assert {type(r) for items in out.values() for r in records(items)} == {
        MemberRecord,
        OrderRecord,
        RefundRecord,
    }
    assert all(isinstance(r, MemberRecord) for r in records(out["members"]))
    assert all(isinstance(r, OrderRecord) for r in records(out["orders"]))
    members = {m.external_id: m for m in records(out["members"], MemberRecord)}
    expected_members = {p.douyin_open_id for p in buyers.values() if fake.is_member(p)}
    assert set(members) == expected_members and len(expected_members) < len(buyers)
    with_phone = 0
    for p in buyers.values():
        if not fake.is_member(p):
            continue
        recent = any(
            o.person.index == p.index and o.paid_at and ref - timedelta(days=90) <= o.paid_at
            for o in world.orders["douyin"]
        )
        want = {
            ("douyin_open_id", scope, p.douyin_open_id),
            ("douyin_union_id", union_scope, p.douyin_union_id),
        }
        if recent:
            want.add(("phone", None, p.phone))
            with_phone += 1
        m = members[p.douyin_open_id]
        assert ids(m.identifiers) == want
        cents = fake.point_cent(p)
        assert m.points == (cents // 100 if cents % 100 == 0 else None)
        assert m.level == str(1 + p.index % 4)
    assert 0 < with_phone < len(expected_members)

    # each buyer is asked about exactly once per read
    asked = [
        oid for _, m, p in fake.api_log if m.startswith("member.") for oid in p["open_id_list"]
    ]
    assert len(asked) == len(set(asked)) == len(buyers)

    # refunds: only succeeded after-sales (refund_status 3), amounts in fen
    refunds = {r.refund_id: r for r in records(out["refunds"], RefundRecord)}
    want_refunds = {
        r.refund_id: (o.external_id, r.amount_fen, r.at)
        for o in world.orders["douyin"]
        for r in o.refunds
    }
    assert (
        want_refunds
        and {k: (r.order_external_id, r.amount_fen, r.updated_at) for k, r in refunds.items()}
        == want_refunds
    )
    closed = [i for i in fake.aftersales() if i["aftersale_info"]["refund_status"] != 3]
    assert closed  # the fake served after-sales that must not become refunds

    # checkpoints: cursors ascend, never pass until, and the last one is until
    for items in out.values():
        cursors = [
            datetime.fromisoformat(c.state["cursor"]) for c in items if isinstance(c, Checkpoint)
        ]
        assert cursors == sorted(cursors) and cursors[-1] == world.end
        assert all(c <= world.end for c in cursors)


async def test_member_batches_at_most_ten(world: World, fake: DouyinFake) -> None:
    conn, _ = make(fake, page_size=100)
    await read_all(
        conn, Partition("default", until=world.end, since=world.end - timedelta(days=12))
    )
    batches = [len(p["open_id_list"]) for _, m, p in fake.api_log if m.startswith("member.")]
    assert batches and max(batches) == 10
    sizes = [p["size"] for _, m, p in fake.api_log if m == "order.searchList"]
    assert set(sizes) == {100}


async def test_incremental_sync_returns_exactly_touched_orders(
    world: World, fake: DouyinFake
) -> None:
    conn, _ = make(fake)
    first = await read_all(conn, partition(world))
    states = {
        name: [i for i in items if isinstance(i, Checkpoint)][-1].state
        for name, items in first.items()
    }
    at = world.end + timedelta(hours=2)
    touched = [o for o in world.touch(at, new=30, pay=5) if o.channel == "douyin"]
    assert touched
    conn, _ = make(fake)
    second = await read_all(conn, Partition("default", until=world.end, since=world.start), states)
    got = {r.external_id: actual_order(r) for r in records(second["orders"], OrderRecord)}
    assert got == {o.external_id: expected_order(o, fake.member_app_id) for o in touched}
    assert records(second["refunds"]) == []
    # nothing when the cursor is already at until
    conn, _ = make(fake)
    last = {n: [i for i in v if isinstance(i, Checkpoint)][-1].state for n, v in second.items()}
    again = await read_all(conn, Partition("default", until=world.end, since=world.start), last)
    assert all(items == [] for items in again.values())


async def test_resume_from_every_checkpoint_yields_the_rest(world: World, fake: DouyinFake) -> None:
    part = partition(world)
    conn, _ = make(fake)
    full = await read_all(conn, part)
    for name, items in full.items():
        marks = [i for i, item in enumerate(items) if isinstance(item, Checkpoint)]
        assert len(marks) >= 12
        for mark in marks:
            state = items[mark].state  # type: ignore[union-attr]
            conn, _ = make(fake)
            stream = next(s for s in conn.streams() if s.name == name)
            try:
                rest = [i async for i in stream.read(part, state)]
            finally:
                await conn.close()
            want_all, got_all = keyed(items[mark + 1 :]), keyed(rest)
            assert {k for k in got_all if k[0] != "member"} == {
                k for k in want_all if k[0] != "member"
            }
            assert {k: got_all.get(k) for k in want_all} == want_all


async def test_moving_window_is_paged_again(world: World, fake: DouyinFake) -> None:
    """An order updated while its window is paged leaves it and shifts the later rows up."""
    counts: dict[int, int] = {}
    moved: list[str] = []

    def before_page(path: str, page: int) -> None:
        if path != "/order/searchList" or page != 1 or moved:
            return
        # the second page of the busiest window: move its first order out of the window
        first_day = [
            o for o in world.orders["douyin"] if o.modified < world.start + timedelta(days=1)
        ]
        victim = first_day[0]
        victim.modified = world.end + timedelta(hours=1)
        moved.append(victim.external_id)
        counts[1] = len(first_day)

    fake.before_page = before_page
    conn, _ = make(fake, page_size=3)
    out = await read_all(conn, partition(world))
    got = {r.external_id for r in records(out["orders"], OrderRecord)}
    want = {o.external_id for o in world.orders["douyin"] if o.modified <= world.end}
    assert moved and counts[1] > 3
    assert want <= got  # no unchanged order was skipped


# -- failures -----------------------------------------------------------------------------------


async def test_wrong_secret_fails_check_and_read_without_retry(
    world: World, fake: DouyinFake
) -> None:
    harness = DouyinHarness(page_size=PAGE)
    conn, _ = make(fake, config=harness.bad_credentials(fake))
    result = await conn.check()
    assert not result.ok and "40003" in result.message and "isv.signature-invalid" in result.message
    before = len(fake.calls)
    with pytest.raises(AuthFailed, match=r"isv\.signature-invalid"):
        await read_all(conn, partition(world))
    assert len(fake.calls) - before == 1


async def test_token_expiry_refreshes_and_continues(world: World, fake: DouyinFake) -> None:
    conn, saved = make(fake)
    old_refresh = fake.refresh_token
    fake.expire_token()
    out = await read_all(conn, partition(world))
    assert len(records(out["orders"], OrderRecord)) == len(world.orders["douyin"])
    assert fake.tokens_issued == 1
    assert saved.updates == [
        {"access_token": fake.access_token, "refresh_token": fake.refresh_token}
    ]
    assert fake.refresh_token != old_refresh
    assert conn.config["access_token"] == fake.access_token


async def test_legacy_token_envelope_and_self_built_create(world: World) -> None:
    async with DouyinFake(world, legacy_token_envelope=True) as fake:
        conn, saved = make(fake, refresh_token="", self_built=True)
        fake.expire_token()
        assert (await conn.check()).ok
        await conn.close()
        assert fake.tokens_issued == 1 and saved.updates[0]["access_token"] == fake.access_token
        # a refused refresh token on a tool app is final
        conn, saved = make(fake, refresh_token="stale")
        fake.expire_token()
        result = await conn.check()
        assert not result.ok and "refresh_token" in result.message and saved.updates == []
        await conn.close()


async def test_clock_skew_is_the_platform_error(world: World, fake: DouyinFake) -> None:
    skewed = lambda: datetime.now(UTC) + timedelta(minutes=15)  # noqa: E731
    conn, _ = make(fake, clock=skewed)
    result = await conn.check()
    assert not result.ok and "isv.timestamp-invalid" in result.message and "clock" in result.message
    before = len(fake.calls)
    with pytest.raises(AuthFailed, match=r"isv\.timestamp-invalid"):
        await read_all(conn, partition(world))
    assert len(fake.calls) - before == 1
    conn, _ = make(fake, clock=lambda: datetime.now(UTC) + timedelta(minutes=8))
    assert (await conn.check()).ok
    await conn.close()


async def test_rate_limit_ban_is_waited_out(world: World, fake: DouyinFake) -> None:
    conn, _ = make(fake)
    fake.ban(1.0)
    started = time.monotonic()
    out = await read_all(
        conn, Partition("default", until=world.end, since=world.end - timedelta(days=2))
    )
    assert fake.api_log
    first_ok = fake.api_log[0][0]
    assert first_ok - started >= 0.95  # the ban's seconds, not a quick backoff
    assert conn.http.stats.rate_limited >= 1
    assert records(out["orders"], OrderRecord)


async def test_rate_limit_fault_with_ban_seconds(world: World) -> None:
    async with DouyinFake(
        world, faults=Faults(rate=0.3, kinds=("429",), seed=3, ban_seconds=1)
    ) as fake:
        conn, _ = make(fake)
        started = time.monotonic()
        out = await read_all(
            conn, Partition("default", until=world.end, since=world.end - timedelta(days=1))
        )
        assert fake.faults.injected.get("429", 0) >= 1
        assert time.monotonic() - started >= 0.95 * fake.faults.injected["429"]
        assert {r.external_id for r in records(out["orders"], OrderRecord)} == {
            o.external_id
            for o in world.orders["douyin"]
            if o.modified >= world.end - timedelta(days=1)
        }


async def test_twenty_percent_faults_give_identical_records(world: World, fake: DouyinFake) -> None:
    part = partition(world)
    conn, _ = make(fake)
    clean = keyed([i for items in (await read_all(conn, part)).values() for i in items])
    async with DouyinFake(
        world,
        non_member_every=9,
        business_clock=lambda: business_ref(world),
        faults=Faults(rate=0.2, seed=5, timeout_delay=0.6),
    ) as faulty:
        conn, _ = make(faulty, attempts=10)
        noisy = keyed([i for items in (await read_all(conn, part)).values() for i in items])
        assert set(faulty.faults.injected) == set(ALL_FAULTS)
    assert noisy == clean


async def test_duplicate_pages_are_detected(world: World, fake: DouyinFake) -> None:
    part = partition(world)
    conn, _ = make(fake, page_size=3)
    clean = keyed([i for items in (await read_all(conn, part)).values() for i in items])
    async with DouyinFake(
        world,
        non_member_every=9,
        business_clock=lambda: business_ref(world),
        faults=Faults(rate=0.25, kinds=("duplicate",), seed=2),
    ) as faulty:
        conn, _ = make(faulty, page_size=3)
        noisy = keyed([i for items in (await read_all(conn, part)).values() for i in items])
        assert faulty.stale_pages >= 3
    assert noisy == clean


# -- webhook ------------------------------------------------------------------------------------


class FakePush:
    channel = "douyin"

    def __init__(self) -> None:
        self.applied: list[Record] = []

    async def apply(self, recs: Sequence[Record]) -> list[ApplyOutcome]:
        self.applied.extend(recs)
        return [
            ApplyOutcome(r.record_type, str(getattr(r, r.primary_key)), "created") for r in recs
        ]

    async def lookup(self, identifiers: Sequence[IdentifierInput]) -> None:
        return None


def _push(
    conn: DouyinConnector, messages: list[dict[str, Any]], *, secret: str | None = None
) -> WebhookRequest:
    body = json.dumps(messages, ensure_ascii=False).encode("utf-8")
    key = conn.config["app_key"]
    signature = event_sign(key, secret or conn.config["app_secret"], body)
    return WebhookRequest("POST", {}, {"App-Id": key, "Event-Sign": signature}, body)


def _member_msg(msg_id: str, **data: Any) -> dict[str, Any]:
    payload = {
        "open_id": "dyOPEN1",
        "union_id": "duUNION1",
        "mobile": "13812345678",
        "shop_id": 77001234,
        "point_cent_delta": 500,
        "point_cent_total": 12300,
        "event_time": "2026-11-01 10:00:00",
        "msg_id": msg_id,
        **data,
    }
    return {"tag": "member_join", "msg_id": msg_id, "data": json.dumps(payload, ensure_ascii=False)}


async def test_member_push_signature_and_records(fake: DouyinFake) -> None:
    conn, _ = make(fake)
    hooks = register_webhooks()
    assert [(h.connector, h.name) for h in hooks] == [("douyin", "member_join")]
    assert register_connectors() == [DouyinConnector]
    push = FakePush()
    other_shop = _member_msg("M3", shop_id=1, open_id="dyOTHER")
    masked = _member_msg("M2", open_id="dyOPEN2", mobile="", mix_mobile="$x$", point_cent_delta=0)
    reply = await hooks[0].handler(conn, _push(conn, [_member_msg("M1"), masked, other_shop]), push)
    assert (reply.status, json.loads(reply.body)) == (200, {"code": 0, "msg": "success"})
    members = [r for r in push.applied if isinstance(r, MemberRecord)]
    events = [r for r in push.applied if isinstance(r, PointsEventRecord)]
    assert [m.external_id for m in members] == ["dyOPEN1", "dyOPEN2"]
    assert ids(members[0].identifiers) == {
        ("douyin_open_id", fake.member_app_id, "dyOPEN1"),
        ("douyin_union_id", fake.shop_id, "duUNION1"),
        ("phone", None, "13812345678"),
    }
    assert ("phone", None, "") not in ids(members[1].identifiers) and len(
        members[1].identifiers
    ) == 2
    assert len(events) == 1
    e = events[0]
    assert (e.event_id, e.delta, e.balance) == ("M1", 5, 123)
    assert e.occurred_at == datetime(2026, 11, 1, 2, 0, tzinfo=UTC)

    # bad signature / wrong app: refused in the platform's shape, nothing applied
    push = FakePush()
    for request in (
        _push(conn, [_member_msg("M1")], secret="wrong"),
        WebhookRequest("POST", {}, {"app-id": "other", "event-sign": "x"}, b"[]"),
    ):
        reply = await handle_member_push(conn, request, push)
        assert (reply.status, json.loads(reply.body)) == (200, {"code": 40041, "msg": "sign error"})
    tampered = _push(conn, [_member_msg("M1")])
    tampered = WebhookRequest("POST", {}, tampered.headers, tampered.body.replace(b"500", b"900"))
    reply = await handle_member_push(conn, tampered, push)
    assert json.loads(reply.body)["code"] == 40041
    # a fraction of a point refuses the whole push
    reply = await handle_member_push(
        conn, _push(conn, [_member_msg("M4"), _member_msg("M5", point_cent_delta=150)]), push
    )
    body = json.loads(reply.body)
    assert body["code"] == 40004 and "whole number of points" in body["msg"]
    assert push.applied == []


def test_event_sign_is_md5_of_key_body_secret() -> None:
    body = b'[{"tag":"x"}]'
    want = hashlib.md5(b"key" + body + b"secret").hexdigest()
    assert event_sign("key", "secret", body) == want


async def test_config_schema_accepts_harness_config(fake: DouyinFake) -> None:
    schema = DouyinConnector.config_schema
    Draft202012Validator.check_schema(schema)
    config = DouyinHarness().config(fake)
    Draft202012Validator(schema).validate(config)
    assert schema["additionalProperties"] is False
    assert secret_fields(schema) == {"app_secret", "access_token", "refresh_token"}
    assert schema["properties"]["base_url"]["default"] == "https://openapi-fxg.jinritemai.com"
    with pytest.raises(ValidationError):
        Draft202012Validator(schema).validate({**config, "sign_method": "sha1"})


def test_harness_link_identifier_is_true(world: World) -> None:
    harness = DouyinHarness()
    fake = harness.make_fake(world)
    assert isinstance(fake, DouyinFake)
    for person in world.people_on("douyin"):
        link = harness.link_identifier(person)
        if link.kind == "phone":
            assert fake.recent_paid(person) and link.value == person.phone
        else:
            assert (link.kind, link.scope) == ("douyin_union_id", fake.shop_id)

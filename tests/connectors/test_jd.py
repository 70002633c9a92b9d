"""JD (JOS) connector against its fake gateway: signing vectors, wire format, full and
incremental sync, refunds, auth / token / rate-limit / clock-skew errors, fault injection and
resuming from every checkpoint."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import connectors.jd as jd_plugin
from connectors.jd.client import raise_for_error, retry_after_seconds
from connectors.jd.connector import JdConnector
from connectors.jd.fake import JdFake, receiver_in_clear, refund_id_of, xid_of
from connectors.jd.harness import VENDER_ID, JdHarness
from connectors.jd.mapping import order_record, parse_time, yuan_to_fen
from connectors.jd.signing import param_json, sign, signed_string, verify
from connectors.testing.fake import ALL_FAULTS, Faults
from connectors.testing.world import World
from connectors.wire import CST
from gateway.identifiers import register_kind
from gateway.sync import (
    Checkpoint,
    ConnectorContext,
    Identifier,
    Partition,
    PlatformHttp,
    RateLimiter,
    RetryPolicy,
)
from gateway.sync.errors import AuthFailed, PlatformError, RateLimited, TokenExpired

VECTORS = Path(__file__).parents[2].parent / "shared/channels/signing_vectors.json"
HARNESS = JdHarness()


# -- helpers ------------------------------------------------------------------------------------


def make_world(**kw: Any) -> World:
    opts = {"seed": 11, "people": 40, "orders": 240, "days": 8, "refund_rate": 0.25}
    opts.update(kw)
    return World.generate(**opts)


class Saved:
    def __init__(self) -> None:
        self.updates: list[dict[str, str]] = []

    async def __call__(self, values: Any) -> None:
        self.updates.append(dict(values))


def make_conn(fake: JdFake, *, config: dict | None = None, clock=None, **extra: Any):
    saved = Saved()
    ctx = ConnectorContext(
        channel="jd",
        http=PlatformHttp(
            RateLimiter(1000, 1000), RetryPolicy(attempts=8, backoff=0.01, timeout=0.5)
        ),
        save_secrets=saved,
    )
    if clock is not None:
        ctx.clock = clock
    cfg = dict(config if config is not None else HARNESS.config(fake))
    cfg.update(extra)
    return JdConnector(cfg, ctx), saved


async def read_all(conn, until, since, states=None, only=None):
    """records per stream, checkpoints per stream (with the count of records before each)."""
    out: dict[str, list] = {}
    cps: dict[str, list] = {}
    for stream in conn.streams():
        if only and stream.name not in only:
            continue
        recs, marks = out.setdefault(stream.name, []), cps.setdefault(stream.name, [])
        state = (states or {}).get(stream.name)
        async for item in stream.read(Partition("default", until=until, since=since), state):
            if isinstance(item, Checkpoint):
                marks.append((len(recs), dict(item.state), item.done, item.total))
            else:
                recs.append(item)
    return out, cps


def visible(world: World) -> list:
    return [o for o in world.orders["jd"] if o.status != "created"]


def expected_order(o) -> dict:
    buyer = [
        {"kind": "jd_xid", "scope": VENDER_ID, "value": xid_of(o.person)},
        {"kind": "jd_open_id", "scope": VENDER_ID, "value": o.person.jd_open_id},
    ]
    if receiver_in_clear(o):
        buyer.append({"kind": "receiver_phone", "scope": "jd", "value": o.receiver_phone})
    return {
        "type": "order",
        "schema_version": 1,
        "external_id": o.external_id,
        "status": o.status,
        "placed_at": o.created.isoformat(),
        "paid_at": o.paid_at.isoformat() if o.status in ("paid", "completed") else None,
        "updated_at": o.modified.isoformat(),
        "total_fen": o.total_fen,
        "paid_fen": o.paid_fen,
        "lines": [
            {
                "sku": line.sku,
                "name": line.name,
                "category": None,
                "quantity": line.quantity,
                "unit_price_fen": line.unit_fen,
                "amount_fen": line.amount_fen,
            }
            for line in o.lines
        ],
        "buyer": buyer,
        "profile": None,
        "store_code": None,
        "guide_code": None,
    }


def normalise(rec) -> dict:
    """to_json with instants compared in UTC."""
    data = rec.to_json()
    for k in ("placed_at", "paid_at", "updated_at"):
        if data.get(k):
            data[k] = datetime.fromisoformat(data[k]).astimezone(UTC).isoformat()
    return data


def expected_refunds(world: World) -> dict[str, tuple]:
    return {
        refund_id_of(o, n): (o.external_id, r.amount_fen, r.at)
        for o in visible(world)
        for n, r in enumerate(o.refunds)
    }


def by_key(records) -> dict[str, dict]:
    return {str(getattr(r, r.primary_key)): normalise(r) for r in records}


# -- signing ------------------------------------------------------------------------------------


def test_golden_vector_t8():
    if not VECTORS.exists():
        pytest.skip(f"signing vectors not found at {VECTORS}")
    vectors = [v for v in json.loads(VECTORS.read_text())["vectors"] if v["platform"] == "jd_jos"]
    assert vectors, "no jd_jos vector in signing_vectors.json"
    for v in vectors:
        assert signed_string(v["params"], v["secret"]) == v["signed_string"], v["id"]
        assert sign(v["params"], v["secret"]) == v["expected"], v["id"]


def test_param_json_is_sorted_compact_utf8():
    assert param_json({"page_size": "50", "end_date": "x", "b": "中文"}) == (
        '{"b":"中文","end_date":"x","page_size":"50"}'
    )


def test_sign_hashes_utf8_not_latin1():
    params = {"method": "m", "360buy_param_json": '{"remark":"京东"}', "app_key": "k"}
    expected = (
        hashlib.md5('S360buy_param_json{"remark":"京东"}app_keykmethodmS'.encode())
        .hexdigest()
        .upper()
    )
    assert sign(params, "S") == expected
    assert verify({**params, "sign": expected.lower()}, "S")
    assert not verify({**params, "sign": expected}, "T")


# -- mapping units -----------------------------------------------------------------------------


def test_money_and_time_units():
    assert yuan_to_fen("168.00") == 16800
    assert yuan_to_fen("0.1") == 10
    assert yuan_to_fen("19.99") == 1999
    assert yuan_to_fen("") == 0
    with pytest.raises(PlatformError):
        yuan_to_fen("1.005")
    at = parse_time("2026-10-01 08:00:00")
    assert at == datetime(2026, 10, 1, 0, 0, tzinfo=UTC)
    assert parse_time("0001-01-01 00:00:00") is None


def test_masked_and_encrypted_receiver_is_not_an_identifier():
    row = {
        "orderId": "1",
        "orderState": "WAIT_SELLER_STOCK_OUT",
        "orderStartTime": "2026-10-01 08:00:00",
        "modified": "2026-10-01 09:00:00",
        "paymentConfirmTime": "2026-10-01 08:01:00",
        "orderTotalPrice": "10.00",
        "orderPayment": "10.00",
        "xid_buyer": "o_AAS1",
        "consigneeInfo": {"mobile": "138****0000"},
        "itemInfoList": [],
    }
    rec = order_record(row, "v1", "jd")
    assert [i.kind for i in rec.buyer] == ["jd_xid"]
    row["consigneeInfo"]["mobile"] = "Ab3x9==encrypted"
    assert [i.kind for i in order_record(row, "v1", "jd").buyer] == ["jd_xid"]
    row["consigneeInfo"]["mobile"] = "13800138000"
    assert Identifier("receiver_phone", "jd", "13800138000") in order_record(row, "v1", "jd").buyer
    assert all(i.kind != "phone" for i in order_record(row, "v1", "jd").buyer)


def test_error_envelope_mapping():
    def err(code, en="", zh=""):
        return {"error_response": {"code": code, "zh_desc": zh, "en_desc": en}}

    with pytest.raises(TokenExpired):
        raise_for_error(err("19", "Invalid access_token", "无效access_token"))
    with pytest.raises(AuthFailed) as e:
        raise_for_error(err("12", "Invalid Signature"))
    assert not isinstance(e.value, TokenExpired) and e.value.code == "12"
    with pytest.raises(AuthFailed, match="6 minute"):
        raise_for_error(err("8", "Invalid Timestamp"))
    with pytest.raises(RateLimited) as rl:
        raise_for_error(err("2", "App Call Limited, retry after 17 seconds"))
    assert rl.value.retry_after == 17
    with pytest.raises(RateLimited) as rl:
        raise_for_error(err("66", "Api Call Limit exceeded"))
    assert rl.value.retry_after is None
    with pytest.raises(PlatformError):
        raise_for_error(err("15", "Invalid Method"))
    assert retry_after_seconds("This ban will last for 3 more seconds") == 3


def test_plugin_hooks_and_schema():
    assert jd_plugin.register_connectors() == [JdConnector]
    kinds = jd_plugin.register_identifier_kinds()
    assert [k.name for k in kinds] == ["jd_xid"] and kinds[0].strong and not kinds[0].is_global
    register_kind(kinds[0])  # registrable (idempotent)
    jsonschema.Draft202012Validator.check_schema(JdConnector.config_schema)
    fake = JdFake(make_world(people=2, orders=2))
    jsonschema.validate(HARNESS.config(fake), JdConnector.config_schema)
    assert JdConnector.config_schema["properties"]["base_url"]["default"] == "https://api.jd.com"


# -- end to end -------------------------------------------------------------------------------


async def test_full_and_incremental_sync():
    world = make_world()
    async with HARNESS.make_fake(world) as fake:
        conn, _ = make_conn(fake)
        try:
            assert (await conn.check()).ok
            got, cps = await read_all(conn, world.end, world.start)
            truth = {o.external_id: expected_order(o) for o in visible(world)}
            assert len(truth) > 20
            assert by_key(got["orders"]) == truth
            assert any(o["status"] == "cancelled" for o in truth.values())
            assert any(len(o["buyer"]) == 2 for o in truth.values())  # masked receivers skipped
            refunds = {
                r.refund_id: (r.order_external_id, r.amount_fen, r.updated_at)
                for r in got["refunds"]
            }
            assert refunds == expected_refunds(world) and refunds
            assert len(got["refunds"]) == len(refunds)
            assert cps["orders"][-1][1] == {"cursor": world.end.isoformat()}
            assert cps["orders"][-1][2:] == (8, 8)

            # incremental: exactly the touched (and visible) orders
            at = world.end + timedelta(hours=2)
            touched = world.touch(at, new=12, pay=40)
            until2 = at + timedelta(minutes=5)
            states = {name: marks[-1][1] for name, marks in cps.items()}
            inc, _ = await read_all(conn, until2, world.start, states)
            want = {o.external_id for o in touched if o.channel == "jd" and o.status != "created"}
            assert want
            assert {r.external_id for r in inc["orders"]} == want
            assert by_key(inc["orders"]) == {
                k: expected_order(o) for o in visible(world) for k in [o.external_id] if k in want
            }
            # the refund lookback re-reads recent applications only
            assert {r.refund_id for r in inc["refunds"]} <= set(expected_refunds(world))
            # a state at (or past) until reads nothing
            done, _ = await read_all(
                conn, until2, world.start, {"orders": {"cursor": until2.isoformat()}}
            )
            assert done["orders"] == []
        finally:
            await conn.close()


async def test_bad_credentials_fail_after_one_call():
    world = make_world(orders=20)
    async with HARNESS.make_fake(world) as fake:
        conn, saved = make_conn(fake, config=HARNESS.bad_credentials(fake))
        try:
            result = await conn.check()
            assert (
                not result.ok and "12" in result.message and "Invalid Signature" in result.message
            )
            before = len(fake.api_calls())
            with pytest.raises(AuthFailed) as e:
                await read_all(conn, world.end, world.start, only={"orders"})
            assert e.value.code == "12"
            assert len(fake.calls) - before == 1
            assert saved.updates == []
        finally:
            await conn.close()


async def test_token_expiry_refreshes_and_continues():
    world = make_world()
    async with HARNESS.make_fake(world) as fake:
        conn, saved = make_conn(fake)
        try:
            fake.expire_token()
            got, _ = await read_all(conn, world.end, world.start)
            assert by_key(got["orders"]) == {
                o.external_id: expected_order(o) for o in visible(world)
            }
            assert fake.tokens_issued == 1
            assert saved.updates == [
                {"access_token": fake.access_token, "refresh_token": fake.refresh_token}
            ]
            assert conn.config["access_token"] == fake.access_token
            assert conn.http.stats.token_refreshes == 1
            # a revoked refresh token is an auth failure, not a loop
            fake.expire_token()
            fake.refresh_token = "revoked"
            with pytest.raises(AuthFailed):
                await read_all(conn, world.end, world.start, only={"orders"})
        finally:
            await conn.close()


async def test_rate_limit_ban_is_honoured():
    world = make_world(orders=30, days=2)
    async with HARNESS.make_fake(world, Faults(ban_seconds=1)) as fake:
        fired: list[int] = []

        def pick():
            if not fired:
                fired.append(1)
                return "429"
            return None

        fake.faults.pick = pick  # exactly one rate-limited answer
        conn, _ = make_conn(fake)
        try:
            t0 = time.monotonic()
            got, _ = await read_all(conn, world.end, world.start, only={"orders"})
            elapsed = time.monotonic() - t0
            assert elapsed >= 0.95
            assert conn.http.stats.rate_limited == 1
            assert fake.calls[0].fault == "429" and fake.calls[1].fault is None
            assert {r.external_id for r in got["orders"]} == {o.external_id for o in visible(world)}
        finally:
            await conn.close()


async def test_fault_injection_gives_identical_records():
    world = make_world(orders=500)
    async with HARNESS.make_fake(world) as fake:
        conn, _ = make_conn(fake, page_size=3)
        try:
            clean, _ = await read_all(conn, world.end, world.start)
        finally:
            await conn.close()
    faults = Faults(rate=0.2, kinds=ALL_FAULTS, seed=2, timeout_delay=0.7)
    async with HARNESS.make_fake(world, faults) as fake:
        conn, _ = make_conn(fake, page_size=3)
        try:
            noisy, _ = await read_all(conn, world.end, world.start)
        finally:
            await conn.close()
    assert set(faults.injected) == set(ALL_FAULTS), faults.injected
    for stream in ("orders", "refunds"):
        assert by_key(noisy[stream]) == by_key(clean[stream])
    assert by_key(clean["orders"]) == {o.external_id: expected_order(o) for o in visible(world)}


async def test_resume_from_every_checkpoint():
    world = make_world(days=5)
    async with HARNESS.make_fake(world) as fake:
        conn, _ = make_conn(fake)
        try:
            full, cps = await read_all(conn, world.end, world.start)
            for stream in ("orders", "refunds"):
                keys = [str(getattr(r, r.primary_key)) for r in full[stream]]
                for count, state, _, _ in cps[stream]:
                    again, _ = await read_all(
                        conn, world.end, world.start, {stream: state}, only={stream}
                    )
                    got = {str(getattr(r, r.primary_key)) for r in again[stream]}
                    assert set(keys[count:]) <= got <= set(keys)
                    if stream == "orders":
                        assert got == set(keys[count:])
        finally:
            await conn.close()


async def test_clock_skew_is_the_platform_error():
    world = make_world(orders=10)
    async with HARNESS.make_fake(world) as fake:
        skewed = lambda: datetime.now(UTC) - timedelta(minutes=10)  # noqa: E731
        conn, _ = make_conn(fake, clock=skewed)
        try:
            result = await conn.check()
            assert not result.ok and "JD error 8" in result.message
            before = len(fake.calls)
            with pytest.raises(AuthFailed) as e:
                await read_all(conn, world.end, world.start, only={"orders"})
            assert e.value.code == "8" and len(fake.calls) - before == 1
        finally:
            await conn.close()
        # 5 minutes off is inside JD's window
        conn, _ = make_conn(fake, clock=lambda: datetime.now(UTC) + timedelta(minutes=5))
        try:
            assert (await conn.check()).ok
        finally:
            await conn.close()


async def test_page_cap_splits_windows():
    world = World.generate(seed=3, people=30, orders=300, days=2, channels=("jd",))
    async with HARNESS.make_fake(world) as fake:
        fake.max_page = 2
        # a client unaware of the cap runs into the fake's page limit
        conn, _ = make_conn(fake, page_size=3)
        try:
            with pytest.raises(PlatformError, match="page"):
                await read_all(conn, world.end, world.start, only={"orders"})
        finally:
            await conn.close()
        conn, _ = make_conn(fake, page_size=3)
        conn.max_page = 2
        try:
            got, _ = await read_all(conn, world.end, world.start, only={"orders"})
            assert by_key(got["orders"]) == {
                o.external_id: expected_order(o) for o in visible(world)
            }
            # 300 orders in two days cannot fit 2 pages x 3 rows per day: windows were split
            assert len(fake.api_calls("jingdong.pop.order.search")) > 50
        finally:
            await conn.close()


async def test_fake_accepts_international_timestamp_and_form_body():
    world = make_world(orders=10)
    async with HARNESS.make_fake(world) as fake:
        conn, _ = make_conn(fake)
        try:
            req = conn.client.build(
                "jingdong.pop.order.search",
                {
                    "start_date": "2026-10-01 00:00:00",
                    "end_date": "2026-10-01 01:00:00",
                    "order_state": "FINISHED_L",
                    "page": 1,
                    "page_size": 10,
                },
            )
            params = dict(req.params)
            params["timestamp"] = datetime.now(CST).strftime("%Y-%m-%d %H:%M:%S.000%z")
            params["sign"] = sign(params, fake.app_secret)
            async with conn.http.session.post(req.url, data=params) as resp:
                body = await resp.json()
            assert "jingdong_pop_order_search_responce" in body, body
            params["sign"] = "0" * 32
            async with conn.http.session.post(req.url, data=params) as resp:
                body = await resp.json()
            assert body["error_response"]["code"] == "12"
        finally:
            await conn.close()


async def test_repeated_pages_are_fetched_again():
    """Every third call answers with the previous page of its sequence (a page shift): the
    stream re-asks for the page and still returns every order exactly once."""
    world = World.generate(seed=5, people=20, orders=120, days=3, channels=("jd",))
    async with HARNESS.make_fake(world) as fake:
        n = [0]

        def pick():
            n[0] += 1
            return "duplicate" if n[0] % 3 == 0 else None

        fake.faults.pick = pick
        conn, _ = make_conn(fake, page_size=4)
        try:
            got, _ = await read_all(conn, world.end, world.start, only={"orders"})
        finally:
            await conn.close()
    keys = [r.external_id for r in got["orders"]]
    assert len(keys) == len(set(keys))
    assert by_key(got["orders"]) == {o.external_id: expected_order(o) for o in visible(world)}

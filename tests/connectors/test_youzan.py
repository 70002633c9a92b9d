"""Youzan connector against its fake gateway: token protocol, wire format, full and incremental
sync, refunds, auth / token / rate-limit errors, page-shift duplicates, the page cap, fault
injection and resuming from every checkpoint."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest

import connectors.youzan as youzan_plugin
from connectors.testing.fake import ALL_FAULTS, Faults
from connectors.testing.world import World
from connectors.youzan.client import raise_for_error
from connectors.youzan.connector import YouzanConnector
from connectors.youzan.fake import KDT_ID, YouzanFake
from connectors.youzan.harness import WECHAT_APPID, YouzanHarness
from connectors.youzan.mapping import canonical_status, order_record, parse_time, yuan_to_fen
from gateway.sync import (
    Checkpoint,
    ConnectorContext,
    Identifier,
    Partition,
    PlatformHttp,
    RateLimiter,
    RetryPolicy,
)
from gateway.sync.errors import AuthFailed, PlatformError, TokenExpired, TransientError

HARNESS = YouzanHarness()


def make_world(**kw: Any) -> World:
    opts = {"seed": 2, "people": 40, "orders": 300, "days": 8, "refund_rate": 0.3}
    opts.update(kw)
    return World.generate(**opts)


class Saved:
    def __init__(self) -> None:
        self.updates: list[dict[str, str]] = []

    async def __call__(self, values: Any) -> None:
        self.updates.append(dict(values))


def make_conn(fake: YouzanFake, *, config: dict | None = None, **extra: Any):
    saved = Saved()
    ctx = ConnectorContext(
        channel="youzan",
        http=PlatformHttp(
            RateLimiter(1000, 1000), RetryPolicy(attempts=8, backoff=0.01, timeout=0.5)
        ),
        save_secrets=saved,
    )
    cfg = dict(config if config is not None else HARNESS.config(fake))
    cfg.update(extra)
    return YouzanConnector(cfg, ctx), saved


async def read_all(conn, until, since, states=None, only=None):
    out: dict[str, list] = {}
    cps: dict[str, list] = {}
    for stream in conn.streams():
        if only and stream.name not in only:
            continue
        recs, marks = out.setdefault(stream.name, []), cps.setdefault(stream.name, [])
        state = (states or {}).get(stream.name)
        async for item in stream.read(Partition("default", until=until, since=since), state):
            if isinstance(item, Checkpoint):
                marks.append((len(recs), dict(item.state)))
            else:
                recs.append(item)
    return out, cps


def expected_order(o) -> dict:
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
        "buyer": [
            {"kind": "youzan_open_id", "scope": KDT_ID, "value": o.person.youzan_open_id},
            {"kind": "phone", "scope": None, "value": o.person.phone},
            {"kind": "wechat_openid", "scope": WECHAT_APPID, "value": o.person.wechat_openid},
        ],
        "profile": None,
        "store_code": None,
        "guide_code": None,
    }


def truth(world: World) -> dict[str, dict]:
    return {o.external_id: expected_order(o) for o in world.orders["youzan"]}


def normalise(rec) -> dict:
    data = rec.to_json()
    for k in ("placed_at", "paid_at", "updated_at"):
        if data.get(k):
            data[k] = datetime.fromisoformat(data[k]).astimezone(UTC).isoformat()
    return data


def by_key(records) -> dict[str, dict]:
    return {str(getattr(r, r.primary_key)): normalise(r) for r in records}


def expected_refunds(world: World) -> dict[str, tuple]:
    return {
        r.refund_id: (o.external_id, r.amount_fen, r.at)
        for o in world.orders["youzan"]
        for r in o.refunds
    }


# -- units ------------------------------------------------------------------------------------


def test_money_time_and_status_units():
    assert yuan_to_fen("9.82") == 982
    assert yuan_to_fen("13.00") == 1300
    with pytest.raises(PlatformError):
        yuan_to_fen("0.001")
    assert parse_time("2026-10-01 08:00:00") == datetime(2026, 10, 1, tzinfo=UTC)
    assert canonical_status({"status": "WAIT_BUYER_PAY"}) == "created"
    assert canonical_status({"status": "WAIT_SELLER_SEND_GOODS", "pay_time": "x"}) == "paid"
    assert canonical_status({"status": "TRADE_SUCCESS", "pay_time": "x"}) == "completed"
    assert canonical_status({"status": "TRADE_CLOSED"}) == "cancelled"
    # paid, then refunded in full: money changed hands, the refund stream says how much
    assert canonical_status({"status": "TRADE_CLOSED", "pay_time": "x", "refund_state": 12}) == (
        "paid"
    )


def test_identifier_rules():
    full = {
        "order_info": {
            "tid": "E1",
            "status": "TRADE_SUCCESS",
            "created": "2026-10-01 08:00:00",
            "pay_time": "2026-10-01 08:01:00",
        },
        "buyer_info": {"yz_open_id": "yzA", "buyer_phone": "138****0000", "outer_user_id": "oX"},
        "address_info": {"receiver_tel": "$abc$1$"},
        "pay_info": {"payment": "1.00", "total_fee": "1.00"},
        "orders": [],
    }
    rec = order_record(full, "77", None, "youzan")
    assert rec.buyer == (Identifier("youzan_open_id", "77", "yzA"),)  # masked, no appid
    full["buyer_info"]["buyer_phone"] = "13800138000"
    full["address_info"]["receiver_tel"] = "13900139000"
    rec = order_record(full, "77", "wxAPP", "youzan")
    assert set(rec.buyer) == {
        Identifier("youzan_open_id", "77", "yzA"),
        Identifier("phone", None, "13800138000"),
        Identifier("wechat_openid", "wxAPP", "oX"),
        Identifier("receiver_phone", "youzan", "13900139000"),
    }


def test_error_envelopes():
    with pytest.raises(TokenExpired):
        raise_for_error(
            {"gw_err_resp": {"trace_id": "t", "err_msg": "Token 不存在", "err_code": 4203}}
        )
    with pytest.raises(AuthFailed) as e:
        raise_for_error(
            {"gw_err_resp": {"trace_id": "t", "err_msg": "no credential", "err_code": 4201}}
        )
    assert not isinstance(e.value, TokenExpired) and e.value.code == "4201"
    for code in (106000001, 106100118):
        with pytest.raises(TransientError):
            raise_for_error({"code": code, "success": False, "message": "timeout"})
    with pytest.raises(PlatformError) as e:
        raise_for_error({"code": 106000003, "success": False, "message": "end time"})
    assert e.value.code == "106000003" and not isinstance(e.value, TransientError)
    with pytest.raises(PlatformError):
        raise_for_error({"gw_err_resp": {"err_msg": "unknown api", "err_code": 4005}})
    assert raise_for_error({"code": 200, "success": True, "data": {"x": 1}}) == {"x": 1}


def test_plugin_and_schema():
    assert youzan_plugin.register_connectors() == [YouzanConnector]
    jsonschema.Draft202012Validator.check_schema(YouzanConnector.config_schema)
    fake = YouzanFake(make_world(people=2, orders=2))
    jsonschema.validate(HARNESS.config(fake), YouzanConnector.config_schema)
    schema = YouzanConnector.config_schema
    assert schema["properties"]["base_url"]["default"] == "https://open.youzanyun.com"
    assert schema["properties"]["client_secret"]["writeOnly"]


# -- end to end -------------------------------------------------------------------------------


async def test_full_and_incremental_sync():
    world = make_world()
    async with HARNESS.make_fake(world) as fake:
        conn, saved = make_conn(fake)
        try:
            assert (await conn.check()).ok
            assert saved.updates == [{"access_token": fake.access_token}]  # silent grant
            got, cps = await read_all(conn, world.end, world.start)
            want = truth(world)
            assert len(want) > 20
            assert by_key(got["orders"]) == want
            statuses = {o["status"] for o in want.values()}
            assert statuses == {"created", "paid", "completed", "cancelled"}
            closed_refunded = [
                o for o in world.orders["youzan"] if fake.state_of(o) == ("TRADE_CLOSED", 12)
            ]
            assert closed_refunded and all(
                want[o.external_id]["status"] == "paid" for o in closed_refunded
            )
            refunds = {
                r.refund_id: (r.order_external_id, r.amount_fen, r.updated_at)
                for r in got["refunds"]
            }
            assert refunds and refunds == expected_refunds(world)
            assert cps["orders"][-1][1] == {"cursor": world.end.isoformat()}
            assert fake.tokens_issued == 1

            at = world.end + timedelta(hours=3)
            touched = world.touch(at, new=15, pay=40)
            until2 = at + timedelta(minutes=1)
            states = {name: marks[-1][1] for name, marks in cps.items()}
            inc, _ = await read_all(conn, until2, world.start, states)
            wanted = {o.external_id for o in touched if o.channel == "youzan"}
            assert wanted
            assert by_key(inc["orders"]) == {k: v for k, v in truth(world).items() if k in wanted}
            assert inc["refunds"] == []
            none, _ = await read_all(
                conn, until2, world.start, {"orders": {"cursor": until2.isoformat()}}, {"orders"}
            )
            assert none["orders"] == []
        finally:
            await conn.close()


async def test_bad_client_secret_fails_after_one_call():
    world = make_world(orders=20)
    async with HARNESS.make_fake(world) as fake:
        conn, saved = make_conn(fake, config=HARNESS.bad_credentials(fake))
        try:
            result = await conn.check()
            assert not result.ok and "40010" in result.message and "client_secret" in result.message
            before = len(fake.calls)
            with pytest.raises(AuthFailed):
                await read_all(conn, world.end, world.start, only={"orders"})
            assert len(fake.calls) - before == 1
            assert saved.updates == []
        finally:
            await conn.close()


async def test_token_only_in_query_string():
    world = make_world(orders=10)
    async with HARNESS.make_fake(world) as fake:
        conn, _ = make_conn(fake)
        try:
            await conn.client.ensure_token()
            url = f"{fake.base_url}/api/youzan.trades.sold.get/4.0.4"
            headers = {"Authorization": f"Bearer {fake.access_token}"}
            async with conn.http.session.post(url, json={"page_no": 1}, headers=headers) as r:
                body = await r.json()
            assert body["gw_err_resp"]["err_code"] == 4201
            with pytest.raises(AuthFailed) as e:
                raise_for_error(body)
            assert e.value.code == "4201"
        finally:
            await conn.close()


async def test_token_expiry_refreshes_and_continues():
    world = make_world()
    async with HARNESS.make_fake(world) as fake:
        conn, saved = make_conn(fake)
        try:
            await conn.client.ensure_token()
            first = fake.access_token
            fake.expire_token()
            got, _ = await read_all(conn, world.end, world.start)
            assert by_key(got["orders"]) == truth(world)
            assert fake.tokens_issued == 2 and fake.access_token != first
            assert saved.updates == [{"access_token": first}, {"access_token": fake.access_token}]
            assert conn.http.stats.token_refreshes == 1
            # 4203 after 4203 means the new token does not work either: stop
            fake.expire_token()
            fake.app_secret = "rotated"
            with pytest.raises(AuthFailed):
                await read_all(conn, world.end, world.start, only={"orders"})
        finally:
            await conn.close()


async def test_http_429_retry_after_is_honoured():
    world = make_world(orders=30, days=2)
    async with HARNESS.make_fake(world, Faults(ban_seconds=1)) as fake:
        fired: list[int] = []

        def pick():
            if not fired:
                fired.append(1)
                return "429"
            return None

        fake.faults.pick = pick
        conn, _ = make_conn(fake)
        try:
            await conn.client.ensure_token()
            t0 = time.monotonic()
            got, _ = await read_all(conn, world.end, world.start, only={"orders"})
            assert time.monotonic() - t0 >= 0.95
            assert conn.http.stats.rate_limited == 1
            api = fake.api_calls("youzan.trades.sold.get")
            assert api[0].status == 429 and api[1].status == 200
            assert {r.external_id for r in got["orders"]} == set(truth(world))
        finally:
            await conn.close()


async def test_page_shift_duplicates_are_removed():
    world = World.generate(seed=5, people=20, orders=120, days=3, channels=("youzan",))
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
    assert by_key(got["orders"]) == truth(world)


async def test_page_cap_shrinks_windows():
    world = World.generate(seed=3, people=30, orders=300, days=2, channels=("youzan",))
    async with HARNESS.make_fake(world) as fake:
        fake.max_page = 2
        conn, _ = make_conn(fake, page_size=3)
        try:
            with pytest.raises(PlatformError, match="page_no"):
                await read_all(conn, world.end, world.start, only={"orders"})
        finally:
            await conn.close()
        conn, _ = make_conn(fake, page_size=3)
        conn.max_page = 2
        try:
            got, _ = await read_all(conn, world.end, world.start, only={"orders"})
            assert by_key(got["orders"]) == truth(world)
        finally:
            await conn.close()


async def test_fault_injection_gives_identical_records():
    world = make_world(orders=800)
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
    assert by_key(clean["orders"]) == truth(world)


async def test_resume_from_every_checkpoint():
    world = make_world(days=5)
    async with HARNESS.make_fake(world) as fake:
        conn, _ = make_conn(fake)
        try:
            full, cps = await read_all(conn, world.end, world.start)
            for stream in ("orders", "refunds"):
                keys = [str(getattr(r, r.primary_key)) for r in full[stream]]
                for count, state in cps[stream]:
                    again, _ = await read_all(
                        conn, world.end, world.start, {stream: state}, only={stream}
                    )
                    assert {str(getattr(r, r.primary_key)) for r in again[stream]} == set(
                        keys[count:]
                    )
        finally:
            await conn.close()

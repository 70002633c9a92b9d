"""The WeChat connector against its fake platform over real HTTP: signatures (T9 and the AES
envelope), the followers full-refresh stream, token refresh, rate limits, faults, the login relay
and the official-account / member-card callback."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

import connectors.wechat as wechat_plugin
from connectors.testing.fake import ALL_FAULTS, Faults
from connectors.testing.world import World
from connectors.wechat.client import raise_for_errcode
from connectors.wechat.connector import WechatConnector
from connectors.wechat.fake import WechatFake
from connectors.wechat.harness import AES_KEY, CALLBACK_TOKEN, OPEN_PLATFORM_ID, WechatHarness
from connectors.wechat.signing import (
    CryptoError,
    callback_signature,
    decrypt_message,
    encrypt_message,
    msg_signature,
)
from gateway.identifiers import KINDS
from gateway.sync import (
    ApplyOutcome,
    Checkpoint,
    ConnectorContext,
    Identifier,
    MemberRecord,
    Partition,
    PlatformHttp,
    PointsEventRecord,
    RateLimiter,
    RetryPolicy,
    WebhookRequest,
)
from gateway.sync.errors import (
    AuthFailed,
    PlatformError,
    RateLimited,
    TokenExpired,
    TransientError,
)
from gateway.sync.records import record_key
from gateway.sync.registry import ConnectorRegistry, plugin_manager

VECTORS = Path(__file__).parents[2].parent / "shared/channels/signing_vectors.json"
HARNESS = WechatHarness()
SEED_ALL_KINDS = 24  # seeded: this seed injects every fault kind


# -- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture
def world() -> World:
    return World.generate(seed=11, people=60, orders=40)


@pytest.fixture
async def fake(world: World):
    f = HARNESS.make_fake(world)
    async with f:
        yield f


class Saved(list):
    async def __call__(self, values) -> None:
        self.append(dict(values))


@pytest.fixture
async def make():
    made: list[WechatConnector] = []

    def _make(config, *, saved: Saved | None = None, attempts: int = 8, clock=None):
        ctx = ConnectorContext(
            channel="wechat",
            http=PlatformHttp(
                RateLimiter(1000, 1000), RetryPolicy(attempts=attempts, backoff=0.01, timeout=0.5)
            ),
            save_secrets=saved if saved is not None else Saved(),
        )
        if clock is not None:
            ctx.clock = clock
        conn = WechatConnector(config, ctx)
        made.append(conn)
        return conn

    yield _make
    for conn in made:
        await conn.close()


def partition(world: World, until: datetime | None = None) -> Partition:
    return Partition("default", until=until or world.end, since=world.start)


async def read_items(conn: WechatConnector, part: Partition, state=None) -> list:
    items = []
    for stream in conn.streams():
        async for item in stream.read(part, state):
            items.append(item)
    return items


def records_of(items: Sequence) -> list:
    return [i for i in items if not isinstance(i, Checkpoint)]


def by_key(records: Sequence) -> dict[str, dict]:
    return {record_key(r): r.to_json() for r in records}


def truth(fake: WechatFake, world: World) -> dict[str, dict]:
    """What the followers stream must yield: one member per follower."""
    out = {}
    for p in world.people_on("wechat"):
        openid = fake.oa_openid(p)
        at = fake.subscribe_time(p)
        out[openid] = MemberRecord(
            external_id=openid,
            identifiers=(
                Identifier("wechat_openid", fake.oa_appid, openid),
                HARNESS.link_identifier(p),
            ),
            updated_at=at,
            joined_at=at,
        ).to_json()
    return out


class RecordingPush:
    """A PushContext that records what a webhook handler applied."""

    channel = "wechat"

    def __init__(self) -> None:
        self.applied: list = []

    async def apply(self, records) -> list[ApplyOutcome]:
        out = []
        for r in records:
            self.applied.append(r)
            ident = sorted((i.kind, i.scope or "*", i.value) for i in r.identifiers)
            member = uuid.uuid5(uuid.NAMESPACE_URL, repr(ident[0]))
            out.append(ApplyOutcome(r.record_type, record_key(r), "created", member_id=member))
        return out

    async def lookup(self, identifiers):
        return None


def now_ts() -> str:
    return str(int(time.time()))


# -- signatures ---------------------------------------------------------------------------------


def test_golden_vector_t9() -> None:
    if not VECTORS.exists():
        pytest.skip(f"signing vectors not found at {VECTORS}")
    vectors = [v for v in json.loads(VECTORS.read_text())["vectors"] if v["platform"] == "wechat"]
    assert [v["id"] for v in vectors] == ["T9"]
    for v in vectors:
        p = v["params"]
        assert "".join(sorted(p.values())) == v["signed_string"]
        assert callback_signature(p["token"], p["timestamp"], p["nonce"]) == v["expected"]


def test_encrypted_mode_third_party_vectors() -> None:
    # wechatpy tests/test_crypto.py and the Rust wechat-sdk ports (independent of this code).
    key = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
    ct = encrypt_message(key, b"test", "rust", random16=b"1234567890123456")
    assert ct == "9s4gMv99m88kKTh/H8IdkNiFGeG9pd7vNWl50fGRWXY="
    assert decrypt_message(key, ct) == (b"test", "rust")
    assert msg_signature("test", "123456", "test", "rust") == (
        "d6056f2bb3ad3e30f4afa5ef90cc9ddcdc7b7b27"
    )
    echo = (
        "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q=="
    )
    assert msg_signature("123456", "1411443780", "437374425", echo) == (
        "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96"
    )
    assert decrypt_message(key, echo)[1] == "wx49f0ab532d5d035a"


def test_decrypt_refuses_garbage() -> None:
    ct = encrypt_message(AES_KEY, b"<xml/>", "wx1a2b3c4d5e6f7a8b")
    other = "A" * 43
    with pytest.raises(CryptoError):
        decrypt_message(other, ct)  # wrong key → bad padding (or garbage length)
    with pytest.raises(CryptoError):
        decrypt_message(AES_KEY, ct[:-8] + "AAAAAAA=")
    with pytest.raises(CryptoError):
        decrypt_message(AES_KEY, "not base64!")


# -- error envelope -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (40001, TokenExpired),
        (40014, TokenExpired),
        (42001, TokenExpired),
        (40125, AuthFailed),
        (40013, AuthFailed),
        (45011, RateLimited),
        (45009, RateLimited),
        (-1, TransientError),
        (40029, PlatformError),
        (40226, PlatformError),
    ],
)
def test_errcode_mapping(code: int, error: type) -> None:
    with pytest.raises(error) as info:
        raise_for_errcode({"errcode": code, "errmsg": "x"})
    assert type(info.value) is error
    assert info.value.code == str(code)


def test_errcode_details() -> None:
    assert raise_for_errcode({"openid": "o"}) == {"openid": "o"}
    assert raise_for_errcode({"errcode": 0, "errmsg": "ok"})["errmsg"] == "ok"
    with pytest.raises(RateLimited) as ban:
        raise_for_errcode({"errcode": 45011, "errmsg": "minute-quota reach limit, ban 7 seconds"})
    assert ban.value.retry_after == 7
    with pytest.raises(RateLimited) as minute:
        raise_for_errcode({"errcode": 45011, "errmsg": "retry next minute"})
    assert minute.value.retry_after is None
    # Daily quota: wait until 00:00 Beijing, far beyond any retry budget.
    at = datetime(2026, 10, 1, 15, 0, tzinfo=UTC)  # 23:00 in Beijing
    with pytest.raises(RateLimited) as daily:
        raise_for_errcode({"errcode": 45009, "errmsg": "reach max api daily quota"}, now=at)
    assert daily.value.retry_after == 3600
    # On the token endpoint itself a "bad credential" is not an expired token.
    with pytest.raises(AuthFailed) as tok:
        raise_for_errcode({"errcode": 40001, "errmsg": "invalid credential"}, token_endpoint=True)
    assert type(tok.value) is AuthFailed


# -- plugin registration ------------------------------------------------------------------------


async def test_plugin_registers_connector_kind_and_webhooks(fake: WechatFake) -> None:
    pm = plugin_manager()
    pm.register(wechat_plugin)
    classes = [c for batch in pm.hook.register_connectors() for c in batch]
    hooks = [h for batch in pm.hook.register_webhooks() for h in batch]
    kinds = [k for batch in pm.hook.register_identifier_kinds() for k in batch]
    registry = ConnectorRegistry(classes, hooks)
    assert registry.names() == ["wechat"]
    assert registry.webhook("wechat", "login") is not None
    assert registry.webhook("wechat", "events") is not None
    assert [k.name for k in kinds] == ["wechat_card_code"]
    assert KINDS["wechat_card_code"].strong and not KINDS["wechat_card_code"].is_global
    validator = jsonschema.Draft202012Validator(WechatConnector.config_schema)
    validator.validate(HARNESS.config(fake))
    validator.validate(HARNESS.bad_credentials(fake))
    assert not validator.is_valid({**HARNESS.config(fake), "extra": 1})
    assert not validator.is_valid(
        {k: v for k, v in HARNESS.config(fake).items() if k != "oa_secret"}
    )


# -- check / auth -------------------------------------------------------------------------------


async def test_check_ok(fake: WechatFake, make) -> None:
    result = await make(HARNESS.config(fake)).check()
    assert result.ok, result.message
    assert fake.appid in result.message and fake.oa_appid in result.message


async def test_wrong_secret_check_and_read_fail_without_retry(
    fake: WechatFake, world: World, make
) -> None:
    bad = HARNESS.bad_credentials(fake)
    result = await make(bad).check()
    assert not result.ok
    assert "40125" in result.message and "invalid appsecret" in result.message
    fake.calls.clear()
    conn = make(bad)
    with pytest.raises(AuthFailed):
        await read_items(conn, partition(world))
    assert len(fake.calls) == 1 and fake.calls[0].path == "/cgi-bin/token"


async def test_unreachable_platform_check_does_not_raise(make, fake: WechatFake) -> None:
    config = {**HARNESS.config(fake), "base_url": "http://127.0.0.1:9"}
    result = await make(config, attempts=1).check()
    assert not result.ok


async def test_mini_program_only_has_no_pull_stream(fake: WechatFake, make) -> None:
    config = {k: v for k, v in HARNESS.config(fake).items() if k not in ("oa_appid", "oa_secret")}
    conn = make(config)
    assert conn.streams() == ()
    result = await conn.check()
    assert result.ok and fake.oa_appid not in result.message


# -- followers ----------------------------------------------------------------------------------


async def test_followers_full_pass_equals_world(fake: WechatFake, world: World, make) -> None:
    saved = Saved()
    conn = make(HARNESS.config(fake), saved=saved)
    items = await read_items(conn, partition(world))
    recs = records_of(items)
    assert len(recs) == len(world.people_on("wechat")) > 2 * HARNESS.page_size
    assert by_key(recs) == truth(fake, world)
    # Paged: ceil(n / page) pages plus the empty answer after the last one.
    pages = -(-len(recs) // HARNESS.page_size)
    assert len(fake.api_calls("/cgi-bin/user/get")) == pages + 1
    cps = [i for i in items if isinstance(i, Checkpoint)]
    assert cps[-1].state == {"cursor": world.end.isoformat()}
    assert all("next_openid" in c.state for c in cps[:-1]) and len(cps) == pages + 1
    assert cps[-1].done == cps[-1].total == len(recs)
    assert saved and "oa_access_token" in saved[0]


async def test_finished_pass_then_next_sync_is_a_new_full_pass(
    fake: WechatFake, world: World, make
) -> None:
    conn = make(HARNESS.config(fake))
    first = await read_items(conn, partition(world))
    final = first[-1].state
    fake.calls.clear()
    # The same sync boundary again: nothing to do, no HTTP at all.
    assert await read_items(conn, partition(world), final) == []
    assert fake.calls == []
    # A later sync re-reads the whole list (full refresh) and ends at its own boundary.
    later = world.end + timedelta(days=1)
    again = await read_items(conn, partition(world, later), final)
    assert by_key(records_of(again)) == by_key(records_of(first))
    assert again[-1].state == {"cursor": later.isoformat()}


async def test_followers_after_until_wait_for_next_pass(
    fake: WechatFake, world: World, make
) -> None:
    people = world.people_on("wechat")
    cut = sorted(fake.subscribe_time(p) for p in people)[len(people) // 2]
    recs = records_of(await read_items(make(HARNESS.config(fake)), partition(world, cut)))
    assert recs and all(r.updated_at <= cut for r in recs)
    assert len(recs) == sum(1 for p in people if fake.subscribe_time(p) <= cut)


async def test_resume_from_every_checkpoint(fake: WechatFake, world: World, make) -> None:
    conn = make(HARNESS.config(fake))
    items = await read_items(conn, partition(world))
    everything = by_key(records_of(items))
    for i, cp in enumerate(items):
        if not isinstance(cp, Checkpoint):
            continue
        after = by_key(records_of(items[i + 1 :]))
        resumed = by_key(records_of(await read_items(conn, partition(world), cp.state)))
        assert after.items() <= resumed.items()
        if "next_openid" in cp.state:
            # Resumes right after the last applied follower: no replay, nothing missed.
            assert resumed == after
            seen = by_key(records_of(items[:i]))
            assert seen | resumed == everything
        else:
            assert resumed == {}


async def test_resume_after_the_follower_left_restarts(
    fake: WechatFake, world: World, make
) -> None:
    conn = make(HARNESS.config(fake))
    items = await read_items(conn, partition(world))
    mid = next(c for c in items if isinstance(c, Checkpoint) and "next_openid" in c.state)
    gone = next(
        p for p in world.people_on("wechat") if fake.oa_openid(p) == mid.state["next_openid"]
    )
    fake.unfollow(gone)
    resumed = by_key(records_of(await read_items(conn, partition(world), mid.state)))
    expected = truth(fake, world)
    expected.pop(fake.oa_openid(gone))
    assert resumed == expected


async def test_page_boundary_follower_leaving_mid_pass_restarts(
    fake: WechatFake, world: World, make
) -> None:
    conn = make(HARNESS.config(fake))
    got = []
    gone = None
    async for item in conn.streams()[0].read(partition(world), None):
        got.append(item)
        if gone is None and isinstance(item, Checkpoint):
            boundary = item.state["next_openid"]
            gone = next(p for p in world.people_on("wechat") if fake.oa_openid(p) == boundary)
            fake.unfollow(gone)
    assert gone is not None
    expected = truth(fake, world)
    assert by_key(records_of(got)) == expected  # the first page was read before the unfollow
    final = by_key(
        records_of(got[got.index(next(c for c in got if isinstance(c, Checkpoint))) + 1 :])
    )
    expected.pop(fake.oa_openid(gone))
    assert final == expected
    assert got[-1].state == {"cursor": world.end.isoformat()}


async def test_token_expiry_refreshes_persists_and_continues(
    fake: WechatFake, world: World, make
) -> None:
    saved = Saved()
    conn = make(HARNESS.config(fake), saved=saved)
    stream = conn.streams()[0]
    got = []
    async for item in stream.read(partition(world), None):
        got.append(item)
        if isinstance(item, Checkpoint) and len(got) < 20:
            fake.expire_token()  # expires mid-pass
    assert by_key(records_of(got)) == truth(fake, world)
    tokens = [s["oa_access_token"] for s in saved if "oa_access_token" in s]
    assert len(tokens) >= 2 and len(set(tokens)) == len(tokens)
    assert conn.http.stats.token_refreshes >= 1
    assert conn.config["oa_access_token"] == fake.tokens[fake.oa_appid]
    # A new instance with the persisted token does not fetch another one.
    fake.calls.clear()
    again = make({**HARNESS.config(fake), "oa_access_token": tokens[-1]})
    await read_items(again, partition(world, world.end + timedelta(days=1)))
    assert not fake.api_calls("/cgi-bin/token")


async def test_rate_limit_ban_seconds_are_honoured(world: World, make) -> None:
    faults = Faults(rate=0.25, kinds=("429",), seed=5, ban_seconds=1)
    async with HARNESS.make_fake(world, faults) as fake:
        conn = make(HARNESS.config(fake))
        started = time.monotonic()
        recs = records_of(await read_items(conn, partition(world)))
        elapsed = time.monotonic() - started
        assert by_key(recs) == truth(fake, world)
    banned = faults.injected.get("429", 0)
    assert banned >= 1
    assert elapsed >= banned * 1.0 * 0.95
    assert conn.http.stats.rate_limited == banned


async def test_busy_is_retried_and_daily_quota_is_not(fake: WechatFake, world: World, make) -> None:
    conn = make(HARNESS.config(fake))
    fake.fail_next(-1, "system error", times=2)
    recs = records_of(await read_items(conn, partition(world)))
    assert by_key(recs) == truth(fake, world)
    assert conn.http.stats.transient >= 2
    fake.fail_next(45009, "reach max api daily quota limit")
    fake.calls.clear()
    with pytest.raises(RateLimited) as info:
        await read_items(conn, partition(world, world.end + timedelta(days=1)))
    assert info.value.code == "45009"
    assert len(fake.api_calls("/cgi-bin/user/get")) == 1  # stops, no hammering


async def test_twenty_percent_faults_give_the_clean_result(world: World, make) -> None:
    small_pages = WechatHarness(page_size=2)  # more calls, so every fault kind shows up
    async with small_pages.make_fake(world) as clean_fake:
        clean_conn = make(small_pages.config(clean_fake))
        clean = by_key(records_of(await read_items(clean_conn, partition(world))))
    faults = Faults(rate=0.2, kinds=ALL_FAULTS, seed=SEED_ALL_KINDS, timeout_delay=0.7)
    async with small_pages.make_fake(world, faults) as fake:
        conn = make(small_pages.config(fake))
        noisy = by_key(records_of(await read_items(conn, partition(world))))
    assert noisy == clean == truth(fake, world)
    assert set(faults.injected) == set(ALL_FAULTS), faults.injected
    assert conn.http.stats.retries >= sum(faults.injected.values()) - faults.injected["duplicate"]


async def test_repeated_follower_pages_are_skipped(world: World, make) -> None:
    faults = Faults(rate=0.5, kinds=("duplicate",), seed=3)
    async with HARNESS.make_fake(world, faults) as fake:
        conn = make(HARNESS.config(fake))
        recs = records_of(await read_items(conn, partition(world)))
        pages = -(-len(recs) // HARNESS.page_size) + 1
        repeats = len(fake.api_calls("/cgi-bin/user/get")) - pages
    assert repeats >= 1
    assert by_key(recs) == truth(fake, world)
    assert len(recs) == len(truth(fake, world))  # repeated pages are not re-emitted


# -- login relay --------------------------------------------------------------------------------


async def login(conn, push, body) -> tuple[int, dict]:
    from connectors.wechat.webhooks import handle_login

    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = await handle_login(conn, WebhookRequest("POST", {}, {}, raw), push)
    assert reply.content_type == "application/json"
    assert b"session_key" not in reply.body
    return reply.status, json.loads(reply.body)


async def test_login_with_phone_builds_member(fake: WechatFake, world: World, make) -> None:
    saved = Saved()
    conn = make(HARNESS.config(fake), saved=saved)
    push = RecordingPush()
    person = world.people_on("wechat")[0]
    code, phone_code = fake.issue_login_code(person), fake.issue_phone_code(person)
    status, body = await login(conn, push, {"js_code": code, "phone_code": phone_code})
    assert status == 200, body
    (rec,) = push.applied
    assert isinstance(rec, MemberRecord) and rec.external_id == person.wechat_openid
    ids = {(i.kind, i.scope, i.value) for i in rec.identifiers}
    assert ids == {
        ("wechat_openid", fake.appid, person.wechat_openid),
        ("wechat_unionid", OPEN_PLATFORM_ID, person.wechat_unionid),
        ("phone", None, "+86" + person.phone),
    }
    assert body == {"member_id": body["member_id"], "openid": person.wechat_openid}
    uuid.UUID(body["member_id"])
    assert [s for s in saved if "access_token" in s]  # the mini-program token was fetched
    # Codes are single use.
    status, body = await login(conn, push, {"js_code": code})
    assert (status, body["error"]) == (400, "invalid_code") and "40163" in body["message"]
    assert len(push.applied) == 1


async def test_login_without_phone_and_bad_inputs(fake: WechatFake, world: World, make) -> None:
    conn = make(HARNESS.config(fake))
    push = RecordingPush()
    person = world.people_on("wechat")[1]
    status, _ = await login(conn, push, {"js_code": fake.issue_login_code(person)})
    assert status == 200
    assert {i.kind for i in push.applied[0].identifiers} == {"wechat_openid", "wechat_unionid"}
    assert (await login(conn, push, {"js_code": "0nosuchcode"}))[1]["error"] == "invalid_code"
    assert (await login(conn, push, {}))[0] == 400
    assert (await login(conn, push, b"not json"))[0] == 400
    bad_phone = {"js_code": fake.issue_login_code(person), "phone_code": "nope"}
    status, body = await login(conn, push, bad_phone)
    assert (status, body["error"]) == (400, "invalid_phone_code")
    # Expired code (5-minute life).
    code = fake.issue_login_code(person)
    real = fake.clock
    fake.clock = lambda: real() + timedelta(minutes=6)
    status, body = await login(conn, push, {"js_code": code})
    assert (status, body["error"]) == (400, "invalid_code") and "40029" in body["message"]
    fake.clock = real
    fake.fail_next(40226, "high risk user")
    status, body = await login(conn, push, {"js_code": fake.issue_login_code(person)})
    assert (status, body["error"]) == (403, "user_blocked")
    assert len(push.applied) == 1
    from connectors.wechat.webhooks import handle_login

    reply = await handle_login(conn, WebhookRequest("GET", {}, {}, b""), push)
    assert reply.status == 405


async def test_login_with_wrong_secret_is_a_channel_error(
    fake: WechatFake, world: World, make
) -> None:
    conn = make(HARNESS.bad_credentials(fake))
    code = fake.issue_login_code(world.people_on("wechat")[0])
    status, body = await login(conn, RecordingPush(), {"js_code": code})
    assert (status, body["error"]) == (502, "channel_misconfigured") and "40125" in body["message"]


# -- official-account / member-card callback ----------------------------------------------------


async def events(conn, request: WebhookRequest, push) -> tuple[int, str]:
    from connectors.wechat.webhooks import handle_events

    reply = await handle_events(conn, request, push)
    return reply.status, reply.body.decode()


async def test_callback_url_verification(fake: WechatFake, make) -> None:
    conn = make(HARNESS.config(fake))
    push = RecordingPush()
    ok = fake.verify_request(CALLBACK_TOKEN, "8923456789012345678", timestamp=now_ts())
    assert await events(conn, ok, push) == (200, "8923456789012345678")
    forged = fake.verify_request("otherToken", "1", timestamp=now_ts())
    assert (await events(conn, forged, push))[0] == 403
    stale = fake.verify_request(CALLBACK_TOKEN, "1", timestamp=str(int(time.time()) - 600))
    assert (await events(conn, stale, push))[0] == 403
    tampered = WebhookRequest("GET", {**ok.query, "nonce": "1"}, {}, b"")
    assert (await events(conn, tampered, push))[0] == 403


async def test_callback_events_plaintext(fake: WechatFake, world: World, make) -> None:
    conn = make(HARNESS.config(fake))
    push = RecordingPush()
    person = world.people_on("wechat")[2]
    at = datetime.now(UTC).replace(microsecond=0)
    openid = fake.oa_openid(person)

    sub = fake.event_request(
        CALLBACK_TOKEN, fake.event_xml("subscribe", person, at), timestamp=now_ts()
    )
    assert await events(conn, sub, push) == (200, "success")
    (member,) = push.applied
    assert member.external_id == openid and member.updated_at == at
    assert [(i.kind, i.scope, i.value) for i in member.identifiers] == [
        ("wechat_openid", fake.oa_appid, openid)
    ]

    card = fake.event_request(
        CALLBACK_TOKEN, fake.event_xml("user_get_card", person, at), timestamp=now_ts()
    )
    assert await events(conn, card, push) == (200, "success")
    ids = {(i.kind, i.scope, i.value) for i in push.applied[-1].identifiers}
    assert ids == {
        ("wechat_openid", fake.oa_appid, openid),
        ("wechat_unionid", OPEN_PLATFORM_ID, person.wechat_unionid),
        ("wechat_card_code", fake.card_id, fake.card_code(person)),
    }

    xml = fake.event_xml(
        "update_member_card", person, at, ModifyBonus=50, ModifyBalance=0, Bonus=150
    )
    bonus = fake.event_request(CALLBACK_TOKEN, xml, timestamp=now_ts())
    assert await events(conn, bonus, push) == (200, "success")
    points = push.applied[-1]
    assert isinstance(points, PointsEventRecord)
    assert (points.delta, points.balance, points.occurred_at) == (50, 150, at)
    assert ("wechat_card_code", fake.card_id, fake.card_code(person)) in {
        (i.kind, i.scope, i.value) for i in points.identifiers
    }
    # WeChat retries (same event, new nonce): same primary keys and content.
    retry = fake.event_request(CALLBACK_TOKEN, xml, timestamp=now_ts(), nonce="999")
    assert await events(conn, retry, push) == (200, "success")
    assert push.applied[-1].to_json() == points.to_json()
    # Unrelated events are acknowledged and ignored.
    unsub = fake.event_request(
        CALLBACK_TOKEN, fake.event_xml("unsubscribe", person, at), timestamp=now_ts()
    )
    before = len(push.applied)
    assert await events(conn, unsub, push) == (200, "success")
    assert len(push.applied) == before

    forged = fake.event_request(
        "otherToken", fake.event_xml("subscribe", person, at), timestamp=now_ts()
    )
    assert (await events(conn, forged, push))[0] == 403
    dtd = b'<!DOCTYPE x [<!ENTITY a "aaaa">]><xml><MsgType>&a;</MsgType></xml>'
    assert (await events(conn, fake.event_request(CALLBACK_TOKEN, dtd, timestamp=now_ts()), push))[
        0
    ] == 400
    assert len(push.applied) == before

    off = make({**HARNESS.config(fake), "import_card_bonus_changes": False})
    assert await events(off, bonus, push) == (200, "success")
    assert len(push.applied) == before


async def test_callback_events_encrypted(fake: WechatFake, world: World, make) -> None:
    conn = make({**HARNESS.config(fake), "encoding_aes_key": AES_KEY})
    push = RecordingPush()
    person = world.people_on("wechat")[3]
    at = datetime.now(UTC).replace(microsecond=0)
    xml = fake.event_xml("user_get_card", person, at)
    good = fake.event_request(CALLBACK_TOKEN, xml, timestamp=now_ts(), encoding_aes_key=AES_KEY)
    assert await events(conn, good, push) == (200, "success")
    assert push.applied[0].external_id == fake.oa_openid(person)
    # Plaintext posts are refused once a key is configured (their signature skips the body).
    plain = fake.event_request(CALLBACK_TOKEN, xml, timestamp=now_ts())
    assert (await events(conn, plain, push))[0] == 403
    bad_sig = WebhookRequest("POST", {**good.query, "msg_signature": "0" * 40}, {}, good.body)
    assert (await events(conn, bad_sig, push))[0] == 403
    # A body swapped for another (validly encrypted) one fails msg_signature.
    other = fake.event_request(
        CALLBACK_TOKEN,
        fake.event_xml("subscribe", person, at),
        timestamp=now_ts(),
        encoding_aes_key=AES_KEY,
    )
    swapped = WebhookRequest("POST", good.query, {}, other.body)
    assert (await events(conn, swapped, push))[0] == 403
    foreign = fake.event_request(
        CALLBACK_TOKEN,
        xml,
        timestamp=now_ts(),
        encoding_aes_key=AES_KEY,
        appid="wx0000000000000000",
    )
    assert (await events(conn, foreign, push))[0] == 403
    assert len(push.applied) == 1

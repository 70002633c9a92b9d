"""The signed payment callback: the signature scheme (including the README's worked example),
the ``POST /mall/{tenant}/payments`` endpoint over real loopback HTTP on both backends (bad
signatures change nothing, replays are idempotent, wrong amounts are refused, tenants are
isolated) and the ``memberhub mall`` commands."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.cli import main
from gateway.hub import Hub
from gateway.mall import service as mall
from gateway.mall.payments import HEADER, SignatureError, payment_key, sign, verify
from gateway.storage.db import Database
from gateway.tenants import TenantInfo, get_tenant
from tests.conftest import TEST_SECRET, new_tenant
from tests.graphql_client import api_settings, free_port, serve_in_thread
from tests.test_mall import REG, T0, configure, grants, new_member, redeem

KEY = payment_key(TEST_SECRET, uuid.UUID(int=1))
BODY = b'{"redemption_id":"x"}'


# ---- the signature --------------------------------------------------------------------------


def test_worked_example_in_the_readme() -> None:
    """Keep in step with gateway/README.md, "The points mall" (checked with openssl too)."""
    key = payment_key(
        "example-deployment-secret", uuid.UUID("7d1f0a2e-3b4c-4d5e-8f60-718293a4b5c6")
    )
    assert key.hex() == "da6e9193f49e010a30f0b819c7bb024147406b6b760eb0b31f1d0cf8154e6fa4"
    body = (
        b'{"redemption_id":"0190f5e2-8a1b-7c3d-9e4f-5a6b7c8d9e0f",'
        b'"payment_ref":"WX-4200001234","amount_fen":990,"status":"paid"}'
    )
    header = sign(key, body, 1767225600)
    assert header == (
        "t=1767225600,v1=d594c8650a76108a8111ee532886b9fd1c28bd25634937137420c89ec269174d"
    )
    assert verify(key, header, body, datetime(2026, 1, 1, 0, 2, tzinfo=UTC)) == 1767225600


def test_keys_are_per_tenant_and_per_secret() -> None:
    t1, t2 = uuid.uuid4(), uuid.uuid4()
    assert payment_key(b"s", t1) == payment_key("s", t1)
    assert len({payment_key(b"s", t1), payment_key(b"s", t2), payment_key(b"other", t1)}) == 3
    # unrelated to the identifier-hashing key derived from the same secret
    from gateway.identifiers import tenant_key

    assert payment_key(b"s", t1) != tenant_key(b"s", t1)
    with pytest.raises(ValueError):
        payment_key(b"", t1)


def test_verify_accepts_a_fresh_good_signature() -> None:
    now = 1_800_000_000
    assert verify(KEY, sign(KEY, BODY, now), BODY, now + 299) == now
    assert verify(KEY, sign(KEY, BODY, now), BODY, now - 299) == now  # clock skew both ways
    # key rotation: several v1 entries, any may match; unknown schemes are ignored
    rotated = f"t={now},v1={'0' * 64},v0=abc," + sign(KEY, BODY, now).split(",")[1]
    assert verify(KEY, rotated, BODY, now) == now
    mac = sign(KEY, BODY, now).split("v1=")[1]
    assert verify(KEY, f"t={now}, v1={mac.upper()}", BODY, now) == now  # hex case, spaces


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing"),
        ("", "missing"),
        ("garbage", "malformed"),
        ("t=1800000000", "malformed"),
        ("v1=" + "0" * 64, "malformed"),
        ("t=18e8,v1=" + "0" * 64, "malformed"),
        ("t=-1,v1=" + "0" * 64, "malformed"),
        ("t=١٨٠٠٠٠٠٠٠٠,v1=" + "0" * 64, "malformed"),  # digits, but not ASCII ones
        ("t=1800000000,v1=" + "0" * 64, "bad signature"),
        ("t=1799999000,v1=" + "0" * 64, "stale"),
        ("t=1800001000,v1=" + "0" * 64, "stale"),
    ],
)
def test_verify_refuses(header: str | None, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        verify(KEY, header, BODY, 1_800_000_000)


def test_verify_refuses_another_body_key_or_time() -> None:
    now = 1_800_000_000
    good = sign(KEY, BODY, now)
    for key, body, at in (
        (KEY, BODY + b" ", now),
        (payment_key(TEST_SECRET, uuid.UUID(int=2)), BODY, now),
        (KEY, BODY, now + 301),
    ):
        with pytest.raises(SignatureError):
            verify(key, good, body, at)
    # the timestamp is signed: moving it breaks the signature even inside the tolerance
    forged = good.replace(f"t={now}", f"t={now + 10}")
    with pytest.raises(SignatureError, match="bad signature"):
        verify(KEY, forged, BODY, now)


# ---- the endpoint over real loopback HTTP ---------------------------------------------------


def _body(rid: uuid.UUID, ref: str, fen: int, status: str = "paid") -> bytes:
    payload = {"redemption_id": str(rid), "payment_ref": ref, "amount_fen": fen, "status": status}
    return json.dumps(payload).encode()


def _post(
    client: httpx.Client, tenant: str, body: bytes, key: bytes | None, *, at: int | None = None
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers[HEADER] = sign(key, body, at if at is not None else int(time.time()))
    return client.post(f"/mall/{tenant}/payments", content=body, headers=headers)


def test_signed_payment_callback_over_loopback_http(database_url: str) -> None:
    now = datetime.now(UTC)

    async def setup() -> dict[str, Any]:
        db = Database.from_url(database_url)
        try:
            a, b = await new_tenant(db, "paya"), await new_tenant(db, "payb")
            await configure(db, a)
            await configure(db, b)
            ma = await new_member(db, a, "HTTP", at=now)
            mb = await new_member(db, b, "HTTP", at=now)
            return {
                "a": a,
                "b": b,
                "member": ma,
                "paid": await redeem(db, a, ma, "MUG", "points_cash", now=now),
                "failing": await redeem(db, a, ma, "HALF", "points_cash", now=now),
                "theirs": await redeem(db, b, mb, "MUG", "points_cash", now=now),
            }
        finally:
            await db.dispose()

    async def state(tenant: TenantInfo, rid: uuid.UUID) -> tuple[str, int, int, int]:
        """(status, available points, held points, grants) — what a callback may change."""
        from gateway import ledger

        db = Database.from_url(database_url)
        try:
            async with db.tenant_tx(tenant.id, write=False) as tx:
                r = (await mall.get_redemptions(tx, [rid]))[rid]
                view = (await ledger.balances_for(tx, [r.member_id], now=now))[
                    (r.member_id, "points")
                ]
                assert await ledger.verify(tx) == []
            return r.status, view.available, view.held, len(await grants(db, tenant, r.member_id))
        finally:
            await db.dispose()

    s = asyncio.run(setup())
    a, b = s["a"], s["b"]
    paid, failing, theirs = s["paid"], s["failing"], s["theirs"]
    key_a = payment_key(TEST_SECRET, a.id)
    key_b = payment_key(TEST_SECRET, b.id)
    before = asyncio.run(state(a, paid.id))
    # MUG: 100 points + 9.90 held; HALF: 30 (rule-halved) + 1.00 held
    assert before == ("awaiting_payment", 870, 130, 0)

    app = create_app(hub=Hub(api_settings(database_url), rules=REG))
    with serve_in_thread(app, free_port()) as base, httpx.Client(base_url=base, timeout=10) as c:
        good = _body(paid.id, "WX-1", 990)
        # refused before anything is read or changed
        assert _post(c, a.slug, good, None).status_code == 401
        assert _post(c, a.slug, good, key_b).status_code == 401  # another tenant's key
        assert _post(c, a.slug, good, key_a, at=int(time.time()) - 600).status_code == 401
        forged = _post(c, a.slug, good, KEY)
        assert forged.status_code == 401 and forged.json()["code"] == "BAD_SIGNATURE"
        tampered = c.post(
            f"/mall/{a.slug}/payments",
            content=_body(paid.id, "WX-1", 1),
            headers={HEADER: sign(key_a, good, int(time.time()))},
        )
        assert tampered.status_code == 401
        assert asyncio.run(state(a, paid.id)) == before

        assert _post(c, "no-such-brand", good, key_a).status_code == 404
        assert _post(c, a.slug, _body(uuid.uuid4(), "WX-1", 990), key_a).status_code == 404
        wrong = _post(c, a.slug, _body(paid.id, "WX-1", 900), key_a)
        assert wrong.status_code == 400 and wrong.json()["code"] == "INVALID_INPUT"
        assert _post(c, a.slug, b"{not json", key_a).status_code == 400
        assert _post(c, a.slug, _body(paid.id, "WX-1", 990, "maybe"), key_a).status_code == 400
        assert asyncio.run(state(a, paid.id)) == before

        ok = _post(c, a.slug, good, key_a)
        assert ok.status_code == 200, ok.text
        assert ok.json() == {
            "redemption_id": str(paid.id),
            "status": "completed",
            "replayed": False,
        }
        replay = _post(c, a.slug, good, key_a)  # the payment service retried
        assert replay.status_code == 200 and replay.json()["replayed"] is True
        second = _post(c, a.slug, _body(paid.id, "WX-2", 990), key_a)
        assert second.status_code == 409  # paid twice: the brand refunds WX-2
        assert asyncio.run(state(a, paid.id)) == ("completed", 870, 30, 1)

        failed = _post(c, a.slug, _body(failing.id, "WX-3", 100, "failed"), key_a)
        assert failed.status_code == 200 and failed.json()["status"] == "cancelled"
        late = _post(c, a.slug, _body(failing.id, "WX-3", 100), key_a)
        assert late.status_code == 409 and late.json()["code"] == "INVALID_TRANSITION"
        assert asyncio.run(state(a, failing.id)) == ("cancelled", 900, 0, 1)

        # tenant isolation: each brand's URL, key and redemptions only
        assert _post(c, b.slug, _body(paid.id, "WX-1", 990), key_b).status_code == 404
        assert _post(c, a.slug, _body(theirs.id, "WX-9", 990), key_a).status_code == 404
        assert _post(c, b.slug, _body(theirs.id, "WX-9", 990), key_a).status_code == 401
        assert asyncio.run(state(b, theirs.id))[0] == "awaiting_payment"
        theirs_ok = _post(c, str(b.id), _body(theirs.id, "WX-9", 990), key_b)  # id works too
        assert theirs_ok.status_code == 200 and theirs_ok.json()["status"] == "completed"
        assert c.get(f"/mall/{a.slug}/payments").status_code == 405


# ---- the CLI --------------------------------------------------------------------------------


def test_mall_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEMBERHUB_DATABASE_URL", url)
    monkeypatch.setenv("MEMBERHUB_SECRET_KEY", "cli-test-secret")
    assert main(["db", "upgrade"]) == 0

    async def setup() -> tuple[TenantInfo, mall.Redemption]:
        db = Database.from_url(url)
        try:
            tenant = await new_tenant(db, "cli")
            await configure(db, tenant)
            m = await new_member(db, tenant, "CLI")
            return tenant, await redeem(db, tenant, m, "MUG", "points_cash")
        finally:
            await db.dispose()

    async def status(tenant: TenantInfo, rid: uuid.UUID) -> str:
        db = Database.from_url(url)
        try:
            assert (await get_tenant(db, tenant.slug)).id == tenant.id  # type: ignore[union-attr]
            async with db.tenant_tx(tenant.id, write=False) as tx:
                return (await mall.get_redemptions(tx, [rid]))[rid].status
        finally:
            await db.dispose()

    tenant, r = asyncio.run(setup())
    capsys.readouterr()
    assert main(["mall", "payment-key", "--tenant", tenant.slug]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == payment_key(b"cli-test-secret", tenant.id).hex()
    assert "X-Memberhub-Signature" in out.err
    early = (T0 + timedelta(minutes=5)).isoformat()
    assert main(["mall", "expire", "--tenant", tenant.slug, "--now", early]) == 0
    assert f"{tenant.slug}\tredemptions expired 0" in capsys.readouterr().out
    assert asyncio.run(status(tenant, r.id)) == "awaiting_payment"
    late = (T0 + timedelta(minutes=20)).isoformat()
    assert main(["mall", "expire", "--now", late]) == 0  # every tenant
    assert f"{tenant.slug}\tredemptions expired 1" in capsys.readouterr().out
    assert asyncio.run(status(tenant, r.id)) == "expired"
    assert main(["mall", "payment-key", "--tenant", "nope"]) == 2
    assert "no tenant" in capsys.readouterr().err
    assert main(["mall", "expire", "--now", "yesterday"]) == 2

"""Shared set-up for the GraphQL benchmarks: a migrated database with two tenants, members with
identities, profile, orders (earning points through the rules) and a manual credit."""

from __future__ import annotations

import os
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway import identifiers, ledger, members, orders
from gateway.auth import create_api_key
from gateway.rules.manager import load_rules
from gateway.storage.db import Database
from gateway.storage.migrate import upgrade
from gateway.tenants import create_tenant

SECRET = b"bench-secret"


@dataclass
class Seeded:
    url: str
    tenant_id: uuid.UUID
    key: str
    member_ids: list[uuid.UUID]


def backends(tmp_dir: str) -> list[tuple[str, str]]:
    out = [("sqlite", f"sqlite+aiosqlite:///{tmp_dir}/bench.db")]
    pg = os.environ.get("MEMBERHUB_BENCH_POSTGRES_URL")
    if pg:
        out.append(("postgres", pg))
    return out


async def seed(url: str, n_members: int, orders_each: int = 6) -> Seeded:
    await upgrade(url)
    db = Database.from_url(url)
    rules = load_rules()
    rng = random.Random(1)
    try:
        tag = uuid.uuid4().hex[:8]
        t = await create_tenant(db, name="Bench", slug=f"bench-{tag}")
        other = await create_tenant(db, name="Other", slug=f"other-{tag}")
        key = (await create_api_key(db, t.id, name="bench", scopes="read")).plaintext
        await create_api_key(db, other.id, name="other", scopes="read")
        tkey = identifiers.tenant_key(SECRET, t.id)
        now = datetime.now(UTC)
        ids: list[uuid.UUID] = []
        async with db.tenant_tx(t.id) as tx:
            for i in range(n_members):
                res = await members.ingest(
                    tx,
                    channel="wechat",
                    key=tkey,
                    identifiers=[
                        members.IdentifierInput("phone", "*", f"1390013{i:04d}"),
                        members.IdentifierInput("wechat_unionid", "open", f"u{i}"),
                    ],
                    profile=members.ProfileInput(name=f"会员{i}", city="杭州"),
                )
                ids.append(res.member_id)
                for j in range(orders_each):
                    fen = rng.randint(1000, 60_000)
                    await orders.record_order(
                        tx,
                        orders.OrderInput(
                            channel="tmall",
                            external_id=f"B{i}-{j}",
                            member_id=res.member_id,
                            status="paid",
                            total_fen=fen,
                            paid_fen=fen,
                            lines=[orders.OrderLineInput("LJ", "Longjing", "tea", 1, fen, fen)],
                            placed_at=now - timedelta(days=j + 1),
                            paid_at=now - timedelta(days=j),
                        ),
                        registry=rules,
                    )
                await ledger.credit(
                    tx,
                    member_id=res.member_id,
                    account="points",
                    amount=50,
                    reason="welcome",
                    source="bench",
                    idem_key=f"w{i}",
                )
        return Seeded(url, t.id, key, ids)
    finally:
        await db.dispose()

"""``memberhub demo``: a fictional tea brand on SQLite, seeded once, then served.

The data goes through the real paths — ``members.ingest`` (ONE ID: people seen on several
channels are merged when a later record links their identifiers), ``orders.record_order`` (paid
orders earn points and growth through the tenant's rule plugins), ``orders.refund_order``
(proportional reversal) and ``ledger.hold`` — so what the GraphQL API shows is what production
code produced. Generation is deterministic (``random.Random(seed)``); records are committed in
batches so a few thousand members seed in seconds.
"""

from __future__ import annotations

import asyncio
import random
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from gateway import identifiers, ledger, members, orders
from gateway.auth import create_api_key
from gateway.rules.manager import RuleRegistry, load_rules
from gateway.settings import Settings
from gateway.storage.db import Database, Tx
from gateway.storage.migrate import upgrade_sync
from gateway.storage.tables import Identity, MergeRecord
from gateway.tenants import TenantInfo, create_tenant, get_tenant

SLUG = "lanxi-tea"
NAME = "Lanxi Tea House 兰溪茶舍"
SEED = 20241111
BATCH = 250

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_GIVEN = "茗澜溪云清竹雅静宁安晴萱怡然书远澄一诺嘉"
_CITIES = ["杭州", "上海", "北京", "苏州", "深圳", "成都", "南京", "广州", "武汉", "厦门"]
_PREFIXES = [
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "158",
    "159",
    "182",
    "183",
    "187",
    "188",
]
_CHANNELS = ["tmall", "douyin", "wechat", "youzan", "jd", "pos"]
_TEAS = [
    ("LJ-001", "西湖龙井 Longjing 100g", "green tea", 16800),
    ("BC-002", "碧螺春 Biluochun 100g", "green tea", 12800),
    ("TG-003", "安溪铁观音 Tieguanyin 125g", "oolong", 9800),
    ("DH-004", "大红袍 Da Hong Pao 125g", "oolong", 19800),
    ("PE-005", "普洱熟茶饼 Pu'er cake 357g", "dark tea", 25800),
    ("BH-006", "白毫银针 Silver Needle 50g", "white tea", 22800),
    ("TS-007", "茶具套装 Tea set", "teaware", 39900),
    ("MX-008", "兰溪茶点 Tea snacks", "snacks", 3900),
]


@dataclass
class Person:
    """One synthetic human; the hub has to discover that their channel accounts are one person."""

    n: int
    name: str
    city: str
    phone: str
    channels: list[str]
    member_id: uuid.UUID | None = None
    ids: dict[str, members.IdentifierInput] = field(default_factory=dict)


def _people(count: int, rng: random.Random) -> list[Person]:
    out: list[Person] = []
    phones: set[str] = set()
    for n in range(count):
        while True:
            phone = rng.choice(_PREFIXES) + f"{rng.randrange(10**8):08d}"
            if phone not in phones:
                phones.add(phone)
                break
        roll = rng.random()
        k = 1 if roll < 0.82 else (2 if roll < 0.95 else 3)
        p = Person(
            n=n,
            name=rng.choice(_SURNAMES)
            + "".join(rng.choice(_GIVEN) for _ in range(rng.randint(1, 2))),
            city=rng.choice(_CITIES),
            phone=phone,
            channels=rng.sample(_CHANNELS, k),
        )
        tag = f"{n:06d}{rng.randrange(16**6):06x}"
        I = members.IdentifierInput  # noqa: E741
        p.ids = {
            "tmall_ouid": I("tmall_ouid", "lanxi-flagship", f"ou{tag}"),
            "tmall_omid": I("tmall_omid", "*", f"om{tag}"),
            "douyin_union_id": I("douyin_union_id", "lanxi-dy-shop", f"du{tag}"),
            "douyin_open_id": I("douyin_open_id", "dy-app-1", f"do{tag}"),
            "wechat_unionid": I("wechat_unionid", "lanxi-open", f"wu{tag}"),
            "wechat_openid": I("wechat_openid", "wx-mini-lanxi", f"wo{tag}"),
            "youzan_open_id": I("youzan_open_id", "lanxi-yz", f"yz{tag}"),
            "jd_open_id": I("jd_open_id", "lanxi-jd", f"jd{tag}"),
            "pos_card": I("pos_card", "lanxi", f"8800{n:08d}"),
            "phone": I("phone", "*", phone),
        }
        out.append(p)
    return out


# Each channel's record carries the identifiers that channel really knows. Tmall, Douyin and JD
# do not hand out phones, so people who shop there and elsewhere first appear as separate members.
_CHANNEL_IDS = {
    "tmall": ["tmall_ouid", "tmall_omid"],
    "douyin": ["douyin_union_id", "douyin_open_id"],
    "wechat": ["wechat_unionid", "wechat_openid", "phone"],
    "youzan": ["youzan_open_id", "phone"],
    "jd": ["jd_open_id"],
    "pos": ["pos_card", "phone"],
}
_STRONG = {
    "tmall_ouid",
    "tmall_omid",
    "douyin_union_id",
    "wechat_unionid",
    "youzan_open_id",
    "pos_card",
    "phone",
}


def _records(
    p: Person, rng: random.Random
) -> list[tuple[str, list[members.IdentifierInput], members.ProfileInput]]:
    """Channel records for one person; several channels end with a member-centre binding that
    links them (the moment ONE ID merges them)."""
    recs = []
    base = datetime(2024, 1, 1, tzinfo=UTC)
    for i, ch in enumerate(p.channels):
        profile = members.ProfileInput(
            name=p.name if ch in ("wechat", "pos", "youzan") or rng.random() < 0.3 else None,
            city=p.city if rng.random() < 0.6 else None,
            verified=ch == "pos",
            observed_at=base + timedelta(days=30 * i + p.n % 30),
        )
        recs.append((ch, [p.ids[k] for k in _CHANNEL_IDS[ch]], profile))
    if len(p.channels) > 1:
        linked = {k for ch in p.channels for k in _CHANNEL_IDS[ch] if k in _STRONG}
        ids = [p.ids["phone"], p.ids["wechat_unionid"], *(p.ids[k] for k in sorted(linked))]
        ids = list({(i.kind, i.scope): i for i in ids}.values())
        recs.append(
            (
                "wechat",
                ids,
                members.ProfileInput(
                    name=p.name, verified=True, observed_at=base + timedelta(days=120)
                ),
            )
        )
    return recs


def _order_input(p: Person, j: int, rng: random.Random, now: datetime) -> orders.OrderInput:
    lines = []
    for _ in range(rng.randint(1, 3)):
        sku, name, cat, price = rng.choice(_TEAS)
        qty = rng.randint(1, 3)
        lines.append(orders.OrderLineInput(sku, name, cat, qty, price, qty * price))
    total = sum(line.amount_fen for line in lines)
    placed = now - timedelta(days=rng.randint(1, 400), minutes=rng.randint(0, 1440))
    paid = rng.random() < 0.85
    return orders.OrderInput(
        channel=p.channels[j % len(p.channels)],
        external_id=f"LX{p.n:06d}-{j}",
        member_id=p.member_id,
        status="paid" if paid else "created",
        lines=lines,
        total_fen=total,
        paid_fen=total if paid else 0,
        store_code=f"HZ{rng.randint(1, 12):02d}"
        if p.channels[j % len(p.channels)] == "pos"
        else None,
        placed_at=placed,
        paid_at=placed + timedelta(minutes=3) if paid else None,
    )


def _progress(stage: str, done: int, total: int) -> None:
    """One self-overwriting line on stderr, so a first run visibly moves."""
    end = "\n" if done >= total else ""
    print(f"\r  seeding {stage}: {done}/{total} people", end=end, file=sys.stderr, flush=True)


async def _seed(db: Database, settings: Settings, count: int, rules: RuleRegistry) -> TenantInfo:
    tenant = await create_tenant(db, name=NAME, slug=SLUG, timezone="Asia/Shanghai", currency="CNY")
    key = identifiers.tenant_key(settings.secret_key, tenant.id)
    rng = random.Random(SEED)
    people = _people(count, rng)
    now = datetime.now(UTC)

    for start in range(0, len(people), BATCH):
        async with db.tenant_tx(tenant.id) as tx:
            for p in people[start : start + BATCH]:
                for channel, ids, profile in _records(p, rng):
                    res = await members.ingest(
                        tx, channel=channel, identifiers=ids, profile=profile, key=key
                    )
                    p.member_id = res.member_id
        _progress("members across channels", min(start + BATCH, len(people)), len(people))

    refunds: list[tuple[uuid.UUID, int]] = []
    for start in range(0, len(people), BATCH):
        async with db.tenant_tx(tenant.id) as tx:
            for p in people[start : start + BATCH]:
                for j in range(rng.choice((0, 0, 1, 1, 1, 2))):
                    inp = _order_input(p, j, rng, now)
                    res = await orders.record_order(tx, inp, registry=rules)
                    if inp.status == "paid" and rng.random() < 0.08:
                        share = rng.choice((1.0, 0.5))
                        refunds.append((res.order_id, max(1, int(inp.paid_fen * share))))
            await _refund_some(tx, refunds)
            refunds.clear()
        _progress("orders, points and refunds", min(start + BATCH, len(people)), len(people))

    async with db.tenant_tx(tenant.id) as tx:
        await _hold_some(tx, [p.member_id for p in people[:60] if p.member_id], rng)
    return tenant


async def _refund_some(tx: Tx, refunds: list[tuple[uuid.UUID, int]]) -> None:
    for i, (order_id, amount) in enumerate(refunds):
        await orders.refund_order(
            tx,
            order_id=order_id,
            refund_id=f"RF{i}-{order_id.hex[:8]}",
            amount_fen=amount,
            reason="customer return",
        )


async def _hold_some(tx: Tx, member_ids: list[uuid.UUID], rng: random.Random) -> None:
    """A few open POS holds, so `balances.held` and `pointsHold` have something to show."""
    balances = await ledger.balances_for(tx, member_ids)
    placed = 0
    for mid in member_ids:
        b = balances.get((mid, "points"))
        if b is None or b.available < 50 or placed >= 8:
            continue
        await ledger.hold(
            tx,
            member_id=mid,
            account="points",
            amount=min(b.available, rng.choice((50, 100))),
            ttl_seconds=6 * 3600,
            reason="POS tea exchange (demo)",
            idem_key=f"demo-hold-{mid}",
        )
        placed += 1


async def _showcase_member(db: Database, tenant: TenantInfo) -> uuid.UUID | None:
    """A merged survivor with the most identities: the best first query."""
    MR: Any = MergeRecord.__table__  # type: ignore[attr-defined]
    IT: Any = Identity.__table__  # type: ignore[attr-defined]
    async with db.tenant_tx(tenant.id, write=False) as tx:
        row = (
            await tx.conn.execute(
                select(MR.c.survivor_id, func.count(IT.c.value).label("n"))
                .join(IT, (IT.c.tenant_id == MR.c.tenant_id) & (IT.c.member_id == MR.c.survivor_id))
                .where(MR.c.tenant_id == tenant.id, MR.c.status == "merged")
                .group_by(MR.c.survivor_id)
                .order_by(func.count(IT.c.value).desc(), MR.c.survivor_id)
                .limit(1)
            )
        ).first()
        if row is not None:
            return await members.resolve(tx, row.survivor_id)
    return None


def examples(member_gid: str) -> list[tuple[str, str]]:
    """Three copy-paste examples (title, GraphQL document)."""
    return [
        (
            "A member found on several channels and merged into one (ONE ID)",
            f'{{\n  member(id: "{member_gid}") {{\n    id status\n'
            "    profile { name city sources { field channel verified } }\n"
            "    identities { kind scope display channel strong }\n"
            "    balances { account available held expiring nextExpiry }\n"
            "    latestOrders(limit: 5) {\n"
            "      externalId channel status paidFen refundedFen placedAt }\n"
            "    merges { reason createdAt }\n  }\n}",
        ),
        (
            "Members who shop on Tmall, with points and last orders (one page, batched)",
            '{\n  members(first: 20, filter: {channel: "tmall"}) {\n'
            "    edges { node { id profile { name city } points growth\n"
            "      latestOrders(limit: 3) { externalId paidFen placedAt } } }\n"
            "    pageInfo { hasNextPage endCursor }\n  }\n}",
        ),
        (
            "Hold 50 points at the POS (retrying with the same idempotencyKey is safe)",
            "mutation {\n  holdPoints(input: {\n"
            f'    memberId: "{member_gid}", amount: 50,\n'
            '    reason: "POS tea exchange", idempotencyKey: "demo-hold-1"\n  }) {\n'
            "    __typename\n    ... on PointsHoldPayload { hold { id status amount expiresAt } "
            "member { points balances { account available held } } }\n"
            "    ... on Error { code message }\n  }\n}",
        ),
    ]


async def prepare(settings: Settings, count: int) -> tuple[TenantInfo, str, str | None, bool]:
    """Seed (once) and issue a fresh admin key: ``(tenant, key, member global id, seeded)``."""
    from schema.relay import global_id

    db = Database.from_settings(settings)
    try:
        tenant = await get_tenant(db, SLUG)
        seeded = tenant is None
        if tenant is None:
            tenant = await _seed(db, settings, count, load_rules())
        created = await create_api_key(db, tenant.id, name="demo admin", scopes="admin")
        showcase = await _showcase_member(db, tenant)
        gid = None if showcase is None else global_id("Member", showcase)
        return tenant, created.plaintext, gid, seeded
    finally:
        await db.dispose()


def _run(coro: Any) -> Any:
    """uvloop when installed (uvicorn[standard] brings it): seeding is loop-bound."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def run_demo(*, members: int, serve: bool, host: str = "127.0.0.1", port: int = 8000) -> int:
    settings = Settings.from_env()
    upgrade_sync(settings.database_url)
    started = datetime.now(UTC)
    tenant, key, gid, seeded = _run(prepare(settings, members))
    took = (datetime.now(UTC) - started).total_seconds()
    out = sys.stdout
    if seeded:
        print(f"Seeded {tenant.name} with {members} people in {took:.1f} s.", file=out)
    else:
        print(f"{tenant.name} already seeded; reusing it.", file=out)
    print(f"\nAPI key (admin, shown once): {key}", file=out)
    print(f"\nGraphiQL: http://{host}:{port}/graphql", file=out)
    print('Paste into GraphiQL → Headers:  {"Authorization": "Bearer ' + key + '"}', file=out)
    print(f"\nShowcase member: {gid}", file=out)
    for title, doc in examples(gid or "<member id>"):
        print(f"\n# {title}\n{doc}", file=out)
    print(
        f"\ncurl: curl -s http://{host}:{port}/graphql -H 'Authorization: Bearer {key}' "
        "-H 'Content-Type: application/json' -d '{\"query\": \"{ viewer { tenant { name } "
        "scopes } }\"}'",
        file=out,
    )
    out.flush()
    if serve:
        import uvicorn

        from gateway.app import create_app

        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    return 0

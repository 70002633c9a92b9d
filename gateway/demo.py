"""``memberhub demo``: a fictional tea brand on SQLite, seeded once through the real sync path,
then served.

The seeding itself lives with the connectors (``connectors.demo``, found through the
``memberhub.demo`` entry point — the gateway never imports connector code): six fake platforms
on loopback, one channel per platform, the sync runner pulling members, orders and refunds over
HTTP with real signatures, then Tmall 会员通 binds and WeChat logins pushed through the webhook
handlers. So what the GraphQL API shows — merged members, earned and reversed points, sync runs —
is what production code produced. A few open POS holds are added so ``balances.held`` has
something to show.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from importlib.metadata import entry_points
from typing import Any

from sqlalchemy import func, select

from gateway import ledger, members
from gateway.auth import create_api_key
from gateway.hub import Hub
from gateway.settings import Settings
from gateway.storage.db import Database, Tx
from gateway.storage.migrate import upgrade_sync
from gateway.storage.tables import Identity, MergeRecord
from gateway.tenants import TenantInfo, create_tenant, get_tenant

SLUG = "lanxi-tea"
NAME = "Lanxi Tea House 兰溪茶舍"
ENTRY_POINT_GROUP = "memberhub.demo"


def _seeder() -> Any:
    """The installed demo seeder (``connectors.demo:seed`` in this distribution)."""
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    if not found:
        raise RuntimeError(
            "no demo seeder is installed (entry point group 'memberhub.demo'); "
            "install memberhub with its built-in connectors"
        )
    return found[0].load()


async def _seed(settings: Settings, count: int) -> tuple[TenantInfo, Any]:
    from gateway.sync.runner import SyncRunner

    hub = Hub(settings)
    # The fakes are on loopback: no need to pace requests as a real platform requires.
    hub.sync = SyncRunner(hub, rate_limit=500.0)
    try:
        tenant = await create_tenant(
            hub.db, name=NAME, slug=SLUG, timezone="Asia/Shanghai", currency="CNY"
        )
        async with hub.db.tenant_tx(tenant.id) as tx:
            await _coupon_templates(tx)
        fleet = await _seeder()(hub, tenant, people=count, log=lambda m: print(m, file=sys.stderr))
        async with hub.db.tenant_tx(tenant.id) as tx:
            rows = await members.list_members(
                tx, first=200, after=None, filter=members.MemberFilter()
            )
            await _hold_some(tx, [r.id for r in rows])
    finally:
        await hub.close()
    return tenant, fleet


DEMO_TEMPLATES: tuple[dict[str, Any], ...] = (
    {"code": "LANXI-WELCOME-TEA", "title": "¥15 off your first tea", "off_fen": 1500},
    {"code": "LANXI-BIRTHDAY", "title": "Birthday: ¥30 off over ¥100", "off_fen": 3000,
     "threshold_fen": 10000},
    {"code": "LANXI-MEMBER-DAY", "title": "Member day: ¥5 off", "off_fen": 500},
    {"code": "LANXI-OOLONG-WELCOME", "title": "Golden Oolong welcome: ¥50 off", "off_fen": 5000,
     "threshold_fen": 20000},
    {"code": "LANXI-PUER-WELCOME", "title": "Vintage Pu'er welcome: ¥100 off", "off_fen": 10000,
     "threshold_fen": 30000},
    {"code": "LANXI-20-OFF", "title": "¥20 off your next tea order", "off_fen": 2000,
     "threshold_fen": 8000},
)  # fmt: skip
"""The coupons the demo's rule config grants (connectors/demo_rules.yaml: tier gifts, member
gifts, the mall's coupon reward), created before the config so its gifts become coupons."""


async def _coupon_templates(tx: Tx) -> None:
    from gateway import coupons

    for spec in DEMO_TEMPLATES:
        await coupons.create_template(
            tx, kind="amount_off", validity="relative", valid_days=30, **spec
        )


async def _hold_some(tx: Tx, member_ids: list[uuid.UUID]) -> None:
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
            amount=min(b.available, 50 if placed % 2 else 100),
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
    """Four copy-paste examples (title, GraphQL document)."""
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
        (
            "The member centre: tier and progress, tasks, what the points mall offers",
            f'{{\n  member(id: "{member_gid}") {{\n    points\n'
            "    tier { name growth nextTier { name threshold } growthToNext\n"
            "           keepThreshold growthToKeep periodEnd pointsMultiplier }\n"
            "    tasks { title streak progress target available blockedReason }\n"
            "    exchangeOptions { reward { code title } stockLeft\n"
            "      options { mode points cashFen eligible reason message } }\n  }\n}",
        ),
    ]


async def prepare(settings: Settings, count: int) -> tuple[TenantInfo, str, str | None, Any]:
    """Seed (once) and issue a fresh admin key: ``(tenant, key, member global id, fleet)``;
    ``fleet`` is the running fake platforms when this call seeded, else ``None``."""
    from schema.relay import global_id

    db = Database.from_settings(settings)
    fleet = None
    try:
        tenant = await get_tenant(db, SLUG)
        if tenant is None:
            tenant, fleet = await _seed(settings, count)
        created = await create_api_key(db, tenant.id, name="demo admin", scopes="admin")
        showcase = await _showcase_member(db, tenant)
        gid = None if showcase is None else global_id("Member", showcase)
        return tenant, created.plaintext, gid, fleet
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
    started = time.monotonic()
    tenant, key, gid, fleet = _run(prepare(settings, members))
    took = time.monotonic() - started
    out = sys.stdout
    if fleet is not None:
        print(
            f"Seeded {tenant.name} with {members} people through six channel syncs "
            f"in {took:.1f} s.",
            file=out,
        )
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
    try:
        if serve:
            import uvicorn

            from gateway.app import create_app

            uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    finally:
        if fleet is not None:
            fleet.stop()
    return 0

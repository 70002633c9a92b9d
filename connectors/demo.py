"""Demo data through the real sync path: ``memberhub demo`` seeds its brand with this.

One synthetic world of shoppers (:class:`~connectors.testing.world.World`) is served by the six
built-in fake platforms, each in its own wire format with real signatures, on loopback. The demo
configures a channel per platform for the brand and runs the sync runner over each (members,
orders, refunds — identity resolution, earning and reversal included), then replays what real
platforms push: Tmall 会员通 binds (omid + ouid + mobile) and WeChat mini-program logins
(unionid + phone). Those pushes are what link a person's Tmall and WeChat accounts to the member
their phone already belongs to — the moment ONE ID merges them.

The fakes run on a background thread and keep serving while the demo's gateway runs, so
``startSync`` works from GraphiQL too. The gateway reaches this module only through the
``memberhub.demo`` entry point.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.douyin.harness import DouyinHarness
from connectors.jd.harness import JdHarness
from connectors.pos.harness import PosHarness
from connectors.testing import FakePlatform, Harness, World
from connectors.tmall.harness import TmallHarness
from connectors.wechat.harness import WechatHarness
from connectors.youzan.harness import YouzanHarness
from gateway.sync import WebhookRequest, connections
from gateway.sync.progress import ProgressBar
from gateway.sync.webhooks import HubPushContext

if TYPE_CHECKING:
    from gateway.hub import Hub
    from gateway.tenants import TenantInfo

SEED = 20241111
HARNESSES: tuple[Harness, ...] = (
    PosHarness(),
    YouzanHarness(),
    WechatHarness(page_size=500),
    TmallHarness(),
    DouyinHarness(),
    JdHarness(),
)


class Fleet:
    """The fake platforms, served from a private event loop on a daemon thread."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="fakes")
        self.fakes: dict[str, FakePlatform] = {}

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout=30)

    def start(self) -> Fleet:
        self.thread.start()
        for h in HARNESSES:
            fake = h.make_fake(self.world)
            fake.clock = lambda: datetime.now(UTC)
            self._call(fake.start())
            self.fakes[h.world_channel] = fake
        return self

    def stop(self) -> None:
        for fake in self.fakes.values():
            self._call(fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def _config(h: Harness, fake: FakePlatform, start: datetime) -> dict[str, Any]:
    config = dict(h.config(fake))
    prop = (h.connector.config_schema.get("properties") or {}).get("start_date") or {}
    if prop:
        config["start_date"] = (
            start.date().isoformat() if prop.get("format") == "date" else start.isoformat()
        )
    return config


async def seed(
    hub: Hub,
    tenant: TenantInfo,
    *,
    people: int,
    log: Callable[[str], None] = print,
) -> Fleet:
    """Seed ``tenant`` with ``people`` shoppers through sync and pushes; returns the running
    fakes (stop them when the demo ends)."""
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=45)
    world = World.generate(seed=SEED, people=people, orders=int(people * 1.6), start=start, days=44)
    fleet = Fleet(world).start()
    master = hub.settings.secret_key
    for h in HARNESSES:
        fake = fleet.fakes[h.world_channel]
        async with hub.db.tenant_tx(tenant.id) as tx:
            await connections.configure(
                tx,
                channel=h.world_channel,
                connector=h.connector.name,
                config=_config(h, fake, start),
                registry=hub.sync.registry,
                master=master,
            )
        report = await hub.sync.run(tenant.id, h.world_channel, progress=ProgressBar())
        if report.status != "succeeded":
            raise RuntimeError(f"demo sync of {h.world_channel} failed: {report.message}")
    await _pushes(hub, tenant, fleet, log)
    await _rules(hub, tenant, log)
    return fleet


RULES = Path(__file__).with_name("demo_rules.yaml")


async def _rules(hub: Hub, tenant: TenantInfo, log: Callable[[str], None]) -> None:
    """Switch on the brand's loyalty programme (tiers, tasks, mall) the way an operator would:
    apply the rule config, then let the tier job place the existing members (their growth
    history is backfilled from the ledger, dated by each order's payment)."""
    from gateway.rules import config as rule_config
    from gateway.rules.tier_jobs import evaluate_due

    document = rule_config.parse_text(RULES.read_text(encoding="utf-8"))
    async with hub.db.tenant_tx(tenant.id) as tx:
        version, _ = await rule_config.save(
            tx, document, hub.rules, actor="memberhub demo", comment="launch the programme"
        )
    report = await evaluate_due(hub.db, tenant.id, registry=hub.rules)
    placed = ", ".join(f"{k} {v}" for k, v in sorted(report.changes.items()))
    log(
        f"rule config v{version.version} applied; "
        f"tiers placed for {report.members} members ({placed})"
    )


async def _pushes(hub: Hub, tenant: TenantInfo, fleet: Fleet, log: Callable[[str], None]) -> None:
    """What platforms push after the pulls: Tmall member binds and WeChat logins."""
    registry = hub.sync.registry
    world = fleet.world
    tmall = await hub.sync.build(tenant.id, "tmall")
    wechat = await hub.sync.build(tenant.id, "wechat")
    bind = registry.webhook("tmall", "member_bind")
    login = registry.webhook("wechat", "login")
    assert bind is not None and login is not None
    tmall_fake: Any = fleet.fakes["tmall"]
    wechat_fake: Any = fleet.fakes["wechat"]
    binds = logins = 0
    try:
        for p in world.people:
            if "tmall" in p.channels and len(p.channels) > 1:
                body = {"omid": p.tmall_omid, "ouid": p.tmall_ouid, "mobile": p.phone}
                req = tmall_fake.spi_request(body, method="tmall.mei.crm.bind")
                reply = await bind.handler(tmall, req, HubPushContext(hub, tenant.id, "tmall"))
                binds += json.loads(reply.body).get("query_code") == "SUC"
            if "wechat" in p.channels:
                payload = {
                    "js_code": fleet._call(_issue(wechat_fake.issue_login_code, p)),
                    "phone_code": fleet._call(_issue(wechat_fake.issue_phone_code, p)),
                }
                req = WebhookRequest(
                    "POST", {}, {"content-type": "application/json"}, json.dumps(payload).encode()
                )
                reply = await login.handler(wechat, req, HubPushContext(hub, tenant.id, "wechat"))
                logins += reply.status == 200
    finally:
        await tmall.close()
        await wechat.close()
    log(f"  pushes: {binds} Tmall 会员通 binds, {logins} WeChat logins")


async def _issue(fn: Callable[[Any], str], person: Any) -> str:
    """Codes are issued on the fakes' loop (they are that server's state)."""
    return fn(person)

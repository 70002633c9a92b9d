"""Helpers for sync tests: the example third-party connector, a hub wired to it, fast retries.

Not a conftest: sync tests import it explicitly.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from connectors.testing import Faults, World
from gateway.hub import Hub
from gateway.settings import Settings
from gateway.storage.db import Database
from gateway.storage.tables import Identity, LedgerBalance, Order, OrderRefund
from gateway.sync import RetryPolicy, connections
from gateway.sync.registry import ConnectorRegistry, load_connectors
from gateway.sync.runner import SyncRunner
from tests.conftest import TEST_SECRET

EXAMPLE = Path(__file__).parent / "example_connector"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

import memberhub_example_shop as example  # noqa: E402
from memberhub_example_shop import order_record  # noqa: E402
from memberhub_example_shop.testing import ExampleShopHarness  # noqa: E402

__all__ = ["example", "order_record"]

FAST = RetryPolicy(attempts=10, backoff=0.01, timeout=0.3)
START = datetime(2026, 11, 1, tzinfo=UTC)
HARNESS = ExampleShopHarness(
    example.ExampleShop, "example", frozenset({"orders", "refunds", "rate_limit"})
)
ORD: Any = Order.__table__  # type: ignore[attr-defined]
R: Any = OrderRefund.__table__  # type: ignore[attr-defined]
B: Any = LedgerBalance.__table__  # type: ignore[attr-defined]
ID: Any = Identity.__table__  # type: ignore[attr-defined]


def registry() -> ConnectorRegistry:
    return load_connectors([example])


def world(orders: int = 150, people: int = 25, days: int = 6, seed: int = 7) -> World:
    return World.generate(
        seed=seed, people=people, orders=orders, channels=("example", "pos"), start=START, days=days
    )


def make_hub(db: Database, database_url: str, clock: Any = None, **kw: Any) -> Hub:
    hub = Hub(Settings(database_url=database_url, secret_key=TEST_SECRET), db)
    hub.sync = SyncRunner(hub, registry=registry(), policy=FAST, clock=clock, **kw)
    return hub


def faults(rate: float = 0.0, kinds: Sequence[str] | None = None, seed: int = 3) -> Faults:
    f = Faults(rate=rate, seed=seed, timeout_delay=0.6)
    if kinds is not None:
        f.kinds = tuple(kinds)
    return f


async def configure(hub: Hub, tenant_id: Any, fake: Any, channel: str = "shop") -> None:
    async with hub.db.tenant_tx(tenant_id) as tx:
        await connections.configure(
            tx,
            channel=channel,
            connector="example_shop",
            config={**HARNESS.config(fake), "start_date": START.isoformat()},
            registry=hub.sync.registry,
            master=hub.settings.secret_key,
        )


async def snapshot(hub: Hub, tenant_id: Any, channel: str = "shop") -> dict[str, Any]:
    """What a user would compare after a sync: orders, refunds, balances, identities."""
    async with hub.db.tenant_tx(tenant_id, write=False) as tx:
        c = tx.conn
        t = tenant_id
        orders = {
            r.external_id: (
                r.status,
                r.total_fen,
                r.paid_fen,
                r.refunded_fen,
                r.member_id is not None,
            )
            for r in await c.execute(
                select(ORD).where(ORD.c.tenant_id == t, ORD.c.channel == channel)
            )
        }
        refunds = sorted(
            (r.refund_id, r.amount_fen)
            for r in await c.execute(select(R).where(R.c.tenant_id == t))
        )
        balances = {
            r.account: (r.total, r.n)
            for r in await c.execute(
                select(
                    B.c.account,
                    func.sum(B.c.available + B.c.held).label("total"),
                    func.count().label("n"),
                )
                .where(B.c.tenant_id == t)
                .group_by(B.c.account)
            )
        }
        identities = (
            await c.execute(select(func.count()).select_from(ID).where(ID.c.tenant_id == t))
        ).scalar_one()
    return {"orders": orders, "refunds": refunds, "balances": balances, "identities": identities}

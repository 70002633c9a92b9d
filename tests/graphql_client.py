"""Test helpers for the GraphQL API: an app on the session database, keys for two tenants, and a
small client that posts queries over httpx (ASGI transport, or real loopback HTTP).

Not a conftest: API tests import it explicitly, so other suites keep their own fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from sqlalchemy import event, func, select

from gateway.app import create_app
from gateway.auth import create_api_key
from gateway.hub import Hub
from gateway.settings import Settings
from gateway.storage.db import Database
from gateway.storage.tables import (
    IdempotencyRecord,
    LedgerHold,
    LedgerTransfer,
    Member,
    MergeRecord,
    Order,
    OrderRefund,
)
from gateway.tenants import TenantInfo
from tests.conftest import TEST_SECRET

COUNTED_TABLES = {
    "members": Member.__table__,  # type: ignore[attr-defined]
    "orders": Order.__table__,  # type: ignore[attr-defined]
    "refunds": OrderRefund.__table__,  # type: ignore[attr-defined]
    "transfers": LedgerTransfer.__table__,  # type: ignore[attr-defined]
    "holds": LedgerHold.__table__,  # type: ignore[attr-defined]
    "merges": MergeRecord.__table__,  # type: ignore[attr-defined]
    "idempotency": IdempotencyRecord.__table__,  # type: ignore[attr-defined]
}


def api_settings(database_url: str, **overrides: Any) -> Settings:
    return Settings(database_url=database_url, secret_key=TEST_SECRET, **overrides)


@dataclass
class Api:
    """One app, a client, and API keys for tenant A (admin, read, pos) and tenant B (admin)."""

    hub: Hub
    client: httpx.AsyncClient
    a: TenantInfo
    b: TenantInfo
    keys: dict[str, str] = field(default_factory=dict)

    async def post(
        self,
        key: str | None,
        query: str,
        variables: dict[str, Any] | None = None,
    ) -> httpx.Response:
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        return await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )

    async def gql(
        self,
        key: str,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        errors: bool = False,
    ) -> dict[str, Any]:
        """Run a query as ``key`` (a name in :attr:`keys` or a raw key); asserts HTTP 200 and,
        unless ``errors``, no top-level errors."""
        resp = await self.post(self.keys.get(key, key), query, variables)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if not errors:
            assert "errors" not in body, body
        return body

    async def counts(self, tenant: TenantInfo) -> dict[str, int]:
        """Row counts per table for one tenant: 'nothing changed' checks compare these."""
        out = {}
        async with self.hub.db.tenant_tx(tenant.id, write=False) as tx:
            for name, table in COUNTED_TABLES.items():
                out[name] = (
                    await tx.conn.execute(
                        select(func.count())
                        .select_from(table)
                        .where(table.c.tenant_id == tenant.id)
                    )
                ).scalar_one()
        return out


@contextlib.asynccontextmanager
async def make_api(
    db: Database, database_url: str, a: TenantInfo, b: TenantInfo, **settings: Any
) -> AsyncIterator[Api]:
    hub = Hub(api_settings(database_url, **settings), db)
    app = create_app(hub=hub)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        api = Api(hub, client, a, b)
        for name, tenant, scopes in (
            ("admin", a, "admin"),
            ("read", a, "read"),
            ("pos", a, "pos,read"),
            ("connector", a, "connector"),
            ("b_admin", b, "admin"),
        ):
            api.keys[name] = (
                await create_api_key(db, tenant.id, name=name, scopes=scopes)
            ).plaintext
        yield api


class StatementCounter:
    """Counts SQL statements sent to the database, whichever path sends them.

    SQLAlchemy statements are seen by ``before_cursor_execute``. On PostgreSQL the hottest reads
    and writes run on the asyncpg connection directly (``tx.driver``), which SQLAlchemy never sees,
    so the counter also attaches asyncpg's query logger to every connection checked out while it
    is active. The two never overlap: asyncpg's logger does not see SQLAlchemy's prepared
    statements.
    """

    def __init__(self, db: Database) -> None:
        self.engine = db.engine.sync_engine
        self.statements: list[str] = []
        self._drivers: list[Any] = []

    def _on(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(statement)

    def _on_driver(self, record: Any) -> None:
        self.statements.append(record.query)

    def _on_checkout(self, _dbapi: Any, record: Any, _proxy: Any) -> None:
        driver = record.driver_connection
        if hasattr(driver, "add_query_logger") and driver not in self._drivers:
            driver.add_query_logger(self._on_driver)
            self._drivers.append(driver)

    def __enter__(self) -> StatementCounter:
        event.listen(self.engine, "before_cursor_execute", self._on)
        if self.engine.dialect.name == "postgresql":
            event.listen(self.engine.pool, "checkout", self._on_checkout)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._on)
        if self.engine.dialect.name == "postgresql":
            event.remove(self.engine.pool, "checkout", self._on_checkout)
        for driver in self._drivers:
            driver.remove_query_logger(self._on_driver)

    @property
    def queries(self) -> list[str]:
        """Statements other than transaction set-up and control (BEGIN, the tenant setting,
        COMMIT, ROLLBACK), which every transaction pays once whatever it reads."""
        return [s for s in self.statements if not _is_transaction_control(s)]


def _is_transaction_control(statement: str) -> bool:
    text = statement.strip()
    if text.startswith("SELECT set_config('app.tenant_id'"):
        return True
    return text.split()[0].upper().rstrip(";") in {"BEGIN", "COMMIT", "ROLLBACK"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_in_thread(app: Any, port: int) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1:``port`` in a thread with its own event loop."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# ---- fixtures and seed helpers shared by the API tests ------------------------------------------

import pytest  # noqa: E402


@pytest.fixture
async def api(
    db: Database, database_url: str, tenant: TenantInfo, other_tenant: TenantInfo
) -> AsyncIterator[Api]:
    async with make_api(db, database_url, tenant, other_tenant) as client:
        yield client


UPSERT = """
mutation($i: UpsertMemberInput!) { upsertMember(input: $i) { __typename
  ... on UpsertMemberPayload { created mergedIds member { id status } }
  ... on Error { code message }
  ... on InvalidInputError { field } } }
"""

RECORD_ORDER = """
mutation($i: RecordOrderInput!) { recordOrder(input: $i) { __typename
  ... on RecordOrderPayload { created statusChanged order { id status paidFen member { id } } }
  ... on Error { code message }
  ... on InvalidInputError { field } } }
"""


async def upsert(
    api: Api, key: str, channel: str, identifiers: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    body = await api.gql(
        key, UPSERT, {"i": {"channel": channel, "identifiers": identifiers, **extra}}
    )
    return body["data"]["upsertMember"]


async def new_member(api: Api, key: str = "admin", phone: str = "13800138000") -> str:
    result = await upsert(
        api, key, "wechat", [{"kind": "phone", "value": phone}], profile={"name": "测试 Test"}
    )
    assert result["__typename"] == "UpsertMemberPayload", result
    return str(result["member"]["id"])


def order_input(
    member_id: str | None, external_id: str, paid_fen: int = 12_300, **extra: Any
) -> dict[str, Any]:
    return {
        "channel": "tmall",
        "externalId": external_id,
        "memberId": member_id,
        "status": "PAID",
        "totalFen": paid_fen,
        "paidFen": paid_fen,
        "placedAt": "2025-03-01T10:00:00+08:00",
        "paidAt": "2025-03-01T10:05:00+08:00",
        "lines": [
            {
                "sku": "LJ-001",
                "name": "Longjing",
                "quantity": 1,
                "unitPriceFen": paid_fen,
                "amountFen": paid_fen,
            }
        ],
        **extra,
    }


async def new_order(
    api: Api, member_id: str | None, external_id: str, key: str = "admin", **extra: Any
) -> str:
    body = await api.gql(key, RECORD_ORDER, {"i": order_input(member_id, external_id, **extra)})
    result = body["data"]["recordOrder"]
    assert result["__typename"] == "RecordOrderPayload", result
    return str(result["order"]["id"])

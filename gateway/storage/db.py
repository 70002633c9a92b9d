"""The async database handle and tenant-scoped transactions.

One mechanism scopes every query by tenant: all data access goes through a ``Tx`` obtained from
``Database.tenant_tx(tenant_id)``, and every statement filters on ``tx.tenant_id`` explicitly. On
PostgreSQL the transaction also sets ``app.tenant_id``, which the row-level-security policies
check, so a forgotten filter still cannot leak another tenant's rows (the second wall).

SQLite is the zero-setup default: WAL journal, a busy timeout, and ``BEGIN IMMEDIATE`` for writes
so concurrent writers queue instead of failing on lock upgrade.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gateway.settings import Settings

_SET_TENANT_SQL = "SELECT set_config('app.tenant_id', $1, true)"


@dataclass(frozen=True)
class Tx:
    """A tenant-scoped transaction: the connection plus the tenant every query must filter on.

    ``driver`` is, on PostgreSQL only, the asyncpg connection underneath ``conn`` that owns this
    transaction (with ``app.tenant_id`` set). Statements on ``conn`` run inside it too; the
    ledger's hottest statement runs on ``driver`` directly, because SQLAlchemy's per-statement
    machinery costs more CPU than the database round trip.
    """

    conn: AsyncConnection
    tenant_id: uuid.UUID
    dialect: str
    driver: Any = None

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` / ``sqlite://`` URLs and pick the async driver."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        u = u.set(drivername="postgresql+asyncpg")
    elif u.drivername == "sqlite":
        u = u.set(drivername="sqlite+aiosqlite")
    return u.render_as_string(hide_password=False)


def create_engine(url: str, pool_size: int = 8, *, for_migrations: bool = False) -> AsyncEngine:
    """The async engine for ``url``.

    On PostgreSQL the application engine runs SQLAlchemy in AUTOCOMMIT mode and ``Database``
    drives each transaction on the asyncpg connection itself (one BEGIN … COMMIT): SQLAlchemy's
    own transaction bookkeeping costs about as much CPU as a round trip, on every request.
    Migrations use a plain engine so Alembic's DDL stays transactional.
    """
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    if for_migrations:
        return create_async_engine(url, pool_size=1)
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        isolation_level="AUTOCOMMIT",
        # Every transaction is ended by ``Database`` before the connection goes back (and a
        # connection found mid-transaction is rolled back at checkout), so the pool's own
        # reset round trip on return is redundant.
        pool_reset_on_return=None,
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite would defer it).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("memberhub_write", True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn``, guaranteed to be outside any transaction."""
    driver = (await conn.get_raw_connection()).driver_connection
    if driver.is_in_transaction():  # only after a cancellation interrupted a COMMIT/ROLLBACK
        await driver.execute("ROLLBACK")
    return driver


class Database:
    """Owns the engine; hands out tenant-scoped and system transactions."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(create_engine(settings.database_url, settings.pool_size))

    @classmethod
    def from_url(cls, url: str, pool_size: int = 8) -> Database:
        return cls(create_engine(url, pool_size))

    @asynccontextmanager
    async def tenant_tx(self, tenant_id: uuid.UUID, *, write: bool = True) -> AsyncIterator[Tx]:
        """One transaction for one tenant; commits on success, rolls back on any exception."""
        async with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                driver = await _driver(conn)
                async with driver.transaction(readonly=not write):
                    # Transaction-local: it ends with the transaction, so a pooled connection
                    # never carries one tenant's visibility into the next request.
                    await driver.execute(_SET_TENANT_SQL, str(tenant_id))
                    yield Tx(conn=conn, tenant_id=tenant_id, dialect=self.dialect, driver=driver)
                return
            await conn.execution_options(memberhub_write=write)
            async with conn.begin():
                yield Tx(conn=conn, tenant_id=tenant_id, dialect=self.dialect)

    @asynccontextmanager
    async def system_tx(self, *, write: bool = True) -> AsyncIterator[AsyncConnection]:
        """A transaction with no tenant set: it can read the tenant registry and nothing else
        (on PostgreSQL, row-level security hides every tenant-owned row)."""
        async with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                driver = await _driver(conn)
                async with driver.transaction(readonly=not write):
                    yield conn
                return
            await conn.execution_options(memberhub_write=write)
            async with conn.begin():
                yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()

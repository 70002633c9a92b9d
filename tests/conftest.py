"""Shared fixtures: a migrated database per test session on each backend, fresh tenants per test.

Backends: SQLite always, plus PostgreSQL when ``MEMBERHUB_TEST_POSTGRES_URL`` is set to a superuser
URL (e.g. ``postgresql://postgres@127.0.0.1/postgres``); ``MEMBERHUB_TEST_BACKENDS`` overrides the
list. For PostgreSQL the session creates a fresh database owned by a fresh
non-superuser role and runs the app as that role, so row-level security really applies. Each test
creates its own tenants, which isolates tests without recreating schemas.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.storage.db import Database
from gateway.storage.migrate import upgrade_sync
from gateway.tenants import TenantInfo, create_tenant

# SQLite always; PostgreSQL too whenever a server is configured (CI always configures one).
_DEFAULT_BACKENDS = "sqlite,postgres" if os.environ.get("MEMBERHUB_TEST_POSTGRES_URL") else "sqlite"
BACKENDS = [
    b.strip() for b in os.environ.get("MEMBERHUB_TEST_BACKENDS", _DEFAULT_BACKENDS).split(",") if b
]
TEST_SECRET = b"test-secret-key-for-phone-hashes"


def _pg_admin_url() -> str:
    """The superuser URL for PostgreSQL tests.

    Locally, without ``MEMBERHUB_TEST_POSTGRES_URL``, PostgreSQL-only tests skip so the README's
    test command works anywhere; CI sets ``MEMBERHUB_REQUIRE_POSTGRES=1`` so they fail instead of
    skipping — they can never silently not run there.
    """
    url = os.environ.get("MEMBERHUB_TEST_POSTGRES_URL")
    if not url:
        message = "PostgreSQL tests need MEMBERHUB_TEST_POSTGRES_URL (a superuser URL)"
        if os.environ.get("MEMBERHUB_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return url


@dataclass
class PgDatabase:
    admin_url: str
    app_url: str
    name: str
    role: str


def create_pg_database(admin_url: str) -> PgDatabase:
    """A fresh database owned by a fresh NOSUPERUSER NOBYPASSRLS role; returns its app URL."""
    import asyncio

    import asyncpg
    from sqlalchemy.engine import make_url

    suffix = secrets.token_hex(4)
    name, role, password = f"mh_test_{suffix}", f"mh_app_{suffix}", secrets.token_hex(12)

    async def setup() -> None:
        u = make_url(admin_url)
        conn = await asyncpg.connect(
            user=u.username,
            password=u.password,
            host=u.host or "127.0.0.1",
            port=u.port or 5432,
            database=u.database or "postgres",
        )
        try:
            await conn.execute(
                f"CREATE ROLE {role} LOGIN PASSWORD '{password}' NOSUPERUSER NOBYPASSRLS"
            )
            await conn.execute(f"CREATE DATABASE {name} OWNER {role}")
        finally:
            await conn.close()

    asyncio.run(setup())
    u = make_url(admin_url)
    app = u.set(drivername="postgresql+asyncpg", username=role, password=password, database=name)
    return PgDatabase(admin_url, app.render_as_string(hide_password=False), name, role)


def drop_pg_database(pg: PgDatabase) -> None:
    import asyncio

    import asyncpg
    from sqlalchemy.engine import make_url

    async def teardown() -> None:
        u = make_url(pg.admin_url)
        conn = await asyncpg.connect(
            user=u.username,
            password=u.password,
            host=u.host or "127.0.0.1",
            port=u.port or 5432,
            database=u.database or "postgres",
        )
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {pg.name} WITH (FORCE)")
            await conn.execute(f"DROP ROLE IF EXISTS {pg.role}")
        finally:
            await conn.close()

    asyncio.run(teardown())


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database for the whole session on one backend."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("db") / "memberhub.db"
        url = f"sqlite+aiosqlite:///{path}"
        upgrade_sync(url)
        yield url
    elif request.param == "postgres":
        pg = create_pg_database(_pg_admin_url())
        upgrade_sync(pg.app_url)
        yield pg.app_url
        drop_pg_database(pg)
    else:
        raise ValueError(f"unknown backend {request.param!r}")


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated PostgreSQL database (app role) for tests that need real parallel connections.

    Fails, not skips, when PostgreSQL is not configured: CI always provides it."""
    pg = create_pg_database(_pg_admin_url())
    upgrade_sync(pg.app_url)
    yield pg.app_url
    drop_pg_database(pg)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(database_url)
    yield database
    await database.dispose()


@pytest.fixture
async def pg_db(pg_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(pg_url, pool_size=16)
    yield database
    await database.dispose()


async def new_tenant(db: Database, label: str = "t") -> TenantInfo:
    slug = f"{label}-{uuid.uuid4().hex[:10]}"
    return await create_tenant(db, name=f"Brand {slug}", slug=slug)


@pytest.fixture
async def tenant(db: Database) -> TenantInfo:
    return await new_tenant(db, "a")


@pytest.fixture
async def other_tenant(db: Database) -> TenantInfo:
    return await new_tenant(db, "b")

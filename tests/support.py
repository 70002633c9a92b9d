"""Seed helpers shared by the library-level and CLI tests (no HTTP; for the API tests see
``tests.graphql_client``): a member joining by POS card, a coupon template, and a migrated
SQLite database for the ``memberhub`` CLI with a way to seed it from outside the CLI."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gateway import coupons, members
from gateway.identifiers import tenant_key
from gateway.members import IdentifierInput, ProfileInput
from gateway.storage.db import Database
from gateway.tenants import TenantInfo, get_tenant
from tests.conftest import TEST_SECRET

R = TypeVar("R")


async def pos_member(
    db: Database,
    tenant: TenantInfo,
    card: str,
    *,
    channel: str = "pos",
    profile: ProfileInput | None = None,
    now: datetime | None = None,
    rules: Any = None,
) -> uuid.UUID:
    """A member identified by the brand's POS card ``card``, ingested in its own transaction.

    ``now`` and ``rules`` go to ``members.ingest`` as they are (``None``: its defaults — the
    clock, the installed rule plugins)."""
    async with db.tenant_tx(tenant.id) as tx:
        res = await members.ingest(
            tx,
            channel=channel,
            identifiers=[IdentifierInput("pos_card", "brand", card)],
            profile=profile,
            key=tenant_key(TEST_SECRET, tenant.id),
            now=now,
            rules=rules,
        )
    return res.member_id


async def coupon_template(
    db: Database, tenant: TenantInfo, *, now: datetime, **kw: Any
) -> coupons.Template:
    """A template of a fresh code, "spend 30, save 6", valid 30 days from issue; ``kw`` overrides
    any field."""
    fields: dict[str, Any] = {
        "code": f"T{uuid.uuid4().hex[:8]}",
        "title": "Spend 30 save 6",
        "kind": "amount_off",
        "threshold_fen": 3000,
        "off_fen": 600,
        "validity": "relative",
        "valid_days": 30,
    }
    async with db.tenant_tx(tenant.id) as tx:
        return await coupons.create_template(tx, now=now, **{**fields, **kw})


def cli_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *tenants: tuple[str, str]) -> str:
    """Point the CLI at a fresh SQLite database under ``tmp_path`` (secret ``cli-test-secret``),
    migrate it and create ``tenants`` (``(name, slug)`` pairs) with the CLI itself; returns the
    database URL."""
    from gateway.cli import main

    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("MEMBERHUB_DATABASE_URL", url)
    monkeypatch.setenv("MEMBERHUB_SECRET_KEY", "cli-test-secret")
    assert main(["db", "upgrade"]) == 0
    for name, slug in tenants:
        assert main(["tenant", "create", "--name", name, "--slug", slug]) == 0
    return url


def seed_tenant(url: str, slug: str, seed: Callable[[Database, TenantInfo], Awaitable[R]]) -> R:
    """Run ``seed`` on the tenant ``slug`` of the database at ``url``, through the library (its own
    engine and event loop, as the CLI would not share them); returns what ``seed`` returns."""

    async def run() -> R:
        db = Database.from_url(url)
        try:
            tenant = await get_tenant(db, slug)
            assert tenant is not None
            return await seed(db, tenant)
        finally:
            await db.dispose()

    return asyncio.run(run())

"""Tenant (brand) registry: create, look up, list."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import insert, select

from gateway.errors import InvalidInput
from gateway.ids import uuid7
from gateway.storage.db import Database
from gateway.storage.tables import Tenant

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
T = Tenant.__table__  # type: ignore[attr-defined]
DEFAULT_RULES = ("points_per_yuan",)


@dataclass(frozen=True)
class TenantInfo:
    id: uuid.UUID
    slug: str
    name: str
    timezone: str
    currency: str
    enabled_rules: tuple[str, ...]


def _info(row: object) -> TenantInfo:
    return TenantInfo(
        id=row.id,  # type: ignore[attr-defined]
        slug=row.slug,  # type: ignore[attr-defined]
        name=row.name,  # type: ignore[attr-defined]
        timezone=row.timezone,  # type: ignore[attr-defined]
        currency=row.currency,  # type: ignore[attr-defined]
        enabled_rules=tuple(row.enabled_rules or ()),  # type: ignore[attr-defined]
    )


async def create_tenant(
    db: Database,
    *,
    name: str,
    slug: str,
    timezone: str = "Asia/Shanghai",
    currency: str = "CNY",
    enabled_rules: tuple[str, ...] = DEFAULT_RULES,
) -> TenantInfo:
    if not _SLUG.match(slug):
        raise InvalidInput("slug must be 2-63 lowercase letters, digits or '-'", field="slug")
    if not name.strip() or len(name) > 200:
        raise InvalidInput("name must be 1-200 characters", field="name")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"unknown timezone {timezone!r}", field="timezone") from exc
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise InvalidInput("currency must be an ISO 4217 code such as CNY", field="currency")
    async with db.system_tx() as conn:
        existing = (await conn.execute(select(T.c.id).where(T.c.slug == slug))).first()
        if existing is not None:
            raise InvalidInput(f"tenant slug {slug!r} is taken", field="slug")
        tid = uuid7()
        await conn.execute(
            insert(T).values(
                id=tid,
                slug=slug,
                name=name.strip(),
                timezone=timezone,
                currency=currency,
                enabled_rules=list(enabled_rules),
            )
        )
    return TenantInfo(tid, slug, name.strip(), timezone, currency, tuple(enabled_rules))


async def get_tenant(db: Database, ref: uuid.UUID | str) -> TenantInfo | None:
    """By id or slug."""
    async with db.system_tx(write=False) as conn:
        if isinstance(ref, uuid.UUID):
            cond = T.c.id == ref
        else:
            try:
                cond = T.c.id == uuid.UUID(ref)
            except ValueError:
                cond = T.c.slug == ref
        row = (await conn.execute(select(T).where(cond))).first()
    return _info(row) if row else None


async def list_tenants(db: Database) -> list[TenantInfo]:
    async with db.system_tx(write=False) as conn:
        rows = (await conn.execute(select(T).order_by(T.c.created_at))).all()
    return [_info(r) for r in rows]

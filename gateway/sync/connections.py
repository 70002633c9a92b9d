"""Channel connections: configure a channel for a tenant, and load it to build a connector.

Configuring validates the whole configuration (secrets included) against the connector's JSON
Schema, splits secret fields (``writeOnly``) from the rest, and stores the secrets sealed. A
reconfiguration may leave secrets out to keep the stored ones (frontends never see them, so they
cannot send them back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jsonschema
from sqlalchemy import select

from gateway.errors import InvalidInput, NotFound
from gateway.identity.model import check_channel
from gateway.sql import upsert_insert
from gateway.storage.db import Tx
from gateway.storage.tables import ChannelConnection
from gateway.storage.types import utcnow
from gateway.sync import secrets as sealed
from gateway.sync.contract import secret_fields
from gateway.sync.registry import ConnectorRegistry

CC: Any = ChannelConnection.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Connection:
    channel: str
    connector: str
    config: dict[str, Any]
    secrets: dict[str, str]  # what may be shown: "set" or the env: reference
    enabled: bool
    created_at: datetime
    updated_at: datetime


def _validate(schema: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(dict(config)), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = ".".join(str(p) for p in e.path) or "config"
        # Never echo a value: it may be a secret.
        message = e.message if e.validator in ("required", "additionalProperties") else None
        raise InvalidInput(
            message or f"{where}: fails {e.validator!r} in the config schema", field=where
        )


def _row(r: Any, master: bytes, tx: Tx) -> Connection:
    return Connection(
        channel=r.channel,
        connector=r.connector,
        config=dict(r.config),
        secrets=sealed.describe(sealed.unseal(master, tx.tenant_id, r.secrets)),
        enabled=r.enabled,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


async def configure(
    tx: Tx,
    *,
    channel: str,
    connector: str,
    config: Mapping[str, Any],
    registry: ConnectorRegistry,
    master: bytes,
    enabled: bool = True,
    now: datetime | None = None,
) -> Connection:
    """Create or replace a channel's configuration (idempotent: same input, same state)."""
    channel = check_channel(channel)
    cls = registry.get(connector)
    if cls is None:
        raise InvalidInput(
            f"unknown connector {connector!r}; installed: {', '.join(registry.names()) or 'none'}",
            field="connector",
        )
    if not isinstance(config, Mapping):
        raise InvalidInput("config must be an object", field="config")
    now = now or utcnow()
    secret_keys = secret_fields(cls.config_schema)
    existing = (
        await tx.conn.execute(
            select(CC).where(CC.c.tenant_id == tx.tenant_id, CC.c.channel == channel)
        )
    ).first()
    kept: dict[str, Any] = {}
    if existing is not None:
        if existing.connector != connector:
            raise InvalidInput(
                f"channel {channel!r} is a {existing.connector} connection; "
                "remove it before reusing the name",
                field="connector",
            )
        kept = sealed.unseal(master, tx.tenant_id, existing.secrets)
    merged = {**{k: v for k, v in kept.items() if k not in config}, **dict(config)}
    # References validate as the strings they are; resolution happens at use.
    _validate(cls.config_schema, merged)
    plain = {k: v for k, v in merged.items() if k not in secret_keys}
    secret = {k: v for k, v in merged.items() if k in secret_keys}
    values = {
        "tenant_id": tx.tenant_id,
        "channel": channel,
        "connector": connector,
        "config": plain,
        "secrets": sealed.seal(master, tx.tenant_id, secret),
        "enabled": enabled,
        "created_at": now,
        "updated_at": now,
    }
    stmt = upsert_insert(tx, CC).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[CC.c.tenant_id, CC.c.channel],
        set_={k: values[k] for k in ("config", "secrets", "enabled", "updated_at")},
    )
    await tx.conn.execute(stmt)
    return await get(tx, channel, master)


async def get(tx: Tx, channel: str, master: bytes) -> Connection:
    r = (
        await tx.conn.execute(
            select(CC).where(CC.c.tenant_id == tx.tenant_id, CC.c.channel == channel)
        )
    ).first()
    if r is None:
        raise NotFound(f"channel {channel!r} is not configured", id=channel)
    return _row(r, master, tx)


async def list_connections(tx: Tx, master: bytes) -> list[Connection]:
    rows = (
        await tx.conn.execute(
            select(CC).where(CC.c.tenant_id == tx.tenant_id).order_by(CC.c.channel)
        )
    ).all()
    return [_row(r, master, tx) for r in rows]


async def load_config(tx: Tx, channel: str, master: bytes) -> tuple[str, dict[str, Any]]:
    """``(connector name, full config with secrets resolved)`` for building a connector."""
    r = (
        await tx.conn.execute(
            select(CC).where(CC.c.tenant_id == tx.tenant_id, CC.c.channel == channel)
        )
    ).first()
    if r is None:
        raise NotFound(f"channel {channel!r} is not configured", id=channel)
    if not r.enabled:
        raise InvalidInput(f"channel {channel!r} is disabled", field="channel")
    secret = sealed.resolve(sealed.unseal(master, tx.tenant_id, r.secrets))
    return r.connector, {**dict(r.config), **secret}


async def save_secrets(
    tx: Tx, channel: str, updates: Mapping[str, Any], master: bytes, now: datetime | None = None
) -> None:
    """Store refreshed tokens (merged into the sealed secrets)."""
    r = (
        await tx.conn.execute(
            select(CC)
            .where(CC.c.tenant_id == tx.tenant_id, CC.c.channel == channel)
            .with_for_update()
        )
    ).first()
    if r is None:
        raise NotFound(f"channel {channel!r} is not configured", id=channel)
    current = sealed.unseal(master, tx.tenant_id, r.secrets)
    current.update(updates)
    await tx.conn.execute(
        CC.update()
        .where(CC.c.tenant_id == tx.tenant_id, CC.c.channel == channel)
        .values(secrets=sealed.seal(master, tx.tenant_id, current), updated_at=now or utcnow())
    )

"""Webhook subscriptions: who receives which member events, signed with which secret.

A subscription is a URL plus event-type patterns — exact types (``order.paid``), prefixes
(``tier.*`` matches ``tier.changed`` and ``tier.kept``) or ``*`` for everything. Its signing
secret is generated here, returned once by :func:`create`, and stored only sealed with the
tenant's Fernet key (``gateway.sync.secrets``). A subscription receives the events created after
it was (the fan-out cursor starts at its creation); deactivating it stops fan-out and delivery
and keeps its history.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import or_, select, update

from gateway.errors import InvalidInput, NotFound
from gateway.ids import uuid7
from gateway.sql import like_escape
from gateway.storage.db import Tx
from gateway.storage.tables import WebhookSubscription
from gateway.storage.types import utcnow
from gateway.sync import secrets as sealed
from gateway.webhooks.signing import new_secret

S: Any = WebhookSubscription.__table__  # type: ignore[attr-defined]
NIL = uuid.UUID(int=0)
MAX_PATTERNS = 50
_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")


@dataclass(frozen=True)
class Subscription:
    id: uuid.UUID
    url: str
    event_types: tuple[str, ...]
    description: str
    active: bool
    created_at: datetime
    updated_at: datetime
    cursor_at: datetime
    cursor_id: uuid.UUID


def _row(r: Any) -> Subscription:
    return Subscription(
        id=r.id,
        url=r.url,
        event_types=tuple(r.event_types),
        description=r.description,
        active=r.active,
        created_at=r.created_at,
        updated_at=r.updated_at,
        cursor_at=r.cursor_at,
        cursor_id=r.cursor_id,
    )


def check_url(url: object) -> str:
    if not isinstance(url, str) or not url.strip() or len(url) > 2000:
        raise InvalidInput("url must be an http(s) URL of at most 2000 characters", field="url")
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("url must be an absolute http(s) URL", field="url")
    if parts.username or parts.password:
        raise InvalidInput("url must not carry credentials", field="url")
    return url


def check_patterns(patterns: Iterable[object]) -> tuple[str, ...]:
    """Validate and normalise event-type patterns (trimmed, de-duplicated, order kept)."""
    out: list[str] = []
    for raw in patterns:
        p = raw.strip() if isinstance(raw, str) else raw
        ok = isinstance(p, str) and len(p) <= 48
        if ok and p != "*":
            assert isinstance(p, str)
            base = p[:-2] if p.endswith(".*") else p
            ok = bool(_TYPE.match(base))
        if not ok:
            raise InvalidInput(
                f"event type pattern {raw!r} must be an event type (order.paid), a prefix "
                "(tier.*) or *",
                field="eventTypes",
            )
        assert isinstance(p, str)
        if p not in out:
            out.append(p)
    if not out:
        raise InvalidInput("give at least one event type pattern", field="eventTypes")
    if len(out) > MAX_PATTERNS:
        raise InvalidInput(f"at most {MAX_PATTERNS} event type patterns", field="eventTypes")
    return tuple(out)


def matches(patterns: Sequence[str], event_type: str) -> bool:
    """Whether ``event_type`` is selected by ``patterns`` (the same test as :func:`type_filter`)."""
    for p in patterns:
        if p == "*" or p == event_type:
            return True
        if p.endswith(".*") and event_type.startswith(p[:-1]):
            return True
    return False


def type_filter(column: Any, patterns: Sequence[str]) -> Any:
    """A SQL condition on ``column`` equivalent to :func:`matches` (``None``: everything)."""
    if "*" in patterns:
        return None
    exact = [p for p in patterns if not p.endswith(".*")]
    prefixes = [p[:-1] for p in patterns if p.endswith(".*")]
    terms = []
    if exact:
        terms.append(column.in_(exact))
    terms += [column.like(like_escape(p) + "%", escape="\\") for p in prefixes]
    return or_(*terms)


async def create(
    tx: Tx,
    *,
    url: str,
    event_types: Iterable[object],
    master: bytes,
    description: str = "",
    now: datetime | None = None,
) -> tuple[Subscription, str]:
    """Create a subscription; returns it and its signing secret (the only time it is shown)."""
    url = check_url(url)
    patterns = check_patterns(event_types)
    if not isinstance(description, str) or len(description) > 200:
        raise InvalidInput("description must be at most 200 characters", field="description")
    now = now or utcnow()
    secret = new_secret()
    sid = uuid7()
    await tx.conn.execute(
        S.insert().values(
            tenant_id=tx.tenant_id,
            id=sid,
            url=url,
            event_types=list(patterns),
            description=description,
            secret=sealed.seal(master, tx.tenant_id, {"signing_secret": secret}),
            active=True,
            created_at=now,
            updated_at=now,
            cursor_at=now,
            cursor_id=NIL,
        )
    )
    sub = await get(tx, sid)
    assert sub is not None
    return sub, secret


async def get(tx: Tx, subscription_id: uuid.UUID) -> Subscription | None:
    r = (
        await tx.conn.execute(
            select(S).where(S.c.tenant_id == tx.tenant_id, S.c.id == subscription_id)
        )
    ).first()
    return None if r is None else _row(r)


async def list_subscriptions(tx: Tx, *, active_only: bool = False) -> list[Subscription]:
    q = select(S).where(S.c.tenant_id == tx.tenant_id)
    if active_only:
        q = q.where(S.c.active.is_(True))
    rows = (await tx.conn.execute(q.order_by(S.c.created_at, S.c.id))).all()
    return [_row(r) for r in rows]


async def deactivate(
    tx: Tx, subscription_id: uuid.UUID, now: datetime | None = None
) -> Subscription:
    """Stop fan-out and delivery for a subscription (idempotent); its deliveries are kept."""
    result = await tx.conn.execute(
        update(S)
        .where(S.c.tenant_id == tx.tenant_id, S.c.id == subscription_id)
        .values(active=False, updated_at=now or utcnow())
    )
    if not result.rowcount:
        raise NotFound("webhook subscription not found", id=str(subscription_id))
    sub = await get(tx, subscription_id)
    assert sub is not None
    return sub


async def signing_secrets(tx: Tx, master: bytes, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The plaintext signing secrets of ``ids`` (for the sender only; never shown again)."""
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = (
        await tx.conn.execute(
            select(S.c.id, S.c.secret).where(S.c.tenant_id == tx.tenant_id, S.c.id.in_(wanted))
        )
    ).all()
    return {
        r.id: str(sealed.unseal(master, tx.tenant_id, r.secret)["signing_secret"]) for r in rows
    }

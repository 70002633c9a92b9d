"""API keys: created with scopes, shown once, stored as SHA-256 hashes.

Key format: ``mhk_<tenant id hex>_<43 random url-safe chars>``. The tenant part only says which
tenant's key table to look in; the key is accepted only if the hash of the whole key matches an
unrevoked row of that tenant. A 256-bit random secret makes a fast hash appropriate (no password
stretching needed), and constant-time comparison is done by the database index lookup on the hash.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import insert, select

from gateway.errors import InvalidInput
from gateway.ids import uuid7
from gateway.storage.db import Database
from gateway.storage.tables import ApiKey
from gateway.tenancy import Principal, Scope
from gateway.tenants import get_tenant

K = ApiKey.__table__  # type: ignore[attr-defined]
PREFIX = "mhk_"


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedKey:
    id: uuid.UUID
    plaintext: str
    scopes: frozenset[Scope]


def parse_scopes(scopes: str | list[str] | tuple[str, ...]) -> frozenset[Scope]:
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    out: set[Scope] = set()
    for item in items:
        item = item.strip().lower()
        if not item:
            continue
        try:
            out.add(Scope(item))
        except ValueError as exc:
            allowed = ", ".join(s.value for s in Scope)
            raise InvalidInput(f"unknown scope {item!r}; use {allowed}", field="scopes") from exc
    if not out:
        raise InvalidInput("at least one scope is required", field="scopes")
    return frozenset(out)


async def create_api_key(
    db: Database, tenant_id: uuid.UUID, *, name: str, scopes: str | list[str]
) -> CreatedKey:
    parsed = parse_scopes(scopes)
    plaintext = f"{PREFIX}{tenant_id.hex}_{secrets.token_urlsafe(32)}"
    key_id = uuid7()
    async with db.tenant_tx(tenant_id) as tx:
        await tx.conn.execute(
            insert(K).values(
                tenant_id=tenant_id,
                id=key_id,
                name=name[:200],
                prefix=plaintext[-6:],
                key_hash=hash_key(plaintext),
                scopes=",".join(sorted(s.value for s in parsed)),
            )
        )
    return CreatedKey(key_id, plaintext, parsed)


def _tenant_of(plaintext: str) -> uuid.UUID | None:
    if not plaintext.startswith(PREFIX):
        return None
    body = plaintext[len(PREFIX) :]
    tenant_hex, sep, secret = body.partition("_")
    if not sep or len(tenant_hex) != 32 or len(secret) < 20:
        return None
    try:
        return uuid.UUID(hex=tenant_hex)
    except ValueError:
        return None


async def authenticate(db: Database, plaintext: str) -> Principal | None:
    """The principal for a bearer key, or None for anything unknown, malformed or revoked."""
    tenant_id = _tenant_of(plaintext.strip())
    if tenant_id is None:
        return None
    tenant = await get_tenant(db, tenant_id)
    if tenant is None:
        return None
    async with db.tenant_tx(tenant_id, write=False) as tx:
        row = (
            await tx.conn.execute(
                select(K.c.id, K.c.scopes, K.c.revoked_at).where(
                    K.c.tenant_id == tenant_id, K.c.key_hash == hash_key(plaintext.strip())
                )
            )
        ).first()
    if row is None or row.revoked_at is not None:
        return None
    return Principal(
        tenant_id=tenant_id,
        scopes=parse_scopes(row.scopes),
        api_key_id=row.id,
        timezone=tenant.timezone,
    )

"""Ingest: turn one channel record's identifiers and profile into exactly one member (ONE ID).

Steps, all inside the caller's transaction:

1. Normalise every identifier and validate the profile first; any error raises ``InvalidInput``
   before anything is written.
2. On PostgreSQL take a transaction-scoped advisory lock per identifier (sorted, so two ingests
   never wait on each other in opposite orders). Two concurrent records carrying the same phone
   therefore serialise and the second sees the member the first created. SQLite needs nothing:
   ``BEGIN IMMEDIATE`` already serialises writers.
3. One query finds the current owners of all identifiers.
4. Strong owners decide: none → the oldest weak owner, or a new member; one → attach; several →
   merge them all into the oldest (by ``created_at``, then id). A weak identifier owned by someone
   else stays where it is: a gift's receiver phone must not move or merge anybody.
5. Insert the identifiers nobody owns, then apply the profile by the provenance rule.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, select, text, tuple_, update
from sqlalchemy.orm import aliased

from gateway.errors import InvalidInput
from gateway.identifiers import NormalisedIdentifier, normalise, resolves
from gateway.identity.merge import merge
from gateway.identity.model import (
    I,
    IdentifierInput,
    IngestResult,
    M,
    ProfileInput,
    check_aware,
    check_channel,
)
from gateway.identity.profile import apply_profile, load_facts, profile_facts
from gateway.ids import uuid7
from gateway.sql import upsert_insert
from gateway.storage.db import Tx
from gateway.storage.types import utcnow

MAX_IDENTIFIERS = 32
_LOCK = text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k")


def lock_key(tenant_id: uuid.UUID, ident: NormalisedIdentifier) -> int:
    """A signed 64-bit advisory-lock key for one identifier of one tenant."""
    digest = hashlib.blake2b(
        f"{tenant_id}\x1f{ident.kind}\x1f{ident.scope}\x1f{ident.value}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


def _normalise_all(
    identifiers: Sequence[IdentifierInput], key: bytes
) -> list[NormalisedIdentifier]:
    if not identifiers:
        raise InvalidInput("a record needs at least one identifier", field="identifiers")
    if len(identifiers) > MAX_IDENTIFIERS:
        raise InvalidInput(f"at most {MAX_IDENTIFIERS} identifiers per record", "identifiers")
    out: dict[tuple[str, str, str], NormalisedIdentifier] = {}
    for raw in identifiers:
        n = normalise(raw.kind, raw.scope, raw.value, key=key)
        out.setdefault((n.kind, n.scope, n.value), n)
    return list(out.values())


async def _owners(tx: Tx, idents: list[NormalisedIdentifier]) -> dict[tuple[str, str, str], Any]:
    """Owner of each identifier, resolved to the active member, with its ``created_at``."""
    survivor = aliased(M)
    rows = await tx.conn.execute(
        select(
            I.c.kind,
            I.c.scope,
            I.c.value,
            M.c.id,
            M.c.created_at,
            M.c.status,
            survivor.c.id.label("s_id"),
            survivor.c.created_at.label("s_created_at"),
        )
        .join(M, and_(M.c.tenant_id == I.c.tenant_id, M.c.id == I.c.member_id))
        .outerjoin(
            survivor,
            and_(survivor.c.tenant_id == M.c.tenant_id, survivor.c.id == M.c.merged_into),
        )
        .where(
            I.c.tenant_id == tx.tenant_id,
            tuple_(I.c.kind, I.c.scope, I.c.value).in_(
                [(n.kind, n.scope, n.value) for n in idents]
            ),
        )
    )
    out: dict[tuple[str, str, str], Any] = {}
    for r in rows:
        if r.status == "merged" and r.s_id is not None:
            out[(r.kind, r.scope, r.value)] = (r.s_id, r.s_created_at)
        else:
            out[(r.kind, r.scope, r.value)] = (r.id, r.created_at)
    return out


async def _locked_owners(
    tx: Tx, idents: list[NormalisedIdentifier]
) -> dict[tuple[str, str, str], Any]:
    """Owners with their member rows locked ``FOR UPDATE`` (PostgreSQL).

    The advisory locks serialise ingests that share an identifier, not a manual merge or an
    ingest that reaches the same member through other identifiers. Locking the owning members
    (in id order, like ``merge``) and re-reading until every owner is still active means a merge
    that committed after the first read is seen, and one that starts later waits for this ingest
    — so nothing is attached to, or merged into, a member that has just been merged away.
    """
    for _ in range(8):
        owners = await _owners(tx, idents)
        ids = sorted({mid for mid, _created in owners.values()})
        if not ids:
            return owners
        rows = await tx.conn.execute(
            select(M.c.id, M.c.status)
            .where(M.c.tenant_id == tx.tenant_id, M.c.id.in_(ids))
            .order_by(M.c.id)
            .with_for_update()
        )
        if all(r.status == "active" for r in rows):
            return owners
    raise RuntimeError("members kept being merged while resolving an ingest")


async def ingest(
    tx: Tx,
    *,
    channel: str,
    identifiers: Sequence[IdentifierInput],
    profile: ProfileInput | None = None,
    key: bytes,
    now: datetime | None = None,
    rules: Any = None,
    scene: Any = None,
) -> IngestResult:
    """Resolve a channel record to one member, creating or merging as ONE ID requires.

    A new member gets a ``member.joined`` event (run through the tenant's rules when they react
    to members; ``rules``: the rule registry, default the installed plugins). ``scene`` (a
    :class:`gateway.tags.scene.JoinScene`) is how the person joined: a *new* member gets its tags
    and the event carries it; an existing member is not re-tagged."""
    now = check_aware(now, "now") if now is not None else utcnow()
    channel = check_channel(channel)
    idents = _normalise_all(identifiers, key)
    if not any(resolves(n.kind) for n in idents):
        raise InvalidInput(
            "a record needs at least one identifier of the person itself "
            "(a receiver's phone alone does not say who bought)",
            field="identifiers",
        )
    facts = profile_facts(profile, channel, now) if profile is not None else []

    if tx.is_postgres:
        keys = sorted({lock_key(tx.tenant_id, n) for n in idents})
        await tx.conn.execute(_LOCK, {"keys": keys})
        owners = await _locked_owners(tx, idents)
    else:
        owners = await _owners(tx, idents)

    strong: dict[uuid.UUID, tuple[datetime, list[str]]] = {}
    weak: dict[uuid.UUID, datetime] = {}
    for n in idents:
        owner = owners.get((n.kind, n.scope, n.value))
        if owner is None:
            continue
        mid, created_at = owner
        if n.strong:
            strong.setdefault(mid, (created_at, []))[1].append(n.kind)
        elif resolves(n.kind):
            # A receiver's phone (resolves=False) is attached, never used to pick the member.
            weak[mid] = created_at

    created = False
    merged_ids: list[uuid.UUID] = []
    if strong:
        ordered = sorted(strong, key=lambda m: (strong[m][0], m))
        member_id = ordered[0]
        for loser in ordered[1:]:
            kinds = ", ".join(sorted(set(strong[loser][1])))
            await merge(
                tx,
                survivor_id=member_id,
                loser_id=loser,
                reason=f"ONE ID: shared {kinds}",
                now=now,
            )
            merged_ids.append(loser)
    elif weak:
        member_id = min(weak, key=lambda m: (weak[m], m))
    else:
        member_id = uuid7()
        created = True
        await tx.conn.execute(
            insert(M).values(
                tenant_id=tx.tenant_id,
                id=member_id,
                status="active",
                created_at=now,
                updated_at=now,
            )
        )

    new = [n for n in idents if (n.kind, n.scope, n.value) not in owners]
    attached: list[NormalisedIdentifier] = []
    if new:
        ins = upsert_insert(tx, I).values(
            [
                {
                    "tenant_id": tx.tenant_id,
                    "kind": n.kind,
                    "scope": n.scope,
                    "value": n.value,
                    "member_id": member_id,
                    "display": n.display,
                    "channel": channel,
                    "created_at": now,
                }
                for n in new
            ]
        )
        inserted = await tx.conn.execute(
            ins.on_conflict_do_nothing().returning(I.c.kind, I.c.scope, I.c.value)
        )
        got = {(r.kind, r.scope, r.value) for r in inserted}
        attached = [n for n in new if (n.kind, n.scope, n.value) in got]

    written = []
    if facts:
        current = {} if created else (await load_facts(tx, [member_id]))[member_id]
        written = await apply_profile(tx, member_id, facts, current, now)
    if (attached or merged_ids) and not created and not written:
        await tx.conn.execute(
            update(M)
            .where(M.c.tenant_id == tx.tenant_id, M.c.id == member_id)
            .values(updated_at=now)
        )
    if created:
        # Webhooks get member.joined for every new member; join gifts and entry tiers react to
        # it in the rule engine (imported late — rules and tags build on identity).
        from gateway.rules.engine import member_joined

        if scene is not None:
            from gateway.tags.store import scene_tags

            await scene_tags(tx, member_id, scene, now)
        await member_joined(tx, member_id, channel=channel, at=now, registry=rules, scene=scene)
    return IngestResult(member_id, created, merged_ids, attached)

"""Tag writes and reads: idempotent adds/removes, per-member tags and tag counts.

Merged members: tags stay on the member row they were written to and are *read through*
``merged_into`` — a survivor shows (and segment filters see) its own tags plus those of the
members merged into it. An unmerge therefore needs nothing: the restored member has its tags
back, and the survivor stops showing them. Writes resolve to the survivor first, so a tag added
by an old (merged) id lands on the person it stands for.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, select

from gateway.errors import InvalidInput, NotFound
from gateway.sql import like_escape, upsert_insert
from gateway.storage.db import Tx
from gateway.storage.tables import Member, MemberTag
from gateway.storage.types import utcnow
from gateway.tags import normalise

MT: Any = MemberTag.__table__  # type: ignore[attr-defined]
M: Any = Member.__table__  # type: ignore[attr-defined]
SOURCES = ("scene", "behaviour", "manual", "rule")
MAX_MEMBERS_PER_CALL = 1000


@dataclass(frozen=True)
class TagRow:
    """One tag of a member. ``member_id`` is the row it is stored on: a member merged into the
    one asked about, when it differs."""

    tag: str
    source: str
    created_by: str | None
    created_at: datetime
    member_id: uuid.UUID


def owner_column(member: Any = M) -> Any:
    """The active member a ``member`` row stands for (merge chains are one hop)."""
    return case((member.c.status == "merged", member.c.merged_into), else_=member.c.id)


def owned_tags(tenant_id: uuid.UUID) -> Any:
    """``(owner, tag)`` for every tag of the tenant, read through merges: the subquery segment
    filters and tag counts build on."""
    return (
        select(owner_column().label("owner"), MT.c.tag.label("tag"))
        .select_from(MT.join(M, and_(M.c.tenant_id == MT.c.tenant_id, M.c.id == MT.c.member_id)))
        .where(MT.c.tenant_id == tenant_id)
    )


def _member_ids(values: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    ids = list(dict.fromkeys(values))
    if not 1 <= len(ids) <= MAX_MEMBERS_PER_CALL:
        raise InvalidInput(f"give 1-{MAX_MEMBERS_PER_CALL} members", field="member_ids")
    return ids


async def survivors(tx: Tx, member_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """Each id → the active member it stands for; ``NotFound`` names the first unknown id."""
    rows = (
        await tx.conn.execute(
            select(M.c.id, owner_column()).where(
                M.c.tenant_id == tx.tenant_id, M.c.id.in_(list(member_ids))
            )
        )
    ).all()
    found = {r[0]: r[1] for r in rows}
    for m in member_ids:
        if m not in found:
            raise NotFound("no such member", member_id=str(m))
    return found


async def add_tags(
    tx: Tx,
    member_ids: Sequence[uuid.UUID],
    tags: Sequence[str],
    *,
    source: str = "manual",
    created_by: str | None = None,
    now: datetime | None = None,
) -> int:
    """Tag every member with every tag (idempotent: an existing tag is left as it was, source
    and author included). Returns how many (member, tag) pairs were new."""
    if source not in SOURCES:
        raise InvalidInput(f"source must be one of {', '.join(SOURCES)}", field="source")
    clean = normalise.tags(list(tags))
    owners = sorted(set((await survivors(tx, _member_ids(member_ids))).values()))
    now = now or utcnow()
    rows = [
        {
            "tenant_id": tx.tenant_id,
            "member_id": m,
            "tag": t,
            "source": source,
            "created_by": created_by[:64] if created_by else None,
            "created_at": now,
        }
        for m in owners
        for t in clean
    ]
    return await insert_rows(tx, rows)


async def insert_rows(tx: Tx, rows: list[dict[str, Any]]) -> int:
    """Insert ready ``member_tag`` rows, skipping existing ones; returns how many were new."""
    if not rows:
        return 0
    ins = upsert_insert(tx, MT).on_conflict_do_nothing().returning(MT.c.tag)
    return len((await tx.conn.execute(ins, rows)).all())


async def remove_tags(tx: Tx, member_ids: Sequence[uuid.UUID], tags: Sequence[str]) -> int:
    """Untag the members (idempotent), including copies on members merged into them — otherwise
    the read-through would keep showing the tag. Returns how many rows were deleted."""
    clean = normalise.tags(list(tags))
    owners = sorted(set((await survivors(tx, _member_ids(member_ids))).values()))
    merged = select(M.c.id).where(
        M.c.tenant_id == tx.tenant_id, M.c.status == "merged", M.c.merged_into.in_(owners)
    )
    stmt = delete(MT).where(
        MT.c.tenant_id == tx.tenant_id,
        MT.c.tag.in_(clean),
        or_(MT.c.member_id.in_(owners), MT.c.member_id.in_(merged)),
    )
    return (await tx.conn.execute(stmt)).rowcount or 0


async def tags_for(tx: Tx, member_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[TagRow]]:
    """Each member's tags (read through merges), sorted by tag; one statement for the batch."""
    ids = list(dict.fromkeys(member_ids))
    out: dict[uuid.UUID, list[TagRow]] = {m: [] for m in ids}
    if not ids:
        return out
    owner = owner_column()
    # Both branches test member_tag.member_id (its primary key), the merged members found by
    # ix_member_merged_into: an OR across the two tables would read every tag of the tenant.
    merged = select(M.c.id).where(
        M.c.tenant_id == tx.tenant_id, M.c.status == "merged", M.c.merged_into.in_(ids)
    )
    stmt = (
        select(owner.label("owner"), MT.c.tag, MT.c.source, MT.c.created_by, MT.c.created_at)
        .add_columns(MT.c.member_id)
        .select_from(MT.join(M, and_(M.c.tenant_id == MT.c.tenant_id, M.c.id == MT.c.member_id)))
        .where(
            MT.c.tenant_id == tx.tenant_id,
            or_(MT.c.member_id.in_(ids), MT.c.member_id.in_(merged)),
        )
        .order_by(MT.c.tag, MT.c.created_at)
    )
    seen: set[tuple[uuid.UUID, str]] = set()
    for r in await tx.conn.execute(stmt):
        # A merged member's own view is its own rows only (owner = its survivor then).
        key = r.owner if r.owner in out else r.member_id
        if key not in out or (key, r.tag) in seen:
            continue
        seen.add((key, r.tag))
        out[key].append(TagRow(r.tag, r.source, r.created_by, r.created_at, r.member_id))
    return out


async def tag_counts(
    tx: Tx, *, prefix: str | None = None, limit: int = 200
) -> list[tuple[str, int]]:
    """``(tag, number of active members with it)``, most used first (ties by tag)."""
    if type(limit) is not int or not 1 <= limit <= 1000:
        raise InvalidInput("limit must be an integer in 1..1000", field="limit")
    owned = owned_tags(tx.tenant_id).subquery()
    active = select(M.c.id).where(M.c.tenant_id == tx.tenant_id, M.c.status == "active")
    n = func.count(owned.c.owner.distinct())
    stmt = select(owned.c.tag, n.label("n")).where(owned.c.owner.in_(active))
    if prefix:
        stmt = stmt.where(
            owned.c.tag.like(like_escape(normalise.normal(prefix)) + "%", escape="\\")
        )
    stmt = stmt.group_by(owned.c.tag).order_by(n.desc(), owned.c.tag).limit(limit)
    return [(r.tag, int(r.n)) for r in await tx.conn.execute(stmt)]


async def scene_tags(tx: Tx, member_id: uuid.UUID, scene: Any, now: datetime) -> int:
    """Tag a new member with its join scene's tags (source ``scene``; see
    :mod:`gateway.tags.scene`)."""
    rows = [
        {
            "tenant_id": tx.tenant_id,
            "member_id": member_id,
            "tag": t,
            "source": "scene",
            "created_by": None,
            "created_at": now,
        }
        for t in scene.tags()
    ]
    return await insert_rows(tx, rows)

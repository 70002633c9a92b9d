"""Batch reads of members for the API's DataLoaders: one statement per batch, never N+1.

Every function filters on ``tx.tenant_id``; another tenant's member is simply absent.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import fields

from sqlalchemy import bindparam, exists, func, or_, select

from gateway.errors import InvalidInput
from gateway.identifiers import is_strong, normalise
from gateway.identity.model import (
    MR,
    A,
    AttributeRow,
    I,
    IdentityRow,
    M,
    MemberFilter,
    MemberRow,
    MergeInfo,
    check_aware,
    member_row,
)
from gateway.sql import BatchRead, in_ids, like_escape
from gateway.storage.db import Tx

MAX_PAGE = 1000
_MAX_HOPS = 16


def _ids(member_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    return list(dict.fromkeys(member_ids))


def _resolve_stmt(lock: str | None) -> BatchRead:
    def build(dialect: str) -> object:
        stmt = select(M.c.status, M.c.merged_into).where(
            M.c.tenant_id == bindparam("tenant_id"), M.c.id == bindparam("id")
        )
        if lock == "share":
            return stmt.with_for_update(read=True)
        if lock == "exclusive" and dialect == "postgresql":
            return stmt.with_for_update(key_share=True)
        return stmt

    return BatchRead(build)


# Built once: every write path resolves a member first, so the statement's construction and
# cache-key cost matters as much as the round trip.
_RESOLVE = {False: _resolve_stmt(None), True: _resolve_stmt("share")}
_RESOLVE_EXCLUSIVE = _resolve_stmt("exclusive")


async def resolve_exclusive(tx: Tx, member_id: uuid.UUID) -> uuid.UUID | None:
    """Like ``resolve(lock=True)`` but exclusive, for writes that read a member's limits first
    (points-mall redemptions, coupon issuance): ``FOR SHARE`` would let two such writes for one
    member read the same limits at once, and upgrading a shared lock deadlocks. ``FOR NO KEY
    UPDATE`` conflicts with itself and with a merge's ``FOR UPDATE``, not with inserts that
    merely reference the member. (SQLite serialises writers with ``BEGIN IMMEDIATE``.)"""
    return await _walk(tx, member_id, _RESOLVE_EXCLUSIVE)


async def resolve(tx: Tx, member_id: uuid.UUID, *, lock: bool = False) -> uuid.UUID | None:
    """The active member an id stands for: itself, or the survivor it was merged into.

    Merges keep chains flat (a loser's own losers are re-pointed to the new survivor), so this is
    normally one statement; the hop limit only guards against corrupt data.

    Write paths pass ``lock=True``: on PostgreSQL every row read is locked ``FOR SHARE`` until the
    transaction ends. A merge takes ``FOR UPDATE`` on both members, so it either finished before
    (and the row read here already says "merged", leading on to the survivor) or waits until this
    write has committed and then moves what it wrote. Without the lock a merge committing between
    the resolve and the write would strand the write on the merged member.
    """
    return await _walk(tx, member_id, _RESOLVE[lock])


async def _walk(tx: Tx, member_id: uuid.UUID, read: BatchRead) -> uuid.UUID | None:
    current = member_id
    for _ in range(_MAX_HOPS):
        rows = await read.fetch(tx, tenant_id=tx.tenant_id, id=current)
        if not rows:
            return None
        status, merged_into = rows[0][0], rows[0][1]
        if status != "merged" or merged_into is None:
            return current
        current = merged_into
    return None


async def find_by_identifier(
    tx: Tx, kind: str, scope: str | None, raw_value: str, *, key: bytes
) -> uuid.UUID | None:
    """The (resolved) member owning an identifier; invalid identifiers raise ``InvalidInput``."""
    ident = normalise(kind, scope, raw_value, key=key)
    owner = (
        await tx.conn.execute(
            select(I.c.member_id).where(
                I.c.tenant_id == tx.tenant_id,
                I.c.kind == ident.kind,
                I.c.scope == ident.scope,
                I.c.value == ident.value,
            )
        )
    ).scalar()
    return None if owner is None else await resolve(tx, owner)


_GET_MEMBERS = BatchRead(
    lambda d: select(*[M.c[f.name] for f in fields(MemberRow)]).where(
        M.c.tenant_id == bindparam("tenant_id"), in_ids(M.c.id, d)
    )
)
"""Columns in ``MemberRow`` field order, so a row (either backend) is ``MemberRow(*row)``."""


async def get_members(tx: Tx, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, MemberRow]:
    """Members by id as stored (a merged member comes back with ``status='merged'``)."""
    wanted = _ids(ids)
    if not wanted:
        return {}
    rows = await _GET_MEMBERS.fetch(tx, tenant_id=tx.tenant_id, ids=wanted)
    return {r[0]: MemberRow(*r) for r in rows}


_IDENTITIES_FOR = BatchRead(
    lambda d: (
        select(I.c.member_id, I.c.kind, I.c.scope, I.c.display, I.c.channel, I.c.created_at)
        .where(I.c.tenant_id == bindparam("tenant_id"), in_ids(I.c.member_id, d))
        .order_by(I.c.member_id, I.c.created_at, I.c.kind, I.c.scope)
    )
)


async def identities_for(
    tx: Tx, member_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[IdentityRow]]:
    wanted = _ids(member_ids)
    out: dict[uuid.UUID, list[IdentityRow]] = {m: [] for m in wanted}
    if not wanted:
        return out
    for member_id, kind, scope, display, channel, created_at in await _IDENTITIES_FOR.fetch(
        tx, tenant_id=tx.tenant_id, ids=wanted
    ):
        out[member_id].append(
            IdentityRow(kind, scope, display, channel, is_strong(kind), created_at)
        )
    return out


_ATTRIBUTES_FOR = BatchRead(
    lambda d: (
        select(A.c.member_id, A.c.field, A.c.value, A.c.channel, A.c.verified, A.c.observed_at)
        .where(A.c.tenant_id == bindparam("tenant_id"), in_ids(A.c.member_id, d))
        .order_by(A.c.member_id, A.c.field)
    )
)


async def attributes_for(
    tx: Tx, member_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[AttributeRow]]:
    wanted = _ids(member_ids)
    out: dict[uuid.UUID, list[AttributeRow]] = {m: [] for m in wanted}
    if not wanted:
        return out
    for member_id, field, value, channel, verified, observed_at in await _ATTRIBUTES_FOR.fetch(
        tx, tenant_id=tx.tenant_id, ids=wanted
    ):
        out[member_id].append(AttributeRow(field, value, channel, bool(verified), observed_at))
    return out


async def list_members(
    tx: Tx, *, first: int, after: uuid.UUID | None, filter: MemberFilter
) -> list[MemberRow]:
    """Active members in creation order (uuid7 ids), keyset-paged on id.

    Returns up to ``first + 1`` rows: the extra row only tells the caller there is a next page.
    """
    if not isinstance(first, int) or first < 0 or first > MAX_PAGE:
        raise InvalidInput(f"first must be between 0 and {MAX_PAGE}", field="first")
    conds = [M.c.tenant_id == tx.tenant_id, M.c.status == "active"]
    if after is not None:
        conds.append(M.c.id > after)
    f = filter
    if f.name_contains:
        pattern = f"%{like_escape(f.name_contains.lower())}%"
        conds.append(M.c.name.isnot(None))
        conds.append(func.lower(M.c.name).like(pattern, escape="\\"))
    ident_conds = []
    if f.channel is not None:
        ident_conds.append(I.c.channel == f.channel)
    if f.identifier_kind is not None:
        ident_conds.append(I.c.kind == f.identifier_kind)
    if ident_conds:
        conds.append(
            exists().where(I.c.tenant_id == tx.tenant_id, I.c.member_id == M.c.id, *ident_conds)
        )
    if f.created_after is not None:
        conds.append(M.c.created_at > check_aware(f.created_after, "created_after"))
    if f.created_before is not None:
        conds.append(M.c.created_at < check_aware(f.created_before, "created_before"))
    if f.within is not None:
        conds.append(M.c.id.in_(f.within))
    rows = await tx.conn.execute(select(M).where(*conds).order_by(M.c.id).limit(first + 1))
    return [member_row(r) for r in rows]


_MERGES_FOR = BatchRead(
    lambda d: (
        select(*[MR.c[f.name] for f in fields(MergeInfo)])
        .where(
            MR.c.tenant_id == bindparam("tenant_id"),
            or_(in_ids(MR.c.survivor_id, d), in_ids(MR.c.loser_id, d)),
        )
        .order_by(MR.c.created_at, MR.c.id)
    )
)
"""Columns in ``MergeInfo`` field order, so a row is ``MergeInfo(*row)``."""


async def merges_for(tx: Tx, member_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[MergeInfo]]:
    """Merge history touching each member (as survivor or loser), oldest first."""
    wanted = _ids(member_ids)
    out: dict[uuid.UUID, list[MergeInfo]] = {m: [] for m in wanted}
    if not wanted:
        return out
    for r in await _MERGES_FOR.fetch(tx, tenant_id=tx.tenant_id, ids=wanted):
        info = MergeInfo(*r)
        for m in {info.survivor_id, info.loser_id}:
            if m in out:
                out[m].append(info)
    return out

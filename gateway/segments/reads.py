"""Reads other jobs build on: a segment by code or id, and its members in ``member_id`` order.

``member_ids_after`` is the keyset walk the coupon bulk issuance (and anything else that visits a
segment's members) uses: ``segment_member`` is the source of truth of current membership, and
members merged away since the last refresh are skipped (their survivor is in the segment by its
own right, or not — a dynamic refresh decides; a merge never silently adds a person).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from gateway.errors import InvalidInput, NotFound
from gateway.segments.model import SM, M, S, Segment, segment_from_row
from gateway.storage.db import Tx

MAX_PAGE = 10_000


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def get_segment(tx: Tx, code_or_id: uuid.UUID | str) -> Segment:
    """A segment by id (UUID, or its string form) or by code; ``NotFound`` when absent or another
    tenant's."""
    if isinstance(code_or_id, uuid.UUID):
        cond = S.c.id == code_or_id
    elif isinstance(code_or_id, str):
        as_id = _as_uuid(code_or_id)
        cond = S.c.code == code_or_id if as_id is None else S.c.id == as_id
    else:
        raise InvalidInput("segment must be a code or an id", field="segment")
    row = (await tx.conn.execute(select(S).where(S.c.tenant_id == tx.tenant_id, cond))).first()
    if row is None:
        raise NotFound("no such segment", segment=str(code_or_id))
    return segment_from_row(row)


def _active_members_after(tx: Tx, segment_id: uuid.UUID, after: uuid.UUID | None) -> list[Any]:
    """Conditions on ``segment_member`` joined to ``member``: the segment's active (not merged)
    members with ``member_id > after`` — the keyset walk both pages below share."""
    cond = [
        SM.c.tenant_id == tx.tenant_id,
        SM.c.segment_id == segment_id,
        M.c.tenant_id == tx.tenant_id,
        M.c.id == SM.c.member_id,
        M.c.status == "active",
    ]
    if after is not None:
        cond.append(SM.c.member_id > after)
    return cond


async def member_ids_after(
    tx: Tx, segment_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> list[uuid.UUID]:
    """Up to ``limit`` ids of the segment's active (not merged) members with ``member_id >
    after``, ascending — a keyset page; pass the last id back as ``after`` for the next one."""
    if type(limit) is not int or not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be an integer in 1..{MAX_PAGE}", field="limit")
    cond = _active_members_after(tx, segment_id, after)
    stmt = select(SM.c.member_id).where(*cond).order_by(SM.c.member_id).limit(limit)
    return list((await tx.conn.execute(stmt)).scalars())


async def segments_for(tx: Tx, member_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Segment]]:
    """The segments each member is currently in (by code); one statement for the batch."""
    from gateway.segments.model import segment_from_row

    ids = list(dict.fromkeys(member_ids))
    out: dict[uuid.UUID, list[Segment]] = {m: [] for m in ids}
    if not ids:
        return out
    stmt = (
        select(SM.c.member_id.label("member_id_"), S)
        .select_from(SM.join(S, (S.c.tenant_id == SM.c.tenant_id) & (S.c.id == SM.c.segment_id)))
        .where(SM.c.tenant_id == tx.tenant_id, SM.c.member_id.in_(ids))
        .order_by(S.c.code)
    )
    for r in await tx.conn.execute(stmt):
        out[r.member_id_].append(segment_from_row(r))
    return out


async def list_segments(tx: Tx) -> list[Segment]:
    """Every segment of the tenant, by code."""
    from gateway.segments.model import segment_from_row

    rows = await tx.conn.execute(select(S).where(S.c.tenant_id == tx.tenant_id).order_by(S.c.code))
    return [segment_from_row(r) for r in rows]


async def matching(
    tx: Tx, *, filter_doc: Any = None, segment: uuid.UUID | str | None = None
) -> Any:
    """A one-column SELECT of the member ids matching a filter document now and/or currently in
    ``segment`` (code or id) — for :attr:`gateway.identity.model.MemberFilter.within`; ``None``
    when neither is given. Raises ``FilterInvalid`` / ``NotFound`` before anything is read."""
    from gateway.segments.compile import member_ids_query
    from gateway.segments.filter import parse
    from gateway.storage.types import utcnow

    parts: list[Any] = []
    if filter_doc is not None:
        parts.append(member_ids_query(tx.tenant_id, parse(filter_doc), utcnow()))
    if segment is not None:
        seg = await get_segment(tx, segment)
        parts.append(
            select(SM.c.member_id).where(SM.c.tenant_id == tx.tenant_id, SM.c.segment_id == seg.id)
        )
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    # Both: members of the segment that also match the filter.
    return parts[1].where(SM.c.member_id.in_(parts[0]))


async def members_page(
    tx: Tx, segment_id: uuid.UUID, *, first: int, after: uuid.UUID | None
) -> list[Any]:
    """Member rows of a segment in id order, ``first + 1`` of them (the extra one flags a next
    page) — the shape ``gateway.members.list_members`` returns."""
    from gateway.identity.model import member_row

    cond = _active_members_after(tx, segment_id, after)
    rows = await tx.conn.execute(select(M).where(*cond).order_by(M.c.id).limit(first + 1))
    return [member_row(r) for r in rows]

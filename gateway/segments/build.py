"""Create, refresh and edit segments; membership changes emit ``segment.entered`` / ``.left``.

Membership lives in ``segment_member`` (the source of truth other jobs walk). A change is
applied set-based in the caller's transaction:

- entered: ``INSERT INTO segment_member SELECT … (the compiled filter) … ON CONFLICT DO NOTHING
  RETURNING member_id``; left: ``DELETE … WHERE member_id NOT IN (the filter) RETURNING
  member_id``. Events are recorded for exactly the rows those statements returned, in the same
  transaction, so a crashed refresh commits neither the membership change nor its events, and a
  re-run (or a concurrent refresh, which the segment row lock serialises) finds nothing left to
  emit for a change already applied.
- event ids derive from (segment, member, entered|left, generation), the generation being the
  segment's previous ``refreshed_at`` (``build`` for the first snapshot, ``manual@<instant>`` for
  a manual edit): re-recording the same change is a no-op, and a member who leaves and comes
  back later gets a new event. ``refreshed_at`` strictly increases, so generations never repeat.

Rules: when the tenant's rule config reacts to members (not ``bulk_safe``), each recorded event
is processed by the rule engine in the same transaction (a benefit answering ``segment.entered``),
like the scheduled triggers do; otherwise the events are only recorded (webhooks deliver them).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, literal, select, update

from gateway.errors import InvalidInput, NotEligible
from gateway.events import E
from gateway.ids import derived_id, uuid7
from gateway.ledger import validation as v
from gateway.rules import config as rule_config
from gateway.rules.engine import process_event
from gateway.rules.hookspecs import EventView
from gateway.rules.manager import RuleRegistry, default_registry
from gateway.segments.compile import count_query, member_ids_query
from gateway.segments.filter import Filter, parse
from gateway.segments.model import SM, M, S, Segment
from gateway.segments.reads import get_segment
from gateway.sql import upsert_insert
from gateway.storage.db import Database, Tx
from gateway.storage.retry import transaction_retrying
from gateway.storage.types import utcnow
from gateway.tags.store import survivors

_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_MANUAL = 1000


@dataclass(frozen=True)
class Change:
    """What one build, refresh or manual edit did."""

    segment: Segment
    entered: int
    left: int


def _code(code: object) -> str:
    if not isinstance(code, str) or not _CODE.match(code):
        raise InvalidInput("code must be 1-64 letters, digits or _ . : -", field="code")
    return code


async def preview(tx: Tx, doc: Any, *, now: datetime | None = None) -> int:
    """How many active members match the filter document now (nothing is written)."""
    f = parse(doc)
    return int((await tx.conn.execute(count_query(tx.tenant_id, f, now or utcnow()))).scalar())


async def create_segment(
    tx: Tx,
    *,
    code: str,
    title: str,
    filter: Any,
    dynamic: bool,
    created_by: str,
    now: datetime | None = None,
    registry: RuleRegistry | None = None,
) -> Change:
    """Create a segment and take its first snapshot (every member matching now *enters*).

    A code already used in this tenant is ``InvalidInput(field="code")``; an invalid filter is
    :class:`~gateway.segments.filter.FilterInvalid` and nothing is written."""
    now = v.now_or(now)
    _code(code)
    v.text(title, "title", 200)
    if not isinstance(dynamic, bool):
        raise InvalidInput("dynamic must be true or false", field="dynamic")
    f = parse(filter)
    sid = uuid7()
    ins = (
        upsert_insert(tx, S)
        .values(
            tenant_id=tx.tenant_id,
            id=sid,
            code=code,
            title=title,
            filter=f.document,
            dynamic=dynamic,
            active=True,
            member_count=0,
            refreshed_at=None,
            created_by=(created_by or "unknown")[:64],
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[S.c.tenant_id, S.c.code])
        .returning(S.c.id)
    )
    if (await tx.conn.execute(ins)).first() is None:
        raise InvalidInput(f"a segment with code {code!r} already exists", field="code")
    seg = await get_segment(tx, sid)
    return await _evaluate(tx, seg, f, now, registry)


async def refresh_in(
    tx: Tx,
    segment: uuid.UUID | str,
    *,
    now: datetime | None = None,
    registry: RuleRegistry | None = None,
) -> Change:
    """Re-evaluate a dynamic segment and apply the difference (see the module docstring).
    A static segment is a snapshot: ``NotEligible(reason="STATIC_SEGMENT")``."""
    now = v.now_or(now)
    seg = await _locked(tx, segment)
    if not seg.dynamic:
        raise NotEligible(
            "a static segment is a snapshot; create a new one to re-evaluate its filter",
            reason="STATIC_SEGMENT",
        )
    if not seg.active:
        raise NotEligible("the segment is deactivated", reason="INACTIVE")
    return await _evaluate(tx, seg, parse(seg.filter), now, registry)


async def refresh_segment(
    db: Database,
    tenant_id: uuid.UUID,
    segment: uuid.UUID | str,
    *,
    now: datetime | None = None,
    registry: RuleRegistry | None = None,
) -> Change:
    """:func:`refresh_in` in its own transaction (what the CLI and scheduled jobs call), run
    again whole if PostgreSQL aborts it for a deadlock (see :mod:`gateway.storage.retry`)."""
    async for attempt in transaction_retrying():
        with attempt:
            async with db.tenant_tx(tenant_id) as tx:
                return await refresh_in(tx, segment, now=now, registry=registry)
    raise AssertionError("unreachable: tenacity re-raises the last error")


async def dynamic_segments(tx: Tx) -> list[Segment]:
    """The tenant's active dynamic segments, by code (what ``segments refresh --all`` visits)."""
    from gateway.segments.model import segment_from_row

    rows = await tx.conn.execute(
        select(S)
        .where(S.c.tenant_id == tx.tenant_id, S.c.dynamic.is_(True), S.c.active.is_(True))
        .order_by(S.c.code)
    )
    return [segment_from_row(r) for r in rows]


async def update_segment(
    tx: Tx,
    segment: uuid.UUID | str,
    *,
    title: str | None = None,
    filter: Any = None,
    active: bool | None = None,
    now: datetime | None = None,
) -> Segment:
    """Change a segment's title, filter (dynamic segments only; it applies at the next
    refresh) or whether it is active (an inactive segment is not refreshed)."""
    now = v.now_or(now)
    seg = await _locked(tx, segment)
    values: dict[str, Any] = {}
    if title is not None:
        v.text(title, "title", 200)
        values["title"] = title
    if filter is not None:
        if not seg.dynamic:
            raise NotEligible(
                "a static segment's filter is the one its snapshot was taken with",
                reason="STATIC_SEGMENT",
            )
        values["filter"] = parse(filter).document
    if active is not None:
        if not isinstance(active, bool):
            raise InvalidInput("active must be true or false", field="active")
        values["active"] = active
    if values:
        await tx.conn.execute(
            update(S)
            .where(S.c.tenant_id == tx.tenant_id, S.c.id == seg.id)
            .values(**values, updated_at=now)
        )
    return await get_segment(tx, seg.id)


async def add_members(
    tx: Tx,
    segment: uuid.UUID | str,
    member_ids: Sequence[uuid.UUID],
    *,
    now: datetime | None = None,
    registry: RuleRegistry | None = None,
) -> Change:
    """Add members to a static segment by hand (merged ids count as their survivor; members
    already in it are left alone). A dynamic segment's membership is its filter's:
    ``NotEligible(reason="DYNAMIC_SEGMENT")``."""
    now = v.now_or(now)
    seg = await _manual_target(tx, segment, member_ids)
    owners = sorted(set((await survivors(tx, list(member_ids))).values()))
    rows = [
        {"tenant_id": tx.tenant_id, "segment_id": seg.id, "member_id": m, "entered_at": now}
        for m in owners
    ]
    ins = upsert_insert(tx, SM).on_conflict_do_nothing().returning(SM.c.member_id)
    entered = list((await tx.conn.execute(ins, rows)).scalars())
    gen = f"manual@{now.isoformat()}"
    await _emit(tx, seg, entered, "segment.entered", gen, now, registry)
    seg = await _finish(tx, seg, now, refreshed=False)
    return Change(seg, len(entered), 0)


async def remove_members(
    tx: Tx,
    segment: uuid.UUID | str,
    member_ids: Sequence[uuid.UUID],
    *,
    now: datetime | None = None,
    registry: RuleRegistry | None = None,
) -> Change:
    """Remove members from a static segment by hand (idempotent)."""
    now = v.now_or(now)
    seg = await _manual_target(tx, segment, member_ids)
    owners = set((await survivors(tx, list(member_ids))).values()) | set(member_ids)
    stmt = (
        delete(SM)
        .where(
            SM.c.tenant_id == tx.tenant_id,
            SM.c.segment_id == seg.id,
            SM.c.member_id.in_(sorted(owners)),
        )
        .returning(SM.c.member_id)
    )
    left = list((await tx.conn.execute(stmt)).scalars())
    await _emit(tx, seg, left, "segment.left", f"manual@{now.isoformat()}", now, registry)
    seg = await _finish(tx, seg, now, refreshed=False)
    return Change(seg, 0, len(left))


# ---- internals ----------------------------------------------------------------------------


async def _locked(tx: Tx, segment: uuid.UUID | str) -> Segment:
    """The segment, its row locked on PostgreSQL so refreshes and edits of one segment
    serialise (SQLite serialises writers already)."""
    seg = await get_segment(tx, segment)
    if tx.is_postgres:
        await tx.conn.execute(
            select(S.c.id).where(S.c.tenant_id == tx.tenant_id, S.c.id == seg.id).with_for_update()
        )
        seg = await get_segment(tx, seg.id)
    return seg


async def _manual_target(
    tx: Tx, segment: uuid.UUID | str, member_ids: Sequence[uuid.UUID]
) -> Segment:
    if not 1 <= len(member_ids) <= MAX_MANUAL:
        raise InvalidInput(f"give 1-{MAX_MANUAL} members", field="member_ids")
    seg = await _locked(tx, segment)
    if seg.dynamic:
        raise NotEligible(
            "a dynamic segment's members are the ones its filter matches; edit the filter",
            reason="DYNAMIC_SEGMENT",
        )
    return seg


async def _evaluate(
    tx: Tx, seg: Segment, f: Filter, now: datetime, registry: RuleRegistry | None
) -> Change:
    """Apply the difference between ``segment_member`` and the filter's answer at ``now``."""
    matched = member_ids_query(tx.tenant_id, f, now).subquery("matched")
    gen = seg.refreshed_at.isoformat() if seg.refreshed_at is not None else "build"
    left: list[uuid.UUID] = []
    if seg.refreshed_at is not None:
        gone = (
            delete(SM)
            .where(
                SM.c.tenant_id == tx.tenant_id,
                SM.c.segment_id == seg.id,
                SM.c.member_id.not_in(select(matched.c.member_id)),
            )
            .returning(SM.c.member_id)
        )
        left = list((await tx.conn.execute(gone)).scalars())
    new = (
        upsert_insert(tx, SM)
        .from_select(
            ["tenant_id", "segment_id", "member_id", "entered_at"],
            select(
                literal(tx.tenant_id, SM.c.tenant_id.type),
                literal(seg.id, SM.c.segment_id.type),
                matched.c.member_id,
                literal(now, SM.c.entered_at.type),
            ).where(literal(True)),
        )
        .on_conflict_do_nothing()
        .returning(SM.c.member_id)
    )
    entered = list((await tx.conn.execute(new)).scalars())
    await _emit(tx, seg, left, "segment.left", gen, now, registry)
    await _emit(tx, seg, entered, "segment.entered", gen, now, registry)
    seg = await _finish(tx, seg, now, refreshed=True)
    return Change(seg, len(entered), len(left))


async def _finish(tx: Tx, seg: Segment, now: datetime, *, refreshed: bool) -> Segment:
    """Store the member count (active members only) and, after an evaluation, the new
    generation: ``refreshed_at`` strictly after the previous one."""
    count = (
        await tx.conn.execute(
            select(func.count())
            .select_from(
                SM.join(M, and_(M.c.tenant_id == SM.c.tenant_id, M.c.id == SM.c.member_id))
            )
            .where(
                SM.c.tenant_id == tx.tenant_id, SM.c.segment_id == seg.id, M.c.status == "active"
            )
        )
    ).scalar()
    values: dict[str, Any] = {"member_count": int(count or 0), "updated_at": now}
    if refreshed:
        at = now
        if seg.refreshed_at is not None and at <= seg.refreshed_at:
            at = seg.refreshed_at + timedelta(microseconds=1)
        values["refreshed_at"] = at
    await tx.conn.execute(
        update(S).where(S.c.tenant_id == tx.tenant_id, S.c.id == seg.id).values(**values)
    )
    return await get_segment(tx, seg.id)


def event_id(
    tenant_id: uuid.UUID, seg_id: uuid.UUID, member_id: uuid.UUID, type: str, gen: str
) -> uuid.UUID:
    """The one id a segment membership change can have (see the module docstring)."""
    return derived_id(tenant_id, "segment", seg_id, member_id, type, gen)


_PG_EVENTS = """
INSERT INTO member_event (tenant_id, id, member_id, type, payload, occurred_at, created_at)
SELECT $1, x.id, x.member_id, $4, $5::json, $6, $6
FROM unnest($2::uuid[], $3::uuid[]) AS x(id, member_id)
ON CONFLICT DO NOTHING RETURNING id, member_id
"""


async def _emit(
    tx: Tx,
    seg: Segment,
    member_ids: list[uuid.UUID],
    type: str,
    gen: str,
    now: datetime,
    registry: RuleRegistry | None,
) -> int:
    """Record ``type`` for each member set-based; run the rules on the new ones when the
    tenant's config reacts to members. Returns how many were new."""
    if not member_ids:
        return 0
    payload = {"segment_id": str(seg.id), "segment_code": seg.code}
    ids = [event_id(tx.tenant_id, seg.id, m, type, gen) for m in member_ids]
    if tx.driver is not None:
        rows = await tx.driver.fetch(
            _PG_EVENTS, tx.tenant_id, ids, member_ids, type, json.dumps(payload), now
        )
        recorded = [(r[0], r[1]) for r in rows]
    else:
        ins = (
            upsert_insert(tx, E)
            .values(
                tenant_id=bindparam("b_tenant_id"),
                id=bindparam("b_id"),
                member_id=bindparam("b_member_id"),
                type=type,
                payload=payload,
                occurred_at=now,
                created_at=now,
            )
            .on_conflict_do_nothing()
            .returning(E.c.id, E.c.member_id)
        )
        params = [
            {"b_tenant_id": tx.tenant_id, "b_id": i, "b_member_id": m}
            for i, m in zip(ids, member_ids, strict=True)
        ]
        recorded = [(r[0], r[1]) for r in await tx.conn.execute(ins, params)]
    registry = registry if registry is not None else default_registry()
    cfg, _ = await rule_config.active(tx, registry)
    if not cfg.bulk_safe:
        # Member id order: the lock order of the bulk coupon job and the tier job, so this
        # long transaction and theirs queue behind each other instead of deadlocking.
        for eid, mid in sorted(recorded, key=lambda r: r[1]):
            await process_event(tx, EventView(eid, type, mid, now, payload), registry, now=now)
    return len(recorded)

"""Issuance: idempotent, and exact about total and per-member limits under concurrency.

One transaction per issue, in the mall's lock order: the member row (``FOR NO KEY UPDATE``, so
one member's concurrent issues are serialised and the per-member count is exact) → the coupon
row (claimed by ``INSERT … ON CONFLICT DO NOTHING`` on the idempotency key and the code) → the
template's ``issued`` counter (``UPDATE … WHERE issued < total_limit``: the row lock serialises
concurrent issuers and the guard refuses the one too many). A refused counter deletes the claim.
The bulk job (:mod:`gateway.coupons.bulk`) takes the same locks in the same order, for a batch.

Each issued coupon records a ``coupon.issued`` member event (no code in it: codes are secrets).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update

from gateway.coupons import codes, events
from gateway.coupons.model import C, Coupon, T, Template, coupon_from_row
from gateway.coupons.templates import get_template
from gateway.errors import IdempotencyKeyReused, NotEligible, NotFound
from gateway.events import record_event
from gateway.identity.reads import resolve_exclusive
from gateway.ids import uuid7
from gateway.ledger import validation as v
from gateway.sql import upsert_insert
from gateway.storage.db import Tx
from gateway.storage.tables import Member

M: Any = Member.__table__  # type: ignore[attr-defined]


async def lock_member(tx: Tx, member_id: uuid.UUID) -> uuid.UUID | None:
    """The active member ``member_id`` stands for, locked exclusively (see
    :func:`gateway.identity.reads.resolve_exclusive`); ``None`` when unknown."""
    return await resolve_exclusive(tx, member_id)


async def _by_key(tx: Tx, idem_key: str) -> Any:
    stmt = select(C).where(C.c.tenant_id == tx.tenant_id, C.c.idem_key == idem_key)
    return (await tx.conn.execute(stmt)).first()


def _replay(row: Any, fingerprint: str) -> Coupon:
    if row.request_hash != fingerprint:
        raise IdempotencyKeyReused("idempotency key already used for a different coupon issue")
    return coupon_from_row(row, replayed=True)


def _window(t: Template, now: datetime) -> tuple[datetime, datetime]:
    if t.validity == "fixed":
        assert t.starts_at is not None and t.ends_at is not None
        return t.starts_at, t.ends_at
    assert t.valid_days is not None
    return now, now + timedelta(days=t.valid_days)


async def issue(
    tx: Tx,
    template: uuid.UUID | str,
    member_id: uuid.UUID,
    *,
    source: str,
    idem_key: str,
    now: datetime | None = None,
) -> Coupon:
    """Issue one coupon of ``template`` (id or code) to the member.

    Idempotent on ``idem_key``: the same request again returns the original coupon with
    ``replayed=True``; another request under the key raises ``IdempotencyKeyReused``. Refusals are
    ``NotEligible`` — ``INACTIVE``, ``EXPIRED`` (a fixed window already over), ``MEMBER_LIMIT``,
    ``TOTAL_LIMIT`` — or ``NotFound`` (template, member), and write nothing.
    """
    v.member(member_id)
    v.text(source, "source", 64)
    v.text(idem_key, "idem_key", 128)
    now = v.now_or(now)
    survivor = await lock_member(tx, member_id)
    if survivor is None:
        raise NotFound("member not found", member_id=str(member_id))
    t = await get_template(tx, template)
    fingerprint = v.request_hash(
        op="coupons.issue", template=str(t.id), member_id=member_id, source=source
    )
    earlier = await _by_key(tx, idem_key)
    if earlier is not None:
        return _replay(earlier, fingerprint)
    if not t.active:
        raise NotEligible(f"{t.title} is not being issued", "INACTIVE")
    valid_from, valid_until = _window(t, now)
    if valid_until <= now:
        raise NotEligible(f"{t.title} has ended", "EXPIRED")
    if t.per_member_limit is not None:
        losers = select(M.c.id).where(M.c.tenant_id == tx.tenant_id, M.c.merged_into == survivor)
        held = (
            await tx.conn.execute(
                select(func.count())
                .select_from(C)
                .where(
                    C.c.tenant_id == tx.tenant_id,
                    C.c.template_id == t.id,
                    or_(C.c.member_id == survivor, C.c.member_id.in_(losers)),
                )
            )
        ).scalar_one()
        if held >= t.per_member_limit:
            raise NotEligible(
                f"at most {t.per_member_limit} of {t.title} per member", "MEMBER_LIMIT"
            )

    cid = uuid7()
    for _ in range(codes.MAX_ATTEMPTS):
        code = codes.generate()
        claim = (
            upsert_insert(tx, C)
            .values(
                tenant_id=tx.tenant_id,
                id=cid,
                template_id=t.id,
                member_id=survivor,
                code=code,
                status="issued",
                valid_from=valid_from,
                valid_until=valid_until,
                issued_at=now,
                source=source,
                idem_key=idem_key,
                request_hash=fingerprint,
                updated_at=now,
            )
            .on_conflict_do_nothing()
            .returning(C.c.id)
        )
        if (await tx.conn.execute(claim)).first() is not None:
            break
        earlier = await _by_key(tx, idem_key)
        if earlier is not None:  # the same key committed meanwhile by another member's request
            return _replay(earlier, fingerprint)
        # otherwise the code collided (probability ~n/2^60): draw again
    else:  # pragma: no cover - needs ~MAX_ATTEMPTS consecutive 2^-60 events
        raise RuntimeError("could not draw a unique coupon code")

    cond = [T.c.tenant_id == tx.tenant_id, T.c.id == t.id]
    if t.total_limit is not None:
        cond.append(T.c.issued < t.total_limit)
    taken = await tx.conn.execute(
        update(T).where(*cond).values(issued=T.c.issued + 1, updated_at=now).returning(T.c.issued)
    )
    if taken.first() is None:
        await tx.conn.execute(delete(C).where(C.c.tenant_id == tx.tenant_id, C.c.id == cid))
        raise NotEligible(f"all {t.total_limit} of {t.title} have been issued", "TOTAL_LIMIT")
    row = (
        await tx.conn.execute(select(C).where(C.c.tenant_id == tx.tenant_id, C.c.id == cid))
    ).one()
    await record_event(
        tx,
        event_id=events.event_id(tx.tenant_id, cid, "issued"),
        member_id=survivor,
        type="coupon.issued",
        payload=events.issued_payload(cid, t.code, source, valid_from, valid_until),
        occurred_at=now,
    )
    return coupon_from_row(row)


async def coupons_for(tx: Tx, member_id: uuid.UUID, *, limit: int = 100) -> list[Coupon]:
    """The member's coupons, newest first."""
    limit = max(1, min(int(limit), 500))
    rows = await tx.conn.execute(
        select(C)
        .where(C.c.tenant_id == tx.tenant_id, C.c.member_id == member_id)
        .order_by(C.c.issued_at.desc(), C.c.id.desc())
        .limit(limit)
    )
    return [coupon_from_row(r) for r in rows]

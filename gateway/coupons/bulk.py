"""Bulk issuance: one template to every member of a segment, resumable, never twice to a member.

A job (``coupon_issue_job``) is created once per idempotency key (:func:`start_job`) and then run
(:func:`run_job`) in keyset batches of the segment's members in ``member_id`` order after the
job's ``cursor``. **Each batch is one transaction** that issues set-based and advances the
cursor and the counters with the coupons it wrote, so a crash, a kill or a cancelled task at any
point loses at most the batch in flight (rolled back as a whole) and a re-run continues exactly
where the last commit left off. Every coupon's idempotency key is derived from (job, member), so
even a member visited twice could not get a second coupon from the same job.

A batch, in the lock order of :func:`gateway.coupons.issue.issue` (member rows → coupon rows →
the template's counter), so concurrent single issues stay exact and cannot deadlock with it:

1. lock the job row (``FOR UPDATE``: two runners of one job take turns batch by batch);
2. read the next page of the segment (:func:`gateway.segments.member_ids_after`);
3. lock those members (``FOR NO KEY UPDATE``, in id order; merged meanwhile → skipped
   ``NOT_ACTIVE``);
4. one query for members already holding this job's coupon (``ALREADY_ISSUED``), one for the
   coupons each member (with the members merged into it) holds of the template
   (``MEMBER_LIMIT``);
5. lock the template row and claim the counter for the batch at once, honouring
   ``total_limit`` (the rest of the batch → ``TOTAL_LIMIT``);
6. insert the coupons with fresh codes (one ``INSERT … ON CONFLICT DO NOTHING``, redrawing the
   ~never colliding codes) and their ``coupon.issued`` events (one statement);
7. advance ``cursor``, ``processed``, ``issued``, ``skipped`` and ``skip_reasons``.

A template that stops being issuable (deactivated, fixed window over) ends the job ``failed``
with the reason in ``error``; :func:`run_job` on a failed job tries again (e.g. after the
template is active again). :func:`cancel_job` stops it between batches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, union_all, update
from sqlalchemy.dialects import sqlite

from gateway.coupons import codes, events
from gateway.coupons.issue import _window
from gateway.coupons.model import C, T, Template
from gateway.coupons.templates import get_template
from gateway.errors import (
    DomainError,
    IdempotencyKeyReused,
    InvalidInput,
    InvalidTransition,
    NotEligible,
    NotFound,
)
from gateway.ids import uuid7
from gateway.ledger import validation as v
from gateway.sql import in_ids, unnest_insert_sql, upsert_insert
from gateway.storage.db import Database, Tx
from gateway.storage.retry import transaction_retrying
from gateway.storage.tables import CouponIssueJob, Member

log = logging.getLogger(__name__)
J: Any = CouponIssueJob.__table__  # type: ignore[attr-defined]
M: Any = Member.__table__  # type: ignore[attr-defined]

DEFAULT_BATCH = 1000
MAX_BATCH = 10_000
RUNNABLE = ("pending", "running", "failed")
"""States :func:`run_job` continues from (``done`` and ``cancelled`` are final)."""
SKIP_REASONS = ("ALREADY_ISSUED", "NOT_ACTIVE", "MEMBER_LIMIT", "TOTAL_LIMIT")


@dataclass(frozen=True)
class Job:
    """A bulk issuance and its progress: ``processed`` of ``total`` segment members visited,
    ``issued`` coupons written, ``skipped`` members by reason in ``skip_reasons``."""

    id: uuid.UUID
    template_id: uuid.UUID
    segment_id: uuid.UUID
    idem_key: str
    status: str
    cursor: uuid.UUID | None
    total: int
    processed: int
    issued: int
    skipped: int
    skip_reasons: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    created_by: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    replayed: bool = False


def _job(row: Any, *, replayed: bool = False) -> Job:
    m = row._mapping
    fields = {f: m[f] for f in Job.__dataclass_fields__ if f != "replayed"}
    fields["skip_reasons"] = {k: int(x) for k, x in (fields["skip_reasons"] or {}).items()}
    return Job(**fields, replayed=replayed)


def source_of(job_id: uuid.UUID) -> str:
    """The ``source`` of the coupons a job issues (``bulk:<job id>``)."""
    return f"bulk:{job_id}"


def coupon_key(job_id: uuid.UUID, member_id: uuid.UUID) -> str:
    """The idempotency key of the job's coupon for one member."""
    return f"job:{job_id}:{member_id}"


async def get_job(tx: Tx, job_id: uuid.UUID, *, lock: bool = False) -> Job:
    """A job by id; ``NotFound`` when absent (or another tenant's)."""
    stmt = select(J).where(J.c.tenant_id == tx.tenant_id, J.c.id == job_id)
    if lock and tx.is_postgres:
        stmt = stmt.with_for_update()
    row = (await tx.conn.execute(stmt)).first()
    if row is None:
        raise NotFound("no such coupon issue job", job=str(job_id))
    return _job(row)


async def list_jobs(
    tx: Tx, *, statuses: tuple[str, ...] | None = None, limit: int = 100
) -> list[Job]:
    """Jobs, newest first (optionally only in ``statuses``)."""
    stmt = select(J).where(J.c.tenant_id == tx.tenant_id)
    if statuses is not None:
        stmt = stmt.where(J.c.status.in_(statuses))
    rows = await tx.conn.execute(stmt.order_by(J.c.created_at.desc(), J.c.id.desc()).limit(limit))
    return [_job(r) for r in rows]


def _issuable(t: Template, now: datetime) -> tuple[datetime, datetime]:
    if not t.active:
        raise NotEligible(f"{t.title} is not being issued", "INACTIVE")
    valid_from, valid_until = _window(t, now)
    if valid_until <= now:
        raise NotEligible(f"{t.title} has ended", "EXPIRED")
    return valid_from, valid_until


async def start_job(
    tx: Tx,
    template: uuid.UUID | str,
    segment: uuid.UUID | str,
    *,
    idem_key: str,
    actor: str,
    now: datetime | None = None,
) -> Job:
    """Create the job issuing ``template`` (id or code) to ``segment`` (id or code); nothing is
    issued yet (:func:`run_job` does that).

    Idempotent on ``idem_key``: the same template and segment again → the existing job with
    ``replayed=True`` (whatever its progress); another template or segment →
    ``IdempotencyKeyReused``. ``NotEligible`` ``INACTIVE`` / ``EXPIRED`` for a template that is
    not being issued; ``NotFound`` for an unknown template or segment. ``total`` is the
    segment's member count now (members may join or leave before their batch is reached)."""
    from gateway import segments

    v.text(idem_key, "idem_key", 128)
    v.text(actor, "actor", 64)
    now = v.now_or(now)
    t = await get_template(tx, template)
    seg = await segments.get_segment(tx, segment)
    earlier = (
        await tx.conn.execute(
            select(J).where(J.c.tenant_id == tx.tenant_id, J.c.idem_key == idem_key)
        )
    ).first()
    if earlier is None:
        _issuable(t, now)
        ins = (
            upsert_insert(tx, J)
            .values(
                tenant_id=tx.tenant_id,
                id=uuid7(),
                template_id=t.id,
                segment_id=seg.id,
                idem_key=idem_key,
                status="pending",
                cursor=None,
                total=seg.member_count,
                processed=0,
                issued=0,
                skipped=0,
                skip_reasons={},
                created_by=actor,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing()
            .returning(J.c.id)
        )
        made = (await tx.conn.execute(ins)).first()
        if made is not None:
            return await get_job(tx, made.id)
        earlier = (
            await tx.conn.execute(
                select(J).where(J.c.tenant_id == tx.tenant_id, J.c.idem_key == idem_key)
            )
        ).one()
    if earlier.template_id != t.id or earlier.segment_id != seg.id:
        raise IdempotencyKeyReused("idempotency key already used for another bulk issue")
    return _job(earlier, replayed=True)


async def cancel_job(tx: Tx, job_id: uuid.UUID, *, now: datetime | None = None) -> Job:
    """Stop a job between batches (what it issued stays issued). Idempotent; a finished job is
    ``InvalidTransition``."""
    now = v.now_or(now)
    job = await get_job(tx, job_id, lock=True)
    if job.status == "cancelled":
        return job
    if job.status == "done":
        raise InvalidTransition("the job has finished")
    await tx.conn.execute(
        update(J)
        .where(J.c.tenant_id == tx.tenant_id, J.c.id == job_id)
        .values(status="cancelled", updated_at=now, finished_at=now)
    )
    return await get_job(tx, job_id)


OnBatch = Callable[[Job], Awaitable[None] | None]


async def run_job(
    db: Database,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    *,
    batch: int = DEFAULT_BATCH,
    now: datetime | None = None,
    on_batch: OnBatch | None = None,
) -> Job:
    """Run (or resume) a job to its end: ``done``, ``cancelled`` or ``failed``; returns it.

    ``now`` fixes the issuing time (tests); by default each batch uses the current time.
    ``on_batch`` is called with the job after every committed batch (progress display). An
    exception in a batch rolls that batch back and marks the job ``failed`` (the message in
    ``error``) before it propagates; running it again resumes after the last committed batch.
    Safe to run concurrently with itself (the runners take turns per batch)."""
    if type(batch) is not int or not 1 <= batch <= MAX_BATCH:
        raise InvalidInput(f"batch must be an integer in 1..{MAX_BATCH}", field="batch")
    while True:
        try:
            async for attempt in transaction_retrying():  # a deadlock aborted the batch: again
                with attempt:
                    async with db.tenant_tx(tenant_id) as tx:
                        job = await _step(tx, job_id, batch, v.now_or(now))
            if on_batch is not None:
                maybe = on_batch(job)
                if maybe is not None:
                    await maybe
        except Exception as exc:
            await _fail(db, tenant_id, job_id, exc)
            raise
        if job.status != "running":
            return job


async def _fail(db: Database, tenant_id: uuid.UUID, job_id: uuid.UUID, exc: Exception) -> None:
    # The job's error is shown over GraphQL: a domain refusal says what it is; anything else
    # (SQL text, parameters) stays in the log.
    if isinstance(exc, DomainError):
        message = f"{exc.code}: {exc.message}"[:500]
    else:
        log.error("bulk coupon issue %s failed", job_id, exc_info=exc)
        message = f"internal error ({type(exc).__name__}); see the gateway log"
    async with db.tenant_tx(tenant_id) as tx:
        await tx.conn.execute(
            update(J)
            .where(J.c.tenant_id == tx.tenant_id, J.c.id == job_id, J.c.status.in_(RUNNABLE))
            .values(status="failed", error=message, updated_at=v.now_or(None))
        )


async def _finish(tx: Tx, job: Job, status: str, now: datetime, error: str | None) -> Job:
    await tx.conn.execute(
        update(J)
        .where(J.c.tenant_id == tx.tenant_id, J.c.id == job.id)
        .values(status=status, error=error, updated_at=now, finished_at=now)
    )
    return await get_job(tx, job.id)


async def _step(tx: Tx, job_id: uuid.UUID, batch: int, now: datetime) -> Job:
    """One batch of a job, in the caller's transaction; returns the job afterwards."""
    from gateway import segments

    if tx.driver is not None:
        # The batch reads bind arrays of thousands of ids; a cached generic plan for them can be
        # 10-100x slower than a custom one (see tests/perf/README.md, "Custom plans").
        await tx.driver.execute("SET LOCAL plan_cache_mode = force_custom_plan")
    job = await get_job(tx, job_id, lock=True)
    if job.status not in RUNNABLE:
        return job
    t = await get_template(tx, job.template_id)
    try:
        valid_from, valid_until = _issuable(t, now)
    except NotEligible as exc:
        return await _finish(tx, job, "failed", now, f"{exc.reason}: {exc.message}")
    ids = await segments.member_ids_after(tx, job.segment_id, job.cursor, batch)
    if not ids:
        return await _finish(tx, job, "done", now, None)

    skipped: dict[str, int] = {}

    def skip(reason: str, n: int) -> None:
        if n:
            skipped[reason] = skipped.get(reason, 0) + n

    active = await _lock_members(tx, ids)
    skip("NOT_ACTIVE", len(ids) - len(active))
    keys = {m: coupon_key(job.id, m) for m in active}
    held_by_job = await _holding_keys(tx, list(keys.values()))
    candidates = [m for m in active if keys[m] not in held_by_job]
    skip("ALREADY_ISSUED", len(active) - len(candidates))
    if candidates and t.per_member_limit is not None:
        held = await _held_counts(tx, t.id, candidates)
        under = [m for m in candidates if held.get(m, 0) < t.per_member_limit]
        skip("MEMBER_LIMIT", len(candidates) - len(under))
        candidates = under
    granted = await _claim(tx, t, len(candidates), now) if candidates else 0
    skip("TOTAL_LIMIT", len(candidates) - granted)
    chosen = candidates[:granted]
    if chosen:
        await _insert_coupons(tx, job, t, chosen, keys, valid_from, valid_until, now)

    reasons = dict(job.skip_reasons)
    for k, n in skipped.items():
        reasons[k] = reasons.get(k, 0) + n
    await tx.conn.execute(
        update(J)
        .where(J.c.tenant_id == tx.tenant_id, J.c.id == job.id)
        .values(
            status="running",
            error=None,
            cursor=ids[-1],
            processed=J.c.processed + len(ids),
            issued=J.c.issued + len(chosen),
            skipped=J.c.skipped + sum(skipped.values()),
            skip_reasons=reasons,
            updated_at=now,
        )
    )
    return await get_job(tx, job.id)


async def _lock_members(tx: Tx, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """The still-active members among ``ids``, locked as :func:`issue` locks one (PostgreSQL
    re-checks ``status`` after waiting for a lock, so a member merged meanwhile drops out)."""
    stmt = (
        select(M.c.id)
        .where(M.c.tenant_id == tx.tenant_id, in_ids(M.c.id, tx.dialect), M.c.status == "active")
        .order_by(M.c.id)
    )
    if tx.is_postgres:
        stmt = stmt.with_for_update(key_share=True)  # FOR NO KEY UPDATE
    rows = await tx.conn.execute(stmt, {"ids": ids})
    return [r[0] for r in rows]


async def _holding_keys(tx: Tx, keys: list[str]) -> set[str]:
    if not keys:
        return set()
    rows = await tx.conn.execute(
        select(C.c.idem_key).where(C.c.tenant_id == tx.tenant_id, in_ids(C.c.idem_key, tx.dialect)),
        {"ids": keys},
    )
    return {r[0] for r in rows}


_PG_HELD = """
SELECT b.id, count(*) FROM unnest($3::uuid[]) AS b(id)
JOIN coupon c ON c.tenant_id = $1 AND c.member_id = b.id AND c.template_id = $2
GROUP BY b.id
UNION ALL
SELECT m.merged_into, count(*) FROM member m
JOIN coupon c ON c.tenant_id = m.tenant_id AND c.member_id = m.id AND c.template_id = $2
WHERE m.tenant_id = $1 AND m.status = 'merged' AND m.merged_into = ANY($3::uuid[])
GROUP BY m.merged_into
"""
"""PostgreSQL: a join against the id array (index probes on ``ix_coupon_member``) rather than
``member_id = ANY(…)`` as a filter, which degrades to a scan of every coupon of the tenant
times the array when the planner's statistics still think the table is small (mid-job)."""


async def _held_counts(
    tx: Tx, template_id: uuid.UUID, owners: list[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Coupons of the template each owner holds, counting those of members merged into it (as
    :func:`~gateway.coupons.issue.issue` counts them), in one statement."""
    out: dict[uuid.UUID, int] = {}
    if tx.driver is not None:
        rows: Any = await tx.driver.fetch(_PG_HELD, tx.tenant_id, template_id, owners)
    else:
        mine = (C.c.tenant_id == tx.tenant_id, C.c.template_id == template_id)
        own = select(C.c.member_id.label("owner")).where(*mine, C.c.member_id.in_(owners))
        losers = select(M.c.id).where(
            M.c.tenant_id == tx.tenant_id, M.c.status == "merged", M.c.merged_into.in_(owners)
        )
        merged = (
            select(M.c.merged_into.label("owner"))
            .select_from(C.join(M, (M.c.tenant_id == C.c.tenant_id) & (M.c.id == C.c.member_id)))
            .where(*mine, C.c.member_id.in_(losers))
        )
        held = union_all(own, merged).subquery()
        rows = await tx.conn.execute(select(held.c.owner, func.count()).group_by(held.c.owner))
    for owner, n in rows:
        key = owner if isinstance(owner, uuid.UUID) else uuid.UUID(str(owner))
        out[key] = out.get(key, 0) + int(n)
    return out


async def _claim(tx: Tx, t: Template, wanted: int, now: datetime) -> int:
    """Take up to ``wanted`` from the template's counter, within ``total_limit``."""
    stmt = select(T.c.issued, T.c.total_limit).where(T.c.tenant_id == tx.tenant_id, T.c.id == t.id)
    if tx.is_postgres:
        stmt = stmt.with_for_update()
    issued, limit = (await tx.conn.execute(stmt)).one()
    granted = wanted if limit is None else max(0, min(wanted, int(limit) - int(issued)))
    if granted:
        await tx.conn.execute(
            update(T)
            .where(T.c.tenant_id == tx.tenant_id, T.c.id == t.id)
            .values(issued=T.c.issued + granted, updated_at=now)
        )
    return granted


_COUPON_COLS = (
    "tenant_id",
    "id",
    "template_id",
    "member_id",
    "code",
    "status",
    "valid_from",
    "valid_until",
    "issued_at",
    "source",
    "idem_key",
    "request_hash",
    "updated_at",
)


_SQLITE_INSERT = sqlite.insert(C).on_conflict_do_nothing().returning(C.c.id)


async def _insert_rows(tx: Tx, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
    if tx.driver is not None:
        args = [[r[c] for r in rows] for c in _COUPON_COLS]
        sql = unnest_insert_sql(C, _COUPON_COLS, "ON CONFLICT DO NOTHING RETURNING id")
        return {r[0] for r in await tx.driver.fetch(sql, *args)}
    result = await tx.conn.execute(_SQLITE_INSERT, rows)
    return set(result.scalars().all())


async def _insert_coupons(
    tx: Tx,
    job: Job,
    t: Template,
    members: list[uuid.UUID],
    keys: dict[uuid.UUID, str],
    valid_from: datetime,
    valid_until: datetime,
    now: datetime,
) -> None:
    source = source_of(job.id)
    fingerprint = _fingerprint(t.id, source)
    pending: dict[uuid.UUID, dict[str, Any]] = {}
    for m in members:
        cid = uuid7()
        pending[cid] = {
            "tenant_id": tx.tenant_id,
            "id": cid,
            "template_id": t.id,
            "member_id": m,
            "code": codes.generate(),
            "status": "issued",
            "valid_from": valid_from,
            "valid_until": valid_until,
            "issued_at": now,
            "source": source,
            "idem_key": keys[m],
            "request_hash": fingerprint(m),
            "updated_at": now,
        }
    written: list[dict[str, Any]] = []
    for _ in range(codes.MAX_ATTEMPTS):
        done = await _insert_rows(tx, list(pending.values()))
        written.extend(pending.pop(cid) for cid in done)
        if not pending:
            break
        for r in pending.values():  # a code collided (~n/2^60 each): draw again
            r["code"] = codes.generate()
    else:  # pragma: no cover - an idempotency key taken under the job lock, or 2^-60 events
        raise RuntimeError("could not write the batch's coupons")
    created = v.now_or(None)
    shared = events.issued_payload(uuid.UUID(int=0), t.code, source, valid_from, valid_until)
    await events.insert_many(
        tx,
        [
            events.row(
                tx,
                event=events.event_id(tx.tenant_id, r["id"], "issued"),
                member_id=r["member_id"],
                type="coupon.issued",
                payload={**shared, "coupon_id": str(r["id"])},
                occurred_at=now,
                created_at=created,
            )
            for r in written
        ],
    )


def _fingerprint(template_id: uuid.UUID, source: str) -> Callable[[uuid.UUID], str]:
    """``member → v.request_hash(op="coupons.issue", template=…, member_id=member, source=…)``,
    the fingerprint a single :func:`~gateway.coupons.issue.issue` of the same request has (so
    issuing again under the job's key for that member is a replay), without re-serialising the
    request for each of 10⁵ members: the JSON differs only in the member id."""
    mark = "00000000-0000-0000-0000-000000000000"
    fields = {"op": "coupons.issue", "template": str(template_id), "source": source}
    text = json.dumps({**fields, "member_id": mark}, sort_keys=True, separators=(",", ":"))
    head, tail = text.split(mark)
    assert v.request_hash(**fields, member_id=uuid.UUID(mark)) == _sha(text)

    def of(member_id: uuid.UUID) -> str:
        return _sha(f"{head}{member_id}{tail}")

    return of


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()

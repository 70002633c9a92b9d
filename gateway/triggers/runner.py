"""Run the scheduled triggers for a tenant: batched, short transactions, idempotent.

Which triggers fire comes from the tenant's config (``settings.scheduled_for``): the
``triggers:`` section, plus birthday and member day for tenants whose rule sets react to
member events. A tenant with neither costs one config read.

Calendar triggers (birthday, member day) fire for every tenant-local date from ``since``
(default: today there) to today that has an occurrence; state triggers (points expiring,
dormant, purchase slowing) look at the members' data as of ``now``. Either way members are read
in keyset batches (one short read-only transaction each, which also filters events already
recorded), then each remaining member's event is recorded and processed in its own transaction,
like ``tiers evaluate``. The event id derives from (tenant, trigger, member, occurrence key), so
concurrent or repeated runs record it once: ``record_and_process`` returns ``None`` for the
loser, counted as already fired. The event runs the tenant's rules and the trigger's ``actions``
(:mod:`gateway.triggers.actions`, the engine's hook), and webhooks deliver it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from gateway.errors import InvalidInput
from gateway.ids import derived_id
from gateway.rules import config as rule_config
from gateway.rules.engine import record_and_process
from gateway.rules.manager import RuleRegistry, default_registry
from gateway.storage.db import Database, Tx
from gateway.storage.retry import transaction_retrying
from gateway.storage.tables import Member, MemberEvent
from gateway.storage.types import utcnow
from gateway.triggers.base import (
    MAX_CATCH_UP_DAYS,
    Candidate,
    Occurrence,
    ScanRun,
    ScanTrigger,
    Trigger,
    TriggerOptions,
    TriggerReport,
    local_date,
    local_midnight,
)
from gateway.triggers.birthday import BIRTHDAY
from gateway.triggers.dormant import DORMANT
from gateway.triggers.member_day import MEMBER_DAY
from gateway.triggers.points_expiring import POINTS_EXPIRING
from gateway.triggers.purchase_slowing import PURCHASE_SLOWING
from gateway.triggers.settings import CALENDAR, scheduled_for

M: Any = Member.__table__  # type: ignore[attr-defined]
ME: Any = MemberEvent.__table__  # type: ignore[attr-defined]

TRIGGERS: dict[str, Trigger | ScanTrigger] = {
    t.name: t for t in (BIRTHDAY, MEMBER_DAY, POINTS_EXPIRING, DORMANT, PURCHASE_SLOWING)
}
"""The triggers ``memberhub triggers run`` knows, by name, in firing order."""

Scan = Callable[[Tx, uuid.UUID | None, int], Awaitable[tuple[list[Candidate], uuid.UUID | None]]]


def event_id(tenant_id: uuid.UUID, trigger: Any, member_id: uuid.UUID, key: str) -> uuid.UUID:
    """The one id a trigger's event for this member and occurrence can have."""
    return derived_id(tenant_id, "trigger", trigger.name, member_id, key)


def _days(today: date, since: date | None) -> list[date]:
    if since is None:
        return [today]
    if since > today:
        raise InvalidInput("since must not be after today in the tenant's timezone", "since")
    if (today - since).days > MAX_CATCH_UP_DAYS:
        raise InvalidInput(f"since may reach back at most {MAX_CATCH_UP_DAYS} days", "since")
    return [since + timedelta(d) for d in range((today - since).days + 1)]


async def run_triggers(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    now: datetime | None = None,
    only: Sequence[str] | None = None,
    options: TriggerOptions | None = None,
    since: date | None = None,
    registry: RuleRegistry | None = None,
    batch: int = 500,
    label: str | None = None,
) -> list[TriggerReport]:
    """Fire the tenant's triggers due at ``now`` (and, with ``since``, the calendar triggers'
    missed occurrences back to that tenant-local date). Returns one report per trigger; a
    trigger the tenant does not run is reported ``skipped``."""
    now = now or utcnow()
    options = options or TriggerOptions()
    registry = registry if registry is not None else default_registry()
    names = list(only) if only else list(TRIGGERS)
    unknown = [n for n in names if n not in TRIGGERS]
    if unknown:
        raise InvalidInput(f"unknown trigger(s) {', '.join(unknown)}", "only")
    label = label or str(tenant_id)
    async with db.tenant_tx(tenant_id, write=False) as tx:
        cfg, timezone = await rule_config.active(tx, registry)
    today = local_date(now, timezone)
    days = _days(today, since)
    due = scheduled_for(cfg)
    reports = [TriggerReport(label, n) for n in names]
    for report in reports:
        setting = due.get(report.trigger)
        if setting is None:
            report.skipped = "not configured"
            continue
        trigger = TRIGGERS[report.trigger]
        fire = _Firing(db, tenant_id, trigger, now, registry, batch, report)
        if report.trigger in CALENDAR:
            opts = options
            if opts.member_day is None:
                opts = replace(opts, member_day=setting.options.get("day", 8))
            for day in days:
                occ = trigger.occurrence(day, opts)  # type: ignore[union-attr]
                if occ is not None:
                    report.days.append(day)
                    await fire(_calendar(trigger, occ), local_midnight(day, timezone))  # type: ignore[arg-type]
        else:
            run = ScanRun(today, now, timezone, setting.options)
            report.days.append(today)
            await fire(_state(trigger, run), local_midnight(today, timezone))  # type: ignore[arg-type]
    return reports


def _state(trigger: ScanTrigger, run: ScanRun) -> Scan:
    """A state trigger's scan for this run."""

    async def scan(
        tx: Tx, after: uuid.UUID | None, limit: int
    ) -> tuple[list[Candidate], uuid.UUID | None]:
        return await trigger.scan(tx, run, after, limit)

    return scan


def _calendar(trigger: Trigger, occ: Occurrence) -> Scan:
    """A calendar trigger's occurrence as a batch scan over the members it selects."""

    async def scan(
        tx: Tx, after: uuid.UUID | None, limit: int
    ) -> tuple[list[Candidate], uuid.UUID | None]:
        cond = [M.c.tenant_id == tx.tenant_id, M.c.status == "active"]
        cond += trigger.conditions(occ, M)
        if after is not None:
            cond.append(M.c.id > after)
        rows = (
            await tx.conn.execute(
                select(M.c.id, M.c.birthday).where(*cond).order_by(M.c.id).limit(limit)
            )
        ).all()
        out = [
            Candidate(r.id, occ.key, p) for r in rows if (p := trigger.payload(occ, r)) is not None
        ]
        return out, rows[-1].id if len(rows) == limit else None

    return scan


class _Firing:
    """Records one trigger's events for the candidates a scan yields, batch by batch."""

    def __init__(
        self,
        db: Database,
        tenant_id: uuid.UUID,
        trigger: Any,
        now: datetime,
        registry: RuleRegistry,
        batch: int,
        report: TriggerReport,
    ) -> None:
        self.db, self.tenant_id, self.trigger = db, tenant_id, trigger
        self.now, self.registry, self.batch, self.report = now, registry, batch, report

    async def __call__(self, scan: Scan, occurred_at: datetime) -> None:
        after: uuid.UUID | None = None
        while True:
            async with self.db.tenant_tx(self.tenant_id, write=False) as tx:
                found, after = await scan(tx, after, self.batch)
                ids = [event_id(self.tenant_id, self.trigger, c.member_id, c.key) for c in found]
                done = await _recorded(tx, ids)
            for c, eid in zip(found, ids, strict=True):
                if eid in done:
                    self.report.already += 1
                    continue
                async for attempt in transaction_retrying():  # a deadlock aborted it: again
                    with attempt:
                        async with self.db.tenant_tx(self.tenant_id) as tx:
                            out = await record_and_process(
                                tx,
                                event_id=eid,
                                member_id=c.member_id,
                                type=self.trigger.event_type,
                                payload=c.payload,
                                occurred_at=occurred_at,
                                registry=self.registry,
                                now=self.now,
                            )
                if out is None:
                    self.report.already += 1
                else:
                    self.report.fired += 1
            if after is None:
                return


async def _recorded(tx: Tx, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    if not ids:
        return set()
    rows = await tx.conn.execute(
        select(ME.c.id).where(ME.c.tenant_id == tx.tenant_id, ME.c.id.in_(ids))
    )
    return set(rows.scalars())

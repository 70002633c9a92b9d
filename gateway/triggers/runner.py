"""Run the scheduled triggers for a tenant: batched, short transactions, idempotent.

For every tenant-local date from ``since`` (default: today there) to today, and every trigger
with an occurrence on that date, members are read in keyset batches (one short read
transaction each; events already recorded are counted and skipped there), then each remaining
member's event is recorded and processed in its own transaction, like ``tiers evaluate``. The
event id derives from (tenant, trigger, member, occurrence key), so concurrent or repeated runs
record it once: ``record_and_process`` returns ``None`` for the loser, counted as already fired.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from gateway.errors import InvalidInput
from gateway.ids import derived_id
from gateway.rules import config as rule_config
from gateway.rules.engine import record_and_process
from gateway.rules.manager import RuleRegistry, default_registry
from gateway.storage.db import Database
from gateway.storage.tables import Member, MemberEvent
from gateway.storage.types import utcnow
from gateway.triggers.base import (
    MAX_CATCH_UP_DAYS,
    Occurrence,
    Trigger,
    TriggerOptions,
    TriggerReport,
    local_date,
    local_midnight,
)
from gateway.triggers.birthday import BIRTHDAY
from gateway.triggers.member_day import MEMBER_DAY

M: Any = Member.__table__  # type: ignore[attr-defined]
ME: Any = MemberEvent.__table__  # type: ignore[attr-defined]

TRIGGERS: dict[str, Trigger] = {t.name: t for t in (BIRTHDAY, MEMBER_DAY)}
"""The triggers ``memberhub triggers run`` knows, by name (the extension point)."""


def event_id(tenant_id: uuid.UUID, trigger: Trigger, member_id: uuid.UUID, key: str) -> uuid.UUID:
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
    batch: int = 200,
    label: str | None = None,
) -> list[TriggerReport]:
    """Fire the tenant's triggers due at ``now`` (and, with ``since``, missed ones back to that
    tenant-local date). Returns one report per trigger.

    A tenant whose config has nothing but earning rule sets is skipped (like ``member.joined``:
    no rule reacts to such events, and a member day would otherwise record one event per member
    per month for nothing)."""
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
    reports = [TriggerReport(label, n) for n in names]
    if cfg.bulk_safe:
        for r in reports:
            r.skipped = "no rule set reacts to member events"
        return reports
    days = _days(local_date(now, timezone), since)
    for report in reports:
        trigger = TRIGGERS[report.trigger]
        for day in days:
            occ = trigger.occurrence(day, options)
            if occ is None:
                continue
            report.days.append(day)
            await _fire(db, tenant_id, trigger, occ, timezone, now, registry, batch, report)
    return reports


async def _fire(
    db: Database,
    tenant_id: uuid.UUID,
    trigger: Trigger,
    occ: Occurrence,
    timezone: str,
    now: datetime,
    registry: RuleRegistry,
    batch: int,
    report: TriggerReport,
) -> None:
    occurred_at = local_midnight(occ.day, timezone)
    after: uuid.UUID | None = None
    while True:
        async with db.tenant_tx(tenant_id, write=False) as tx:
            cond = [M.c.tenant_id == tx.tenant_id, M.c.status == "active"]
            cond += trigger.conditions(occ, M)
            if after is not None:
                cond.append(M.c.id > after)
            rows = (
                await tx.conn.execute(
                    select(M.c.id, M.c.birthday).where(*cond).order_by(M.c.id).limit(batch)
                )
            ).all()
            ids = {r.id: event_id(tenant_id, trigger, r.id, occ.key) for r in rows}
            done = set()
            if ids:
                done = set(
                    (
                        await tx.conn.execute(
                            select(ME.c.id).where(
                                ME.c.tenant_id == tx.tenant_id, ME.c.id.in_(list(ids.values()))
                            )
                        )
                    ).scalars()
                )
        if not rows:
            return
        for row in rows:
            if ids[row.id] in done:
                report.already += 1
                continue
            payload = trigger.payload(occ, row)
            if payload is None:
                continue
            async with db.tenant_tx(tenant_id) as tx:
                out = await record_and_process(
                    tx,
                    event_id=ids[row.id],
                    member_id=row.id,
                    type=trigger.event_type,
                    payload=payload,
                    occurred_at=occurred_at,
                    registry=registry,
                    now=now,
                )
            if out is None:
                report.already += 1
            else:
                report.fired += 1
        after = rows[-1].id

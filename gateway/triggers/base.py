"""The trigger contracts.

Two shapes: a **calendar** trigger (:class:`Trigger`: birthday, member day) has one occurrence
on a tenant-local date shared by the members it selects with SQL conditions on ``member``; a
**state** trigger (:class:`ScanTrigger`: points about to expire, dormant, purchase slowing) looks
at each member's own data — lots, orders — and gives each member its own occurrence key (the
expiry date, the last order), so it fires once per member per spell whenever the job runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from gateway.errors import InvalidInput
from gateway.storage.db import Tx

MAX_CATCH_UP_DAYS = 62
"""How far back ``since`` may reach: a missed week or two of cron, not a backfill of history."""


@dataclass(frozen=True)
class TriggerOptions:
    """Per-run settings. ``member_day`` is the day of month (1-28, so every month has it) of the
    tenant's member day (会员日): ``None`` takes the tenant's config (``triggers.member_day.day``,
    default the 8th); a number (``memberhub triggers run --member-day N``) overrides it."""

    member_day: int | None = None

    def __post_init__(self) -> None:
        if self.member_day is not None and not 1 <= self.member_day <= 28:
            raise InvalidInput("member day must be a day of month from 1 to 28", "member_day")


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of a trigger: ``key`` makes the event id (once per member per key),
    ``day`` is the tenant-local date it falls on, ``payload`` is shared by every member."""

    key: str
    day: date
    payload: dict[str, Any] = field(default_factory=dict)


class Trigger(Protocol):
    """A scheduled trigger. Implementations are small, stateless objects."""

    name: str
    """Short name used in ids, the CLI (``--only``) and reports: ``birthday``."""
    event_type: str
    """The member event type it records (registered in ``EVENT_TYPES``, ``recorded_by=()``)."""

    def occurrence(self, day: date, options: TriggerOptions) -> Occurrence | None:
        """The occurrence falling on the tenant-local date ``day``, or ``None``."""
        ...

    def conditions(self, occurrence: Occurrence, member: Any) -> list[Any]:
        """SQL conditions on the ``member`` table (besides tenant and ``status = 'active'``)
        selecting the members the occurrence concerns."""
        ...

    def payload(self, occurrence: Occurrence, row: Any) -> dict[str, Any] | None:
        """The event payload for one selected member row (``id``, ``birthday``); ``None`` skips
        the member (a final check SQL cannot express portably)."""
        ...


@dataclass(frozen=True)
class Candidate:
    """A member a state trigger fires for, with its own occurrence key and payload."""

    member_id: uuid.UUID
    key: str
    payload: dict[str, Any]


@dataclass
class ScanRun:
    """One state trigger's run for one tenant: the tenant-local ``today``, the instant ``now``,
    the configured ``options`` and a per-run ``memo`` the scan may cache reads in."""

    today: date
    now: datetime
    timezone: str
    options: Mapping[str, Any]
    memo: dict[str, Any] = field(default_factory=dict)


class ScanTrigger(Protocol):
    """A state trigger: walks the tenant's members in keyset batches."""

    name: str
    event_type: str

    async def scan(
        self, tx: Tx, run: ScanRun, after: uuid.UUID | None, limit: int
    ) -> tuple[list[Candidate], uuid.UUID | None]:
        """The candidates among (about) the next ``limit`` members after ``after`` (member id
        order), and the id to continue after — ``None`` when every member has been seen.
        Set-based: a few statements per batch, never one per member."""
        ...


@dataclass
class TriggerReport:
    """What one trigger did for one tenant in one run."""

    tenant: str
    trigger: str
    fired: int = 0
    already: int = 0
    skipped: str | None = None
    days: list[date] = field(default_factory=list)


def local_date(now: datetime, timezone: str) -> date:
    """The calendar date at ``now`` in ``timezone`` (the tenant's)."""
    return now.astimezone(ZoneInfo(timezone)).date()


def local_midnight(day: date, timezone: str) -> datetime:
    """The aware instant ``day`` starts in ``timezone`` (an occurrence's ``occurred_at``)."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(timezone))

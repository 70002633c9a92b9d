"""The trigger contract: an occurrence on a local date and the members it concerns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from gateway.errors import InvalidInput

MAX_CATCH_UP_DAYS = 62
"""How far back ``since`` may reach: a missed week or two of cron, not a backfill of history."""


@dataclass(frozen=True)
class TriggerOptions:
    """Per-run settings. ``member_day`` is the day of month (1-28, so every month has it) of the
    tenant's member day (会员日); a tenant's rule config has no place for it, so the scheduler
    passes it (``memberhub triggers run --member-day N``; default the 8th)."""

    member_day: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.member_day <= 28:
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

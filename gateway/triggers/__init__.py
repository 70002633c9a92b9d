"""Scheduled care triggers: member events that come from the calendar, not from a channel.

A trigger answers two questions for a tenant's *local* date: is there an occurrence today
(:meth:`Trigger.occurrence`), and which members does it concern (:meth:`Trigger.members`). The
runner (:func:`run_triggers`, ``memberhub triggers run``) records one member event per member per
occurrence with a derived id — ``derived_id(tenant, "trigger", name, member, occurrence key)`` — and
runs the tenant's rules on it (``engine.record_and_process``), so the job may run twice, on two
machines, or late the same day, and still fires once.

Built in: calendar triggers :data:`BIRTHDAY` (``member.birthday``, key = the year) and
:data:`MEMBER_DAY` (``member.member_day``, key = the month); state triggers
:data:`POINTS_EXPIRING` (``points.expiring``, key = account and local expiry date),
:data:`DORMANT` (``member.dormant``) and :data:`PURCHASE_SLOWING` (``member.purchase_slowing``),
both keyed by the last order. Which fire, with which options and direct ``actions`` (coupons,
points), is the tenant's ``triggers:`` config section (:mod:`gateway.triggers.settings`);
``on_event`` entries there run actions when the engine processes other events
(:mod:`gateway.triggers.actions`). See ``gateway/README.md``.
"""

from __future__ import annotations

from gateway.triggers.base import (
    Candidate,
    Occurrence,
    ScanRun,
    ScanTrigger,
    Trigger,
    TriggerOptions,
    TriggerReport,
)
from gateway.triggers.birthday import BIRTHDAY
from gateway.triggers.dormant import DORMANT
from gateway.triggers.member_day import MEMBER_DAY
from gateway.triggers.points_expiring import POINTS_EXPIRING
from gateway.triggers.purchase_slowing import PURCHASE_SLOWING
from gateway.triggers.runner import TRIGGERS, run_triggers

__all__ = [
    "BIRTHDAY",
    "DORMANT",
    "MEMBER_DAY",
    "POINTS_EXPIRING",
    "PURCHASE_SLOWING",
    "TRIGGERS",
    "Candidate",
    "Occurrence",
    "ScanRun",
    "ScanTrigger",
    "Trigger",
    "TriggerOptions",
    "TriggerReport",
    "run_triggers",
]

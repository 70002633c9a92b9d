"""Scheduled care triggers: member events that come from the calendar, not from a channel.

A trigger answers two questions for a tenant's *local* date: is there an occurrence today
(:meth:`Trigger.occurrence`), and which members does it concern (:meth:`Trigger.members`). The
runner (:func:`run_triggers`, ``memberhub triggers run``) records one member event per member per
occurrence with a derived id — ``derived_id(tenant, "trigger", name, member, occurrence key)`` — and
runs the tenant's rules on it (``engine.record_and_process``), so the job may run twice, on two
machines, or late the same day, and still fires once.

Built in: :data:`BIRTHDAY` (``member.birthday``, key = the year) and :data:`MEMBER_DAY`
(``member.member_day``, key = the month). A later trigger (points about to expire, a dormant
member) is one more :class:`Trigger` in :data:`TRIGGERS` plus its event type in
``gateway.rules.hookspecs.EVENT_TYPES`` — see ``gateway/README.md``.
"""

from __future__ import annotations

from gateway.triggers.base import Occurrence, Trigger, TriggerOptions, TriggerReport
from gateway.triggers.birthday import BIRTHDAY
from gateway.triggers.member_day import MEMBER_DAY
from gateway.triggers.runner import TRIGGERS, run_triggers

__all__ = [
    "BIRTHDAY",
    "MEMBER_DAY",
    "TRIGGERS",
    "Occurrence",
    "Trigger",
    "TriggerOptions",
    "TriggerReport",
    "run_triggers",
]

"""``member.member_day``: the brand's monthly member day (会员日), for every active member.

The day of month comes from :class:`~gateway.triggers.base.TriggerOptions` (1-28), which the
runner fills from the ``--member-day`` flag, else the tenant's ``triggers.member_day.day``, else 8;
the occurrence key is the month (``2026-11``), so changing the day mid-month cannot fire twice.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from gateway.triggers.base import Occurrence, TriggerOptions


class MemberDay:
    name = "member_day"
    event_type = "member.member_day"

    def occurrence(self, day: date, options: TriggerOptions) -> Occurrence | None:
        if day.day != (options.member_day or 8):
            return None
        month = f"{day.year:04d}-{day.month:02d}"
        return Occurrence(month, day, {"month": month, "day": day.day})

    def conditions(self, occurrence: Occurrence, member: Any) -> list[Any]:
        return []

    def payload(self, occurrence: Occurrence, row: Any) -> dict[str, Any] | None:
        return dict(occurrence.payload)


MEMBER_DAY = MemberDay()

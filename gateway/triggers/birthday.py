"""``member.birthday``: once a year, on the member's birthday in the tenant's timezone.

The occurrence key is the year, so a member gets one birthday event per year whatever day it is
fired on. Members born on 29 February are fired on 28 February in non-leap years (the last day of
February they are still "before" their birthday in: brands pay the gift before, not after).
Members without a birthday are never selected; a member born on the occurrence date itself (age 0)
is skipped.
"""

from __future__ import annotations

import calendar
from datetime import date
from typing import Any

from sqlalchemy import extract

from gateway.triggers.base import Occurrence, TriggerOptions


class Birthday:
    name = "birthday"
    event_type = "member.birthday"

    def occurrence(self, day: date, options: TriggerOptions) -> Occurrence | None:
        return Occurrence(str(day.year), day, {"year": day.year})

    def conditions(self, occurrence: Occurrence, member: Any) -> list[Any]:
        day = occurrence.day
        month, dom = extract("month", member.c.birthday), extract("day", member.c.birthday)
        days = [day.day]
        if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
            days.append(29)
        return [member.c.birthday.is_not(None), month == day.month, dom.in_(days)]

    def payload(self, occurrence: Occurrence, row: Any) -> dict[str, Any] | None:
        born: date | None = row.birthday
        if born is None or born.year >= occurrence.day.year:
            return None
        return {**occurrence.payload, "age": occurrence.day.year - born.year}


BIRTHDAY = Birthday()

"""``classic_expiry``: points expire at the end of the calendar year after the one they were
earned in (``years`` after, default 1), in the tenant's timezone.

Points earned on 2026-12-31 23:30 in Shanghai (15:30 UTC) are 2026 points and stay usable
until 2027-12-31 24:00 Shanghai time, i.e. they expire at 2027-12-31T16:00:00Z; points earned half
an hour later, already 2027 in Shanghai while UTC is still on 31 December, last a year longer.
Only the ``points`` account expires under this rule; other accounts never do.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

NAME = "classic_expiry"


def year_end_expiry(earned_at: datetime, timezone: str, years: int) -> datetime:
    """Midnight starting 1 January of (year earned + ``years`` + 1), local time, as UTC."""
    tz = ZoneInfo(timezone)
    local_year = earned_at.astimezone(tz).year
    return datetime(local_year + years + 1, 1, 1, tzinfo=tz).astimezone(UTC)


class ClassicExpiry:
    """Points expire on 31 December (24:00, tenant time) of the year after they were earned."""

    name = NAME
    slot = "expiry"
    version = "1"
    description = (
        "Points expire at the end of the calendar year after the one they were earned in "
        "(tenant timezone); `years` sets how many full years they outlive their own."
    )
    config_schema: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "years": {
                "type": "integer",
                "minimum": 0,
                "maximum": 10,
                "description": "0: end of the year earned; 1: end of the next year; …",
            },
        },
    }

    def expires_at(
        self, earned_at: datetime, account: str, timezone: str, config: dict[str, Any]
    ) -> datetime | None:
        if account != "points":
            return None
        return year_end_expiry(earned_at, timezone, config.get("years", 1))

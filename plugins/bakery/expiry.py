"""``bakery_expiry``: points last ``months`` full months after the month they were earned in.

With the default 12, points earned any day in January 2026 expire at the end of January 2027
(midnight starting 1 February, tenant timezone), so a member's points run out at most once a
month and a monthly reminder ("312 points expire at the end of this month") is always right.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

NAME = "bakery_expiry"


def month_end_expiry(earned_at: datetime, timezone: str, months: int) -> datetime:
    """Midnight starting the month after (month earned + ``months``), local time, as UTC."""
    tz = ZoneInfo(timezone)
    local = earned_at.astimezone(tz)
    years, month0 = divmod(local.month - 1 + months + 1, 12)
    return datetime(local.year + years, month0 + 1, 1, tzinfo=tz).astimezone(UTC)


class BakeryExpiry:
    """Points expire at the end of the month, ``months`` months after they were earned."""

    name = NAME
    slot = "expiry"
    version = "1"
    description = (
        "Points expire at the end of the month 12 months (configurable) after the month they "
        "were earned in, in the tenant's timezone."
    )
    config_schema: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {"months": {"type": "integer", "minimum": 1, "maximum": 60}},
    }

    def expires_at(
        self, earned_at: datetime, account: str, timezone: str, config: dict[str, Any]
    ) -> datetime | None:
        if account != "points":
            return None
        return month_end_expiry(earned_at, timezone, config.get("months", 12))

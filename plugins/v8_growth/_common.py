"""Shared vocabulary of the ``v8_growth`` rule sets: levels, channels, small schema helpers.

Channels are the codes the gateway's connectors and front ends record (``order.paid`` carries the
order's channel, activity events carry the channel they were recorded from):

- **store** — ``pos`` (the till, the store tablet or the member-code scanner at the door);
- **app** — ``app`` (the brand's own app);
- **mini-program** — ``wechat`` (the WeChat mini-program and the official account);
- **e-commerce** — ``tmall``, ``jd``, ``douyin`` (and ``youzan``, the brand's own web mall).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

LEVELS = ("V1", "V2", "V3", "V4", "V5", "V6", "V7", "V8")
"""The eight growth levels, lowest first; the codes every v8 rule set and the mall refer to."""

STORE = ("pos",)
APP = ("app",)
MINI_PROGRAM = ("wechat",)
ECOMMERCE = ("tmall", "jd", "douyin", "youzan")
ONLINE_CHECKIN = (*APP, *MINI_PROGRAM)
"""Where the daily check-in button lives (one shared streak across the app and mini-program)."""

_REWARD = re.compile(r"^[a-z][a-z0-9_]{0,63}:[A-Za-z0-9_.:-]{1,64}$")
_CHANNEL = r"^[A-Za-z0-9_.:-]{1,32}$"


def reward_problems(value: Any, where: str) -> list[str]:
    """Problems with a list of ``"<kind>:<code>"`` reward references (tier and birthday gifts).

    The registered reward kinds are checked where the gateway grants them; here only the shape,
    so a typo (``coupon GOLD``, a missing code) is refused when the config is saved."""
    if not isinstance(value, list):
        return [f"{where}: must be a list of rewards like 'coupon:V4-UPGRADE'"]
    return [
        f"{where}: {item!r} is not a reward like 'coupon:V4-UPGRADE' (<kind>:<code>)"
        for item in value
        if not isinstance(item, str) or not _REWARD.match(item)
    ]


def local_day(at: datetime, timezone: str) -> date:
    """The tenant-local calendar day of ``at`` (member days and birthdays are local)."""
    return at.astimezone(ZoneInfo(timezone)).date()


def yuan(paid_fen: Any) -> int:
    """Whole yuan of a fen amount (fractions never earn); 0 for anything that is not an int."""
    if not isinstance(paid_fen, int) or isinstance(paid_fen, bool) or paid_fen <= 0:
        return 0
    return paid_fen // 100


def level_rank(code: str | None) -> int:
    """0 for V1 … 7 for V8; -1 for no (or an unknown) level."""
    return LEVELS.index(code) if code in LEVELS else -1


# ---- JSON Schema fragments ---------------------------------------------------------------------

COUNT = {"type": "integer", "minimum": 0, "maximum": 1_000_000}
LIMIT = {"type": "integer", "minimum": 1, "maximum": 100_000}
CHANNELS = {
    "type": "array",
    "items": {"type": "string", "pattern": _CHANNEL},
    "minItems": 1,
    "uniqueItems": True,
}
REWARDS = {"type": "array", "items": {"type": "string"}}
PER_LEVEL_INTS = {
    "type": "array",
    "items": {"type": "integer", "minimum": 0},
    "minItems": len(LEVELS),
    "maxItems": len(LEVELS),
}
BY_LEVEL = {"propertyNames": {"enum": list(LEVELS)}}


def by_level(values: dict[str, Any]) -> dict[str, Any]:
    """A mapping keyed by level codes (``{V4: ..., V8: ...}``) whose values match ``values``."""
    return {"type": "object", **BY_LEVEL, "additionalProperties": values}


def by_channel(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "propertyNames": {"pattern": _CHANNEL},
        "additionalProperties": values,
    }

"""Helpers the built-in plugins' tests share: Shanghai wall-clock times and tier-history lines."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

SH = ZoneInfo("Asia/Shanghai")


def sh(*args: int) -> datetime:
    """A Shanghai wall-clock time (timezone-aware)."""
    return datetime(*args, tzinfo=SH)  # type: ignore[misc]


def lines_of(history: Iterable[Any]) -> list[tuple[datetime, str, str | None, str]]:
    """``(at, change, from, to)`` of each tier-history line (``RuleLab.history``)."""
    return [(h.at, h.change, h.from_tier, h.to_tier) for h in history]

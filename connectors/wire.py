"""Value conversions the Chinese platforms share: GMT+8 ``yyyy-MM-dd HH:mm:ss`` times, yuan
strings to exact integer fen, and plaintext mainland mobiles (masked or encrypted values are not
phone numbers). Each connector names its platform so errors say who sent the bad value."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.sync.errors import PlatformError

CST = timezone(timedelta(hours=8), "GMT+8")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_MOBILE = re.compile(r"^1[3-9]\d{9}$")


def format_time(value: datetime) -> str:
    """An aware instant as ``yyyy-MM-dd HH:mm:ss`` in GMT+8 (seconds floored)."""
    if value.tzinfo is None:
        raise ValueError("format_time needs an aware datetime")
    return value.astimezone(CST).strftime(TIME_FORMAT)


def parse_time(value: Any, platform: str) -> datetime | None:
    """``"2026-10-01 08:00:00"`` (GMT+8) → aware datetime; empty → ``None``."""
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value[:19], TIME_FORMAT).replace(tzinfo=CST)
    except ValueError as exc:
        raise PlatformError(f"{platform} sent an unreadable time {value!r}") from exc


def yuan_to_fen(value: Any, platform: str) -> int:
    """``"168.00"`` → ``16800`` exactly (no float); empty → 0; sub-fen values are refused."""
    if value in (None, ""):
        return 0
    try:
        fen = Decimal(str(value)) * 100
    except InvalidOperation as exc:
        raise PlatformError(f"{platform} sent an unreadable amount {value!r}") from exc
    if fen != fen.to_integral_value():
        raise PlatformError(f"{platform} amount {value!r} has fractions of a fen")
    return int(fen)


def plain_mobile(value: Any) -> str | None:
    """A plaintext mainland mobile, or ``None`` for masked / encrypted / empty values."""
    if isinstance(value, str) and _MOBILE.match(value.strip()):
        return value.strip()
    return None

"""Input validation and request fingerprints.

Everything is validated before the first statement runs, so an invalid request writes nothing
even if the caller swallows the error and keeps using the transaction.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from gateway.errors import InvalidInput
from gateway.ledger.accounts import ACCOUNTS, MAX_AMOUNT, AccountKind

MAX_HOLD_TTL_SECONDS = 24 * 3600


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot fingerprint {type(value).__name__}")


def request_hash(**fields: Any) -> str:
    """A stable SHA-256 of the request fields (order-independent, UUIDs/datetimes normalised).

    Idempotency compares this fingerprint: same key + same fingerprint is a replay, same key +
    another fingerprint is a client bug (``IdempotencyKeyReused``).
    """
    payload = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=_jsonable)
    return hashlib.sha256(payload.encode()).hexdigest()


def now_or(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise InvalidInput("now must be timezone-aware", field="now")
    return now


def amount(value: object, field: str = "amount") -> int:
    if type(value) is not int or not 0 < value <= MAX_AMOUNT:
        raise InvalidInput(f"{field} must be an integer in 1..{MAX_AMOUNT}", field=field)
    return value


def account(value: object) -> AccountKind:
    kind = ACCOUNTS.get(value) if isinstance(value, str) else None
    if kind is None:
        raise InvalidInput(f"unknown account {value!r}", field="account")
    return kind


def text(value: object, field: str, max_len: int, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise InvalidInput(f"{field} must be 1-{max_len} characters", field=field)
    return value


def member(value: object, field: str = "member_id") -> uuid.UUID:
    if not isinstance(value, uuid.UUID):
        raise InvalidInput(f"{field} must be a UUID", field=field)
    return value


def aware(value: object, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidInput(f"{field} must be a timezone-aware datetime", field=field)
    return value


def ttl_seconds(value: object) -> int:
    if type(value) is not int or not 1 <= value <= MAX_HOLD_TTL_SECONDS:
        raise InvalidInput(
            f"ttl_seconds must be an integer in 1..{MAX_HOLD_TTL_SECONDS}", field="ttl_seconds"
        )
    return value


def common(*, reason: object, idem_key: object) -> None:
    text(reason, "reason", 200)
    text(idem_key, "idem_key", 128)

"""Expected domain errors. Each maps to a typed member of a GraphQL result union.

Unexpected exceptions are not listed here: the gateway masks them. Raising one of these inside a
transaction rolls the whole write back, so nothing is half-written.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base class; ``code`` is stable and machine-readable."""

    code = "DOMAIN_ERROR"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    """The object does not exist or belongs to another tenant (the two are indistinguishable)."""

    code = "NOT_FOUND"


class InvalidInput(DomainError):
    """A field failed validation; ``field`` names it."""

    code = "INVALID_INPUT"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.field = field


class InsufficientBalance(DomainError):
    code = "INSUFFICIENT_BALANCE"

    def __init__(self, message: str, available: int, requested: int) -> None:
        super().__init__(message, available=available, requested=requested)
        self.available = available
        self.requested = requested


class IdempotencyKeyReused(DomainError):
    """The key was already used for a different request."""

    code = "IDEMPOTENCY_KEY_REUSED"


class HoldNotActive(DomainError):
    """The hold was already captured, released or has expired."""

    code = "HOLD_NOT_ACTIVE"

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message, status=status)
        self.status = status


class InvalidTransition(DomainError):
    """A state machine refused a move (order status backwards, unmerge of a non-merge, ...)."""

    code = "INVALID_TRANSITION"


class PermissionDenied(DomainError):
    code = "PERMISSION_DENIED"


def problems_summary(problems: list[tuple[str, str]]) -> str:
    """The message of an error that lists every ``(path, message)`` problem: the first three,
    then how many more (clients read the full list from ``problems``)."""
    first = "; ".join(f"{p}: {m}" for p, m in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return first + more


class ConfigInvalid(DomainError):
    """A tenant rule config failed validation; ``problems`` lists every ``(path, message)`` and
    nothing was saved."""

    code = "CONFIG_INVALID"

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__(f"invalid rule config — {problems_summary(problems)}", problems=problems)
        self.problems = problems


class NotEligible(DomainError):
    """The member may not do this (exchange not offered to their tier, limit reached, out of
    stock, outside the validity window); ``reason`` is a stable code, the message says why."""

    code = "NOT_ELIGIBLE"

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message, reason=reason)
        self.reason = reason


class CouponRefused(NotEligible):
    """A coupon named on an order cannot be used on it (``recordOrder``): ``coupon_code`` says
    which, ``reason`` why (a coupon ``NotEligible`` reason, e.g. ``ALREADY_REDEEMED``). The whole
    order is refused, so nothing is written."""

    code = "COUPON_REFUSED"

    def __init__(self, message: str, *, coupon_code: str, reason: str) -> None:
        super().__init__(message, reason)
        self.details["coupon_code"] = coupon_code
        self.coupon_code = coupon_code

"""Typed errors: every expected failure of a mutation is a member of its result union.

Clients select ``... on Error { message code }`` for a generic display and the concrete types for
details (``InsufficientBalanceError.available``). Domain exceptions from ``gateway.errors`` map
one-to-one onto these types; anything unexpected is masked by the schema instead.
"""

from __future__ import annotations

import strawberry

from gateway import errors as domain
from schema.enums import PointsHoldStatus


@strawberry.interface(name="Error", description="An expected, typed failure of a mutation.")
class Error:
    message: str = strawberry.field(description="Human-readable explanation (English).")
    code: str = strawberry.field(description="Stable machine-readable code, e.g. NOT_FOUND.")


@strawberry.type(
    description="The object does not exist, or belongs to another tenant (indistinguishable)."
)
class NotFoundError(Error):
    field: str | None = strawberry.field(
        default=None, description="The input field whose id was not found, when known."
    )


@strawberry.type(description="An input field failed validation; nothing was written.")
class InvalidInputError(Error):
    field: str | None = strawberry.field(
        default=None, description="The offending input field (camelCase), when known."
    )


@strawberry.type(description="Not enough available balance for a debit or hold.")
class InsufficientBalanceError(Error):
    available: int = strawberry.field(description="What the member can spend right now.")
    requested: int = strawberry.field(description="What the request asked for.")


@strawberry.type(
    description="The idempotencyKey was already used for a different request. Use a new key."
)
class IdempotencyKeyReusedError(Error):
    pass


@strawberry.type(description="The points hold was already captured, released or expired.")
class HoldNotActiveError(Error):
    status: PointsHoldStatus = strawberry.field(description="The hold's current status.")


@strawberry.type(
    description="A state machine refused the move (order status backwards, undoing an undone "
    "merge, ...)."
)
class InvalidTransitionError(Error):
    pass


@strawberry.type(description="The API key lacks the scope this operation needs.")
class PermissionDeniedError(Error):
    pass


@strawberry.type(description="One problem found in a rule config document.")
class ConfigProblem:
    path: str = strawberry.field(
        description="Where in the document, e.g. `earning[0].config.points_per_yuan`, "
        "`mall.rewards[2].options.cash` or `$` for the whole document."
    )
    message: str = strawberry.field(description="What is wrong there (English).")


@strawberry.type(
    description="The rule config failed validation; `problems` lists every problem and "
    "nothing was saved."
)
class ConfigInvalidError(Error):
    problems: list[ConfigProblem] = strawberry.field(
        description="Every problem found, in document order."
    )


@strawberry.type(
    description="The member may not do this now: the reward is not offered to their tier, a "
    "limit is reached, it is out of stock or outside its validity window."
)
class NotEligibleError(Error):
    reason: str = strawberry.field(
        description="Stable reason code, e.g. OUT_OF_STOCK, NOT_STARTED, ENDED, "
        "TIER_NOT_ALLOWED, MEMBER_LIMIT, PERIOD_LIMIT, RULE."
    )


@strawberry.type(
    description="recordOrder: a coupon named on the order cannot be used on it, so the whole "
    "order was refused and nothing was written (validate codes first with validateCoupon)."
)
class CouponRefusedError(Error):
    coupon_code: str = strawberry.field(description="The refused code, as given in the input.")
    reason: str = strawberry.field(
        description="Stable reason code, e.g. NOT_FOUND, EXPIRED, ALREADY_REDEEMED, NOT_YOURS, "
        "WRONG_CHANNEL, THRESHOLD_NOT_MET, NOT_STACKABLE (see validateCoupon)."
    )


ERROR_TYPES = (
    NotFoundError,
    InvalidInputError,
    InsufficientBalanceError,
    IdempotencyKeyReusedError,
    HoldNotActiveError,
    InvalidTransitionError,
    PermissionDeniedError,
    ConfigInvalidError,
    NotEligibleError,
    CouponRefusedError,
)

_CAMEL_CACHE: dict[str, str] = {}


def camel(name: str | None) -> str | None:
    """Service errors name fields in snake_case; the API speaks camelCase."""
    if name is None:
        return None
    out = _CAMEL_CACHE.get(name)
    if out is None:
        head, *rest = name.split("_")
        out = head + "".join(p[:1].upper() + p[1:] for p in rest)
        _CAMEL_CACHE[name] = out
    return out


def to_graphql_error(exc: domain.DomainError) -> Error:
    """The typed GraphQL error for a domain exception."""
    msg, code = exc.message, exc.code
    if isinstance(exc, domain.NotFound):
        return NotFoundError(message=msg, code=code, field=camel(exc.details.get("field")))  # type: ignore[arg-type]
    if isinstance(exc, domain.InvalidInput):
        return InvalidInputError(message=msg, code=code, field=camel(exc.field))
    if isinstance(exc, domain.InsufficientBalance):
        return InsufficientBalanceError(
            message=msg, code=code, available=exc.available, requested=exc.requested
        )
    if isinstance(exc, domain.IdempotencyKeyReused):
        return IdempotencyKeyReusedError(message=msg, code=code)
    if isinstance(exc, domain.HoldNotActive):
        return HoldNotActiveError(message=msg, code=code, status=PointsHoldStatus(exc.status))
    if isinstance(exc, domain.InvalidTransition):
        return InvalidTransitionError(message=msg, code=code)
    if isinstance(exc, domain.PermissionDenied):
        return PermissionDeniedError(message=msg, code=code)
    if isinstance(exc, domain.ConfigInvalid):
        return ConfigInvalidError(
            message=msg,
            code=code,
            problems=[ConfigProblem(path=p, message=m) for p, m in exc.problems],
        )
    if isinstance(exc, domain.CouponRefused):
        return CouponRefusedError(
            message=msg, code=code, coupon_code=exc.coupon_code, reason=exc.reason
        )
    if isinstance(exc, domain.NotEligible):
        return NotEligibleError(message=msg, code=code, reason=exc.reason)
    return InvalidInputError(message=msg, code=code, field=None)


def allowed_error(
    exc: domain.DomainError, allowed: tuple[type[Error], ...], err: Error | None = None
) -> Error:
    """``err`` (by default :func:`to_graphql_error` of ``exc``) if the mutation's result union
    declares its type, else a plain ``InvalidInputError`` with the exception's message and code:
    a union must never be handed a member it does not have."""
    if err is None:
        err = to_graphql_error(exc)
    if isinstance(err, allowed):
        return err
    return InvalidInputError(message=exc.message, code=exc.code, field=None)

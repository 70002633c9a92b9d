"""Retrying a whole transaction that PostgreSQL aborted to resolve a conflict.

A deadlock (``40P01``) or a serialization failure (``40001``) means PostgreSQL rolled the
transaction back so that another could go on: running the same transaction again is the
documented remedy, and safe here because every write path is idempotent and a rolled-back
transaction left nothing behind. Such conflicts are rare but real — e.g. two events of one member
committing at the same instant while both issue a coupon (the engine holds the member ``FOR
SHARE`` and coupon issuance upgrades to ``FOR NO KEY UPDATE``).

The error reaches us in two shapes: wrapped by SQLAlchemy (``DBAPIError.orig`` with ``pgcode`` /
``sqlstate``) or raw from asyncpg on the hot paths that talk to the driver directly (``sqlstate``
on the exception itself). :func:`is_transient` understands both and walks the cause chain.
"""

from __future__ import annotations

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})
ATTEMPTS = 4


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error, wrapped or raw; ``None`` for anything else."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for obj in (current, getattr(current, "orig", None)):
            code = getattr(obj, "sqlstate", None) or getattr(obj, "pgcode", None)
            if isinstance(code, str):
                return code
        current = current.__cause__ or current.__context__
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether PostgreSQL aborted the transaction to resolve a conflict (retry it whole)."""
    return sqlstate(exc) in TRANSIENT_SQLSTATES


def transaction_retrying(attempts: int = ATTEMPTS) -> AsyncRetrying:
    """``async for attempt in transaction_retrying(): with attempt: <the whole transaction>``:
    re-runs it after a deadlock or serialization failure (short jittered waits, so the
    conflicting transactions don't collide again in lock step), then re-raises."""
    return AsyncRetrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.02, max=0.5),
        reraise=True,
    )

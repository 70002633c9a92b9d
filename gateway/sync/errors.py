"""Typed connector errors: how a connector tells the runner what went wrong on the platform.

A connector's client maps its platform's error envelope onto these; the runner's retry policy is
written against them, never against a platform's codes:

=====================  ======================================================  =================
error                  meaning                                                 runner does
=====================  ======================================================  =================
``RateLimited``        429 / platform quota / "ban N seconds"                  waits, retries
``TransientError``     5xx, timeouts, truncated bodies, platform "busy"         backs off, retries
``TokenExpired``       the access token expired or was revoked                 refreshes, retries
``AuthFailed``         bad credentials or signature, missing permission        stops, never retries
``PlatformError``      the platform refused the request for a business reason  stops the stream
=====================  ======================================================  =================
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class; ``code`` is the platform's own code (for the run's error list)."""

    retryable = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientError(ConnectorError):
    """Worth retrying with backoff."""

    retryable = True


class RateLimited(TransientError):
    """The platform asked us to slow down; ``retry_after`` seconds when it said how long."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class AuthFailed(ConnectorError):
    """Credentials, signature or permission refused; retrying cannot help."""


class TokenExpired(AuthFailed):
    """The access token is no longer valid; the runner refreshes it once and retries."""


class PlatformError(ConnectorError):
    """A non-retryable refusal (bad argument, window too large, API offline)."""


class ConfigError(ConnectorError):
    """The connection's configuration does not satisfy the connector's config schema."""

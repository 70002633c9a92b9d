"""Outbound HTTP for connectors: one aiohttp session, a rate limiter and the retry policy.

Connectors never retry by hand. They describe a request (``build``, called again for every attempt
so that timestamps and signatures are fresh) and how to read the answer (``parse``, which maps the
platform's envelope onto :mod:`gateway.sync.errors`); :meth:`PlatformHttp.call` does the rest:

- waits for the connection's rate limiter (a token bucket; a platform "ban" pauses it for everyone);
- retries with tenacity on :class:`~gateway.sync.errors.TransientError` (5xx, timeouts, truncated
  bodies, connection resets) with exponential backoff and jitter, and on
  :class:`~gateway.sync.errors.RateLimited` after exactly the wait the platform asked for
  (``Retry-After`` or the ban seconds in its message) — unless that is longer than
  ``RetryPolicy.max_wait``, when the call fails so the run can stop with its bookmarks safe;
- on :class:`~gateway.sync.errors.TokenExpired` refreshes the token once and tries again;
- never retries :class:`~gateway.sync.errors.AuthFailed` or
  :class:`~gateway.sync.errors.PlatformError`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from gateway.sync.errors import (
    AuthFailed,
    RateLimited,
    TokenExpired,
    TransientError,
)

log = logging.getLogger("memberhub.sync.http")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Tests shrink the waits; production keeps the defaults."""

    attempts: int = 6
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_wait: float = 300.0
    timeout: float = 30.0


@dataclass(frozen=True)
class Request:
    """One HTTP request as a connector describes it."""

    method: str
    url: str
    params: Mapping[str, str] | None = None
    data: Mapping[str, str] | bytes | str | None = None
    json_body: Any = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON; a truncated or non-JSON body is a transient failure (retry)."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise TransientError(
                f"malformed or truncated response body ({len(self.body)} bytes)"
            ) from exc


class RateLimiter:
    """Token bucket: ``rate`` requests per second with bursts of ``burst``; :meth:`pause` makes
    every caller wait (a platform-wide ban applies to the app, not to one request)."""

    def __init__(self, rate: float, burst: int | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = float(burst if burst is not None else max(1, int(rate)))
        self._tokens = self.capacity
        self._last = time.monotonic()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)
                    continue
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)


@dataclass
class HttpStats:
    """Counters a run reports (requests made, retries and why)."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    transient: int = 0
    token_refreshes: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "transient": self.transient,
            "token_refreshes": self.token_refreshes,
        }


@dataclass
class PlatformHttp:
    """The HTTP side of one connection (one connector instance)."""

    limiter: RateLimiter
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    stats: HttpStats = field(default_factory=HttpStats)
    _session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout),
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return exc.retry_after
        base = min(self.policy.max_backoff, self.policy.backoff * 2 ** (state.attempt_number - 1))
        return base * (0.5 + random.random() / 2)

    def _retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, RateLimited):
            if exc.retry_after is not None and exc.retry_after > self.policy.max_wait:
                return False
            return True
        return isinstance(exc, TransientError)

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        self.stats.retries += 1
        if isinstance(exc, RateLimited):
            self.stats.rate_limited += 1
            if exc.retry_after:
                self.limiter.pause(exc.retry_after)
        else:
            self.stats.transient += 1
        self.stats.last_error = str(exc)
        log.info("retrying after %s (attempt %d)", exc, state.attempt_number)

    async def _send(self, req: Request) -> Response:
        await self.limiter.acquire()
        self.stats.requests += 1
        try:
            async with self.session.request(
                req.method,
                req.url,
                params=req.params,
                data=req.data,
                json=req.json_body,
                headers=req.headers,
            ) as resp:
                body = await resp.read()
                headers = {k.lower(): v for k, v in resp.headers.items()}
                status = resp.status
        except TimeoutError as exc:
            raise TransientError(f"timed out after {self.policy.timeout}s") from exc
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise TransientError(f"connection failed: {exc.__class__.__name__}") from exc
        if status == 429:
            raise RateLimited("HTTP 429", retry_after=_retry_after(headers), code="429")
        if status >= 500:
            raise TransientError(f"HTTP {status}", code=str(status))
        return Response(status, headers, body)

    async def call(
        self,
        build: Callable[[], Request],
        parse: Callable[[Response], Any],
        *,
        refresh: Callable[[], Awaitable[None]] | None = None,
    ) -> Any:
        """Send ``build()`` and return ``parse(response)``, retrying per the policy."""
        refreshed = False
        while True:
            try:
                async for attempt in AsyncRetrying(
                    retry=retry_if_exception(self._retryable),
                    wait=self._wait,
                    stop=stop_after_attempt(self.policy.attempts),
                    before_sleep=self._before_sleep,
                    reraise=True,
                ):
                    with attempt:
                        return parse(await self._send(build()))
            except TokenExpired:
                if refresh is None or refreshed:
                    raise
                refreshed = True
                self.stats.token_refreshes += 1
                await refresh()
            except AuthFailed:
                raise
        raise AssertionError("unreachable")  # pragma: no cover


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None

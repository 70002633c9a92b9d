"""Base for fake platform servers: a real aiohttp server on 127.0.0.1 with fault injection.

Each built-in connector ships a subclass (``connectors/<channel>/fake.py``) that speaks its
platform's wire format: it verifies signatures exactly like the platform, answers with the
platform's real error envelopes (bad signature, expired token, clock skew, rate limit with ban
seconds) and reproduces its pagination quirks. Tests, the demo, the benchmark and the conformance
kit all run against these.

:class:`Faults` injects failures on demand, deterministically (seeded): a fraction ``rate`` of
API calls fail with one of ``kinds``:

- ``"429"``       the platform's rate-limit answer (subclass: :meth:`FakePlatform.rate_limited`);
- ``"5xx"``       HTTP 502/503 with an HTML body, as a load balancer answers;
- ``"timeout"``   the answer is delayed past the client's timeout;
- ``"truncated"`` the real answer, cut in half;
- ``"duplicate"`` for paged APIs: the page is served again in place of the next one (the
  subclass consults :meth:`FakePlatform.duplicate_page`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from connectors.testing.world import World

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ALL_FAULTS = ("429", "5xx", "timeout", "truncated", "duplicate")


@dataclass
class Faults:
    rate: float = 0.0
    kinds: Sequence[str] = ALL_FAULTS
    seed: int = 1
    timeout_delay: float = 1.0
    ban_seconds: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    injected: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)

    def pick(self) -> str | None:
        if self.rate <= 0 or self._rng.random() >= self.rate:
            return None
        kind = self._rng.choice(list(self.kinds))
        self.injected[kind] = self.injected.get(kind, 0) + 1
        return kind


@dataclass
class Call:
    path: str
    method: str
    api: str
    fault: str | None
    status: int


class FakePlatform:
    """Subclasses set ``name`` and implement :meth:`routes` and :meth:`rate_limited`."""

    name = "fake"

    def __init__(
        self,
        world: World,
        *,
        app_key: str = "test-app",
        app_secret: str = "test-secret",
        access_token: str = "test-token",
        refresh_token: str = "test-refresh",
        faults: Faults | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.world = world
        self.app_key = app_key
        self.app_secret = app_secret
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.faults = faults or Faults()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.calls: list[Call] = []
        self._pending_duplicate: str | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.tokens_issued = 0

    # -- subclass API -------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def rate_limited(self, ban_seconds: int) -> web.Response:
        """The platform's own rate-limit answer."""
        return web.json_response({"error": "rate limited"}, status=429)

    def api_name(self, request: web.Request) -> str:
        """What the call log records as the API called (method name, path)."""
        return request.path

    def is_api_call(self, request: web.Request) -> bool:
        """Only API calls get faults (not token endpoints the test drives itself)."""
        return True

    def duplicate_page(self, key: str) -> bool:
        """For paged handlers: ``True`` when this page should be served again in place of the
        next one (``key`` identifies the page sequence, e.g. the query window)."""
        if self._pending_duplicate == key:
            self._pending_duplicate = None
            return True
        return False

    # -- token helpers ------------------------------------------------------------------------

    def expire_token(self) -> None:
        """Make the current access token invalid (the platform's token-expired error follows
        until the client refreshes)."""
        self.access_token = f"expired-{self.access_token}"

    def issue_token(self) -> str:
        self.tokens_issued += 1
        self.access_token = f"tok{self.tokens_issued}-{self.app_key}"
        return self.access_token

    # -- server -------------------------------------------------------------------------------

    @web.middleware
    async def _faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        api = self.api_name(request)
        fault = self.faults.pick() if self.is_api_call(request) else None
        status = 200
        try:
            if fault == "429":
                resp: web.StreamResponse = self.rate_limited(self.faults.ban_seconds)
            elif fault == "5xx":
                resp = web.Response(
                    status=random.choice((502, 503)),
                    text="<html><body>Bad Gateway</body></html>",
                    content_type="text/html",
                )
            elif fault == "timeout":
                await asyncio.sleep(self.faults.timeout_delay)
                resp = await handler(request)
            elif fault == "truncated":
                resp = await handler(request)
                if isinstance(resp, web.Response) and resp.body:
                    body = bytes(resp.body)  # type: ignore[arg-type]
                    resp = web.Response(
                        status=resp.status,
                        body=body[: len(body) // 2],
                        content_type=resp.content_type,
                    )
            elif fault == "duplicate":
                self._pending_duplicate = self.page_key(request)
                resp = await handler(request)
            else:
                resp = await handler(request)
            status = resp.status
            return resp
        finally:
            self.calls.append(Call(request.path, request.method, api, fault, status))

    def page_key(self, request: web.Request) -> str:
        """Identifies a page sequence for the ``duplicate`` fault (subclasses refine it)."""
        return request.path

    async def start(self) -> FakePlatform:
        app = web.Application(middlewares=[self._faults], client_max_size=32 * 1024**2)
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakePlatform:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api_calls(self, api: str | None = None) -> list[Call]:
        return [c for c in self.calls if api is None or c.api == api]

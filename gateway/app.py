"""The ASGI application: ``/graphql`` (a ``Route``), ``/healthz``, ``/readyz`` and the channel
push endpoints ``/channels/{tenant}/{channel}/hooks/{name}`` (see :mod:`gateway.sync.webhooks`;
those authenticate by the platform's signature, not by an API key) and the points mall's payment
callback ``/mall/{tenant}/payments`` (:mod:`gateway.mall.payments`, signed per tenant).

``/graphql`` is mounted with :class:`~starlette.routing.Route`, not ``Mount``: a ``Mount`` answers
``POST /graphql`` with a 307 redirect to ``/graphql/``, which clients and load tools mishandle.

Authentication happens before GraphQL runs: ``Authorization: Bearer <key>`` is verified (through
the hub's 30-second cache of verified keys — a revoked key keeps working for at most that long on
each worker) and the principal becomes the request context. Missing or invalid keys get HTTP 401
with a JSON body. ``GET /graphql`` from a browser serves GraphiQL without a key so people can paste
theirs into the headers pane.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from strawberry.asgi import GraphQL

from gateway.hub import Hub
from gateway.ledger import configure as configure_ledger
from gateway.settings import Settings
from gateway.storage.db import Database
from gateway.tenancy import current_principal
from schema import build_schema
from schema.context import RequestContext

_UNAUTHORIZED = {
    "errors": [
        {
            "message": "missing or invalid API key: send 'Authorization: Bearer mhk_…'",
            "extensions": {"code": "UNAUTHENTICATED"},
        }
    ]
}


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _wants_graphiql(request: Request) -> bool:
    """Same rule Strawberry uses to decide to render the IDE."""
    if request.method != "GET" or "query" in request.query_params:
        return False
    accept = request.headers.get("accept", "")
    return "text/html" in accept or "*/*" in accept


async def _current_revision(hub: Hub) -> str | None:
    async with hub.db.engine.connect() as conn:
        row = (await conn.execute(text("SELECT version_num FROM alembic_version"))).first()
    return None if row is None else str(row[0])


def _head_revision() -> str:
    from alembic.script import ScriptDirectory

    from gateway.storage.migrate import alembic_config

    return str(ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head())


def create_app(
    settings: Settings | None = None,
    database: Database | None = None,
    *,
    hub: Hub | None = None,
) -> Starlette:
    """Build the app. Pass a ``database`` (tests, benchmarks) to share an engine; otherwise the
    lifespan creates one from ``settings`` and disposes it at shutdown."""
    if hub is None:
        settings = settings or Settings.from_env()
        hub = Hub(settings, database)
    owns_db = database is None
    settings = hub.settings
    configure_ledger(settings)
    view = GraphQL(
        build_schema(settings),
        graphql_ide="graphiql" if settings.graphiql else None,
        allow_queries_via_get=True,
    )
    head = _head_revision()

    async def graphql(request: Request) -> Response:
        if _wants_graphiql(request):
            return await view.run(request, context=None)
        key = _bearer(request)
        principal = None if key is None else await hub.authenticate(key)
        if principal is None:
            return JSONResponse(
                _UNAUTHORIZED, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        ctx = RequestContext(hub, principal)
        token = current_principal.set(principal)
        try:
            return await view.run(request, context=ctx)
        finally:
            current_principal.reset(token)
            await ctx.close()

    async def channel_hook(request: Request) -> Response:
        from gateway.sync.webhooks import handle

        return await handle(hub, request)

    async def mall_payment(request: Request) -> Response:
        from gateway.mall.payments import handle as handle_payment

        return await handle_payment(hub, request)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        try:
            revision = await _current_revision(hub)
        except Exception as exc:  # any database failure means "not ready", never a 500
            return JSONResponse(
                {"status": "unavailable", "database": type(exc).__name__}, status_code=503
            )
        if revision != head:
            return JSONResponse(
                {"status": "migrations pending", "revision": revision, "head": head},
                status_code=503,
            )
        return JSONResponse({"status": "ready", "revision": revision})

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        _ = hub.rules  # discover rule plugins at start-up, not on the first paid order
        try:
            yield {}
        finally:
            if owns_db:
                await hub.close()

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route(
                "/channels/{tenant}/{channel}/hooks/{name}",
                channel_hook,
                methods=["GET", "POST"],
            ),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/mall/{tenant}/payments", mall_payment, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.hub = hub
    return app

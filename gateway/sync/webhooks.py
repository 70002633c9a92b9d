"""Inbound platform pushes: ``/channels/{tenant}/{channel}/hooks/{name}``.

The URL names the tenant (slug or id) and the channel connection; the connector's webhook
(registered with the ``register_webhooks`` hook) verifies the platform's signature with *that
connection's* secrets before it reads the body, then applies records through the same path as a
pull sync. Anything unknown — tenant, channel, hook — answers 404 without saying which part was
wrong, so the endpoint cannot be used to probe which brands exist. Unexpected failures answer 500
with no detail (the platform retries; records are idempotent).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.errors import DomainError
from gateway.identity.model import IdentifierInput
from gateway.sync.apply import REJECTABLE, apply_records, lookup
from gateway.sync.errors import ConfigError
from gateway.sync.hookspecs import WebhookRequest
from gateway.sync.push import ApplyOutcome, MemberView
from gateway.sync.records import Record
from gateway.tenants import get_tenant

if TYPE_CHECKING:
    import uuid

    from gateway.hub import Hub

log = logging.getLogger("memberhub.sync.webhooks")
MAX_BODY = 4 * 1024 * 1024


class HubPushContext:
    """A :class:`~gateway.sync.push.PushContext` bound to one tenant's channel."""

    def __init__(self, hub: Hub, tenant_id: uuid.UUID, channel: str) -> None:
        self.hub = hub
        self.tenant_id = tenant_id
        self.channel = channel

    async def apply(self, records: Sequence[Record]) -> list[ApplyOutcome]:
        key = self.hub.tenant_key(self.tenant_id)
        for isolate in (False, True):
            try:
                async with self.hub.db.tenant_tx(self.tenant_id) as tx:
                    return await apply_records(
                        tx,
                        list(records),
                        channel=self.channel,
                        key=key,
                        rules=self.hub.rules,
                        isolate=isolate,
                    )
            except REJECTABLE:
                if isolate:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def lookup(self, identifiers: Sequence[IdentifierInput]) -> MemberView | None:
        async with self.hub.db.tenant_tx(self.tenant_id, write=False) as tx:
            return await lookup(tx, identifiers, self.hub.tenant_key(self.tenant_id))


def _not_found() -> Response:
    return JSONResponse({"error": "not found"}, status_code=404)


async def handle(hub: Hub, request: Request) -> Response:
    tenant_ref = request.path_params["tenant"]
    channel = request.path_params["channel"]
    name = request.path_params["name"]
    tenant = await get_tenant(hub.db, tenant_ref)
    if tenant is None:
        return _not_found()
    runner = hub.sync
    try:
        connector = await runner.build(tenant.id, channel)
    except (DomainError, ConfigError):
        return _not_found()
    try:
        hook = runner.registry.webhook(connector.name, name)
        if hook is None:
            return _not_found()
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": "body too large"}, status_code=413)
        req = WebhookRequest(
            method=request.method,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        try:
            reply = await hook.handler(connector, req, HubPushContext(hub, tenant.id, channel))
        except Exception:
            log.exception("webhook %s/%s of %s failed", channel, name, tenant.slug)
            return JSONResponse({"error": "internal error"}, status_code=500)
        return Response(
            content=reply.body,
            status_code=reply.status,
            media_type=reply.content_type,
            headers=dict(reply.headers),
        )
    finally:
        await connector.close()

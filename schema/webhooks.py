"""GraphQL for signed webhooks (admin keys only): subscriptions, their deliveries, replay.

The signing secret is returned once, by ``createWebhookSubscription``; it is stored sealed and no
query ever shows it again. Another tenant's subscription is indistinguishable from a missing one.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Union

import strawberry
from strawberry.types import Info

from gateway.errors import DomainError, InvalidInput, NotFound
from gateway.storage.types import utcnow
from gateway.webhooks import dispatch, subscriptions
from schema.context import RequestContext, ctx_of
from schema.errors import (
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    allowed_error,
)
from schema.relay import (
    Connection,
    build_connection,
    check_first,
    decode_cursor,
    decode_id,
    encode_cursor,
    global_id,
)


@strawberry.enum(
    description="Where a webhook delivery is: PENDING (waiting or retrying), DELIVERED (the "
    "receiver answered 2xx), DEAD (gave up after the maximum attempts; replay it)."
)
class WebhookDeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@strawberry.type(description="A receiver of signed member-event webhooks.")
class WebhookSubscription:
    row: strawberry.Private[subscriptions.Subscription]

    @strawberry.field(description="Global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(global_id("WebhookSubscription", self.row.id))

    @strawberry.field(description="Where deliveries are POSTed.")
    def url(self) -> str:
        return self.row.url

    @strawberry.field(
        description="Event types delivered: exact (`order.paid`), prefixes (`tier.*`) or `*`."
    )
    def event_types(self) -> list[str]:
        return list(self.row.event_types)

    @strawberry.field(description="Free text (what the receiver is).")
    def description(self) -> str:
        return self.row.description

    @strawberry.field(description="Inactive subscriptions neither collect nor send events.")
    def active(self) -> bool:
        return self.row.active

    @strawberry.field(description="When it was created; only later events are delivered.")
    def created_at(self) -> datetime:
        return self.row.created_at


@strawberry.type(description="One member event sent (or to be sent) to one subscription.")
class WebhookDelivery:
    row: strawberry.Private[dispatch.Delivery]

    @strawberry.field(description="The delivery id (header `X-Memberhub-Delivery`, stable).")
    def id(self) -> str:
        return str(self.row.id)

    @strawberry.field(description="The member event's id (`id` in the body).")
    def event_id(self) -> str:
        return str(self.row.event_id)

    @strawberry.field(description="The event type (header `X-Memberhub-Event`).")
    def event_type(self) -> str:
        return self.row.event_type

    @strawberry.field(description="The member the event is about.")
    def member_id(self) -> strawberry.ID:
        return strawberry.ID(global_id("Member", self.row.member_id))

    @strawberry.field(description="Where the delivery is.")
    def status(self) -> WebhookDeliveryStatus:
        return WebhookDeliveryStatus(self.row.status)

    @strawberry.field(description="Attempts made in the current cycle (a replay resets it).")
    def attempts(self) -> int:
        return self.row.attempts

    @strawberry.field(description="When the next attempt is due (while PENDING).")
    def next_attempt_at(self) -> datetime:
        return self.row.next_attempt_at

    @strawberry.field(description="HTTP status of the last attempt (null: none or no answer).")
    def last_status(self) -> int | None:
        return self.row.last_status

    @strawberry.field(description="Why the last attempt failed (null after a success).")
    def last_error(self) -> str | None:
        return self.row.last_error

    @strawberry.field(description="When the event was recorded (deliveries are ordered by it).")
    def event_created_at(self) -> datetime:
        return self.row.event_created_at

    @strawberry.field(description="When the delivery was created (fan-out).")
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field(description="Last change of the delivery.")
    def updated_at(self) -> datetime:
        return self.row.updated_at

    @strawberry.field(description="When the receiver accepted it (null unless DELIVERED).")
    def delivered_at(self) -> datetime | None:
        return self.row.delivered_at


def _admin(info: Info) -> RequestContext:
    ctx = ctx_of(info)
    ctx.require()  # admin only: subscriptions expose where member data goes
    return ctx


def _cursor(d: dispatch.Delivery) -> str:
    return encode_cursor("webhookdelivery", f"{d.event_created_at.isoformat()}|{d.id}")


def _decode_after(after: str | None) -> tuple[datetime, uuid.UUID] | None:
    value = decode_cursor("webhookdelivery", after)
    if value is None:
        return None
    try:
        at, _, raw = value.partition("|")
        return datetime.fromisoformat(at), uuid.UUID(raw)
    except ValueError as exc:
        raise InvalidInput("after is not a cursor from this connection", field="after") from exc


@strawberry.type
class WebhookQueries:
    @strawberry.field(description="This tenant's webhook subscriptions. Scope: admin.")
    async def webhook_subscriptions(self, info: Info) -> list[WebhookSubscription]:
        ctx = _admin(info)
        rows = await ctx.read(subscriptions.list_subscriptions)
        return [WebhookSubscription(row=r) for r in rows]

    @strawberry.field(
        description="Deliveries of a subscription, newest event first (empty for an unknown "
        "or another tenant's subscription). Scope: admin."
    )
    async def webhook_deliveries(
        self,
        info: Info,
        subscription_id: Annotated[
            strawberry.ID, strawberry.argument(description="A WebhookSubscription id.")
        ],
        status: Annotated[
            WebhookDeliveryStatus | None, strawberry.argument(description="Only this status.")
        ] = None,
        first: Annotated[int, strawberry.argument(description="Page size, 0-100.")] = 20,
        after: Annotated[
            str | None, strawberry.argument(description="Cursor of the previous page's end.")
        ] = None,
    ) -> Connection[WebhookDelivery]:
        ctx = _admin(info)
        check_first(first)
        position = _decode_after(after)
        sid = decode_id(subscription_id, "WebhookSubscription")
        rows: list[dispatch.Delivery] = []
        if sid is not None:
            rows = await ctx.read(
                dispatch.list_deliveries,
                sid,
                status=status.value if status is not None else None,
                first=first,
                after=position,
            )
        return build_connection(
            rows,
            first,
            wrap=lambda r: WebhookDelivery(row=r),  # type: ignore[arg-type]
            cursor_of=lambda r: _cursor(r),  # type: ignore[arg-type]
            has_previous=after is not None,
        )


@strawberry.input(description="Subscribe a receiver to member events.")
class CreateWebhookSubscriptionInput:
    url: str = strawberry.field(description="An absolute http(s) URL that accepts POST.")
    event_types: list[str] = strawberry.field(
        description="Event types: exact (`order.paid`), prefixes (`tier.*`) or `*` for all."
    )
    description: str = strawberry.field(default="", description="Free text, at most 200.")


@strawberry.input(description="Stop a subscription (its deliveries are kept).")
class DeactivateWebhookSubscriptionInput:
    id: strawberry.ID = strawberry.field(description="The WebhookSubscription id.")


@strawberry.input(
    description="Send delivered or dead deliveries again (a fresh attempt cycle, in order per "
    "member). Give `since`, `eventIds` or both."
)
class ReplayWebhookDeliveriesInput:
    subscription_id: strawberry.ID = strawberry.field(description="The WebhookSubscription id.")
    since: datetime | None = strawberry.field(
        default=None, description="Events recorded at or after this instant."
    )
    event_ids: list[str] | None = strawberry.field(
        default=None, description="Only these member event ids."
    )


@strawberry.type(description="The new subscription and its signing secret.")
class CreateWebhookSubscriptionPayload:
    subscription: WebhookSubscription = strawberry.field(description="The subscription.")
    secret: str = strawberry.field(
        description="The signing secret (`whsec_…`), shown this once: receivers verify "
        "`X-Memberhub-Signature` with it."
    )


@strawberry.type(description="The deactivated subscription.")
class DeactivateWebhookSubscriptionPayload:
    subscription: WebhookSubscription = strawberry.field(description="The subscription.")


@strawberry.type(description="How many deliveries were put back to PENDING.")
class ReplayWebhookDeliveriesPayload:
    replayed: int = strawberry.field(description="Deliveries reset to PENDING.")


WEBHOOK_ERRORS = (NotFoundError, InvalidInputError, PermissionDeniedError)
CreateWebhookSubscriptionResult = Annotated[
    Union[CreateWebhookSubscriptionPayload, *WEBHOOK_ERRORS],  # type: ignore[valid-type]
    strawberry.union(
        "CreateWebhookSubscriptionResult", description="createWebhookSubscription result."
    ),
]
DeactivateWebhookSubscriptionResult = Annotated[
    Union[DeactivateWebhookSubscriptionPayload, *WEBHOOK_ERRORS],  # type: ignore[valid-type]
    strawberry.union(
        "DeactivateWebhookSubscriptionResult",
        description="deactivateWebhookSubscription result.",
    ),
]
ReplayWebhookDeliveriesResult = Annotated[
    Union[ReplayWebhookDeliveriesPayload, *WEBHOOK_ERRORS],  # type: ignore[valid-type]
    strawberry.union(
        "ReplayWebhookDeliveriesResult", description="replayWebhookDeliveries result."
    ),
]


def _error(exc: DomainError) -> Any:
    return allowed_error(exc, WEBHOOK_ERRORS)


def _sub_id(raw: strawberry.ID, field: str) -> uuid.UUID:
    sid = decode_id(raw, "WebhookSubscription")
    if sid is None:
        raise NotFound("webhook subscription not found", field=field)
    return sid


@strawberry.type
class WebhookMutations:
    @strawberry.mutation(
        description="Subscribe a receiver; returns the signing secret once. Scope: admin."
    )
    async def create_webhook_subscription(
        self, info: Info, input: CreateWebhookSubscriptionInput
    ) -> CreateWebhookSubscriptionResult:
        ctx = ctx_of(info)
        try:
            ctx.require()
            async with ctx.hub.db.tenant_tx(ctx.tenant_id) as tx:
                sub, secret = await subscriptions.create(
                    tx,
                    url=input.url,
                    event_types=input.event_types,
                    description=input.description,
                    master=ctx.hub.settings.secret_key,
                )
        except DomainError as exc:
            return _error(exc)
        await ctx.after_write()
        return CreateWebhookSubscriptionPayload(
            subscription=WebhookSubscription(row=sub), secret=secret
        )

    @strawberry.mutation(description="Stop a subscription (idempotent). Scope: admin.")
    async def deactivate_webhook_subscription(
        self, info: Info, input: DeactivateWebhookSubscriptionInput
    ) -> DeactivateWebhookSubscriptionResult:
        ctx = ctx_of(info)
        try:
            ctx.require()
            sid = _sub_id(input.id, "id")
            async with ctx.hub.db.tenant_tx(ctx.tenant_id) as tx:
                sub = await subscriptions.deactivate(tx, sid)
        except DomainError as exc:
            return _error(exc)
        await ctx.after_write()
        return DeactivateWebhookSubscriptionPayload(subscription=WebhookSubscription(row=sub))

    @strawberry.mutation(
        description="Put delivered or dead deliveries back to PENDING. Scope: admin."
    )
    async def replay_webhook_deliveries(
        self, info: Info, input: ReplayWebhookDeliveriesInput
    ) -> ReplayWebhookDeliveriesResult:
        ctx = ctx_of(info)
        try:
            ctx.require()
            sid = _sub_id(input.subscription_id, "subscriptionId")
            if input.since is None and input.event_ids is None:
                raise InvalidInput("give since, eventIds or both", field="since")
            event_ids = None
            if input.event_ids is not None:
                try:
                    event_ids = [uuid.UUID(e) for e in input.event_ids]
                except ValueError as exc:
                    raise InvalidInput(
                        "eventIds must be member event ids", field="eventIds"
                    ) from exc
            async with ctx.hub.db.tenant_tx(ctx.tenant_id) as tx:
                count = await dispatch.replay(
                    tx, sid, since=input.since, event_ids=event_ids, now=utcnow()
                )
        except DomainError as exc:
            return _error(exc)
        await ctx.after_write()
        return ReplayWebhookDeliveriesPayload(replayed=count)

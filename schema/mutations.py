"""Mutations: one ``input`` each, a result union of a payload and typed errors.

Every write runs in ONE tenant transaction that also claims the client's idempotency key
(:mod:`gateway.idempotency`). A domain error rolls everything back — nothing half-written, the key
freed — and becomes a union member. The stored result holds only the typename, flags and ids, so
a first answer and a replay are built by the same code and always re-read the objects.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Union

import strawberry
from strawberry.types import Info

from gateway import idempotency, ledger, members, orders
from gateway.errors import DomainError, InvalidInput, NotFound
from gateway.storage.db import Tx
from gateway.storage.retry import transaction_retrying
from gateway.tags.scene import JoinScene
from gateway.tenancy import Scope
from schema.context import RequestContext, ctx_of
from schema.coupons import CouponDiscount, CouponKind, CouponMutations
from schema.enums import OrderStatus
from schema.errors import (
    CouponRefusedError,
    Error,
    HoldNotActiveError,
    IdempotencyKeyReusedError,
    InsufficientBalanceError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    PermissionDeniedError,
    allowed_error,
)
from schema.inputs import (
    AdjustPointsInput,
    CapturePointsHoldInput,
    HoldPointsInput,
    MergeMembersInput,
    RecordOrderInput,
    RefundOrderInput,
    ReleasePointsHoldInput,
    UnmergeMembersInput,
    UpsertMemberInput,
)
from schema.loaders import peek
from schema.mall import MallMutations
from schema.relay import decode_id, global_id
from schema.rules import RulesMutations
from schema.segments import SegmentMutations
from schema.sync import SyncMutations
from schema.types import Member, Merge, Order, PointsHold, PointsTransfer, then
from schema.webhooks import WebhookMutations

MAX_IDENTIFIERS = 50
WRITE = (Scope.POS, Scope.CONNECTOR)
HOLDS = (Scope.POS,)
ADMIN: tuple[Scope, ...] = ()

Result = dict[str, Any]
Execute = Callable[[Tx, str], Awaitable[Result]]


def _uuid(raw: str | None, type_name: str, field: str) -> uuid.UUID:
    value = decode_id(raw, type_name)
    if value is None:
        raise NotFound(f"no {type_name} with this id", field=field)
    return value


def _canonical_input(inp: object) -> dict[str, Any]:
    data = dataclasses.asdict(inp)  # type: ignore[call-overload]
    data.pop("idempotency_key", None)
    return data


async def _run(
    info: Info,
    *,
    operation: str,
    scopes: tuple[Scope, ...],
    inp: Any,
    execute: Execute,
    allowed: tuple[type[Error], ...],
) -> tuple[RequestContext, Result | Error]:
    """Permission check, idempotency claim, the write, and error mapping — for every mutation."""
    ctx = ctx_of(info)
    try:
        ctx.require(*scopes)
        key = idempotency.check_key(inp.idempotency_key)
        fingerprint = idempotency.request_hash(operation, _canonical_input(inp))
        # A deadlock or serialization failure rolled everything back: run it again, whole.
        async for attempt in transaction_retrying():
            with attempt:
                async with ctx.hub.db.tenant_tx(ctx.tenant_id) as tx:
                    stored = None
                    if key is not None:
                        stored = await idempotency.claim(
                            tx, operation=operation, key=key, request_fingerprint=fingerprint
                        )
                    if stored is not None:
                        result = stored
                    else:
                        result = await execute(tx, idempotency.ledger_key(operation, key))
                        if key is not None:
                            await idempotency.store(tx, key=key, result=result)
    except DomainError as exc:
        return ctx, allowed_error(exc, allowed)
    await ctx.after_write()
    return ctx, result


def _member(ctx: RequestContext, member_id: uuid.UUID | None) -> Any:
    if member_id is None:
        return None
    return then(
        peek(ctx.loaders.member, member_id),
        lambda row: None if row is None else Member.from_row(row, ctx),
    )


async def _resolve_member(tx: Tx, raw: str, field: str) -> uuid.UUID:
    """An id from the input → this tenant's active member (merged ids follow their survivor)."""
    mid = await members.resolve(tx, _uuid(raw, "Member", field), lock=True)
    if mid is None:
        raise NotFound("no Member with this id", field=field)
    return mid


COMMON: tuple[type[Error], ...] = (
    NotFoundError,
    InvalidInputError,
    IdempotencyKeyReusedError,
    PermissionDeniedError,
)


# ---- payloads --------------------------------------------------------------------------------


@strawberry.type(description="The member a channel record resolved to.")
class UpsertMemberPayload:
    created: bool = strawberry.field(description="True when a new member was created.")
    merged_ids: list[strawberry.ID] = strawberry.field(
        description="Members merged into this one by this record (they now resolve to it)."
    )
    member_id: strawberry.Private[uuid.UUID]
    ctx: strawberry.Private[RequestContext]

    @strawberry.field(description="The (surviving) member.")
    def member(self) -> Member | None:
        return _member(self.ctx, self.member_id)  # type: ignore[no-any-return]


@strawberry.type(description="The recorded order.")
class RecordOrderPayload:
    created: bool = strawberry.field(description="True when the order was new.")
    status_changed: bool = strawberry.field(description="True when its status moved forward.")
    coupons: list[CouponDiscount] = strawberry.field(
        description="What each coupon given in the input took off (replayed on a re-send)."
    )
    order_id: strawberry.Private[uuid.UUID]
    ctx: strawberry.Private[RequestContext]

    @strawberry.field(description="The order as stored now.")
    async def order(self) -> Order | None:
        row = await self.ctx.loaders.order.load(self.order_id)
        return None if row is None else Order.from_row(row, self.ctx)


@strawberry.type(description="Amount per ledger account.")
class AccountAmount:
    account: str = strawberry.field(description="Ledger account.")
    amount: int = strawberry.field(description="Amount.")


@strawberry.type(description="The refund and what it reversed.")
class RefundOrderPayload:
    refund_id: str = strawberry.field(description="The refund id.")
    amount_fen: int = strawberry.field(description="Refunded amount in fen.")
    status: OrderStatus = strawberry.field(description="Order status after the refund.")
    reversed: list[AccountAmount] = strawberry.field(
        description="Points / growth taken back from the member, per account."
    )
    shortfall: list[AccountAmount] = strawberry.field(
        description="What could not be taken back because the member had already spent it."
    )
    returned_coupons: list[str] = strawberry.field(
        description="Codes of the coupons given back because this refund completed a full "
        "refund (only those whose template allows it; a partial refund keeps them)."
    )
    order_id: strawberry.Private[uuid.UUID]
    ctx: strawberry.Private[RequestContext]

    @strawberry.field(description="The order as stored now.")
    async def order(self) -> Order | None:
        row = await self.ctx.loaders.order.load(self.order_id)
        return None if row is None else Order.from_row(row, self.ctx)


@strawberry.type(description="The ledger line written by an adjustment.")
class AdjustPointsPayload:
    transfer_id: strawberry.Private[uuid.UUID]
    member_id: strawberry.Private[uuid.UUID]
    ctx: strawberry.Private[RequestContext]

    @strawberry.field(description="The ledger line.")
    async def transfer(self) -> PointsTransfer | None:
        t = await self.ctx.loaders.transfer.load(self.transfer_id)
        return None if t is None else PointsTransfer.from_result(t)

    @strawberry.field(description="The member, with fresh balances.")
    def member(self) -> Member | None:
        return _member(self.ctx, self.member_id)  # type: ignore[no-any-return]


@strawberry.type(description="A hold after placing, capturing or releasing it.")
class PointsHoldPayload:
    hold_id: strawberry.Private[uuid.UUID]
    member_id: strawberry.Private[uuid.UUID]
    transfer_id: strawberry.Private[uuid.UUID | None]
    ctx: strawberry.Private[RequestContext]

    @strawberry.field(description="The hold.")
    async def hold(self) -> PointsHold | None:
        h = await self.ctx.loaders.hold.load(self.hold_id)
        return None if h is None else PointsHold.from_result(h, self.ctx)

    @strawberry.field(description="The spend written by a capture (null otherwise).")
    async def transfer(self) -> PointsTransfer | None:
        if self.transfer_id is None:
            return None
        t = await self.ctx.loaders.transfer.load(self.transfer_id)
        return None if t is None else PointsTransfer.from_result(t)

    @strawberry.field(description="The member, with fresh balances.")
    def member(self) -> Member | None:
        return _member(self.ctx, self.member_id)  # type: ignore[no-any-return]


@strawberry.type(description="A merge or unmerge and both members.")
class MergePayload:
    merge_id: strawberry.Private[uuid.UUID]
    survivor_id: strawberry.Private[uuid.UUID]
    loser_id: strawberry.Private[uuid.UUID]
    ctx: strawberry.Private[RequestContext]

    @strawberry.field(description="The merge record.")
    async def merge(self) -> Merge | None:
        infos = await self.ctx.loaders.merges.load(self.survivor_id)
        for m in infos:
            if m.id == self.merge_id:
                return Merge.from_info(m, self.ctx)
        return None

    @strawberry.field(description="The member that absorbed the other.")
    def survivor(self) -> Member | None:
        return _member(self.ctx, self.survivor_id)  # type: ignore[no-any-return]

    @strawberry.field(description="The member merged away (or restored by unmerge).")
    def loser(self) -> Member | None:
        return _member(self.ctx, self.loser_id)  # type: ignore[no-any-return]


def _union(name: str, payload: type, errors: tuple[type[Error], ...], doc: str) -> Any:
    return Annotated[
        Union[payload, *errors],  # type: ignore[valid-type]
        strawberry.union(name, description=doc),
    ]


UPSERT_ERRORS = (*COMMON, InvalidTransitionError)
ORDER_ERRORS = (*COMMON, InvalidTransitionError)
ADJUST_ERRORS = (*COMMON, InsufficientBalanceError)
HOLD_ERRORS = (*COMMON, InsufficientBalanceError)
RESOLVE_HOLD_ERRORS = (*COMMON, HoldNotActiveError, InsufficientBalanceError)
MERGE_ERRORS = (*COMMON, InvalidTransitionError)

UpsertMemberResult = _union(
    "UpsertMemberResult", UpsertMemberPayload, UPSERT_ERRORS, "upsertMember result."
)
RECORD_ORDER_ERRORS = (*ORDER_ERRORS, CouponRefusedError)
RecordOrderResult = _union(
    "RecordOrderResult", RecordOrderPayload, RECORD_ORDER_ERRORS, "recordOrder."
)
RefundOrderResult = _union("RefundOrderResult", RefundOrderPayload, ORDER_ERRORS, "refundOrder.")
AdjustPointsResult = _union(
    "AdjustPointsResult", AdjustPointsPayload, ADJUST_ERRORS, "adjustPoints result."
)
HoldPointsResult = _union("HoldPointsResult", PointsHoldPayload, HOLD_ERRORS, "holdPoints.")
ResolvePointsHoldResult = _union(
    "ResolvePointsHoldResult",
    PointsHoldPayload,
    RESOLVE_HOLD_ERRORS,
    "capturePointsHold / releasePointsHold result.",
)
MergeMembersResult = _union(
    "MergeMembersResult", MergePayload, MERGE_ERRORS, "mergeMembers / unmergeMembers result."
)


def _ids(result: Result, name: str) -> uuid.UUID:
    return uuid.UUID(str(result[name]))


def _hold_payload(ctx: RequestContext, r: Result) -> PointsHoldPayload:
    return PointsHoldPayload(
        hold_id=_ids(r, "hold_id"),
        member_id=_ids(r, "member_id"),
        transfer_id=uuid.UUID(r["transfer_id"]) if r.get("transfer_id") else None,
        ctx=ctx,
    )


def _discount_result(d: Any) -> Result:
    """A coupon discount as stored with an idempotent recordOrder result (JSON-able)."""
    return {
        "code": d.code,
        "template_code": d.template_code,
        "kind": d.kind,
        "discount_fen": d.discount_fen,
        "eligible_fen": d.eligible_fen,
        "gift_sku": d.gift_sku,
        "order_ref": d.order_ref,
        "replayed": d.replayed,
    }


def _coupon_discount(r: Result) -> CouponDiscount:
    return CouponDiscount(
        code=r["code"],
        template_code=r["template_code"],
        kind=CouponKind(r["kind"]),
        discount_fen=int(r["discount_fen"]),
        eligible_fen=int(r["eligible_fen"]),
        gift_sku=r["gift_sku"],
        order_ref=r["order_ref"],
        replayed=bool(r["replayed"]),
    )


def _merge_payload(ctx: RequestContext, r: Result) -> MergePayload:
    return MergePayload(
        merge_id=_ids(r, "merge_id"),
        survivor_id=_ids(r, "survivor_id"),
        loser_id=_ids(r, "loser_id"),
        ctx=ctx,
    )


def _merge_result(m: members.MergeInfo) -> Result:
    return {
        "typename": "MergePayload",
        "merge_id": str(m.id),
        "survivor_id": str(m.survivor_id),
        "loser_id": str(m.loser_id),
    }


@strawberry.type
class Mutation(
    SyncMutations,
    RulesMutations,
    MallMutations,
    WebhookMutations,
    CouponMutations,
    SegmentMutations,
):
    @strawberry.mutation(
        description="Resolve a channel record to ONE member: no match creates one, one match "
        "attaches, several strong matches merge into the oldest. Scopes: admin, pos, connector."
    )
    async def upsert_member(self, info: Info, input: UpsertMemberInput) -> UpsertMemberResult:
        async def execute(tx: Tx, _ledger_key: str) -> Result:
            if not input.identifiers or len(input.identifiers) > MAX_IDENTIFIERS:
                raise InvalidInput(f"give 1-{MAX_IDENTIFIERS} identifiers", field="identifiers")
            p = input.profile
            profile = None
            if p is not None:
                profile = members.ProfileInput(
                    name=p.name,
                    gender=p.gender,
                    birthday=p.birthday,
                    city=p.city,
                    verified=p.verified,
                    observed_at=p.observed_at,
                )
            res = await members.ingest(
                tx,
                channel=input.channel,
                identifiers=[
                    members.IdentifierInput(i.kind, i.scope, i.value) for i in input.identifiers
                ],
                profile=profile,
                key=ctx.hub.tenant_key(ctx.tenant_id),
                rules=ctx.hub.rules,
                scene=None
                if input.scene is None
                else JoinScene(input.scene.kind.value, input.scene.ref),
            )
            return {
                "typename": "UpsertMemberPayload",
                "member_id": str(res.member_id),
                "created": res.created,
                "merged_ids": [str(m) for m in res.merged_ids],
            }

        ctx = ctx_of(info)
        ctx, r = await _run(
            info,
            operation="upsertMember",
            scopes=WRITE,
            inp=input,
            execute=execute,
            allowed=UPSERT_ERRORS,
        )
        if isinstance(r, Error):
            return r
        return UpsertMemberPayload(
            created=bool(r["created"]),
            merged_ids=[strawberry.ID(global_id("Member", uuid.UUID(m))) for m in r["merged_ids"]],
            member_id=_ids(r, "member_id"),
            ctx=ctx,
        )

    @strawberry.mutation(
        description="Create or update an order by (channel, externalId); status only moves "
        "forward, and a paid order earns points through the tenant's rules. Scopes: admin, pos, "
        "connector."
    )
    async def record_order(self, info: Info, input: RecordOrderInput) -> RecordOrderResult:
        async def execute(tx: Tx, _ledger_key: str) -> Result:
            member_id = None
            if input.member_id is not None:
                member_id = _uuid(input.member_id, "Member", "memberId")
            inp = orders.OrderInput(
                channel=input.channel,
                external_id=input.external_id,
                member_id=member_id,
                status=input.status.value,
                lines=[
                    orders.OrderLineInput(
                        sku=ln.sku,
                        name=ln.name,
                        category=ln.category,
                        quantity=ln.quantity,
                        unit_price_fen=ln.unit_price_fen,
                        amount_fen=ln.amount_fen,
                    )
                    for ln in input.lines
                ],
                total_fen=input.total_fen,
                paid_fen=input.paid_fen,
                store_code=input.store_code,
                guide_code=input.guide_code,
                placed_at=input.placed_at,
                paid_at=input.paid_at,
            )
            res = await orders.record_order(
                tx, inp, registry=ctx_of(info).hub.rules, coupons=input.coupons
            )
            return {
                "typename": "RecordOrderPayload",
                "order_id": str(res.order_id),
                "created": res.created,
                "status_changed": res.status_changed,
                "coupons": [_discount_result(d) for d in res.coupons],
            }

        ctx, r = await _run(
            info,
            operation="recordOrder",
            scopes=WRITE,
            inp=input,
            execute=execute,
            allowed=RECORD_ORDER_ERRORS,
        )
        if isinstance(r, Error):
            return r
        return RecordOrderPayload(
            created=bool(r["created"]),
            status_changed=bool(r["status_changed"]),
            coupons=[_coupon_discount(d) for d in r.get("coupons") or []],
            order_id=_ids(r, "order_id"),
            ctx=ctx,
        )

    @strawberry.mutation(
        description="Refund (part of) an order; the points it earned are reversed in proportion. "
        "Scopes: admin, pos, connector."
    )
    async def refund_order(self, info: Info, input: RefundOrderInput) -> RefundOrderResult:
        async def execute(tx: Tx, _ledger_key: str) -> Result:
            res = await orders.refund_order(
                tx,
                order_id=_uuid(input.order_id, "Order", "orderId"),
                refund_id=input.refund_id,
                amount_fen=input.amount_fen,
                reason=input.reason,
                registry=ctx_of(info).hub.rules,
            )
            return {
                "typename": "RefundOrderPayload",
                "order_id": str(res.order_id),
                "refund_id": res.refund_id,
                "amount_fen": res.amount_fen,
                "status": res.status,
                "reversed": dict(res.reversed),
                "shortfall": dict(res.shortfall),
                "returned_coupons": list(res.returned_coupons),
            }

        ctx, r = await _run(
            info,
            operation="refundOrder",
            scopes=WRITE,
            inp=input,
            execute=execute,
            allowed=ORDER_ERRORS,
        )
        if isinstance(r, Error):
            return r
        return RefundOrderPayload(
            refund_id=r["refund_id"],
            amount_fen=int(r["amount_fen"]),
            status=OrderStatus(r["status"]),
            reversed=[AccountAmount(account=a, amount=int(v)) for a, v in r["reversed"].items()],
            shortfall=[AccountAmount(account=a, amount=int(v)) for a, v in r["shortfall"].items()],
            returned_coupons=list(r.get("returned_coupons") or []),
            order_id=_ids(r, "order_id"),
            ctx=ctx,
        )

    @strawberry.mutation(
        description="Correct a balance by hand: positive credits a new lot, negative debits "
        "(soonest-expiring lots first, never below zero). Scope: admin."
    )
    async def adjust_points(self, info: Info, input: AdjustPointsInput) -> AdjustPointsResult:
        async def execute(tx: Tx, ledger_key: str) -> Result:
            if input.amount == 0:
                raise InvalidInput("amount must not be 0", field="amount")
            member_id = await _resolve_member(tx, input.member_id, "memberId")
            common = {
                "member_id": member_id,
                "account": input.account,
                "amount": abs(input.amount),
                "reason": input.reason,
                "source": "api",
                "idem_key": ledger_key,
                "kind": "adjust",
            }
            if input.amount > 0:
                kwargs: dict[str, Any] = {}
                if input.expires_at is not None:
                    kwargs["expires_at"] = input.expires_at
                t = await ledger.credit(tx, **common, **kwargs)
            else:
                if input.expires_at is not None:
                    raise InvalidInput("expiresAt applies to credits only", field="expiresAt")
                t = await ledger.debit(tx, **common)
            return {
                "typename": "AdjustPointsPayload",
                "transfer_id": str(t.id),
                "member_id": str(member_id),
            }

        ctx, r = await _run(
            info,
            operation="adjustPoints",
            scopes=ADMIN,
            inp=input,
            execute=execute,
            allowed=ADJUST_ERRORS,
        )
        if isinstance(r, Error):
            return r
        return AdjustPointsPayload(
            transfer_id=_ids(r, "transfer_id"), member_id=_ids(r, "member_id"), ctx=ctx
        )

    @strawberry.mutation(
        description="Reserve points (two-phase spend for POS and exchanges). Scopes: admin, pos."
    )
    async def hold_points(self, info: Info, input: HoldPointsInput) -> HoldPointsResult:
        async def execute(tx: Tx, ledger_key: str) -> Result:
            limit = ctx_of(info).hub.settings.hold_ttl_seconds_max
            if not 1 <= input.ttl_seconds <= limit:
                raise InvalidInput(f"ttlSeconds must be 1-{limit}", field="ttlSeconds")
            member_id = await _resolve_member(tx, input.member_id, "memberId")
            h = await ledger.hold(
                tx,
                member_id=member_id,
                account=input.account,
                amount=input.amount,
                ttl_seconds=input.ttl_seconds,
                reason=input.reason,
                idem_key=ledger_key,
            )
            return {
                "typename": "PointsHoldPayload",
                "hold_id": str(h.id),
                "member_id": str(h.member_id),
                "transfer_id": None,
            }

        ctx, r = await _run(
            info,
            operation="holdPoints",
            scopes=HOLDS,
            inp=input,
            execute=execute,
            allowed=HOLD_ERRORS,
        )
        return r if isinstance(r, Error) else _hold_payload(ctx, r)

    @strawberry.mutation(
        description="Spend an active hold, fully or partly (the rest goes back). Scopes: admin, "
        "pos."
    )
    async def capture_points_hold(
        self, info: Info, input: CapturePointsHoldInput
    ) -> ResolvePointsHoldResult:
        async def execute(tx: Tx, ledger_key: str) -> Result:
            h, t = await ledger.capture(
                tx,
                hold_id=_uuid(input.hold_id, "PointsHold", "holdId"),
                amount=input.amount,
                reason=input.reason,
                idem_key=ledger_key,
            )
            return {
                "typename": "PointsHoldPayload",
                "hold_id": str(h.id),
                "member_id": str(h.member_id),
                "transfer_id": str(t.id),
            }

        ctx, r = await _run(
            info,
            operation="capturePointsHold",
            scopes=HOLDS,
            inp=input,
            execute=execute,
            allowed=RESOLVE_HOLD_ERRORS,
        )
        return r if isinstance(r, Error) else _hold_payload(ctx, r)

    @strawberry.mutation(description="Release an active hold entirely. Scopes: admin, pos.")
    async def release_points_hold(
        self, info: Info, input: ReleasePointsHoldInput
    ) -> ResolvePointsHoldResult:
        async def execute(tx: Tx, ledger_key: str) -> Result:
            h = await ledger.release(
                tx,
                hold_id=_uuid(input.hold_id, "PointsHold", "holdId"),
                reason=input.reason,
                idem_key=ledger_key,
            )
            return {
                "typename": "PointsHoldPayload",
                "hold_id": str(h.id),
                "member_id": str(h.member_id),
                "transfer_id": None,
            }

        ctx, r = await _run(
            info,
            operation="releasePointsHold",
            scopes=HOLDS,
            inp=input,
            execute=execute,
            allowed=RESOLVE_HOLD_ERRORS,
        )
        return r if isinstance(r, Error) else _hold_payload(ctx, r)

    @strawberry.mutation(
        description="Merge the loser into the survivor: identities, orders and unexpired points "
        "move; recorded so it can be undone. Scope: admin."
    )
    async def merge_members(self, info: Info, input: MergeMembersInput) -> MergeMembersResult:
        async def execute(tx: Tx, _ledger_key: str) -> Result:
            m = await members.merge(
                tx,
                survivor_id=_uuid(input.survivor_id, "Member", "survivorId"),
                loser_id=_uuid(input.loser_id, "Member", "loserId"),
                reason=input.reason,
            )
            return _merge_result(m)

        ctx, r = await _run(
            info,
            operation="mergeMembers",
            scopes=ADMIN,
            inp=input,
            execute=execute,
            allowed=MERGE_ERRORS,
        )
        return r if isinstance(r, Error) else _merge_payload(ctx, r)

    @strawberry.mutation(
        description="Undo a merge: the loser gets back what it brought. Scope: admin."
    )
    async def unmerge_members(self, info: Info, input: UnmergeMembersInput) -> MergeMembersResult:
        async def execute(tx: Tx, _ledger_key: str) -> Result:
            m = await members.unmerge(
                tx, merge_id=_uuid(input.merge_id, "Merge", "mergeId"), reason=input.reason
            )
            return _merge_result(m)

        ctx, r = await _run(
            info,
            operation="unmergeMembers",
            scopes=ADMIN,
            inp=input,
            execute=execute,
            allowed=MERGE_ERRORS,
        )
        return r if isinstance(r, Error) else _merge_payload(ctx, r)

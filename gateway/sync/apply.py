"""Apply canonical records to the member graph: ONE ID, orders (and earning), refunds, points.

Every step is idempotent, which is what makes a sync resumable and a push retryable:

- a member record resolves or creates a member from its identifiers (``members.ingest``);
- an order record resolves its buyer the same way, then upserts the order by
  ``(tenant, channel, external id)``; reaching *paid* runs the earning path once;
- a refund record refunds by the platform's refund id (a replay is recognised);
- a points event credits or debits points under the key ``<channel>:points:<event id>``.

Records that the domain refuses (bad data from the platform) are *rejected* individually with the
reason; the batch still commits everything else (``apply_records(isolate=True)`` wraps each
record in a savepoint). The runner first tries a batch without savepoints — the common case — and
falls back to isolating records only when one fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from gateway import ledger, members, orders
from gateway.commerce.model import ORD
from gateway.errors import DomainError
from gateway.identifiers import resolves
from gateway.identity.model import IdentifierInput
from gateway.rules.manager import RuleRegistry
from gateway.storage.db import Tx
from gateway.storage.types import utcnow
from gateway.sync.push import ApplyOutcome, MemberView
from gateway.sync.records import (
    JoinScene,
    MemberRecord,
    OrderRecord,
    PointsEventRecord,
    Record,
    RecordError,
    RefundRecord,
    record_key,
)

REJECTABLE = (DomainError, RecordError)


async def _member(
    tx: Tx,
    channel: str,
    idents: Sequence[IdentifierInput],
    profile: Any,
    key: bytes,
    now: datetime,
    rules: RuleRegistry | None = None,
    scene: JoinScene | None = None,
) -> tuple[uuid.UUID, bool]:
    result = await members.ingest(
        tx,
        channel=channel,
        identifiers=list(idents),
        profile=profile,
        key=key,
        now=now,
        rules=rules,
        scene=scene,
    )
    return result.member_id, result.created


async def apply_member(
    tx: Tx,
    rec: MemberRecord,
    channel: str,
    key: bytes,
    now: datetime,
    rules: RuleRegistry | None = None,
) -> ApplyOutcome:
    member_id, created = await _member(
        tx, channel, rec.identifiers, rec.profile, key, now, rules, rec.scene
    )
    return ApplyOutcome("member", rec.external_id, "created" if created else "updated", member_id)


def order_input(rec: OrderRecord, channel: str, member_id: uuid.UUID | None) -> orders.OrderInput:
    """The core's order input for a canonical order record (shared with the batch path)."""
    return orders.OrderInput(
        channel=channel,
        external_id=rec.external_id,
        member_id=member_id,
        status=rec.status,
        lines=[
            orders.OrderLineInput(
                sku=line.sku,
                name=line.name,
                category=line.category,
                quantity=line.quantity,
                unit_price_fen=line.unit_price_fen,
                amount_fen=line.amount_fen,
            )
            for line in rec.lines
        ],
        total_fen=rec.total_fen,
        paid_fen=rec.paid_fen,
        store_code=rec.store_code,
        guide_code=rec.guide_code,
        placed_at=rec.placed_at,
        paid_at=rec.paid_at,
    )


async def apply_order(
    tx: Tx,
    rec: OrderRecord,
    channel: str,
    key: bytes,
    rules: RuleRegistry | None,
    now: datetime,
) -> ApplyOutcome:
    member_id = None
    # An order whose only buyer identifiers are not the buyer's own (a receiver's phone) is
    # recorded without a member rather than inventing one.
    if any(resolves(i.kind) for i in rec.buyer):
        member_id, _ = await _member(tx, channel, rec.buyer, rec.profile, key, now, rules)
    inp = order_input(rec, channel, member_id)
    # A platform re-sending an older status (pages overlap, pushes race pulls) is not an error.
    result = await orders.record_order(tx, inp, on_backward="ignore", now=now, registry=rules)
    action = "created" if result.created else "updated" if result.status_changed else "unchanged"
    return ApplyOutcome("order", rec.external_id, action, member_id)


async def order_id_for(tx: Tx, channel: str, external_id: str) -> uuid.UUID | None:
    return (
        await tx.conn.execute(
            select(ORD.c.id).where(
                ORD.c.tenant_id == tx.tenant_id,
                ORD.c.channel == channel,
                ORD.c.external_id == external_id,
            )
        )
    ).scalar()


async def apply_refund(
    tx: Tx, rec: RefundRecord, channel: str, now: datetime, rules: RuleRegistry | None = None
) -> ApplyOutcome:
    order_id = await order_id_for(tx, channel, rec.order_external_id)
    if order_id is None:
        return ApplyOutcome(
            "refund",
            rec.refund_id,
            "rejected",
            error=f"order {rec.order_external_id} has not been synced from {channel}",
        )
    result = await orders.refund_order(
        tx,
        order_id=order_id,
        refund_id=rec.refund_id,
        amount_fen=rec.amount_fen,
        reason=rec.reason,
        now=now,
        registry=rules,
    )
    return ApplyOutcome("refund", rec.refund_id, "unchanged" if result.replayed else "created")


async def apply_points(
    tx: Tx, rec: PointsEventRecord, channel: str, key: bytes, now: datetime
) -> ApplyOutcome:
    member_id, _ = await _member(tx, channel, rec.identifiers, None, key, now)
    common = {
        "member_id": member_id,
        "account": "points",
        "amount": abs(rec.delta),
        "reason": rec.reason,
        "source": channel,
        "source_ref": rec.event_id,
        "idem_key": f"{channel}:points:{rec.event_id}",
        "now": now,
    }
    if rec.delta > 0:
        result = await ledger.credit(tx, kind="channel", **common)
    else:
        # The channel already took the points; we mirror what the member has and record the
        # rest as shortfall rather than going negative (the ledger never does by default).
        result = await ledger.debit(tx, kind="channel", allow_shortfall=True, **common)
    return ApplyOutcome(
        "points_event", rec.event_id, "unchanged" if result.replayed else "created", member_id
    )


async def apply_one(
    tx: Tx,
    rec: Record,
    *,
    channel: str,
    key: bytes,
    rules: RuleRegistry | None,
    now: datetime,
) -> ApplyOutcome:
    if isinstance(rec, OrderRecord):
        return await apply_order(tx, rec, channel, key, rules, now)
    if isinstance(rec, MemberRecord):
        return await apply_member(tx, rec, channel, key, now, rules)
    if isinstance(rec, RefundRecord):
        return await apply_refund(tx, rec, channel, now, rules)
    if isinstance(rec, PointsEventRecord):
        return await apply_points(tx, rec, channel, key, now)
    raise RecordError(f"not a canonical record: {type(rec).__name__}")


async def apply_records(
    tx: Tx,
    records: Sequence[Record],
    *,
    channel: str,
    key: bytes,
    rules: RuleRegistry | None = None,
    now: datetime | None = None,
    isolate: bool = False,
    bulk: bool = True,
) -> list[ApplyOutcome]:
    """Apply ``records`` in order inside ``tx``.

    With ``isolate=False`` the first refused record raises (the caller rolls back and retries
    with ``isolate=True``); with ``isolate=True`` each record runs in a savepoint and a refused
    one becomes a ``rejected`` outcome while the rest commit. A non-isolated batch of at least
    ``bulk.MIN_BATCH`` records goes through the set-based path of :mod:`gateway.sync.bulk` (same
    result, a few statements per batch instead of per record); ``bulk=False`` turns that off.
    """
    now = now or utcnow()
    if bulk and not isolate:
        from gateway.sync import bulk as set_based

        if len(records) >= set_based.MIN_BATCH:
            return await set_based.apply_batch(
                tx, records, channel=channel, key=key, rules=rules, now=now
            )
    out: list[ApplyOutcome] = []
    for rec in records:
        if not isolate:
            out.append(await apply_one(tx, rec, channel=channel, key=key, rules=rules, now=now))
            continue
        await tx.conn.exec_driver_sql("SAVEPOINT mh_record")
        try:
            outcome = await apply_one(tx, rec, channel=channel, key=key, rules=rules, now=now)
        except REJECTABLE as exc:
            await tx.conn.exec_driver_sql("ROLLBACK TO SAVEPOINT mh_record")
            outcome = ApplyOutcome(rec.record_type, record_key(rec), "rejected", error=str(exc))
        await tx.conn.exec_driver_sql("RELEASE SAVEPOINT mh_record")
        out.append(outcome)
    return out


async def lookup(tx: Tx, identifiers: Sequence[IdentifierInput], key: bytes) -> MemberView | None:
    """The member any identifier resolves to, with balances (for platform query callbacks)."""
    for ident in identifiers:
        try:
            member_id = await members.find_by_identifier(
                tx, ident.kind, ident.scope, ident.value, key=key
            )
        except DomainError:
            continue
        if member_id is None:
            continue
        balances = await ledger.balances_for(tx, [member_id])
        return MemberView(
            member_id=member_id,
            points=_available(balances.get((member_id, "points"))),
            growth=_available(balances.get((member_id, "growth"))),
        )
    return None


def _available(view: Any) -> int:
    return int(getattr(view, "available", 0) or 0) if view is not None else 0

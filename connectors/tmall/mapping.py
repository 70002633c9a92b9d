"""TOP JSON → canonical records.

Money: TOP amounts are yuan strings with two decimals (``"200.07"``); they become integer fen
through :class:`~decimal.Decimal`, never float, and a value with sub-fen precision is refused.
Times: TOP's ``yyyy-MM-dd HH:mm:ss`` strings are GMT+8 wall-clock times.

Identifiers (PLATFORMS.md §1.4, §9):

- ``ouid`` → ``tmall_ouid`` (strong; unique per buyer *per shop*, the same across apps), scoped
  by the configured ``shop_id``;
- ``buyer_open_uid`` → ``taobao_open_uid`` (weak; stable per appkey only), scoped by ``app_key``;
- ``buyer_nick`` is fuzzed since the privacy change and renamable: never an identifier;
- ``receiver_mobile`` / ``receiver_name`` are encrypted ciphertexts and ``oaid`` changes weekly:
  none of them is an identifier, not even a weak ``receiver_phone``.

Status (TOP → canonical): unpaid states → ``created``; paid-but-not-finished states →
``paid``; ``TRADE_FINISHED`` → ``completed``; ``TRADE_CLOSED_BY_TAOBAO`` (closed before payment)
→ ``cancelled``. ``TRADE_CLOSED`` means "closed after the buyer was refunded in full" when the
trade has a ``pay_time``: it stays ``paid`` — the order really was paid, order status in the hub
only moves forward, and the money goes back through the refund stream's SUCCESS refunds (so
points are reversed exactly once, by the refund). A ``TRADE_CLOSED`` trade without ``pay_time``
was never paid and is ``cancelled``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.tmall.signing import parse_time
from gateway.sync.records import (
    Identifier,
    MemberRecord,
    OrderLineRecord,
    OrderRecord,
    RecordError,
    RefundRecord,
)

STATUS_MAP: Mapping[str, str] = {
    "TRADE_NO_CREATE_PAY": "created",
    "WAIT_BUYER_PAY": "created",
    "PAY_PENDING": "created",
    "WAIT_SELLER_SEND_GOODS": "paid",
    "SELLER_CONSIGNED_PART": "paid",
    "WAIT_BUYER_CONFIRM_GOODS": "paid",
    "TRADE_BUYER_SIGNED": "paid",
    "PAID_FORBID_CONSIGN": "paid",
    "WAIT_PRE_AUTH_CONFIRM": "paid",
    "TRADE_FINISHED": "completed",
    "TRADE_CLOSED": "cancelled",
    "TRADE_CLOSED_BY_TAOBAO": "cancelled",
}
REFUND_SUCCESS = "SUCCESS"


def yuan_to_fen(value: Any, name: str = "amount") -> int:
    """``"200.07"`` → ``20007`` exactly (Decimal); ``None``/``""`` → 0."""
    if value is None or value == "":
        return 0
    try:
        fen = Decimal(str(value).strip()) * 100
    except InvalidOperation as exc:
        raise RecordError(f"{name}={value!r} is not a yuan amount") from exc
    if fen != fen.to_integral_value():
        raise RecordError(f"{name}={value!r} has sub-fen precision")
    return int(fen)


def top_time(value: Any) -> datetime | None:
    if not value:
        return None
    return parse_time(str(value))


def wrapped(obj: Mapping[str, Any] | None, outer: str, inner: str) -> list[dict[str, Any]]:
    """TOP wraps lists: ``{"trades": {"trade": [...]}}``; absent when empty."""
    if not obj:
        return []
    box = obj.get(outer)
    if not isinstance(box, Mapping):
        return []
    items = box.get(inner)
    if isinstance(items, Mapping):  # a single element is sometimes not a list
        return [dict(items)]
    return [dict(i) for i in items or () if isinstance(i, Mapping)]


def tid_of(trade: Mapping[str, Any]) -> str:
    """The trade id as text (``tid_str`` when given: it survives JSON number precision)."""
    value = trade.get("tid_str") or trade.get("tid")
    if value in (None, ""):
        raise RecordError("trade without tid")
    return str(value)


def canonical_status(trade: Mapping[str, Any]) -> str:
    status = str(trade.get("status") or "")
    if status == "TRADE_CLOSED" and trade.get("pay_time"):
        return "paid"  # closed after a full refund: see the module docstring
    try:
        return STATUS_MAP[status]
    except KeyError:
        raise RecordError(f"unknown TOP trade status {status!r}") from None


def buyer_identifiers(row: Mapping[str, Any], *, shop_id: str, app_key: str) -> tuple[Any, ...]:
    out = []
    if row.get("ouid"):
        out.append(Identifier("tmall_ouid", shop_id, str(row["ouid"])))
    if row.get("buyer_open_uid"):
        out.append(Identifier("taobao_open_uid", app_key, str(row["buyer_open_uid"])))
    return tuple(out)


def map_line(order: Mapping[str, Any]) -> OrderLineRecord:
    sku = (
        order.get("outer_sku_id")
        or order.get("outer_iid")
        or order.get("sku_id")
        or order.get("num_iid")
        or order.get("oid")
    )
    amount = order.get("payment") if order.get("payment") not in (None, "") else None
    return OrderLineRecord(
        sku=str(sku),
        name=str(order.get("title") or ""),
        quantity=int(order.get("num") or 0),
        unit_price_fen=yuan_to_fen(order.get("price"), "order.price"),
        amount_fen=yuan_to_fen(
            amount if amount is not None else order.get("total_fee"), "order.payment"
        ),
    )


def map_trade(trade: Mapping[str, Any], *, shop_id: str, app_key: str) -> OrderRecord:
    """A ``taobao.trade.fullinfo.get`` trade → :class:`OrderRecord`."""
    status = canonical_status(trade)
    created = top_time(trade.get("created"))
    modified = top_time(trade.get("modified")) or created
    if created is None or modified is None:
        raise RecordError(f"trade {tid_of(trade)} lacks created/modified")
    payment = yuan_to_fen(trade.get("payment"), "payment")
    return OrderRecord(
        external_id=tid_of(trade),
        status=status,
        placed_at=created,
        updated_at=modified,
        total_fen=payment,
        paid_fen=payment if status in ("paid", "completed") else 0,
        lines=tuple(map_line(o) for o in wrapped(trade, "orders", "order")),
        buyer=buyer_identifiers(trade, shop_id=shop_id, app_key=app_key),
        paid_at=top_time(trade.get("pay_time")),
        store_code=str(trade["o2o_shop_id"]) if trade.get("o2o_shop_id") else None,
        guide_code=str(trade["o2o_guide_id"]) if trade.get("o2o_guide_id") else None,
    )


def map_member(
    member: Mapping[str, Any], *, shop_id: str, window_end: datetime
) -> MemberRecord | None:
    """A CRM ``basic_member`` → :class:`MemberRecord` (``None`` without an ouid).

    ``BasicMember`` has no modification time; ``last_trade_time`` is used when it falls inside
    the queried window, otherwise the window's end (the latest the change can have happened).
    """
    ouid = member.get("ouid")
    if not ouid:
        return None
    updated = top_time(member.get("last_trade_time"))
    if updated is None or updated > window_end:
        updated = window_end
    level = member.get("grade_name") or (
        str(member["grade"]) if member.get("grade") not in (None, "") else None
    )
    return MemberRecord(
        external_id=str(ouid),
        identifiers=(Identifier("tmall_ouid", shop_id, str(ouid)),),
        updated_at=updated,
        level=level,
    )


def map_refund(refund: Mapping[str, Any]) -> RefundRecord | None:
    """A ``taobao.refunds.receive.get`` refund → :class:`RefundRecord`; only ``SUCCESS``
    refunds moved money (requests, refusals and closed disputes are skipped)."""
    if refund.get("status") != REFUND_SUCCESS:
        return None
    amount = yuan_to_fen(refund.get("refund_fee"), "refund_fee")
    if amount == 0:
        return None
    modified = top_time(refund.get("modified")) or top_time(refund.get("created"))
    if modified is None:
        raise RecordError(f"refund {refund.get('refund_id')} lacks modified")
    return RefundRecord(
        refund_id=str(refund["refund_id"]),
        order_external_id=str(refund["tid"]),
        amount_fen=amount,
        updated_at=modified,
        reason=str(refund["reason"]) if refund.get("reason") else None,
    )

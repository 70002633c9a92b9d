"""JOS order / refund JSON → canonical records (PLATFORMS.md §2.2, §9).

- Money: JOS returns yuan strings ("168.00"); converted to integer fen with :class:`Decimal`.
- Times: ``yyyy-MM-dd HH:mm:ss`` in Beijing time (GMT+8) → aware datetimes.
- Buyer identifiers: ``xid_buyer`` (strong ``jd_xid``, per vendor), ``open_id_buyer`` (weak
  ``jd_open_id``, per vendor); ``consigneeInfo.mobile`` is the parcel *receiver* → weak
  ``receiver_phone`` only when it is a plain 11-digit mobile (masked ``138****0000`` and TDE
  ciphertext are skipped).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connectors import wire
from connectors.wire import plain_mobile
from gateway.sync.errors import PlatformError
from gateway.sync.records import Identifier, OrderLineRecord, OrderRecord, RefundRecord

# JOS order states (``order_state`` enum, §2.2) → canonical status. JD only lists orders the
# buyer has paid (or cancelled); there is no "awaiting payment" state in this API.
STATUS = {
    "WAIT_SELLER_STOCK_OUT": "paid",
    "WAIT_SELLER_DELIVERY": "paid",
    "WAIT_GOODS_RECEIVE_CONFIRM": "paid",
    "PAUSE": "paid",
    "LOCKED": "paid",
    "POP_ORDER_PAUSE": "paid",
    "FINISHED_L": "completed",
    "TRADE_CANCELED": "cancelled",
}
ORDER_STATES = ",".join(STATUS)

# Refund-application statuses (queryPageList ``status``) that mean the money goes back. ASSUMED
# (not in PLATFORMS.md): 0 = awaiting review, 1 = approved, 2 = rejected, 3 = finance approved,
# 4 = finance rejected, 5 = manually approved, 6 = intercepted and refunded, 9 = force-closed and
# refunded. Pending and rejected applications are not refunds.
REFUND_DONE = frozenset({"1", "3", "5", "6", "9"})


def parse_time(value: Any) -> datetime | None:
    """JOS time (GMT+8) → aware datetime; empty / ``0001-…`` (JD's "no time") → ``None``."""
    if isinstance(value, str) and value.startswith("0001-"):
        return None
    return wire.parse_time(value, "JD")


def yuan_to_fen(value: Any) -> int:
    return wire.yuan_to_fen(value, "JD")


def buyer_identifiers(info: Mapping[str, Any], vender_id: str, channel: str) -> tuple[Any, ...]:
    out = []
    if info.get("xid_buyer"):
        out.append(Identifier("jd_xid", vender_id, str(info["xid_buyer"])))
    if info.get("open_id_buyer"):
        out.append(Identifier("jd_open_id", vender_id, str(info["open_id_buyer"])))
    mobile = plain_mobile((info.get("consigneeInfo") or {}).get("mobile"))
    if mobile:
        out.append(Identifier("receiver_phone", channel, mobile))
    return tuple(out)


def canonical_status(state: str, paid: bool) -> str:
    if state in STATUS:
        return STATUS[state]
    # An unlisted state (e.g. WAIT_SEND_CODE): JD lists only paid orders, so call it paid.
    return "paid" if paid else "created"


def order_record(info: Mapping[str, Any], vender_id: str, channel: str) -> OrderRecord:
    placed = parse_time(info.get("orderStartTime"))
    modified = parse_time(info.get("modified")) or placed
    if placed is None or modified is None:
        raise PlatformError(f"JD order {info.get('orderId')!r} has no orderStartTime")
    paid_at = parse_time(info.get("paymentConfirmTime"))
    status = canonical_status(str(info.get("orderState", "")), paid_at is not None)
    lines = []
    for item in info.get("itemInfoList") or []:
        qty = int(item.get("itemTotal") or 0)  # JOS ``itemTotal`` is the quantity
        unit = yuan_to_fen(item.get("jdPrice"))
        lines.append(
            OrderLineRecord(
                sku=str(item.get("outerSkuId") or item.get("skuId") or item.get("wareId")),
                name=str(item.get("skuName") or ""),
                quantity=qty,
                unit_price_fen=unit,
                amount_fen=unit * qty,
            )
        )
    return OrderRecord(
        external_id=str(info["orderId"]),
        status=status,
        placed_at=placed,
        updated_at=modified,
        total_fen=yuan_to_fen(info.get("orderTotalPrice")),
        paid_fen=yuan_to_fen(info.get("orderPayment")) if status in ("paid", "completed") else 0,
        lines=tuple(lines),
        buyer=buyer_identifiers(info, vender_id, channel),
        paid_at=paid_at if status in ("paid", "completed") else None,
    )


def refund_record(row: Mapping[str, Any]) -> RefundRecord | None:
    """A refund application → a refund, or ``None`` when it is not (yet) money returned.
    ASSUMED: ``applyRefundSum`` is a yuan string like the order amounts."""
    if str(row.get("status")) not in REFUND_DONE:
        return None
    amount = yuan_to_fen(row.get("applyRefundSum"))
    at = parse_time(row.get("checkTime")) or parse_time(row.get("applyTime"))
    if amount <= 0 or at is None:
        return None
    return RefundRecord(
        refund_id=str(row["id"]),
        order_external_id=str(row["orderId"]),
        amount_fen=amount,
        updated_at=at,
        reason=row.get("reason") or None,
    )

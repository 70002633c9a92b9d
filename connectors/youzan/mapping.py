"""Youzan trade / refund JSON → canonical records (PLATFORMS.md §5.2, §9).

- Money: yuan strings ("9.82") → integer fen with :class:`Decimal` (``deduction_pay`` /
  ``deduction_real_pay`` are already fen and are not used).
- Times: ``yyyy-MM-dd HH:mm:ss`` in Beijing time (GMT+8) → aware datetimes.
- Buyer: ``buyer_info.yz_open_id`` (strong ``youzan_open_id``, scope = kdt_id);
  ``buyer_info.buyer_phone`` is the buyer's bound phone → strong ``phone`` when it is a plain
  11-digit mobile; ``outer_user_id`` (the WeChat openid) → weak ``wechat_openid`` scoped by the
  configured WeChat appid, skipped when none is configured. The receiver's phone
  (``address_info.receiver_tel``) is normally ``$…$1$`` ciphertext; only a plaintext mobile is
  kept, as the weak ``receiver_phone``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connectors import wire
from connectors.wire import plain_mobile
from gateway.sync.errors import PlatformError
from gateway.sync.records import Identifier, OrderLineRecord, OrderRecord, RefundRecord

STATUS = {
    "WAIT_BUYER_PAY": "created",
    "WAIT_SELLER_SEND_GOODS": "paid",
    "WAIT_BUYER_CONFIRM_GOODS": "paid",
    "TRADE_SUCCESS": "completed",
    "TRADE_CLOSED": "cancelled",
}
# ``order_info.refund_state``: 0 none, 1 partial refunding, 2 partial refunded, 11 full
# refunding, 12 full refunded (ASSUMED enum; only "non-zero" matters here).
NO_REFUND = 0


def parse_time(value: Any) -> datetime | None:
    return wire.parse_time(value, "Youzan")


def yuan_to_fen(value: Any) -> int:
    return wire.yuan_to_fen(value, "Youzan")


def canonical_status(order_info: Mapping[str, Any]) -> str:
    """Youzan status → canonical. A ``TRADE_CLOSED`` order that was paid and then refunded in
    full stays ``paid`` (money changed hands; the refunds stream returns it), only an unpaid
    closed order is ``cancelled``. Unknown statuses fall back on ``pay_time``."""
    status = str(order_info.get("status", ""))
    paid = bool(order_info.get("pay_time"))
    refunded = int(order_info.get("refund_state") or NO_REFUND) != NO_REFUND
    if status == "TRADE_CLOSED" and paid and refunded:
        return "paid"
    if status in STATUS:
        return STATUS[status]
    return "paid" if paid else "created"


def buyer_identifiers(
    full: Mapping[str, Any], kdt_id: str, wechat_appid: str | None, channel: str
) -> tuple[Any, ...]:
    buyer = full.get("buyer_info") or {}
    out = []
    if buyer.get("yz_open_id"):
        out.append(Identifier("youzan_open_id", kdt_id, str(buyer["yz_open_id"])))
    phone = plain_mobile(buyer.get("buyer_phone"))
    if phone:
        out.append(Identifier("phone", None, phone))
    if wechat_appid and buyer.get("outer_user_id"):
        out.append(Identifier("wechat_openid", wechat_appid, str(buyer["outer_user_id"])))
    receiver = plain_mobile((full.get("address_info") or {}).get("receiver_tel"))
    if receiver:
        out.append(Identifier("receiver_phone", channel, receiver))
    return tuple(out)


def order_record(
    full: Mapping[str, Any], kdt_id: str, wechat_appid: str | None, channel: str
) -> OrderRecord:
    info = full.get("order_info") or {}
    pay = full.get("pay_info") or {}
    placed = parse_time(info.get("created"))
    if placed is None:
        raise PlatformError(f"Youzan order {info.get('tid')!r} has no created time")
    updated = parse_time(info.get("update_time")) or placed
    status = canonical_status(info)
    settled = status in ("paid", "completed")
    lines = []
    for item in full.get("orders") or []:
        qty = int(item.get("num") or 0)
        sku = (
            item.get("outer_sku_id")
            or item.get("outer_item_id")
            or item.get("sku_id")
            or item.get("item_id")
        )
        lines.append(
            OrderLineRecord(
                sku=str(sku),
                name=str(item.get("title") or ""),
                quantity=qty,
                unit_price_fen=yuan_to_fen(item.get("price")),
                amount_fen=yuan_to_fen(item.get("payment")),
            )
        )
    return OrderRecord(
        external_id=str(info["tid"]),
        status=status,
        placed_at=placed,
        updated_at=updated,
        total_fen=yuan_to_fen(pay.get("total_fee")),
        paid_fen=yuan_to_fen(pay.get("payment")) if settled else 0,
        lines=tuple(lines),
        buyer=buyer_identifiers(full, kdt_id, wechat_appid, channel),
        paid_at=parse_time(info.get("pay_time")) if settled else None,
    )


def refund_record(row: Mapping[str, Any]) -> RefundRecord | None:
    """ASSUMED shape (not in PLATFORMS.md): ``{refund_id, tid, refund_fee (yuan), modified,
    status, reason}``; only ``status == "SUCCESS"`` is money returned."""
    if str(row.get("status")) != "SUCCESS":
        return None
    amount = yuan_to_fen(row.get("refund_fee"))
    at = parse_time(row.get("modified"))
    if amount <= 0 or at is None:
        return None
    return RefundRecord(
        refund_id=str(row["refund_id"]),
        order_external_id=str(row["tid"]),
        amount_fen=amount,
        updated_at=at,
        reason=row.get("reason") or None,
    )

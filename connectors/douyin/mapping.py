"""Doudian JSON → canonical records (PLATFORMS.md §3.3, §3.4, §9).

- Amounts are already integer **fen** (``order_amount``, ``pay_amount``, ``origin_amount``,
  ``refund_amount``); a non-integer is refused rather than rounded.
- Times are Unix seconds (aware UTC); push messages may carry ``yyyy-MM-dd HH:mm:ss`` (GMT+8).
- Buyer identifiers: ``doudian_open_id`` is the weak ``douyin_open_id`` (scope: the 会员通 app id,
  the same namespace ``member.*`` APIs call ``open_id``); ``union_id`` is the strong
  ``douyin_union_id`` (scope: the brand id, or the shop id for a single-shop brand); a plaintext
  ``mobile`` (only given for buyers with a paid order in the last 90 days) is ``phone``.
  ``mask_post_tel`` is masked and ``encrypt_post_tel`` needs a decrypt API, so neither is used;
  ``mix_mobile`` is a platform obfuscation, not a phone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.identity.model import IdentifierInput
from gateway.sync.errors import PlatformError
from gateway.sync.records import (
    Identifier,
    MemberRecord,
    OrderLineRecord,
    OrderRecord,
    PointsEventRecord,
    RefundRecord,
)

log = logging.getLogger("memberhub.connectors.douyin")

CHINA = timezone(timedelta(hours=8), "GMT+8")
# order_status (PLATFORMS §3.3): 1 pending payment, 105 paid, 2 awaiting shipment,
# 101 partially shipped, 3 shipped, 4 cancelled, 5 completed.
ORDER_STATUS = {
    1: "created",
    105: "paid",
    2: "paid",
    101: "paid",
    3: "paid",
    5: "completed",
    4: "cancelled",
}
REFUND_SUCCESS = 3  # afterSale refund_status: 3 = refund succeeded (assumed, see streams.py)
_PLAIN_PHONE = re.compile(r"^\+?[0-9][0-9 -]{5,20}$")


def from_unix(value: Any) -> datetime | None:
    """Unix seconds → aware UTC; ``0``/empty (the platform's "not set") → ``None``."""
    if value in (None, "", 0, "0"):
        return None
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise PlatformError(f"douyin time {value!r} is not Unix seconds") from None
    return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None


def parse_time(value: Any) -> datetime | None:
    """Unix seconds, or ``yyyy-MM-dd HH:mm:ss`` in GMT+8 (the platform's local time)."""
    if isinstance(value, str) and not value.strip().isdigit():
        try:
            return datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
        except ValueError:
            raise PlatformError(f"douyin time {value!r} is not yyyy-MM-dd HH:mm:ss") from None
    return from_unix(value)


def fen(value: Any, name: str) -> int:
    """An amount the platform gives in fen (an integer, sometimes as a string)."""
    if isinstance(value, bool):
        raise PlatformError(f"douyin {name}={value!r} is not an amount in fen")
    if value is None or value == "":
        return 0
    if isinstance(value, int):
        return value
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise PlatformError(f"douyin {name}={value!r} is not an amount in fen") from None
    if amount != amount.to_integral_value():
        raise PlatformError(f"douyin {name}={value!r} is not a whole number of fen")
    return int(amount)


def plaintext_phone(value: Any) -> str | None:
    """A usable phone number, or ``None`` for empty, masked (``138****0000``) or encrypted."""
    if not isinstance(value, str) or "*" in value:
        return None
    value = value.strip()
    return value if _PLAIN_PHONE.match(value) else None


def buyer_identifiers(
    open_id: Any,
    union_id: Any,
    mobile: Any,
    *,
    open_id_scope: str,
    union_id_scope: str,
) -> tuple[IdentifierInput, ...]:
    ids: list[IdentifierInput] = []
    if isinstance(open_id, str) and open_id.strip():
        ids.append(Identifier("douyin_open_id", open_id_scope, open_id.strip()))
    if isinstance(union_id, str) and union_id.strip():
        ids.append(Identifier("douyin_union_id", union_id_scope, union_id.strip()))
    phone = plaintext_phone(mobile)
    if phone is not None:
        ids.append(Identifier("phone", None, phone))
    return tuple(ids)


def order_status(raw: Mapping[str, Any]) -> str:
    code = raw.get("order_status")
    try:
        status = ORDER_STATUS.get(int(code))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        status = None
    if status is None:
        status = "paid" if from_unix(raw.get("pay_time")) else "created"
        log.warning(
            "douyin order %s: unknown order_status %r, read as %s",
            raw.get("order_id"),
            code,
            status,
        )
    return status


def order_line(raw: Mapping[str, Any]) -> OrderLineRecord:
    quantity = int(raw.get("item_num") or 0)
    amount = fen(raw.get("origin_amount"), "sku_order_list.origin_amount")
    sku = str(
        raw.get("out_sku_id") or raw.get("code") or raw.get("sku_id") or raw.get("product_id") or ""
    )
    if not sku:
        raise PlatformError(f"douyin sub-order {raw.get('order_id')!r} has no sku or product id")
    return OrderLineRecord(
        sku=sku,
        name=str(raw.get("product_name") or ""),
        quantity=quantity,
        # origin_amount is the line's price × quantity (before order-level promotions)
        unit_price_fen=amount // quantity if quantity > 0 else amount,
        amount_fen=amount,
    )


def order_record(raw: Mapping[str, Any], *, open_id_scope: str) -> OrderRecord:
    """One element of ``order.searchList``'s ``shop_order_list``."""
    order_id = str(raw.get("order_id") or "")
    placed = from_unix(raw.get("create_time"))
    updated = from_unix(raw.get("update_time")) or placed
    if not order_id or placed is None or updated is None:
        raise PlatformError(f"douyin order {order_id!r} lacks order_id/create_time/update_time")
    paid_at = from_unix(raw.get("pay_time"))
    buyer = buyer_identifiers(
        raw.get("doudian_open_id"), None, None, open_id_scope=open_id_scope, union_id_scope=""
    )
    return OrderRecord(
        external_id=order_id,
        status=order_status(raw),
        placed_at=placed,
        updated_at=updated,
        total_fen=fen(raw.get("order_amount"), "order_amount"),
        # pay_amount is what is payable; money was only paid once pay_time is set
        paid_fen=fen(raw.get("pay_amount"), "pay_amount") if paid_at is not None else 0,
        lines=tuple(order_line(s) for s in raw.get("sku_order_list") or ()),
        buyer=buyer,
        paid_at=paid_at,
    )


def points(point_cent: Any, name: str) -> int:
    """``pointCent`` (100 = 1 point) → whole points; a fraction of a point is refused."""
    try:
        cents = Decimal(str(point_cent))
    except InvalidOperation:
        raise ValueError(f"{name}={point_cent!r} is not a number of point cents") from None
    value = cents / 100
    if value != value.to_integral_value():
        raise ValueError(
            f"{name}={point_cent} is not a whole number of points (pointCent 100 = 1 point); "
            "memberhub keeps integer points"
        )
    return int(value)


def member_record(
    info: Mapping[str, Any],
    *,
    open_id_scope: str,
    union_id_scope: str,
    updated_at: datetime,
) -> MemberRecord | None:
    """One ``member_infos`` element of ``member.mGetMemberInfoByOpenIdList`` (``None`` when the
    platform says it failed, e.g. the buyer is not a member)."""
    if not info.get("success", True) or not info.get("open_id"):
        return None
    open_id = str(info["open_id"])
    ids = buyer_identifiers(
        open_id,
        info.get("union_id"),
        info.get("mobile"),
        open_id_scope=open_id_scope,
        union_id_scope=union_id_scope,
    )
    try:
        balance: int | None = points(info.get("point_cent") or 0, "point_cent")
    except ValueError:
        balance = None  # a fraction of a point: no whole-point figure to show
    level = info.get("level")
    return MemberRecord(
        external_id=open_id,
        identifiers=ids,
        updated_at=updated_at,
        level=str(level) if level not in (None, "") else None,
        points=balance,
    )


def refund_record(item: Mapping[str, Any]) -> RefundRecord | None:
    """One ``afterSale.List`` item; only a succeeded refund (``refund_status`` 3) is money back."""
    info = item.get("aftersale_info") if isinstance(item.get("aftersale_info"), Mapping) else item
    try:
        status = int(info.get("refund_status"))
    except (TypeError, ValueError):
        return None
    amount = fen(info.get("refund_amount"), "refund_amount")
    if status != REFUND_SUCCESS or amount <= 0:
        return None
    updated = from_unix(info.get("update_time"))
    if updated is None or not info.get("aftersale_id") or not info.get("order_id"):
        raise PlatformError(f"douyin after-sale {info.get('aftersale_id')!r} is incomplete")
    return RefundRecord(
        refund_id=str(info["aftersale_id"]),
        order_external_id=str(info["order_id"]),
        amount_fen=amount,
        updated_at=updated,
        reason=str(info["reason"]) if info.get("reason") else None,
    )


def points_event(
    msg_id: str,
    data: Mapping[str, Any],
    identifiers: tuple[IdentifierInput, ...],
    occurred_at: datetime,
    reason: str,
) -> PointsEventRecord | None:
    """A member push's points change (``None`` when the points did not move)."""
    delta = points(data.get("point_cent_delta") or 0, "point_cent_delta")
    total = data.get("point_cent_total")
    balance = points(total, "point_cent_total") if total not in (None, "") else None
    if delta == 0:
        return None
    return PointsEventRecord(
        event_id=msg_id,
        identifiers=identifiers,
        delta=delta,
        occurred_at=occurred_at,
        reason=reason,
        balance=balance,
    )
